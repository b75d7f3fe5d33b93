/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the disk tier: its state, shared by disk.c (chunks) and
 * disk_backing.c (backing files for FUSE passthrough, counted in the same
 * bound and the same LRU), and the calls backing.c makes. */
#ifndef RS_CACHE_DISK_INTERNAL_H
#define RS_CACHE_DISK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/index.h"

#define DISK_HEX_LEN (RS_SHA256_LEN * 2)
/* "ab/" + 64 hex + "." + 64 hex + NUL, or "ab/.tmp-" + 64 hex + "-pid-counter" */
#define DISK_REL_MAX 160

/* The scan that builds the index in the background after open (disk_scan.c):
 * open returns before it has seen every file, so a start serves at once. */
struct disk_scan {
	pthread_t thread;
	bool started; /* set and read by open and close only */
	atomic_bool stop;
	/* The rest under the cache's lock. running until the scan has merged
	 * what it found into the index: until then gets and pins of keys not
	 * in the index look in found, then, where the scan has not listed the
	 * directory yet, for the file itself; and nothing is evicted. */
	bool running;
	bool listed[256];       /* chunk prefix dirs listed (by the key's first byte) */
	bool backing_listed[2]; /* backing/sha256, backing/derived */
	struct cache_idx found; /* files listed, not yet in the index (struct disk_found) */
	/* Entries removed from the index since open (their struct disk_ent):
	 * a file of one of these keys that the scan listed before the removal
	 * is stale, not to be indexed again. */
	struct cache_idx gone;
};

struct cache_disk {
	char *dir;
	int lock_fd;    /* DIR/lock, flock'ed for the store's lifetime */
	int root_fd;    /* DIR/sha256 */
	int backing_fd; /* DIR/backing */
	unsigned flags;
	uint64_t max_bytes;
	atomic_uint_fast64_t tmp_seq;
	/* In this open's temp file names, so that the scan, which runs while
	 * puts write theirs, removes only an earlier run's. */
	uint64_t tmp_tag;
	/* lock guards idx (which files exist and their LRU order, the byte
	 * total), the entries, the counters below, and every rename into and
	 * unlink from an indexed name, so that the index and the directory
	 * change together. File contents are read and written outside it. */
	pthread_mutex_t lock;
	struct cache_idx idx;
	/* Bytes promised to backing files being written, and bytes of pinned
	 * entries (which eviction skips): both count against max_bytes. */
	uint64_t reserved, pinned_bytes;
	uint64_t backing_bytes, backing_files;
	uint64_t hits, misses, evictions, corrupt, tmp_removed;
	struct cache_backing_store *backing;
	struct disk_scan scan;
};

enum disk_kind {
	DISK_CHUNK,
	DISK_BACKING_CONTENT, /* DIR/backing/sha256/<key> */
	DISK_BACKING_DERIVED, /* DIR/backing/derived/<key> */
};

/* An index entry: the name of its file follows from these. */
struct disk_ent {
	struct cache_ent e; /* first: a cache_ent * is a disk_ent * */
	uint8_t kind;       /* enum disk_kind */
	bool keyed;         /* a chunk whose key is not the content's sha256: digest is */
	uint32_t pins;      /* backing files in use: never evicted */
	/* A keyed chunk: its content's sha256. A backing file: its store key
	 * (e.key is derived from it, so that no chunk key can meet it). */
	uint8_t digest[RS_SHA256_LEN];
};

/* A file the scan found: an entry not yet in the index, and the time (the
 * later of access and modification) that orders it in the LRU. */
struct disk_found {
	struct disk_ent de; /* first: moved into the index as it is */
	struct timespec t;
};

void disk_hex_encode(const uint8_t key[RS_SHA256_LEN], char out[DISK_HEX_LEN + 1]);
bool disk_hex_decode(const char *s, uint8_t key[RS_SHA256_LEN]);

