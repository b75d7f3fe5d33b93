/* SPDX-License-Identifier: Apache-2.0 */
/* The whole-file check: a regular file's TOC `digest` is compared with the
 * sha256 of its bytes once all its chunks are in, on the thread that landed
 * the last one (a fetcher or decoder, not the reader). Chunks are checked one
 * by one against their chunkDigest already; this catches a TOC whose chunks
 * are right but do not make the file it names (and is the only check of a
 * layer without chunk digests). A file that fails is bad: its reads get EIO
 * from then on. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "layerfs_internal.h"

enum {
	FILE_PENDING,   /* chunks still missing, or the check not run yet */
	FILE_OK,        /* checked, or nothing to check */
	FILE_BAD,       /* its bytes are not its digest */
	FILE_UNCHECKED, /* a chunk left the cache before the check could read it */
};

/* Whether the file's bytes need hashing: a single chunk of the whole file
 * whose chunkDigest is the file's digest was checked when it landed. */
static bool needs_check(const struct lfs_layer *l, const struct esgz_node *n)
{
	if (n->type != ESGZ_REG || !n->has_digest || n->nchunks == 0)
		return false;
	if (n->nchunks > 1)
		return true;
	const struct esgz_chunk *c = &l->chunks[n->chunks];
	return !(c->has_digest && c->size == n->size &&
		 memcmp(c->digest, n->digest, RS_SHA256_LEN) == 0);
}

int lfs_file_checks_init(struct lfs_layer *l)
{
	l->file_left = calloc(l->nnodes ? l->nnodes : 1, sizeof(*l->file_left));
	l->file_state = calloc(l->nnodes ? l->nnodes : 1, sizeof(*l->file_state));
	if (!l->file_left || !l->file_state)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->nnodes; i++) {
		const struct esgz_node *n = esgz_index_node(l->idx, i);
		bool check = needs_check(l, n);
		/* Every file's chunks are counted: a complete file gets its
		 * backing file even when there is nothing to hash. */
		l->file_left[i] = n->type == ESGZ_REG ? n->nchunks : 0;
		atomic_init(&l->file_state[i], check ? FILE_PENDING : FILE_OK);
	}
	return 0;
}

/* Zeros of holes hashed for one file at most: a TOC may claim a terabyte
 * of holes, and a file past this is left unchecked rather than hashed for
 * minutes. */
#define HOLES_MAX ((int64_t)1 << 30)

static void hash_zeros(struct rs_sha256 *h, int64_t n)
{
	static const uint8_t zeros[64 << 10];
	while (n > 0) {
		size_t k = n > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)n;
		rs_sha256_update(h, zeros, k);
		n -= (int64_t)k;
	}
}

bool lfs_file_chunk_in_locked(struct lfs_layer *l, uint32_t chunk)
{
	uint32_t node = l->chunks[chunk].node;
	if (l->file_left[node] == 0)
		return false;
	return --l->file_left[node] == 0;
}

bool lfs_file_bad(const struct lfs_layer *l, uint32_t node)
{
	return atomic_load_explicit(&l->file_state[node], memory_order_relaxed) == FILE_BAD;
}

void lfs_file_check(struct lfs_layer *l, uint32_t chunk)
{
	uint32_t node = l->chunks[chunk].node;
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	if (atomic_load(&l->file_state[node]) == FILE_OK) {
		/* Nothing to hash (no digest, or one chunk checked whole). */
		lfs_passthrough_queue(l, node);
		return;
	}
	const char *name = esgz_node_name(l->idx, n);
	uint32_t nc;
	const struct esgz_chunk *fc = esgz_index_chunks(l->idx, node, &nc);
	struct rs_sha256 h;
	if (rs_sha256_init(&h) < 0) {
		atomic_store(&l->file_state[node], FILE_UNCHECKED);
		return;
	}
	int state = FILE_OK;
	int64_t pos = 0, holes = 0;
	for (uint32_t k = 0; k <= nc && state == FILE_OK; k++) {
		/* A hole (no chunk covers it) reads as zeros, and the digest is
		 * of what reads. */
		int64_t to = k < nc ? fc[k].file_offset : n->size;
		if (to > pos) {
			holes += to - pos;
			if (holes > HOLES_MAX) {
				state = FILE_UNCHECKED;
				break;
			}
			hash_zeros(&h, to - pos);
			pos = to;
		}
		if (k == nc || fc[k].size == 0)
			continue;
		uint32_t id = (uint32_t)(&fc[k] - l->chunks);
		struct cache_buf *b = lfs_chunk_cached(l, id);
		if (!b) {
			state = FILE_UNCHECKED;
			break;
		}
		rs_sha256_update(&h, cache_buf_data(b), cache_buf_len(b));
		pos = fc[k].file_offset + (int64_t)cache_buf_len(b);
		cache_buf_unref(b);
	}
	uint8_t got[RS_SHA256_LEN];
	rs_sha256_final(&h, got);
	rs_sha256_free(&h);
	if (state == FILE_OK && memcmp(got, n->digest, RS_SHA256_LEN) != 0)
		state = FILE_BAD;
	atomic_store(&l->file_state[node], (unsigned char)state);
	if (state == FILE_OK)
		lfs_passthrough_queue(l, node);
	if (state == FILE_UNCHECKED) {
		rs_log(RS_LOG_DEBUG,
		       "layerfs: %s: file '%s': a chunk left the cache before the whole-file "
		       "digest check; not checked",
		       l->digest, name);
		return;
	}
	if (state == FILE_BAD) {
		char want[RS_DIGEST_STR_LEN], have[RS_DIGEST_STR_LEN];
		rs_digest_format(n->digest, want);
		rs_digest_format(got, have);
		pthread_mutex_lock(&l->lock);
		l->verify_errors++;
		pthread_mutex_unlock(&l->lock);
		rs_log(RS_LOG_ERROR,
		       "layerfs: %s: file '%s' has digest %s, its TOC entry says %s: its reads "
		       "fail from now on",
		       l->digest, name, have, want);
	}
}
