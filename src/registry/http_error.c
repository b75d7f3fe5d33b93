// SPDX-License-Identifier: Apache-2.0
/* Errors from registry replies: the registry's own JSON message when it gave
 * one, else the status; never the reply's raw bytes beyond a short, printable
 * excerpt of a message. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "transport.h"

#define MSG_MAX 300

static void add_clean(struct rs_buf *b, const char *s)
{
	for (; s && *s && b->len < MSG_MAX; s++) {
		char ch = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
		rs_buf_append(b, &ch, 1);
	}
}

char *reg_error_message(const void *body, size_t len)
{
	if (!body || len == 0)
		return NULL;
	json_t *j = json_loadb(body, len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	struct rs_buf b = {0};
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(j, "errors"), i, e)
	{
		const char *code = json_string_value(json_object_get(e, "code"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		if (!code && !msg)
			continue;
		if (b.len)
			add_clean(&b, "; ");
		add_clean(&b, code);
		if (code && msg)
			add_clean(&b, ": ");
		add_clean(&b, msg);
	}
	static const char *const keys[] = {"details", "error_description", "message", "error"};
	for (size_t k = 0; b.len == 0 && k < sizeof(keys) / sizeof(keys[0]); k++)
		add_clean(&b, json_string_value(json_object_get(j, keys[k])));
	json_decref(j);
	if (b.len == 0 || rs_buf_append(&b, "", 1) < 0) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

static int status_errno(long st)
{
	switch (st) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 405:
	case 501:
		return -EOPNOTSUPP;
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 416:
		return -ERANGE;
	case 429:
		return -EBUSY;
	default:
		return st >= 500 ? -EIO : -EPROTO;
	}
}

int reg_http_status_error(const struct reg_http_req *req, const struct reg_http_resp *resp,
			  const char *what, struct rs_error *err)
{
	const char *host = req && req->ref ? req->ref->domain : "registry";
	int code = status_errno(resp->status);
	cleanup_free char *msg = reg_error_message(resp->body.data, resp->body.len);
	if (msg)
		return rs_err(err, code, "%s: %s answered HTTP %ld: %s", what, host, resp->status,
			      msg);
	const char *ct = resp->content_type ? resp->content_type : "";
	if (strncasecmp(ct, "text/html", 9) == 0)
		return rs_err(err, code,
			      "%s: %s answered HTTP %ld with an HTML page, not a registry reply",
			      what, host, resp->status);
	return rs_err(err, code, "%s: %s answered HTTP %ld", what, host, resp->status);
}
