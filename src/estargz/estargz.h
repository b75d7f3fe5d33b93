/* SPDX-License-Identifier: Apache-2.0 */
/* estargz: the eStargz / stargz / zstd:chunked layer format.
 *
 * Reading: a blob is read through struct esgz_reader (N bytes at an offset),
 * its footer located, its TOC decompressed, parsed (streaming) and turned into
 * a compact, immutable index. Every number and name in a blob is untrusted.
 * Writing: a tar (plain, gzip or zstd) becomes an eStargz or zstd:chunked blob.
 */
#ifndef ESGZ_ESTARGZ_H
#define ESGZ_ESTARGZ_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/util.h"

/* ---- constants of the format ------------------------------------------ */

#define ESGZ_TOC_TAR_NAME "stargz.index.json"
#define ESGZ_PREFETCH_LANDMARK ".prefetch.landmark"
#define ESGZ_NO_PREFETCH_LANDMARK ".no.prefetch.landmark"
#define ESGZ_LANDMARK_BYTE 0x0f
#define ESGZ_FOOTER_SIZE 51
#define ESGZ_LEGACY_FOOTER_SIZE 47
#define ESGZ_ZSTD_FOOTER_SIZE 40  /* payload of the last skippable frame */
#define ESGZ_ZSTD_FOOTER_FRAME 48 /* with its 8-byte skippable frame header */
#define ESGZ_DEFAULT_CHUNK_SIZE (4 << 20)
#define ESGZ_DEFAULT_LEVEL 9

#define ESGZ_ANNOTATION_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
#define ESGZ_ANNOTATION_UNCOMPRESSED_SIZE "io.containers.estargz.uncompressed-size"
#define ESGZ_ANNOTATION_ZSTD_MANIFEST_CHECKSUM "io.containers.zstd-chunked.manifest-checksum"
#define ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION "io.containers.zstd-chunked.manifest-position"
/* Ours, on eStargz layers we write: the TOC member's offset in the blob (the
 * footer's), so that a client knowing the blob size can fetch exactly the TOC
 * and footer in its first request. Readers of the format ignore it. */
#define ESGZ_ANNOTATION_TOC_OFFSET "io.github.remote-snapshotter.toc-offset"
/* Ours, a boolean on a TOC "reg" or "chunk" entry before .prefetch.landmark:
 * true when the workload `stargz optimize` recorded never read this chunk of
 * a file it read only in part, so a lazy mount's prefetch skips it. Readers
 * of the format ignore unknown fields and prefetch the chunk as usual. */
#define ESGZ_TOC_NO_PREFETCH "io.github.remote-snapshotter.noPrefetch"
/* The kernel readahead (KiB) under which `stargz optimize` measures which
 * parts of a file the workload reads, and the one a lazy mount of a layer
 * with noPrefetch chunks uses until the layer is complete: the same window
 * makes the mount's page faults ask for the pages the recording saw. */
#define ESGZ_PARTIAL_READAHEAD_KB 64

/* Defaults for untrusted sizes; both can be raised through esgz_open_opts. */
#define ESGZ_DEFAULT_MAX_ENTRIES (2u << 20)      /* 2,097,152 TOC entries */
#define ESGZ_DEFAULT_MAX_TOC_SIZE (512ull << 20) /* decompressed TOC JSON bytes */

/* Error code for "a digest did not match" (as opposed to I/O or format errors). */
#define ESGZ_EDIGEST (-EBADMSG)

/* ---- random-access reader --------------------------------------------- */

/* A blob source: a file, memory, or (later) a registry blob with range reads. */
struct esgz_reader {
	void *ctx;
	int64_t size;
	/* Reads exactly len bytes at off. Returns 0, or a negative errno with err filled. */
	int (*read_at)(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err);
	void (*close)(void *ctx);
};

int esgz_reader_open_file(struct esgz_reader *r, const char *path, struct rs_error *err);
/* Reads from memory the caller keeps alive; nothing is copied. */
void esgz_reader_init_mem(struct esgz_reader *r, const void *data, size_t len);
/* A blob of blob_size bytes of which only the last len bytes are known,
 * held in memory the caller keeps alive (a TOC kept from an earlier open):
 * reads inside them are served, any other read fails with -ERANGE. */
