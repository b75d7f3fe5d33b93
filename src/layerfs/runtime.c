/* SPDX-License-Identifier: Apache-2.0 */
/* The event loop every mounted layer shares: one epoll set holding each FUSE
 * session fd (non-blocking, one-shot), a fixed pool of workers. A worker takes
 * one request, re-arms the fd so another worker can take the next, then
 * processes it: requests of one session run in parallel, and the thread count
 * does not depend on how many layers are mounted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "layerfs_internal.h"

#define WAKE_COOKIE UINT64_MAX

static uint64_t cookie_of(uint32_t slot, uint32_t gen)
{
	return (uint64_t)gen << 32 | slot;
}

static int arm(struct lfs_runtime *rt, int op, int fd, uint64_t cookie)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = cookie};
	return epoll_ctl(rt->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* Enters the session an event names, or NULL when it is stale or closing. */
static struct lfs_layer *enter(struct lfs_runtime *rt, uint64_t cookie, uint32_t *slot_out)
{
	uint32_t slot = (uint32_t)cookie, gen = (uint32_t)(cookie >> 32);
	struct lfs_layer *l = NULL;
	pthread_mutex_lock(&rt->lock);
	if (slot < rt->nslots) {
		struct lfs_slot *s = &rt->slots[slot];
		if (s->gen == gen && s->layer && !s->closing && !s->dead) {
			s->busy++;
			l = s->layer;
		}
	}
	pthread_mutex_unlock(&rt->lock);
	*slot_out = slot;
	return l;
}

static void leave(struct lfs_runtime *rt, uint32_t slot, bool dead)
{
	pthread_mutex_lock(&rt->lock);
	struct lfs_slot *s = &rt->slots[slot];
	s->busy--;
	if (dead)
		s->dead = true;
	if (s->busy == 0 || dead)
		pthread_cond_broadcast(&rt->slot_cond);
	pthread_mutex_unlock(&rt->lock);
}

/* The buffer a worker reads requests into: one per worker, reused for
 * every request of every session, grown when a session needs more. */
struct worker_buf {
	void *mem;
	size_t cap;
};

static bool worker_buf_fit(struct worker_buf *b, size_t need)
{
	if (b->cap >= need)
		return true;
	void *m = realloc(b->mem, need);
	if (!m)
		return false;
	b->mem = m;
	b->cap = need;
	return true;
}

static void *worker_main(void *arg)
{
	struct lfs_runtime *rt = arg;
	struct worker_buf buf = {0};
	for (;;) {
		struct epoll_event ev;
		int n = epoll_wait(rt->epfd, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || ev.data.u64 == WAKE_COOKIE)
			break;
		uint32_t slot;
		struct lfs_layer *l = enter(rt, ev.data.u64, &slot);
		if (!l)
			continue;
		ssize_t res = -ENOMEM;
		if (worker_buf_fit(&buf, rfuse_session_bufsize(l->se)))
			res = rfuse_session_read(l->se, buf.mem, buf.cap);
		bool dead = res < 0 || rfuse_session_exited(l->se);
		if (res == -ENOMEM) {
			/* No buffer: leave the request for a worker that has one. */
			rs_log(RS_LOG_ERROR, "layerfs: %s: no memory for a FUSE request buffer",
			       l->digest);
			dead = false;
		}
		if (!dead && arm(rt, EPOLL_CTL_MOD, l->fuse_fd, ev.data.u64) < 0)
			dead = true;
		if (res > 0 && !dead) {
			rfuse_session_process(l->se, buf.mem, (size_t)res);
			/* DESTROY: the kernel is done with this session. */
			dead = rfuse_session_exited(l->se);
		}
		if (dead)
			rs_log(RS_LOG_INFO, "layerfs: %s: FUSE session at %s ended", l->digest,
			       l->mountpoint ? l->mountpoint : "?");
		leave(rt, slot, dead);
	}
	free(buf.mem);
	return NULL;
}

int lfs_runtime_attach(struct lfs_runtime *rt, struct lfs_layer *l, struct rs_error *err)
{
	int fd = l->fuse_fd;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return rs_err(err, -errno, "making the FUSE fd non-blocking: %s", strerror(errno));
	pthread_mutex_lock(&rt->lock);
	uint32_t slot = 0;
	while (slot < rt->nslots && rt->slots[slot].layer)
		slot++;
	if (slot == rt->nslots) {
		struct lfs_slot *s = realloc(rt->slots, (rt->nslots + 8) * sizeof(*s));
		if (!s) {
			pthread_mutex_unlock(&rt->lock);
			return rs_err(err, -ENOMEM, "out of memory");
		}
		memset(s + rt->nslots, 0, 8 * sizeof(*s));
		rt->slots = s;
		rt->nslots += 8;
	}
	struct lfs_slot *s = &rt->slots[slot];
	s->layer = l;
	s->gen++;
	s->busy = 0;
	s->closing = s->dead = false;
	l->slot = slot;
	uint64_t cookie = cookie_of(slot, s->gen);
	int r = arm(rt, EPOLL_CTL_ADD, fd, cookie);
	if (r < 0)
		s->layer = NULL;
	pthread_mutex_unlock(&rt->lock);
	if (r < 0)
		return rs_err(err, r, "adding the FUSE fd to epoll: %s", strerror(-r));
	return 0;
}

