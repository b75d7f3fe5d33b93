// SPDX-License-Identifier: Apache-2.0
/* The three footers a layer can end with: eStargz (51 bytes), legacy stargz
 * (47 bytes) and zstd:chunked (a 40-byte skippable frame payload). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "estargz.h"

static const uint8_t zstd_skippable_magic[4] = {0x50, 0x2a, 0x4d, 0x18};
static const uint8_t zstd_chunked_magic[8] = {'G', 'n', 'U', 'l', 'I', 'n', 'U', 'x'};
#define ZSTD_MANIFEST_TYPE_CRFS 1

const char *esgz_format_name(enum esgz_format f)
{
	switch (f) {
	case ESGZ_FORMAT_ESTARGZ:
		return "estargz";
	case ESGZ_FORMAT_STARGZ_LEGACY:
		return "stargz";
	case ESGZ_FORMAT_ZSTD_CHUNKED:
		return "zstd:chunked";
	}
	return "unknown";
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* "%016x" + "STARGZ" */
static int parse_offset_text(const uint8_t *p, int64_t *off)
{
	if (memcmp(p + 16, "STARGZ", 6) != 0)
		return -EINVAL;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		uint8_t c = p[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (v > INT64_MAX)
		return -EINVAL;
	*off = (int64_t)v;
	return 0;
}

/* The gzip header of both gzip footers: magic, deflate, FEXTRA set. */
static bool gzip_extra_header(const uint8_t *p, unsigned xlen)
{
	return p[0] == 0x1f && p[1] == 0x8b && p[2] == 8 && (p[3] & 0x04) &&
	       p[10] == (xlen & 0xff) && p[11] == (xlen >> 8);
}

static int try_estargz(const uint8_t *p, int64_t *off)
{
	if (!gzip_extra_header(p, 26) || p[12] != 'S' || p[13] != 'G' || p[14] != 22 || p[15] != 0)
		return -EINVAL;
	return parse_offset_text(p + 16, off);
}

static int try_legacy(const uint8_t *p, int64_t *off)
{
	if (!gzip_extra_header(p, 22))
		return -EINVAL;
	return parse_offset_text(p + 12, off);
}

int esgz_footer_parse(const uint8_t *tail, size_t tail_len, int64_t blob_size,
		      struct esgz_footer *out, struct rs_error *err)
{
	if (blob_size < 0 || (int64_t)tail_len > blob_size)
		return rs_err(err, -EINVAL, "footer: tail of %zu bytes for a blob of %lld",
			      tail_len, (long long)blob_size);
	const uint8_t *end = tail + tail_len;
	memset(out, 0, sizeof(*out));
	int64_t off;

	if (tail_len >= ESGZ_FOOTER_SIZE && try_estargz(end - ESGZ_FOOTER_SIZE, &off) == 0) {
		out->format = ESGZ_FORMAT_ESTARGZ;
		out->footer_size = ESGZ_FOOTER_SIZE;
	} else if (tail_len >= ESGZ_ZSTD_FOOTER_FRAME &&
		   memcmp(end - ESGZ_ZSTD_FOOTER_FRAME, zstd_skippable_magic, 4) == 0 &&
		   memcmp(end - 8, zstd_chunked_magic, 8) == 0) {
		const uint8_t *p = end - ESGZ_ZSTD_FOOTER_SIZE;
		const uint8_t *sz = end - ESGZ_ZSTD_FOOTER_FRAME + 4;
		if (sz[0] != ESGZ_ZSTD_FOOTER_SIZE || sz[1] || sz[2] || sz[3])
			return rs_err(err, -EINVAL, "zstd:chunked footer: bad frame size");
		uint64_t toc_off = le64(p), comp = le64(p + 8), raw = le64(p + 16),
			 type = le64(p + 24);
		if (type != ZSTD_MANIFEST_TYPE_CRFS)
			return rs_err(err, -EINVAL,
				      "zstd:chunked footer: manifest type %llu is not supported",
				      (unsigned long long)type);
		int64_t limit = blob_size - ESGZ_ZSTD_FOOTER_FRAME;
		if (toc_off < 8 || toc_off > (uint64_t)limit || comp > (uint64_t)limit - toc_off)
			return rs_err(err, -EINVAL,
				      "zstd:chunked footer: TOC at %llu (+%llu) lies outside the "
				      "blob of %lld bytes",
				      (unsigned long long)toc_off, (unsigned long long)comp,
				      (long long)blob_size);
		if (raw > INT64_MAX)
			return rs_err(err, -EINVAL, "zstd:chunked footer: absurd TOC size");
		out->format = ESGZ_FORMAT_ZSTD_CHUNKED;
		out->footer_size = ESGZ_ZSTD_FOOTER_FRAME;
		out->toc_offset = (int64_t)toc_off;
		out->toc_size = (int64_t)comp;
		out->toc_raw_size = (int64_t)raw;
		out->payload_end = (int64_t)toc_off - 8;
		return 0;
	} else if (tail_len >= ESGZ_LEGACY_FOOTER_SIZE &&
		   try_legacy(end - ESGZ_LEGACY_FOOTER_SIZE, &off) == 0) {
		out->format = ESGZ_FORMAT_STARGZ_LEGACY;
		out->footer_size = ESGZ_LEGACY_FOOTER_SIZE;
	} else {
		if (blob_size < ESGZ_LEGACY_FOOTER_SIZE)
			return rs_err(
			    err, -EINVAL,
			    "blob of %lld bytes is too small to hold a footer (truncated?)",
			    (long long)blob_size);
		return rs_err(err, -EINVAL,
			      "no eStargz, stargz or zstd:chunked footer found (not an eStargz "
			      "layer, or truncated)");
	}
	if (off >= blob_size - out->footer_size)
		return rs_err(err, -EINVAL,
			      "%s footer: TOC offset %lld lies outside the blob of %lld bytes",
			      esgz_format_name(out->format), (long long)off, (long long)blob_size);
	out->toc_offset = off;
	out->toc_size = blob_size - out->footer_size - off;
	out->payload_end = off;
	return 0;
}

void esgz_footer_gzip(int64_t toc_offset, uint8_t out[ESGZ_FOOTER_SIZE])
{
	static const uint8_t head[16] = {0x1f, 0x8b, 8,  4, 0,   0,   0,  0,
					 0,    0xff, 26, 0, 'S', 'G', 22, 0};
	memcpy(out, head, sizeof(head));
	char text[23];
	snprintf(text, sizeof(text), "%016llxSTARGZ", (unsigned long long)toc_offset);
	memcpy(out + 16, text, 22);
	static const uint8_t empty_stored[5] = {1, 0, 0, 0xff, 0xff};
	memcpy(out + 38, empty_stored, 5);
	memset(out + 43, 0, 8);
}

void esgz_footer_zstd(int64_t toc_offset, int64_t toc_compressed_size, int64_t toc_raw_size,
		      uint8_t out[ESGZ_ZSTD_FOOTER_FRAME])
{
	memcpy(out, zstd_skippable_magic, 4);
	out[4] = ESGZ_ZSTD_FOOTER_SIZE;
	out[5] = out[6] = out[7] = 0;
	uint8_t *p = out + 8;
	put_le64(p, (uint64_t)toc_offset);
	put_le64(p + 8, (uint64_t)toc_compressed_size);
	put_le64(p + 16, (uint64_t)toc_raw_size);
	put_le64(p + 24, ZSTD_MANIFEST_TYPE_CRFS);
	memcpy(p + 32, zstd_chunked_magic, 8);
}
