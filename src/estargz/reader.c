// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "estargz.h"

struct file_reader {
	int fd;
	char path[];
};

static int file_read_at(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err)
{
	struct file_reader *f = ctx;
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rs_err(err, -errno, "%s: read at %lld: %s", f->path, (long long)off,
				      strerror(errno));
		}
		if (n == 0)
			return rs_err(err, -EIO, "%s: unexpected end of file at %lld", f->path,
				      (long long)off);
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static void file_close(void *ctx)
{
	struct file_reader *f = ctx;
	close(f->fd);
	free(f);
}

int esgz_reader_open_file(struct esgz_reader *r, const char *path, struct rs_error *err)
{
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return rs_err(err, -EINVAL, "%s: not a regular file", path);
	size_t plen = strlen(path);
	struct file_reader *f = malloc(sizeof(*f) + plen + 1);
	if (!f)
		return rs_err(err, -ENOMEM, "out of memory");
	memcpy(f->path, path, plen + 1);
	f->fd = rs_steal_fd(&fd);
	r->ctx = f;
	r->size = st.st_size;
	r->read_at = file_read_at;
	r->close = file_close;
	return 0;
}

struct mem_reader {
	const uint8_t *data;
	size_t len;
	int64_t base; /* blob offset of data[0] */
};

static int mem_read_at(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err)
{
	struct mem_reader *m = ctx;
	if (off < m->base)
		return rs_err(err, -ERANGE,
			      "read of %zu bytes at %lld: only the bytes from %lld on are known",
			      len, (long long)off, (long long)m->base);
	off -= m->base;
	if ((uint64_t)off > m->len || len > m->len - (size_t)off)
		return rs_err(err, -EIO, "read of %zu bytes at %lld is past the end (%zu)", len,
			      (long long)(off + m->base), m->len);
	memcpy(buf, m->data + off, len);
	return 0;
}

static void mem_close(void *ctx)
{
	free(ctx);
}

void esgz_reader_init_mem(struct esgz_reader *r, const void *data, size_t len)
{
	struct mem_reader *m = malloc(sizeof(*m));
	if (m) {
		m->data = data;
		m->len = len;
		m->base = 0;
	}
	r->ctx = m;
	r->size = m ? (int64_t)len : 0;
	r->read_at = mem_read_at;
	r->close = mem_close;
}

void esgz_reader_init_tail(struct esgz_reader *r, const void *data, size_t len, int64_t blob_size)
{
	esgz_reader_init_mem(r, data, len);
	struct mem_reader *m = r->ctx;
	if (!m)
		return;
	if ((uint64_t)len > INT64_MAX || blob_size < (int64_t)len)
		blob_size = (int64_t)len;
	m->base = blob_size - (int64_t)len;
	r->size = blob_size;
}

void esgz_reader_close(struct esgz_reader *r)
{
	if (r->close && r->ctx)
		r->close(r->ctx);
	r->ctx = NULL;
	r->close = NULL;
}
