// SPDX-License-Identifier: Apache-2.0
/* fdstore: the client of rs-fd-holder. It keeps its own dup of every stored
 * fd, so that a holder that died can be started again and given them all. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "fdstore_internal.h"

static int holder_connect(const char *path, int *out, pid_t *pid, struct rs_error *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len >= sizeof(a.sun_path))
		return rs_err(err, -ENAMETOOLONG, "fd holder socket %s: longer than %zu bytes",
			      path, sizeof(a.sun_path) - 1);
	memcpy(a.sun_path, path, len + 1);
	cleanup_fd int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rs_err(err, -errno, "fd holder: socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return rs_err(err, -errno, "fd holder: connect %s: %s", path, strerror(errno));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		return rs_err(err, -errno, "fd holder %s: SO_PEERCRED: %s", path, strerror(errno));
	if (cred.uid != getuid())
		return rs_err(err, -EPERM, "fd holder %s: runs as uid %u, not ours (%u)", path,
			      (unsigned)cred.uid, (unsigned)getuid());
	struct timeval tv = {.tv_sec = FDSTORE_HOLDER_TIMEOUT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*pid = cred.pid;
	*out = rs_steal_fd(&fd);
	return 0;
}

static void drop_conn(struct fdstore_holder *h)
{
	if (h->conn >= 0) {
		epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->conn, NULL);
		close(h->conn);
	}
	h->conn = -1;
	h->pid = 0;
}

static int set_conn(struct fdstore_holder *h, int conn, pid_t pid, struct rs_error *err)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, conn, &ev) < 0) {
		int e = errno;
		close(conn);
		return rs_err(err, -e, "fd holder: epoll_ctl: %s", strerror(e));
	}
	h->conn = conn;
	h->pid = pid;
	return 0;
}

/* Reads the hand-over a holder sends every client that connects: ENTRY...
 * END. Each entry goes to *v (grown as needed); a REPLACED cannot come yet. */
static int read_handover(int conn, struct fdstore_entry **v, size_t *n, struct rs_error *err)
{
	size_t cap = 0;
	for (;;) {
		int rc = fdh_wait(conn, FDSTORE_HOLDER_TIMEOUT_MS);
		if (rc < 0)
			return rs_err(err, rc, "fd holder: waiting for its fds: %s", strerror(-rc));
		struct fdh_msg m;
		rc = fdh_recv(conn, &m);
		if (rc == 0)
			return rs_err(err, -ECONNRESET, "fd holder: hung up during the hand-over");
		if (rc < 0)
			return rs_err(err, rc, "fd holder: hand-over: %s", strerror(-rc));
		if (m.op == FDH_END) {
			if (m.value < 0 || (size_t)m.value != *n)
				return rs_err(err, -EBADMSG,
					      "fd holder: hand-over of %zu fds ends saying %d", *n,
					      (int)m.value);
			return 0;
		}
		if (m.op != FDH_ENTRY) {
			if (m.fd >= 0)
				close(m.fd);
			return rs_err(err, -EBADMSG, "fd holder: message %d in the hand-over",
				      (int)m.op);
		}
		if (*n >= FDSTORE_MAX_FDS) {
			close(m.fd);
			return rs_err(err, -E2BIG, "fd holder: hands over more than %d fds",
				      FDSTORE_MAX_FDS);
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			struct fdstore_entry *nv = reallocarray(*v, cap, sizeof(*nv));
			if (!nv) {
				close(m.fd);
				return rs_err(err, -ENOMEM, "fd holder: out of memory");
			}
			*v = nv;
		}
		memcpy((*v)[*n].name, m.name, sizeof(m.name));
		(*v)[*n].fd = m.fd;
		(*n)++;
	}
}

static void free_entries(struct fdstore_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].fd >= 0)
			close(v[i].fd);
	free(v);
}

/* Waits for our request's answer: 0, -errno from the holder, -ESTALE when we
 * were replaced, -EPIPE when the holder is gone. */
static int await_reply(struct fdstore_holder *h)
{
	for (;;) {
		int rc = fdh_wait(h->conn, FDSTORE_HOLDER_TIMEOUT_MS);
		if (rc < 0)
			return rc;
		struct fdh_msg m;
		rc = fdh_recv(h->conn, &m);
		if (rc == 0 || rc == -ECONNRESET)
			return -EPIPE;
		if (rc < 0)
			return rc;
		if (m.fd >= 0)
			close(m.fd);
		switch (m.op) {
		case FDH_OK:
			return 0;
		case FDH_ERR:
			return m.value > 0 && m.value < 4096 ? -m.value : -EPROTO;
		case FDH_REPLACED:
			h->replaced = true;
			return -ESTALE;
		default:
			return -EPROTO;
		}
	}
}

