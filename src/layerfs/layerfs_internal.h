/* SPDX-License-Identifier: Apache-2.0 */
/* Private to layerfs: the runtime, a layer, the fetch queue, the FUSE ops. */
#ifndef LFS_LAYERFS_INTERNAL_H
#define LFS_LAYERFS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "cache/cache.h"
#include "estargz/estargz.h"
#include "fuse/rfuse.h"
#include "layerfs.h"

/* Fetch priorities, highest first. */
enum lfs_prio {
	LFS_PRIO_ONDEMAND,
	LFS_PRIO_READAHEAD,
	LFS_PRIO_PREFETCH,
	LFS_PRIO_BACKGROUND,
	LFS_NPRIO,
};

/* Per-chunk state bits, under layer->lock. */
enum {
	LFS_CHUNK_INFLIGHT = 1u << 0, /* a fetch job holds it */
	LFS_CHUNK_FETCHED = 1u << 1,  /* fetched and verified at least once */
	LFS_CHUNK_FAILED = 1u << 2,   /* the last attempt failed */
	LFS_CHUNK_BADDATA = 1u << 3,  /* the last attempt failed verification */
};

/* Chunks whose compressed bytes follow one another in the blob, read with one range. */
struct lfs_run {
	uint32_t first, count; /* indexes into the index's chunk array */
};

#define LFS_JOB_MAX_RUNS 16
/* A job never reads more than this much compressed data (but always one run). */
#define LFS_JOB_MAX_BYTES ((int64_t)8 << 20)

struct lfs_job {
	struct lfs_job *next;
	struct lfs_layer *layer; /* holds a reference */
	enum lfs_prio prio;      /* the queue it is in (a waiting reader promotes it) */
	bool prefetch;           /* counted in its layer's prefetch_pending */
	uint32_t nruns;
	struct lfs_run runs[LFS_JOB_MAX_RUNS];
};

/* A FUSE session's place in the event loop. Slots are reused; the
 * generation in the epoll cookie tells a stale event from a live one. */
struct lfs_slot {
	struct lfs_layer *layer;
	uint32_t gen;
	uint32_t busy; /* workers inside this session */
	bool closing;
	bool dead; /* the kernel ended the session */
};

struct lfs_runtime {
	struct cache *cache;
	struct rfuse_wishes fuse_wishes; /* the same for every mount */
	int epfd;
	int wake_fd; /* eventfd: tells workers to stop */
	pthread_t *workers;
	int nworkers;
	pthread_t *fetchers;
	int nfetchers;
	bool stopping;

	pthread_mutex_t lock; /* slots, layers list, queues */
	pthread_cond_t slot_cond;
	struct lfs_slot *slots;
	uint32_t nslots;
	struct lfs_layer *layers; /* open layers (for free) */

	pthread_cond_t queue_cond;
	struct lfs_job *queue_head[LFS_NPRIO], *queue_tail[LFS_NPRIO];
	bool bg_busy;    /* one background job at a time */
	int low_running; /* fetchers on prefetch or background jobs */

	/* decode.c: the pool that lands streamed chunks */
	pthread_mutex_t decode_lock;
	pthread_cond_t decode_cond;
	struct lfs_decode *decode_head, *decode_tail;
	pthread_t *decoders;
	int ndecoders;
	bool decode_stopping;
	int fetch_pool;         /* fetchers there will be (nfetchers grows as they start) */
	int64_t last_demand_ms; /* when an on-demand or readahead job last ended */
	uint32_t bg_turn;       /* round robin among layers */

	/* passthrough.c: whether OPEN may answer FOPEN_PASSTHROUGH (fixed at
	 * start), why not, and the backing-file builder's queue (pt_lock). */
	bool pt_active;
	struct cache_backing_store *backing; /* the cache's; NULL: memory only */
	char pt_why[1024];
	bool pt_inited, pt_builder_started, pt_stopping;
	pthread_t pt_builder;
	pthread_mutex_t pt_lock;
	pthread_cond_t pt_cond;
	struct lfs_build *pt_head, *pt_tail;

