// SPDX-License-Identifier: Apache-2.0
/* A pool of threads that compress jobs (batches of whole members), each member
 * on its own: one gzip member (libdeflate) or one zstd frame per member. The
 * producer submits jobs in order and waits for them in the same order. */
#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "build_internal.h"

struct esgz_b_pool {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a job was queued, or stop */
	pthread_cond_t done; /* a job finished */
	/* guarded by lock: */
	struct esgz_b_job *head, *tail;
	bool stop;
	/* read-only after creation: */
	bool zstd;
	int level;
	int nthreads;
	pthread_t *threads;
};

struct compressor {
	struct libdeflate_compressor *gz;
	ZSTD_CCtx *zc;
};

static int comp_init(struct compressor *c, bool zstd, int level)
{
	memset(c, 0, sizeof(*c));
	if (zstd)
		c->zc = ZSTD_createCCtx();
	else
		c->gz = libdeflate_alloc_compressor(level);
	return (c->zc || c->gz) ? 0 : -ENOMEM;
}

static void comp_free(struct compressor *c)
{
	if (c->gz)
		libdeflate_free_compressor(c->gz);
	if (c->zc)
		ZSTD_freeCCtx(c->zc);
}

/* Appends one compressed member of in[0..len) to out; returns its size or < 0. */
static ssize_t comp_member(struct compressor *c, int level, const uint8_t *in, size_t len,
			   struct rs_buf *out)
{
	size_t bound = c->gz ? libdeflate_gzip_compress_bound(c->gz, len) : ZSTD_compressBound(len);
	if (rs_buf_reserve(out, bound) < 0)
		return -ENOMEM;
	size_t n;
	if (c->gz) {
		n = libdeflate_gzip_compress(c->gz, in, len, out->data + out->len, bound);
		if (n == 0)
			return -EIO;
	} else {
		n = ZSTD_compressCCtx(c->zc, out->data + out->len, bound, in, len, level);
		if (ZSTD_isError(n))
			return -EIO;
	}
	out->len += n;
	return (ssize_t)n;
}

static void run_job(struct compressor *c, int level, struct esgz_b_job *j)
{
	size_t off = 0;
	j->out.len = 0;
	for (size_t i = 0; i < j->nmembers; i++) {
		ssize_t n = comp_member(c, level, j->in.data + off, j->member_len[i], &j->out);
		if (n < 0) {
			j->rc = (int)n;
			snprintf(j->errmsg, sizeof(j->errmsg), "compressing member %u failed",
				 j->first_member + (unsigned)i);
			return;
		}
		j->member_out[i] = (size_t)n;
		off += j->member_len[i];
	}
}

static void *worker(void *arg)
{
	struct esgz_b_pool *p = arg;
	struct compressor c;
	int init = comp_init(&c, p->zstd, p->level);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		struct esgz_b_job *j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		if (init < 0) {
			j->rc = -ENOMEM;
			snprintf(j->errmsg, sizeof(j->errmsg), "cannot allocate a compressor");
		} else {
			run_job(&c, p->level, j);
		}
		pthread_mutex_lock(&p->lock);
		j->done = true;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	comp_free(&c);
	return NULL;
}

int esgz_b_pool_new(int threads, bool zstd, int level, struct esgz_b_pool **out,
		    struct rs_error *err)
{
	struct esgz_b_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return rs_err(err, -ENOMEM, "out of memory");
	p->zstd = zstd;
	p->level = level;
	p->threads = calloc((size_t)threads, sizeof(*p->threads));
	if (!p->threads) {
		free(p);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int i = 0; i < threads; i++) {
		int r = pthread_create(&p->threads[i], NULL, worker, p);
		if (r != 0) {
			esgz_b_pool_free(p);
			return rs_err(err, -r, "cannot start a compression thread: %s",
				      strerror(r));
		}
		p->nthreads++;
	}
	*out = p;
	return 0;
}

void esgz_b_pool_submit(struct esgz_b_pool *p, struct esgz_b_job *j)
{
	j->done = false;
	j->rc = 0;
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

void esgz_b_pool_wait(struct esgz_b_pool *p, struct esgz_b_job *j)
{
	pthread_mutex_lock(&p->lock);
	while (!j->done)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void esgz_b_pool_free(struct esgz_b_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p);
}

int esgz_b_compress_one(bool zstd, int level, const uint8_t *in, size_t len, struct rs_buf *out,
			struct rs_error *err)
{
	struct compressor c;
	if (comp_init(&c, zstd, level) < 0)
		return rs_err(err, -ENOMEM, "cannot allocate a compressor");
	ssize_t n = comp_member(&c, level, in, len, out);
	comp_free(&c);
	if (n < 0)
		return rs_err(err, (int)n, "compressing the TOC failed");
	return 0;
}
