// SPDX-License-Identifier: Apache-2.0
/* Hash table + LRU list keyed by sha256 digests. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "cache/index.h"

#define IDX_INIT_BUCKETS 256

/* The key is a digest: its first bytes are already uniformly distributed. */
static size_t key_hash(const uint8_t key[RS_SHA256_LEN])
{
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	return (size_t)h;
}

int cache_idx_init(struct cache_idx *ix)
{
	memset(ix, 0, sizeof(*ix));
	ix->buckets = calloc(IDX_INIT_BUCKETS, sizeof(*ix->buckets));
	if (!ix->buckets)
		return -ENOMEM;
	ix->nbuckets = IDX_INIT_BUCKETS;
	return 0;
}

void cache_idx_fini(struct cache_idx *ix)
{
	free(ix->buckets);
	memset(ix, 0, sizeof(*ix));
}

struct cache_ent *cache_idx_find(const struct cache_idx *ix, const uint8_t key[RS_SHA256_LEN])
{
	struct cache_ent *e = ix->buckets[key_hash(key) & (ix->nbuckets - 1)];
	while (e && memcmp(e->key, key, RS_SHA256_LEN) != 0)
		e = e->hnext;
	return e;
}

/* Doubles the table; on allocation failure the table stays as it is, only slower. */
static void idx_grow(struct cache_idx *ix)
{
	size_t n;
	if (rs_mul_overflow(ix->nbuckets, (size_t)2, &n) || n > SIZE_MAX / sizeof(*ix->buckets))
		return;
	struct cache_ent **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i < ix->nbuckets; i++) {
		struct cache_ent *e = ix->buckets[i];
		while (e) {
			struct cache_ent *next = e->hnext;
			size_t b = key_hash(e->key) & (n - 1);
			e->hnext = nb[b];
			nb[b] = e;
			e = next;
		}
	}
	free(ix->buckets);
	ix->buckets = nb;
	ix->nbuckets = n;
}

static void lru_unlink(struct cache_idx *ix, struct cache_ent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		ix->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		ix->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct cache_idx *ix, struct cache_ent *e)
{
	e->prev = NULL;
	e->next = ix->head;
	if (ix->head)
		ix->head->prev = e;
	ix->head = e;
	if (!ix->tail)
		ix->tail = e;
}

static void lru_push_tail(struct cache_idx *ix, struct cache_ent *e)
{
	e->next = NULL;
	e->prev = ix->tail;
	if (ix->tail)
		ix->tail->next = e;
	ix->tail = e;
	if (!ix->head)
		ix->head = e;
}

static void idx_link(struct cache_idx *ix, struct cache_ent *e, bool at_tail)
{
	if (ix->count >= ix->nbuckets)
		idx_grow(ix);
	size_t b = key_hash(e->key) & (ix->nbuckets - 1);
	e->hnext = ix->buckets[b];
	ix->buckets[b] = e;
	if (at_tail)
		lru_push_tail(ix, e);
	else
		lru_push_head(ix, e);
	ix->count++;
	ix->bytes += e->size;
}

void cache_idx_insert(struct cache_idx *ix, struct cache_ent *e)
{
	idx_link(ix, e, false);
}

void cache_idx_insert_tail(struct cache_idx *ix, struct cache_ent *e)
{
	idx_link(ix, e, true);
}

void cache_idx_remove(struct cache_idx *ix, struct cache_ent *e)
{
	struct cache_ent **pp = &ix->buckets[key_hash(e->key) & (ix->nbuckets - 1)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
	lru_unlink(ix, e);
	ix->count--;
	ix->bytes -= e->size;
}

void cache_idx_touch(struct cache_idx *ix, struct cache_ent *e)
{
	if (ix->head == e)
		return;
	lru_unlink(ix, e);
	lru_push_head(ix, e);
}
