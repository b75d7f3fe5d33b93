// SPDX-License-Identifier: Apache-2.0
/* One curl transfer: options (TLS per host, timeouts, redirects, HTTP/2),
 * response headers, a bounded body or a sink, and curl errors turned into
 * messages that name the host and the reason. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_easy.h"

#define ERROR_BODY_MAX (64 * 1024)
#define MAX_REDIRECTS 10

static void set_field(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = strndup(v, n);
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct reg_xfer *x = ud;
	size_t n = size * nitems;
	if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* a new response (after a redirect or 100-continue) */
		struct reg_http_resp *r = x->resp;
		free(r->content_type);
		free(r->location);
		free(r->docker_content_digest);
		free(r->content_range);
		free(x->www_auth);
		r->content_type = r->location = r->docker_content_digest = NULL;
		r->content_range = x->www_auth = NULL;
		r->content_length = -1;
		return n;
	}
	const char *colon = memchr(buf, ':', n);
	if (!colon)
		return n;
	size_t kl = (size_t)(colon - buf);
	const char *v = colon + 1;
	const char *end = buf + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	size_t vl = (size_t)(end - v);
	struct reg_http_resp *r = x->resp;
#define IS(name) (kl == sizeof(name) - 1 && strncasecmp(buf, name, kl) == 0)
	if (IS("Content-Type"))
		set_field(&r->content_type, v, vl);
	else if (IS("Location"))
		set_field(&r->location, v, vl);
	else if (IS("Docker-Content-Digest"))
		set_field(&r->docker_content_digest, v, vl);
	else if (IS("Content-Range"))
		set_field(&r->content_range, v, vl);
	else if (IS("WWW-Authenticate") && !x->www_auth)
		set_field(&x->www_auth, v, vl);
	else if (IS("Content-Length")) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%.*s", (int)(vl < 31 ? vl : 31), v);
		char *e = NULL;
		long long cl = strtoll(tmp, &e, 10);
		r->content_length = (e && *e == '\0' && cl >= 0) ? cl : -1;
	}
#undef IS
	return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct reg_xfer *x = ud;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (x->sink && status >= 200 && status < 300) {
		int r = x->sink(x->sink_ctx, data, n);
		if (r < 0) {
			x->sink_rc = r;
			return 0;
		}
		x->sunk += n;
		return n;
	}
	int64_t max = (x->sink || status < 200 || status >= 300) && x->max_body > ERROR_BODY_MAX
			  ? ERROR_BODY_MAX
			  : x->max_body;
	if ((int64_t)(x->resp->body.len + n) > max ||
	    (x->resp->body_borrowed && x->resp->body.len + n > x->resp->body.cap)) {
		x->too_big = true;
		return 0;
	}
	if (rs_buf_append(&x->resp->body, data, n) < 0) {
		x->sink_rc = -ENOMEM;
		return 0;
	}
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	struct reg_xfer *x = ud;
	size_t want = size * nitems;
	size_t left = x->body_len - x->up_pos;
	if (want > left)
		want = left;
	if (want == 0)
		return 0;
	if (x->body) {
		memcpy(buf, (const uint8_t *)x->body + x->up_pos, want);
	} else {
		ssize_t r;
		do
			r = pread(x->body_fd, buf, want, (off_t)(x->body_off + (int64_t)x->up_pos));
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			x->sink_rc = r < 0 ? -errno : -EIO;
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)r;
	}
	x->up_pos += want;
	return want;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
	struct reg_xfer *x = ud;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->up_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static void tls_options(CURL *e, const struct reg_host *h)
{
	if (!h)
		return;
	if (h->ca_blob.len) {
		struct curl_blob blob = {h->ca_blob.data, h->ca_blob.len, CURL_BLOB_NOCOPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	}
	if (h->n_clients > 0) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, h->clients[0].cert);
		if (h->clients[0].key)
			curl_easy_setopt(e, CURLOPT_SSLKEY, h->clients[0].key);
	}
	if (h->skip_verify == 1) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/* Called by curl at least once a second during a transfer, even a stalled one. */
static int abort_if_cancelled(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	return __atomic_load_n(&((struct reg_client *)ud)->cancelled, __ATOMIC_RELAXED) ? 1 : 0;
}

static void common_options(struct reg_client *c, CURL *e, const struct reg_host *h, bool streaming,
			   char *errbuf)
{
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, abort_if_cancelled);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_SHARE, c->share);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	/* curl drops Authorization (ours and custom ones alike) when a
	 * redirect leaves the host, port or scheme; keep it that way. */
	curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	long connect_ms = h && h->dial_timeout_ms ? h->dial_timeout_ms : 10000;
	if (connect_ms > c->timeout_ms)
		connect_ms = c->timeout_ms;
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	/* A streamed blob may take long; a stalled one may not. */
	if (!streaming)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	long stall_s = c->timeout_ms / 1000 > 5 ? c->timeout_ms / 1000 : 5;
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
	errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	tls_options(e, h);
}

