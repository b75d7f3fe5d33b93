// SPDX-License-Identifier: Apache-2.0
/* The API's listening socket: bound here rather than by gRPC, so that it can
 * outlive the process in an fd store and a successor (or a restarted daemon)
 * accepts from the same socket: a client that connects while no daemon runs
 * waits in its backlog instead of being refused. A socket kept that way is
 * used again only if the path still leads to it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api.h"

/* mkdir -p for the socket's directory (new directories are 0700). */
static int make_parent_dirs(const char *path, struct rs_error *err)
{
	cleanup_free char *p = strdup(path);
	if (!p)
		return rs_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(p, '/');
	if (!slash || slash == p)
		return 0;
	*slash = '\0';
	for (char *q = p + 1;; q++) {
		if (*q != '/' && *q != '\0')
			continue;
		char c = *q;
		*q = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return rs_err(err, -errno, "socket directory %s: %s", p, strerror(errno));
		*q = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
		return rs_err(err, -ENOTDIR, "socket directory %s: not a directory", p);
	return 0;
}

static int fill_addr(struct sockaddr_un *sa, const char *path, struct rs_error *err)
{
	size_t len = strlen(path);
	if (len == 0)
		return rs_err(err, -EINVAL, "no socket path");
	if (len >= sizeof(sa->sun_path))
		return rs_err(err, -ENAMETOOLONG, "socket path %s is too long (max %zu bytes)",
			      path, sizeof(sa->sun_path) - 1);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}

/* Removes a socket file nobody listens on; refuses to take over a live one. */
static int clear_stale_socket(const char *path, struct rs_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return rs_err(err, -errno, "socket %s: %s", path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return rs_err(err, -EEXIST, "socket %s: a file that is not a socket is in the way",
			      path);
	cleanup_fd int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rs_err(err, -errno, "socket: %s", strerror(errno));
	struct sockaddr_un sa;
	int rc = fill_addr(&sa, path, err);
	if (rc < 0)
		return rc;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return rs_err(err, -EADDRINUSE, "socket %s: another server is listening on it",
			      path);
	if (errno != ECONNREFUSED)
		return rs_err(err, -errno, "socket %s: %s", path, strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return rs_err(err, -errno, "removing stale socket %s: %s", path, strerror(errno));
	rs_log(RS_LOG_INFO, "api: removed stale socket %s", path);
	return 0;
}

static int bind_new(const char *path, int *out, struct rs_error *err)
{
	struct sockaddr_un sa;
	int rc = fill_addr(&sa, path, err);
	if (rc == 0)
		rc = make_parent_dirs(path, err);
	if (rc == 0)
		rc = clear_stale_socket(path, err);
	if (rc < 0)
		return rc;
	cleanup_fd int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return rs_err(err, -errno, "socket: %s", strerror(errno));
	/* With the umask set first the socket is born 0660, so there is no
	 * moment in which another user may connect (a chmod after the bind
	 * left one). Nothing else creates files while the daemon binds it, and
	 * what does passes its own stricter mode. */
	mode_t old_mask = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old_mask);
	if (rc < 0)
		return rs_err(err, -e, "bind %s: %s", path, strerror(e));
	if (listen(fd, SOMAXCONN) < 0) {
		e = errno;
		unlink(path);
		return rs_err(err, -e, "listen on %s: %s", path, strerror(e));
	}
	*out = rs_steal_fd(&fd);
	return 0;
}

/* The inode and device of the file a bound unix socket was bound to, as the
 * kernel's sock_diag reports them (UDIAG_SHOW_VFS): 1 with them, 0 when the
 * kernel cannot say (no unix_diag, another network namespace), <0 error. */
static int socket_file_of(int fd, uint32_t *ino, uint32_t *dev)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	cleanup_fd int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return 0;
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req = {
	    .h = {.nlmsg_len = sizeof(req),
		  .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		  .nlmsg_flags = NLM_F_REQUEST},
	    .r = {.sdiag_family = AF_UNIX,
		  .udiag_states = ~0u,
		  .udiag_ino = (uint32_t)st.st_ino,
		  .udiag_show = UDIAG_SHOW_VFS,
		  .udiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}},
	};
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return 0;
	union {
		struct nlmsghdr h;
		char buf[1024];
	} resp;
	struct timeval tv = {.tv_sec = 1};
	setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recv(nl, &resp, sizeof(resp), 0);
	if (n < 0 || !NLMSG_OK(&resp.h, (size_t)n) || resp.h.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    resp.h.nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
		return 0;
	const struct unix_diag_msg *m = NLMSG_DATA(&resp.h);
	if (m->udiag_ino != (uint32_t)st.st_ino)
		return 0;
	int len = (int)(resp.h.nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
	for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type != UNIX_DIAG_VFS || RTA_PAYLOAD(a) < sizeof(struct unix_diag_vfs))
			continue;
		const struct unix_diag_vfs *v = RTA_DATA(a);
		*ino = v->udiag_vfs_ino;
		*dev = v->udiag_vfs_dev;
		return 1;
	}
	return 0;
}