	char *toc_dir; /* toccache.c: CACHE_DIR/toc; NULL: memory only */
};

#define LFS_STREAMS 8
#define LFS_PT_BUCKET_BITS 6
#define LFS_PT_BUCKETS (1u << LFS_PT_BUCKET_BITS)
/* The kernel readahead of a mount, KiB (but see choose_readahead). */
#define LFS_READAHEAD_KB 1024u

struct lfs_layer {
	struct lfs_runtime *rt;
	atomic_int refs;
	struct lfs_layer *next; /* runtime's list, under rt->lock */

	struct reg_client *client;
	struct reg_ref ref;
	char digest[RS_DIGEST_STR_LEN];
	long read_timeout_ms;
	bool no_prefetch, no_background;
	bool defer_fetch;
	atomic_bool toc_unchecked; /* opened with toc_digest_later, not checked yet */
	bool toc_from_cache;       /* the TOC came from CACHE_DIR/toc, not the registry */
	atomic_bool fetch_started;

	struct esgz_blob *blob;
	const struct esgz_index *idx;
	uint32_t nnodes;
	uint32_t nchunks;
	const struct esgz_chunk *chunks;
	uint32_t prefetch_chunks;         /* chunks before the landmark: the prefetch set */
	bool partial;                     /* some of them are marked noPrefetch */
	int64_t data_bytes;               /* compressed bytes of all chunk data */
	int64_t total_bytes;              /* uncompressed file bytes (statfs) */
	uint8_t layer_key[RS_SHA256_LEN]; /* seeds cache keys of chunks without a digest */

	/* Fetch state, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast when any chunk's fetch ends */
	uint8_t *chunk_state;
	int64_t fetched_bytes;
	uint32_t prefetch_pending; /* prefetch jobs not finished */
	uint32_t bg_cursor;        /* next chunk the background fetch looks at */
	atomic_bool bg_active;     /* the background fetch still has work */
	int64_t bg_retry_at;       /* monotonic ms; background pauses after failures */
	bool registry_ok;
	bool closing; /* readers stop waiting: the layer is being unmounted */
	bool closed;  /* under rt->lock: no job of this layer is queued any more */
	/* Where recent reads of a few files ended: a read starting there is
	 * sequential and earns chunk readahead. */
	struct lfs_stream {
		uint32_t node; /* TOC node + 1; 0: unused */
		bool matched;  /* a read has continued it: a real stream */
		int64_t next;
		uint64_t used; /* stream_clock when last read */
	} streams[LFS_STREAMS];
	uint64_t stream_clock;
	uint64_t fetch_errors, verify_errors;
	uint64_t cache_size_mismatches; /* cache hits of another length than their chunk */
	/* filedigest.c: per node, chunks its digest check waits for (under
	 * lock), and the check's state (atomic: the read path looks). */
	uint32_t *file_left;
	atomic_uchar *file_state;

	/* FUSE. */
	struct rfuse_session *se;
	int fuse_fd; /* /dev/fuse of the mount, -1 before */
	char *mountpoint;
	dev_t bdi_dev;             /* the mount's device: its readahead in sysfs */
	atomic_bool readahead_low; /* ESGZ_PARTIAL_READAHEAD_KB until complete */
	uint32_t slot;
	bool mounted;

	/* diffid.c: what the whole-layer check expects (set at open, then
	 * read-only) and its result. */
	char *expect_diff_id, *expect_chain_id, *expect_chain_parent;
	atomic_int diffid_state;        /* enum lfs_diffid_state */
	uint8_t diff_id[RS_SHA256_LEN]; /* valid once diffid_state is OK or MISMATCH, */
	bool diff_id_known;             /* and this is set (a chain ID's cache marker
					 * vouches for the layer without it) */
	atomic_bool diffid_stream_off;  /* the background fetch goes by chunks */

	/* passthrough.c: per node, the builder's state; the nodes with opens
	 * outstanding, by I/O mode, under pt_lock. */
	atomic_uchar *pt_state;
	pthread_mutex_t pt_lock;
	struct lfs_pt_node *pt_nodes[LFS_PT_BUCKETS];
	atomic_uint_least64_t passthrough_opens; /* opens answered FOPEN_PASSTHROUGH */
	atomic_uint_least64_t backing_built;     /* backing files this layer built */
	uint32_t diffid_mismatches;              /* by the background fetch only */

