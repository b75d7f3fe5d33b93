/* SPDX-License-Identifier: Apache-2.0 */
/* cache: one chunk cache shared by all layers. Keys are the sha256 of a
 * chunk's decompressed bytes (eStargz chunkDigest), so layers and images that
 * hold the same chunk share one entry. Two tiers: an in-memory LRU with a byte
 * budget, and a directory on disk with a size bound, reused after a restart
 * and verified on every load. All calls are thread-safe. */
#ifndef RS_CACHE_H
#define RS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Largest value the cache stores (a chunk is a few MiB; 4 MiB by default). */
#define CACHE_MAX_VALUE ((size_t)64 << 20)

/* ---- reference-counted immutable bytes -------------------------------- */

/* A value handed out by the cache. Readers hold a reference; eviction drops
 * only the cache's own reference, so bytes stay valid until the last unref. */
struct cache_buf;

/* A new buffer of len bytes (refcount 1) to fill through cache_buf_wdata()
 * before it is shared. -ENOMEM or -EFBIG (len > CACHE_MAX_VALUE). */
int cache_buf_new(size_t len, struct cache_buf **out);
uint8_t *cache_buf_wdata(struct cache_buf *b);
const uint8_t *cache_buf_data(const struct cache_buf *b);
size_t cache_buf_len(const struct cache_buf *b);
/* The memory it holds: big buffers are whole 2 MiB units. */
size_t cache_buf_footprint(const struct cache_buf *b);
struct cache_buf *cache_buf_ref(struct cache_buf *b);
/* Drops one reference; frees on the last. NULL is a no-op. */
void cache_buf_unref(struct cache_buf *b);
static inline void cache_buf_unrefp(struct cache_buf **b)
{
	cache_buf_unref(*b);
}
#define cleanup_cache_buf rs_cleanup(cache_buf_unrefp)

/* put_flags of cache_put() and the tiers' puts. */
enum {
	/* Through the page cache even when big: the kernel writes it back
	 * later, so that fsyncs (containerd's, our metadata's) made meanwhile do
	 * not queue behind it. For bulk data nobody waits for (prefetch and
	 * background fetches); the default writes big values with O_DIRECT,
	 * which saves the copy into the page cache. */
	CACHE_PUT_WRITEBACK = 1u << 0,
	/* Likely read once (a sequential reader's readahead): in the memory
	 * tier such values share an eighth of the budget, oldest out first, so
	 * that a long sequential read neither pushes out the rest nor takes
	 * fresh memory for all it reads. A plain put of the same key later
	 * makes it an ordinary entry. */
	CACHE_PUT_ONCE = 1u << 1,
};

/* ---- memory tier ------------------------------------------------------ */

struct cache_mem;

struct cache_mem_stats {
	uint64_t hits, misses, evictions;
	uint64_t bytes, entries, budget;
};

int cache_mem_new(size_t budget, struct cache_mem **out, struct rs_error *err);
void cache_mem_free(struct cache_mem *m);
/* A new reference to the value of key (caller unrefs), or NULL on a miss. */
struct cache_buf *cache_mem_get(struct cache_mem *m, const uint8_t key[RS_SHA256_LEN]);
/* Stores b under key (the cache takes its own reference) as most recently
 * used, evicting least recently used values to fit the budget (and, with
 * CACHE_PUT_ONCE, the oldest use-once values to fit their share). A value
 * larger than the whole budget is not stored. The key is trusted: the caller
 * has checked that it is the sha256 of the bytes. */
void cache_mem_put(struct cache_mem *m, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
		   unsigned put_flags);
void cache_mem_stats(struct cache_mem *m, struct cache_mem_stats *out);

/* ---- disk tier -------------------------------------------------------- */

struct cache_disk;

/* Flags for cache_disk_open() and cache_open(). */
enum {
	CACHE_FSYNC = 1u << 0, /* fsync each file and its directory before it counts */
};

struct cache_disk_stats {
	uint64_t hits, misses, evictions;
	uint64_t corrupt;     /* files whose content did not match their key, deleted */
	uint64_t tmp_removed; /* leftover temp files removed at open */
	uint64_t bytes, entries, max_bytes; /* bytes and entries include backing files */
	uint64_t backing_files, backing_bytes;
	uint64_t pinned_bytes; /* backing files in use, which eviction leaves */
	/* The index is built in the background after open: until scanning is
	 * false, bytes and entries count only files used or put since, the
	 * bound is not enforced, and scan_found files are listed but not yet
	 * indexed. */
	bool scanning;
	uint64_t scan_found;
};

/* Opens (creating if needed) the store in dir: DIR/sha256/<2 hex>/<64 hex>.
 * Returns at once; a thread then removes leftover temp files, rebuilds the
 * LRU index from the files' access and modification times, and evicts down
 * to max_bytes (cache_disk_stats: scanning). Gets during that scan find
 * every file already there. One process per dir: DIR/lock is held with
 * flock; a second opener gets -EBUSY. */
int cache_disk_open(const char *dir, uint64_t max_bytes, unsigned flags, struct cache_disk **out,
		    struct rs_error *err);