static int send_add(struct fdstore_holder *h, const char *name, int fd)
{
	int rc = fdh_send(h->conn, FDH_ADD, 0, name, fd);
	if (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
		return -EPIPE;
	return rc < 0 ? rc : await_reply(h);
}

/* Connects to the holder, starting one when none listens (a stale socket
 * file is the holder's to replace). Any fds a holder hands over here are not
 * ours to keep (we are restarting ours): they are closed. */
static int ensure_holder(struct fdstore *s, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	if (h->conn >= 0)
		return 0;
	int conn = -1;
	pid_t pid = 0;
	int rc = holder_connect(h->socket_path, &conn, &pid, err);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		rs_error_clear(err);
		rc = hc_spawn(h->program, h->socket_path, err);
		if (rc < 0)
			return rc;
		int64_t deadline = rs_monotonic_ms() + FDSTORE_HOLDER_TIMEOUT_MS;
		do {
			rc = holder_connect(h->socket_path, &conn, &pid, err);
			if (rc != -ENOENT && rc != -ECONNREFUSED)
				break;
			struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
			nanosleep(&ts, NULL);
		} while (rs_monotonic_ms() < deadline);
		if (rc == -ENOENT || rc == -ECONNREFUSED)
			return rs_err(err, -ETIMEDOUT,
				      "fd holder %s (%s): exited or not listening after %d ms",
				      h->socket_path, h->program, FDSTORE_HOLDER_TIMEOUT_MS);
	}
	if (rc < 0)
		return rc;
	struct fdstore_entry *v = NULL;
	size_t n = 0;
	rc = read_handover(conn, &v, &n, err);
	free_entries(v, n);
	if (rc < 0) {
		close(conn);
		return rc;
	}
	return set_conn(h, conn, pid, err);
}

/* Tries at bringing back a holder that died. */
#define RESTART_ATTEMPTS 10

/* The holder is gone: start another and give it every fd we hold. */
static int restart_holder(struct fdstore *s, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	drop_conn(h);
	if (s->table.n == 0)
		return 0;
	rs_log(RS_LOG_WARN, "fd holder %s: gone; starting another with %zu fds", h->socket_path,
	       s->table.n);
	for (int attempt = 0; attempt < RESTART_ATTEMPTS; attempt++) {
		int rc = ensure_holder(s, err);
		if (rc == -ECONNRESET && attempt + 1 < RESTART_ATTEMPTS) {
			/* The dead holder's listening socket outlives its
			 * connection for a moment: a connect can land in it. */
			rs_error_clear(err);
			struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < s->table.n && rc == 0; i++)
			rc = send_add(h, s->table.v[i].name, s->table.v[i].fd);
		if (rc == 0)
			return 0;
		if (rc == -ESTALE)
			return rs_err(err, rc, "fd holder %s: another process took it over",
				      h->socket_path);
		if (rc != -EPIPE)
			return rs_err(err, rc, "fd holder %s: storing fds again: %s",
				      h->socket_path, strerror(-rc));
		drop_conn(h);
	}
	return rs_err(err, -EPIPE, "fd holder %s: gone %d times while being given its fds",
		      h->socket_path, RESTART_ATTEMPTS);
}

static char *default_program(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return strdup("rs-fd-holder");
	exe[n] = '\0';
	char *dir = dirname(exe);
	size_t len = strlen(dir) + sizeof("/rs-fd-holder");
	char *p = malloc(len);
	if (p)
		snprintf(p, len, "%s/rs-fd-holder", dir);
	return p;
}

int hc_open(struct fdstore *s, const struct fdstore_opts *o, struct fdstore_entry **restored,
	    size_t *n_restored, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	if (!o || !o->holder_socket || !*o->holder_socket)
		return rs_err(err, -EINVAL, "fd store: no NOTIFY_SOCKET and no holder socket");
	h->socket_path = strdup(o->holder_socket);
	h->program = o->holder_program ? strdup(o->holder_program) : default_program();
	if (!h->socket_path || !h->program)
		return rs_err(err, -ENOMEM, "fd store: out of memory");
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0)
		return rs_err(err, -errno, "fd store: epoll_create1: %s", strerror(errno));

	int conn = -1;
	pid_t pid = 0;
	int rc = holder_connect(h->socket_path, &conn, &pid, err);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		rs_error_clear(err);
		return 0; /* none runs: started on the first add */
	}
	if (rc < 0)
		return rc;
	struct fdstore_entry *v = NULL;
	size_t n = 0;
	rc = read_handover(conn, &v, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int dup_fd = fcntl(v[i].fd, F_DUPFD_CLOEXEC, 3);
		if (dup_fd < 0)
			rc = rs_err(err, -errno, "fd holder: dup: %s", strerror(errno));
		else if ((rc = fdt_put(&s->table, v[i].name, dup_fd)) < 0)
			rs_err(err, rc, "fd holder: %s", strerror(-rc));
	}
	if (rc == 0)
		rc = set_conn(h, conn, pid, err);
	else
		close(conn);
	if (rc < 0) {
		free_entries(v, n);
		return rc;
	}
	*restored = v;
	*n_restored = n;
	return 0;
}

