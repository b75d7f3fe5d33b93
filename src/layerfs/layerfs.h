/* SPDX-License-Identifier: Apache-2.0 */
/* layerfs: eStargz layers from a registry, mounted read-only with FUSE and
 * read lazily.
 *
 * One runtime serves every mounted layer: one epoll loop over all FUSE
 * session fds with a fixed pool of workers, a fixed pool of fetch threads fed
 * by a priority queue (on-demand reads, then readahead, then prefetch, then
 * background), and one chunk cache. Thread count never grows with the number
 * of layers. A layer's bytes are served only after their chunkDigest matched;
 * a read that cannot be served before its deadline gets EIO. */
#ifndef LFS_LAYERFS_H
#define LFS_LAYERFS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry/registry.h"
#include "util/util.h"

/* The hidden status file, relative to the mount root. */
#define LFS_STATUS_DIR ".remote-snapshotter"
#define LFS_STATUS_FILE "status.json"

/* ---- runtime: event loop, workers, fetchers, cache -------------------- */

/* FUSE passthrough: auto (the default: on when the kernel and the cache
 * directory allow it), off, or on (lfs_runtime_new fails when they do not). */
enum lfs_passthrough {
	LFS_PASSTHROUGH_AUTO,
	LFS_PASSTHROUGH_OFF,
	LFS_PASSTHROUGH_ON,
};
/* "auto", "on" or "off"; -EINVAL for anything else. */
int lfs_passthrough_parse(const char *s, enum lfs_passthrough *out);

struct lfs_runtime_opts {
	int workers;             /* FUSE worker threads; 0: 16 */
	int fetchers;            /* fetch threads; 0: 4 */
	size_t mem_budget;       /* decompressed chunks kept in memory; 0: 512 MiB */
	const char *cache_dir;   /* disk store; NULL: memory only */
	uint64_t disk_max_bytes; /* 0: 64 GiB */
	enum lfs_passthrough passthrough;
};

struct lfs_runtime;

int lfs_runtime_new(const struct lfs_runtime_opts *o, struct lfs_runtime **out,
		    struct rs_error *err);
/* Unmounts and closes every layer still open, then stops all threads. */
void lfs_runtime_free(struct lfs_runtime *rt);
/* Whether fully fetched files are served by FUSE passthrough; if not, why
 * (*why_not, owned by rt). */
bool lfs_runtime_passthrough(const struct lfs_runtime *rt, const char **why_not);

/* ---- one layer -------------------------------------------------------- */

struct lfs_layer_opts {
	struct reg_client *client; /* shared; outlives the layer */
	const char *ref;           /* image reference the blob is read through */
	const char *digest;        /* the layer blob's digest */
	int64_t size;              /* blob size; 0: asked with HEAD */
	const char *toc_digest;    /* expected sha256 of the TOC JSON; NULL: not checked */
	/* The verification policy. Without allow_unverified, lfs_layer_open
	 * fails with LFS_EUNVERIFIED when toc_digest is NULL (unless
	 * toc_digest_later) or when the TOC has a regular file's chunk without
	 * chunkDigest (legacy stargz): nothing would tie the served bytes to the
	 * image the operator chose. The daemon's `[verify] allow_unverified`
	 * and `stargz mount --allow-unverified` set it. */
	bool allow_unverified;
	/* The TOC digest is not known at open but will be given to
	 * lfs_layer_toc_digest_check before the mount (a layer opened ahead):
	 * without allow_unverified, lfs_layer_mount fails with LFS_EUNVERIFIED
	 * until that check has passed. */
	bool toc_digest_later;
	int64_t toc_tail;     /* hint: bytes from the TOC's start to the blob's end,
			       * the first request's length; 0 (or implausible): 256 KiB */
	bool no_prefetch;     /* skip the prefetch of the landmarked files */
	bool no_background;   /* skip the background fetch of the whole layer */
	bool defer_fetch;     /* prefetch and background fetch wait for
			       * lfs_layer_fetch_start() (else: at mount) */
	long read_timeout_ms; /* a read not served by then gets EIO; 0: 30000 */
};

struct lfs_layer;

/* lfs_layer_open's and lfs_layer_mount's answer to a layer they cannot
 * verify (see allow_unverified); the message says why. */
#define LFS_EUNVERIFIED (-EPERM)

/* Reads the footer and TOC (at most two range requests), checks the TOC
 * digest when one is given and builds the inode table. Not mounted yet.
 * With a cache dir, the blob's tail (TOC and footer) is kept in
 * CACHE_DIR/toc/<digest hex> and a later open of the same blob reads it
 * from there with no request (checked as the registry's would be; a file
 * that fails is logged, removed, and the registry read instead). */
int lfs_layer_open(struct lfs_runtime *rt, const struct lfs_layer_opts *o, struct lfs_layer **out,
		   struct rs_error *err);
/* -EBADMSG (ESGZ_EDIGEST) unless the layer's TOC JSON has digest
 * ("sha256:<hex>"), for a layer opened before its expected digest was known
 * (toc_digest_later); once it passed, the layer may be mounted. */
