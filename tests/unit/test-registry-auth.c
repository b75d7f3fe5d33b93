// SPDX-License-Identifier: Apache-2.0
/* Where credentials go: a registry, the object storage it redirects blob
 * reads to and token realms, each a tiny HTTP/1.1 server on 127.0.0.1 that
 * records every request it gets. */
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

#include "registry/transport.h"

#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define USER "alice"
#define PASS "s3cret-pass"
#define PASS_B64 "YWxpY2U6czNjcmV0LXBhc3M=" /* alice:s3cret-pass */
#define TOKEN "tok-EVIL-1234"

enum { REG, STORE, REALM, N_SRV };

/* What the registry does: chosen per test, read by its server thread. */
static struct {
	pthread_mutex_t lock; /* guards everything here */
	char realm[200];      /* non-empty: the registry challenges with it */
	bool redirect;        /* blob GETs go 307 to the storage server */
	bool realm_redirect;  /* the realm answers 307 to the storage server */
	char seen[N_SRV][8192];
	int count[N_SRV];
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int fds[N_SRV], ports[N_SRV];
static char cfg_path[] = "/tmp/rs-test-auth-XXXXXX";
static char idt_path[] = "/tmp/rs-test-auth-idt-XXXXXX"; /* an identity token */
#define IDTOKEN "refresh-me-7f3a"

static void send_str(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void answer(int who, int c, const char *req)
{
	char out[1024];
	pthread_mutex_lock(&S.lock);
	S.count[who]++;
	size_t l = strlen(S.seen[who]);
	snprintf(S.seen[who] + l, sizeof(S.seen[who]) - l, "%s\n", req);
	bool challenge = S.realm[0] && !strstr(req, "Authorization: Bearer " TOKEN);
	bool redirect = S.redirect, realm_redirect = S.realm_redirect;
	char realm[200];
	snprintf(realm, sizeof(realm), "%s", S.realm);
	pthread_mutex_unlock(&S.lock);
	if (who == REALM && realm_redirect) {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 307 Temporary Redirect\r\nLocation: "
			 "http://127.0.0.1:%d/token\r\nContent-Length: 0\r\nConnection: "
			 "close\r\n\r\n",
			 ports[STORE]);
	} else if (who == REALM) {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n{\"token\":\"" TOKEN
			 "\"}",
			 strlen("{\"token\":\"" TOKEN "\"}"));
	} else if (who == STORE) {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer "
			 "realm=\"http://127.0.0.1:%d/token\",service=\"storage\"\r\n"
			 "Content-Length: 0\r\nConnection: close\r\n\r\n",
			 ports[REALM]);
	} else if (challenge) {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer "
			 "realm=\"%s\",service=\"reg\"\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n",
			 realm);
	} else if (redirect) {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 307 Temporary Redirect\r\nLocation: "
			 "http://127.0.0.1:%d/object\r\nContent-Length: 0\r\nConnection: "
			 "close\r\n\r\n",
			 ports[STORE]);
	} else {
		snprintf(out, sizeof(out),
			 "HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n"
			 "Content-Range: bytes 0-3/100\r\nConnection: close\r\n\r\nblob");
	}
	send_str(c, out);
}

static void *serve(void *arg)
{
	int who = (int)(intptr_t)arg;
	for (;;) {
		int c = accept(fds[who], NULL, NULL);
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
		answer(who, c, req);
		close(c);
	}
}

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < N_SRV; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t sl = sizeof(sa);
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(fds[i], 16) < 0 || getsockname(fds[i], (struct sockaddr *)&sa, &sl) < 0)
			return -1;
		ports[i] = ntohs(sa.sin_port);
		pthread_t th;
		if (pthread_create(&th, NULL, serve, (void *)(intptr_t)i) != 0)
			return -1;
		pthread_detach(th);
	}
	int fd = mkstemp(cfg_path);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	fprintf(f, "{\"auths\":{\"127.0.0.1:%d\":{\"auth\":\"" PASS_B64 "\"}}}", ports[REG]);
	fclose(f);
	if ((fd = mkstemp(idt_path)) < 0)
		return -1;
	f = fdopen(fd, "w");
	fprintf(f,
		"{\"auths\":{\"127.0.0.1:%d\":{\"auth\":\"PHRva2VuPjo=\",\"identitytoken\":"
		"\"" IDTOKEN "\"}}}",
		ports[REG]);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(cfg_path);
	unlink(idt_path);
	return 0;
}

