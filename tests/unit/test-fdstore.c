/* SPDX-License-Identifier: Apache-2.0 */
/* src/fdstore: names; our holder (lazy start, add/remove, hand-over to a new
 * process, exit with its last fd, takeover, SIGKILL and restart, stale socket,
 * malformed messages); systemd's store against a datagram socket of ours, and
 * LISTEN_FDS in a child. Every holder started here is reaped by pid: we are
 * their subreaper. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdstore/fdstore.h"
#include "fdstore/fdstore_internal.h"

static char tmpdir[] = "/tmp/test-fdstore.XXXXXX";
static char holder_prog[PATH_MAX];
static int n_sock;

static void sock_path(char *out, size_t len)
{
	snprintf(out, len, "%s/h%d.sock", tmpdir, n_sock++);
}

static struct fdstore_opts opts_for(const char *path)
{
	return (struct fdstore_opts){.holder_socket = path, .holder_program = holder_prog};
}

/* Reaps pid (a holder, reparented to us); true when it exited within ms. */
static bool reaped_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms; i += 5) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return true;
		usleep(5000);
	}
	return false;
}

static void kill_holder(pid_t pid)
{
	if (pid > 0 && kill(pid, SIGKILL) == 0)
		waitpid(pid, NULL, 0);
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* Writes through w and reads it back from r: the same pipe. */
static void assert_pipe_through(int w, int r, const char *what)
{
	size_t len = strlen(what);
	assert_int_equal(write(w, what, len), (ssize_t)len);
	char buf[64] = {0};
	assert_int_equal(read(r, buf, sizeof(buf)), (ssize_t)len);
	assert_memory_equal(buf, what, len);
}

static void free_restored(struct fdstore_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(v[i].fd);
	free(v);
}

static const struct fdstore_entry *find(const struct fdstore_entry *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static bool readable_within(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static struct fdstore *open_holder(const char *path, struct fdstore_entry **v, size_t *n)
{
	struct fdstore_opts o = opts_for(path);
	struct fdstore *s = NULL;
	struct rs_error err = {0};
	int rc = fdstore_open(&o, &s, v, n, &err);
	if (rc < 0)
		fail_msg("fdstore_open: %d %s", rc, err.msg);
	return s;
}

/* ---- names ----------------------------------------------------------- */

static void test_names(void **state)
{
	assert_int_equal(fdstore_check_name("fuse.sha256-0123abcd_1+x"), 0);
	assert_int_equal(fdstore_check_name("a"), 0);
	assert_int_equal(fdstore_check_name(""), -EINVAL);
	assert_int_equal(fdstore_check_name("a:b"), -EINVAL);
	assert_int_equal(fdstore_check_name("a/b"), -EINVAL);
	assert_int_equal(fdstore_check_name("a b"), -EINVAL);
	assert_int_equal(fdstore_check_name("a\nFDSTORE=1"), -EINVAL);
	assert_int_equal(fdstore_check_name("\xc3\xa9"), -EINVAL);
	char name[FDSTORE_NAME_MAX + 2];
	memset(name, 'n', FDSTORE_NAME_MAX);
	name[FDSTORE_NAME_MAX] = '\0';
	assert_int_equal(fdstore_check_name(name), 0);
	name[FDSTORE_NAME_MAX] = 'n';
	name[FDSTORE_NAME_MAX + 1] = '\0';
	assert_int_equal(fdstore_check_name(name), -EINVAL);
}

/* ---- holder ---------------------------------------------------------- */

static void test_holder_add_remove(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_string_equal(fdstore_kind(s), "holder");
	assert_true(fdstore_poll_fd(s) >= 0);
	assert_int_equal(fdstore_holder_pid(s), 0); /* lazy: none yet */
	assert_int_equal(access(path, F_OK), -1);

	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "bad:name", p[1], &err), -EINVAL);
	assert_int_equal(fdstore_add(s, "a", p[1], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	assert_true(pid > 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(fdstore_add(s, "b", p[0], &err), 0);
	assert_int_equal(fdstore_add(s, "a", p[1], &err), 0); /* replaces */
	assert_int_equal(fdstore_remove(s, "nope", &err), -ENOENT);
	assert_int_equal(fdstore_remove(s, "b", &err), 0);
	assert_int_equal(fdstore_check(s, &err), 0);
	assert_int_equal(fdstore_holder_pid(s), pid);
	/* The last fd removed: the holder exits and takes its socket along. */
	assert_int_equal(fdstore_remove(s, "a", &err), 0);
	assert_true(reaped_within(pid, 3000));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(fdstore_check(s, &err), 0);
	assert_int_equal(fdstore_holder_pid(s), 0);
	/* And the next add starts another. */
	assert_int_equal(fdstore_add(s, "c", p[1], &err), 0);
	pid_t pid2 = fdstore_holder_pid(s);
	assert_true(pid2 > 0 && pid2 != pid);
	fdstore_stop(s);
	assert_true(reaped_within(pid2, 3000));
	assert_int_equal(access(path, F_OK), -1);
	close(p[0]);
	close(p[1]);
}

static void test_holder_handover(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	int p[2], q[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "fuse.1", p[1], &err), 0);
	assert_int_equal(fdstore_add(s, "grpc", q[0], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	fdstore_close(s); /* a daemon that exits: the holder keeps everything */
	assert_false(reaped_within(pid, 100));

	s = open_holder(path, &v, &n);
	assert_int_equal(n, 2);
	assert_int_equal(fdstore_holder_pid(s), pid);
	const struct fdstore_entry *e = find(v, n, "fuse.1");
	assert_non_null(e);
	assert_true(same_file(e->fd, p[1]));
	assert_pipe_through(e->fd, p[0], "through the holder");
	e = find(v, n, "grpc");
	assert_non_null(e);
	assert_pipe_through(q[1], e->fd, "the other way");
	assert_true(fcntl(e->fd, F_GETFD) & FD_CLOEXEC);
	free_restored(v, n);

	/* Handed over, still stored: a third process gets them too. */
	fdstore_close(s);
	s = open_holder(path, &v, &n);
	assert_int_equal(n, 2);
	free_restored(v, n);
	fdstore_stop(s);
	assert_true(reaped_within(pid, 3000));
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
}

static void test_holder_takeover(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s1 = open_holder(path, &v, &n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s1, "x", p[1], &err), 0);
	pid_t pid = fdstore_holder_pid(s1);
	assert_false(readable_within(fdstore_poll_fd(s1), 0));

	struct fdstore *s2 = open_holder(path, &v, &n);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "x");
	free_restored(v, n);

	assert_true(readable_within(fdstore_poll_fd(s1), 3000));
	assert_int_equal(fdstore_check(s1, &err), -ESTALE);
	assert_int_equal(fdstore_check(s1, &err), -ESTALE);
	assert_int_equal(fdstore_add(s1, "y", p[1], &err), -ESTALE);
	assert_int_equal(fdstore_remove(s1, "x", &err), -ESTALE);
	fdstore_stop(s1); /* replaced: must leave the new owner's holder alone */
	assert_false(reaped_within(pid, 100));

	assert_int_equal(fdstore_check(s2, &err), 0);
	assert_int_equal(fdstore_add(s2, "y", p[0], &err), 0);
	assert_int_equal(fdstore_holder_pid(s2), pid);
	fdstore_stop(s2);
	assert_true(reaped_within(pid, 3000));
	close(p[0]);
	close(p[1]);
}

static void test_holder_killed(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "k1", p[1], &err), 0);
	assert_int_equal(fdstore_add(s, "k2", p[0], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	kill_holder(pid);

	assert_true(readable_within(fdstore_poll_fd(s), 3000));
	assert_int_equal(fdstore_check(s, &err), 0);
	pid_t pid2 = fdstore_holder_pid(s);
	assert_true(pid2 > 0 && pid2 != pid);
	assert_false(readable_within(fdstore_poll_fd(s), 0));

	/* The new holder got both again: a second process sees them. */
	struct fdstore *s2 = open_holder(path, &v, &n);
	assert_int_equal(n, 2);
	const struct fdstore_entry *e = find(v, n, "k1");
	assert_non_null(e);
	assert_pipe_through(e->fd, p[0], "after SIGKILL");
	free_restored(v, n);
	assert_true(readable_within(fdstore_poll_fd(s), 3000));
	assert_int_equal(fdstore_check(s, &err), -ESTALE);
	fdstore_close(s);
	fdstore_stop(s2);
	assert_true(reaped_within(pid2, 3000));
	close(p[0]);
	close(p[1]);
}

static void test_holder_stale_socket(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	close(l); /* the file stays, nobody listens */

	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	assert_int_equal(n, 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "s", p[1], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	assert_true(pid > 0);
	fdstore_stop(s);
	assert_true(reaped_within(pid, 3000));
	close(p[0]);
	close(p[1]);
}

struct churn {
	struct fdstore *s;
	int id, fd, failures;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 40; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%d.%d", c->id, i % 5);
		struct rs_error err = {0};
		if (fdstore_add(c->s, name, c->fd, &err) < 0)
			c->failures++;
		if (i % 2 && fdstore_remove(c->s, name, &err) < 0)
			c->failures++;
		if (fdstore_check(c->s, &err) < 0)
			c->failures++;
	}
	return NULL;
}

/* Several threads at one store (the lock inside), then a hand-over of what is left. */
static void test_holder_threads(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "base", p[1], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	pthread_t th[4];
	struct churn c[4];
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churn){.s = s, .id = i, .fd = p[i % 2]};
		assert_int_equal(pthread_create(&th[i], NULL, churn_thread, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(c[i].failures, 0);
	}
	assert_int_equal(fdstore_holder_pid(s), pid);
	fdstore_close(s);
	/* Each name's last turn is i = 35 + j: odd (removed) for j = 0, 2, 4. */
	s = open_holder(path, &v, &n);
	assert_int_equal(n, 1 + 4 * 2);
	assert_non_null(find(v, n, "base"));
	assert_non_null(find(v, n, "t0.1"));
	assert_non_null(find(v, n, "t3.3"));
	assert_null(find(v, n, "t0.0"));
	assert_null(find(v, n, "t2.4"));
	free_restored(v, n);
	fdstore_stop(s);
	assert_true(reaped_within(pid, 3000));
	close(p[0]);
	close(p[1]);
}

/* A holder that cannot start: the add fails, saying why, and stores nothing. */
static void test_holder_missing_program(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_opts o = {.holder_socket = path,
				 .holder_program = "/nonexistent/rs-fd-holder"};
	struct fdstore *s = NULL;
	struct fdstore_entry *v;
	size_t n;
	struct rs_error err = {0};
	assert_int_equal(fdstore_open(&o, &s, &v, &n, &err), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fdstore_add(s, "a", p[1], &err), -ENOENT);
	assert_non_null(strstr(err.msg, "exec /nonexistent/rs-fd-holder"));
	assert_int_equal(fdstore_holder_pid(s), 0);
	assert_int_equal(fdstore_check(s, &err), 0);
	assert_int_equal(fdstore_remove(s, "a", &err), -ENOENT);
	fdstore_stop(s);
	close(p[0]);
	close(p[1]);
}

/* A holder that cannot listen tells why (over its ready fd), promptly. */
static void test_holder_cannot_listen(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(path, sizeof(path), "%s/missing-dir/h.sock", tmpdir);
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	int64_t t0 = rs_monotonic_ms();
	assert_int_equal(fdstore_add(s, "a", p[1], &err), -ENOENT);
	assert_true(rs_monotonic_ms() - t0 < 2000);
	assert_non_null(strstr(err.msg, "missing-dir/h.sock: No such file or directory"));
	assert_int_equal(fdstore_holder_pid(s), 0);
	fdstore_stop(s);
	close(p[0]);
	close(p[1]);
}

/* Raw packets at the holder: it drops the peer and keeps what it holds. */
static void test_holder_malformed(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	sock_path(path, sizeof(path));
	struct fdstore_entry *v;
	size_t n;
	struct fdstore *s = open_holder(path, &v, &n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct rs_error err = {0};
	assert_int_equal(fdstore_add(s, "kept", p[1], &err), 0);
	pid_t pid = fdstore_holder_pid(s);
	fdstore_close(s);

	struct fdh_hdr bad_name = {.magic = FDH_MAGIC, .op = FDH_REMOVE, .name_len = 3};
	struct fdh_hdr bad_magic = {.magic = 1, .op = FDH_STOP};
	struct fdh_hdr bad_op = {.magic = FDH_MAGIC, .op = 99};
	struct fdh_hdr long_name = {.magic = FDH_MAGIC, .op = FDH_REMOVE, .name_len = 300};
	struct fdh_hdr add_no_fd = {.magic = FDH_MAGIC, .op = FDH_ADD, .name_len = 1};
	struct fdh_hdr holder_op = {.magic = FDH_MAGIC, .op = FDH_END};
	struct {
		const void *hdr;
		const char *tail;
	} cases[] = {{&bad_name, "a:b"}, {&bad_magic, ""}, {&bad_op, ""},  {&long_name, "x"},
		     {&add_no_fd, "a"},  {&holder_op, ""}, {NULL, "short"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
		assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
		struct fdh_msg m;
		while (fdh_recv(c, &m) == 1 && m.op != FDH_END)
			close(m.fd);
		unsigned char buf[512];
		size_t len = 0;
		if (cases[i].hdr) {
			memcpy(buf, cases[i].hdr, sizeof(struct fdh_hdr));
			len = sizeof(struct fdh_hdr);
		}
		memcpy(buf + len, cases[i].tail, strlen(cases[i].tail));
		len += strlen(cases[i].tail);
		assert_int_equal(send(c, buf, len, 0), (ssize_t)len);
		assert_true(readable_within(c, 3000));
		assert_int_equal(fdh_recv(c, &m), 0); /* dropped */
		close(c);
	}
	assert_false(reaped_within(pid, 50));
	s = open_holder(path, &v, &n);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "kept");
	free_restored(v, n);
	fdstore_stop(s);
	assert_true(reaped_within(pid, 3000));
	close(p[0]);
	close(p[1]);
}

/* ---- systemd --------------------------------------------------------- */

static int notify_listener(const char *name, bool abstract)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t len;
	if (abstract) {
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
		memcpy(a.sun_path + 1, name, strlen(name));
	} else {
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
		len = sizeof(a);
	}
	assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
	return fd;
}

/* Receives one datagram; asserts its text, returns its fd (or -1). */
static int expect_notify(int sock, const char *text)
{
	assert_true(readable_within(sock, 3000));
	char buf[1024];
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl)};
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, text);
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		assert_int_equal(c->cmsg_type, SCM_RIGHTS);
		assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(int)));
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	}
	return fd;
}

