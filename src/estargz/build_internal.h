/* SPDX-License-Identifier: Apache-2.0 */
/* Private pieces of esgz_build(): the input model (build_tar_in.c), tar header
 * writing (build_tar_out.c), the compression pool (build_compress.c) and the
 * TOC JSON (build_toc.c). build.c orders entries and cuts members. */
#ifndef ESGZ_BUILD_INTERNAL_H
#define ESGZ_BUILD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "estargz.h"

/* ---- input model ------------------------------------------------------ */

/* Which header flavour an entry came in; the output keeps it where it can, as
 * the reference's Go tar writer does (GNU in -> GNU out, else USTAR/PAX). */
enum esgz_b_flavor {
	ESGZ_BF_USTAR,
	ESGZ_BF_PAX,
	ESGZ_BF_GNU,
};

struct esgz_b_xattr {
	char *name;
	uint8_t *value;
	size_t len;
};

struct esgz_b_entry {
	char *name;          /* as in the input tar */
	char *link;          /* symlink target or hardlink target, else NULL */
	char *uname, *gname; /* never NULL */
	int64_t size;        /* reg: data size (sparse files expanded); else 0 */
	int64_t mtime;       /* seconds */
	int32_t mtime_nsec;
	bool has_atime, has_ctime; /* PAX input only */
	int32_t atime_nsec, ctime_nsec;
	int64_t atime, ctime;
	int64_t uid, gid;
	uint32_t mode; /* permission bits, 07777 */
	uint32_t devmajor, devminor;
	uint8_t type;                /* enum esgz_type (never ESGZ_CHUNK) */
	uint8_t flavor;              /* enum esgz_b_flavor */
	bool dead;                   /* replaced by a later entry of the same name, or dropped */
	struct esgz_b_xattr *xattrs; /* sorted by name */
	size_t nxattrs;
	int64_t data_off;                        /* where the data sits in the spool */
	uint8_t digest[RS_SHA256_LEN];           /* reg: sha256 of the data */
	uint8_t (*chunk_digests)[RS_SHA256_LEN]; /* reg with size > 0: one per chunk */
	uint32_t nchunks;
	/* Files read in part (esgz_build_opts.touched), else NULL: where each
	 * chunk starts in the file and whether it is ESGZ_TOC_NO_PREFETCH.
	 * Without them chunk i starts at i * chunk_size. */
	int64_t *chunk_offs;
	uint8_t *no_prefetch;
	uint32_t first_member; /* output side: member holding chunk 0 */
};

/* Payload bytes of all entries: memory while small, then an unlinked file. */
struct esgz_b_spool {
	int fd;
	uint8_t *mem;
	size_t mem_cap;
	int64_t size;
};

struct esgz_b_tar {
	struct esgz_b_entry *v;
	size_t n, cap;
	struct esgz_b_spool spool;
};

/* Reads every entry of the tar on fd (compression auto-detected) into t,
 * hashing each regular file and each chunk_size piece of it on the way. */
int esgz_b_read_tar(int fd, int64_t chunk_size, struct esgz_b_tar *t, struct rs_error *err);
void esgz_b_tar_free(struct esgz_b_tar *t);
void esgz_b_entry_free(struct esgz_b_entry *e);
/* Copies len bytes of spooled data at off into buf. */
int esgz_b_spool_read(const struct esgz_b_spool *s, void *buf, size_t len, int64_t off,
		      struct rs_error *err);

/* Where chunk c of e starts in the file, and its length. */
static inline int64_t esgz_b_chunk_off(const struct esgz_b_entry *e, uint32_t c, int64_t chunk_size)
{
	return e->chunk_offs ? e->chunk_offs[c] : (int64_t)c * chunk_size;
}

static inline int64_t esgz_b_chunk_len(const struct esgz_b_entry *e, uint32_t c, int64_t chunk_size)
{
	int64_t end = c + 1 < e->nchunks ? esgz_b_chunk_off(e, c + 1, chunk_size) : e->size;
	return end - esgz_b_chunk_off(e, c, chunk_size);
}

/* ---- touched ranges (build_touched.c) ----------------------------------- */

/* Rejects touched ranges with a negative offset or length, naming the file. */
int esgz_b_touched_check(const struct esgz_build_opts *o, struct rs_error *err);
/* Re-chunks the entries that o->touched names: entry[k] is the entry of
 * touched item k, or SIZE_MAX when the item is ignored. Items of one entry
 * are merged. Chunk digests are recomputed from the spool. */
int esgz_b_touched_apply(struct esgz_b_tar *t, const struct esgz_build_opts *o, const size_t *entry,
			 int64_t chunk_size, struct rs_error *err);

/* ---- tar headers of the output ---------------------------------------- */

/* Appends the header block(s) of e (with PAX or GNU long-name blocks as
 * needed) to out. */
int esgz_b_tar_header(const struct esgz_b_entry *e, struct rs_buf *out, struct rs_error *err);
/* Bytes of zero padding after size bytes of data. */
static inline size_t esgz_b_tar_pad(int64_t size)
{
	return (size_t)((512 - (size & 511)) & 511);
}

/* ---- compression pool ------------------------------------------------- */

/* A batch of whole members, compressed independently of each other, so the
 * grouping never changes the bytes. */
struct esgz_b_job {
	struct rs_buf in;   /* the members' uncompressed bytes, back to back */
	size_t *member_len; /* uncompressed length of each member */
	size_t *member_out; /* compressed length of each member (filled by a worker) */
	size_t nmembers, members_cap;
	uint32_t first_member; /* global index of the first member */
	struct rs_buf out;
	int rc;
	char errmsg[128];
	bool done;               /* guarded by the pool's lock */
	struct esgz_b_job *next; /* queue link, guarded by the pool's lock */
};

struct esgz_b_pool;

/* level is the library's own level (libdeflate 1-12 or zstd). */
int esgz_b_pool_new(int threads, bool zstd, int level, struct esgz_b_pool **out,
		    struct rs_error *err);
void esgz_b_pool_submit(struct esgz_b_pool *p, struct esgz_b_job *j);
void esgz_b_pool_wait(struct esgz_b_pool *p, struct esgz_b_job *j);
/* Stops and joins the workers; jobs still queued are left undone. */
void esgz_b_pool_free(struct esgz_b_pool *p);
/* Compresses one buffer as a single member on the calling thread. */
int esgz_b_compress_one(bool zstd, int level, const uint8_t *in, size_t len, struct rs_buf *out,
			struct rs_error *err);

/* ---- TOC JSON ----------------------------------------------------------- */

/* Everything the TOC needs about an entry in output order. */
struct esgz_b_toc_in {
	const struct esgz_b_entry *const *order;
	size_t n;
	const int64_t *member_offset; /* blob offset of each member */
	int64_t chunk_size;
};

/* Writes {"version":1,"entries":[...]} the way the reference's Go
 * json.MarshalIndent(toc, "", "\t") does. */
int esgz_b_toc_json(const struct esgz_b_toc_in *in, struct rs_buf *out, struct rs_error *err);

#endif