void esgz_reader_init_tail(struct esgz_reader *r, const void *data, size_t len, int64_t blob_size);
void esgz_reader_close(struct esgz_reader *r);
static inline int esgz_read_at(struct esgz_reader *r, void *buf, size_t len, int64_t off,
			       struct rs_error *err)
{
	return r->read_at(r->ctx, buf, len, off, err);
}

/* ---- footer ------------------------------------------------------------ */

enum esgz_format {
	ESGZ_FORMAT_ESTARGZ,
	ESGZ_FORMAT_STARGZ_LEGACY,
	ESGZ_FORMAT_ZSTD_CHUNKED,
};

struct esgz_footer {
	enum esgz_format format;
	int64_t toc_offset;   /* gzip: the TOC member; zstd: the compressed TOC frame */
	int64_t toc_size;     /* compressed bytes from toc_offset */
	int64_t toc_raw_size; /* zstd: uncompressed JSON size; gzip: 0 (unknown) */
	int64_t footer_size;  /* bytes the footer takes at the end of the blob */
	int64_t payload_end;  /* end of the file data members */
};

const char *esgz_format_name(enum esgz_format f);

/* Parses the footer from the last bytes of a blob of blob_size bytes. tail holds
 * the blob's last tail_len bytes (tail_len >= min(blob_size, ESGZ_ZSTD_FOOTER_FRAME...)
 * — pass at least the last ESGZ_FOOTER_SIZE bytes). Checks that the TOC lies
 * inside the blob. */
int esgz_footer_parse(const uint8_t *tail, size_t tail_len, int64_t blob_size,
		      struct esgz_footer *out, struct rs_error *err);
/* Writes the 51-byte eStargz footer for a TOC member at toc_offset. */
void esgz_footer_gzip(int64_t toc_offset, uint8_t out[ESGZ_FOOTER_SIZE]);
/* Writes the 48-byte zstd:chunked footer frame. */
void esgz_footer_zstd(int64_t toc_offset, int64_t toc_compressed_size, int64_t toc_raw_size,
		      uint8_t out[ESGZ_ZSTD_FOOTER_FRAME]);

/* ---- index ------------------------------------------------------------- */

enum esgz_type {
	ESGZ_DIR,
	ESGZ_REG,
	ESGZ_SYMLINK,
	ESGZ_HARDLINK,
	ESGZ_CHAR,
	ESGZ_BLOCK,
	ESGZ_FIFO,
	ESGZ_CHUNK, /* only in a raw TOC; never a node */
};

#define ESGZ_NONE UINT32_MAX
#define ESGZ_ROOT 0u

/* One path of the layer. Node 0 is the root directory. Nodes that a later
 * entry of the same name replaced stay (hardlinks made before may still point
 * at them, as with tar) but are no longer in any directory. */
struct esgz_node {
	int64_t size;      /* reg: file size; symlink: target length */
	int64_t mtime;     /* seconds since the epoch */
	uint32_t name;     /* string offset: full normalised path ("" for root) */
	uint32_t base;     /* string offset: last component */
	uint32_t parent;   /* node id; root's parent is root */
	uint32_t link;     /* hardlink: target node id (never a hardlink); symlink: string offset */
	uint32_t children; /* dir: first index in the children array */
	uint32_t nchildren;
	uint32_t chunks; /* reg: first index in the chunk array */
	uint32_t nchunks;
	uint32_t xattrs; /* first index in the xattr array */
	uint32_t nxattrs;
	uint32_t mode; /* permission bits with setuid/setgid/sticky (07777) */
	uint32_t uid, gid;
	uint32_t uname, gname; /* string offsets; 0 is "" */
	uint32_t devmajor, devminor;
	uint32_t nlink;     /* names that reach this inode (+ subdirs for a dir) */
	uint32_t toc_index; /* index of the entry in the TOC */
	uint8_t type;       /* enum esgz_type */
	uint8_t has_digest;
	uint8_t replaced;              /* a later entry of the same name took this path */
	uint8_t digest[RS_SHA256_LEN]; /* reg: sha256 of the whole file */
};

/* One piece of a regular file's data, located in the blob. */
struct esgz_chunk {
	int64_t offset;       /* blob offset where the compressed member starts */
	int64_t comp_end;     /* blob offset where the next member with data starts */
	int64_t inner_offset; /* uncompressed bytes to skip inside the member */
	int64_t file_offset;  /* where the chunk sits in the file */
	int64_t size;         /* uncompressed size */
	uint32_t node;
	uint8_t has_digest;
	uint8_t no_prefetch; /* ESGZ_TOC_NO_PREFETCH was true */
	uint8_t digest[RS_SHA256_LEN];
};

