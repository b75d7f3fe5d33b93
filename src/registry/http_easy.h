/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/registry: one curl transfer (http_easy.c) for http.c. */
#ifndef REG_HTTP_EASY_H
#define REG_HTTP_EASY_H

#include <curl/curl.h>

#include "transport.h"

/* The state of one transfer, shared with curl's callbacks. */
struct reg_xfer {
	CURL *easy;
	struct reg_http_resp *resp;
	char *www_auth; /* the last response's WWW-Authenticate */
	int64_t max_body;
	bool too_big;
	int sink_rc; /* a sink's or the body reader's error */
	int (*sink)(void *ctx, const void *data, size_t len);
	void *sink_ctx;
	size_t sunk; /* bytes handed to the sink, over all attempts */
	const void *body;
	int body_fd;
	int64_t body_off;
	size_t body_len;
	size_t up_pos;
	bool no_redirects; /* a redirect is an answer, not followed */
	char errbuf[CURL_ERROR_SIZE];
};

/* Runs one request; returns a CURLcode (0: an answer is in x->resp). */
int reg_xfer_perform(struct reg_client *c, struct reg_xfer *x, const struct reg_host *h,
		     const char *method, const char *url, const struct curl_slist *headers);
/* Whether a failed transfer is worth another try. */
bool reg_curl_retryable(int code);
/* An error for a failed transfer, naming the host and curl's reason. */
int reg_curl_error(struct reg_xfer *x, int code, const char *fallback_host, struct rs_error *err);

/* Frees a header list, wiping Authorization lines first. */
void reg_headers_free(struct curl_slist *l);

#endif
