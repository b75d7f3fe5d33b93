// SPDX-License-Identifier: Apache-2.0
/* Temp files and whole-fd helpers for blobs on their way through. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "convert_internal.h"

int conv_tmpfile(int *fd, struct rs_error *err)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof(path), "%s/stargz-convert.XXXXXX", dir) >= sizeof(path))
		return rs_err(err, -ENAMETOOLONG, "TMPDIR %s: name too long", dir);
	int f = mkostemp(path, O_CLOEXEC);
	if (f < 0)
		return rs_err(err, -errno, "temp file in %s: %s", dir, strerror(errno));
	unlink(path);
	*fd = f;
	return 0;
}

int conv_fd_digest(int fd, char digest[RS_DIGEST_STR_LEN], int64_t *size, struct rs_error *err)
{
	struct rs_sha256 h;
	if (rs_sha256_init(&h) < 0)
		return rs_err(err, -ENOMEM, "sha256: out of memory");
	enum { BUF = 1 << 20 };
	cleanup_free uint8_t *buf = malloc(BUF);
	if (!buf) {
		rs_sha256_free(&h);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	int64_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, BUF, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			rs_sha256_free(&h);
			return rs_err(err, -e, "read: %s", strerror(e));
		}
		if (n == 0)
			break;
		rs_sha256_update(&h, buf, (size_t)n);
		off += n;
	}
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256_final(&h, sum);
	rs_sha256_free(&h);
	rs_digest_format(sum, digest);
	*size = off;
	return 0;
}

int conv_fd_read_all(int fd, size_t max, struct rs_buf *out, struct rs_error *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "stat: %s", strerror(errno));
	if (st.st_size < 0 || (uint64_t)st.st_size > max)
		return rs_err(err, -EFBIG, "%lld bytes, more than the %zu allowed",
			      (long long)st.st_size, max);
	size_t len = (size_t)st.st_size;
	if (rs_buf_reserve(out, len + 1) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, out->data + out->len + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rs_err(err, -errno, "read: %s", strerror(errno));
		if (n == 0)
			return rs_err(err, -EIO, "file shrank while reading");
		got += (size_t)n;
	}
	out->len += len;
	out->data[out->len] = '\0';
	return 0;
}

int conv_write_all(int fd, const void *data, size_t len, struct rs_error *err)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rs_err(err, -errno, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct fd_reader {
	int fd;
};

static int fd_read_at(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err)
{
	struct fd_reader *f = ctx;
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rs_err(err, -errno, "read at %lld: %s", (long long)off,
				      strerror(errno));
		if (n == 0)
			return rs_err(err, -EIO, "unexpected end of blob at %lld", (long long)off);
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static void fd_close(void *ctx)
{
	struct fd_reader *f = ctx;
	close(f->fd);
	free(f);
}

int conv_fd_reader(int fd, struct esgz_reader *r, struct rs_error *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "stat: %s", strerror(errno));
	struct fd_reader *f = malloc(sizeof(*f));
	if (!f)
		return rs_err(err, -ENOMEM, "out of memory");
	f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (f->fd < 0) {
		int e = errno;
		free(f);
		return rs_err(err, -e, "dup: %s", strerror(e));
	}
	r->ctx = f;
	r->size = st.st_size;
	r->read_at = fd_read_at;
	r->close = fd_close;
	return 0;
}