/* host[:port] of url into out. */
static void url_host(const char *url, char *out, size_t n)
{
	const char *p = strstr(url ? url : "", "://");
	p = p ? p + 3 : (url ? url : "");
	size_t l = strcspn(p, "/?#");
	const char *at = memchr(p, '@', l);
	if (at) {
		l -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	snprintf(out, n, "%.*s", (int)l, p);
}

bool reg_curl_retryable(int code)
{
	switch (code) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

int reg_curl_error(struct reg_xfer *x, int code, const char *fallback_host, struct rs_error *err)
{
	char host[300];
	char *eff = NULL;
	curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
	url_host(eff, host, sizeof(host));
	if (!host[0])
		snprintf(host, sizeof(host), "%s", fallback_host);
	const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror((CURLcode)code);
	if (x->sink_rc < 0)
		return rs_err(err, x->sink_rc, "reading the reply from %s: %s", host,
			      strerror(-x->sink_rc));
	if (x->too_big)
		return rs_err(err, -EFBIG, "reply from %s is larger than %lld bytes", host,
			      (long long)x->max_body);
	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return rs_err(err, -EHOSTUNREACH, "cannot resolve host %s: %s", host, why);
	case CURLE_COULDNT_CONNECT:
		return rs_err(err, -ECONNREFUSED, "cannot connect to %s: %s", host, why);
	case CURLE_OPERATION_TIMEDOUT:
		return rs_err(err, -ETIMEDOUT, "timeout talking to %s: %s", host, why);
	case CURLE_TOO_MANY_REDIRECTS:
		return rs_err(err, -ELOOP, "too many redirects talking to %s (more than %d)", host,
			      MAX_REDIRECTS);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return rs_err(err, -EPROTO, "TLS error talking to %s: %s%s", host, why,
			      strstr(why, "wrong version number")
				  ? " (the server may speak plain HTTP: see --plain-http)"
				  : "");
	case CURLE_PARTIAL_FILE:
		return rs_err(err, -EPIPE, "truncated reply from %s: %s", host, why);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return rs_err(err, -EPROTONOSUPPORT, "talking to %s: %s", host, why);
	default:
		return rs_err(err, -EIO, "talking to %s: %s", host, why);
	}
}

int reg_xfer_perform(struct reg_client *c, struct reg_xfer *x, const struct reg_host *h,
		     const char *method, const char *url, const struct curl_slist *headers)
{
	CURL *e = x->easy;
	curl_easy_reset(e);
	x->too_big = false;
	x->sink_rc = 0;
	x->up_pos = 0;
	rs_buf_reset(&x->resp->body);
	bool streaming = x->sink != NULL || x->body_fd >= 0;
	common_options(c, e, h, streaming, x->errbuf);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	if (x->no_redirects)
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
		   strcmp(method, "PATCH") == 0) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->body_len);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, x);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
		if (strcmp(method, "PUT") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	CURLcode rc = curl_easy_perform(e);
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	x->resp->status = status;
	char *eff = NULL;
	curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
	free(x->resp->final_url);
	x->resp->final_url = eff ? strdup(eff) : NULL;
	if (rc == CURLE_OK && (x->sink_rc < 0 || x->too_big))
		rc = CURLE_WRITE_ERROR;
	return (int)rc;
}

void reg_headers_free(struct curl_slist *l)
{
	for (struct curl_slist *p = l; p; p = p->next)
		if (strncasecmp(p->data, "Authorization:", 14) == 0)
			explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

int reg_http_simple(struct reg_client *c, const struct reg_host *h, const struct reg_simple_req *r,
		    long *status, struct rs_buf *body, struct rs_error *err)
{
	struct reg_http_resp resp = {.content_length = -1};
	struct reg_xfer x = {.resp = &resp, .max_body = r->max_body, .body_fd = -1};
	x.easy = reg_client_easy_get(c);
	if (!x.easy)
		return rs_err(err, -ENOMEM, "out of memory");
	/* A 307 would send a POST's form (a refresh token) on to wherever the
	 * token server points. */
	x.no_redirects = r->form != NULL;
	struct curl_slist *hdrs = NULL, *t;
	int ret = 0;
	if (r->authorization) {
		size_t n = strlen(r->authorization) + 16;
		char *line = malloc(n);
		if (!line)
			ret = -ENOMEM;
		else {
			snprintf(line, n, "Authorization: %s", r->authorization);
			t = curl_slist_append(hdrs, line);
			explicit_bzero(line, n);
			free(line);
			if (t)
				hdrs = t;
			else
				ret = -ENOMEM;
		}
	}
	if (r->form && ret == 0) {
		t = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
		if (t)
			hdrs = t;
		else
			ret = -ENOMEM;
		x.body = r->form;
		x.body_len = strlen(r->form);
	}
	if (ret < 0) {
		reg_headers_free(hdrs);
		reg_client_easy_put(c, x.easy);
		return rs_err(err, ret, "out of memory");
	}
	int rc = reg_xfer_perform(c, &x, h, r->method, r->url, hdrs);
	if (rc != CURLE_OK) {
		char host[300];
		url_host(r->url, host, sizeof(host));
		ret = reg_curl_error(&x, rc, host, err);
	}
	reg_headers_free(hdrs);
	reg_client_easy_put(c, x.easy);
	*status = resp.status;
	*body = resp.body;
	resp.body = (struct rs_buf){0};
	free(x.www_auth);
	reg_http_resp_free(&resp);
	return ret;
}
