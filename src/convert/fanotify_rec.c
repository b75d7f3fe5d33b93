// SPDX-License-Identifier: Apache-2.0
/* The recorder: a fanotify group marking the whole overlay filesystem (a
 * FAN_MARK_MOUNT mark would miss runc's bind mount of it) for FAN_OPEN and
 * FAN_OPEN_EXEC. Each event's fd names the file as the container sees it
 * (its mount is not reachable from our root); accesses before pivot_root carry
 * the merged dir's host path, which is stripped. Regular files only, first
 * open wins, every event fd closed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>

#include "record_internal.h"

int conv_rec_fan_start(struct conv_rec_fan *f, const char *merged, struct rs_error *err)
{
	memset(f, 0, sizeof(*f));
	f->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK,
			      O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (f->fd < 0)
		return rs_err(err, -errno, "fanotify_init: %s (needs root and fanotify)",
			      strerror(errno));
	if (fanotify_mark(f->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN | FAN_OPEN_EXEC,
			  AT_FDCWD, merged) < 0) {
		int e = errno;
		conv_rec_fan_stop(f);
		return rs_err(err, -e, "fanotify_mark %s: %s", merged, strerror(e));
	}
	f->prefix = merged;
	f->prefix_len = strlen(merged);
	return 0;
}

static void record(struct conv_rec_fan *f, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path));
	if (n <= 0 || (size_t)n >= sizeof(path))
		return;
	path[n] = 0;
	static const char deleted[] = " (deleted)";
	size_t dl = sizeof(deleted) - 1;
	if (memchr(path, '\n', (size_t)n) || strlen(path) != (size_t)n ||
	    ((size_t)n >= dl && strcmp(path + n - dl, deleted) == 0))
		return;
	const char *p = path;
	if (strncmp(p, f->prefix, f->prefix_len) == 0 && p[f->prefix_len] == '/')
		p += f->prefix_len;
	if (p[0] != '/' || !p[1])
		return;
	if (f->paths.n >= CONV_RECORD_MAX_PATHS) {
		f->incomplete = true;
		return;
	}
	if (conv_strset_add(&f->paths, strdup(p)) < 0)
		f->incomplete = true;
}

int conv_rec_fan_read(struct conv_rec_fan *f, struct rs_error *err)
{
	if (f->fd < 0)
		return 0;
	char buf[32 * 1024] __attribute__((aligned(8)));
	for (;;) {
		ssize_t n = read(f->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return rs_err(err, -errno, "fanotify read: %s", strerror(errno));
		int rc = 0;
		struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
		for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->vers != FANOTIFY_METADATA_VERSION && rc == 0)
				rc = rs_err(err, -EPROTO, "fanotify: metadata version %u", m->vers);
			if (m->mask & FAN_Q_OVERFLOW)
				f->incomplete = true;
			if (m->fd >= 0) {
				if (rc == 0)
					record(f, m->fd);
				close(m->fd);
			}
		}
		if (rc < 0)
			return rc;
	}
}

void conv_rec_fan_stop(struct conv_rec_fan *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

void conv_rec_fan_free(struct conv_rec_fan *f)
{
	conv_rec_fan_stop(f);
	conv_strset_free(&f->paths);
}
