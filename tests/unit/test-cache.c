// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the chunk cache: memory LRU, disk store, both tiers, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"

/* ---- helpers ---------------------------------------------------------- */

static uint8_t pattern_byte(unsigned id, size_t j)
{
	return (uint8_t)(id * 131u + j * 7u + (j >> 8));
}

/* Value number id of len bytes and its key. */
static struct cache_buf *make_value(unsigned id, size_t len, uint8_t key[RS_SHA256_LEN])
{
	struct cache_buf *b = NULL;
	assert_int_equal(cache_buf_new(len, &b), 0);
	uint8_t *p = cache_buf_wdata(b);
	for (size_t j = 0; j < len; j++)
		p[j] = pattern_byte(id, j);
	rs_sha256(p, len, key);
	return b;
}

static bool value_ok(const struct cache_buf *b, unsigned id, size_t len)
{
	if (cache_buf_len(b) != len)
		return false;
	const uint8_t *p = cache_buf_data(b);
	for (size_t j = 0; j < len; j++)
		if (p[j] != pattern_byte(id, j))
			return false;
	return true;
}

static void key_path(const char *dir, const uint8_t key[RS_SHA256_LEN], char *out, size_t cap)
{
	char d[RS_DIGEST_STR_LEN];
	rs_digest_format(key, d);
	const char *hex = d + strlen("sha256:");
	snprintf(out, cap, "%s/sha256/%.2s/%s", dir, hex, hex);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int setup_dir(void **state)
{
	char *dir = strdup("/tmp/test-cache-XXXXXX");
	if (!dir || !mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int teardown_dir(void **state)
{
	nftw(*state, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

/* ---- memory tier ------------------------------------------------------ */

static void test_mem_lru_budget(void **state)
{
	struct cache_mem *m = NULL;
	struct rs_error err = {0};
	assert_int_equal(cache_mem_new(3000, &m, &err), 0);
	uint8_t k[5][RS_SHA256_LEN];
	for (unsigned i = 0; i < 3; i++) {
		struct cache_buf *b = make_value(i, 1000, k[i]);
		cache_mem_put(m, k[i], b, 0);
		cache_buf_unref(b);
	}
	/* Touch 0 so that 1 is the least recently used. */
	struct cache_buf *g = cache_mem_get(m, k[0]);
	assert_non_null(g);
	cache_buf_unref(g);
	struct cache_buf *b3 = make_value(3, 1000, k[3]);
	cache_mem_put(m, k[3], b3, 0);
	cache_buf_unref(b3);

	assert_null(cache_mem_get(m, k[1]));
	unsigned ids[] = {0, 2, 3};
	for (size_t i = 0; i < 3; i++) {
		g = cache_mem_get(m, k[ids[i]]);
		assert_non_null(g);
		assert_true(value_ok(g, ids[i], 1000));
		cache_buf_unref(g);
	}
	struct cache_mem_stats st;
	cache_mem_stats(m, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.bytes, 3000);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.misses, 1);

	/* Larger than the whole budget: not stored, nothing evicted. */
	struct cache_buf *big = make_value(4, 3001, k[4]);
	cache_mem_put(m, k[4], big, 0);
	cache_buf_unref(big);
	assert_null(cache_mem_get(m, k[4]));
	cache_mem_stats(m, &st);
	assert_int_equal(st.entries, 3);
	assert_true(st.bytes <= 3000);

	/* One value of 2500 bytes pushes out the three older ones. */
	struct cache_buf *b5 = make_value(5, 2500, k[4]);
	cache_mem_put(m, k[4], b5, 0);
	cache_buf_unref(b5);
	cache_mem_stats(m, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.bytes, 2500);
	assert_int_equal(st.evictions, 4);
	cache_mem_free(m);
}

static bool mem_has(struct cache_mem *m, const uint8_t key[RS_SHA256_LEN])
{
	struct cache_buf *g = cache_mem_get(m, key);
	cache_buf_unref(g);
	return g != NULL;
}

/* Use-once values (a sequential reader's readahead) share an eighth of the
 * budget, oldest out first; they never push out ordinary values, the newest
 * eight stay whatever their size, and a plain put makes one ordinary. */
static void test_mem_use_once_share(void **state)
{
	(void)state;
	struct cache_mem *m = NULL;
	assert_int_equal(cache_mem_new(80000, &m, NULL), 0); /* share: 10000 bytes */
	uint8_t normal[5][RS_SHA256_LEN], once[40][RS_SHA256_LEN];
	for (unsigned i = 0; i < 5; i++) {
		struct cache_buf *b = make_value(100 + i, 1000, normal[i]);
		cache_mem_put(m, normal[i], b, 0);
		cache_buf_unref(b);
	}
	for (unsigned i = 0; i < 40; i++) {
		struct cache_buf *b = make_value(200 + i, 1000, once[i]);
		cache_mem_put(m, once[i], b, CACHE_PUT_ONCE);
		cache_buf_unref(b);
	}
	for (unsigned i = 0; i < 5; i++)
		assert_true(mem_has(m, normal[i]));
	assert_false(mem_has(m, once[0]));
	assert_false(mem_has(m, once[29]));
	for (unsigned i = 30; i < 40; i++)
		assert_true(mem_has(m, once[i]));
	struct cache_mem_stats st;
	cache_mem_stats(m, &st);
	assert_int_equal(st.bytes, 5 * 1000 + 10 * 1000);

	/* once[39] asked for again by a plain put: it stays through 40 more */
	struct cache_buf *b = make_value(239, 1000, once[39]);
	cache_mem_put(m, once[39], b, 0);
	cache_buf_unref(b);
	uint8_t more[40][RS_SHA256_LEN];
	for (unsigned i = 0; i < 40; i++) {
		b = make_value(300 + i, 1000, more[i]);
		cache_mem_put(m, more[i], b, CACHE_PUT_ONCE);
		cache_buf_unref(b);
	}
	assert_true(mem_has(m, once[39]));
	assert_false(mem_has(m, once[38]));

	/* values bigger than the share: the newest eight stay */
	uint8_t big[10][RS_SHA256_LEN];
	for (unsigned i = 0; i < 10; i++) {
		b = make_value(400 + i, 5000, big[i]);
		cache_mem_put(m, big[i], b, CACHE_PUT_ONCE);
		cache_buf_unref(b);
	}
	for (unsigned i = 2; i < 10; i++)
		assert_true(mem_has(m, big[i]));
	assert_false(mem_has(m, big[1]));
	cache_mem_free(m);
}

static void test_mem_ref_survives_eviction(void **state)
{
	struct cache_mem *m = NULL;
	assert_int_equal(cache_mem_new(4096, &m, NULL), 0);
	uint8_t k0[RS_SHA256_LEN], k1[RS_SHA256_LEN];
	struct cache_buf *b = make_value(7, 4096, k0);
	cache_mem_put(m, k0, b, 0);
	cache_buf_unref(b);
	struct cache_buf *held = cache_mem_get(m, k0);
	assert_non_null(held);
	b = make_value(8, 4096, k1);
	cache_mem_put(m, k1, b, 0);
	cache_buf_unref(b);
	assert_null(cache_mem_get(m, k0));
	/* Evicted from the cache, still readable by its holder (ASan checks). */
	assert_true(value_ok(held, 7, 4096));
	cache_mem_free(m);
	assert_true(value_ok(held, 7, 4096));
	cache_buf_unref(held);
}

/* ---- disk tier -------------------------------------------------------- */

/* The disk tier builds its index in the background after open: the bound
 * and the counts of files already there hold once that scan is done. */
static void wait_scan(struct cache_disk *d)
{
	struct cache_disk_stats st;
	for (int i = 0; i < 60000; i++) {
		cache_disk_stats(d, &st);
		if (!st.scanning)
			return;
		const struct timespec ms = {.tv_nsec = 1000000};
		nanosleep(&ms, NULL);
	}
	fail_msg("the disk cache's scan did not end in 60 s");
}

static void wait_cache_scan(struct cache *c)
{
	struct cache_stats st;
	for (int i = 0; i < 60000; i++) {
		cache_stats(c, &st);
		if (!st.disk.scanning)
			return;
		const struct timespec ms = {.tv_nsec = 1000000};
		nanosleep(&ms, NULL);
	}
	fail_msg("the disk cache's scan did not end in 60 s");
}

static void disk_put_value_flags(struct cache_disk *d, unsigned id, size_t len, unsigned put_flags,
				 uint8_t key[RS_SHA256_LEN])
{
	struct rs_error err = {0};
	struct cache_buf *b = make_value(id, len, key);
	int rc = cache_disk_put(d, key, cache_buf_data(b), len, put_flags, &err);
	if (rc != 0)
		fail_msg("put: %s", err.msg);
	cache_buf_unref(b);
}

static void disk_put_value(struct cache_disk *d, unsigned id, size_t len,
			   uint8_t key[RS_SHA256_LEN])
{
	disk_put_value_flags(d, id, len, 0, key);
}

static void assert_disk_value(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], unsigned id,
			      size_t len)
{
	struct rs_error err = {0};
	struct cache_buf *b = NULL;
	int rc = cache_disk_get(d, key, &b, &err);
	if (rc != 0)
		fail_msg("get: rc %d: %s", rc, err.msg);
	assert_true(value_ok(b, id, len));
	cache_buf_unref(b);
}

static void test_disk_put_get(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	assert_int_equal(cache_disk_open(dir, 1 << 20, CACHE_FSYNC, &d, &err), 0);
	uint8_t k[RS_SHA256_LEN], other[RS_SHA256_LEN];
	disk_put_value(d, 1, 100000, k);
	assert_disk_value(d, k, 1, 100000);
	char path[512];
	key_path(dir, k, path, sizeof(path));
	assert_true(exists(path));

	struct cache_buf *b = make_value(2, 10, other);
	cache_buf_unref(b);
	b = NULL;
	assert_int_equal(cache_disk_get(d, other, &b, &err), -ENOENT);
	assert_null(b);

	/* An empty value is a valid chunk. */
	uint8_t ke[RS_SHA256_LEN];
	disk_put_value(d, 3, 0, ke);
	assert_disk_value(d, ke, 3, 0);

	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.bytes, 100000);

	/* One process per directory. */
	struct cache_disk *d2 = NULL;
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d2, &err), -EBUSY);
	assert_non_null(strstr(err.msg, dir));
	cache_disk_close(d);
}

