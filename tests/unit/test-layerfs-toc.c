// SPDX-License-Identifier: Apache-2.0
/* The TOC a layer open keeps in CACHE_DIR/toc: a second open (a new runtime
 * on the same cache dir, as after a daemon restart) makes no registry
 * request; a kept file that is damaged, names another blob, or holds a TOC
 * of another digest is logged, removed and replaced by the registry's. The
 * registry is a tiny HTTP/1.1 server on 127.0.0.1 serving two hand-made
 * blobs, with single and suffix ranges, counting requests. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "blobkit.h"
#include "layerfs/layerfs_internal.h"

struct test_blob {
	struct blobkit k;
	char digest[RS_DIGEST_STR_LEN];
	char toc_digest[RS_DIGEST_STR_LEN];
};

static struct test_blob blobs[2];
static int listen_fd, port;
static pthread_t server;
static atomic_int requests;
static char cache_dir[64];
static int64_t toc_tail_hint; /* lfs_layer_opts.toc_tail of the next opens */

static void send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p = (const uint8_t *)p + w;
		n -= (size_t)w;
	}
}

/* One request per connection: GET /v2/t/blobs/<digest> with "bytes=a-b" or
 * "bytes=-n"; anything else 404. */
static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(listen_fd, NULL, NULL);
		if (c < 0)
			return NULL;
		char req[4096];
		size_t got = 0;
		req[0] = 0;
		while (got < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
			ssize_t r = recv(c, req + got, sizeof(req) - 1 - got, 0);
			if (r <= 0)
				break;
			got += (size_t)r;
			req[got] = 0;
		}
		atomic_fetch_add(&requests, 1);
		const struct test_blob *b = NULL;
		for (int i = 0; i < 2; i++)
			if (strstr(req, blobs[i].digest))
				b = &blobs[i];
		long long a = -1, e = -1, size = b ? (long long)b->k.blob.len : 0;
		const char *rg = strstr(req, "Range: bytes=");
		if (b && rg && sscanf(rg, "Range: bytes=-%lld", &e) == 1 && e > 0) {
			a = e >= size ? 0 : size - e;
			e = size - 1;
		} else if (b && rg && sscanf(rg, "Range: bytes=%lld-%lld", &a, &e) == 2) {
			if (a < 0 || e < a || e >= size)
				a = -1;
		}
		char hdr[512];
		if (a >= 0) {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
				 "Content-Range: bytes %lld-%lld/%lld\r\nConnection: close\r\n\r\n",
				 e - a + 1, a, e, size);
			send_all(c, hdr, strlen(hdr));
			send_all(c, b->k.blob.data + a, (size_t)(e - a + 1));
		} else {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
				 "Connection: close\r\n\r\n");
			send_all(c, hdr, strlen(hdr));
		}
		close(c);
	}
}

/* A blob of one small file (content varies with seed) and its TOC. */
static void make_blob(struct test_blob *b, int seed)
{
	char content[3000];
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (char)('a' + (i * 7 + (size_t)seed) % 26);
	char digest[RS_DIGEST_STR_LEN];
	bk_digest(content, sizeof(content), digest);
	int64_t off = bk_member(&b->k, content, sizeof(content));
	char toc[1024];
	snprintf(toc, sizeof(toc),
		 "{\"version\":1,\"entries\":[{\"name\":\"d%d\",\"type\":\"dir\"},"
		 "{\"name\":\"d%d/file\",\"type\":\"reg\",\"size\":%zu,\"offset\":%lld,"
		 "\"digest\":\"%s\",\"chunkDigest\":\"%s\"}]}",
		 seed, seed, sizeof(content), (long long)off, digest, digest);
	bk_finish(&b->k, toc, 0);
	bk_digest(b->k.blob.data, b->k.blob.len, b->digest);
	/* the TOC JSON as esgz_open hashes it */
	struct esgz_reader r;
	struct esgz_blob *eb = NULL;
	struct rs_error err = {0};
	assert_int_equal(bk_open(&b->k, &r, NULL, &eb, &err), 0);
	rs_digest_format(eb->toc_digest, b->toc_digest);
	esgz_blob_free(eb);
	esgz_reader_close(&r);
}

