// SPDX-License-Identifier: Apache-2.0
/* fdstore: systemd's fd store, spoken over NOTIFY_SOCKET (sd_notify's
 * datagrams) and read back from LISTEN_FDS at start. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "fdstore_internal.h"

#define LISTEN_FDS_START 3

static int parse_notify_addr(struct fdstore_systemd *sd, const char *path, struct rs_error *err)
{
	size_t len = strlen(path);
	memset(&sd->addr, 0, sizeof(sd->addr));
	sd->addr.sun_family = AF_UNIX;
	if (len < 2 || (path[0] != '/' && path[0] != '@'))
		return rs_err(
		    err, -EINVAL,
		    "NOTIFY_SOCKET '%s': neither an absolute path nor an abstract '@' name", path);
	if (len >= sizeof(sd->addr.sun_path))
		return rs_err(err, -ENAMETOOLONG, "NOTIFY_SOCKET '%s': longer than %zu bytes", path,
			      sizeof(sd->addr.sun_path) - 1);
	memcpy(sd->addr.sun_path, path, len);
	if (path[0] == '@') {
		/* Abstract: a leading NUL and exactly the name's bytes, no terminator. */
		sd->addr.sun_path[0] = '\0';
		sd->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		sd->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	return 0;
}

static int sd_send(struct fdstore *s, const char *text, int fd)
{
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh = {.msg_name = &s->sd.addr,
			    .msg_namelen = s->sd.addr_len,
			    .msg_iov = &iov,
			    .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do {
		n = sendmsg(s->sd.sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return 0;
}

/* The fds systemd passed us (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES), each
 * with its name; the variables are unset so that no child sees them. */
static int take_listen_fds(struct fdstore *s, struct fdstore_entry **restored, size_t *n_restored,
			   struct rs_error *err)
{
	const char *pid_s = getenv("LISTEN_PID");
	const char *fds_s = getenv("LISTEN_FDS");
	const char *names_s = getenv("LISTEN_FDNAMES");
	int rc = 0;
	cleanup_free char *names = names_s ? strdup(names_s) : NULL;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (!pid_s || !fds_s)
		return 0;
	if (names_s && !names)
		return rs_err(err, -ENOMEM, "LISTEN_FDNAMES: out of memory");
	int64_t pid = rs_parse_decimal(pid_s, strlen(pid_s));
	if (pid != (int64_t)getpid())
		return 0;
	int64_t count = rs_parse_decimal(fds_s, strlen(fds_s));
	if (count < 0 || count > FDSTORE_MAX_FDS)
		return rs_err(err, -EINVAL, "LISTEN_FDS '%s': not a count of 0..%d", fds_s,
			      FDSTORE_MAX_FDS);
	if (count == 0)
		return 0;
	struct fdstore_entry *v = calloc((size_t)count, sizeof(*v));
	if (!v)
		return rs_err(err, -ENOMEM, "LISTEN_FDS: out of memory");
	char *cursor = names;
	for (int64_t i = 0; i < count; i++) {
		int fd = LISTEN_FDS_START + (int)i;
		const char *name = cursor ? strsep(&cursor, ":") : NULL;
		if (!name || !*name)
			name = "unknown";
		snprintf(v[i].name, sizeof(v[i].name), "%s", name);
		v[i].fd = fd;
		int fl = fcntl(fd, F_GETFD);
		if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
			rc = rs_err(err, -errno, "LISTEN_FDS: fd %d: %s", fd, strerror(errno));
			free(v);
			return rc;
		}
		if (fdt_find(&s->table, v[i].name) < 0) {
			rc = fdt_put(&s->table, v[i].name, -1);
			if (rc < 0) {
				free(v);
				return rs_err(err, rc, "LISTEN_FDS: %s", strerror(-rc));
			}
		}
	}
	*restored = v;
	*n_restored = (size_t)count;
	return 0;
}

int sd_store_open(struct fdstore *s, const char *notify_socket, struct fdstore_entry **restored,
		  size_t *n_restored, struct rs_error *err)
{
	int rc = parse_notify_addr(&s->sd, notify_socket, err);
	if (rc < 0)
		return rc;
	s->sd.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->sd.sock < 0)
		return rs_err(err, -errno, "NOTIFY_SOCKET: socket: %s", strerror(errno));
	return take_listen_fds(s, restored, n_restored, err);
}

static int sd_remove_name(struct fdstore *s, const char *name)
{
	char text[64 + FDSTORE_NAME_MAX];
	snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	return sd_send(s, text, -1);
}

int sd_store_add(struct fdstore *s, const char *name, int fd, struct rs_error *err)
{
	char text[64 + FDSTORE_NAME_MAX];
	int rc;
	/* systemd keeps every fd sent under a name: drop the old one first. */
	if (fdt_find(&s->table, name) >= 0) {
		rc = sd_remove_name(s, name);
		if (rc < 0)
			return rs_err(err, rc, "fd store: FDSTOREREMOVE %s: %s", name,
				      strerror(-rc));
	}
	snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
	rc = sd_send(s, text, fd);
	if (rc < 0)
		return rs_err(err, rc, "fd store: FDSTORE %s to NOTIFY_SOCKET: %s", name,
			      strerror(-rc));
	rc = fdt_put(&s->table, name, -1);
	if (rc < 0)
		return rs_err(err, rc, "fd store: %s: %s", name, strerror(-rc));
	return 0;
}

int sd_store_remove(struct fdstore *s, const char *name, struct rs_error *err)
{
	int rc = sd_remove_name(s, name);
	if (rc < 0)
		return rs_err(err, rc, "fd store: FDSTOREREMOVE %s: %s", name, strerror(-rc));
	fdt_remove(&s->table, name);
	return 0;
}

void sd_store_notify(struct fdstore *s, const char *text)
{
	int rc = sd_send(s, text, -1);
	if (rc < 0)
		rs_log(RS_LOG_WARN, "fd store: %s to NOTIFY_SOCKET: %s", text, strerror(-rc));
}

void sd_store_stop(struct fdstore *s)
{
	for (size_t i = 0; i < s->table.n; i++) {
		int rc = sd_remove_name(s, s->table.v[i].name);
		if (rc < 0)
			rs_log(RS_LOG_WARN, "fd store: FDSTOREREMOVE %s: %s", s->table.v[i].name,
			       strerror(-rc));
	}
	sd_store_close(s);
}

void sd_store_close(struct fdstore *s)
{
	if (s->sd.sock >= 0)
		close(s->sd.sock);
	s->sd.sock = -1;
}
