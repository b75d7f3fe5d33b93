// SPDX-License-Identifier: Apache-2.0
#include "util.h"

int64_t rs_parse_decimal(const char *s, size_t len)
{
	if (len == 0 || len > 18)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}