	/* takeover.c: the state a successor process needs (NULL: none kept);
	 * opens[node] mirrors the node's entry in pt_nodes, under pt_lock. */
	char *state_dir;
	void *opens_map;
	size_t opens_map_size;
	struct lfs_open_rec *opens;

	/* statusfile.c: open handles of the status file, under status_lock. */
	pthread_mutex_t status_lock;
	struct lfs_status_handle *status_handles;
	uint64_t status_next_id;
};

/* ---- layer.c -------------------------------------------------------------- */
void lfs_layer_ref(struct lfs_layer *l);
void lfs_layer_unref(struct lfs_layer *l);
int64_t lfs_now_ms(void);
/* Every chunk of l is fetched: a lowered readahead goes back up. */
void lfs_layer_complete(struct lfs_layer *l);

/* ---- toccache.c: blob tails kept in CACHE_DIR/toc ----------------------- */
/* The last len bytes of a blob of blob_size bytes: its TOC and footer. */
struct lfs_toc_tail {
	uint8_t *data; /* owned (free) */
	size_t len;
	int64_t blob_size;
};
/* At runtime start: rt->toc_dir made (nothing without a cache dir), temp
 * files a crash left removed. */
int lfs_toc_dir_init(struct lfs_runtime *rt, const char *cache_dir, struct rs_error *err);
/* The tail kept for blob: 0; -ENOENT when there is none (or no cache dir);
 * -EBADMSG when the file failed a check (logged, removed); -ENOMEM. */
int lfs_toc_load(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN],
		 struct lfs_toc_tail *out);
/* Why file (a kept tail's whole file) is no good for blob, or NULL with t
 * filled, t->data pointing into file. */
const char *lfs_toc_check(const uint8_t *file, size_t file_size, const uint8_t blob[RS_SHA256_LEN],
			  struct lfs_toc_tail *t, char *why, size_t cap);
/* Writes t as blob's kept tail: temp file, fsync, rename, fsync. */
int lfs_toc_store(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN],
		  const struct lfs_toc_tail *t, struct rs_error *err);
/* Logs why blob's kept tail is no good and removes it. */
void lfs_toc_drop(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN], const char *why);
/* A reader passing reads to inner and keeping a copy of the first few, so
 * that the bytes an esgz_open read need no second request to be kept. */
#define LFS_TOC_REC_SPANS 4
struct lfs_toc_span {
	int64_t off;
	size_t len;
	uint8_t *data;
};
struct lfs_toc_recorder {
	struct esgz_reader *inner;
	unsigned n;
	struct lfs_toc_span spans[LFS_TOC_REC_SPANS];
};
void lfs_toc_recorder_wrap(struct lfs_toc_recorder *rec, struct esgz_reader *inner,
			   struct esgz_reader *out);
/* The blob's bytes from `from` to its end out of what was read: -ENOENT
 * when some were not read, -E2BIG past the bound. */
int lfs_toc_recorder_tail(const struct lfs_toc_recorder *rec, int64_t from,
			  struct lfs_toc_tail *out);
void lfs_toc_recorder_free(struct lfs_toc_recorder *rec);

/* ---- runtime.c ------------------------------------------------------------ */
/* Adds a mounted session to the event loop. */
int lfs_runtime_attach(struct lfs_runtime *rt, struct lfs_layer *l, struct rs_error *err);
/* Takes it out and waits until no worker is inside it. */
void lfs_runtime_detach(struct lfs_runtime *rt, struct lfs_layer *l);
bool lfs_runtime_session_alive(struct lfs_runtime *rt, struct lfs_layer *l);

/* ---- fetch.c -------------------------------------------------------------- */
int lfs_fetch_start(struct lfs_runtime *rt, int nfetchers, struct rs_error *err);
void lfs_fetch_stop(struct lfs_runtime *rt);
/* Compressed bytes chunk i adds to the layer's totals (0 for a chunk sharing
 * the member before it). */
