// SPDX-License-Identifier: Apache-2.0
/* The uncompressed size and diffID of a layer blob, for kept layers whose
 * descriptor lacks io.containers.estargz.uncompressed-size. */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "convert_internal.h"

enum { IN_BUF = 1 << 20, OUT_BUF = 1 << 20 };

struct sink {
	struct rs_sha256 h;
	int64_t size;
};

static void sink_put(struct sink *s, const void *p, size_t n)
{
	rs_sha256_update(&s->h, p, n);
	s->size += (int64_t)n;
}

static ssize_t read_some(int fd, uint8_t *buf, size_t len, int64_t *off, struct rs_error *err)
{
	for (;;) {
		ssize_t n = pread(fd, buf, len, (off_t)*off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rs_err(err, -errno, "read: %s", strerror(errno));
		*off += n;
		return n;
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Zero bytes after the last member (tar writers pad to a block) are allowed. */
static int zero_tail(int fd, int64_t off, const uint8_t *p, size_t n, uint8_t *buf,
		     struct rs_error *err)
{
	for (;;) {
		if (!all_zero(p, n))
			return rs_err(err, -EINVAL, "gzip: trailing garbage after the last member");
		ssize_t r = read_some(fd, buf, IN_BUF, &off, err);
		if (r <= 0)
			return (int)r;
		p = buf;
		n = (size_t)r;
	}
}

static int gunzip(int fd, struct sink *s, uint8_t *in, uint8_t *out, struct rs_error *err)
{
	z_stream z = {0};
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return rs_err(err, -ENOMEM, "zlib: out of memory");
	int64_t off = 0;
	int rc = 0;
	bool member_done = false, more_out = false;
	for (;;) {
		if (z.avail_in == 0 && (member_done || !more_out)) {
			ssize_t n = read_some(fd, in, IN_BUF, &off, err);
			if (n < 0) {
				rc = (int)n;
				break;
			}
			if (n == 0) {
				if (!member_done)
					rc = rs_err(err, -EINVAL, "gzip: truncated stream");
				break;
			}
			z.next_in = in;
			z.avail_in = (uInt)n;
		}
		if (member_done) {
			if (z.next_in[0] == 0) {
				rc = zero_tail(fd, off, z.next_in, z.avail_in, in, err);
				break;
			}
			inflateReset(&z);
			member_done = false;
		}
		z.next_out = out;
		z.avail_out = OUT_BUF;
		int zr = inflate(&z, Z_NO_FLUSH);
		sink_put(s, out, OUT_BUF - z.avail_out);
		more_out = z.avail_out == 0;
		if (zr == Z_STREAM_END) {
			member_done = true;
			continue;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			rc = rs_err(err, -EINVAL, "gzip: %s", z.msg ? z.msg : "corrupt data");
			break;
		}
	}
	inflateEnd(&z);
	return rc;
}

static int unzstd(int fd, struct sink *s, uint8_t *in, uint8_t *out, struct rs_error *err)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		return rs_err(err, -ENOMEM, "zstd: out of memory");
	int64_t off = 0;
	int rc = 0;
	size_t last = 0;
	bool more_out = false;
	ZSTD_inBuffer ib = {in, 0, 0};
	for (;;) {
		if (ib.pos == ib.size && !more_out) {
			ssize_t n = read_some(fd, in, IN_BUF, &off, err);
			if (n < 0) {
				rc = (int)n;
				break;
			}
			if (n == 0) {
				if (last != 0)
					rc = rs_err(err, -EINVAL, "zstd: truncated stream");
				break;
			}
			ib.size = (size_t)n;
			ib.pos = 0;
		}
		ZSTD_outBuffer ob = {out, OUT_BUF, 0};
		size_t before = ib.pos;
		size_t r = ZSTD_decompressStream(d, &ob, &ib);
		if (ZSTD_isError(r)) {
			rc = rs_err(err, -EINVAL, "zstd: %s", ZSTD_getErrorName(r));
			break;
		}
		/* a call that made no progress says nothing about the frame */
		if (r == 0 || ib.pos > before || ob.pos > 0)
			last = r;
		sink_put(s, out, ob.pos);
		more_out = ob.pos == ob.size;
	}
	ZSTD_freeDCtx(d);
	return rc;
}

static int plain(int fd, struct sink *s, uint8_t *in, struct rs_error *err)
{
	int64_t off = 0;
	for (;;) {
		ssize_t n = read_some(fd, in, IN_BUF, &off, err);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return 0;
		sink_put(s, in, (size_t)n);
	}
}

int conv_uncompressed(int fd, int64_t *size, char diff_id[RS_DIGEST_STR_LEN], struct rs_error *err)
{
	cleanup_free uint8_t *in = malloc(IN_BUF);
	cleanup_free uint8_t *out = malloc(OUT_BUF);
	if (!in || !out)
		return rs_err(err, -ENOMEM, "out of memory");
	uint8_t magic[4] = {0};
	ssize_t m = pread(fd, magic, sizeof(magic), 0);
	if (m < 0)
		return rs_err(err, -errno, "read: %s", strerror(errno));
	struct sink s = {.size = 0};
	if (rs_sha256_init(&s.h) < 0)
		return rs_err(err, -ENOMEM, "sha256: out of memory");
	int rc;
	if (m >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
		rc = gunzip(fd, &s, in, out, err);
	else if (m == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
		 magic[3] == 0xfd)
		rc = unzstd(fd, &s, in, out, err);
	else
		rc = plain(fd, &s, in, err);
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256_final(&s.h, sum);
	rs_sha256_free(&s.h);
	if (rc < 0)
		return rc;
	rs_digest_format(sum, diff_id);
	*size = s.size;
	return 0;
}
