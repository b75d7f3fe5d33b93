// SPDX-License-Identifier: Apache-2.0
/* Read-only queries on a finished index: nodes, children, chunks, xattrs. */
#include <string.h>

#include "index_internal.h"

uint32_t esgz_index_node_count(const struct esgz_index *idx)
{
	return idx->nnodes;
}

const struct esgz_node *esgz_index_node(const struct esgz_index *idx, uint32_t id)
{
	return id < idx->nnodes ? &idx->nodes[id] : NULL;
}

const char *esgz_index_str(const struct esgz_index *idx, uint32_t off)
{
	return off < idx->strs_len ? idx->strs + off : "";
}

const uint32_t *esgz_index_children(const struct esgz_index *idx, uint32_t dir, uint32_t *n)
{
	if (dir >= idx->nnodes || idx->nodes[dir].type != ESGZ_DIR) {
		*n = 0;
		return NULL;
	}
	*n = idx->nodes[dir].nchildren;
	return idx->children + idx->nodes[dir].children;
}

uint32_t esgz_index_child(const struct esgz_index *idx, uint32_t dir, const char *name, size_t len)
{
	uint32_t n;
	const uint32_t *kids = esgz_index_children(idx, dir, &n);
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const char *b = idx->strs + idx->nodes[kids[mid]].base;
		int c = strncmp(b, name, len);
		if (c == 0 && b[len] != '\0')
			c = 1;
		if (c == 0)
			return kids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return ESGZ_NONE;
}

uint32_t esgz_index_resolve(const struct esgz_index *idx, uint32_t id)
{
	if (id < idx->nnodes && idx->nodes[id].type == ESGZ_HARDLINK)
		return idx->nodes[id].link;
	return id;
}

const struct esgz_chunk *esgz_index_chunks(const struct esgz_index *idx, uint32_t id, uint32_t *n)
{
	id = esgz_index_resolve(idx, id);
	if (id >= idx->nnodes || idx->nodes[id].nchunks == 0) {
		*n = 0;
		return NULL;
	}
	*n = idx->nodes[id].nchunks;
	return idx->chunks + idx->nodes[id].chunks;
}

const struct esgz_chunk *esgz_index_chunk_at(const struct esgz_index *idx, uint32_t id, int64_t off)
{
	uint32_t n;
	const struct esgz_chunk *c = esgz_index_chunks(idx, id, &n);
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (off < c[mid].file_offset)
			hi = mid;
		else if (off >= c[mid].file_offset + c[mid].size)
			lo = mid + 1;
		else
			return &c[mid];
	}
	return NULL;
}

const struct esgz_chunk *esgz_index_all_chunks(const struct esgz_index *idx, uint32_t *n)
{
	*n = idx->nchunks;
	return idx->chunks;
}

const struct esgz_xattr *esgz_index_xattrs(const struct esgz_index *idx, uint32_t id, uint32_t *n)
{
	if (id >= idx->nnodes || idx->nodes[id].nxattrs == 0) {
		*n = 0;
		return NULL;
	}
	*n = idx->nodes[id].nxattrs;
	return idx->xattrs + idx->nodes[id].xattrs;
}

int64_t esgz_index_prefetch_end(const struct esgz_index *idx, bool *no_prefetch)
{
	if (no_prefetch)
		*no_prefetch = idx->no_prefetch;
	return idx->prefetch_end;
}

uint64_t esgz_index_toc_entries(const struct esgz_index *idx)
{
	return idx->toc_entries;
}
