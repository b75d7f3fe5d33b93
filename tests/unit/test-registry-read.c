// SPDX-License-Identifier: Apache-2.0
/* Range reads against a tiny HTTP/1.1 server on 127.0.0.1 that answers one
 * range at a time (206), as many registries and CDNs do; a GET without Range
 * gets an image config (200), for reg_config_diff_ids. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry/registry.h"

#define BLOB_LEN ((size_t)(3 << 20) + 777)
#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000000"

static uint8_t blob[BLOB_LEN];
static const char config_body[] =
    "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DIGEST "\",\"" DIGEST "\"]}}";
static int listen_fd;
static int port;

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

/* One request per connection; Range "bytes=a-b" answered with 206. */
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
		long long a = 0, b = 0;
		const char *rg = strstr(req, "Range: bytes=");
		char hdr[512];
		if (rg && sscanf(rg, "Range: bytes=%lld-%lld", &a, &b) == 2 && a >= 0 && b >= a &&
		    (size_t)b < BLOB_LEN) {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
				 "Content-Range: bytes %lld-%lld/%zu\r\nConnection: close\r\n\r\n",
				 b - a + 1, a, b, BLOB_LEN);
			send_all(c, hdr, strlen(hdr));
			send_all(c, blob + a, (size_t)(b - a + 1));
		} else if (!rg && strncmp(req, "GET ", 4) == 0) {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
				 "Connection: close\r\n\r\n",
				 strlen(config_body));
			send_all(c, hdr, strlen(hdr));
			send_all(c, config_body, strlen(config_body));
		} else {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 416 Range Not Satisfiable\r\n"
				 "Content-Length: 0\r\nConnection: close\r\n\r\n");
			send_all(c, hdr, strlen(hdr));
		}
		close(c);
	}
}

static int setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < BLOB_LEN; i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 13));
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, 16) < 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	port = ntohs(sa.sin_port);
	pthread_t th;
	if (pthread_create(&th, NULL, serve, NULL) != 0)
		return -1;
	pthread_detach(th);
	return 0;
}

static struct reg_client *client(struct reg_ref *ref)
{
	struct reg_options o = {.plain_http = true, .retries = -1, .hosts_dir = "/nonexistent"};
	struct reg_client *c = NULL;
	struct rs_error err = {0};
	assert_int_equal(reg_client_new(&o, &c, &err), 0);
	char name[64];
	snprintf(name, sizeof(name), "127.0.0.1:%d/t/blob:1", port);
	assert_int_equal(reg_ref_parse(name, ref, &err), 0);
	return c;
}

/* A range of 1 MiB or more lands in its own buffer; another range inside the
 * same span must still be filled (they share one request). */
static void test_overlapping_ranges(void **state)
{
	(void)state;
	struct reg_ref ref;
	struct reg_client *c = client(&ref);
	uint8_t *big = malloc(2 << 20), small[100], twin[100];
	memset(small, 0xee, sizeof(small));
	memset(twin, 0xee, sizeof(twin));
	struct reg_range r[] = {
	    {.off = 0, .len = 2 << 20, .buf = big},
	    {.off = 100, .len = 100, .buf = small},
	    {.off = 100, .len = 100, .buf = twin},
	};
	struct rs_error err = {0};
	int rc = reg_blob_read(c, &ref, DIGEST, r, 3, &err);
	if (rc != 0)
		fail_msg("read: %s", err.msg);
	assert_memory_equal(big, blob, 2 << 20);
	assert_memory_equal(small, blob + 100, 100);
	assert_memory_equal(twin, blob + 100, 100);

	/* one big range alone, and two equal big ranges */
	uint8_t *b2 = malloc(2 << 20);
	struct reg_range same[] = {
	    {.off = 1000, .len = 2 << 20, .buf = big},
	    {.off = 1000, .len = 2 << 20, .buf = b2},
	};
	assert_int_equal(reg_blob_read(c, &ref, DIGEST, same, 1, &err), 0);
	assert_memory_equal(big, blob + 1000, 2 << 20);
	memset(big, 0, 2 << 20);
	assert_int_equal(reg_blob_read(c, &ref, DIGEST, same, 2, &err), 0);
	assert_memory_equal(big, blob + 1000, 2 << 20);
	assert_memory_equal(b2, blob + 1000, 2 << 20);
	free(b2);
	free(big);
	reg_ref_free(&ref);
	reg_client_free(c);
}

struct collect {
	uint8_t *buf;
	size_t got;
};

static int collect_bytes(void *ctx, const void *data, size_t n)
{
	struct collect *k = ctx;
	memcpy(k->buf + k->got, data, n);
	k->got += n;
	return 0;
}

static void test_stream(void **state)
{
	(void)state;
	struct reg_ref ref;
	struct reg_client *c = client(&ref);
	size_t len = BLOB_LEN - 5000;
	struct collect k = {.buf = malloc(len)};
	struct rs_error err = {0};
	int rc = reg_blob_read_stream(c, &ref, DIGEST, 4000, len, collect_bytes, &k, &err);
	if (rc != 0)
		fail_msg("stream: %s", err.msg);
	assert_int_equal(k.got, len);
	assert_memory_equal(k.buf, blob + 4000, len);
	/* past the end: the server's 416 is an error, nothing handed on */
	k.got = 0;
	assert_true(reg_blob_read_stream(c, &ref, DIGEST, BLOB_LEN, 10, collect_bytes, &k, &err) <
		    0);
	assert_int_equal(k.got, 0);
	free(k.buf);
	reg_ref_free(&ref);
	reg_client_free(c);
}

/* The config is believed only when it is the manifest's: its digest and size. */
static void test_config(void **state)
{
	(void)state;
	struct reg_ref ref;
	struct reg_client *c = client(&ref);
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN];
	rs_sha256(config_body, strlen(config_body), sum);
	rs_digest_format(sum, dg);
	struct reg_manifest m = {.config = {.digest = dg, .size = (int64_t)strlen(config_body)},
				 .n_layers = 2};
	struct reg_diff_id *ids = NULL;
	struct rs_error err = {0};
	int rc = reg_config_diff_ids(c, &ref, &m, &ids, &err);
	if (rc != 0)
		fail_msg("config: %s", err.msg);
	assert_string_equal(ids[0].s, DIGEST);
	assert_string_equal(ids[1].s, DIGEST);
	free(ids);
	ids = NULL;
	/* another digest: the bytes are not the manifest's config */
	char other[RS_DIGEST_STR_LEN];
	snprintf(other, sizeof(other), "%s", DIGEST);
	other[7] = '1';
	m.config.digest = other;
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "has digest"));
	assert_null(ids);
	/* the manifest says more bytes than come */
	m.config.digest = dg;
	m.config.size++;
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "the manifest says"));
	/* fewer: the reply is cut at the manifest's size and refused */
	m.config.size -= 2;
	assert_true(reg_config_diff_ids(c, &ref, &m, &ids, &err) < 0);
	assert_null(ids);
	/* right bytes, another layer count */
	m.config.size++;
	m.n_layers = 3;
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "2 diff_ids for the manifest's 3 layers"));
	reg_ref_free(&ref);
	reg_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_overlapping_ranges),
	    cmocka_unit_test(test_stream),
	    cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