/* Chunk-sized values: aligned, pooled buffers written past the page cache,
 * with a tail that is not a whole block, or through it (CACHE_PUT_WRITEBACK). */
static void test_disk_big_values(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	assert_int_equal(cache_disk_open(dir, 64 << 20, 0, &d, &err), 0);
	const size_t lens[] = {(3 << 20) + 123, 4 << 20, (4 << 20) - 1, (2 << 20) + 4096};
	uint8_t keys[4][RS_SHA256_LEN];
	for (unsigned i = 0; i < 4; i++) /* each buffer reuses the last one's memory */
		disk_put_value_flags(d, 10 + i, lens[i], i % 2 ? CACHE_PUT_WRITEBACK : 0, keys[i]);
	for (unsigned i = 0; i < 4; i++) {
		char path[512];
		key_path(dir, keys[i], path, sizeof(path));
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, lens[i]);
	}
	cache_disk_close(d);
	assert_int_equal(cache_disk_open(dir, 64 << 20, 0, &d, &err), 0);
	for (unsigned i = 0; i < 4; i++)
		assert_disk_value(d, keys[i], 10 + i, lens[i]);
	cache_disk_close(d);
}

static void test_disk_restart_reuse(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	uint8_t k[3][RS_SHA256_LEN];
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	wait_scan(d);
	for (unsigned i = 0; i < 3; i++)
		disk_put_value(d, i, 5000 + i, k[i]);
	cache_disk_close(d);

	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	wait_scan(d);
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.bytes, 15003);
	for (unsigned i = 0; i < 3; i++)
		assert_disk_value(d, k[i], i, 5000 + i);
	cache_disk_close(d);
}