int64_t lfs_chunk_bytes(const struct lfs_layer *l, uint32_t i);
/* The cache key of chunk i. */
void lfs_chunk_key(const struct lfs_layer *l, uint32_t i, uint8_t key[RS_SHA256_LEN]);
/* The cached bytes of chunk i (a reference), or NULL on a miss; a cached
 * value of another length than the chunk is a miss, and counted. */
struct cache_buf *lfs_chunk_cached(struct lfs_layer *l, uint32_t i);
/* Gets chunks ids[0..n) (indexes into l->chunks), fetching what is missing,
 * until deadline_ms (monotonic). out[i] receives a reference each; on error
 * every out[i] is NULL. -EIO with a reason on failure or timeout. */
int lfs_chunks_get(struct lfs_layer *l, const uint32_t *ids, uint32_t n, struct cache_buf **out,
		   int64_t deadline_ms, struct rs_error *err);
/* Queues chunk runs of [first, last] not yet fetched at prio, as jobs. */
void lfs_fetch_queue_range(struct lfs_layer *l, uint32_t first, uint32_t last, enum lfs_prio prio);
/* Queues the prefetch set and arms the background fetch. */
void lfs_fetch_layer_start(struct lfs_layer *l);
/* Queues a list of jobs (linked by next); those of a closed layer are freed. */
void lfs_fetch_enqueue(struct lfs_runtime *rt, struct lfs_job *jobs);
/* Drops queued jobs of l and refuses later ones (its in-flight ones finish
 * on their own). */
void lfs_fetch_cancel(struct lfs_runtime *rt, struct lfs_layer *l);
/* Inflates chunk i from its compressed bytes, checks it against its
 * chunkDigest, caches it and settles it (fetched, or failed: bad data / no
 * memory), waking its readers. */
void lfs_chunk_land_settle(struct lfs_runtime *rt, struct lfs_layer *l, uint32_t i,
			   const uint8_t *comp, enum lfs_prio prio);

/* ---- filedigest.c: the whole-file digest check ---------------------------- */
/* At open: which files wait for a check. -ENOMEM. */
int lfs_file_checks_init(struct lfs_layer *l);
/* Under l->lock, chunk was fetched for the first time: true when its file
 * now has all its chunks and needs lfs_file_check. */
bool lfs_file_chunk_in_locked(struct lfs_layer *l, uint32_t chunk);
/* Hashes the file of chunk from the cache and compares it with its TOC
 * digest; a mismatch marks the file bad (and counts a verify error). */
void lfs_file_check(struct lfs_layer *l, uint32_t chunk);
/* The file failed its digest check: its reads get EIO. */
bool lfs_file_bad(const struct lfs_layer *l, uint32_t node);

/* ---- takeover.c: state kept for a successor ------------------------------ */
/* A node's opens the kernel holds, as a successor must know them. */
struct lfs_open_rec {
	int32_t backing_id;
	uint32_t pt_opens, cached_opens;
	uint32_t reserved;
};
/* Writes the INIT outcome to STATE/fuse.granted (nothing without a state
 * directory). */
int lfs_state_save_granted(struct lfs_layer *l, const struct rfuse_granted *g);
int lfs_state_load_granted(struct lfs_layer *l, struct rfuse_granted *g, struct rs_error *err);
/* Maps STATE/fuse.opens (l->opens). adopting: keep what an earlier process
 * of this layer left (*kept says whether there was such); else zeros. */
int lfs_state_opens_map(struct lfs_layer *l, bool adopting, bool *kept);
void lfs_state_opens_unmap(struct lfs_layer *l);

/* ---- statusfile.c: handles of the status file ---------------------------- */
void lfs_status_handles_init(struct lfs_layer *l);
void lfs_status_handles_free(struct lfs_layer *l);
/* A snapshot of the status as a new handle. -ENOMEM. */
int lfs_status_open(struct lfs_layer *l, uint64_t *fh);
/* Answers a READ of handle fh (one this process did not give: a fresh
 * snapshot). */
