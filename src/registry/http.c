// SPDX-License-Identifier: Apache-2.0
/* reg_http_do: one registry exchange over the hosts of a namespace (mirrors
 * in order, then the server), with auth, retries and the redirect cache. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http_easy.h"

#define URL_CACHE_TTL (10 * 60)
#define URL_CACHE_MAX 256
#define BODY_MAX_DEFAULT ((int64_t)64 << 20)

void reg_http_resp_free(struct reg_http_resp *r)
{
	if (!r)
		return;
	struct rs_buf lent = r->body;
	bool borrowed = r->body_borrowed;
	if (!borrowed)
		rs_buf_free(&r->body);
	free(r->content_type);
	free(r->location);
	free(r->docker_content_digest);
	free(r->content_range);
	free(r->final_url);
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
	if (borrowed) {
		r->body = lent;
		r->body.len = 0;
		r->body_borrowed = true;
	}
}

static bool is_absolute_url(const char *p)
{
	return strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0;
}

static unsigned needed_cap(const struct reg_http_req *req)
{
	if (req->push)
		return REG_CAP_PUSH;
	if (strncmp(req->path, "manifests/", 10) == 0 && strncmp(req->path + 10, "sha256:", 7) != 0)
		return REG_CAP_RESOLVE;
	return REG_CAP_PULL;
}

static char *build_url(const struct reg_host *h, const struct reg_http_req *req, const char *domain)
{
	struct rs_buf b = {0};
	int r;
	if (is_absolute_url(req->path))
		r = rs_buf_printf(&b, "%s", req->path);
	else if (req->path[0] == '/')
		r = rs_buf_printf(&b, "%s://%s%s", h->scheme, h->host, req->path);
	else
		r = rs_buf_printf(&b, "%s://%s%s/%s/%s", h->scheme, h->host, h->path,
				  req->ref->path, req->path);
	if (r == 0 && h->mirror && !is_absolute_url(req->path) && req->path[0] != '/') {
		char *e = curl_easy_escape(NULL, domain, 0);
		r = e ? rs_buf_printf(&b, "%sns=%s", strchr((char *)b.data, '?') ? "&" : "?", e)
		      : -ENOMEM;
		curl_free(e);
	}
	if (r < 0) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

/* ---- where blob GETs were redirected (object storage) ------------------ */

