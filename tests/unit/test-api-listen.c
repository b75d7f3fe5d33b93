/* SPDX-License-Identifier: Apache-2.0 */
/* src/api/listen.c: the checks a listening socket kept by an earlier process
 * must pass before a daemon accepts from it again (a listening unix stream
 * socket, bound to the configured path, which still leads to it), and what
 * api_listen_open does with one that fails them (binds anew). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "api/api.h"

static char tmpdir[] = "/tmp/test-api-listen.XXXXXX";
static int n_path;

static void new_path(char *out, size_t len)
{
	snprintf(out, len, "%s/s%d.sock", tmpdir, n_path++);
}

/* A unix socket of type bound to path (listening when listening). */
static int bound(int type, const char *path, bool listening)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (listening)
		assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* Whether some fd of ours is the socket with inode ino. */
static bool socket_open(ino_t ino)
{
	char want[64], link[64], path[64];
	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			if (strcmp(link, want) == 0)
				return true;
		}
	}
	return false;
}

static ino_t ino_of(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

static int check(int fd, const char *path, struct rs_error *err)
{
	rs_error_clear(err);
	return api_listen_check(fd, path, err);
}

static void test_bound_socket_passes(void **state)
{
	(void)state;
	char path[256];
	new_path(path, sizeof(path));
	int fd = -1;
	bool reused = true;
	struct rs_error err = {0};
	assert_int_equal(api_listen_open(path, -1, &fd, &reused, &err), 0);
	assert_false(reused);
	assert_int_equal(check(fd, path, &err), 0);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	close(fd);
	unlink(path);
}

static void test_not_a_listening_unix_stream_socket(void **state)
{
	(void)state;
	char path[256];
	struct rs_error err = {0};
	new_path(path, sizeof(path));

	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(check(p[0], path, &err), -ENOTSOCK);
	close(p[0]);
	close(p[1]);

	int tcp = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(tcp >= 0);
	assert_int_equal(listen(tcp, 1), 0);
	assert_int_equal(check(tcp, path, &err), -EAFNOSUPPORT);
	close(tcp);

	int dgram = bound(SOCK_DGRAM, path, false);
	assert_int_equal(check(dgram, path, &err), -EPROTOTYPE);
	close(dgram);
	unlink(path);

	int idle = bound(SOCK_STREAM, path, false);
	assert_int_equal(check(idle, path, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not listening"));
	close(idle);
	unlink(path);
}

static void test_bound_elsewhere(void **state)
{
	(void)state;
	char path[256], other[256];
	struct rs_error err = {0};
	new_path(path, sizeof(path));
	new_path(other, sizeof(other));
	int fd = bound(SOCK_STREAM, other, true);
	assert_int_equal(check(fd, path, &err), -EADDRNOTAVAIL);
	assert_non_null(strstr(err.msg, other));
	close(fd);
	unlink(other);
}

static void test_path_gone_or_replaced(void **state)
{
	(void)state;
	char path[256];
	struct rs_error err = {0};
	new_path(path, sizeof(path));
	int fd = bound(SOCK_STREAM, path, true);
	assert_int_equal(check(fd, path, &err), 0);

	unlink(path);
	assert_int_equal(check(fd, path, &err), -ENOENT);

	/* Another socket bound at the path (and gone): the path no longer
	 * leads to ours. */
	close(bound(SOCK_STREAM, path, false));
	assert_int_equal(check(fd, path, &err), -ESTALE);
	assert_non_null(strstr(err.msg, "replaced"));

	unlink(path);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(check(fd, path, &err), -ENOTSOCK);
	close(fd);
	unlink(path);
}

static void test_open_reuses_or_binds_anew(void **state)
{
	(void)state;
	char path[256];
	struct rs_error err = {0};
	new_path(path, sizeof(path));
	int kept = bound(SOCK_STREAM, path, true);
	int fd = -1;
	bool reused = false;
	assert_int_equal(api_listen_open(path, kept, &fd, &reused, &err), 0);
	assert_true(reused);
	assert_int_equal(fd, kept);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);

	/* The path removed under it: a new socket, the kept one closed. */
	ino_t kept_ino = ino_of(fd);
	unlink(path);
	int again = -1;
	assert_int_equal(api_listen_open(path, fd, &again, &reused, &err), 0);
	assert_false(reused);
	assert_true(ino_of(again) != kept_ino);
	assert_false(socket_open(kept_ino));
	assert_int_equal(check(again, path, &err), 0);
	close(again);

	/* A stale socket file nobody listens on is replaced; a live one is not. */
	assert_int_equal(api_listen_open(path, -1, &again, &reused, &err), 0);
	int live = -1;
	assert_int_equal(api_listen_open(path, -1, &live, &reused, &err), -EADDRINUSE);
	close(again);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bound_socket_passes),
	    cmocka_unit_test(test_not_a_listening_unix_stream_socket),
	    cmocka_unit_test(test_bound_elsewhere),
	    cmocka_unit_test(test_path_gone_or_replaced),
	    cmocka_unit_test(test_open_reuses_or_binds_anew),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