static void reset(const char *realm, bool redirect)
{
	pthread_mutex_lock(&S.lock);
	snprintf(S.realm, sizeof(S.realm), "%s", realm ? realm : "");
	S.redirect = redirect;
	S.realm_redirect = false;
	memset(S.seen, 0, sizeof(S.seen));
	memset(S.count, 0, sizeof(S.count));
	pthread_mutex_unlock(&S.lock);
}

/* One 4-byte range read of the blob with the docker config cfg; returns
 * its result. */
static int read_blob_with(const char *cfg, struct rs_error *err)
{
	struct reg_options o = {
	    .plain_http = true, .retries = -1, .hosts_dir = "/nonexistent", .docker_config = cfg};
	struct reg_client *c = NULL;
	assert_int_equal(reg_client_new(&o, &c, err), 0);
	char name[64];
	struct reg_ref ref;
	snprintf(name, sizeof(name), "127.0.0.1:%d/t/blob:1", ports[REG]);
	assert_int_equal(reg_ref_parse(name, &ref, err), 0);
	char buf[4] = {0};
	struct reg_range r = {.off = 0, .len = 4, .buf = buf};
	int rc = reg_blob_read(c, &ref, DIGEST, &r, 1, err);
	if (rc == 0)
		assert_memory_equal(buf, "blob", 4);
	reg_ref_free(&ref);
	reg_client_free(c);
	return rc;
}

static int read_blob(bool with_creds, struct rs_error *err)
{
	return read_blob_with(with_creds ? cfg_path : "/nonexistent/config.json", err);
}

static int count(int who)
{
	pthread_mutex_lock(&S.lock);
	int n = S.count[who];
	pthread_mutex_unlock(&S.lock);
	return n;
}

static void assert_no_secret(int who)
{
	pthread_mutex_lock(&S.lock);
	const char *s = S.seen[who];
	bool leak = strstr(s, "Authorization") || strstr(s, PASS_B64) || strstr(s, PASS);
	pthread_mutex_unlock(&S.lock);
	if (leak)
		fail_msg("server %d got credentials:\n%s", who, s);
}

/* The registry redirects the blob read to storage on another port, which
 * answers 401 with a realm of its own: an error naming storage; neither
 * storage nor its realm sees an Authorization header. */
static void test_redirect_401_not_answered(void **state)
{
	(void)state;
	char realm[100];
	snprintf(realm, sizeof(realm), "http://127.0.0.1:%d/token", ports[REALM]);
	reset(NULL, true);
	struct rs_error err = {0};
	assert_int_equal(read_blob(true, &err), -EACCES);
	char store[40];
	snprintf(store, sizeof(store), "127.0.0.1:%d", ports[STORE]);
	if (!strstr(err.msg, store))
		fail_msg("error does not name the storage host %s: %s", store, err.msg);
	assert_int_equal(count(STORE), 1);
	assert_int_equal(count(REALM), 0);
	assert_no_secret(STORE);
	assert_no_secret(REALM);

	/* The same with a registry that wants a token first: the registry's
	 * token goes to the registry, never on to storage. */
	reset(realm, true);
	memset(&err, 0, sizeof(err));
	assert_int_equal(read_blob(true, &err), -EACCES);
	if (!strstr(err.msg, store))
		fail_msg("error does not name the storage host %s: %s", store, err.msg);
	pthread_mutex_lock(&S.lock);
	bool reg_got_token = strstr(S.seen[REG], "Authorization: Bearer " TOKEN) != NULL;
	int realm_count = S.count[REALM];
	pthread_mutex_unlock(&S.lock);
	assert_true(reg_got_token);
	assert_int_equal(realm_count, 1); /* the registry's own challenge only */
	assert_no_secret(STORE);
}

/* A plain-HTTP registry on 127.0.0.1 may send credentials to a realm on the
 * same host name over http; a realm on another host name (localhost) over
 * http gets none, and the error says why. */
