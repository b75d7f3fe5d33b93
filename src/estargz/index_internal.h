/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the TOC parser and the index: how the index is laid out. */
#ifndef ESGZ_INDEX_INTERNAL_H
#define ESGZ_INDEX_INTERNAL_H

#include <sys/mman.h>

#include "estargz.h"
#include "json_walk.h"

/* malloc() for large blocks that will be filled at once: aligned to and
 * advised for huge pages, because on a VM a page fault costs microseconds and
 * a big TOC would otherwise take tens of thousands of them. Unused capacity is
 * still never touched, hence never resident. free() and realloc() as usual. */
#define ESGZ_HUGE_PAGE ((size_t)2 << 20)
static inline void *esgz_alloc_huge(size_t n)
{
	if (n < 2 * ESGZ_HUGE_PAGE)
		return malloc(n ? n : 1);
	size_t rounded = (n + ESGZ_HUGE_PAGE - 1) & ~(ESGZ_HUGE_PAGE - 1);
	void *p = aligned_alloc(ESGZ_HUGE_PAGE, rounded);
	if (p)
		(void)madvise(p, rounded, MADV_HUGEPAGE);
	return p;
}

/* Flat arrays and one string table: no allocation per entry. */
struct esgz_index {
	struct esgz_node *nodes;
	uint32_t nnodes, nodes_cap;
	struct esgz_chunk *chunks;
	uint32_t nchunks, chunks_cap;
	struct esgz_xattr *xattrs;
	uint32_t nxattrs, xattrs_cap;
	uint32_t *children; /* per directory, sorted by base name */
	char *strs;         /* string table; offset 0 is "" */
	uint32_t strs_len, strs_cap;
	uint64_t *table; /* open addressing: (hash << 32 | live node id), all ones empty */
	uint32_t table_mask;
	uint64_t toc_entries;
	uint64_t max_entries;
	int64_t prefetch_end;
	bool no_prefetch;
	uint32_t last_reg;          /* node id of the last reg entry, for chunk entries */
	uint32_t uname_cache[8][2]; /* small intern cache: (uid-ish key, offset) */
};

/* Turns TOC JSON into an index under construction. */
struct esgz_toc_parser;

int esgz_toc_parser_new(const struct esgz_index_limits *lim, struct esgz_toc_parser **out,
			struct rs_error *err);
/* Parses the whole JSON; json[len, len + ESGZ_JSON_PADDING) must be readable. */
int esgz_toc_parser_parse(struct esgz_toc_parser *p, const uint8_t *json, size_t len,
			  struct rs_error *err);
/* Validates and returns the finished index. */
int esgz_toc_parser_finish(struct esgz_toc_parser *p, int64_t payload_end, struct esgz_index **out,
			   struct rs_error *err);
void esgz_toc_parser_free(struct esgz_toc_parser *p);

/* Streams the decompressed TOC JSON to sink in pieces. */
typedef int (*esgz_toc_sink)(void *ctx, const uint8_t *data, size_t len, struct rs_error *err);
int esgz_toc_stream(const struct esgz_footer *f, const uint8_t *data, size_t len, uint64_t max_size,
		    esgz_toc_sink sink, void *ctx, struct rs_error *err);

/* A whole decompressed TOC: the JSON inside buf, padded for the parser. */
struct esgz_toc_json {
	uint8_t *buf;        /* owned; free() */
	const uint8_t *json; /* json[len, len + ESGZ_JSON_PADDING) is readable */
	size_t len;
};
int esgz_toc_inflate(const struct esgz_footer *f, const uint8_t *data, size_t len,
		     uint64_t max_size, struct esgz_toc_json *out, struct rs_error *err);

/* Decompresses, hashes (into digest) and parses a TOC; keep, if given,
 * receives the JSON. */
int esgz_toc_load(const struct esgz_footer *f, const uint8_t *data, size_t len, uint64_t max_size,
		  struct esgz_toc_parser *parser, uint8_t digest[RS_SHA256_LEN],
		  struct rs_buf *keep, struct rs_error *err);

/* The raw fields of one TOC entry, as parsed; strings point into parser scratch. */
struct esgz_raw_entry {
	const char *name;
	size_t name_len;
	const char *link;
	size_t link_len;
	const char *uname, *gname;
	size_t uname_len, gname_len;
	int type; /* enum esgz_type, or -1 when missing/unknown */
	const char *type_str;
	size_t type_len;
	int64_t size, mode, uid, gid, offset, inner_offset, devmajor, devminor;
	int64_t chunk_offset, chunk_size, end_offset;
	int64_t mtime;
	bool has_mtime;
	bool has_digest, has_chunk_digest;
	bool no_prefetch; /* ESGZ_TOC_NO_PREFETCH: true */
	uint8_t digest[RS_SHA256_LEN], chunk_digest[RS_SHA256_LEN];
	/* xattrs: nxattrs pairs of (name, decoded value) in scratch */
	uint32_t nxattrs;
	const char **xattr_names;
	const uint8_t **xattr_values;
	size_t *xattr_lens;
};

/* Index construction, called by the parser. */
int esgz_index_new(const struct esgz_index_limits *lim, struct esgz_index **out);
int esgz_index_add(struct esgz_index *idx, const struct esgz_raw_entry *e, struct rs_error *err);
int esgz_index_finish(struct esgz_index *idx, int64_t payload_end, struct rs_error *err);

#endif
