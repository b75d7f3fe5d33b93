// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <string.h>

#include "util.h"

int rs_path_clean(const char *in, size_t len, char *out, size_t *out_len, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	if (len > 0 && in[0] == '/') {
		*why = "absolute path";
		return -EINVAL;
	}
	if (memchr(in, '\0', len)) {
		*why = "NUL byte in name";
		return -EINVAL;
	}
	size_t o = 0, i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && in[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 0 || (n == 1 && in[i] == '.')) {
			/* empty or "." component */
		} else if (n == 2 && in[i] == '.' && in[i + 1] == '.') {
			*why = "path contains '..'";
			return -EINVAL;
		} else {
			if (o)
				out[o++] = '/';
			memcpy(out + o, in + i, n);
			o += n;
		}
		i = j + 1;
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}