static void systemd_round(const char *notify_env, int sock)
{
	setenv("NOTIFY_SOCKET", notify_env, 1);
	struct fdstore_opts o = {0};
	struct fdstore *s = NULL;
	struct fdstore_entry *v;
	size_t n;
	struct rs_error err = {0};
	assert_int_equal(fdstore_open(&o, &s, &v, &n, &err), 0);
	unsetenv("NOTIFY_SOCKET");
	assert_string_equal(fdstore_kind(s), "systemd");
	assert_int_equal(fdstore_poll_fd(s), -1);
	assert_int_equal(n, 0);

	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fdstore_add(s, "fuse.7", p[1], &err), 0);
	int got = expect_notify(sock, "FDSTORE=1\nFDNAME=fuse.7");
	assert_true(got >= 0);
	assert_pipe_through(got, p[0], "via systemd");
	close(got);
	/* The same name again: the old one is removed first. */
	assert_int_equal(fdstore_add(s, "fuse.7", p[1], &err), 0);
	assert_int_equal(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=fuse.7"), -1);
	got = expect_notify(sock, "FDSTORE=1\nFDNAME=fuse.7");
	assert_true(same_file(got, p[1]));
	close(got);
	fdstore_notify_ready(s);
	assert_int_equal(expect_notify(sock, "READY=1"), -1);
	assert_int_equal(fdstore_check(s, &err), 0);
	assert_int_equal(fdstore_remove(s, "fuse.7", &err), 0);
	assert_int_equal(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=fuse.7"), -1);
	assert_int_equal(fdstore_add(s, "grpc", p[0], &err), 0);
	close(expect_notify(sock, "FDSTORE=1\nFDNAME=grpc"));
	fdstore_notify_stopping(s);
	assert_int_equal(expect_notify(sock, "STOPPING=1"), -1);
	fdstore_stop(s);
	assert_int_equal(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=grpc"), -1);
	close(p[0]);
	close(p[1]);
}

static void test_systemd_notify(void **state)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(path, sizeof(path), "%s/notify", tmpdir);
	int sock = notify_listener(path, false);
	systemd_round(path, sock);
	close(sock);

	char name[64], env[70];
	snprintf(name, sizeof(name), "rs-test-fdstore-%d", (int)getpid());
	snprintf(env, sizeof(env), "@%s", name);
	sock = notify_listener(name, true);
	systemd_round(env, sock);
	close(sock);
}

/* In a child (fds 3 and 4 are taken over): exit status 0 or the failed step. */
static int listen_child(int w, int r, const char *listen_pid)
{
	int hw = fcntl(w, F_DUPFD, 100), hr = fcntl(r, F_DUPFD, 100);
	if (hw < 0 || hr < 0 || dup2(hw, 3) != 3 || dup2(hr, 4) != 4)
		return 1;
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", listen_pid ? listen_pid : pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "fuse.1:grpc", 1);
	char notify[256];
	snprintf(notify, sizeof(notify), "%s/notify-listen", tmpdir);
	setenv("NOTIFY_SOCKET", notify, 1);
	struct fdstore_opts o = {0};
	struct fdstore *s = NULL;
	struct fdstore_entry *v;
	size_t n;
	if (fdstore_open(&o, &s, &v, &n, NULL) < 0)
		return 2;
	if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
		return 3;
	if (listen_pid) /* not ours: nothing taken */
		return n == 0 ? 0 : 4;
	if (n != 2 || strcmp(v[0].name, "fuse.1") != 0 || v[0].fd != 3 ||
	    strcmp(v[1].name, "grpc") != 0 || v[1].fd != 4)
		return 5;
	if (!(fcntl(3, F_GETFD) & FD_CLOEXEC) || !(fcntl(4, F_GETFD) & FD_CLOEXEC))
		return 6;
	if (write(3, "restored", 8) != 8)
		return 7;
	free(v);
	fdstore_close(s);
	return 0;
}

static void test_systemd_listen_fds(void **state)
{
	for (int round = 0; round < 2; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(listen_child(p[1], p[0], round ? "1" : NULL));
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		if (round == 0) {
			char buf[16] = {0};
			assert_int_equal(read(p[0], buf, sizeof(buf)), 8);
			assert_string_equal(buf, "restored");
		}
		close(p[0]);
		close(p[1]);
	}
}

static int setup(void **state)
{
	if (!mkdtemp(tmpdir))
		return -1;
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	unsetenv("NOTIFY_SOCKET");
	const char *env = getenv("RS_FD_HOLDER");
	if (env) {
		snprintf(holder_prog, sizeof(holder_prog), "%s", env);
	} else {
		char exe[PATH_MAX - 64];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return -1;
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(holder_prog, sizeof(holder_prog), "%s/../../src/cmd/rs-fd-holder", exe);
	}
	return access(holder_prog, X_OK);
}

/* Holders a failed test left: our children (we are their subreaper), by pid. */
static void kill_left_holders(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[300], buf[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *close_paren = strrchr(buf, ')');
		int pid = atoi(buf), ppid = 0;
		if (close_paren && sscanf(close_paren + 1, " %*c %d", &ppid) == 1 &&
		    ppid == (int)getpid() && strstr(buf, "(rs-fd-holder)")) {
			fprintf(stderr, "# killing holder %d left by a failed test\n", pid);
			kill_holder(pid);
		}
	}
	closedir(d);
}

static int teardown(void **state)
{
	kill_left_holders();
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_holder_add_remove),
	    cmocka_unit_test(test_holder_handover),
	    cmocka_unit_test(test_holder_takeover),
	    cmocka_unit_test(test_holder_killed),
	    cmocka_unit_test(test_holder_stale_socket),
	    cmocka_unit_test(test_holder_threads),
	    cmocka_unit_test(test_holder_missing_program),
	    cmocka_unit_test(test_holder_cannot_listen),
	    cmocka_unit_test(test_holder_malformed),
	    cmocka_unit_test(test_systemd_notify),
	    cmocka_unit_test(test_systemd_listen_fds),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