static void test_http_realm(void **state)
{
	(void)state;
	char realm[100];
	snprintf(realm, sizeof(realm), "http://127.0.0.1:%d/token", ports[REALM]);
	reset(realm, false);
	struct rs_error err = {0};
	int rc = read_blob(true, &err);
	if (rc != 0)
		fail_msg("same-host http realm: %s", err.msg);
	pthread_mutex_lock(&S.lock);
	bool basic = strstr(S.seen[REALM], "Authorization: Basic " PASS_B64) != NULL;
	pthread_mutex_unlock(&S.lock);
	assert_true(basic);

	snprintf(realm, sizeof(realm), "http://localhost:%d/token", ports[REALM]);
	reset(realm, false);
	memset(&err, 0, sizeof(err));
	assert_int_equal(read_blob(true, &err), -EACCES);
	if (!strstr(err.msg, "plain HTTP") || !strstr(err.msg, "localhost"))
		fail_msg("unexpected error: %s", err.msg);
	assert_int_equal(count(REALM), 0);

	/* Without credentials there is nothing to protect: an anonymous token. */
	reset(realm, false);
	memset(&err, 0, sizeof(err));
	rc = read_blob(false, &err);
	if (rc != 0)
		fail_msg("anonymous http realm: %s", err.msg);
	assert_int_equal(count(REALM), 1);
	assert_no_secret(REALM);
}

/* An OAuth2 refresh-token POST is not replayed where the realm redirects it
 * (a 307 keeps method and body): the redirect is the realm's answer. */
static void test_token_post_not_redirected(void **state)
{
	(void)state;
	char realm[100];
	snprintf(realm, sizeof(realm), "http://127.0.0.1:%d/token", ports[REALM]);
	reset(realm, false);
	pthread_mutex_lock(&S.lock);
	S.realm_redirect = true;
	pthread_mutex_unlock(&S.lock);
	struct rs_error err = {0};
	assert_int_equal(read_blob_with(idt_path, &err), -EACCES);
	if (!strstr(err.msg, "307"))
		fail_msg("unexpected error: %s", err.msg);
	pthread_mutex_lock(&S.lock);
	bool posted = strstr(S.seen[REALM], "POST ") != NULL;
	pthread_mutex_unlock(&S.lock);
	assert_true(posted);
	assert_int_equal(count(STORE), 0);
}

static void test_origin(void **state)
{
	(void)state;
	struct reg_origin a, b;
	assert_int_equal(reg_origin_parse("https://Example.COM/v2/", &a), 0);
	assert_string_equal(a.scheme, "https");
	assert_int_equal(a.port, 443);
	assert_int_equal(reg_origin_parse("https://example.com:443/x?y", &b), 0);
	assert_true(reg_origin_equal(&a, &b));
	assert_int_equal(reg_origin_parse("http://example.com/", &b), 0);
	assert_int_equal(b.port, 80);
	assert_false(reg_origin_equal(&a, &b));
	assert_true(reg_origin_same_host(&a, &b));
	assert_int_equal(reg_origin_parse("https://example.com:5000/", &b), 0);
	assert_false(reg_origin_equal(&a, &b));
	assert_int_equal(reg_origin_parse("https://user:pw@example.com.evil/", &b), 0);
	assert_false(reg_origin_same_host(&a, &b));
	assert_int_equal(reg_origin_parse("http://[::1]:5000/v2/", &b), 0);
	assert_string_equal(b.host, "[::1]");
	assert_int_equal(b.port, 5000);
	assert_int_equal(reg_origin_parse("/v2/x", &b), -EINVAL);
	assert_int_equal(reg_origin_parse("https://", &b), -EINVAL);
	assert_int_equal(reg_origin_parse("https://h:99999/", &b), -EINVAL);

	struct reg_host h = {.scheme = "https", .host = "example.com"};
	assert_int_equal(reg_host_origin(&h, &b), 0);
	assert_true(reg_origin_equal(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_origin),
	    cmocka_unit_test(test_redirect_401_not_answered),
	    cmocka_unit_test(test_http_realm),
	    cmocka_unit_test(test_token_post_not_redirected),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