static void test_disk_size_bound(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	uint8_t k[6][RS_SHA256_LEN];
	char path[512];
	assert_int_equal(cache_disk_open(dir, 3000, 0, &d, &err), 0);
	wait_scan(d);
	for (unsigned i = 0; i < 3; i++)
		disk_put_value(d, i, 1000, k[i]);
	assert_disk_value(d, k[0], 0, 1000); /* 1 is now the oldest */
	disk_put_value(d, 3, 1000, k[3]);
	key_path(dir, k[1], path, sizeof(path));
	assert_false(exists(path));
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, k[1], &b, &err), -ENOENT);
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.bytes, 3000);
	/* Larger than the bound: not stored. */
	disk_put_value(d, 4, 3001, k[4]);
	assert_int_equal(cache_disk_get(d, k[4], &b, &err), -ENOENT);
	cache_disk_close(d);

	/* After a restart the order comes from the files' times: make 3 the
	 * oldest, then reopen with room for two. */
	key_path(dir, k[3], path, sizeof(path));
	const struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
	assert_int_equal(cache_disk_open(dir, 2000, 0, &d, &err), 0);
	wait_scan(d);
	assert_false(exists(path));
	cache_disk_stats(d, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.evictions, 1);
	assert_disk_value(d, k[0], 0, 1000);
	assert_disk_value(d, k[2], 2, 1000);
	cache_disk_close(d);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t c;
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x01;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static void test_disk_corrupt(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	uint8_t k0[RS_SHA256_LEN], k1[RS_SHA256_LEN];
	char p0[512], p1[512];
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	disk_put_value(d, 0, 4096, k0);
	disk_put_value(d, 1, 4096, k1);
	key_path(dir, k0, p0, sizeof(p0));
	key_path(dir, k1, p1, sizeof(p1));

	/* Corrupted while open. */
	flip_byte(p0, 1234);
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, k0, &b, &err), -ENOENT);
	assert_null(b);
	assert_false(exists(p0));
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.corrupt, 1);
	assert_int_equal(st.entries, 1);
	cache_disk_close(d);

	/* Corrupted (truncated) while closed, found on the next load. */
	assert_int_equal(truncate(p1, 4000), 0);
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	assert_int_equal(cache_disk_get(d, k1, &b, &err), -ENOENT);
	assert_null(b);
	assert_false(exists(p1));
	cache_disk_stats(d, &st);
	assert_int_equal(st.corrupt, 1);
	assert_int_equal(st.entries, 0);
	cache_disk_close(d);
}

static void test_disk_tmp_removed(void **state)
{
	const char *dir = *state;
	struct cache_disk *d = NULL;
	struct rs_error err = {0};
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	wait_scan(d);
	cache_disk_close(d);
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s/sha256/ab/.tmp-ab00-123-0", dir);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs("half a chunk", f);
	fclose(f);
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	wait_scan(d);
	assert_false(exists(tmp));
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.tmp_removed, 1);
	assert_int_equal(st.entries, 0);
	cache_disk_close(d);
}

/* ---- both tiers ------------------------------------------------------- */

static void test_tiers(void **state)
{
	const char *dir = *state;
	struct cache *c = NULL;
	struct rs_error err = {0};
	struct cache_opts o = {.mem_budget = 1 << 20, .dir = dir, .disk_max_bytes = 1 << 20};
	assert_int_equal(cache_open(&o, &c, &err), 0);
	wait_cache_scan(c);
	uint8_t k[RS_SHA256_LEN];
	struct cache_buf *b = make_value(9, 70000, k);
	assert_int_equal(cache_put(c, k, b, 0, &err), 0);
	cache_buf_unref(b);
	b = NULL;
	assert_int_equal(cache_get(c, k, &b, &err), 0);
	assert_true(value_ok(b, 9, 70000));
	cache_buf_unref(b);
	cache_close(c);

	/* After a restart: disk hit, promoted, then a memory hit. */
	assert_int_equal(cache_open(&o, &c, &err), 0);
	wait_cache_scan(c);
	for (int i = 0; i < 2; i++) {
		b = NULL;
		assert_int_equal(cache_get(c, k, &b, &err), 0);
		assert_true(value_ok(b, 9, 70000));
		cache_buf_unref(b);
	}
	uint8_t miss[RS_SHA256_LEN] = {1, 2, 3};
	b = NULL;
	assert_int_equal(cache_get(c, miss, &b, &err), -ENOENT);
	struct cache_stats st;
	cache_stats(c, &st);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.mem.hits, 1);
	assert_int_equal(st.disk.hits, 1);
	assert_int_equal(st.disk.misses, 1);
	assert_int_equal(st.mem.bytes, 70000);
	assert_int_equal(st.disk.bytes, 70000);
	cache_close(c);

	/* Sizes are bounded. */
	b = NULL;
	assert_int_equal(cache_buf_new(CACHE_MAX_VALUE + 1, &b), -EFBIG);
	assert_int_equal(cache_buf_new(SIZE_MAX, &b), -EFBIG);
	assert_null(b);

	/* Memory only. */
	struct cache_opts mo = {.mem_budget = 1 << 20};
	assert_int_equal(cache_open(&mo, &c, &err), 0);
	b = make_value(9, 100, k);
	assert_int_equal(cache_put(c, k, b, 0, &err), 0);
	cache_buf_unref(b);
	b = NULL;
	assert_int_equal(cache_get(c, k, &b, &err), 0);
	cache_buf_unref(b);
	cache_close(c);
}

/* ---- concurrency ------------------------------------------------------ */

#define NVALUES 64
#define NTHREADS 8
#define NOPS 1500

struct shared {
	struct cache *c;
	uint8_t keys[NVALUES][RS_SHA256_LEN];
	size_t lens[NVALUES];
	atomic_int bad;
};

static size_t value_len(unsigned id)
{
	return 1000 + (size_t)id * 977;
}