int lfs_layer_toc_digest_check(struct lfs_layer *l, const char *digest, struct rs_error *err);
/* Asks for the whole-layer check once every chunk is in (the background
 * fetch then reads the blob once more, uncompressed and hashed): the
 * layer's diffID must be diff_id ("sha256:..."), or, without it, give
 * containerd's chain ID of its snapshot: chain_id = sha256(chain_parent + " "
 * + diffID), or the diffID itself without a parent. A layer that fails is
 * marked failed (state "failed") and every read gets EIO. A chain ID or
 * parent that is not a digest (a snapshot named by hand) is not checked.
 * Before lfs_layer_mount; -EINVAL for a diff_id that is not a digest. */
int lfs_layer_expect_diff_id(struct lfs_layer *l, const char *diff_id, const char *chain_id,
			     const char *chain_parent, struct rs_error *err);
/* Mounts the layer at mountpoint (an existing directory) and starts its
 * prefetch and background fetch. LFS_EUNVERIFIED for a layer opened with
 * toc_digest_later whose TOC digest was never checked (unless
 * allow_unverified). */
int lfs_layer_mount(struct lfs_layer *l, const char *mountpoint, struct rs_error *err);
/* Mounting so that the connection can outlive this process (issue 16). */
struct lfs_mount_opts {
	/* Where this mount keeps what a successor needs to serve its
	 * connection (the INIT outcome, the I/O modes of files the kernel has
	 * open): a directory of this mount's own. NULL: nothing kept. */
	const char *state_dir;
	/* >= 0: the /dev/fuse fd of a connection an earlier process mounted at
	 * mountpoint (kept in an fd store), served as it is: no new mount, the
	 * kernel's node ids and file handles stay valid, and requests the old
	 * process had read are sent again. Needs the state_dir it kept. The
	 * layer owns the fd once this succeeds. -1: mount anew. */
	int adopt_fd;
};
int lfs_layer_mount_with(struct lfs_layer *l, const char *mountpoint,
			 const struct lfs_mount_opts *mo, struct rs_error *err);
/* The mounted connection's fd (to dup into an fd store), or -1. */
int lfs_layer_fuse_fd(const struct lfs_layer *l);
/* Stops serving and frees, leaving the mount and its connection in place
 * for a successor (whoever holds a dup of the fd keeps it alive; without
 * one the kernel ends it). */
void lfs_layer_close_keep(struct lfs_layer *l);
/* A connection an earlier process mounted (fd, taken from an fd store)
 * whose layer cannot be rebuilt: every request is answered with EIO, never
 * left to hang, until lfs_dead_close. state_dir: where that process kept the
 * mount's INIT outcome (NULL: none). The connection owns fd on success. */
struct lfs_dead;
int lfs_dead_adopt(int fd, const char *state_dir, const char *why, struct lfs_dead **out,
		   struct rs_error *err);
/* Stops answering; mountpoint non-NULL: also detaches the mount (else it is
 * left for a successor that holds a copy of the fd). */
void lfs_dead_close(struct lfs_dead *d, const char *mountpoint);
/* Starts the prefetch and the background fetch of a mounted layer opened
 * with defer_fetch (once; later calls do nothing). */
void lfs_layer_fetch_start(struct lfs_layer *l);
/* Unmounts (if mounted), waits for requests in progress and frees. */
void lfs_layer_close(struct lfs_layer *l);

enum lfs_state {
	LFS_STATE_PREFETCHING, /* fetching the files before the landmark */
	LFS_STATE_FETCHING,    /* background fetch of the rest */
	LFS_STATE_LAZY,        /* nothing running: data comes on demand */
	LFS_STATE_COMPLETE,    /* every chunk fetched once */
	LFS_STATE_FAILED,      /* the diffID check failed: reads get EIO */
};

struct lfs_status {
	char digest[RS_DIGEST_STR_LEN];
	int64_t size;          /* blob bytes */
	int64_t data_bytes;    /* compressed bytes of file data */
	int64_t fetched_bytes; /* of data_bytes, fetched and verified at least once */
	double percent;        /* fetched_bytes / data_bytes * 100 (100 when empty) */
	enum lfs_state state;
	bool mounted;          /* the FUSE session is alive */
	bool registry_ok;      /* the last request to the registry succeeded */
	uint64_t fetch_errors; /* failed requests and chunks that failed verification */
	uint64_t verify_errors;
	uint64_t cache_size_mismatches;  /* cache hits of another length, refetched */
	uint64_t entries;                /* nodes of the inode table */
	const char *diff_id_check;       /* off, pending, ok, mismatch */
	char diff_id[RS_DIGEST_STR_LEN]; /* the blob's, once hashed; "" before */
	bool passthrough;                /* the runtime serves complete files by passthrough */
	uint64_t passthrough_opens;      /* opens answered with FOPEN_PASSTHROUGH */
	uint64_t backing_files;          /* backing files this layer built */
	bool toc_from_cache;             /* opened from CACHE_DIR/toc: no registry request */
};

void lfs_layer_status(struct lfs_layer *l, struct lfs_status *out);
const char *lfs_state_name(enum lfs_state s);
/* The status as the one-object JSON the status file serves. */
int lfs_status_json(const struct lfs_status *s, struct rs_buf *out);
/* False once the FUSE session ended (unmounted from outside, or never mounted). */
bool lfs_layer_alive(struct lfs_layer *l);

#endif
