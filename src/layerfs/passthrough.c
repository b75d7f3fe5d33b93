/* SPDX-License-Identifier: Apache-2.0 */
/* FUSE passthrough: a regular file whose chunks are all in is assembled into
 * a backing file in the disk cache (shared by every layer holding the same
 * file), and an OPEN of it answers FOPEN_PASSTHROUGH so that the kernel reads
 * the backing file itself, with no trip to the daemon.
 *
 * The kernel keeps one I/O mode per inode: while an inode has a cached open,
 * a passthrough open of it fails (EIO to the opener), and the other way
 * round; and every passthrough open of an inode must name the same backing
 * file. So a node's opens are counted by mode, a node with cached opens
 * outstanding is opened cached again, and a node keeps one backing id (and a
 * pin on its backing file, so eviction leaves it) until its last passthrough
 * open is released. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs_internal.h"

enum {
	PT_NONE,   /* no backing file built by this layer */
	PT_QUEUED, /* waiting for the builder */
	PT_BUILT,  /* in the store (or was: eviction may have taken it) */
	PT_FAILED, /* not buildable (too large, no space, bad content) */
};

#define BUILD_BATCH 8

/* ---- the probe ------------------------------------------------------------ */

int lfs_passthrough_parse(const char *s, enum lfs_passthrough *out)
{
	if (strcmp(s, "auto") == 0)
		*out = LFS_PASSTHROUGH_AUTO;
	else if (strcmp(s, "on") == 0)
		*out = LFS_PASSTHROUGH_ON;
	else if (strcmp(s, "off") == 0)
		*out = LFS_PASSTHROUGH_OFF;
	else
		return -EINVAL;
	return 0;
}

/* Mounts a throwaway connection next to the cache, answers its INIT and
 * registers a file of the cache directory as a backing file: what every
 * later mount will do, tried once so that the answer is known (and logged)
 * before the first layer. Fills why with the reason on failure. */
