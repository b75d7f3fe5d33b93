/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/registry: the HTTP layer the operations are written on. */
#ifndef REG_REGISTRY_INTERNAL_H
#define REG_REGISTRY_INTERNAL_H

#include "registry.h"

/* One HTTP exchange with a registry, after host selection (mirrors in order,
 * then the origin), TLS setup per host, auth (a 401 answered with a bearer
 * token or basic credentials, then retried once), retries with exponential
 * backoff and jitter on 5xx and connection errors, and redirects. */
struct reg_http_req {
	const char *method;        /* "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE" */
	const struct reg_ref *ref; /* host, and repository for the auth scope */
	/* Either a path below /v2/<repository>/ ("manifests/latest",
	 * "blobs/sha256:..", "blobs/uploads/") or, for upload sessions, an
	 * absolute URL or absolute path from a Location header. */
	const char *path;
	const char *const *headers; /* extra "Name: value" lines; NULL-terminated or NULL */
	const void *body;           /* request body in memory ... */
	size_t body_len;
	int body_fd; /* ... or from this fd (when >= 0) at body_off, body_len bytes */
	int64_t body_off;
	bool push;        /* needs push scope and a push-capable host */
	int64_t max_body; /* bound for a buffered response body; 0: 64 MiB */
	/* With a sink the response body streams to it instead of resp->body;
	 * returning a negative errno aborts the transfer. */
	int (*sink)(void *ctx, const void *data, size_t len);
	void *sink_ctx;
};

struct reg_http_resp {
	long status;
	struct rs_buf body;
	char *content_type;
	char *location;
	char *docker_content_digest;
	char *content_range;
	int64_t content_length; /* -1 when absent */
	char *final_url;        /* after redirects */
	/* body.data is the caller's buffer of body.cap bytes: never grown or
	 * freed here (a reply that does not fit is too big). */
	bool body_borrowed;
};

/* Returns 0 with resp filled for any HTTP status (the caller judges it), or a
 * negative errno when no answer could be had; err names host and reason
 * (never credentials). */
/* resp must be zeroed or freed before; a body buffer reserved in it is reused. */
int reg_http_do(struct reg_client *c, const struct reg_http_req *req, struct reg_http_resp *resp,
		struct rs_error *err);
void reg_http_resp_free(struct reg_http_resp *resp);

/* An error message for an unexpected status: the registry's own error JSON
 * ({"errors":[{"code","message"}]}) when there is one, else the status line. */
int reg_http_status_error(const struct reg_http_req *req, const struct reg_http_resp *resp,
			  const char *what, struct rs_error *err);

#endif
