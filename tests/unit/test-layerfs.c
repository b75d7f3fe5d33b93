// SPDX-License-Identifier: Apache-2.0
/* Unit tests of layerfs's read path with no FUSE mount and no registry: the
 * TOC checks a lazy mount relies on, which chunks a read needs, how a reply is
 * put together from cached buffers, and the fetch queues. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layerfs/layerfs_internal.h"

#define D10 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D20 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static int parse(const char *json, struct esgz_index **idx, struct rs_error *err)
{
	memset(err, 0, sizeof(*err));
	*idx = NULL;
	return esgz_index_parse((const uint8_t *)json, strlen(json), NULL, 1 << 30, idx, err);
}

/* ---- TOC consistency: one cache key, one size ------------------------- */

static void test_toc_digest_two_sizes(void **state)
{
	(void)state;
	/* The attack: a 1 MiB file claims the chunk of a 10-byte one. */
	const char *toc = "{\"version\":1,\"entries\":["
			  "{\"name\":\"small\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
			  "\"chunkDigest\":\"" D10 "\"},"
			  "{\"name\":\"big\",\"type\":\"reg\",\"size\":1048576,\"offset\":100,"
			  "\"chunkDigest\":\"" D10 "\"}]}";
	struct esgz_index *idx;
	struct rs_error err;
	assert_int_equal(parse(toc, &idx, &err), -EINVAL);
	assert_null(idx);
	assert_non_null(strstr(err.msg, "'small' and 'big'"));
	assert_non_null(strstr(err.msg, D10));
	assert_non_null(strstr(err.msg, "sizes 10 and 1048576"));
}

