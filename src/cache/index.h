/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: a hash table of sha256 keys threaded on an LRU list, used by both
 * tiers. Not thread-safe: each tier calls it under its own lock. */
#ifndef RS_CACHE_INDEX_H
#define RS_CACHE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct cache_ent {
	uint8_t key[RS_SHA256_LEN];
	uint64_t size;
	struct cache_ent *hnext;       /* bucket chain */
	struct cache_ent *prev, *next; /* LRU list: head is most recently used */
};

struct cache_idx {
	struct cache_ent **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	uint64_t bytes; /* sum of the entries' sizes */
	struct cache_ent *head, *tail;
};

int cache_idx_init(struct cache_idx *ix);
/* Frees the table; entries are the caller's (walk head..next first). */
void cache_idx_fini(struct cache_idx *ix);
struct cache_ent *cache_idx_find(const struct cache_idx *ix, const uint8_t key[RS_SHA256_LEN]);
/* Links e (key and size set, not already present) as most recently used. */
void cache_idx_insert(struct cache_idx *ix, struct cache_ent *e);
/* The same as least recently used (a file found by the disk tier's scan,
 * older than anything used since the start). */
void cache_idx_insert_tail(struct cache_idx *ix, struct cache_ent *e);
void cache_idx_remove(struct cache_idx *ix, struct cache_ent *e);
void cache_idx_touch(struct cache_idx *ix, struct cache_ent *e);

#endif
