/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: assembles eStargz blobs by hand (gzip members + a TOC member +
 * footer), independent of the library's writer, so reader tests do not trust it. */
#ifndef BLOBKIT_H
#define BLOBKIT_H

#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "estargz/estargz.h"

struct blobkit {
	struct rs_buf blob;
};

static inline void bk_gzip(struct rs_buf *out, const void *data, size_t len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
	size_t bound = deflateBound(&zs, len) + 64;
	rs_buf_reserve(out, bound);
	zs.next_in = (uint8_t *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = out->data + out->len;
	zs.avail_out = (uInt)bound;
	deflate(&zs, Z_FINISH);
	out->len += bound - zs.avail_out;
	deflateEnd(&zs);
}

/* Appends one gzip member holding data; returns its offset. */
static inline int64_t bk_member(struct blobkit *k, const void *data, size_t len)
{
	int64_t off = (int64_t)k->blob.len;
	bk_gzip(&k->blob, data, len);
	return off;
}

static inline void bk_tar_header(uint8_t h[512], const char *name, size_t size)
{
	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)size);
	snprintf((char *)h + 136, 12, "%011o", 0);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

/* Appends the TOC member and the footer (kind 0 eStargz, 1 legacy). */
static inline void bk_finish(struct blobkit *k, const char *toc_json, int kind)
{
	size_t jl = strlen(toc_json);
	size_t padded = (jl + 511) / 512 * 512;
	struct rs_buf tar = {0};
	rs_buf_reserve(&tar, 512 + padded + 1024);
	bk_tar_header(tar.data, ESGZ_TOC_TAR_NAME, jl);
	memcpy(tar.data + 512, toc_json, jl);
	memset(tar.data + 512 + jl, 0, padded - jl + 1024);
	tar.len = 512 + padded + 1024;
	int64_t toc_off = bk_member(k, tar.data, tar.len);
	rs_buf_free(&tar);
	uint8_t f[ESGZ_FOOTER_SIZE];
	esgz_footer_gzip(toc_off, f);
	if (kind == 1) {
		/* legacy: raw extra field of 22 bytes, no subfield header */
		uint8_t l[ESGZ_LEGACY_FOOTER_SIZE];
		memcpy(l, f, 10);
		l[10] = 22;
		l[11] = 0;
		memcpy(l + 12, f + 16, 22);
		memcpy(l + 34, f + 38, 13);
		rs_buf_append(&k->blob, l, sizeof(l));
	} else {
		rs_buf_append(&k->blob, f, sizeof(f));
	}
}

static inline void bk_digest(const void *data, size_t len, char out[RS_DIGEST_STR_LEN])
{
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(data, len, sum);
	rs_digest_format(sum, out);
}

/* Opens the blob in memory; returns the esgz_open result. */
static inline int bk_open(struct blobkit *k, struct esgz_reader *r, const struct esgz_open_opts *o,
			  struct esgz_blob **b, struct rs_error *err)
{
	esgz_reader_init_mem(r, k->blob.data, k->blob.len);
	return esgz_open(r, o, b, err);
}

#endif