void lfs_status_read(struct lfs_layer *l, struct rfuse_req *req, uint64_t fh, uint64_t off,
		     uint32_t size);
void lfs_status_release(struct lfs_layer *l, uint64_t fh);

/* ---- passthrough.c ------------------------------------------------------ */
/* File handles of regular files: how the open was answered. */
#define LFS_FH_UNTRACKED 0   /* passthrough off: nothing counted */
#define LFS_FH_PASSTHROUGH 1 /* FOPEN_PASSTHROUGH */
#define LFS_FH_CACHED 2      /* through the daemon, counted */
/* At runtime start, before any mount: probes the kernel and the cache
 * directory, sets rt->fuse_wishes.passthrough and logs the outcome once.
 * -EOPNOTSUPP when mode is on and it cannot work. */
int lfs_passthrough_setup(struct lfs_runtime *rt, enum lfs_passthrough mode, const char *cache_dir,
			  struct rs_error *err);
int lfs_passthrough_start(struct lfs_runtime *rt, struct rs_error *err);
void lfs_passthrough_stop(struct lfs_runtime *rt);
/* After a takeover, before the first request: the opens an earlier process
 * left (l->opens) become this one's, their backing files pinned again and
 * backing ids no open uses closed. */
void lfs_passthrough_adopt(struct lfs_layer *l);
int lfs_passthrough_init(struct lfs_layer *l);
/* At unmount: drops every pin of l and, unless keep (the connection stays
 * for a successor, which needs them), its backing ids. */
void lfs_passthrough_close(struct lfs_layer *l, bool keep);
void lfs_passthrough_free(struct lfs_layer *l);
/* Every chunk of node is in (and checked): build its backing file. */
void lfs_passthrough_queue(struct lfs_layer *l, uint32_t node);
/* An OPEN of regular file node: the fh to answer and, for a passthrough
 * open, the backing id in *backing_id (else 0). */
uint64_t lfs_passthrough_open(struct lfs_layer *l, uint32_t node, int32_t *backing_id);
void lfs_passthrough_release(struct lfs_layer *l, uint32_t node, uint64_t fh);

/* ---- queue.c: the priority queues, under rt->lock ------------------------ */
/* head and tail are arrays of LFS_NPRIO lists; j goes into list j->prio. */
void lfs_queue_push(struct lfs_job **head, struct lfs_job **tail, struct lfs_job *j, bool front);
/* The first job of the highest priority; none of prefetch or background
 * priority unless low_allowed. */
struct lfs_job *lfs_queue_pop(struct lfs_job **head, struct lfs_job **tail, bool low_allowed);
bool lfs_job_has(const struct lfs_job *j, uint32_t chunk);
/* Moves the job of l holding chunk from a lower list to the front of the
 * on-demand one; false when no queued job holds it. */
bool lfs_queue_promote(struct lfs_job **head, struct lfs_job **tail, const struct lfs_layer *l,
		       uint32_t chunk);
/* Takes every job of l out, in queue order (linked by next). */
struct lfs_job *lfs_queue_take_layer(struct lfs_job **head, struct lfs_job **tail,
				     const struct lfs_layer *l);

/* ---- decode.c --------------------------------------------------------------- */
#define LFS_DECODERS_MAX 4
struct lfs_decode;
/* The chunks one streamed run handed to the pool. */
struct lfs_decode_batch {
	pthread_mutex_t lock;
	pthread_cond_t done;
	unsigned pending;
};
int lfs_decode_start(struct lfs_runtime *rt, struct rs_error *err);
/* After the fetchers are stopped: lands what is queued, ends the threads. */
void lfs_decode_stop(struct lfs_runtime *rt);
void lfs_decode_batch_init(struct lfs_decode_batch *b);
/* Queues chunk i of l for the pool (comp must live until
 * lfs_decode_batch_finish(b)); without a pool it is landed here. */
void lfs_decode_submit(struct lfs_runtime *rt, struct lfs_decode_batch *b, struct lfs_layer *l,
		       uint32_t i, const uint8_t *comp, enum lfs_prio prio);
/* Waits until every chunk submitted with b is settled. */
void lfs_decode_batch_finish(struct lfs_decode_batch *b);

