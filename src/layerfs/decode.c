/* SPDX-License-Identifier: Apache-2.0 */
/* The decode pool: chunks of a streamed run are inflated, checked and
 * cached by a few threads while the fetcher that streams them goes on
 * receiving. One fetcher decoding its run in turn was the limit of a cold
 * sequential read on a fast registry: inflate and sha256 run at ~330 MB/s a
 * core here. The pool has a fixed size (the cores, at most
 * LFS_DECODERS_MAX), whatever the number of mounts. */
#include <errno.h>
#include <string.h>

#include "layerfs_internal.h"

struct lfs_decode {
	struct lfs_decode *next;
	struct lfs_decode_batch *batch;
	struct lfs_layer *layer;
	uint32_t chunk;
	const uint8_t *comp;
	enum lfs_prio prio;
};

static void *decoder_main(void *arg)
{
	struct lfs_runtime *rt = arg;
	pthread_mutex_lock(&rt->decode_lock);
	for (;;) {
		struct lfs_decode *d = rt->decode_head;
		if (!d) {
			if (rt->decode_stopping)
				break;
			pthread_cond_wait(&rt->decode_cond, &rt->decode_lock);
			continue;
		}
		rt->decode_head = d->next;
		if (!rt->decode_head)
			rt->decode_tail = NULL;
		pthread_mutex_unlock(&rt->decode_lock);

		lfs_chunk_land_settle(rt, d->layer, d->chunk, d->comp, d->prio);
		struct lfs_decode_batch *b = d->batch;
		free(d);
		pthread_mutex_lock(&b->lock);
		if (--b->pending == 0)
			pthread_cond_broadcast(&b->done);
		pthread_mutex_unlock(&b->lock);

		pthread_mutex_lock(&rt->decode_lock);
	}
	pthread_mutex_unlock(&rt->decode_lock);
	return NULL;
}

int lfs_decode_start(struct lfs_runtime *rt, struct rs_error *err)
{
	int cores = rs_cpu_count();
	int n = cores > LFS_DECODERS_MAX ? LFS_DECODERS_MAX : cores;
	pthread_mutex_init(&rt->decode_lock, NULL);
	pthread_cond_init(&rt->decode_cond, NULL);
	rt->decoders = calloc((size_t)n, sizeof(pthread_t));
	if (!rt->decoders)
		return rs_err(err, -ENOMEM, "out of memory");
	for (; rt->ndecoders < n; rt->ndecoders++) {
		int r = pthread_create(&rt->decoders[rt->ndecoders], NULL, decoder_main, rt);
		if (r)
			return rs_err(err, -r, "starting decode threads: %s", strerror(r));
	}
	return 0;
}

void lfs_decode_stop(struct lfs_runtime *rt)
{
	if (!rt->decoders)
		return;
	pthread_mutex_lock(&rt->decode_lock);
	rt->decode_stopping = true;
	pthread_cond_broadcast(&rt->decode_cond);
	pthread_mutex_unlock(&rt->decode_lock);
	for (int i = 0; i < rt->ndecoders; i++)
		pthread_join(rt->decoders[i], NULL);
	free(rt->decoders);
	rt->decoders = NULL;
	rt->ndecoders = 0;
	pthread_cond_destroy(&rt->decode_cond);
	pthread_mutex_destroy(&rt->decode_lock);
}

void lfs_decode_batch_init(struct lfs_decode_batch *b)
{
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->done, NULL);
	b->pending = 0;
}

void lfs_decode_submit(struct lfs_runtime *rt, struct lfs_decode_batch *b, struct lfs_layer *l,
		       uint32_t i, const uint8_t *comp, enum lfs_prio prio)
{
	struct lfs_decode *d = rt->ndecoders > 0 ? calloc(1, sizeof(*d)) : NULL;
	if (!d) { /* no pool, or no memory: decode here */
		lfs_chunk_land_settle(rt, l, i, comp, prio);
		return;
	}
	*d = (struct lfs_decode){.batch = b, .layer = l, .chunk = i, .comp = comp, .prio = prio};
	pthread_mutex_lock(&b->lock);
	b->pending++;
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_lock(&rt->decode_lock);
	if (rt->decode_tail)
		rt->decode_tail->next = d;
	else
		rt->decode_head = d;
	rt->decode_tail = d;
	pthread_cond_signal(&rt->decode_cond);
	pthread_mutex_unlock(&rt->decode_lock);
}

void lfs_decode_batch_finish(struct lfs_decode_batch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->pending > 0)
		pthread_cond_wait(&b->done, &b->lock);
	pthread_mutex_unlock(&b->lock);
	pthread_cond_destroy(&b->done);
	pthread_mutex_destroy(&b->lock);
}
