// SPDX-License-Identifier: Apache-2.0
/* Loads a TOC into a parser: inflating and hashing on one thread while the
 * parser builds the index on the caller's, so a large TOC costs about the
 * longer of the two instead of their sum. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "index_internal.h"

#define PIECE_SIZE (1u << 20)
#define NPIECES 4
/* Below this many compressed bytes a second thread costs more than it saves. */
#define THREAD_MIN_TOC (256u << 10)

struct toc_pipe {
	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cv;
	uint8_t *buf[NPIECES];
	size_t len[NPIECES];
	unsigned head, count; /* filled pieces: [head, head+count) mod NPIECES */
	bool producer_done;
	bool consumer_failed;
	int producer_rc;
	struct rs_error producer_err;
	/* producer side only */
	const struct esgz_footer *footer;
	const uint8_t *data;
	size_t data_len;
	uint64_t max_size;
	struct rs_sha256 sha;
	unsigned fill; /* piece being filled */
	size_t fill_len;
};

static int pipe_push(struct toc_pipe *p)
{
	pthread_mutex_lock(&p->mu);
	p->len[p->fill] = p->fill_len;
	p->count++;
	pthread_cond_broadcast(&p->cv);
	/* The next piece to fill is free only once fewer than all are queued
	 * (the one the consumer reads still counts). */
	while (p->count == NPIECES && !p->consumer_failed)
		pthread_cond_wait(&p->cv, &p->mu);
	bool stop = p->consumer_failed;
	pthread_mutex_unlock(&p->mu);
	if (stop)
		return -ECANCELED;
	p->fill = (p->fill + 1) % NPIECES;
	p->fill_len = 0;
	return 0;
}

static int pipe_sink(void *ctx, const uint8_t *data, size_t len, struct rs_error *err)
{
	struct toc_pipe *p = ctx;
	rs_sha256_update(&p->sha, data, len);
	while (len > 0) {
		size_t take = PIECE_SIZE - p->fill_len;
		if (take > len)
			take = len;
		memcpy(p->buf[p->fill] + p->fill_len, data, take);
		p->fill_len += take;
		data += take;
		len -= take;
		if (p->fill_len == PIECE_SIZE && pipe_push(p) < 0)
			return rs_err(err, -ECANCELED, "cancelled");
	}
	return 0;
}

static void *producer(void *arg)
{
	struct toc_pipe *p = arg;
	int rc = esgz_toc_stream(p->footer, p->data, p->data_len, p->max_size, pipe_sink, p,
				 &p->producer_err);
	if (rc == 0 && p->fill_len > 0 && pipe_push(p) < 0)
		rc = -ECANCELED;
	pthread_mutex_lock(&p->mu);
	p->producer_rc = rc;
	p->producer_done = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct inline_sink {
	struct esgz_toc_parser *parser;
	struct rs_sha256 *sha;
	struct rs_buf *keep;
};

static int inline_sink_fn(void *ctx, const uint8_t *data, size_t len, struct rs_error *err)
{
	struct inline_sink *s = ctx;
	rs_sha256_update(s->sha, data, len);
	if (s->keep && rs_buf_append(s->keep, data, len) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return esgz_toc_parser_feed(s->parser, data, len, err);
}

static int load_threaded(struct toc_pipe *p, struct esgz_toc_parser *parser, struct rs_buf *keep,
			 struct rs_error *err)
{
	pthread_t th;
	if (pthread_create(&th, NULL, producer, p) != 0)
		return rs_err(err, -EAGAIN, "cannot start the TOC thread");
	int rc = 0;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->count == 0 && !p->producer_done)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->count == 0) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		unsigned i = p->head;
		pthread_mutex_unlock(&p->mu);

		if (keep && rs_buf_append(keep, p->buf[i], p->len[i]) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		if (rc == 0)
			rc = esgz_toc_parser_feed(parser, p->buf[i], p->len[i], err);

		pthread_mutex_lock(&p->mu);
		p->head = (p->head + 1) % NPIECES;
		p->count--;
		if (rc < 0)
			p->consumer_failed = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (rc < 0)
			break;
	}
	pthread_join(th, NULL);
	if (rc == 0 && p->producer_rc < 0) {
		if (err)
			*err = p->producer_err;
		rc = p->producer_rc;
	}
	return rc;
}

int esgz_toc_load(const struct esgz_footer *f, const uint8_t *data, size_t len, uint64_t max_size,
		  struct esgz_toc_parser *parser, uint8_t digest[RS_SHA256_LEN],
		  struct rs_buf *keep, struct rs_error *err)
{
	struct rs_sha256 sha;
	if (rs_sha256_init(&sha) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	if (len < THREAD_MIN_TOC) {
		struct inline_sink s = {parser, &sha, keep};
		int rc = esgz_toc_stream(f, data, len, max_size, inline_sink_fn, &s, err);
		rs_sha256_final(&sha, digest);
		return rc;
	}
	struct toc_pipe p = {.footer = f, .data = data, .data_len = len, .max_size = max_size,
			     .sha = sha};
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	int rc = 0;
	for (int i = 0; i < NPIECES && rc == 0; i++)
		if (!(p.buf[i] = malloc(PIECE_SIZE)))
			rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = load_threaded(&p, parser, keep, err);
	rs_sha256_final(&p.sha, digest);
	for (int i = 0; i < NPIECES; i++)
		free(p.buf[i]);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	return rc;
}
