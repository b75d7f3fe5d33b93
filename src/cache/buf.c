// SPDX-License-Identifier: Apache-2.0
/* Reference-counted immutable byte buffers handed out by the cache. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "cache/cache.h"

/* Chunks are MiBs of memory touched once, right after allocation: on huge
 * pages they fault in 2 MiB at a time instead of 4 KiB (on a VM a fault costs
 * microseconds, and a cold read used to spend a third of its time there).
 * Only whole huge pages are advised, so a tail never pins a 2 MiB page. */
#define HUGE_PAGE ((size_t)2 << 20)
#define SMALL_PAGE ((size_t)4096)

/* Freed big buffers kept for reuse, up to this many bytes: a fresh one costs
 * a fault and the zeroing of every page (a fifth of a cold read's CPU),
 * a reused one nothing. */
#define POOL_MAX_BYTES ((size_t)64 << 20)
#define POOL_SLOTS 32

struct cache_buf {
	atomic_uint_fast32_t refs;
	size_t len;
	size_t cap; /* bytes allocated at data (big buffers) */
	uint8_t *data;
	uint8_t inline_data[];
};

/* lock guards the free big buffers and their byte total. */
static struct {
	pthread_mutex_t lock;
	struct pooled {
		uint8_t *data;
		size_t cap;
	} v[POOL_SLOTS];
	size_t n, bytes;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t big_cap(size_t len)
{
	return (len + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

static uint8_t *alloc_big(size_t len, size_t cap)
{
	pthread_mutex_lock(&pool.lock);
	for (size_t i = 0; i < pool.n; i++) {
		if (pool.v[i].cap != cap)
			continue;
		uint8_t *p = pool.v[i].data;
		pool.v[i] = pool.v[--pool.n];
		pool.bytes -= cap;
		pthread_mutex_unlock(&pool.lock);
		return p;
	}
	pthread_mutex_unlock(&pool.lock);
	uint8_t *p = aligned_alloc(HUGE_PAGE, cap);
	/* Only whole huge pages of data: a short tail stays on small pages. */
	if (p)
		(void)madvise(p, len & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
	return p;
}

static void free_big(uint8_t *p, size_t cap)
{
	pthread_mutex_lock(&pool.lock);
	if (pool.n < POOL_SLOTS && pool.bytes + cap <= POOL_MAX_BYTES) {
		pool.v[pool.n++] = (struct pooled){p, cap};
		pool.bytes += cap;
		p = NULL;
	}
	pthread_mutex_unlock(&pool.lock);
	free(p);
}

int cache_buf_new(size_t len, struct cache_buf **out)
{
	*out = NULL;
	if (len > CACHE_MAX_VALUE)
		return -EFBIG;
	bool big = len >= HUGE_PAGE;
	struct cache_buf *b = malloc(sizeof(*b) + (big ? 0 : len));
	if (!b)
		return -ENOMEM;
	b->cap = big ? big_cap(len) : len;
	b->data = big ? alloc_big(len, b->cap) : b->inline_data;
	if (!b->data) {
		free(b);
		return -ENOMEM;
	}
	atomic_init(&b->refs, 1);
	b->len = len;
	*out = b;
	return 0;
}

uint8_t *cache_buf_wdata(struct cache_buf *b)
{
	return b->data;
}

const uint8_t *cache_buf_data(const struct cache_buf *b)
{
	return b->data;
}

size_t cache_buf_len(const struct cache_buf *b)
{
	return b->len;
}

size_t cache_buf_footprint(const struct cache_buf *b)
{
	return b->data == b->inline_data ? b->len : b->cap;
}

struct cache_buf *cache_buf_ref(struct cache_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void cache_buf_unref(struct cache_buf *b)
{
	if (!b)
		return;
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
		if (b->data != b->inline_data)
			free_big(b->data, b->cap);
		free(b);
	}
}