static void test_toc_legacy_offset_two_sizes(void **state)
{
	(void)state;
	const char *toc = "{\"version\":1,\"entries\":["
			  "{\"name\":\"a\",\"type\":\"reg\",\"size\":10,\"offset\":100},"
			  "{\"name\":\"b\",\"type\":\"reg\",\"size\":4096,\"offset\":100}]}";
	struct esgz_index *idx;
	struct rs_error err;
	assert_int_equal(parse(toc, &idx, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'a' and 'b'"));
	assert_non_null(strstr(err.msg, "blob offset 100"));
	assert_non_null(strstr(err.msg, "sizes 10 and 4096"));
}

static void test_toc_shared_keys_ok(void **state)
{
	(void)state;
	/* Files of equal content share a chunk; chunks of one member differ by
	 * inner offset; neither is a conflict. */
	const char *toc = "{\"version\":1,\"entries\":["
			  "{\"name\":\"a\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
			  "\"chunkDigest\":\"" D10 "\"},"
			  "{\"name\":\"b\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
			  "\"chunkDigest\":\"" D10 "\"},"
			  "{\"name\":\"c\",\"type\":\"reg\",\"size\":10,\"offset\":300},"
			  "{\"name\":\"d\",\"type\":\"reg\",\"size\":20,\"offset\":300,"
			  "\"innerOffset\":10}]}";
	struct esgz_index *idx;
	struct rs_error err;
	assert_int_equal(parse(toc, &idx, &err), 0);
	esgz_index_free(idx);
}

/* ---- chunk lookup for a read ------------------------------------------ */

/* A 25-byte file in chunks of 10, 10 and 5 bytes. */
static const char *three_chunks =
    "{\"version\":1,\"entries\":["
    "{\"name\":\"f\",\"type\":\"reg\",\"size\":25,\"offset\":100,\"chunkSize\":10,"
    "\"chunkDigest\":\"" D10 "\"},"
    "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":10,\"chunkSize\":10,"
    "\"chunkDigest\":\"" D20 "\"},"
    "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":300,\"chunkOffset\":20,"
    "\"chunkDigest\":\"sha256:3333333333333333333333333333333333333333333333333333333333333333\"},"
    "{\"name\":\"d\",\"type\":\"dir\"}]}";

static void test_read_span(void **state)
{
	(void)state;
	struct esgz_index *idx;
	struct rs_error err;
	assert_int_equal(parse(three_chunks, &idx, &err), 0);
	uint32_t f = esgz_index_lookup(idx, "f", 1), first;
	int64_t end;
	assert_int_not_equal(f, ESGZ_NONE);
	static const struct {
		int64_t off;
		size_t size;
		uint32_t count, first;
		int64_t end;
	} cases[] = {
	    {0, 1, 1, 0, 1},    {0, 10, 1, 0, 10},        {9, 2, 2, 0, 11},   {10, 10, 1, 1, 20},
	    {0, 100, 3, 0, 25}, {24, 4096, 1, 2, 25},     {25, 10, 0, 0, 25}, {5, 0, 0, 0, 5},
	    {-1, 10, 0, 0, -1}, {19, SIZE_MAX, 2, 1, 25},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t n = lfs_read_span(idx, f, cases[i].off, cases[i].size, &first, &end);
		assert_int_equal(n, cases[i].count);
		if (n)
			assert_int_equal(first, cases[i].first);
		assert_int_equal(end, cases[i].end);
	}
	/* Not a regular file: nothing to read. */
	uint32_t d = esgz_index_lookup(idx, "d", 1);
	assert_int_equal(lfs_read_span(idx, d, 0, 10, &first, &end), 0);
	esgz_index_free(idx);
}

/* ---- read assembly ------------------------------------------------------ */

static struct cache_buf *buf_of(char fill, size_t len)
{
	struct cache_buf *b;
	assert_int_equal(cache_buf_new(len, &b), 0);
	memset(cache_buf_wdata(b), fill, len);
	return b;
}

/* The bytes iov[0, n) carry, into out. */
static size_t gather(const struct iovec *iov, size_t n, char *out, size_t cap)
{
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(at + iov[i].iov_len <= cap);
		memcpy(out + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	return at;
}

static void test_read_pieces(void **state)
{
	(void)state;
	struct esgz_chunk fc[3] = {
	    {.file_offset = 0, .size = 10},
	    {.file_offset = 10, .size = 10},
	    {.file_offset = 20, .size = 5},
	};
	struct cache_buf *bufs[3] = {buf_of('a', 10), buf_of('b', 10), buf_of('c', 5)};
	struct iovec iov[7];
	size_t np;
	char out[64];
	assert_int_equal(lfs_read_pieces(fc, 3, bufs, 0, 25, iov, &np), 0);
	assert_int_equal(np, 3);
	assert_int_equal(gather(iov, np, out, sizeof(out)), 25);
	assert_memory_equal(out, "aaaaaaaaaabbbbbbbbbbccccc", 25);
	/* From the middle of one chunk to the middle of the next. */
	assert_int_equal(lfs_read_pieces(fc + 1, 2, bufs + 1, 15, 22, iov, &np), 0);
	assert_int_equal(gather(iov, np, out, sizeof(out)), 7);
	assert_memory_equal(out, "bbbbbcc", 7);

	/* A cached buffer of another length than its chunk: never copied from. */
	struct cache_buf *shorter[3] = {bufs[0], buf_of('s', 4), bufs[2]};
	assert_int_equal(lfs_read_pieces(fc, 3, shorter, 0, 25, iov, &np), -EIO);
	assert_int_equal(np, 0);
	struct cache_buf *longer[3] = {bufs[0], buf_of('l', 1 << 20), bufs[2]};
	assert_int_equal(lfs_read_pieces(fc, 3, longer, 0, 25, iov, &np), -EIO);
	/* ... even when the read would fit in the short one. */
	assert_int_equal(lfs_read_pieces(fc + 1, 1, shorter + 1, 10, 12, iov, &np), -EIO);
	/* A buffer missing where bytes are wanted. */
	struct cache_buf *missing[3] = {bufs[0], NULL, bufs[2]};
	assert_int_equal(lfs_read_pieces(fc, 3, missing, 0, 25, iov, &np), -EIO);
	/* ... but not where the read does not reach. */
	assert_int_equal(lfs_read_pieces(fc, 1, missing, 0, 10, iov, &np), 0);

	/* A hole between chunks reads as zeros. */
	struct esgz_chunk holey[2] = {
	    {.file_offset = 0, .size = 10},
	    {.file_offset = 14, .size = 5},
	};
	struct cache_buf *hb[2] = {bufs[0], bufs[2]};
	assert_int_equal(lfs_read_pieces(holey, 2, hb, 8, 19, iov, &np), 0);
	assert_int_equal(np, 3);
	assert_int_equal(gather(iov, np, out, sizeof(out)), 11);
	assert_memory_equal(out, "aa\0\0\0\0ccccc", 11);
	/* An odd chunk (negative size) is refused, not followed. */
	struct esgz_chunk odd[1] = {{.file_offset = 0, .size = -5}};
	assert_int_equal(lfs_read_pieces(odd, 1, bufs, 0, 5, iov, &np), -EIO);

	for (int i = 0; i < 3; i++)
		cache_buf_unref(bufs[i]);
	cache_buf_unref(shorter[1]);
	cache_buf_unref(longer[1]);
}

/* ---- the fetch queues ---------------------------------------------------- */

static struct lfs_job *job(struct lfs_layer *l, enum lfs_prio p, uint32_t first, uint32_t count)
{
	struct lfs_job *j = calloc(1, sizeof(*j));
	assert_non_null(j);
	j->layer = l;
	j->prio = p;
	j->runs[j->nruns++] = (struct lfs_run){first, count};
	return j;
}

static void test_queue_order_promote_take(void **state)
{
	(void)state;
	struct lfs_job *head[LFS_NPRIO] = {0}, *tail[LFS_NPRIO] = {0};
	struct lfs_layer a = {0}, b = {0};
	struct lfs_job *bg = job(&a, LFS_PRIO_BACKGROUND, 0, 4);
	struct lfs_job *pf = job(&a, LFS_PRIO_PREFETCH, 10, 2);
	struct lfs_job *ra = job(&b, LFS_PRIO_READAHEAD, 20, 1);
	struct lfs_job *od1 = job(&a, LFS_PRIO_ONDEMAND, 30, 1);
	struct lfs_job *od2 = job(&b, LFS_PRIO_ONDEMAND, 40, 1);
	struct lfs_job *all[] = {bg, pf, ra, od1, od2};
	for (int i = 0; i < 5; i++)
		lfs_queue_push(head, tail, all[i], false);

	/* Highest priority first, FIFO within one. */
	assert_ptr_equal(lfs_queue_pop(head, tail, true), od1);
	assert_ptr_equal(lfs_queue_pop(head, tail, true), od2);
	assert_ptr_equal(lfs_queue_pop(head, tail, true), ra);
	/* Low priorities wait while they may not run. */
	assert_null(lfs_queue_pop(head, tail, false));

	/* A reader waiting for chunk 11 of a moves its prefetch job to the front. */
	lfs_queue_push(head, tail, od2, false);
	assert_false(lfs_queue_promote(head, tail, &b, 11)); /* another layer's chunk */
	assert_false(lfs_queue_promote(head, tail, &a, 12)); /* not in a queued job */
	assert_true(lfs_queue_promote(head, tail, &a, 11));
	assert_int_equal(pf->prio, LFS_PRIO_ONDEMAND);
	assert_null(head[LFS_PRIO_PREFETCH]);
	assert_null(tail[LFS_PRIO_PREFETCH]);
	assert_ptr_equal(lfs_queue_pop(head, tail, false), pf);
	assert_ptr_equal(lfs_queue_pop(head, tail, false), od2);
	assert_true(lfs_job_has(bg, 3));
	assert_false(lfs_job_has(bg, 4));

	/* Cancelling a layer takes all its jobs, whatever their queue. */
	lfs_queue_push(head, tail, ra, false);
	lfs_queue_push(head, tail, od1, false);
	lfs_queue_push(head, tail, od2, false);
	struct lfs_job *taken = lfs_queue_take_layer(head, tail, &a);
	assert_ptr_equal(taken, od1);
	assert_ptr_equal(taken->next, bg);
	assert_null(bg->next);
	assert_ptr_equal(lfs_queue_pop(head, tail, true), od2);
	assert_ptr_equal(lfs_queue_pop(head, tail, true), ra);
	assert_null(lfs_queue_pop(head, tail, true));
	for (int p = 0; p < LFS_NPRIO; p++)
		assert_null(tail[p]);
	for (int i = 0; i < 5; i++)
		free(all[i]);
}

/* Jobs built for a layer while it closes are never queued. */
static void test_enqueue_after_close(void **state)
{
	(void)state;
	struct lfs_runtime rt = {0};
	pthread_mutex_init(&rt.lock, NULL);
	pthread_cond_init(&rt.queue_cond, NULL);
	struct lfs_layer *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->rt = &rt;
	atomic_init(&l->refs, 1);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);

	struct lfs_job *j = job(l, LFS_PRIO_READAHEAD, 0, 1);
	lfs_layer_ref(l);
	lfs_fetch_enqueue(&rt, j);
	assert_ptr_equal(rt.queue_head[LFS_PRIO_READAHEAD], j);

	lfs_fetch_cancel(&rt, l); /* as lfs_layer_close does */
	assert_null(rt.queue_head[LFS_PRIO_READAHEAD]);
	assert_int_equal(atomic_load(&l->refs), 1);

	struct lfs_job *late = job(l, LFS_PRIO_ONDEMAND, 1, 1);
	late->next = job(l, LFS_PRIO_BACKGROUND, 2, 1);
	lfs_layer_ref(l);
	lfs_layer_ref(l);
	lfs_fetch_enqueue(&rt, late);
	for (int p = 0; p < LFS_NPRIO; p++)
		assert_null(rt.queue_head[p]);
	assert_int_equal(atomic_load(&l->refs), 1); /* the jobs let go of it */
	lfs_layer_unref(l);
	pthread_cond_destroy(&rt.queue_cond);
	pthread_mutex_destroy(&rt.lock);
}

/* A job of separate runs stays within LFS_JOB_MAX_BYTES of compressed data. */
static void test_job_byte_cap(void **state)
{
	(void)state;
	enum { N = 20 };
	const int64_t mib = 1 << 20;
	struct lfs_runtime rt = {0};
	pthread_mutex_init(&rt.lock, NULL);
	pthread_cond_init(&rt.queue_cond, NULL);
	struct esgz_chunk chunks[N];
	memset(chunks, 0, sizeof(chunks));
	for (int i = 0; i < N; i++) { /* 1 MiB members with gaps: one run each */
		chunks[i].offset = 2 * i * mib;
		chunks[i].comp_end = chunks[i].offset + mib;
		chunks[i].size = 4 * mib;
	}
	struct lfs_layer *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->rt = &rt;
	atomic_init(&l->refs, 1);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->chunks = chunks;
	l->nchunks = N;
	l->chunk_state = calloc(N, 1);
	assert_non_null(l->chunk_state);

	lfs_fetch_queue_range(l, 0, N - 1, LFS_PRIO_READAHEAD);
	uint32_t seen = 0, jobs = 0;
	for (struct lfs_job *j = rt.queue_head[LFS_PRIO_READAHEAD]; j; j = j->next) {
		int64_t bytes = 0;
		for (uint32_t k = 0; k < j->nruns; k++) {
			const struct lfs_run *r = &j->runs[k];
			bytes += chunks[r->first + r->count - 1].comp_end - chunks[r->first].offset;
			seen += r->count;
		}
		assert_true(bytes <= LFS_JOB_MAX_BYTES);
		jobs++;
	}
	assert_int_equal(seen, N);
	assert_int_equal(jobs, 3); /* 8 + 8 + 4 runs of 1 MiB */
	for (uint32_t i = 0; i < N; i++)
		assert_true(l->chunk_state[i] & LFS_CHUNK_INFLIGHT);

	lfs_fetch_cancel(&rt, l);
	assert_int_equal(atomic_load(&l->refs), 1);
	l->chunks = NULL;
	lfs_layer_unref(l);
	pthread_cond_destroy(&rt.queue_cond);
	pthread_mutex_destroy(&rt.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_toc_digest_two_sizes),
	    cmocka_unit_test(test_toc_legacy_offset_two_sizes),
	    cmocka_unit_test(test_toc_shared_keys_ok),
	    cmocka_unit_test(test_read_span),
	    cmocka_unit_test(test_read_pieces),
	    cmocka_unit_test(test_queue_order_promote_take),
	    cmocka_unit_test(test_enqueue_after_close),
	    cmocka_unit_test(test_job_byte_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
