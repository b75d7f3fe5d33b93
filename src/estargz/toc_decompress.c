// SPDX-License-Identifier: Apache-2.0
/* From the compressed TOC bytes to the TOC JSON: whole, in one padded buffer
 * for the parser, or streamed in pieces. */
#include <errno.h>
#include <string.h>

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "index_internal.h"

#define PIECE (64 * 1024)

/* Walks the tar stream inside the TOC member to the stargz.index.json data. */
struct tar_walk {
	uint8_t hdr[512];
	size_t hdr_len;
	uint64_t skip;      /* bytes of an extension entry still to skip */
	uint64_t json_left; /* bytes of JSON still to pass on */
	uint64_t json_total;
	bool in_json, done;
};

static int octal_field(const uint8_t *p, size_t n, uint64_t *out)
{
	if (p[0] & 0x80) { /* base-256 */
		if (p[0] != 0x80)
			return -EINVAL;
		uint64_t v = 0;
		for (size_t i = 1; i < n; i++) {
			if (v >> 56)
				return -ERANGE;
			v = v << 8 | p[i];
		}
		*out = v;
		return 0;
	}
	uint64_t v = 0;
	size_t i = 0;
	while (i < n && p[i] == ' ')
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v >> 60)
			return -ERANGE;
		v = v * 8 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

static int tar_header(struct tar_walk *w, uint64_t max_size, struct rs_error *err)
{
	const uint8_t *h = w->hdr;
	bool zero = true;
	for (int i = 0; i < 512 && zero; i++)
		zero = h[i] == 0;
	if (zero)
		return rs_err(err, -EINVAL, "TOC member holds no %s entry", ESGZ_TOC_TAR_NAME);
	uint64_t sum = 0, want;
	for (int i = 0; i < 512; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	if (octal_field(h + 148, 8, &want) < 0 || sum != want)
		return rs_err(err, -EINVAL, "TOC member: tar header checksum mismatch");
	uint64_t size;
	if (octal_field(h + 124, 12, &size) < 0)
		return rs_err(err, -EINVAL, "TOC member: bad tar size field");
	char type = (char)h[156];
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		w->skip = (size + 511) & ~(uint64_t)511;
		return 0;
	}
	char name[101];
	memcpy(name, h, 100);
	name[100] = '\0';
	const char *base = name;
	if (strncmp(base, "./", 2) == 0)
		base += 2;
	if ((type != '0' && type != '\0') || strcmp(base, ESGZ_TOC_TAR_NAME) != 0)
		return rs_err(err, -EINVAL, "TOC member holds '%s' instead of %s", name,
			      ESGZ_TOC_TAR_NAME);
	if (size > max_size)
		return rs_err(err, -E2BIG, "TOC is %llu bytes, over the limit of %llu",
			      (unsigned long long)size, (unsigned long long)max_size);
	w->in_json = true;
	w->json_left = w->json_total = size;
	return 0;
}

/* Feeds decompressed bytes of the TOC member through the tar walk. */
static int tar_feed(struct tar_walk *w, const uint8_t *p, size_t n, uint64_t max_size,
		    esgz_toc_sink sink, void *ctx, struct rs_error *err)
{
	while (n > 0 && !w->done) {
		if (w->in_json) {
			size_t take = n < w->json_left ? n : (size_t)w->json_left;
			int r = sink(ctx, p, take, err);
			if (r < 0)
				return r;
			p += take;
			n -= take;
			w->json_left -= take;
			if (w->json_left == 0)
				w->done = true;
		} else if (w->skip) {
			size_t take = n < w->skip ? n : (size_t)w->skip;
			p += take;
			n -= take;
			w->skip -= take;
		} else {
			size_t take = 512 - w->hdr_len;
			if (take > n)
				take = n;
			memcpy(w->hdr + w->hdr_len, p, take);
			w->hdr_len += take;
			p += take;
			n -= take;
			if (w->hdr_len == 512) {
				w->hdr_len = 0;
				int r = tar_header(w, max_size, err);
				if (r < 0)
					return r;
			}
		}
	}
	return 0;
}