void cache_disk_close(struct cache_disk *d);
/* 0 and *out (caller unrefs) on a hit; -ENOENT on a miss, including a file
 * whose sha256 is not its key, or the digest it was put with (deleted and
 * counted as corrupt); another
 * negative errno on an I/O error (callers may treat it as a miss). */
int cache_disk_get(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], struct cache_buf **out,
		   struct rs_error *err);
/* Whether a chunk of key is stored, and its size: the index only (or, while
 * the scan after open runs, its file), no read. A later get still checks the
 * content and may miss. */
bool cache_disk_has(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], uint64_t *size);

/* Writes data under key: a temp file in the same directory, renamed into
 * place, so a crash leaves either the whole file or none. A value larger than
 * max_bytes is not stored (returns 0). put_flags: CACHE_PUT_*. */
int cache_disk_put(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], const void *data,
		   size_t len, unsigned put_flags, struct rs_error *err);
/* The same for a value whose key is not its content's sha256 (a legacy
 * chunk's, derived from layer and offset): digest, the sha256 of data, is
 * stored with the file (in its name) and every load is checked against it.
 * NULL or equal to key: as cache_disk_put. */
int cache_disk_put_keyed(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN],
			 const uint8_t *digest, const void *data, size_t len, unsigned put_flags,
			 struct rs_error *err);
void cache_disk_stats(struct cache_disk *d, struct cache_disk_stats *out);

/* ---- the two tiers together ------------------------------------------- */

struct cache;

struct cache_opts {
	size_t mem_budget;       /* bytes of decompressed chunks kept in memory */
	const char *dir;         /* disk store; NULL for memory only */
	uint64_t disk_max_bytes; /* size bound of the disk store */
	unsigned flags;          /* CACHE_FSYNC */
};

struct cache_stats {
	uint64_t hits, misses; /* of cache_get as a whole */
	struct cache_mem_stats mem;
	struct cache_disk_stats disk; /* zero without a disk store */
};

int cache_open(const struct cache_opts *opts, struct cache **out, struct rs_error *err);
void cache_close(struct cache *c);
/* Memory first, then disk (a disk hit is promoted to memory). 0 and *out
 * (caller unrefs) on a hit, -ENOENT on a miss, another negative errno on a
 * disk I/O error. */
int cache_get(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf **out,
	      struct rs_error *err);
/* Whether key is held with exactly len bytes (memory, else the disk index),
 * reading nothing and promoting nothing: a get may still miss later. */
bool cache_has(struct cache *c, const uint8_t key[RS_SHA256_LEN], uint64_t len);
/* Stores b in memory and on disk. The value is in memory even when the disk
 * write fails (that error is returned). put_flags: CACHE_PUT_*. */
int cache_put(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
	      unsigned put_flags, struct rs_error *err);
/* cache_put for a value whose key is not its content's sha256 (a legacy
 * chunk's, of layer and offset): the disk tier stores the content's sha256
 * with the file, hashed here when there is a disk tier, and checks every load
 * against it (cache_disk_put_keyed). */
int cache_put_unkeyed(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
		      unsigned put_flags, struct rs_error *err);
void cache_stats(struct cache *c, struct cache_stats *out);

/* ---- backing files for FUSE passthrough (backing.c) --------------------- */

/* The whole content of a regular file, keyed by its sha256 (content keys:
 * checked at commit, and once per process before a file of an earlier run
 * is used) or by a key the caller derives (content == false: its own
 * namespace). Shared by every layer holding the file. */
struct cache_backing_store;
struct cache_backing;        /* an open backing file (a pin) */
struct cache_backing_writer; /* a backing file being written */

/* The store of c's disk tier; NULL for a memory-only cache. */
struct cache_backing_store *cache_backing_store_of(struct cache *c);
/* The store of a disk tier (made and freed with it). */
struct cache_backing_store *cache_disk_backing(struct cache_disk *d);
/* A temp file of size bytes (zeros until written), its room reserved in the
 * disk bound (evicting unpinned chunks and backing files): -ENOSPC when
 * files in use leave too little. */
int cache_backing_begin(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			bool content, uint64_t size, struct cache_backing_writer **out,
			struct rs_error *err);
int cache_backing_pwrite(struct cache_backing_writer *w, const void *data, size_t len, uint64_t off,
			 struct rs_error *err);
/* Checks a content key against the bytes (-EBADMSG), then renames the file
 * into place. Frees w either way. */
int cache_backing_commit(struct cache_backing_writer *w, struct rs_error *err);
void cache_backing_abort(struct cache_backing_writer *w);
/* The backing file of key if it is there with size bytes (and, for a
 * content key, the right bytes), pinned (eviction leaves it) until the
 * release; *fd_out is valid until then. */
int cache_backing_open(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
		       bool content, uint64_t size, struct cache_backing **out, int *fd_out,
		       struct rs_error *err);
void cache_backing_release(struct cache_backing *b);
/* Whether cache_backing_open of key would need no hashing first (a derived
 * key, or a content key this process wrote or checked). */
bool cache_backing_checked(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			   bool content);

#endif