static int setup(void **state)
{
	(void)state;
	make_blob(&blobs[0], 1);
	make_blob(&blobs[1], 2);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, 16) < 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	port = ntohs(sa.sin_port);
	if (pthread_create(&server, NULL, serve, NULL) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* accept fails once the socket is shut down: the server returns */
	shutdown(listen_fd, SHUT_RDWR);
	pthread_join(server, NULL);
	close(listen_fd);
	for (int i = 0; i < 2; i++)
		rs_buf_free(&blobs[i].k.blob);
	return 0;
}

/* A fresh cache dir per test. */
static int each_setup(void **state)
{
	(void)state;
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/test-layerfs-toc-XXXXXX");
	return mkdtemp(cache_dir) ? 0 : -1;
}

static int each_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
	return system(cmd) == 0 ? 0 : -1;
}

struct opened {
	struct lfs_runtime *rt;
	struct reg_client *client;
	struct lfs_layer *l;
	int rc;
	int requests;
	struct rs_error err;
	char log[8192]; /* what the open wrote to stderr */
};

/* Opens blob b in a new runtime on cache_dir (as a restarted daemon would),
 * counting requests and capturing the log. */
static void open_layer(struct opened *o, const struct test_blob *b, const char *toc_digest,
		       int64_t size)
{
	memset(o, 0, sizeof(*o));
	struct lfs_runtime_opts ro = {.workers = 1,
				      .fetchers = 1,
				      .cache_dir = cache_dir,
				      .passthrough = LFS_PASSTHROUGH_OFF};
	assert_int_equal(lfs_runtime_new(&ro, &o->rt, &o->err), 0);
	struct reg_options co = {.plain_http = true, .retries = -1, .hosts_dir = "/nonexistent"};
	assert_int_equal(reg_client_new(&co, &o->client, &o->err), 0);
	char ref[64];
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/t/img:1", port);
	struct lfs_layer_opts lo = {.client = o->client,
				    .ref = ref,
				    .digest = b->digest,
				    .size = size,
				    .toc_digest = toc_digest,
				    .toc_tail = toc_tail_hint,
				    .allow_unverified = !toc_digest};

	char logpath[] = "/tmp/test-layerfs-toc-log-XXXXXX";
	int lfd = mkstemp(logpath);
	assert_true(lfd >= 0);
	unlink(logpath);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(lfd, STDERR_FILENO);
	int before = atomic_load(&requests);
	o->rc = lfs_layer_open(o->rt, &lo, &o->l, &o->err);
	o->requests = atomic_load(&requests) - before;
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(lfd, o->log, sizeof(o->log) - 1, 0);
	o->log[n > 0 ? n : 0] = '\0';
	close(lfd);
	fputs(o->log, stderr);
}

static void close_layer(struct opened *o)
{
	if (o->l)
		lfs_layer_close(o->l);
	lfs_runtime_free(o->rt);
	reg_client_free(o->client);
}

static bool from_cache(struct opened *o)
{
	struct lfs_status st;
	lfs_layer_status(o->l, &st);
	struct rs_buf js = {0};
	assert_int_equal(lfs_status_json(&st, &js), 0);
	bool in_json = strstr((const char *)js.data, "\"toc_cached\":true") != NULL;
	rs_buf_free(&js);
	assert_int_equal(in_json, st.toc_from_cache);
	return st.toc_from_cache;
}

static void kept_path(const struct test_blob *b, char *out, size_t cap)
{
	snprintf(out, cap, "%s/toc/%s", cache_dir, b->digest + 7);
}