int api_listen_check(int fd, const char *path, struct rs_error *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "fd %d: %s", fd, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return rs_err(err, -ENOTSOCK, "not a socket");
	int v = 0;
	socklen_t vl = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &vl) < 0 || v != AF_UNIX)
		return rs_err(err, -EAFNOSUPPORT, "not a unix socket");
	vl = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) < 0 || v != SOCK_STREAM)
		return rs_err(err, -EPROTOTYPE, "not a stream socket");
	vl = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) < 0 || v != 1)
		return rs_err(err, -EINVAL, "not listening");
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		return rs_err(err, -errno, "getsockname: %s", strerror(errno));
	size_t off = offsetof(struct sockaddr_un, sun_path);
	size_t blen = sl > off ? strnlen(sa.sun_path, sl - off) : 0;
	if (blen == 0 || sa.sun_path[0] == '\0')
		return rs_err(err, -EADDRNOTAVAIL, "bound to no path");
	if (blen != strlen(path) || memcmp(sa.sun_path, path, blen) != 0)
		return rs_err(err, -EADDRNOTAVAIL, "bound to %.*s, not %s", (int)blen, sa.sun_path,
			      path);
	struct stat ps;
	if (lstat(path, &ps) < 0)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(ps.st_mode))
		return rs_err(err, -ENOTSOCK, "%s is not a socket any more", path);
	uint32_t ino = 0, dev = 0;
	int known = socket_file_of(fd, &ino, &dev);
	/* The kernel's dev_t, as sock_diag gives it: major << 20 | minor. */
	uint32_t kdev = (uint32_t)(major(ps.st_dev) << 20 | minor(ps.st_dev));
	if (known > 0 && (ino != (uint32_t)ps.st_ino || dev != kdev))
		return rs_err(err, -ESTALE, "%s was replaced by another socket file", path);
	if (known == 0)
		rs_log(RS_LOG_DEBUG,
		       "api: the kernel cannot tell which file %s is bound to (no sock_diag): "
		       "only its path and type are checked",
		       path);
	return 0;
}

int api_listen_open(const char *path, int restored_fd, int *out, bool *reused, struct rs_error *err)
{
	*out = -1;
	*reused = false;
	if (restored_fd >= 0) {
		struct rs_error why = {0};
		if (api_listen_check(restored_fd, path, &why) == 0) {
			int fl = fcntl(restored_fd, F_GETFL);
			if (fl >= 0 && fcntl(restored_fd, F_SETFL, fl | O_NONBLOCK) == 0) {
				*out = restored_fd;
				*reused = true;
				return 0;
			}
			snprintf(why.msg, sizeof(why.msg), "fcntl: %s", strerror(errno));
		}
		rs_log(RS_LOG_WARN,
		       "api: the listening socket an earlier process kept is not used (%s): "
		       "binding %s anew",
		       why.msg, path);
		close(restored_fd);
	}
	int rc = bind_new(path, out, err);
	if (rc < 0)
		rs_error_prefix(err, "api");
	return rc;
}
