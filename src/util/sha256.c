// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "util.h"

int rs_sha256_init(struct rs_sha256 *s)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -EIO;
	}
	s->ctx = ctx;
	return 0;
}

void rs_sha256_update(struct rs_sha256 *s, const void *data, size_t len)
{
	EVP_DigestUpdate(s->ctx, data, len);
}

void rs_sha256_final(struct rs_sha256 *s, uint8_t out[RS_SHA256_LEN])
{
	unsigned int n = RS_SHA256_LEN;
	EVP_DigestFinal_ex(s->ctx, out, &n);
	EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
}

void rs_sha256_free(struct rs_sha256 *s)
{
	if (s->ctx)
		EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
}

void rs_sha256(const void *data, size_t len, uint8_t out[RS_SHA256_LEN])
{
	unsigned int n = RS_SHA256_LEN;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void rs_digest_format(const uint8_t sum[RS_SHA256_LEN], char out[RS_DIGEST_STR_LEN])
{
	static const char hex[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < RS_SHA256_LEN; i++) {
		out[7 + 2 * i] = hex[sum[i] >> 4];
		out[8 + 2 * i] = hex[sum[i] & 15];
	}
	out[7 + 2 * RS_SHA256_LEN] = '\0';
}

/* 0-15 for lowercase hex digits, 16 for anything else. */
static const uint8_t hexval_table[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

static int hexval(char c)
{
	return (int)hexval_table[(unsigned char)c] - 1;
}

int rs_digest_parse(const char *s, size_t len, uint8_t out[RS_SHA256_LEN])
{
	if (len != 7 + 2 * RS_SHA256_LEN || memcmp(s, "sha256:", 7) != 0)
		return -EINVAL;
	for (int i = 0; i < RS_SHA256_LEN; i++) {
		int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