static void *worker(void *arg)
{
	struct shared *s = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < NOPS; i++) {
		unsigned id = (unsigned)rand_r(&seed) % NVALUES;
		struct rs_error err = {0};
		struct cache_buf *b = NULL;
		int rc = cache_get(s->c, s->keys[id], &b, &err);
		if (rc == 0) {
			if (!value_ok(b, id, s->lens[id]))
				atomic_fetch_add(&s->bad, 1);
			cache_buf_unref(b);
		} else if (rc == -ENOENT) {
			uint8_t k[RS_SHA256_LEN];
			b = make_value(id, s->lens[id], k);
			if (cache_put(s->c, k, b, 0, &err) != 0)
				atomic_fetch_add(&s->bad, 1);
			cache_buf_unref(b);
		} else {
			atomic_fetch_add(&s->bad, 1);
		}
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	static struct shared s;
	memset(&s, 0, sizeof(s));
	/* Budgets far below the working set (about 2 MiB), so both tiers evict. */
	struct cache_opts o = {.mem_budget = 256 << 10, .dir = dir, .disk_max_bytes = 1 << 20};
	assert_int_equal(cache_open(&o, &s.c, &err), 0);
	wait_cache_scan(s.c);
	for (unsigned i = 0; i < NVALUES; i++) {
		s.lens[i] = value_len(i);
		struct cache_buf *b = make_value(i, s.lens[i], s.keys[i]);
		cache_buf_unref(b);
	}
	pthread_t t[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker, &s), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&s.bad), 0);
	struct cache_stats st;
	cache_stats(s.c, &st);
	assert_int_equal(st.hits + st.misses, (uint64_t)NTHREADS * NOPS);
	assert_true(st.hits > 0);
	assert_true(st.mem.evictions > 0);
	assert_true(st.disk.evictions > 0);
	assert_true(st.mem.bytes <= st.mem.budget);
	assert_true(st.disk.bytes <= st.disk.max_bytes);
	assert_int_equal(st.disk.corrupt, 0);
	cache_close(s.c);

	/* What survived on disk is intact after a restart. */
	assert_int_equal(cache_open(&o, &s.c, &err), 0);
	wait_cache_scan(s.c);
	for (unsigned i = 0; i < NVALUES; i++) {
		struct cache_buf *b = NULL;
		int rc = cache_get(s.c, s.keys[i], &b, &err);
		assert_true(rc == 0 || rc == -ENOENT);
		if (rc == 0)
			assert_true(value_ok(b, i, s.lens[i]));
		cache_buf_unref(b);
	}
	cache_stats(s.c, &st);
	assert_int_equal(st.disk.corrupt, 0);
	cache_close(s.c);
}

/* ---- the disk tier under concurrent puts, gets and evictions ------------ */

#define RACE_KEYS 64
#define RACE_LEN 4096
#define RACE_THREADS 8
#define RACE_OPS 5000

struct race {
	struct cache_disk *d;
	uint8_t keys[RACE_KEYS][RS_SHA256_LEN];
	struct cache_buf *vals[RACE_KEYS];
	atomic_int bad;
};

static void *race_worker(void *arg)
{
	struct race *r = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < RACE_OPS; i++) {
		unsigned id = (unsigned)rand_r(&seed) % RACE_KEYS;
		struct rs_error err = {0};
		if (rand_r(&seed) & 1) {
			if (cache_disk_put(r->d, r->keys[id], cache_buf_data(r->vals[id]), RACE_LEN,
					   0, &err) != 0)
				atomic_fetch_add(&r->bad, 1);
			continue;
		}
		struct cache_buf *b = NULL;
		int rc = cache_disk_get(r->d, r->keys[id], &b, &err);
		if ((rc == 0 && !value_ok(b, id, RACE_LEN)) || (rc != 0 && rc != -ENOENT))
			atomic_fetch_add(&r->bad, 1);
		cache_buf_unref(b);
	}
	return NULL;
}

/* Files of the store on disk: how many, their bytes. */
static void disk_files(const char *dir, uint64_t *n, uint64_t *bytes)
{
	*n = *bytes = 0;
	for (int i = 0; i < 256; i++) {
		char sub[512];
		snprintf(sub, sizeof(sub), "%s/sha256/%02x", dir, i);
		DIR *dd = opendir(sub);
		assert_non_null(dd);
		struct dirent *de;
		while ((de = readdir(dd))) {
			if (de->d_name[0] == '.')
				continue;
			char p[1024];
			snprintf(p, sizeof(p), "%s/%s", sub, de->d_name);
			struct stat st;
			assert_int_equal(stat(p, &st), 0);
			(*n)++;
			*bytes += (uint64_t)st.st_size;
		}
		closedir(dd);
	}
}

/* Puts, gets and evictions of the same keys from several threads: the index
 * and the directory must agree afterwards (a file removed for an entry that a
 * put had just renewed, or an entry forgotten while its file was put again,
 * leaves an indexed key without a file, or a file outside the bound). */
static void test_disk_race(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	static struct race r;
	memset(&r, 0, sizeof(r));
	assert_int_equal(cache_disk_open(dir, 3 * RACE_LEN, 0, &r.d, &err), 0);
	wait_scan(r.d);
	for (unsigned i = 0; i < RACE_KEYS; i++)
		r.vals[i] = make_value(i, RACE_LEN, r.keys[i]);
	pthread_t t[RACE_THREADS];
	for (int i = 0; i < RACE_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_worker, &r), 0);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&r.bad), 0);
	struct cache_disk_stats st;
	cache_disk_stats(r.d, &st);
	uint64_t n, bytes;
	disk_files(dir, &n, &bytes);
	if (n != st.entries || bytes != st.bytes)
		fail_msg("index: %llu entries, %llu bytes; disk: %llu files, %llu bytes",
			 (unsigned long long)st.entries, (unsigned long long)st.bytes,
			 (unsigned long long)n, (unsigned long long)bytes);
	assert_true(st.bytes <= st.max_bytes);
	/* Every indexed key reads back. */
	uint64_t hits = 0;
	for (unsigned i = 0; i < RACE_KEYS; i++) {
		struct cache_buf *b = NULL;
		if (cache_disk_get(r.d, r.keys[i], &b, &err) == 0) {
			assert_true(value_ok(b, i, RACE_LEN));
			hits++;
		}
		cache_buf_unref(b);
	}
	assert_int_equal(hits, st.entries);
	cache_disk_close(r.d);
	for (unsigned i = 0; i < RACE_KEYS; i++)
		cache_buf_unref(r.vals[i]);
}

