// SPDX-License-Identifier: Apache-2.0
/* Memory tier: an LRU of decompressed chunks bounded by a byte budget. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/index.h"

struct mem_ent {
	struct cache_ent e; /* first: a cache_ent * is a mem_ent * */
	struct cache_buf *buf;
	bool once; /* on the use-once list */
	struct mem_ent *once_prev, *once_next;
};

struct cache_mem {
	/* lock guards idx (table, LRU order, byte total), every mem_ent and
	 * the counters below. Buffers' bytes are immutable and need no lock. */
	pthread_mutex_t lock;
	struct cache_idx idx;
	size_t budget;
	uint64_t hits, misses, evictions;
	/* CACHE_PUT_ONCE entries, oldest first, and their bytes: at most
	 * budget / ONCE_SHARE, so that a big file read once from start to end
	 * recycles a few buffers instead of taking (and faulting in) the whole
	 * budget and pushing out everything else. */
	struct mem_ent *once_head, *once_tail;
	uint64_t once_bytes, once_count;
};

#define ONCE_SHARE 8
/* The newest use-once values stay whatever their size: a reader is still
 * going through them (readahead runs a few chunks ahead). */
#define ONCE_KEEP 8

int cache_mem_new(size_t budget, struct cache_mem **out, struct rs_error *err)
{
	*out = NULL;
	struct cache_mem *m = calloc(1, sizeof(*m));
	if (!m)
		return rs_err(err, -ENOMEM, "memory cache: out of memory");
	if (cache_idx_init(&m->idx) < 0) {
		free(m);
		return rs_err(err, -ENOMEM, "memory cache: out of memory");
	}
	pthread_mutex_init(&m->lock, NULL);
	m->budget = budget;
	*out = m;
	return 0;
}

static void ent_free(struct mem_ent *me)
{
	cache_buf_unref(me->buf);
	free(me);
}

void cache_mem_free(struct cache_mem *m)
{
	if (!m)
		return;
	struct cache_ent *e = m->idx.head;
	while (e) {
		struct cache_ent *next = e->next;
		ent_free((struct mem_ent *)e);
		e = next;
	}
	cache_idx_fini(&m->idx);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static void once_unlink(struct cache_mem *m, struct mem_ent *me)
{
	if (!me->once)
		return;
	if (me->once_prev)
		me->once_prev->once_next = me->once_next;
	else
		m->once_head = me->once_next;
	if (me->once_next)
		me->once_next->once_prev = me->once_prev;
	else
		m->once_tail = me->once_prev;
	me->once = false;
	me->once_prev = me->once_next = NULL;
	m->once_bytes -= me->e.size;
	m->once_count--;
}

static void once_append(struct cache_mem *m, struct mem_ent *me)
{
	me->once = true;
	me->once_next = NULL;
	me->once_prev = m->once_tail;
	if (m->once_tail)
		m->once_tail->once_next = me;
	else
		m->once_head = me;
	m->once_tail = me;
	m->once_bytes += me->e.size;
	m->once_count++;
}

/* Under the lock: unlinks e and pushes it on *victims (freed after it). */
static void evict_locked(struct cache_mem *m, struct cache_ent *e, struct cache_ent **victims)
{
	once_unlink(m, (struct mem_ent *)e);
	cache_idx_remove(&m->idx, e);
	e->next = *victims;
	*victims = e;
	m->evictions++;
}

struct cache_buf *cache_mem_get(struct cache_mem *m, const uint8_t key[RS_SHA256_LEN])
{
	struct cache_buf *b = NULL;
	pthread_mutex_lock(&m->lock);
	struct cache_ent *e = cache_idx_find(&m->idx, key);
	if (e) {
		cache_idx_touch(&m->idx, e);
		b = cache_buf_ref(((struct mem_ent *)e)->buf);
		m->hits++;
	} else {
		m->misses++;
	}
	pthread_mutex_unlock(&m->lock);
	return b;
}

void cache_mem_put(struct cache_mem *m, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
		   unsigned put_flags)
{
	bool once = put_flags & CACHE_PUT_ONCE;
	size_t len = cache_buf_footprint(b); /* the budget is memory, not data */
	if (len > m->budget)
		return;
	struct mem_ent *me = calloc(1, sizeof(*me));
	if (!me)
		return; /* a cache may drop a value */
	memcpy(me->e.key, key, RS_SHA256_LEN);
	me->e.size = len;
	me->buf = cache_buf_ref(b);

	/* Victims are unlinked under the lock and released after it. */
	struct cache_ent *victims = NULL;
	pthread_mutex_lock(&m->lock);
	struct cache_ent *old = cache_idx_find(&m->idx, key);
	if (old) {
		cache_idx_touch(&m->idx, old);
		if (!once) /* wanted for more than one pass after all */
			once_unlink(m, (struct mem_ent *)old);
		pthread_mutex_unlock(&m->lock);
		ent_free(me);
		return;
	}
	while (once && m->once_count >= ONCE_KEEP && m->once_bytes + len > m->budget / ONCE_SHARE)
		evict_locked(m, &m->once_head->e, &victims);
	while (m->idx.tail && m->idx.bytes + len > m->budget)
		evict_locked(m, m->idx.tail, &victims);
	cache_idx_insert(&m->idx, &me->e);
	if (once)
		once_append(m, me);
	pthread_mutex_unlock(&m->lock);

	while (victims) {
		struct cache_ent *next = victims->next;
		ent_free((struct mem_ent *)victims);
		victims = next;
	}
}

void cache_mem_stats(struct cache_mem *m, struct cache_mem_stats *out)
{
	pthread_mutex_lock(&m->lock);
	out->hits = m->hits;
	out->misses = m->misses;
	out->evictions = m->evictions;
	out->bytes = m->idx.bytes;
	out->entries = m->idx.count;
	out->budget = m->budget;
	pthread_mutex_unlock(&m->lock);
}
