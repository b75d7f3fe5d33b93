// SPDX-License-Identifier: Apache-2.0
#include <errno.h>

#include "util.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t rs_base64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap)
{
	if (len % 4 != 0)
		return -EINVAL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];
			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad)
					return -EINVAL;
				v[k] = b64val(c);
				if (v[k] < 0)
					return -EINVAL;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		size_t n = 3 - (size_t)pad;
		if (o + n > out_cap)
			return -EINVAL;
		out[o++] = (uint8_t)(w >> 16);
		if (n > 1)
			out[o++] = (uint8_t)(w >> 8);
		if (n > 2)
			out[o++] = (uint8_t)w;
	}
	return (ssize_t)o;
}

size_t rs_base64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64[w >> 18];
		out[o++] = b64[(w >> 12) & 63];
		out[o++] = b64[(w >> 6) & 63];
		out[o++] = b64[w & 63];
	}
	if (len - i == 1) {
		uint32_t w = (uint32_t)in[i] << 16;
		out[o++] = b64[w >> 18];
		out[o++] = b64[(w >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64[w >> 18];
		out[o++] = b64[(w >> 12) & 63];
		out[o++] = b64[(w >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}