/* ---- a put's rename racing an eviction, made to happen ------------------ */

/* renameat() of the store, interposed: once armed for a name, the call that
 * renames into it waits (bounded) after the rename for another thread's put,
 * so that put runs in the window a put leaves between renaming its file into
 * place and indexing it. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char name[80]; /* armed for this name; "" disarmed */
	bool renamed, other_done;
} hook = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, "", false, false};

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	static int (*real)(int, const char *, int, const char *);
	if (!real)
		real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
	int r = real(olddirfd, oldpath, newdirfd, newpath);
	pthread_mutex_lock(&hook.lock);
	if (hook.name[0] && strstr(newpath, hook.name)) {
		hook.name[0] = '\0';
		hook.renamed = true;
		pthread_cond_broadcast(&hook.cond);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 300 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!hook.other_done &&
		       pthread_cond_timedwait(&hook.cond, &hook.lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&hook.lock);
	return r;
}

struct put_arg {
	struct cache_disk *d;
	const uint8_t *key;
	struct cache_buf *b;
	int rc;
};

static void *put_main(void *arg)
{
	struct put_arg *a = arg;
	struct rs_error err = {0};
	a->rc = cache_disk_put(a->d, a->key, cache_buf_data(a->b), cache_buf_len(a->b), 0, &err);
	pthread_mutex_lock(&hook.lock);
	hook.other_done = true;
	pthread_cond_broadcast(&hook.cond);
	pthread_mutex_unlock(&hook.lock);
	return NULL;
}

/* K is the least recently used entry and is put again; while its new file
 * is being renamed into place another put (of J) takes the store over its
 * bound. K, just written, must stay and read back; the old code unlinked
 * the new file as the old entry's eviction and then indexed K without a file. */
static void test_disk_put_rename_vs_evict(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	assert_int_equal(cache_disk_open(dir, 2 * 4096, 0, &d, &err), 0);
	wait_scan(d);
	uint8_t kk[RS_SHA256_LEN], ka[RS_SHA256_LEN], kj[RS_SHA256_LEN];
	struct cache_buf *vk = make_value(1, 4096, kk), *va = make_value(2, 4096, ka),
			 *vj = make_value(3, 4096, kj);
	assert_int_equal(cache_disk_put(d, kk, cache_buf_data(vk), 4096, 0, &err), 0);
	assert_int_equal(cache_disk_put(d, ka, cache_buf_data(va), 4096, 0, &err), 0);

	char hex[RS_DIGEST_STR_LEN];
	rs_digest_format(kk, hex);
	pthread_mutex_lock(&hook.lock);
	snprintf(hook.name, sizeof(hook.name), "/%s", hex + strlen("sha256:"));
	hook.renamed = hook.other_done = false;
	pthread_mutex_unlock(&hook.lock);

	struct put_arg pk = {d, kk, vk, -1}, pj = {d, kj, vj, -1};
	pthread_t tk, tj;
	assert_int_equal(pthread_create(&tk, NULL, put_main, &pk), 0);
	pthread_mutex_lock(&hook.lock);
	while (!hook.renamed)
		pthread_cond_wait(&hook.cond, &hook.lock);
	hook.other_done = false; /* K's own put_main has not returned yet */
	pthread_mutex_unlock(&hook.lock);
	assert_int_equal(pthread_create(&tj, NULL, put_main, &pj), 0);
	pthread_join(tj, NULL);
	pthread_join(tk, NULL);
	assert_int_equal(pk.rc, 0);
	assert_int_equal(pj.rc, 0);

	struct cache_buf *b = NULL;
	int rc = cache_disk_get(d, kk, &b, &err);
	if (rc != 0)
		fail_msg("K, put last but one, does not read back: %d", rc);
	assert_true(value_ok(b, 1, 4096));
	cache_buf_unref(b);
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	uint64_t n, bytes;
	disk_files(dir, &n, &bytes);
	assert_int_equal(n, st.entries);
	assert_int_equal(bytes, st.bytes);
	cache_disk_close(d);
	cache_buf_unref(vk);
	cache_buf_unref(va);
	cache_buf_unref(vj);
}

/* A legacy chunk: its key is of the layer and offset, not of its bytes. It
 * is stored with its content digest, survives a reopen and is checked
 * against that digest: a file changed on disk is not served. */
static void test_disk_keyed(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	uint8_t digest[RS_SHA256_LEN], key[RS_SHA256_LEN];
	struct cache_buf *v = make_value(9, 5000, digest);
	rs_sha256("layer sha256:ab.. offset 123", 28, key);
	assert_int_equal(cache_disk_put_keyed(d, key, digest, cache_buf_data(v), 5000, 0, &err), 0);
	assert_disk_value(d, key, 9, 5000);
	cache_disk_close(d);

	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	assert_disk_value(d, key, 9, 5000);
	struct cache_disk_stats st;
	cache_disk_stats(d, &st);
	assert_int_equal(st.corrupt, 0);
	assert_int_equal(st.entries, 1);
	cache_disk_close(d);

	/* One byte changed on disk: a miss, counted as corrupt, file deleted. */
	char kh[RS_DIGEST_STR_LEN], dh[RS_DIGEST_STR_LEN], path[512];
	rs_digest_format(key, kh);
	rs_digest_format(digest, dh);
	snprintf(path, sizeof(path), "%s/sha256/%.2s/%s.%s", dir, kh + 7, kh + 7, dh + 7);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\xff", 1, 100), 1);
	close(fd);
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, key, &b, &err), -ENOENT);
	cache_disk_stats(d, &st);
	assert_int_equal(st.corrupt, 1);
	assert_false(exists(path));
	cache_disk_close(d);
	cache_buf_unref(v);
}

/* ---- backing files ------------------------------------------------------ */

