// SPDX-License-Identifier: Apache-2.0
/* Reference-counted immutable byte buffers handed out by the cache. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "cache/cache.h"

struct cache_buf {
	atomic_uint_fast32_t refs;
	size_t len;
	uint8_t data[];
};

int cache_buf_new(size_t len, struct cache_buf **out)
{
	*out = NULL;
	if (len > CACHE_MAX_VALUE)
		return -EFBIG;
	size_t total;
	if (rs_add_overflow(sizeof(struct cache_buf), len, &total))
		return -EFBIG;
	struct cache_buf *b = malloc(total);
	if (!b)
		return -ENOMEM;
	atomic_init(&b->refs, 1);
	b->len = len;
	*out = b;
	return 0;
}

int cache_buf_from(const void *data, size_t len, struct cache_buf **out)
{
	int rc = cache_buf_new(len, out);
	if (rc < 0)
		return rc;
	if (len)
		memcpy((*out)->data, data, len);
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

struct cache_buf *cache_buf_ref(struct cache_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void cache_buf_unref(struct cache_buf *b)
{
	if (!b)
		return;
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}