/* ---- ops.c ---------------------------------------------------------------- */
extern const struct rfuse_ops lfs_ops;

/* ---- inode.c -------------------------------------------------------------- */
/* Inode numbers: node id + 1 (the root is FUSE_ROOT_ID), then the status dir and file. */
static inline uint64_t lfs_ino_of(uint32_t node)
{
	return (uint64_t)node + 1;
}
static inline uint64_t lfs_status_dir_ino(const struct lfs_layer *l)
{
	return (uint64_t)l->nnodes + 1;
}
static inline uint64_t lfs_status_file_ino(const struct lfs_layer *l)
{
	return (uint64_t)l->nnodes + 2;
}
/* The node of an inode, or ESGZ_NONE (status inodes, out of range). */
uint32_t lfs_node_of(const struct lfs_layer *l, uint64_t ino);
/* A `.wh.X` file shown as a whiteout. */
bool lfs_is_whiteout(const struct lfs_layer *l, uint32_t node);
/* A directory holding `.wh..wh..opq`. */
bool lfs_is_opaque(const struct lfs_layer *l, uint32_t dir);
/* Name shown for a directory entry; NULL when hidden. *len receives its length. */
const char *lfs_shown_name(const struct lfs_layer *l, uint32_t node, size_t *len);
/* Looks name up in dir as overlayfs sees it; ESGZ_NONE when absent. The result
 * is the node that holds the data (hardlinks followed). */
uint32_t lfs_lookup(const struct lfs_layer *l, uint32_t dir, const char *name);
void lfs_fill_stat(const struct lfs_layer *l, uint32_t node, struct stat *st);
void lfs_fill_status_stat(const struct lfs_layer *l, uint64_t ino, struct stat *st);

/* ---- read.c --------------------------------------------------------------- */
/* Zeros a reply carries at most for one hole (a read past it is short). */
#define LFS_HOLE_PIECE ((size_t)64 << 10)
/* Pieces a reply is written with in one writev (src/fuse takes < 256). */
#define LFS_REPLY_IOV_MAX 128
/* The chunks of regular file node a read of size bytes at off needs: returns
 * their count, the first's index among the file's chunks in *first, and in
 * *end the read's end clamped to the file (*end <= off: nothing to read). */
uint32_t lfs_read_span(const struct esgz_index *idx, uint32_t node, int64_t off, size_t size,
		       uint32_t *first, int64_t *end);
/* The pieces of a reply of file bytes [off, end) from chunks fc[0, count)
 * (bufs[k] holds fc[k]'s bytes): each chunk's covered part, and zeros where no
 * chunk covers (a hole past LFS_HOLE_PIECE ends the reply). iov has room for
 * 2 * count + 1; *np receives the pieces used. -EIO when a buffer needed is
 * missing or is not exactly its chunk's size. */
int lfs_read_pieces(const struct esgz_chunk *fc, uint32_t count, struct cache_buf *const *bufs,
		    int64_t off, int64_t end, struct iovec *iov, size_t *np);
void lfs_do_read(struct lfs_layer *l, struct rfuse_req *req, uint32_t node, size_t size, off_t off);

/* ---- diffid.c ------------------------------------------------------------- */
enum lfs_diffid_state {
	LFS_DIFFID_OFF,     /* nothing to check against */
	LFS_DIFFID_PENDING, /* checked once the layer is complete */
	LFS_DIFFID_OK,
	LFS_DIFFID_MISMATCH, /* the layer failed: reads get EIO */
};
/* Runs a pending check of a complete layer (blocking: the blob is streamed).
 * A registry failure or a first mismatch leaves it pending and re-arms the
 * background fetch. */
void lfs_diffid_check(struct lfs_layer *l);
/* For the background fetch of a layer with a pending check: the check's
 * stream lands the chunks not yet fetched as it passes them (once; false
 * when not wanted, and the fetch goes by chunks). Blocking. */
bool lfs_diffid_stream(struct lfs_layer *l);
bool lfs_layer_failed(struct lfs_layer *l);
const char *lfs_diffid_state_name(int s);

#endif
