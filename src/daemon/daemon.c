/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's life: the root's lock, the fd store (connections an earlier
 * process kept), registry client, layerfs runtime, remote-layer hook,
 * snapshotter (which mounts or takes over stored remote layers), the gRPC
 * service; then wait for SIGINT, SIGTERM or a successor and take it all
 * down in reverse order, leaving the mounts to the next process unless told
 * to end them. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "daemon_internal.h"

/* How long --takeover waits for the old daemon to let the root go. */
#define TAKEOVER_WAIT_MS 60000
/* The API's listening socket in the fd store (a systemd .socket unit that
 * passes it gives it this FileDescriptorName=). */
#define API_LISTEN_NAME "api-listen"

static int mkdir_p(const char *path, mode_t mode, struct rs_error *err)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", path);
	for (char *p = buf + 1;; p++) {
		bool end = *p == '\0';
		if (*p == '/' || end) {
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return rs_err(err, -errno, "%s: %s", buf, strerror(errno));
			if (end)
				break;
			*p = '/';
		}
	}
	return 0;
}

static enum rs_log_level level_of(const char *s)
{
	enum rs_log_level l = RS_LOG_INFO;
	(void)rs_log_level_parse(s, &l);
	return l;
}

/* One daemon per root: an flock on ROOT/daemon.lock held for the process's
 * life. With takeover, waits for the holder to let it go (the old daemon
 * exits once the fd store told it it was replaced). */
static int lock_root(const struct daemon_config *c, bool wait, int *out, struct rs_error *err)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/daemon.lock", c->root) >= (int)sizeof(path))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", c->root);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	int64_t deadline = rs_monotonic_ms() + TAKEOVER_WAIT_MS;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e != EWOULDBLOCK || !wait || rs_monotonic_ms() > deadline) {
			close(fd);
			if (e != EWOULDBLOCK)
				return rs_err(err, -e, "lock %s: %s", path, strerror(e));
			return rs_err(err, -EBUSY,
				      wait ? "the daemon serving %s did not hand over within %d s "
					     "(is its [restart] fd_store off?)"
					   : "another remote-snapshotter serves %s (--takeover "
					     "replaces it without breaking its mounts)",
				      c->root, TAKEOVER_WAIT_MS / 1000);
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	*out = fd;
	return 0;
}

static int open_store(const struct daemon_config *c, struct fdstore **store,
		      struct fdstore_entry **restored, size_t *n, struct rs_error *err)
{
	*store = NULL;
	if (c->fd_store && strcmp(c->fd_store, "off") == 0)
		return 0;
	char sock[4096];
	if (snprintf(sock, sizeof(sock), "%s/fd-holder.sock", c->root) >= (int)sizeof(sock))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", c->root);
	struct fdstore_opts fo = {
	    .holder_socket = sock,
	    .holder_program = c->holder_program && *c->holder_program ? c->holder_program : NULL,
	};
	int r = fdstore_open(&fo, store, restored, n, err);
	if (r < 0) {
		rs_error_prefix(err, "fd store");
		return r;
	}
	rs_log(RS_LOG_INFO, "fd store: %s, %zu fd(s) kept by an earlier process",
	       fdstore_kind(*store), *n);
	return 0;
}

/* Takes the API's listening socket out of what the store gave back: its fd,
 * -1 for none. Of several (a socket unit's and the store's copy), the first. */
static int take_listener(struct fdstore_entry *v, size_t n)
{
	int fd = -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i].fd < 0 || strcmp(v[i].name, API_LISTEN_NAME) != 0)
			continue;
		if (fd < 0)
			fd = v[i].fd;
		else
			close(v[i].fd);
		v[i].fd = -1;
	}
	return fd;
}

/* The listening socket: the one an earlier process kept, if the path still
 * leads to it, else bound anew; then kept in the store (a successor, or the
 * next start after a crash, accepts from it: clients wait in its backlog
 * meanwhile instead of being refused). *stored: whether it is. */