static int stream_gzip(const uint8_t *data, size_t len, uint64_t max_size, esgz_toc_sink sink,
		       void *ctx, struct rs_error *err)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return rs_err(err, -ENOMEM, "out of memory");
	uint8_t *out = malloc(PIECE);
	if (!out) {
		inflateEnd(&zs);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	struct tar_walk w = {0};
	zs.next_in = (uint8_t *)data;
	zs.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
	int r = 0;
	while (!w.done) {
		zs.next_out = out;
		zs.avail_out = PIECE;
		int z = inflate(&zs, Z_NO_FLUSH);
		size_t got = PIECE - zs.avail_out;
		if (got) {
			r = tar_feed(&w, out, got, max_size, sink, ctx, err);
			if (r < 0)
				break;
		}
		if (z == Z_STREAM_END) {
			if (!w.done)
				r = rs_err(err, -EINVAL,
					   "TOC member ends inside the TOC (truncated)");
			break;
		}
		if (z != Z_OK && !(z == Z_BUF_ERROR && got)) {
			r = rs_err(err, -EINVAL, "TOC member: %s",
				   z == Z_BUF_ERROR ? "truncated gzip data"
						    : (zs.msg ? zs.msg : "bad gzip data"));
			break;
		}
	}
	free(out);
	inflateEnd(&zs);
	return r;
}

static int stream_zstd(const uint8_t *data, size_t len, uint64_t max_size, esgz_toc_sink sink,
		       void *ctx, struct rs_error *err)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	uint8_t *out = malloc(PIECE);
	int r = 0;
	if (!dc || !out) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto done;
	}
	ZSTD_inBuffer in = {data, len, 0};
	uint64_t total = 0;
	for (;;) {
		ZSTD_outBuffer ob = {out, PIECE, 0};
		size_t z = ZSTD_decompressStream(dc, &ob, &in);
		if (ZSTD_isError(z)) {
			r = rs_err(err, -EINVAL, "TOC: zstd: %s", ZSTD_getErrorName(z));
			break;
		}
		total += ob.pos;
		if (total > max_size) {
			r = rs_err(err, -E2BIG, "TOC is over the limit of %llu bytes",
				   (unsigned long long)max_size);
			break;
		}
		if (ob.pos) {
			r = sink(ctx, out, ob.pos, err);
			if (r < 0)
				break;
		}
		if (z == 0)
			break; /* frame complete */
		if (in.pos == in.size && ob.pos < PIECE) {
			r = rs_err(err, -EINVAL, "TOC: truncated zstd frame");
			break;
		}
	}
done:
	free(out);
	ZSTD_freeDCtx(dc);
	return r;
}

int esgz_toc_stream(const struct esgz_footer *f, const uint8_t *data, size_t len, uint64_t max_size,
		    esgz_toc_sink sink, void *ctx, struct rs_error *err)
{
	if (!max_size)
		max_size = ESGZ_DEFAULT_MAX_TOC_SIZE;
	if (f->format == ESGZ_FORMAT_ZSTD_CHUNKED) {
		if ((uint64_t)f->toc_raw_size > max_size)
			return rs_err(err, -E2BIG, "TOC is %lld bytes, over the limit of %llu",
				      (long long)f->toc_raw_size, (unsigned long long)max_size);
		return stream_zstd(data, len, max_size, sink, ctx, err);
	}
	return stream_gzip(data, len, max_size, sink, ctx, err);
}

