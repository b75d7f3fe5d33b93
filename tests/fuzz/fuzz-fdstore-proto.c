/* SPDX-License-Identifier: Apache-2.0 */
/* rs-fd-holder's packet decoder (fdh_recv), fed over a real SOCK_SEQPACKET
 * pair as a peer would send it. The first byte says how many fds (0..3, of
 * /dev/null) ride along in SCM_RIGHTS; the rest is the packet. Every fd that
 * arrives must be given to the caller or closed: an fd leak fails. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdstore/fdstore_internal.h"

static int pair[2] = {-1, -1};
static int null_fd = -1;

static int lowest_free_fd(void)
{
	int fd = dup(0);
	if (fd >= 0)
		close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (pair[0] < 0) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
			abort();
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (size < 1 || size > FDH_MSG_MAX + 64)
		return 0;
	int nfds = data[0] % 4;
	int fds[3] = {null_fd, null_fd, null_fd};
	struct iovec iov = {.iov_base = (void *)(data + 1), .iov_len = size - 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(fds))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	if (sendmsg(pair[0], &mh, MSG_NOSIGNAL) < 0)
		return 0;
	int before = lowest_free_fd();
	struct fdh_msg m;
	int rc = fdh_recv(pair[1], &m);
	if (rc == 1 && m.fd >= 0)
		close(m.fd);
	if (rc == 1 && m.name[0] && fdstore_check_name(m.name) != 0)
		abort();
	if (lowest_free_fd() != before)
		abort(); /* an fd of the packet leaked */
	return 0;
}