static void sha_of(const void *data, size_t len, uint8_t out[RS_SHA256_LEN])
{
	struct rs_sha256 h;
	assert_int_equal(rs_sha256_init(&h), 0);
	rs_sha256_update(&h, data, len);
	rs_sha256_final(&h, out);
	rs_sha256_free(&h);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_files_in(const char *dir, const char *sub)
{
	char p[4300];
	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	return count_files(p);
}

/* A file with a hole: [0, 100) and [5000, 5100) written, zeros between. */
static void backing_content(uint8_t *buf, size_t len)
{
	memset(buf, 0, len);
	for (size_t i = 0; i < 100; i++)
		buf[i] = (uint8_t)(i + 1), buf[5000 + i] = (uint8_t)(255 - i);
}

static int write_backing(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			 bool content, const uint8_t *buf, size_t len, struct rs_error *err)
{
	struct cache_backing_writer *w = NULL;
	int r = cache_backing_begin(bs, key, content, len, &w, err);
	if (r < 0)
		return r;
	if ((r = cache_backing_pwrite(w, buf, 100, 0, err)) < 0 ||
	    (r = cache_backing_pwrite(w, buf + 5000, 100, 5000, err)) < 0) {
		cache_backing_abort(w);
		return r;
	}
	return cache_backing_commit(w, err);
}

static void test_backing_store(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	struct cache_backing_store *bs = cache_disk_backing(d);
	uint8_t buf[5100], key[RS_SHA256_LEN], wrong[RS_SHA256_LEN];
	backing_content(buf, sizeof(buf));
	sha_of(buf, sizeof(buf), key);
	memset(wrong, 0x5a, sizeof(wrong));
	char tmpdir[4200], shadir[4200], derdir[4200];
	snprintf(tmpdir, sizeof(tmpdir), "%s/backing/tmp", dir);
	snprintf(shadir, sizeof(shadir), "%s/backing/sha256", dir);
	snprintf(derdir, sizeof(derdir), "%s/backing/derived", dir);

	/* A content key that is not the content's sha256: refused, nothing left. */
	assert_int_equal(write_backing(bs, wrong, true, buf, sizeof(buf), &err), -EBADMSG);
	assert_int_equal(count_files(shadir), 0);
	assert_int_equal(count_files(tmpdir), 0);

	/* The right one: committed, reads back whole (the hole as zeros). */
	assert_int_equal(write_backing(bs, key, true, buf, sizeof(buf), &err), 0);
	assert_int_equal(write_backing(bs, key, true, buf, sizeof(buf), &err), 0);
	assert_int_equal(count_files(shadir), 1); /* twice: one file */
	struct cache_backing *pin = NULL;
	int fd = -1;
	assert_int_equal(cache_backing_open(bs, key, true, sizeof(buf), &pin, &fd, &err), 0);
	uint8_t got[sizeof(buf)];
	assert_int_equal(pread(fd, got, sizeof(got), 0), (ssize_t)sizeof(got));
	assert_memory_equal(got, buf, sizeof(buf));
	cache_backing_release(pin);

	/* The same 32 bytes as a derived key: another namespace, not found. */
	assert_int_equal(cache_backing_open(bs, key, false, sizeof(buf), &pin, &fd, &err), -ENOENT);
	assert_int_equal(write_backing(bs, wrong, false, buf, sizeof(buf), &err), 0);
	assert_int_equal(count_files(derdir), 1);
	assert_int_equal(cache_backing_open(bs, wrong, true, sizeof(buf), &pin, &fd, &err),
			 -ENOENT);

	/* A size other than the expected one: refused and removed. */
	assert_int_not_equal(cache_backing_open(bs, key, true, sizeof(buf) + 1, &pin, &fd, &err),
			     0);
	assert_int_equal(count_files(shadir), 0);

	/* A write past the size is refused. */
	struct cache_backing_writer *w = NULL;
	assert_int_equal(cache_backing_begin(bs, key, true, 10, &w, &err), 0);
	assert_int_equal(cache_backing_pwrite(w, buf, 11, 0, &err), -EINVAL);
	cache_backing_abort(w);
	assert_int_equal(count_files(tmpdir), 0);
	cache_disk_close(d);

	/* A file of an earlier run changed on disk is refused and deleted. */
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	bs = cache_disk_backing(d);
	assert_int_equal(write_backing(bs, key, true, buf, sizeof(buf), &err), 0);
	cache_disk_close(d);
	char path[4300], hex[2 * RS_SHA256_LEN + 1];
	for (size_t i = 0; i < RS_SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	snprintf(path, sizeof(path), "%s/%s", shadir, hex);
	int wfd = open(path, O_WRONLY);
	assert_true(wfd >= 0);
	assert_int_equal(pwrite(wfd, "X", 1, 50), 1);
	close(wfd);
	assert_int_equal(cache_disk_open(dir, 1 << 20, 0, &d, &err), 0);
	bs = cache_disk_backing(d);
	assert_int_not_equal(cache_backing_open(bs, key, true, sizeof(buf), &pin, &fd, &err), 0);
	assert_false(exists(path));
	cache_disk_close(d);
}

/* A backing file of len bytes made from id, under its content key. */
static int put_backing(struct cache_backing_store *bs, unsigned id, size_t len,
		       uint8_t key[RS_SHA256_LEN], struct rs_error *err)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(id * 31 + i * 7);
	sha_of(buf, len, key);
	struct cache_backing_writer *w = NULL;
	int r = cache_backing_begin(bs, key, true, len, &w, err);
	if (r == 0 && (r = cache_backing_pwrite(w, buf, len, 0, err)) < 0)
		cache_backing_abort(w);
	else if (r == 0)
		r = cache_backing_commit(w, err);
	free(buf);
	return r;
}

static bool backing_there(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			  size_t len)
{
	struct cache_backing *pin = NULL;
	int fd;
	if (cache_backing_open(bs, key, true, len, &pin, &fd, NULL) < 0)
		return false;
	cache_backing_release(pin);
	return true;
}

/* Chunks and backing files share one bound and one LRU; a pinned backing
 * file is never evicted, and room it holds is not promised twice. */
static void test_backing_bound(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	struct cache_disk_stats st;
	uint8_t k[8][RS_SHA256_LEN], bk[4][RS_SHA256_LEN];
	assert_int_equal(cache_disk_open(dir, 10000, 0, &d, &err), 0);
	wait_scan(d);
	struct cache_backing_store *bs = cache_disk_backing(d);
	for (unsigned i = 0; i < 4; i++)
		disk_put_value(d, i, 2000, k[i]);

	/* 4000 bytes of backing file: room made by evicting the oldest
	 * chunks, and counted with the chunks. */
	assert_int_equal(put_backing(bs, 1, 4000, bk[0], &err), 0);
	cache_disk_stats(d, &st);
	assert_int_equal(st.backing_files, 1);
	assert_int_equal(st.backing_bytes, 4000);
	assert_int_equal(st.bytes, 10000);
	assert_int_equal(st.evictions, 1);
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, k[0], &b, &err), -ENOENT);
	assert_disk_value(d, k[1], 1, 2000);

	/* Pinned, it outlives any number of puts. */
	struct cache_backing *pin = NULL;
	int fd;
	assert_int_equal(cache_backing_open(bs, bk[0], true, 4000, &pin, &fd, &err), 0);
	for (unsigned i = 4; i < 8; i++)
		disk_put_value(d, i, 2000, k[i]);
	cache_disk_stats(d, &st);
	assert_true(st.bytes <= 10000);
	assert_int_equal(st.pinned_bytes, 4000);
	assert_true(backing_there(bs, bk[0], 4000));

	/* More than the pins leave: refused, and nothing evicted for it. */
	uint64_t ev = st.evictions;
	assert_int_equal(put_backing(bs, 2, 6001, bk[1], &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "in use by open files"));
	cache_disk_stats(d, &st);
	assert_int_equal(st.evictions, ev);
	assert_int_equal(st.backing_files, 1);
	assert_int_equal(count_files_in(dir, "backing/tmp"), 0);

	/* Released, it ages like a chunk: the next puts evict it. */
	cache_backing_release(pin);
	cache_disk_stats(d, &st);
	assert_int_equal(st.pinned_bytes, 0);
	for (unsigned i = 0; i < 5; i++)
		disk_put_value(d, i, 2000, k[i]);
	assert_false(backing_there(bs, bk[0], 4000));
	assert_int_equal(count_files_in(dir, "backing/sha256"), 0);
	cache_disk_stats(d, &st);
	assert_int_equal(st.backing_files, 0);
	assert_true(st.bytes <= 10000);

	/* After a restart backing files are found, counted and evicted with
	 * the chunks by age. */
	assert_int_equal(put_backing(bs, 3, 3000, bk[2], &err), 0);
	cache_disk_close(d);
	assert_int_equal(cache_disk_open(dir, 10000, 0, &d, &err), 0);
	wait_scan(d);
	bs = cache_disk_backing(d);
	cache_disk_stats(d, &st);
	assert_int_equal(st.backing_files, 1);
	assert_int_equal(st.backing_bytes, 3000);
	assert_true(backing_there(bs, bk[2], 3000));
	cache_disk_close(d);
	assert_int_equal(cache_disk_open(dir, 2500, 0, &d, &err), 0);
	wait_scan(d);
	bs = cache_disk_backing(d);
	cache_disk_stats(d, &st);
	assert_int_equal(st.backing_files, 0);
	assert_int_equal(count_files_in(dir, "backing/sha256"), 0);
	cache_disk_close(d);
}