void lfs_runtime_detach(struct lfs_runtime *rt, struct lfs_layer *l)
{
	pthread_mutex_lock(&rt->lock);
	struct lfs_slot *s = &rt->slots[l->slot];
	s->closing = true;
	(void)epoll_ctl(rt->epfd, EPOLL_CTL_DEL, l->fuse_fd, NULL);
	while (s->busy > 0)
		pthread_cond_wait(&rt->slot_cond, &rt->lock);
	s->layer = NULL;
	pthread_mutex_unlock(&rt->lock);
}

bool lfs_runtime_session_alive(struct lfs_runtime *rt, struct lfs_layer *l)
{
	pthread_mutex_lock(&rt->lock);
	struct lfs_slot *s = &rt->slots[l->slot];
	bool alive = s->layer == l && !s->dead && !s->closing;
	pthread_mutex_unlock(&rt->lock);
	return alive;
}

int lfs_runtime_new(const struct lfs_runtime_opts *o, struct lfs_runtime **out,
		    struct rs_error *err)
{
	struct lfs_runtime *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return rs_err(err, -ENOMEM, "out of memory");
	rt->epfd = rt->wake_fd = -1;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_cond_init(&rt->slot_cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->queue_cond, &ca);
	pthread_condattr_destroy(&ca);

	struct cache_opts co = {
	    .mem_budget = o->mem_budget ? o->mem_budget : (size_t)512 << 20,
	    .dir = o->cache_dir,
	    .disk_max_bytes = o->disk_max_bytes ? o->disk_max_bytes : (uint64_t)64 << 30,
	};
	rt->fuse_wishes = (struct rfuse_wishes){
	    .max_request = 1u << 20,
	    .max_readahead = LFS_READAHEAD_KB << 10,
	    .async_read = true,
	    .readdirplus = true,
	    .parallel_dirops = true,
	    .cache_symlinks = true,
	    .no_opendir = true,
	};
	int r = cache_open(&co, &rt->cache, err);
	if (r < 0) {
		rs_error_prefix(err, "chunk cache");
		goto fail;
	}
	rt->epfd = epoll_create1(EPOLL_CLOEXEC);
	rt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rt->epfd < 0 || rt->wake_fd < 0) {
		r = rs_err(err, -errno, "epoll: %s", strerror(errno));
		goto fail;
	}
	/* Level-triggered and never drained: once written, every worker wakes. */
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_COOKIE};
	if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->wake_fd, &ev) < 0) {
		r = rs_err(err, -errno, "epoll: %s", strerror(errno));
		goto fail;
	}
	r = lfs_toc_dir_init(rt, o->cache_dir, err);
	if (r < 0) {
		rs_error_prefix(err, "TOC cache");
		goto fail;
	}
	r = lfs_passthrough_setup(rt, o->passthrough, o->cache_dir, err);
	if (r == 0)
		r = lfs_passthrough_start(rt, err);
	if (r < 0)
		goto fail;
	r = lfs_fetch_start(rt, o->fetchers > 0 ? o->fetchers : 4, err);
	if (r < 0)
		goto fail;
	int want = o->workers > 0 ? o->workers : 16;
	rt->workers = calloc((size_t)want, sizeof(pthread_t));
	if (!rt->workers) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (; rt->nworkers < want; rt->nworkers++) {
		r = -pthread_create(&rt->workers[rt->nworkers], NULL, worker_main, rt);
		if (r < 0) {
			rs_err(err, r, "starting FUSE workers: %s", strerror(-r));
			goto fail;
		}
	}
	*out = rt;
	return 0;
fail:
	lfs_runtime_free(rt);
	return r;
}

void lfs_runtime_free(struct lfs_runtime *rt)
{
	if (!rt)
		return;
	for (;;) {
		pthread_mutex_lock(&rt->lock);
		struct lfs_layer *l = rt->layers;
		pthread_mutex_unlock(&rt->lock);
		if (!l)
			break;
		lfs_layer_close(l);
	}
	lfs_passthrough_stop(rt);
	if (rt->wake_fd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(rt->wake_fd, &one, sizeof(one));
		(void)w;
	}
	for (int i = 0; i < rt->nworkers; i++)
		pthread_join(rt->workers[i], NULL);
	free(rt->workers);
	lfs_fetch_stop(rt);
	if (rt->epfd >= 0)
		close(rt->epfd);
	if (rt->wake_fd >= 0)
		close(rt->wake_fd);
	cache_close(rt->cache);
	free(rt->toc_dir);
	free(rt->slots);
	pthread_cond_destroy(&rt->queue_cond);
	pthread_cond_destroy(&rt->slot_cond);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}