struct esgz_xattr {
	uint32_t name;  /* string offset */
	uint32_t value; /* offset in the string table (binary, value_len bytes) */
	uint32_t value_len;
};

struct esgz_index;

struct esgz_index_limits {
	uint64_t max_entries;    /* 0: ESGZ_DEFAULT_MAX_ENTRIES */
	uint64_t json_size_hint; /* expected TOC JSON bytes, to size arrays once; 0: unknown */
};

/* Parses TOC JSON straight into an index and validates it against a blob whose
 * file data ends at payload_end. Errors name the entry and the rule it broke. */
int esgz_index_parse(const uint8_t *json, size_t len, const struct esgz_index_limits *lim,
		     int64_t payload_end, struct esgz_index **out, struct rs_error *err);
void esgz_index_free(struct esgz_index *idx);

uint32_t esgz_index_node_count(const struct esgz_index *idx);
const struct esgz_node *esgz_index_node(const struct esgz_index *idx, uint32_t id);
const char *esgz_index_str(const struct esgz_index *idx, uint32_t off);
/* Looks a normalised path up ("" is the root); ESGZ_NONE when absent. O(1). */
uint32_t esgz_index_lookup(const struct esgz_index *idx, const char *path, size_t len);
/* A directory's entries, sorted by name. */
const uint32_t *esgz_index_children(const struct esgz_index *idx, uint32_t dir, uint32_t *n);
/* A child by name, O(log n). */
uint32_t esgz_index_child(const struct esgz_index *idx, uint32_t dir, const char *name, size_t len);
/* The node that holds the data of id (follows a hardlink). */
uint32_t esgz_index_resolve(const struct esgz_index *idx, uint32_t id);
/* The chunks of a regular file, in file order. */
const struct esgz_chunk *esgz_index_chunks(const struct esgz_index *idx, uint32_t id, uint32_t *n);
/* The chunk covering file offset off, or NULL past the end. O(log n). */
const struct esgz_chunk *esgz_index_chunk_at(const struct esgz_index *idx, uint32_t id,
					     int64_t off);
/* All chunks of the layer sorted by blob offset (for prefetch and verify). */
const struct esgz_chunk *esgz_index_all_chunks(const struct esgz_index *idx, uint32_t *n);
const struct esgz_xattr *esgz_index_xattrs(const struct esgz_index *idx, uint32_t id, uint32_t *n);
/* Blob offset where .prefetch.landmark's data starts (everything before it is
 * the prefetch set), or -1 if none; *no_prefetch set when .no.prefetch.landmark
 * is present. */
int64_t esgz_index_prefetch_end(const struct esgz_index *idx, bool *no_prefetch);
/* Count of entries in the TOC (including chunk entries). */
uint64_t esgz_index_toc_entries(const struct esgz_index *idx);

static inline const char *esgz_node_name(const struct esgz_index *idx, const struct esgz_node *n)
{
	return esgz_index_str(idx, n->name);
}

/* ---- an opened blob ---------------------------------------------------- */

struct esgz_open_opts {
	const char *expected_toc_digest; /* "sha256:..."; NULL: not checked */
	uint64_t max_entries;            /* 0: default */
	uint64_t max_toc_size;           /* 0: default */
	bool keep_toc_json;              /* keep the decompressed JSON in esgz_blob.toc_json */
	size_t tail_read; /* bytes read from the end in the first request; 0: 64 KiB */
};

struct esgz_blob {
	int64_t size;
	struct esgz_footer footer;
	struct esgz_index *index;
	uint8_t toc_digest[RS_SHA256_LEN]; /* sha256 of the TOC JSON */
	struct rs_buf toc_json;            /* only with keep_toc_json */
};

/* Reads footer and TOC with at most two reads, checks the TOC digest when one is
 * expected, and builds the index. */
int esgz_open(struct esgz_reader *r, const struct esgz_open_opts *opts, struct esgz_blob **out,
	      struct rs_error *err);
void esgz_blob_free(struct esgz_blob *b);

/* ---- chunks ------------------------------------------------------------ */

