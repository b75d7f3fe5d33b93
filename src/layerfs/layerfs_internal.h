/* SPDX-License-Identifier: Apache-2.0 */
/* Private to layerfs: the runtime, a layer, the fetch queue, the FUSE ops. */
#ifndef LFS_LAYERFS_INTERNAL_H
#define LFS_LAYERFS_INTERNAL_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>

#include "estargz/estargz.h"
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
};

#define LFS_STREAMS 8
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

	/* FUSE. */
	struct fuse_session *se;
	char *mountpoint;
	dev_t bdi_dev;             /* the mount's device: its readahead in sysfs */
	atomic_bool readahead_low; /* ESGZ_PARTIAL_READAHEAD_KB until complete */
	uint32_t slot;
	bool mounted;

	/* diffid.c: what the whole-layer check expects (set at open, then
	 * read-only) and its result. */
	char *expect_diff_id, *expect_chain_id, *expect_chain_parent;
	atomic_int diffid_state;        /* enum lfs_diffid_state */
	uint8_t diff_id[RS_SHA256_LEN]; /* valid once diffid_state is OK or MISMATCH */
};

/* ---- layer.c -------------------------------------------------------------- */
void lfs_layer_ref(struct lfs_layer *l);
void lfs_layer_unref(struct lfs_layer *l);
int64_t lfs_now_ms(void);
/* Every chunk of l is fetched: a lowered readahead goes back up. */
void lfs_layer_complete(struct lfs_layer *l);

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
/* Gets chunks ids[0..n) (indexes into l->chunks), fetching what is missing,
 * until deadline_ms (monotonic). out[i] receives a reference each; on error
 * every out[i] is NULL. -EIO with a reason on failure or timeout. */
int lfs_chunks_get(struct lfs_layer *l, const uint32_t *ids, uint32_t n, struct cache_buf **out,
		   int64_t deadline_ms, struct rs_error *err);
/* Queues chunk runs of [first, last] not yet fetched at prio, as jobs. */
void lfs_fetch_queue_range(struct lfs_layer *l, uint32_t first, uint32_t last, enum lfs_prio prio);
/* Queues the prefetch set and arms the background fetch. */
void lfs_fetch_layer_start(struct lfs_layer *l);
/* Drops queued jobs of l (its in-flight ones finish on their own). */
void lfs_fetch_cancel(struct lfs_runtime *rt, struct lfs_layer *l);
/* Inflates chunk i from its compressed bytes, checks it against its
 * chunkDigest, caches it and settles it (fetched, or failed: bad data / no
 * memory), waking its readers. */
void lfs_chunk_land_settle(struct lfs_runtime *rt, struct lfs_layer *l, uint32_t i,
			   const uint8_t *comp, enum lfs_prio prio);

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
extern const struct fuse_lowlevel_ops lfs_ops;

/* ---- inode.c -------------------------------------------------------------- */
/* Inode numbers: node id + 1 (the root is FUSE_ROOT_ID), then the status dir and file. */
static inline fuse_ino_t lfs_ino_of(uint32_t node)
{
	return (fuse_ino_t)node + 1;
}
static inline fuse_ino_t lfs_status_dir_ino(const struct lfs_layer *l)
{
	return (fuse_ino_t)l->nnodes + 1;
}
static inline fuse_ino_t lfs_status_file_ino(const struct lfs_layer *l)
{
	return (fuse_ino_t)l->nnodes + 2;
}
/* The node of an inode, or ESGZ_NONE (status inodes, out of range). */
uint32_t lfs_node_of(const struct lfs_layer *l, fuse_ino_t ino);
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
void lfs_fill_status_stat(const struct lfs_layer *l, fuse_ino_t ino, struct stat *st);

/* ---- read.c --------------------------------------------------------------- */
void lfs_do_read(struct lfs_layer *l, fuse_req_t req, uint32_t node, size_t size, off_t off);

/* ---- diffid.c ------------------------------------------------------------- */
enum lfs_diffid_state {
	LFS_DIFFID_OFF,     /* nothing to check against */
	LFS_DIFFID_PENDING, /* checked once the layer is complete */
	LFS_DIFFID_OK,
	LFS_DIFFID_MISMATCH, /* the layer failed: reads get EIO */
};
/* Runs a pending check of a complete layer (blocking: the blob is streamed).
 * A registry failure leaves it pending and re-arms the background fetch. */
void lfs_diffid_check(struct lfs_layer *l);
bool lfs_layer_failed(struct lfs_layer *l);
const char *lfs_diffid_state_name(int s);

#endif
