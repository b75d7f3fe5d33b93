// SPDX-License-Identifier: Apache-2.0
/* fdstore: the holder's wire protocol. Every packet is checked against one
 * table (name wanted, fd wanted) before anyone looks at it. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "fdstore_internal.h"

static const struct {
	bool name; /* a name of 1..FDSTORE_NAME_MAX checked characters */
	bool fd;   /* exactly one fd */
} op_shape[FDH_OP_COUNT] = {
    [FDH_ADD] = {.name = true, .fd = true},
    [FDH_REMOVE] = {.name = true},
    [FDH_STOP] = {0},
    [FDH_ENTRY] = {.name = true, .fd = true},
    [FDH_END] = {0},
    [FDH_OK] = {0},
    [FDH_ERR] = {0},
    [FDH_REPLACED] = {0},
};

int fdh_send(int sock, enum fdh_op op, int32_t value, const char *name, int fd)
{
	unsigned char buf[FDH_MSG_MAX];
	size_t name_len = name ? strlen(name) : 0;
	if (name_len > FDSTORE_NAME_MAX)
		return -EINVAL;
	struct fdh_hdr h = {
	    .magic = FDH_MAGIC, .op = (uint16_t)op, .name_len = (uint16_t)name_len, .value = value};
	memcpy(buf, &h, sizeof(h));
	if (name_len)
		memcpy(buf + sizeof(h), name, name_len);
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(h) + name_len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
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
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == iov.iov_len ? 0 : -EMSGSIZE;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int fdh_recv(int sock, struct fdh_msg *m)
{
	/* One byte more than the largest message, to see a longer one. */
	unsigned char buf[FDH_MSG_MAX + 1];
	/* Room for a few fds, so that a sender passing more is caught (and its
	 * fds closed) rather than silently truncated. */
	enum { FDS_ROOM = 8 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FDS_ROOM)];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl)};
	ssize_t n;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	int fds[FDS_ROOM * 2];
	size_t nfds = 0;
	bool bad = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			bad = true;
			continue;
		}
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && nfds < sizeof(fds) / sizeof(fds[0]); i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (n == 0 && nfds == 0)
		return 0;

	struct fdh_hdr h;
	if (bad || (size_t)n < sizeof(h))
		goto malformed;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != FDH_MAGIC || h.op == 0 || h.op >= FDH_OP_COUNT ||
	    (size_t)n != sizeof(h) + h.name_len || h.name_len > FDSTORE_NAME_MAX)
		goto malformed;
	if (op_shape[h.op].name != (h.name_len > 0) || nfds != (op_shape[h.op].fd ? 1u : 0u))
		goto malformed;
	memcpy(m->name, buf + sizeof(h), h.name_len);
	m->name[h.name_len] = '\0';
	if (h.name_len && fdstore_check_name(m->name) < 0)
		goto malformed;
	m->op = (enum fdh_op)h.op;
	m->value = h.value;
	m->fd = nfds ? fds[0] : -1;
	return 1;

malformed:
	close_fds(fds, nfds);
	return -EBADMSG;
}

int fdh_wait(int sock, int timeout_ms)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int64_t deadline = rs_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - rs_monotonic_ms();
		int r = poll(&p, 1, left > 0 ? (int)left : 0);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}
