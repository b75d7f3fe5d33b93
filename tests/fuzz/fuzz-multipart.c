// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the multipart/byteranges reply parser: the input's first line is
 * the Content-Type, the rest the body. */
#include <string.h>

#include "registry/ops_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size < 512 ? size : 512);
	if (!nl)
		return 0;
	char ct[512];
	size_t cl = (size_t)(nl - data);
	memcpy(ct, data, cl);
	ct[cl] = '\0';
	const uint8_t *body = nl + 1, *end = data + size;
	struct reg_part *parts;
	size_t n;
	struct rs_error err;
	if (reg_multipart_parse(ct, body, (size_t)(end - body), &parts, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (parts[i].data < body || parts[i].data + parts[i].len > end ||
			    (int64_t)parts[i].len != parts[i].last - parts[i].first + 1)
				__builtin_trap(); /* a part must lie inside the body */
		}
		free(parts);
	}
	int64_t a, b, t;
	(void)reg_content_range_parse(ct, &a, &b, &t);
	return 0;
}