static char *url_cache_get(struct reg_client *c, const char *url)
{
	char *v = NULL;
	time_t now = time(NULL);
	pthread_mutex_lock(&c->lock);
	for (struct reg_url_cache **pp = &c->urls; *pp;) {
		struct reg_url_cache *u = *pp;
		if (u->expires <= now) {
			*pp = u->next;
			free(u->url);
			free(u->final_url);
			free(u);
			continue;
		}
		if (!v && strcmp(u->url, url) == 0)
			v = strdup(u->final_url);
		pp = &u->next;
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

static void url_cache_drop(struct reg_client *c, const char *url)
{
	pthread_mutex_lock(&c->lock);
	for (struct reg_url_cache **pp = &c->urls; *pp; pp = &(*pp)->next) {
		struct reg_url_cache *u = *pp;
		if (strcmp(u->url, url) == 0) {
			*pp = u->next;
			free(u->url);
			free(u->final_url);
			free(u);
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

static void url_cache_put(struct reg_client *c, const char *url, const char *final_url)
{
	url_cache_drop(c, url);
	struct reg_url_cache *u = calloc(1, sizeof(*u));
	if (!u)
		return;
	u->url = strdup(url);
	u->final_url = strdup(final_url);
	u->expires = time(NULL) + URL_CACHE_TTL;
	if (!u->url || !u->final_url) {
		free(u->url);
		free(u->final_url);
		free(u);
		return;
	}
	pthread_mutex_lock(&c->lock);
	size_t n = 0;
	struct reg_url_cache **pp = &c->urls;
	for (; *pp; pp = &(*pp)->next)
		n++;
	u->next = c->urls;
	c->urls = u;
	if (n >= URL_CACHE_MAX) {
		/* drop the oldest (the tail) */
		struct reg_url_cache **tail = &c->urls;
		while ((*tail)->next)
			tail = &(*tail)->next;
		free((*tail)->url);
		free((*tail)->final_url);
		free(*tail);
		*tail = NULL;
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- one host ------------------------------------------------------------ */

struct attempt_ctx {
	struct reg_client *c;
	const struct reg_http_req *req;
	const struct reg_host *h;
	const char *domain;
	const char *scope;
	struct reg_xfer *x;
};

static struct curl_slist *make_headers(const struct attempt_ctx *a, const char *auth)
{
	struct curl_slist *l = NULL, *t;
	for (const char *const *p = a->req->headers; p && *p; p++)
		if ((t = curl_slist_append(l, *p)))
			l = t;
	for (size_t i = 0; i < a->h->n_headers; i++)
		if ((t = curl_slist_append(l, a->h->headers[i])))
			l = t;
	if (a->req->body || a->req->body_fd >= 0 || a->x->body_len)
		if ((t = curl_slist_append(l, "Expect:")))
			l = t;
	if (auth) {
		size_t n = strlen(auth) + 16;
		char *line = malloc(n);
		if (line) {
			snprintf(line, n, "Authorization: %s", auth);
			if ((t = curl_slist_append(l, line)))
				l = t;
			explicit_bzero(line, strlen(line));
			free(line);
		}
	}
	return l;
}

/* Whether url points at h itself (scheme, host and port): only then may it
 * carry h's credentials or have its 401 answered with them. */
static bool at_host(const struct reg_origin *home, const char *url)
{
	struct reg_origin o;
	return url && reg_origin_parse(url, &o) == 0 && reg_origin_equal(home, &o);
}

/* A 401 from somewhere h sent us (object storage, an upload Location on
 * another host) is not answered: its realm would get h's credentials. */
static int foreign_401(const struct attempt_ctx *a, const char *url, struct rs_error *err)
{
	const char *where = a->x->resp->final_url ? a->x->resp->final_url : url;
	struct reg_origin o;
	char host[300];
	if (reg_origin_parse(where, &o) == 0)
		snprintf(host, sizeof(host), "%s:%ld", o.host, o.port);
	else
		snprintf(host, sizeof(host), "%s", "an unparsable URL");
	return rs_err(err, -EACCES,
		      "authentication failed for %s: it sent the request on to %s, which asked "
		      "for credentials (HTTP 401); those of %s are sent to %s only",
		      a->h->host, host, a->h->host, a->h->host);
}

static int once(const struct attempt_ctx *a, const char *url, const char *auth)
{
	struct curl_slist *hdrs = make_headers(a, auth);
	int rc = reg_xfer_perform(a->c, a->x, a->h, a->req->method, url, hdrs);
	reg_headers_free(hdrs);
	return rc;
}

/* A cached object-storage URL, tried first: 0 when it answered 2xx. */
static int try_cached_url(const struct attempt_ctx *a, const char *url)
{
	/* GET only: a presigned URL is signed for one method. */
	if (strcmp(a->req->method, "GET") != 0)
		return -ENOENT;
	cleanup_free char *final = url_cache_get(a->c, url);
	if (!final)
		return -ENOENT;
	int rc = once(a, final, NULL);
	if (rc == CURLE_OK && a->x->resp->status >= 200 && a->x->resp->status < 300)
		return 0;
	url_cache_drop(a->c, url);
	return -EAGAIN;
}

static int on_host(const struct attempt_ctx *a, struct rs_error *err)
{
	struct reg_client *c = a->c;
	cleanup_free char *url = build_url(a->h, a->req, a->domain);
	if (!url)
		return rs_err(err, -ENOMEM, "out of memory");
	if (try_cached_url(a, url) == 0)
		return 0;
	if (a->x->sunk)
		return rs_err(err, -EIO, "reading %s from %s: the transfer broke off", a->req->path,
			      a->h->host);

	struct reg_origin home;
	if (reg_host_origin(a->h, &home) < 0)
		return rs_err(err, -EINVAL, "registry host '%.200s' is not a valid URL host",
			      a->h->host);
	/* Credentials go to the namespace's host only, never to a foreign
	 * absolute URL (an upload Location may point anywhere). */
	bool ours = at_host(&home, url);
	char *auth = ours ? reg_auth_cached(c, a->h->host, a->scope) : NULL;
	if (ours && !auth) {
		int r = reg_auth_prepare(c, a->h, a->domain, a->scope, err);
		if (r < 0)
			return r;
		auth = reg_auth_cached(c, a->h->host, a->scope);
	}
	bool answered = false;
	int attempt = 0;
	int ret;
	for (;;) {
		if (__atomic_load_n(&c->cancelled, __ATOMIC_RELAXED)) {
			ret = rs_err(err, -ECANCELED, "request to %s cancelled (shutting down)",
				     a->h->host);
			break;
		}
		int rc = once(a, url, auth);
		if (rc != CURLE_OK) {
			if (reg_curl_retryable(rc) && attempt < c->retries && a->x->sunk == 0 &&
			    a->x->sink_rc == 0) {
				rs_log(RS_LOG_DEBUG, "registry %s: %s, retry %d", a->h->host,
				       curl_easy_strerror((CURLcode)rc), attempt + 1);
				reg_backoff(c, attempt++);
				continue;
			}
			ret = reg_curl_error(a->x, rc, a->h->host, err);
			break;
		}
		long st = a->x->resp->status;
		if (st == 401 && (!ours || !at_host(&home, a->x->resp->final_url))) {
			ret = foreign_401(a, url, err);
			break;
		}
		if (st == 401) {
			if (answered) {
				reg_auth_forget(c, a->h->host, a->scope);
				cleanup_free char *msg =
				    reg_error_message(a->x->resp->body.data, a->x->resp->body.len);
				ret = rs_err(err, -EACCES, "authentication failed for %s: %s",
					     a->h->host, msg ? msg : "HTTP 401 Unauthorized");
				break;
			}
			answered = true;
			if (auth)
				reg_auth_forget(c, a->h->host, a->scope);
			ret = reg_auth_answer(c, a->h, a->domain, a->x->www_auth, a->scope, err);
			if (ret < 0)
				break;
			if (auth) {
				explicit_bzero(auth, strlen(auth));
				free(auth);
			}
			auth = reg_auth_cached(c, a->h->host, a->scope);
			continue;
		}
		bool busy = (st >= 500 && st != 501) || st == 429;
		if (busy && attempt < c->retries && a->x->sunk == 0) {
			rs_log(RS_LOG_DEBUG, "registry %s: HTTP %ld, retry %d", a->h->host, st,
			       attempt + 1);
			reg_backoff(c, attempt++);
			continue;
		}
		ret = 0;
		const char *fin = a->x->resp->final_url;
		if (st >= 200 && st < 300 && strcmp(a->req->method, "GET") == 0 && fin &&
		    strcmp(fin, url) != 0 && strncmp(a->req->path, "blobs/sha256:", 13) == 0)
			url_cache_put(c, url, fin);
		break;
	}
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	return ret;
}

/* The repository a cross-repository mount reads (?mount=..&from=REPO): the
 * token needs pull on it too, or the registry quietly opens an upload. */
static bool mount_source(const char *path, char *out, size_t n)
{
	if (strncmp(path, "blobs/uploads/", 14) != 0)
		return false;
	const char *q = strchr(path, '?');
	for (const char *p = q; p && *p;) {
		p++;
		if (strncmp(p, "from=", 5) == 0) {
			p += 5;
			size_t k = 0;
			while (*p && *p != '&' && k + 1 < n) {
				if (p[0] == '%' && isxdigit((unsigned char)p[1]) &&
				    isxdigit((unsigned char)p[2])) {
					char hex[3] = {p[1], p[2], 0};
					out[k++] = (char)strtol(hex, NULL, 16);
					p += 3;
				} else {
					out[k++] = *p++;
				}
			}
			out[k] = '\0';
			for (size_t i = 0; i < k; i++)
				if (!(islower((unsigned char)out[i]) ||
				      isdigit((unsigned char)out[i]) || strchr("._-/", out[i])))
					return false;
			return k > 0;
		}
		p = strchr(p, '&');
	}
	return false;
}

int reg_http_do(struct reg_client *c, const struct reg_http_req *req, struct reg_http_resp *resp,
		struct rs_error *err)
{
	/* A body buffer the caller reserved (it knows the size) is kept. */
	struct rs_buf body = resp->body;
	bool borrowed = resp->body_borrowed;
	memset(resp, 0, sizeof(*resp));
	resp->body = body;
	resp->body.len = 0;
	resp->body_borrowed = borrowed;
	resp->content_length = -1;
	const struct reg_hosts *hosts;
	int r = reg_client_hosts(c, req->ref->domain, &hosts, err);
	if (r < 0)
		return r;
	unsigned cap = needed_cap(req);
	char scope[1200];
	int sl = snprintf(scope, sizeof(scope), "repository:%s:%s", req->ref->path,
			  req->push ? "pull,push" : "pull");
	char from[300];
	if (mount_source(req->path, from, sizeof(from)) && sl > 0 && (size_t)sl < sizeof(scope))
		snprintf(scope + sl, sizeof(scope) - (size_t)sl, " repository:%s:pull", from);

	struct reg_xfer x = {
	    .resp = resp,
	    .max_body = req->max_body > 0 ? req->max_body : BODY_MAX_DEFAULT,
	    .sink = req->sink,
	    .sink_ctx = req->sink_ctx,
	    .body = req->body,
	    .body_fd = req->body || req->body_len == 0 ? -1 : req->body_fd,
	    .body_off = req->body_off,
	    .body_len = req->body_len,
	};
	if (!req->body && req->body_fd < 0)
		x.body_len = 0;
	x.easy = reg_client_easy_get(c);
	if (!x.easy)
		return rs_err(err, -ENOMEM, "out of memory");

	size_t last = hosts->n;
	for (size_t i = 0; i < hosts->n; i++)
		if (hosts->v[i].caps & cap)
			last = i;
	if (last == hosts->n) {
		reg_client_easy_put(c, x.easy);
		return rs_err(err, -ENOENT, "no host configured for %s may %s", req->ref->domain,
			      cap == REG_CAP_PUSH      ? "push"
			      : cap == REG_CAP_RESOLVE ? "resolve"
						       : "pull");
	}
	/* Upload sessions live on the host that opened them: the first able. */
	bool session = is_absolute_url(req->path) || req->path[0] == '/';
	struct rs_error earlier = {0};
	r = -EIO;
	for (size_t i = 0; i <= last; i++) {
		const struct reg_host *h = &hosts->v[i];
		if (!(h->caps & cap))
			continue;
		struct attempt_ctx a = {c, req, h, req->ref->domain, scope, &x};
		struct rs_error herr = {0};
		r = on_host(&a, &herr);
		/* A 404 is final from the origin (a blob that is not there yet);
		 * only a mirror's 404 sends us on. */
		bool fall_through =
		    !session && i < last && x.sunk == 0 &&
		    (r < 0 || (h->mirror && resp->status == 404) || resp->status >= 500);
		if (!fall_through) {
			if (r < 0 && err) {
				*err = herr;
				if (earlier.msg[0])
					rs_err(err, r, "%s (before that %s)", herr.msg,
					       earlier.msg);
			}
			break;
		}
		if (r < 0 && !earlier.msg[0])
			earlier = herr;
		rs_log(RS_LOG_DEBUG, "registry %s: host %s: %s; trying the next host",
		       req->ref->domain, h->host,
		       r < 0 ? herr.msg : "HTTP status from a mirror, not final");
		free(x.www_auth);
		x.www_auth = NULL;
		reg_http_resp_free(resp);
	}
	free(x.www_auth);
	reg_client_easy_put(c, x.easy);
	return r;
}
