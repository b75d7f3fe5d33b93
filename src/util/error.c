// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

int rs_err(struct rs_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

void rs_error_prefix(struct rs_error *err, const char *fmt, ...)
{
	if (!err)
		return;
	char prefix[RS_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* Build "prefix: old" in place; whatever does not fit is cut. */
	char joined[RS_ERROR_MSG_MAX];
	size_t pl = strnlen(prefix, sizeof(joined) - 3);
	memcpy(joined, prefix, pl);
	memcpy(joined + pl, ": ", 2);
	size_t room = sizeof(joined) - pl - 3;
	size_t ol = strnlen(err->msg, room);
	memcpy(joined + pl + 2, err->msg, ol);
	joined[pl + 2 + ol] = '\0';
	memcpy(err->msg, joined, sizeof(joined));
}

void rs_error_clear(struct rs_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
