// SPDX-License-Identifier: Apache-2.0
/* One chunk: compressed member bytes -> verified file bytes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "estargz.h"

/* Bytes a member may hold beyond the chunk (tar padding and the headers that
 * follow in the same member) before we stop trusting its gzip size field. */
#define MEMBER_SLACK (16u << 20)
#define MAX_MEMBER_READ (1ull << 31)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fast path: one whole gzip member inflated by libdeflate. */
static int gunzip_whole(const uint8_t *comp, size_t len, uint64_t need, int64_t skip, uint8_t *out,
			size_t out_len)
{
	if (len < 18)
		return -EINVAL;
	uint32_t isize = le32(comp + len - 4);
	if (isize < need || isize - need > MEMBER_SLACK)
		return -EINVAL;
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	if (!d)
		return -ENOMEM;
	uint8_t *dst = out;
	uint8_t *tmp = NULL;
	if (skip != 0 || isize != out_len) {
		tmp = malloc(isize ? isize : 1);
		if (!tmp) {
			libdeflate_free_decompressor(d);
			return -ENOMEM;
		}
		dst = tmp;
	}
	size_t in_used = 0, got = 0;
	enum libdeflate_result res =
	    libdeflate_gzip_decompress_ex(d, comp, len, dst, isize, &in_used, &got);
	libdeflate_free_decompressor(d);
	int r = 0;
	if (res != LIBDEFLATE_SUCCESS || got < need || in_used != len)
		r = -EINVAL;
	else if (tmp)
		memcpy(out, tmp + skip, out_len);
	free(tmp);
	return r;
}

/* General path: inflate only as much as needed, across member boundaries. */
static int gunzip_prefix(const uint8_t *comp, size_t len, int64_t skip, uint8_t *out,
			 size_t out_len, struct rs_error *err)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return rs_err(err, -ENOMEM, "out of memory");
	zs.next_in = (uint8_t *)comp;
	zs.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
	uint8_t sink[16384];
	int r = 0;
	int64_t skipped = 0;
	size_t done = 0;
	while (done < out_len) {
		if (skipped < skip) {
			size_t n = (size_t)(skip - skipped) < sizeof(sink)
				       ? (size_t)(skip - skipped)
				       : sizeof(sink);
			zs.next_out = sink;
			zs.avail_out = (uInt)n;
		} else {
			size_t n = out_len - done;
			zs.next_out = out + done;
			zs.avail_out = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);
		}
		uInt before = zs.avail_out;
		int z = inflate(&zs, Z_NO_FLUSH);
		size_t got = before - zs.avail_out;
		if (skipped < skip)
			skipped += (int64_t)got;
		else
			done += got;
		if (z == Z_STREAM_END) {
			if (done == out_len)
				break;
			/* The data may continue in the next member. */
			if (zs.avail_in == 0) {
				r = rs_err(err, -EINVAL,
					   "compressed data ends before the chunk does");
				break;
			}
			inflateReset(&zs);
			continue;
		}
		if (z != Z_OK && !(z == Z_BUF_ERROR && got)) {
			r = rs_err(err, -EINVAL, "%s",
				   z == Z_BUF_ERROR ? "compressed data ends before the chunk does"
						    : (zs.msg ? zs.msg : "bad gzip data"));
			break;
		}
	}
	inflateEnd(&zs);
	return r;
}

static int unzstd_prefix(const uint8_t *comp, size_t len, int64_t skip, uint8_t *out,
			 size_t out_len, struct rs_error *err)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	if (!dc)
		return rs_err(err, -ENOMEM, "out of memory");
	ZSTD_inBuffer in = {comp, len, 0};
	uint8_t sink[16384];
	int64_t skipped = 0;
	size_t done = 0;
	int r = 0;
	while (done < out_len) {
		ZSTD_outBuffer ob;
		if (skipped < skip) {
			size_t n = (size_t)(skip - skipped) < sizeof(sink)
				       ? (size_t)(skip - skipped)
				       : sizeof(sink);
			ob = (ZSTD_outBuffer){sink, n, 0};
		} else {
			ob = (ZSTD_outBuffer){out + done, out_len - done, 0};
		}
		size_t z = ZSTD_decompressStream(dc, &ob, &in);
		if (ZSTD_isError(z)) {
			r = rs_err(err, -EINVAL, "zstd: %s", ZSTD_getErrorName(z));
			break;
		}
		if (skipped < skip)
			skipped += (int64_t)ob.pos;
		else
			done += ob.pos;
		if (ob.pos == 0 && in.pos == in.size) {
			r = rs_err(err, -EINVAL, "compressed data ends before the chunk does");
			break;
		}
	}
	ZSTD_freeDCtx(dc);
	return r;
}

int esgz_chunk_decode(enum esgz_format fmt, const struct esgz_chunk *c, const uint8_t *comp,
		      size_t comp_len, uint8_t *out, struct rs_error *err)
{
	if (c->size < 0 || (uint64_t)c->size > SIZE_MAX / 2 || c->inner_offset < 0 ||
	    c->inner_offset > INT64_MAX / 4)
		return rs_err(err, -EINVAL, "chunk size %lld is absurd", (long long)c->size);
	size_t n = (size_t)c->size;
	int r;
	if (fmt == ESGZ_FORMAT_ZSTD_CHUNKED) {
		r = unzstd_prefix(comp, comp_len, c->inner_offset, out, n, err);
	} else {
		r = gunzip_whole(comp, comp_len, (uint64_t)c->inner_offset + n, c->inner_offset,
				 out, n);
		if (r == -ENOMEM)
			return rs_err(err, r, "out of memory");
		if (r < 0)
			r = gunzip_prefix(comp, comp_len, c->inner_offset, out, n, err);
	}
	/* Bytes that do not inflate are corrupt bytes: the same failure as a
	 * digest mismatch, not a format problem of the layer. */
	if (r == -EINVAL) {
		char why[256];
		snprintf(why, sizeof(why), "%.200s", err ? err->msg : "");
		return rs_err(err, ESGZ_EDIGEST, "chunk data is corrupt (%s)", why);
	}
	if (r < 0)
		return r;
	if (c->has_digest) {
		uint8_t sum[RS_SHA256_LEN];
		rs_sha256(out, n, sum);
		if (memcmp(sum, c->digest, RS_SHA256_LEN) != 0) {
			char want[RS_DIGEST_STR_LEN], got[RS_DIGEST_STR_LEN];
			rs_digest_format(c->digest, want);
			rs_digest_format(sum, got);
			return rs_err(err, ESGZ_EDIGEST,
				      "chunk digest mismatch: expected %s, got %s", want, got);
		}
	}
	return 0;
}

int esgz_chunk_read(const struct esgz_blob *b, struct esgz_reader *r, const struct esgz_chunk *c,
		    uint8_t *out, struct rs_error *err)
{
	int64_t len = c->comp_end - c->offset;
	if (len <= 0 || (uint64_t)len > MAX_MEMBER_READ)
		return rs_err(err, -EINVAL, "compressed extent [%lld, %lld) is not readable",
			      (long long)c->offset, (long long)c->comp_end);
	uint8_t *comp = malloc((size_t)len);
	if (!comp)
		return rs_err(err, -ENOMEM, "out of memory");
	int rc = esgz_read_at(r, comp, (size_t)len, c->offset, err);
	if (rc == 0)
		rc = esgz_chunk_decode(b->footer.format, c, comp, (size_t)len, out, err);
	free(comp);
	return rc;
}