static bool probe(struct lfs_runtime *rt, const char *dir, char *why, size_t whylen)
{
	char base[4096];
	if (snprintf(base, sizeof(base), "%s/.passthrough-probe.XXXXXX", dir) >=
	    (int)sizeof(base)) {
		snprintf(why, whylen, "cache directory path too long");
		return false;
	}
	if (!mkdtemp(base)) {
		snprintf(why, whylen, "cannot create a probe directory in %s: %s", dir,
			 strerror(errno));
		return false;
	}
	char mnt[4200], file[4200];
	snprintf(mnt, sizeof(mnt), "%s/mnt", base);
	snprintf(file, sizeof(file), "%s/file", base);
	bool ok = false;
	int ffd = -1, fd = -1;
	struct rfuse_session *se = NULL;
	void *buf = NULL;
	struct rs_error err = {0};
	if (mkdir(mnt, 0700) < 0 || (ffd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		snprintf(why, whylen, "probe files in %s: %s", dir, strerror(errno));
		goto out;
	}
	fd = rfuse_mount(mnt, "stargz-probe", "stargz", &err);
	if (fd < 0) {
		snprintf(why, whylen, "%.400s", err.msg);
		goto out;
	}
	static const struct rfuse_ops no_ops;
	if (rfuse_session_new(fd, &no_ops, NULL, &rt->fuse_wishes, &se, &err) < 0) {
		snprintf(why, whylen, "%.400s", err.msg);
		goto out;
	}
	size_t cap = rfuse_session_bufsize(se);
	buf = malloc(cap);
	if (!buf) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	/* The kernel queues INIT at mount: the first request. */
	ssize_t n = rfuse_session_read(se, buf, cap);
	if (n <= 0) {
		snprintf(why, whylen, "no INIT from the kernel (%s)",
			 strerror(n < 0 ? (int)-n : EIO));
		goto out;
	}
	rfuse_session_process(se, buf, (size_t)n);
	const struct rfuse_granted *g = rfuse_session_granted(se);
	if (!g || !g->passthrough) {
		snprintf(why, whylen,
			 "the kernel did not offer FUSE_PASSTHROUGH at INIT (protocol 7.%u; it "
			 "needs Linux 6.9 or later)",
			 g ? g->minor : 0);
		goto out;
	}
	int id = rfuse_backing_open(se, ffd, &err);
	if (id < 0) {
		snprintf(
		    why, whylen,
		    "%.200s: backing files in %.200s are refused (they need a plain filesystem "
		    "such as ext4 or xfs, not overlayfs or FUSE, and CAP_SYS_ADMIN)",
		    err.msg, dir);
		goto out;
	}
	(void)rfuse_backing_close(se, id, NULL);
	ok = true;
out:
	if (fd >= 0) {
		(void)rfuse_unmount(mnt, NULL);
		close(fd);
	}
	rfuse_session_free(se);
	free(buf);
	if (ffd >= 0)
		close(ffd);
	unlink(file);
	rmdir(mnt);
	rmdir(base);
	return ok;
}

int lfs_passthrough_setup(struct lfs_runtime *rt, enum lfs_passthrough mode, const char *cache_dir,
			  struct rs_error *err)
{
	rt->pt_active = false;
	rt->fuse_wishes.passthrough = false;
	if (mode == LFS_PASSTHROUGH_OFF) {
		snprintf(rt->pt_why, sizeof(rt->pt_why), "passthrough = \"off\"");
	} else if (!cache_dir || !(rt->backing = cache_backing_store_of(rt->cache))) {
		snprintf(rt->pt_why, sizeof(rt->pt_why),
			 "no disk cache (backing files live in the cache directory)");
	} else {
		rt->fuse_wishes.passthrough = true;
		rt->fuse_wishes.max_stack_depth = 1;
		rt->pt_active = probe(rt, cache_dir, rt->pt_why, sizeof(rt->pt_why));
		if (!rt->pt_active)
			rt->fuse_wishes.passthrough = false;
	}
	if (rt->pt_active) {
		rs_log(RS_LOG_INFO,
		       "layerfs: FUSE passthrough active: fully fetched files are read by the "
		       "kernel from backing files in %s",
		       cache_dir);
		return 0;
	}
	if (mode == LFS_PASSTHROUGH_ON)
		return rs_err(err, -EOPNOTSUPP, "passthrough = \"on\", but it cannot work here: %s",
			      rt->pt_why);
	rs_log(RS_LOG_INFO, "layerfs: FUSE passthrough off: %s", rt->pt_why);
	return 0;
}

bool lfs_runtime_passthrough(const struct lfs_runtime *rt, const char **why_not)
{
	if (why_not)
		*why_not = rt->pt_active ? "" : rt->pt_why;
	return rt->pt_active;
}

/* ---- keys ----------------------------------------------------------------- */

/* The store key of node's content. A file with a TOC digest is keyed by it
 * (content key: the store checks the bytes against it). Without one, by the
 * sha256 of its size and its chunks' places and digests, which fixes the
 * content as well (every chunk was checked against its digest), so layers
 * holding the same file still share it; a legacy chunk without a digest
 * makes the key this layer's own. Derived keys live in their own namespace
 * of the store. */
static void backing_key(const struct lfs_layer *l, uint32_t node, uint8_t key[RS_SHA256_LEN],
			bool *content)
{
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	if (n->has_digest) {
		memcpy(key, n->digest, RS_SHA256_LEN);
		*content = true;
		return;
	}
	*content = false;
	uint32_t nc;
	const struct esgz_chunk *fc = esgz_index_chunks(l->idx, node, &nc);
	bool legacy = false;
	for (uint32_t k = 0; k < nc; k++)
		legacy |= !fc[k].has_digest;
	struct rs_sha256 h;
	if (rs_sha256_init(&h) < 0) {
		memset(key, 0, RS_SHA256_LEN);
		return;
	}
	static const char tag_chunks[] = "remote-snapshotter backing: chunks";
	static const char tag_legacy[] = "remote-snapshotter backing: legacy layer node";
	if (legacy) {
		rs_sha256_update(&h, tag_legacy, sizeof(tag_legacy));
		rs_sha256_update(&h, l->layer_key, RS_SHA256_LEN);
		rs_sha256_update(&h, &node, sizeof(node));
	} else {
		rs_sha256_update(&h, tag_chunks, sizeof(tag_chunks));
		rs_sha256_update(&h, &n->size, sizeof(n->size));
		for (uint32_t k = 0; k < nc; k++) {
			rs_sha256_update(&h, &fc[k].file_offset, sizeof(fc[k].file_offset));
			rs_sha256_update(&h, &fc[k].size, sizeof(fc[k].size));
			rs_sha256_update(&h, fc[k].digest, RS_SHA256_LEN);
		}
	}
	rs_sha256_final(&h, key);
	rs_sha256_free(&h);
}

/* ---- the builder ---------------------------------------------------------- */

static bool closing(struct lfs_layer *l)
{
	pthread_mutex_lock(&l->lock);
	bool c = l->closing;
	pthread_mutex_unlock(&l->lock);
	return c;
}

struct lfs_build {
	struct lfs_build *next;
	struct lfs_layer *layer; /* holds a reference */
	uint32_t node;
};

/* Writes node's chunks into a new backing file and commits it. */
static int build_one(struct lfs_layer *l, uint32_t node, struct rs_error *err)
{
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	uint8_t key[RS_SHA256_LEN];
	bool content;
	backing_key(l, node, key, &content);
	struct cache_backing *have = NULL;
	int fd;
	if (cache_backing_open(l->rt->backing, key, content, (uint64_t)n->size, &have, &fd, NULL) ==
	    0) {
		cache_backing_release(have);
		return 0;
	}
	struct cache_backing_writer *w = NULL;
	int r = cache_backing_begin(l->rt->backing, key, content, (uint64_t)n->size, &w, err);
	if (r < 0)
		return r;
	uint32_t nc;
	const struct esgz_chunk *fc = esgz_index_chunks(l->idx, node, &nc);
	for (uint32_t k = 0; k < nc && r == 0; k += BUILD_BATCH) {
		uint32_t m = nc - k < BUILD_BATCH ? nc - k : BUILD_BATCH;
		uint32_t ids[BUILD_BATCH];
		struct cache_buf *bufs[BUILD_BATCH];
		for (uint32_t i = 0; i < m; i++)
			ids[i] = (uint32_t)(&fc[k + i] - l->chunks);
		r = lfs_chunks_get(l, ids, m, bufs, lfs_now_ms() + l->read_timeout_ms, err);
		if (r < 0)
			break;
		for (uint32_t i = 0; i < m; i++) {
			const struct esgz_chunk *c = &fc[k + i];
			if (r == 0 && (int64_t)cache_buf_len(bufs[i]) != c->size)
				r = rs_err(err, -EIO, "a cached chunk does not fit the TOC");
			if (r == 0 && c->size > 0)
				r = cache_backing_pwrite(w, cache_buf_data(bufs[i]),
							 cache_buf_len(bufs[i]),
							 (uint64_t)c->file_offset, err);
			cache_buf_unref(bufs[i]);
		}
	}
	if (r < 0) {
		cache_backing_abort(w);
		return r;
	}
	return cache_backing_commit(w, err);
}

static void *builder_main(void *arg)
{
	struct lfs_runtime *rt = arg;
	pthread_mutex_lock(&rt->pt_lock);
	for (;;) {
		while (!rt->pt_stopping && !rt->pt_head)
			pthread_cond_wait(&rt->pt_cond, &rt->pt_lock);
		if (rt->pt_stopping)
			break;
		struct lfs_build *b = rt->pt_head;
		rt->pt_head = b->next;
		if (!rt->pt_head)
			rt->pt_tail = NULL;
		pthread_mutex_unlock(&rt->pt_lock);
		struct lfs_layer *l = b->layer;
		struct rs_error err = {0};
		int r = 0;
		bool gone = closing(l);
		if (!gone && !lfs_file_bad(l, b->node))
			r = build_one(l, b->node, &err);
		unsigned char st = r == 0 ? PT_BUILT : PT_FAILED;
		if (gone || closing(l))
			st = PT_NONE;
		atomic_store(&l->pt_state[b->node], st);
		if (r < 0)
			rs_log(RS_LOG_DEBUG, "layerfs: %s: no backing file for '%s': %s", l->digest,
			       esgz_node_name(l->idx, esgz_index_node(l->idx, b->node)), err.msg);
		else if (st == PT_BUILT)
			atomic_fetch_add(&l->backing_built, 1);
		lfs_layer_unref(l);
		free(b);
		pthread_mutex_lock(&rt->pt_lock);
	}
	pthread_mutex_unlock(&rt->pt_lock);
	return NULL;
}

int lfs_passthrough_start(struct lfs_runtime *rt, struct rs_error *err)
{
	pthread_mutex_init(&rt->pt_lock, NULL);
	pthread_cond_init(&rt->pt_cond, NULL);
	rt->pt_inited = true;
	if (!rt->pt_active)
		return 0;
	int r = -pthread_create(&rt->pt_builder, NULL, builder_main, rt);
	if (r < 0)
		return rs_err(err, r, "starting the backing-file builder: %s", strerror(-r));
	rt->pt_builder_started = true;
	return 0;
}

void lfs_passthrough_stop(struct lfs_runtime *rt)
{
	if (!rt->pt_inited)
		return;
	pthread_mutex_lock(&rt->pt_lock);
	rt->pt_stopping = true;
	pthread_cond_broadcast(&rt->pt_cond);
	pthread_mutex_unlock(&rt->pt_lock);
	if (rt->pt_builder_started)
		pthread_join(rt->pt_builder, NULL);
	while (rt->pt_head) {
		struct lfs_build *b = rt->pt_head;
		rt->pt_head = b->next;
		lfs_layer_unref(b->layer);
		free(b);
	}
	pthread_cond_destroy(&rt->pt_cond);
	pthread_mutex_destroy(&rt->pt_lock);
}

void lfs_passthrough_queue(struct lfs_layer *l, uint32_t node)
{
	struct lfs_runtime *rt = l->rt;
	if (!rt->pt_active || !l->pt_state || closing(l))
		return;
	unsigned char none = PT_NONE;
	if (!atomic_compare_exchange_strong(&l->pt_state[node], &none, PT_QUEUED))
		return;
	struct lfs_build *b = calloc(1, sizeof(*b));
	if (!b) {
		atomic_store(&l->pt_state[node], PT_NONE);
		return;
	}
	lfs_layer_ref(l);
	b->layer = l;
	b->node = node;
	pthread_mutex_lock(&rt->pt_lock);
	if (rt->pt_tail)
		rt->pt_tail->next = b;
	else
		rt->pt_head = b;
	rt->pt_tail = b;
	pthread_cond_signal(&rt->pt_cond);
	pthread_mutex_unlock(&rt->pt_lock);
}

/* ---- opens ---------------------------------------------------------------- */

struct lfs_pt_node {
	struct lfs_pt_node *next;
	uint32_t node;
	uint32_t cached_opens;
	uint32_t pt_opens;
	int32_t backing_id;
	struct cache_backing *pin;
};

int lfs_passthrough_init(struct lfs_layer *l)
{
	pthread_mutex_init(&l->pt_lock, NULL);
	l->pt_state = calloc(l->nnodes ? l->nnodes : 1, sizeof(*l->pt_state));
	return l->pt_state ? 0 : -ENOMEM;
}

static struct lfs_pt_node **slot_of(struct lfs_layer *l, uint32_t node)
{
	struct lfs_pt_node **pp = &l->pt_nodes[(node * 2654435761u) >> (32 - LFS_PT_BUCKET_BITS)];
	while (*pp && (*pp)->node != node)
		pp = &(*pp)->next;
	return pp;
}

/* Under pt_lock: e's state, for a successor (takeover.c). Written before
 * the kernel hears of an open and after it released one, so that a process
 * killed in between leaves counts too high (a backing id kept, passthrough
 * put off), never too low (an open the kernel would refuse). */
static void persist_locked(struct lfs_layer *l, uint32_t node, const struct lfs_pt_node *e)
{
	if (!l->opens || node >= l->nnodes)
		return;
	struct lfs_open_rec *r = &l->opens[node];
	r->backing_id = e ? e->backing_id : 0;
	r->pt_opens = e ? e->pt_opens : 0;
	r->cached_opens = e ? e->cached_opens : 0;
}

/* Under pt_lock: drops e when nothing holds it any more. */
static void settle_locked(struct lfs_layer *l, struct lfs_pt_node **pp)
{
	struct lfs_pt_node *e = *pp;
	uint32_t node = e->node;
	if (e->pt_opens == 0 && e->backing_id > 0) {
		if (l->se)
			(void)rfuse_backing_close(l->se, e->backing_id, NULL);
		e->backing_id = 0;
		cache_backing_release(e->pin);
		e->pin = NULL;
	}
	if (e->pt_opens == 0 && e->cached_opens == 0) {
		*pp = e->next;
		free(e);
		e = NULL;
	}
	persist_locked(l, node, e);
}

/* The backing id for a new passthrough open of node, or 0 for a cached one. */
static int32_t open_locked(struct lfs_layer *l, uint32_t node, struct lfs_pt_node *e, bool complete)
{
	if (e->cached_opens > 0)
		return 0;
	if (e->backing_id > 0)
		return e->backing_id;
	if (!complete)
		return 0;
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	uint8_t key[RS_SHA256_LEN];
	bool content;
	backing_key(l, node, key, &content);
	struct cache_backing *pin = NULL;
	int fd;
	struct rs_error err = {0};
	/* A file an earlier run left is hashed before use; that is the
	 * builder's work, not an open's (which holds pt_lock): cached now,
	 * passthrough once the builder has checked it. */
	if (!cache_backing_checked(l->rt->backing, key, content) ||
	    cache_backing_open(l->rt->backing, key, content, (uint64_t)n->size, &pin, &fd, &err) <
		0) {
		/* Evicted, never built, or not checked yet: the builder sees
		 * to it for the next open. */
		if (atomic_load(&l->pt_state[node]) != PT_QUEUED &&
		    atomic_load(&l->pt_state[node]) != PT_FAILED)
			atomic_store(&l->pt_state[node], PT_NONE);
		lfs_passthrough_queue(l, node);
		return 0;
	}
	int id = rfuse_backing_open(l->se, fd, &err);
	if (id <= 0) {
		rs_log(RS_LOG_DEBUG, "layerfs: %s: '%s': %s", l->digest, esgz_node_name(l->idx, n),
		       err.msg);
		cache_backing_release(pin);
		return 0;
	}
	e->backing_id = id;
	e->pin = pin;
	return id;
}

uint64_t lfs_passthrough_open(struct lfs_layer *l, uint32_t node, int32_t *backing_id)
{
	*backing_id = 0;
	if (!l->rt->pt_active)
		return LFS_FH_UNTRACKED;
	bool complete = false;
	/* A layer that failed its whole-layer check reads EIO, which only the
	 * daemon can answer. */
	if (esgz_index_node(l->idx, node)->nchunks > 0 && !lfs_layer_failed(l)) {
		pthread_mutex_lock(&l->lock);
		complete = l->file_left[node] == 0;
		pthread_mutex_unlock(&l->lock);
	}
	pthread_mutex_lock(&l->pt_lock);
	struct lfs_pt_node **pp = slot_of(l, node);
	if (!*pp) {
		*pp = calloc(1, sizeof(**pp));
		if (!*pp) {
			pthread_mutex_unlock(&l->pt_lock);
			return LFS_FH_UNTRACKED;
		}
		(*pp)->node = node;
	}
	struct lfs_pt_node *e = *pp;
	int32_t id = open_locked(l, node, e, complete);
	if (id > 0)
		e->pt_opens++;
	else
		e->cached_opens++;
	persist_locked(l, node, e);
	pthread_mutex_unlock(&l->pt_lock);
	if (id > 0)
		atomic_fetch_add(&l->passthrough_opens, 1);
	*backing_id = id;
	return id > 0 ? LFS_FH_PASSTHROUGH : LFS_FH_CACHED;
}

void lfs_passthrough_release(struct lfs_layer *l, uint32_t node, uint64_t fh)
{
	if (fh != LFS_FH_PASSTHROUGH && fh != LFS_FH_CACHED)
		return;
	pthread_mutex_lock(&l->pt_lock);
	struct lfs_pt_node **pp = slot_of(l, node);
	if (*pp) {
		if (fh == LFS_FH_PASSTHROUGH && (*pp)->pt_opens > 0)
			(*pp)->pt_opens--;
		else if (fh == LFS_FH_CACHED && (*pp)->cached_opens > 0)
			(*pp)->cached_opens--;
		settle_locked(l, pp);
	}
	pthread_mutex_unlock(&l->pt_lock);
}

void lfs_passthrough_adopt(struct lfs_layer *l)
{
	if (!l->opens || !l->pt_state)
		return;
	uint32_t kept = 0, closed = 0, repinned = 0;
	pthread_mutex_lock(&l->pt_lock);
	for (uint32_t node = 0; node < l->nnodes; node++) {
		struct lfs_open_rec r = l->opens[node];
		if (r.backing_id <= 0 && r.pt_opens == 0 && r.cached_opens == 0)
			continue;
		const struct esgz_node *n = esgz_index_node(l->idx, node);
		if (n->type != ESGZ_REG) {
			memset(&l->opens[node], 0, sizeof(r));
			continue;
		}
		if (r.backing_id > 0 && r.pt_opens == 0) {
			/* Killed between the last release and the close. */
			if (l->se)
				(void)rfuse_backing_close(l->se, r.backing_id, NULL);
			r.backing_id = 0;
			closed++;
		}
		if (r.pt_opens == 0 && r.cached_opens == 0) {
			memset(&l->opens[node], 0, sizeof(r));
			continue;
		}
		struct lfs_pt_node **pp = slot_of(l, node);
		struct lfs_pt_node *e = *pp ? *pp : calloc(1, sizeof(*e));
		if (!e)
			continue;
		if (!*pp) {
			e->node = node;
			*pp = e;
		}
		e->pt_opens = r.pt_opens;
		e->cached_opens = r.cached_opens;
		e->backing_id = r.pt_opens > 0 ? r.backing_id : 0;
		if (e->backing_id > 0 && l->rt->backing) {
			/* The kernel reads the file it was given whatever happens
			 * to its name; the pin keeps eviction's count right. */
			uint8_t key[RS_SHA256_LEN];
			bool content;
			int fd;
			backing_key(l, node, key, &content);
			if (cache_backing_open(l->rt->backing, key, content, (uint64_t)n->size,
					       &e->pin, &fd, NULL) == 0)
				repinned++;
		}
		persist_locked(l, node, e);
		kept++;
	}
	pthread_mutex_unlock(&l->pt_lock);
	if (kept || closed)
		rs_log(RS_LOG_INFO,
		       "layerfs: %s: took over %u files open (%u backing files pinned again, "
		       "%u unused backing ids closed)",
		       l->digest, kept, repinned, closed);
}

void lfs_passthrough_close(struct lfs_layer *l, bool keep)
{
	if (!l->pt_state)
		return;
	pthread_mutex_lock(&l->pt_lock);
	for (size_t b = 0; b < LFS_PT_BUCKETS; b++)
		while (l->pt_nodes[b]) {
			struct lfs_pt_node *e = l->pt_nodes[b];
			l->pt_nodes[b] = e->next;
			if (e->backing_id > 0 && l->se && !keep)
				(void)rfuse_backing_close(l->se, e->backing_id, NULL);
			cache_backing_release(e->pin);
			free(e);
		}
	pthread_mutex_unlock(&l->pt_lock);
}

void lfs_passthrough_free(struct lfs_layer *l)
{
	if (!l->pt_state)
		return;
	free(l->pt_state);
	l->pt_state = NULL;
	pthread_mutex_destroy(&l->pt_lock);
}