/* ---- the background scan ---------------------------------------------- */

#define SCAN_FILES 20000
#define SCAN_VALUE_LEN 16

static void scan_value(unsigned id, uint8_t out[SCAN_VALUE_LEN])
{
	char buf[SCAN_VALUE_LEN + 1];
	snprintf(buf, sizeof(buf), "scan file %06u", id % 1000000u);
	memcpy(out, buf, SCAN_VALUE_LEN);
}

/* Writes data as the cache would, under the name of key (and digest). */
static void write_chunk_file(const char *dir, const uint8_t key[RS_SHA256_LEN],
			     const uint8_t *digest, const void *data, size_t len)
{
	char path[600], dh[RS_DIGEST_STR_LEN];
	key_path(dir, key, path, sizeof(path));
	if (digest) {
		rs_digest_format(digest, dh);
		strcat(path, ".");
		strcat(path, dh + strlen("sha256:"));
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* A value id >= from whose key starts with byte first: a prefix the scan
 * lists last, so the gets and puts below most likely come before it. */
static unsigned id_with_prefix(unsigned from, uint8_t first, uint8_t key[RS_SHA256_LEN])
{
	for (unsigned id = from;; id++) {
		uint8_t v[SCAN_VALUE_LEN];
		scan_value(id, v);
		rs_sha256(v, SCAN_VALUE_LEN, key);
		if (key[0] == first)
			return id;
	}
}

static void assert_bytes(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], const void *want,
			 size_t len)
{
	struct rs_error err = {0};
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, key, &b, &err), 0);
	assert_int_equal(cache_buf_len(b), len);
	assert_memory_equal(cache_buf_data(b), want, len);
	cache_buf_unref(b);
}

/* cache_disk_open returns before it has seen the files already there;
 * meanwhile gets find them, puts count once, and the bound holds once the
 * scan ends. */
