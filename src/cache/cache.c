// SPDX-License-Identifier: Apache-2.0
/* The two tiers together: memory in front of disk. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cache/disk_internal.h"

struct cache {
	struct cache_mem *mem;
	struct cache_disk *disk; /* NULL for memory only */
	/* lock guards the two counters below; the tiers have their own locks. */
	pthread_mutex_t lock;
	uint64_t hits, misses;
};

int cache_open(const struct cache_opts *opts, struct cache **out, struct rs_error *err)
{
	*out = NULL;
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return rs_err(err, -ENOMEM, "cache: out of memory");
	pthread_mutex_init(&c->lock, NULL);
	int rc = cache_mem_new(opts->mem_budget, &c->mem, err);
	if (rc == 0 && opts->dir)
		rc = cache_disk_open(opts->dir, opts->disk_max_bytes, opts->flags, &c->disk, err);
	if (rc < 0) {
		cache_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void cache_close(struct cache *c)
{
	if (!c)
		return;
	cache_disk_close(c->disk);
	cache_mem_free(c->mem);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void count(struct cache *c, bool hit)
{
	pthread_mutex_lock(&c->lock);
	if (hit)
		c->hits++;
	else
		c->misses++;
	pthread_mutex_unlock(&c->lock);
}

int cache_get(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf **out,
	      struct rs_error *err)
{
	*out = cache_mem_get(c->mem, key);
	if (*out) {
		count(c, true);
		return 0;
	}
	if (!c->disk) {
		count(c, false);
		return -ENOENT;
	}
	int rc = cache_disk_get(c->disk, key, out, err);
	if (rc == 0)
		cache_mem_put(c->mem, key, *out, 0);
	count(c, rc == 0);
	return rc;
}

bool cache_has(struct cache *c, const uint8_t key[RS_SHA256_LEN], uint64_t len)
{
	struct cache_buf *b = cache_mem_get(c->mem, key);
	if (b) {
		bool same = (uint64_t)cache_buf_len(b) == len;
		cache_buf_unref(b);
		if (same)
			return true;
	}
	uint64_t size = 0;
	return c->disk && cache_disk_has(c->disk, key, &size) && size == len;
}

int cache_put(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
	      unsigned put_flags, struct rs_error *err)
{
	cache_mem_put(c->mem, key, b, put_flags);
	if (!c->disk)
		return 0;
	return cache_disk_put(c->disk, key, cache_buf_data(b), cache_buf_len(b), put_flags, err);
}

int cache_put_unkeyed(struct cache *c, const uint8_t key[RS_SHA256_LEN], struct cache_buf *b,
		      unsigned put_flags, struct rs_error *err)
{
	cache_mem_put(c->mem, key, b, put_flags);
	if (!c->disk)
		return 0;
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(cache_buf_data(b), cache_buf_len(b), sum);
	return cache_disk_put_keyed(c->disk, key, sum, cache_buf_data(b), cache_buf_len(b),
				    put_flags, err);
}

void cache_stats(struct cache *c, struct cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->lock);
	out->hits = c->hits;
	out->misses = c->misses;
	pthread_mutex_unlock(&c->lock);
	cache_mem_stats(c->mem, &out->mem);
	if (c->disk)
		cache_disk_stats(c->disk, &out->disk);
}

struct cache_backing_store *cache_backing_store_of(struct cache *c)
{
	return c->disk ? c->disk->backing : NULL;
}