/* Decodes one chunk from its compressed bytes [c->offset, c->comp_end) into out
 * (c->size bytes) and checks its chunkDigest. ESGZ_EDIGEST on mismatch; no byte
 * of a chunk that failed is meaningful. */
int esgz_chunk_decode(enum esgz_format fmt, const struct esgz_chunk *c, const uint8_t *comp,
		      size_t comp_len, uint8_t *out, struct rs_error *err);
/* Reads and decodes one chunk through r. */
int esgz_chunk_read(const struct esgz_blob *b, struct esgz_reader *r, const struct esgz_chunk *c,
		    uint8_t *out, struct rs_error *err);

/* ---- verify ------------------------------------------------------------ */

struct esgz_verify_stats {
	uint64_t chunks;
	uint64_t files;
	uint64_t bytes;
};

/* Checks every chunk against its chunkDigest and every file against its digest.
 * ESGZ_EDIGEST names the first entry that failed; other errors are I/O or format. */
int esgz_verify(const struct esgz_blob *b, struct esgz_reader *r, struct esgz_verify_stats *st,
		struct rs_error *err);

/* ---- extract ----------------------------------------------------------- */

struct esgz_extract_opts {
	bool no_same_owner; /* don't chown (non-root) */
	bool no_xattrs;
};

/* Writes the layer into the directory dir as GNU tar would: owners, modes,
 * mtimes, xattrs, hardlinks, symlinks, devices, fifos; whiteout files kept as
 * files. Never writes outside dir, even through symlinks the layer creates. */
int esgz_extract(const struct esgz_blob *b, struct esgz_reader *r, const char *dir,
		 const struct esgz_extract_opts *opts, struct rs_error *err);

/* ---- listing ------------------------------------------------------------ */

/* Writes the TOC's entries like `tar -tv`, or as one JSON object a line. */
int esgz_list(const struct esgz_blob *b, FILE *out, bool json, struct rs_error *err);

/* ---- build -------------------------------------------------------------- */

/* Go's path.Clean("/"+name) without the leading "/": the key the reference
 * uses to match names. out has strlen(name)+1 bytes. */
void esgz_clean_name(const char *name, char *out);

/* The parts of one file a workload read (stargz optimize). The builder cuts
 * the file into chunks at the edges of these ranges (gaps shorter than
 * ESGZ_TOUCHED_MIN_GAP are closed first; pieces longer than the chunk size
 * are split as usual) and marks every chunk outside them ESGZ_TOC_NO_PREFETCH.
 * Ranges may come unsorted, overlapping or past the end: they are sorted,
 * merged and clamped to the file. */
struct esgz_touched {
	const char *name;      /* matched against entries as prioritized names are */
	const int64_t *ranges; /* nranges pairs: offset, length */
	size_t nranges;
};
#define ESGZ_TOUCHED_MIN_GAP ((int64_t)64 << 10)

struct esgz_build_opts {
	int64_t chunk_size;             /* 0: ESGZ_DEFAULT_CHUNK_SIZE */
	int level;                      /* 1-9; 0: ESGZ_DEFAULT_LEVEL */
	const char *const *prioritized; /* files in access order; NULL/0 for none */
	size_t n_prioritized;
	/* Skip prioritized files the layer lacks (an image-wide list given to each
	 * layer); a layer holding none of them gets .no.prefetch.landmark. Without
	 * it a missing file is an error. */
	bool prioritized_skip_missing;
	/* Files read in part, each also in prioritized (others are ignored). */
	const struct esgz_touched *touched;
	size_t n_touched;
	bool zstd_chunked;
	int threads; /* 0: every core */
};

struct esgz_build_result {
	char toc_digest[RS_DIGEST_STR_LEN];
	char diff_id[RS_DIGEST_STR_LEN]; /* sha256 of the uncompressed output tar */
	char digest[RS_DIGEST_STR_LEN];  /* sha256 of the blob */
	int64_t size;
	int64_t uncompressed_size;
	int64_t toc_offset; /* the footer's: where the TOC's member (frame) starts */
};

/* Reads a tar (plain, gzip or zstd; ustar, GNU, PAX) from in_fd and writes the
 * blob to out_fd (which need not be seekable). Output is the same for the same
 * input and options, whatever the thread count. */
int esgz_build(int in_fd, int out_fd, const struct esgz_build_opts *opts,
	       struct esgz_build_result *res, struct rs_error *err);

#endif