static int open_listener(const struct daemon_config *c, struct fdstore *store, int restored_fd,
			 int *fd, bool *reused, bool *stored, struct rs_error *err)
{
	*stored = false;
	int rc = api_listen_open(c->address, restored_fd, fd, reused, err);
	if (rc < 0)
		return rc;
	if (*reused)
		rs_log(RS_LOG_INFO, "api: %s: accepting on the socket an earlier process kept",
		       c->address);
	if (!store)
		return 0;
	struct rs_error e = {0};
	if (fdstore_add(store, API_LISTEN_NAME, *fd, &e) < 0)
		rs_log(RS_LOG_WARN,
		       "api: the listening socket is not kept (%s): while no daemon runs, "
		       "clients are refused",
		       e.msg);
	else
		*stored = true;
	return 0;
}

enum stop_why { STOP_SIGNAL, STOP_REPLACED };

/* Serves until a signal or until another daemon took the fd store over. */
static enum stop_why wait_for_stop(struct fdstore *store, int *sig)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	for (;;) {
		int pfd = store ? fdstore_poll_fd(store) : -1;
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
		if (sfd < 0) {
			/* No signalfd: sigwait, and no watch on the holder. */
			while (sigwait(&sigs, sig) != 0)
				;
			return STOP_SIGNAL;
		}
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				*sig = (int)si.ssi_signo;
				close(sfd);
				return STOP_SIGNAL;
			}
		}
		if (pfd >= 0 && p[1].revents) {
			struct rs_error e = {0};
			int r = fdstore_check(store, &e);
			if (r == -ESTALE) {
				close(sfd);
				return STOP_REPLACED;
			}
			if (r < 0) {
				rs_log(RS_LOG_ERROR,
				       "fd store: %s; mounts will not survive a restart of this "
				       "daemon until it is back",
				       e.msg);
				struct timespec ts = {1, 0};
				nanosleep(&ts, NULL);
			}
		}
	}
}