static size_t kept_read(const struct test_blob *b, uint8_t *buf, size_t cap)
{
	char path[160];
	kept_path(b, path, sizeof(path));
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void kept_write(const struct test_blob *b, const uint8_t *buf, size_t len)
{
	char path[160];
	kept_path(b, path, sizeof(path));
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

/* What an open built, kept past its runtime (one runtime at a time holds a
 * cache dir). */
struct facts {
	uint8_t toc_digest[RS_SHA256_LEN];
	int64_t size, toc_offset;
	uint32_t nnodes, nchunks;
	struct esgz_chunk chunks[4];
};

static void facts_of(const struct opened *o, struct facts *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->toc_digest, o->l->blob->toc_digest, RS_SHA256_LEN);
	f->size = o->l->blob->size;
	f->toc_offset = o->l->blob->footer.toc_offset;
	f->nnodes = o->l->nnodes;
	f->nchunks = o->l->nchunks;
	assert_true(f->nchunks <= 4);
	for (uint32_t i = 0; i < f->nchunks; i++) {
		/* field by field: the padding is not the index's */
		const struct esgz_chunk *c = &o->l->chunks[i];
		struct esgz_chunk *d = &f->chunks[i];
		d->offset = c->offset;
		d->comp_end = c->comp_end;
		d->inner_offset = c->inner_offset;
		d->file_offset = c->file_offset;
		d->size = c->size;
		d->node = c->node;
		d->has_digest = c->has_digest;
		d->no_prefetch = c->no_prefetch;
		memcpy(d->digest, c->digest, RS_SHA256_LEN);
	}
}

/* The same index, whichever way it came. */
static void same_index(const struct facts *want, const struct opened *o)
{
	struct facts got;
	facts_of(o, &got);
	assert_memory_equal(&got, want, sizeof(got));
}

/* Opens b from the registry into an empty cache dir, keeping its TOC. */
static void first_open(const struct test_blob *b, struct facts *f)
{
	struct opened a;
	open_layer(&a, b, b->toc_digest, 0);
	if (a.rc != 0)
		fail_msg("first open: %s", a.err.msg);
	assert_int_equal(a.requests, 1);
	assert_false(from_cache(&a));
	facts_of(&a, f);
	close_layer(&a);
}

static void test_second_open_no_request(void **state)
{
	(void)state;
	const struct test_blob *b = &blobs[0];
	struct facts f;
	first_open(b, &f);
	struct opened c;
	open_layer(&c, b, b->toc_digest, (int64_t)b->k.blob.len);
	if (c.rc != 0)
		fail_msg("open from the kept TOC: %s", c.err.msg);
	assert_int_equal(c.requests, 0);
	assert_true(from_cache(&c));
	same_index(&f, &c);
	assert_null(strstr(c.log, "warn"));
	close_layer(&c);
	/* without a TOC digest or a size (allow_unverified) as well */
	open_layer(&c, b, NULL, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(c.requests, 0);
	assert_true(from_cache(&c));
	close_layer(&c);
}

/* A first open in two requests (a tail hint of just the footer, so the TOC
 * comes in a second read): what is kept is put together from both. */
static void test_kept_from_two_reads(void **state)
{
	(void)state;
	const struct test_blob *b = &blobs[1];
	toc_tail_hint = ESGZ_FOOTER_SIZE;
	struct opened a, c;
	open_layer(&a, b, b->toc_digest, 0);
	toc_tail_hint = 0;
	assert_int_equal(a.rc, 0);
	assert_int_equal(a.requests, 2);
	struct facts f;
	facts_of(&a, &f);
	close_layer(&a);
	open_layer(&c, b, b->toc_digest, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(c.requests, 0);
	assert_true(from_cache(&c));
	same_index(&f, &c);
	close_layer(&c);
}

/* Damage done to the kept file: a flipped payload byte, truncate, or a header
 * naming another blob. */
enum damage { FLIP, TRUNCATE, OTHER_DIGEST, BAD_MAGIC };

static void damaged(enum damage how, const char *needle)
{
	const struct test_blob *b = &blobs[0];
	struct facts f;
	first_open(b, &f);
	struct opened c;
	uint8_t good[1 << 16], buf[1 << 16];
	size_t n = kept_read(b, good, sizeof(good));
	assert_true(n > 200 && n < sizeof(good));
	memcpy(buf, good, n);
	size_t len = n;
	switch (how) {
	case FLIP:
		buf[n - 30] ^= 0x40;
		break;
	case TRUNCATE:
		len = n - 7;
		break;
	case OTHER_DIGEST:
		buf[16 + 5] ^= 1; /* the blob digest follows magic, version, header size */
		break;
	case BAD_MAGIC:
		buf[0] = 'X';
		break;
	}
	kept_write(b, buf, len);
	open_layer(&c, b, b->toc_digest, 0);
	if (c.rc != 0)
		fail_msg("open after damage %d: %s", how, c.err.msg);
	assert_int_equal(c.requests, 1);
	assert_false(from_cache(&c));
	same_index(&f, &c);
	char path[160];
	kept_path(b, path, sizeof(path));
	if (!strstr(c.log, "warn") || !strstr(c.log, path) || !strstr(c.log, needle))
		fail_msg("damage %d: no warning naming %s and '%s' in: %s", how, path, needle,
			 c.log);
	/* written again, whole */
	uint8_t again[1 << 16];
	assert_int_equal(kept_read(b, again, sizeof(again)), n);
	assert_memory_equal(again, good, n);
	close_layer(&c);
	open_layer(&c, b, b->toc_digest, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(c.requests, 0);
	close_layer(&c);
}

static void test_flipped_payload(void **state)
{
	(void)state;
	damaged(FLIP, "sha256");
}

static void test_truncated(void **state)
{
	(void)state;
	damaged(TRUNCATE, "bytes");
}

static void test_other_blob_digest(void **state)
{
	(void)state;
	damaged(OTHER_DIGEST, "another blob digest");
}

static void test_bad_magic(void **state)
{
	(void)state;
	damaged(BAD_MAGIC, "magic");
}

/* A kept file whose every check passes but whose TOC is another one (blob
 * B's tail under A's name, its header made A's): the expected TOC digest
 * refuses it, and the registry's is served. */
static void test_toc_digest_mismatch(void **state)
{
	(void)state;
	const struct test_blob *a = &blobs[0], *b = &blobs[1];
	struct facts fa, fb;
	first_open(a, &fa);
	first_open(b, &fb);
	struct opened c;
	uint8_t buf[1 << 16];
	size_t n = kept_read(b, buf, sizeof(buf));
	uint8_t sum[RS_SHA256_LEN];
	assert_int_equal(rs_digest_parse(a->digest, strlen(a->digest), sum), 0);
	memcpy(buf + 16, sum, RS_SHA256_LEN);
	kept_write(a, buf, n);
	/* with no TOC digest to check, it is what the file says */
	open_layer(&c, a, NULL, 0);
	assert_int_equal(c.rc, 0);
	assert_true(from_cache(&c));
	assert_memory_equal(c.l->blob->toc_digest, fb.toc_digest, RS_SHA256_LEN);
	/* checked later (toc_digest_later, a layer opened ahead): refused, removed */
	assert_int_equal(lfs_layer_toc_digest_check(c.l, a->toc_digest, &c.err), ESGZ_EDIGEST);
	char path[160];
	kept_path(a, path, sizeof(path));
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	close_layer(&c);
	/* checked at open: the registry's is served */
	kept_write(a, buf, n);
	open_layer(&c, a, a->toc_digest, 0);
	if (c.rc != 0)
		fail_msg("open with a kept TOC of another digest: %s", c.err.msg);
	assert_int_equal(c.requests, 1);
	assert_false(from_cache(&c));
	same_index(&fa, &c);
	assert_non_null(strstr(c.log, "TOC digest mismatch"));
	assert_non_null(strstr(c.log, path));
	close_layer(&c);
	open_layer(&c, a, a->toc_digest, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(c.requests, 0);
	same_index(&fa, &c);
	close_layer(&c);
}

/* Something else than a file in the kept file's place (a FIFO would block
 * a plain open): refused at once, removed. */
static void test_not_a_file(void **state)
{
	(void)state;
	const struct test_blob *b = &blobs[0];
	struct facts f;
	first_open(b, &f);
	char path[160];
	kept_path(b, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	struct opened c;
	open_layer(&c, b, b->toc_digest, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(c.requests, 1);
	assert_false(from_cache(&c));
	assert_non_null(strstr(c.log, "not a regular file"));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	close_layer(&c);
}

/* The descriptor's size must match the kept one as it must the registry's. */
static void test_size_mismatch(void **state)
{
	(void)state;
	const struct test_blob *b = &blobs[0];
	struct facts f;
	first_open(b, &f);
	struct opened c;
	open_layer(&c, b, b->toc_digest, (int64_t)b->k.blob.len + 1);
	assert_int_equal(c.rc, -EBADMSG);
	assert_int_equal(c.requests, 1);
	assert_non_null(strstr(c.log, "its descriptor says"));
	assert_non_null(strstr(c.err.msg, "descriptor"));
	close_layer(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_second_open_no_request, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_kept_from_two_reads, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_payload, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_truncated, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_other_blob_digest, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_magic, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_toc_digest_mismatch, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_not_a_file, each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_size_mismatch, each_setup, each_teardown),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
