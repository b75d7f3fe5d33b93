// SPDX-License-Identifier: Apache-2.0
/* A connection an earlier process mounted whose layer this process cannot
 * serve (its TOC unreadable, its state lost): every request gets EIO at
 * once, so a reader in a running container sees an error, never a hang,
 * while the other layers go on. One thread per such connection: they are
 * rare, and this path must not depend on the runtime that failed to build
 * the layer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "layerfs_internal.h"

struct lfs_dead {
	struct rfuse_session *se;
	int fd;   /* the connection (owned) */
	int stop; /* eventfd: the thread ends when it is readable */
	pthread_t thread;
	char why[256];
};

static void eio_entry(struct rfuse_req *r, uint64_t parent, const char *name)
{
	rfuse_reply_err(r, EIO);
}
static void eio_attr(struct rfuse_req *r, uint64_t n, uint64_t fh, bool has_fh)
{
	rfuse_reply_err(r, EIO);
}
static void eio_node(struct rfuse_req *r, uint64_t n)
{
	rfuse_reply_err(r, EIO);
}
static void eio_open(struct rfuse_req *r, uint64_t n, uint32_t flags)
{
	rfuse_reply_err(r, EIO);
}
static void eio_read(struct rfuse_req *r, uint64_t n, uint64_t fh, uint64_t off, uint32_t size)
{
	rfuse_reply_err(r, EIO);
}
static void eio_xattr(struct rfuse_req *r, uint64_t n, const char *name, uint32_t size)
{
	rfuse_reply_err(r, EIO);
}
static void eio_list(struct rfuse_req *r, uint64_t n, uint32_t size)
{
	rfuse_reply_err(r, EIO);
}
static void eio_access(struct rfuse_req *r, uint64_t n, uint32_t mask)
{
	rfuse_reply_err(r, EIO);
}
static void eio_lseek(struct rfuse_req *r, uint64_t n, uint64_t fh, uint64_t off, uint32_t whence)
{
	rfuse_reply_err(r, EIO);
}

static const struct rfuse_ops dead_ops = {
    .lookup = eio_entry,
    .getattr = eio_attr,
    .readlink = eio_node,
    .open = eio_open,
    .read = eio_read,
    .opendir = eio_open,
    .readdir = eio_read,
    .readdirplus = eio_read,
    .getxattr = eio_xattr,
    .listxattr = eio_list,
    .statfs = eio_node,
    .access = eio_access,
    .lseek = eio_lseek,
};

static void *dead_main(void *arg)
{
	struct lfs_dead *d = arg;
	(void)rfuse_session_serve(d->se, d->stop);
	return NULL;
}

int lfs_dead_adopt(int fd, const char *state_dir, const char *why, struct lfs_dead **out,
		   struct rs_error *err)
{
	/* The saved INIT outcome sizes the buffer; without it, one large enough
	 * for any request a read-only mount gets (no WRITE carries data). */
	struct rfuse_granted g = {.major = 7, .minor = 31, .max_write = 1 << 20, .max_pages = 256};
	char path[4096], line[512];
	if (state_dir &&
	    snprintf(path, sizeof(path), "%s/fuse.granted", state_dir) < (int)sizeof(path)) {
		int gf = open(path, O_RDONLY | O_CLOEXEC);
		if (gf >= 0) {
			ssize_t n = read(gf, line, sizeof(line) - 1);
			close(gf);
			struct rfuse_granted saved;
			if (n > 0) {
				line[n] = '\0';
				if (rfuse_granted_parse(line, &saved, NULL) == 0)
					g = saved;
			}
		}
	}
	g.passthrough = false;
	struct lfs_dead *d = calloc(1, sizeof(*d));
	if (!d)
		return rs_err(err, -ENOMEM, "out of memory");
	d->fd = fd;
	d->stop = eventfd(0, EFD_CLOEXEC);
	snprintf(d->why, sizeof(d->why), "%s", why ? why : "");
	struct rfuse_wishes w = {.max_write = g.max_write};
	int r = d->stop < 0 ? rs_err(err, -errno, "eventfd: %s", strerror(errno))
			    : rfuse_session_adopt(fd, &dead_ops, d, &w, &g, &d->se, err);
	if (r == 0) {
		int e = pthread_create(&d->thread, NULL, dead_main, d);
		if (e)
			r = rs_err(err, -e, "cannot start a thread: %s", strerror(e));
	}
	if (r < 0) {
		if (d->se)
			rfuse_session_free(d->se);
		if (d->stop >= 0)
			close(d->stop);
		free(d);
		return r;
	}
	/* Requests the dead process had taken are answered too. */
	(void)rfuse_notify_resend(d->se);
	*out = d;
	return 0;
}

void lfs_dead_close(struct lfs_dead *d, const char *mountpoint)
{
	if (!d)
		return;
	uint64_t one = 1;
	if (write(d->stop, &one, sizeof(one)) != sizeof(one))
		rs_log(RS_LOG_WARN, "layerfs: cannot stop the EIO server: %s", strerror(errno));
	pthread_join(d->thread, NULL);
	if (mountpoint)
		(void)rfuse_unmount(mountpoint, NULL);
	rfuse_session_free(d->se);
	close(d->fd);
	close(d->stop);
	free(d);
}