static int append_sink(void *ctx, const uint8_t *data, size_t len, struct rs_error *err)
{
	if (rs_buf_append(ctx, data, len) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
}

/* Where the tar walk found the JSON, when it was all in one buffer. */
struct span {
	const uint8_t *start;
	size_t len;
};

static int span_sink(void *ctx, const uint8_t *data, size_t len, struct rs_error *err)
{
	(void)err;
	struct span *s = ctx;
	if (!s->start)
		s->start = data;
	s->len += len;
	return 0;
}

/* The fast path for gzip: one libdeflate call into a buffer sized by the
 * member's ISIZE. ISIZE is untrusted (and mod 2^32): it only sizes the buffer,
 * libdeflate stops at its end and checks ISIZE and CRC. Returns 1 when this
 * path cannot decide, so that the streaming path reports (or accepts) the
 * member exactly as it always did. */
static int inflate_whole(const uint8_t *data, size_t len, uint64_t max_size,
			 struct esgz_toc_json *out, struct rs_error *err)
{
	if (len < 18)
		return 1;
	const uint8_t *t = data + len - 4;
	uint64_t isize =
	    (uint64_t)t[0] | (uint64_t)t[1] << 8 | (uint64_t)t[2] << 16 | (uint64_t)t[3] << 24;
	/* Tar headers and padding add a little to the JSON's own limit. */
	if (isize < 1024 || isize > max_size + (1u << 20) || isize > SIZE_MAX / 2)
		return 1;
	uint8_t *buf = esgz_alloc_huge((size_t)isize + ESGZ_JSON_PADDING);
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t got = 0;
	enum libdeflate_result lr = LIBDEFLATE_BAD_DATA;
	if (buf && d)
		lr = libdeflate_gzip_decompress_ex(d, data, len, buf, (size_t)isize, NULL, &got);
	libdeflate_free_decompressor(d);
	if (lr != LIBDEFLATE_SUCCESS) {
		free(buf);
		return 1;
	}
	struct tar_walk w = {0};
	struct span sp = {0};
	int r = tar_feed(&w, buf, got, max_size, span_sink, &sp, err);
	if (r == 0 && !w.done)
		r = rs_err(err, -EINVAL, "TOC member ends inside the TOC (truncated)");
	if (r < 0) {
		free(buf);
		return r;
	}
	out->buf = buf;
	out->json = sp.start ? sp.start : buf;
	out->len = sp.len;
	return 0;
}

static int inflate_any(const struct esgz_footer *f, const uint8_t *data, size_t len,
		       uint64_t max_size, struct esgz_toc_json *out, struct rs_error *err)
{
	if (!max_size)
		max_size = ESGZ_DEFAULT_MAX_TOC_SIZE;
	memset(out, 0, sizeof(*out));
	if (f->format != ESGZ_FORMAT_ZSTD_CHUNKED) {
		int r = inflate_whole(data, len, max_size, out, err);
		if (r <= 0)
			return r;
	}
	struct rs_buf json = {0};
	uint64_t hint = f->format == ESGZ_FORMAT_ZSTD_CHUNKED ? (uint64_t)f->toc_raw_size : 0;
	if (hint && hint <= max_size && hint < SIZE_MAX / 2) {
		json.data = esgz_alloc_huge((size_t)hint + ESGZ_JSON_PADDING);
		json.cap = json.data ? (size_t)hint + ESGZ_JSON_PADDING : 0;
	}
	int r = esgz_toc_stream(f, data, len, max_size, append_sink, &json, err);
	if (r == 0 && rs_buf_reserve(&json, ESGZ_JSON_PADDING) < 0)
		r = rs_err(err, -ENOMEM, "out of memory");
	if (r < 0) {
		rs_buf_free(&json);
		return r;
	}
	out->buf = json.data;
	out->json = json.data;
	out->len = json.len;
	return 0;
}

int esgz_toc_inflate(const struct esgz_footer *f, const uint8_t *data, size_t len,
		     uint64_t max_size, struct esgz_toc_json *out, struct rs_error *err)
{
	int r = inflate_any(f, data, len, max_size, out, err);
	if (r == 0) /* the parser may read the padding: make it defined */
		memset((uint8_t *)out->json + out->len, 0, ESGZ_JSON_PADDING);
	return r;
}