int hc_add(struct fdstore *s, const char *name, int fd, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	if (h->replaced)
		return rs_err(err, -ESTALE, "fd holder: another process took the store over");
	if (fdt_find(&s->table, name) < 0 && s->table.n >= FDSTORE_MAX_FDS)
		return rs_err(err, -EMFILE, "fd store: holds %d fds already", FDSTORE_MAX_FDS);
	int mine = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (mine < 0)
		return rs_err(err, -errno, "fd store: dup of %s: %s", name, strerror(errno));
	int rc = fdt_put(&s->table, name, mine);
	if (rc < 0)
		return rs_err(err, rc, "fd store: %s: %s", name, strerror(-rc));
	rc = ensure_holder(s, err);
	if (rc < 0) {
		fdt_remove(&s->table, name);
		return rc;
	}
	rc = send_add(h, name, fd);
	if (rc == -EPIPE)
		return restart_holder(s, err);
	if (rc < 0) {
		fdt_remove(&s->table, name);
		if (rc == -ESTALE)
			return rs_err(err, rc, "fd holder: another process took the store over");
		return rs_err(err, rc, "fd holder: storing %s: %s", name, strerror(-rc));
	}
	return 0;
}

int hc_remove(struct fdstore *s, const char *name, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	if (h->replaced)
		return rs_err(err, -ESTALE, "fd holder: another process took the store over");
	if (fdt_remove(&s->table, name) < 0)
		return rs_err(err, -ENOENT, "fd store: nothing stored as %s", name);
	if (h->conn < 0)
		return 0;
	int rc = fdh_send(h->conn, FDH_REMOVE, 0, name, -1);
	if (rc == 0)
		rc = await_reply(h);
	else if (rc == -ECONNRESET || rc == -ENOTCONN)
		rc = -EPIPE;
	if (rc == -ENOENT)
		rc = 0; /* gone already: what we wanted */
	if (rc == 0 && s->table.n == 0) {
		drop_conn(h); /* the holder exits with its last fd */
		return 0;
	}
	if (rc == -EPIPE)
		return restart_holder(s, err);
	if (rc == -ESTALE)
		return rs_err(err, rc, "fd holder: another process took the store over");
	if (rc < 0)
		return rs_err(err, rc, "fd holder: removing %s: %s", name, strerror(-rc));
	return 0;
}

int hc_check(struct fdstore *s, struct rs_error *err)
{
	struct fdstore_holder *h = &s->h;
	if (h->replaced)
		return rs_err(err, -ESTALE, "fd holder: another process took the store over");
	if (h->conn < 0)
		return 0;
	for (;;) {
		if (fdh_wait(h->conn, 0) == -ETIMEDOUT)
			return 0;
		struct fdh_msg m;
		int rc = fdh_recv(h->conn, &m);
		if (rc > 0 && m.fd >= 0)
			close(m.fd);
		if (rc > 0 && m.op == FDH_REPLACED) {
			h->replaced = true;
			drop_conn(h);
			return rs_err(err, -ESTALE,
				      "fd holder %s: another process took the store over",
				      h->socket_path);
		}
		if (rc > 0)
			continue; /* nothing else comes unasked: ignore it */
		if (rc == -EBADMSG)
			continue;
		return restart_holder(s, err);
	}
}

void hc_stop(struct fdstore *s)
{
	struct fdstore_holder *h = &s->h;
	if (!h->replaced && h->conn >= 0) {
		int rc = fdh_send(h->conn, FDH_STOP, 0, NULL, -1);
		if (rc == 0)
			rc = await_reply(h);
		if (rc < 0 && rc != -EPIPE)
			rs_log(RS_LOG_WARN, "fd holder %s: stop: %s", h->socket_path,
			       strerror(-rc));
	}
	hc_close(s);
}

void hc_close(struct fdstore *s)
{
	struct fdstore_holder *h = &s->h;
	drop_conn(h);
	if (h->epfd >= 0)
		close(h->epfd);
	h->epfd = -1;
}