/* A chunk's file relative to root_fd: "ab/<key>" or "ab/<key>.<digest>". */
void disk_chunk_rel(const struct disk_ent *de, char out[DISK_REL_MAX]);
/* Under the lock: takes e out of the index, and frees it (or, while the
 * scan runs, keeps it in scan.gone). Its file is the caller's business. */
void disk_forget_locked(struct cache_disk *d, struct cache_ent *e);
/* Under the lock: removes e's file and entry (e is freed). */
void disk_remove_locked(struct cache_disk *d, struct cache_ent *e);
/* Under the lock: evicts unpinned entries from the LRU tail until the bound
 * holds, keep last. Whether keep is still there. */
bool disk_evict_locked(struct cache_disk *d, struct cache_ent *keep);

/* ---- disk_backing.c --------------------------------------------------- */

/* The index key of a backing file. */
void disk_backing_idx_key(const uint8_t key[RS_SHA256_LEN], bool content,
			  uint8_t out[RS_SHA256_LEN]);
/* The file of e relative to backing_fd: "sha256/<hex>" or "derived/<hex>". */
void disk_backing_rel(const struct disk_ent *e, char out[DISK_REL_MAX]);
/* At open: creates DIR/backing and its parts, opens backing_fd and empties
 * tmp/ (no put of this open has begun). */
int disk_backing_prepare(struct cache_disk *d, struct rs_error *err);
/* For the scan, without the lock: calls add with every file of backing/sha256
 * (content) or backing/derived, newly allocated (add owns it), until stop is
 * set. */
void disk_backing_list(struct cache_disk *d, bool content, void (*add)(void *, struct disk_found *),
		       void *arg, const atomic_bool *stop);

/* ---- disk_scan.c ------------------------------------------------------- */

/* Starts the scan (at open; the prefix dirs exist). */
void disk_scan_start(struct cache_disk *d);
/* Stops and joins it, and frees what it held (at close). */
void disk_scan_stop(struct cache_disk *d);
/* Under the lock, while the scan runs: the entry of ikey (kind: enum
 * disk_kind; store_key, a backing file's) put into the index from what the
 * scan found, or from the file itself where the scan has not listed its
 * directory yet; NULL when there is none. May drop the lock meanwhile. */
struct cache_ent *disk_scan_find_locked(struct cache_disk *d, const uint8_t ikey[RS_SHA256_LEN],
					uint8_t kind, const uint8_t *store_key);

/* For backing.c. Makes room for size bytes being written (evicting unpinned
 * entries); -ENOSPC, with nothing evicted, when pinned entries and other
 * reservations leave too little. */
int cache_disk_reserve(struct cache_disk *d, uint64_t size, struct rs_error *err);
void cache_disk_unreserve(struct cache_disk *d, uint64_t size);
/* Renames tmp (a path) into key's place and indexes it, turning a
 * reservation of size into the entry; the reservation is returned whatever
 * happens. A file already there and in use stays (tmp is removed). */
int cache_disk_place_backing(struct cache_disk *d, const char *tmp,
			     const uint8_t key[RS_SHA256_LEN], bool content, uint64_t size,
			     struct rs_error *err);
/* Opens key's backing file if it is indexed and size bytes long, and pins
 * it until cache_disk_unpin_backing. -ENOENT when it is not there (a wrong
 * size is removed). */
int cache_disk_pin_backing(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], bool content,
			   uint64_t size, int *fd_out, struct rs_error *err);
/* Drops one pin; with remove (the content failed a check), also the file
 * fd has open, if that is still the one in place. */
void cache_disk_unpin_backing(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], bool content,
			      int fd, bool remove);
/* The backing store (backing.c) of this tier, made at open. */
int cache_backing_store_new(struct cache_disk *d, const char *backing_dir,
			    struct cache_backing_store **out, struct rs_error *err);
void cache_backing_store_free(struct cache_backing_store *bs);

#endif