static void test_disk_background_scan(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	struct cache_disk_stats st;
	/* Made and closed at once: the prefix dirs, and a close mid-scan. */
	assert_int_equal(cache_disk_open(dir, 1 << 30, 0, &d, &err), 0);
	cache_disk_close(d);

	uint8_t key[RS_SHA256_LEN], v[SCAN_VALUE_LEN];
	for (unsigned id = 0; id < SCAN_FILES; id++) {
		scan_value(id, v);
		rs_sha256(v, SCAN_VALUE_LEN, key);
		write_chunk_file(dir, key, NULL, v, SCAN_VALUE_LEN);
	}
	/* Three more in the last prefixes: a plain one read and one put again
	 * during the scan, and a keyed one put again with other content. */
	uint8_t kget[RS_SHA256_LEN], kput[RS_SHA256_LEN], kkeyed[RS_SHA256_LEN];
	uint8_t vget[SCAN_VALUE_LEN], vput[SCAN_VALUE_LEN];
	scan_value(id_with_prefix(SCAN_FILES, 0xfe, kget), vget);
	scan_value(id_with_prefix(SCAN_FILES, 0xff, kput), vput);
	write_chunk_file(dir, kget, NULL, vget, sizeof(vget));
	write_chunk_file(dir, kput, NULL, vput, sizeof(vput));
	uint8_t old_data[100], new_data[300], old_digest[RS_SHA256_LEN], new_digest[RS_SHA256_LEN];
	memset(old_data, 'o', sizeof(old_data));
	memset(new_data, 'n', sizeof(new_data));
	rs_sha256(old_data, sizeof(old_data), old_digest);
	rs_sha256(new_data, sizeof(new_data), new_digest);
	rs_sha256("layer sha256:cd.. offset 0", 26, kkeyed);
	kkeyed[0] = 0xff;
	write_chunk_file(dir, kkeyed, old_digest, old_data, sizeof(old_data));
	/* A keyed one only read. */
	uint8_t kread[RS_SHA256_LEN];
	rs_sha256("layer sha256:cd.. offset 4096", 29, kread);
	kread[0] = 0xfd;
	write_chunk_file(dir, kread, old_digest, old_data, sizeof(old_data));
	const uint64_t files = SCAN_FILES + 4;
	const uint64_t bytes = (SCAN_FILES + 2) * SCAN_VALUE_LEN + 2 * sizeof(old_data);

	/* Room for about half: the rest is evicted once the scan has seen it. */
	const uint64_t bound = bytes / 2;
	assert_int_equal(cache_disk_open(dir, bound, 0, &d, &err), 0);
	cache_disk_stats(d, &st);
	assert_true(st.scanning);
	assert_bytes(d, kget, vget, sizeof(vget));
	assert_bytes(d, kread, old_data, sizeof(old_data));
	assert_int_equal(cache_disk_put(d, kput, vput, sizeof(vput), 0, &err), 0);
	assert_int_equal(
	    cache_disk_put_keyed(d, kkeyed, new_digest, new_data, sizeof(new_data), 0, &err), 0);
	assert_bytes(d, kkeyed, new_data, sizeof(new_data));
	wait_scan(d);

	cache_disk_stats(d, &st);
	assert_false(st.scanning);
	assert_int_equal(st.scan_found, 0);
	assert_true(st.bytes <= bound);
	assert_true(st.evictions > 0);
	/* Every file counted once, the keyed one with its new size. */
	assert_int_equal(st.entries + st.evictions, files);
	char old_path[600], dh[RS_DIGEST_STR_LEN];
	key_path(dir, kkeyed, old_path, sizeof(old_path));
	rs_digest_format(old_digest, dh);
	strcat(old_path, ".");
	strcat(old_path, dh + strlen("sha256:"));
	assert_false(exists(old_path));
	/* Used during the scan, so the newest: none of them evicted. */
	assert_bytes(d, kget, vget, sizeof(vget));
	assert_bytes(d, kput, vput, sizeof(vput));
	assert_bytes(d, kkeyed, new_data, sizeof(new_data));
	assert_bytes(d, kread, old_data, sizeof(old_data));
	uint64_t left = st.entries;
	cache_disk_close(d);

	/* Reopened: the same files, counted once each; and a close in the
	 * middle of the scan returns without waiting for it. */
	assert_int_equal(cache_disk_open(dir, 1 << 30, 0, &d, &err), 0);
	wait_scan(d);
	cache_disk_stats(d, &st);
	assert_int_equal(st.entries, left);
	assert_int_equal(st.evictions, 0);
	cache_disk_close(d);
	assert_int_equal(cache_disk_open(dir, 1 << 30, 0, &d, &err), 0);
	cache_disk_stats(d, &st);
	assert_true(st.scanning);
	cache_disk_close(d);
}

/* A file a get found corrupt during the scan, which the scan lists later
 * (or listed before), is not indexed again. */
static void test_disk_scan_vs_drop(void **state)
{
	const char *dir = *state;
	struct rs_error err = {0};
	struct cache_disk *d = NULL;
	struct cache_disk_stats st;
	assert_int_equal(cache_disk_open(dir, 1 << 30, 0, &d, &err), 0);
	cache_disk_close(d);
	uint8_t key[RS_SHA256_LEN], v[SCAN_VALUE_LEN];
	for (unsigned id = 0; id < SCAN_FILES / 4; id++) {
		scan_value(id, v);
		rs_sha256(v, SCAN_VALUE_LEN, key);
		write_chunk_file(dir, key, NULL, v, SCAN_VALUE_LEN);
	}
	uint8_t kbad[RS_SHA256_LEN], vbad[SCAN_VALUE_LEN];
	scan_value(id_with_prefix(SCAN_FILES, 0xff, kbad), vbad);
	vbad[0] ^= 1;
	write_chunk_file(dir, kbad, NULL, vbad, sizeof(vbad));

	assert_int_equal(cache_disk_open(dir, 1 << 30, 0, &d, &err), 0);
	struct cache_buf *b = NULL;
	assert_int_equal(cache_disk_get(d, kbad, &b, &err), -ENOENT);
	wait_scan(d);
	cache_disk_stats(d, &st);
	assert_int_equal(st.corrupt, 1);
	assert_int_equal(st.entries, SCAN_FILES / 4);
	assert_int_equal(st.bytes, (uint64_t)SCAN_FILES / 4 * SCAN_VALUE_LEN);
	assert_int_equal(cache_disk_get(d, kbad, &b, &err), -ENOENT);
	cache_disk_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mem_lru_budget),
	    cmocka_unit_test(test_mem_use_once_share),
	    cmocka_unit_test(test_mem_ref_survives_eviction),
	    cmocka_unit_test_setup_teardown(test_disk_put_get, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_big_values, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_restart_reuse, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_size_bound, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_corrupt, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_tmp_removed, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_tiers, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_concurrency, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_race, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_put_rename_vs_evict, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_keyed, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_backing_store, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_backing_bound, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_background_scan, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_disk_scan_vs_drop, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
