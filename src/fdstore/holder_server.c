// SPDX-License-Identifier: Apache-2.0
/* fdstore: rs-fd-holder's loop. It holds fds by name for one client at a
 * time and nothing else: every message is checked by proto.c, every peer by
 * its uid, and it exits once it has nothing left to hold. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "fdstore_internal.h"

/* A holder nobody connects to, holding nothing, gives up after this. */
#define HOLDER_IDLE_MS 60000

struct holder {
	const char *path;
	int listen_fd;
	int client; /* the one client, -1 when none */
	struct fdt held;
	bool ever_added;
	bool done;
	dev_t dev; /* our socket file, to unlink only ours */
	ino_t ino;
};

static int listen_on(struct holder *hd, struct rs_error *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t len = strlen(hd->path);
	if (len == 0 || len >= sizeof(a.sun_path))
		return rs_err(err, -ENAMETOOLONG, "socket path '%s': not 1..%zu bytes", hd->path,
			      sizeof(a.sun_path) - 1);
	memcpy(a.sun_path, hd->path, len + 1);
	cleanup_fd int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rs_err(err, -errno, "socket: %s", strerror(errno));
	mode_t old = umask(0077);
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0 && errno == EADDRINUSE) {
		/* A socket file: a live holder's, or a stale one nobody listens on. */
		cleanup_fd int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
			umask(old);
			return rs_err(err, -EADDRINUSE, "%s: another holder listens there",
				      hd->path);
		}
		struct stat st;
		if (lstat(hd->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(hd->path);
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	int e = errno;
	umask(old);
	if (rc < 0)
		return rs_err(err, -e, "bind %s: %s", hd->path, strerror(e));
	struct stat st;
	if (chmod(hd->path, 0600) < 0 || stat(hd->path, &st) < 0 || listen(fd, 16) < 0) {
		e = errno;
		unlink(hd->path);
		return rs_err(err, -e, "%s: %s", hd->path, strerror(e));
	}
	hd->dev = st.st_dev;
	hd->ino = st.st_ino;
	hd->listen_fd = rs_steal_fd(&fd);
	return 0;
}

/* Before saying the last goodbye: a new client must find no socket, so that
 * it starts a new holder rather than reach this one on its way out. */
static void unlink_ours(struct holder *hd)
{
	struct stat st;
	if (stat(hd->path, &st) == 0 && st.st_dev == hd->dev && st.st_ino == hd->ino)
		unlink(hd->path);
}

static void drop_client(struct holder *hd)
{
	if (hd->client >= 0)
		close(hd->client);
	hd->client = -1;
}

static int on_add(struct holder *hd, struct fdh_msg *m)
{
	if (fdt_find(&hd->held, m->name) < 0 && hd->held.n >= FDSTORE_MAX_FDS) {
		close(m->fd);
		return -EMFILE;
	}
	int rc = fdt_put(&hd->held, m->name, m->fd);
	m->fd = -1;
	if (rc == 0)
		hd->ever_added = true;
	return rc;
}

static int on_remove(struct holder *hd, struct fdh_msg *m)
{
	int rc = fdt_remove(&hd->held, m->name);
	if (rc == 0 && hd->held.n == 0) {
		unlink_ours(hd);
		hd->done = true;
	}
	return rc;
}

static int on_stop(struct holder *hd, struct fdh_msg *m)
{
	fdt_clear(&hd->held);
	unlink_ours(hd);
	hd->done = true;
	return 0;
}

/* What a client may ask; anything else ends its connection. */
static int (*const handlers[FDH_OP_COUNT])(struct holder *, struct fdh_msg *) = {
    [FDH_ADD] = on_add,
    [FDH_REMOVE] = on_remove,
    [FDH_STOP] = on_stop,
};

static void serve_client(struct holder *hd)
{
	struct fdh_msg m;
	int rc = fdh_recv(hd->client, &m);
	if (rc <= 0) {
		drop_client(hd); /* gone, or spoke nonsense */
		return;
	}
	if (!handlers[m.op]) {
		if (m.fd >= 0)
			close(m.fd);
		drop_client(hd);
		return;
	}
	rc = handlers[m.op](hd, &m);
	if (m.fd >= 0)
		close(m.fd);
	if (fdh_send(hd->client, rc == 0 ? FDH_OK : FDH_ERR, rc == 0 ? 0 : -rc, NULL, -1) < 0)
		drop_client(hd);
}

static void accept_client(struct holder *hd)
{
	int fd = accept4(hd->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != getuid()) {
		close(fd);
		return;
	}
	struct timeval tv = {.tv_sec = FDSTORE_HOLDER_TIMEOUT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (hd->client >= 0) {
		fdh_send(hd->client, FDH_REPLACED, 0, NULL, -1);
		drop_client(hd);
	}
	hd->client = fd;
	for (size_t i = 0; i < hd->held.n; i++) {
		if (fdh_send(fd, FDH_ENTRY, 0, hd->held.v[i].name, hd->held.v[i].fd) < 0) {
			drop_client(hd);
			return;
		}
	}
	if (fdh_send(fd, FDH_END, (int32_t)hd->held.n, NULL, -1) < 0)
		drop_client(hd);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Tells whoever started us how the start went (see holder_spawn.c). */
static void report_ready(int ready_fd, const struct rs_error *err)
{
	if (ready_fd < 0)
		return;
	if (err && err->msg[0]) {
		/* 'M', the (negative) code, the message. */
		char msg[1 + sizeof(int) + RS_ERROR_MSG_MAX];
		msg[0] = 'M';
		memcpy(msg + 1, &err->code, sizeof(int));
		size_t len = strnlen(err->msg, RS_ERROR_MSG_MAX - 1);
		memcpy(msg + 1 + sizeof(int), err->msg, len);
		ssize_t w = write(ready_fd, msg, 1 + sizeof(int) + len);
		(void)w;
	}
	close(ready_fd);
}

int fdstore_holder_run(const char *socket_path, int ready_fd, struct rs_error *err)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	raise_fd_limit();
	struct holder hd = {.path = socket_path, .listen_fd = -1, .client = -1};
	struct rs_error local = {0};
	if (!err)
		err = &local;
	int rc = listen_on(&hd, err);
	report_ready(ready_fd, rc < 0 ? err : NULL);
	if (rc < 0)
		return rc;
	bool had_client = false;
	while (!hd.done) {
		struct pollfd p[2] = {{.fd = hd.listen_fd, .events = POLLIN},
				      {.fd = hd.client, .events = POLLIN}};
		int timeout = hd.held.n == 0 && hd.client < 0 ? HOLDER_IDLE_MS : -1;
		int r = poll(p, hd.client >= 0 ? 2 : 1, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = rs_err(err, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (r == 0)
			break; /* idle: nobody came, nothing held */
		if (hd.client >= 0 && p[1].revents)
			serve_client(&hd);
		if (p[0].revents & POLLIN) {
			accept_client(&hd);
			had_client = true;
		}
		/* Nothing held and the client that could add is gone: no reason to stay. */
		if (hd.held.n == 0 && hd.client < 0 && (hd.ever_added || had_client))
			break;
	}
	unlink_ours(&hd);
	fdt_clear(&hd.held);
	drop_client(&hd);
	close(hd.listen_fd);
	return rc;
}