int daemon_run(const struct daemon_config *c, int ready_fd, struct rs_error *err)
{
	rs_log_set_level(level_of(c->log_level));
	rs_log_set_json(strcmp(c->log_format, "json") == 0);
	int rc = mkdir_p(c->root, 0700, err);
	if (rc == 0)
		rc = mkdir_p(c->cache_dir, 0700, err);
	if (rc < 0)
		return rc;

	int lock_fd = -1;
	struct fdstore *store = NULL;
	struct fdstore_entry *restored = NULL;
	size_t n_restored = 0;
	struct reg_client *client = NULL;
	struct lfs_runtime *rt = NULL;
	struct daemon_remote *remote = NULL;
	struct snapshotter *snap = NULL;
	struct api_server *api = NULL;
	int listen_fd = -1;
	bool listen_reused = false, listen_stored = false;
	bool keep = false;
	int64_t t_start = rs_monotonic_ms();
	if (c->takeover) {
		/* Connecting replaces the old daemon's hold on the store: it stops
		 * serving and exits, leaving its mounts, and the lock, to us. */
		rc = open_store(c, &store, &restored, &n_restored, err);
		if (rc == 0)
			rc = lock_root(c, true, &lock_fd, err);
	} else {
		rc = lock_root(c, false, &lock_fd, err);
		if (rc == 0)
			rc = open_store(c, &store, &restored, &n_restored, err);
	}
	if (rc < 0)
		goto out;
	rc = open_listener(c, store, take_listener(restored, n_restored), &listen_fd,
			   &listen_reused, &listen_stored, err);
	if (rc < 0)
		goto out;
	struct reg_options ro = {
	    .hosts_dir = c->hosts_dir,
	    .plain_http = c->plain_http,
	    .docker_config = c->docker_config && *c->docker_config ? c->docker_config : NULL,
	    .timeout_ms = c->request_timeout_sec * 1000,
	    .retries = 2,
	};
	rc = reg_client_new(&ro, &client, err);
	if (rc < 0)
		goto out;
	struct lfs_runtime_opts lo = {
	    .workers = c->fuse_workers,
	    .fetchers = c->fetchers,
	    .mem_budget = (size_t)c->mem_cache_mib << 20,
	    .cache_dir = c->cache_dir,
	    .disk_max_bytes = c->cache_max_mib << 20,
	};
	if (c->passthrough && lfs_passthrough_parse(c->passthrough, &lo.passthrough) < 0) {
		rc = rs_err(err, -EINVAL, "fuse.passthrough: \"%s\" is not off, auto or on",
			    c->passthrough);
		goto out;
	}
	rc = lfs_runtime_new(&lo, &rt, err);
	if (rc < 0)
		goto out;
	struct daemon_remote_opts dro = {
	    .rt = rt,
	    .client = client,
	    .no_prefetch = !c->prefetch,
	    .no_background = !c->background_fetch,
	    .read_timeout_ms = c->read_timeout_sec * 1000,
	    .cfg = c,
	    .store = store,
	    .restored = restored,
	    .n_restored = n_restored,
	};
	rc = daemon_remote_new(&dro, &remote, err);
	if (rc < 0)
		goto out;
	restored = NULL; /* the hook's now */
	n_restored = 0;
	struct snap_opts so = {
	    .root = c->root,
	    .remote = daemon_remote_ops(remote),
	    .restore = true,
	};
	rc = snap_open(&so, &snap, err);
	if (rc < 0) {
		rs_error_prefix(err, "snapshots in %s", c->root);
		goto out;
	}
	daemon_remote_restore_done(remote);
	struct api_opts ao = {
	    .socket = c->address, .listen_fd = listen_fd, .threads = c->api_threads};
	rc = api_server_start(&ao, snap, &api, err);
	if (rc < 0)
		goto out;
	rs_log(RS_LOG_INFO, "remote-snapshotter serving on %s (root %s, %lld ms after start)",
	       c->address, c->root, (long long)(rs_monotonic_ms() - t_start));
	if (store)
		fdstore_notify_ready(store);
	if (ready_fd >= 0) {
		ssize_t w = write(ready_fd, "ready\n", 6);
		(void)w;
	}

	int sig = 0;
	enum stop_why why = wait_for_stop(store, &sig);
	keep = store && (why == STOP_REPLACED || !c->unmount_on_exit);
	if (why == STOP_REPLACED)
		rs_log(RS_LOG_INFO,
		       "remote-snapshotter: another process took over %s; handing over "
		       "the mounts",
		       c->root);
	else
		rs_log(RS_LOG_INFO, "remote-snapshotter: %s, shutting down%s", strsignal(sig),
		       keep ? "; mounts stay for the next start" : "");
	if (store)
		fdstore_notify_stopping(store);
	if (keep)
		daemon_remote_keep_mounts(remote);
out:
	/* First, so that calls in progress (a Prepare reading a TOC from a dead
	 * registry) end now, not at their timeouts, and the server's stop does
	 * not wait for them. */
	reg_client_cancel(client);
	/* The socket stays (stored) for the next process: the clients are moved
	 * off our connections before the server stops under them. */
	bool keep_socket = keep && listen_stored;
	api_server_stop(api, keep_socket);
	snap_close(snap);
	daemon_remote_free(remote);
	lfs_runtime_free(rt);
	reg_client_free(client);
	for (size_t i = 0; i < n_restored; i++)
		close(restored[i].fd);
	free(restored);
	bool listened = listen_fd >= 0;
	if (listened)
		close(listen_fd);
	if (store && listen_stored && !keep && rc < 0) {
		/* A failed start: the mounts are left as found, but clients are
		 * refused rather than left waiting in the backlog. */
		struct rs_error e = {0};
		(void)fdstore_remove(store, API_LISTEN_NAME, &e);
	}
	/* A socket systemd passed may be a .socket unit's, whose path is not
	 * ours to remove. */
	bool unlink_socket =
	    listened && !keep_socket &&
	    !(listen_reused && store && strcmp(fdstore_kind(store), "systemd") == 0);
	if (store && keep)
		fdstore_close(store);
	else if (store && rc == 0)
		fdstore_stop(store);
	else if (store)
		fdstore_close(store); /* a failed start leaves what it found */
	/* Only now that no store holds it: never a path to a live socket. */
	if (unlink_socket && unlink(c->address) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "api: removing socket %s: %s", c->address, strerror(errno));
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}
