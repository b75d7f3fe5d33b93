// SPDX-License-Identifier: Apache-2.0
/* Registry auth: the bearer token flow of
 * distribution's docs/spec/auth/token.md, basic auth, and the token cache.
 * Tokens and credentials never reach an error message or a log line. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "transport.h"

#define TOKEN_DEFAULT_TTL 60
#define TOKEN_REPLY_MAX (1 << 20)

/* ---- the cache -------------------------------------------------------- */

static void token_free(struct reg_token *t)
{
	free(t->host);
	free(t->scope);
	if (t->value) {
		explicit_bzero(t->value, strlen(t->value));
		free(t->value);
	}
	free(t);
}

void reg_auth_state_free(struct reg_client *c)
{
	while (c->tokens) {
		struct reg_token *t = c->tokens;
		c->tokens = t->next;
		token_free(t);
	}
	while (c->host_auth) {
		struct reg_host_auth *a = c->host_auth;
		c->host_auth = a->next;
		free(a->host);
		reg_challenge_free(&a->ch);
		free(a);
	}
}

/* Basic credentials hold for every scope of a host: they sit under scope "". */
char *reg_auth_cached(struct reg_client *c, const char *host, const char *scope)
{
	char *v = NULL;
	time_t now = time(NULL);
	pthread_mutex_lock(&c->lock);
	for (struct reg_token **pp = &c->tokens; *pp;) {
		struct reg_token *t = *pp;
		if (t->expires && t->expires <= now) {
			*pp = t->next;
			token_free(t);
			continue;
		}
		if (strcmp(t->host, host) == 0 && (!*t->scope || strcmp(t->scope, scope) == 0)) {
			v = strdup(t->value);
			break;
		}
		pp = &t->next;
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

static void forget_locked(struct reg_client *c, const char *host, const char *scope)
{
	for (struct reg_token **pp = &c->tokens; *pp;) {
		struct reg_token *t = *pp;
		if (strcmp(t->host, host) == 0 && (!*t->scope || strcmp(t->scope, scope) == 0)) {
			*pp = t->next;
			token_free(t);
			continue;
		}
		pp = &t->next;
	}
}

void reg_auth_forget(struct reg_client *c, const char *host, const char *scope)
{
	pthread_mutex_lock(&c->lock);
	forget_locked(c, host, scope);
	pthread_mutex_unlock(&c->lock);
}

static int cache_put(struct reg_client *c, const char *host, const char *scope, char *value,
		     time_t expires)
{
	struct reg_token *t = calloc(1, sizeof(*t));
	if (!t || !(t->host = strdup(host)) || !(t->scope = strdup(scope))) {
		if (t) {
			free(t->host);
			free(t);
		}
		explicit_bzero(value, strlen(value));
		free(value);
		return -ENOMEM;
	}
	t->value = value;
	t->expires = expires;
	pthread_mutex_lock(&c->lock);
	forget_locked(c, host, scope);
	t->next = c->tokens;
	c->tokens = t;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void remember_challenge(struct reg_client *c, const char *host,
			       const struct reg_challenge *ch)
{
	struct reg_host_auth *a = calloc(1, sizeof(*a));
	if (!a)
		return;
	a->host = strdup(host);
	a->ch.scheme = ch->scheme;
	a->ch.realm = ch->realm ? strdup(ch->realm) : NULL;
	a->ch.service = ch->service ? strdup(ch->service) : NULL;
	pthread_mutex_lock(&c->lock);
	for (struct reg_host_auth **pp = &c->host_auth; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->host, host) == 0) {
			struct reg_host_auth *old = *pp;
			a->next = old->next;
			*pp = a;
			free(old->host);
			reg_challenge_free(&old->ch);
			free(old);
			goto out;
		}
	}
	a->next = c->host_auth;
	c->host_auth = a;
out:
	pthread_mutex_unlock(&c->lock);
}

/* ---- answering a challenge --------------------------------------------- */

static const char *creds_host(const struct reg_host *h, const char *domain)
{
	return h->mirror ? h->host : domain;
}

static int basic_value(const struct reg_creds *cr, char **out)
{
	size_t ul = strlen(cr->user), sl = strlen(cr->secret);
	size_t raw_len = ul + 1 + sl;
	char *raw = malloc(raw_len + 1);
	char *v = malloc(4 * ((raw_len + 2) / 3) + 8);
	if (!raw || !v) {
		free(raw);
		free(v);
		return -ENOMEM;
	}
	memcpy(raw, cr->user, ul);
	raw[ul] = ':';
	memcpy(raw + ul + 1, cr->secret, sl);
	memcpy(v, "Basic ", 6);
	rs_base64_encode((const uint8_t *)raw, raw_len, v + 6);
	explicit_bzero(raw, raw_len);
	free(raw);
	*out = v;
	return 0;
}

static int append_query(struct rs_buf *b, const char *key, const char *val)
{
	char *e = curl_easy_escape(NULL, val, 0);
	if (!e)
		return -ENOMEM;
	int r = rs_buf_printf(b, "%s%s=%s", b->len ? "&" : "", key, e);
	curl_free(e);
	return r;
}

/* service=..&scope=..(&scope=..) for each space-separated scope. */
static int token_query(struct rs_buf *q, const struct reg_challenge *ch, const char *scope)
{
	int r = 0;
	if (ch->service)
		r = append_query(q, "service", ch->service);
	const char *p = scope;
	while (r == 0 && *p) {
		size_t n = strcspn(p, " ");
		if (n) {
			char one[1024];
			snprintf(one, sizeof(one), "%.*s", (int)n, p);
			r = append_query(q, "scope", one);
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	return r;
}

static int token_from_reply(const struct rs_buf *body, char **value, time_t *expires)
{
	json_t *j = json_loadb((const char *)body->data, body->len, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (!tok || !*tok) {
		json_decref(j);
		return -EBADMSG;
	}
	json_int_t ttl = json_integer_value(json_object_get(j, "expires_in"));
	if (ttl <= 0)
		ttl = TOKEN_DEFAULT_TTL;
	if (ttl > 24 * 3600)
		ttl = 24 * 3600;
	/* Renew a little early so a token does not lapse in flight. */
	json_int_t margin = ttl >= 60 ? 10 : ttl / 4;
	*expires = time(NULL) + (time_t)(ttl - margin);
	size_t n = strlen(tok);
	char *v = malloc(n + 8);
	if (v) {
		memcpy(v, "Bearer ", 7);
		memcpy(v + 7, tok, n + 1);
	}
	json_decref(j);
	*value = v;
	return v ? 0 : -ENOMEM;
}

static int auth_failed(const char *host, const struct rs_buf *body, long status,
		       struct rs_error *err)
{
	cleanup_free char *msg = reg_error_message(body->data, body->len);
	if (msg)
		return rs_err(err, -EACCES, "authentication failed for %s: %s", host, msg);
	return rs_err(err, -EACCES, "authentication failed for %s: token server answered HTTP %ld",
		      host, status);
}

/* Credentials go to a realm over HTTPS, or over plain HTTP only to the host
 * name of h when h itself is configured plain HTTP (the credentials cross
 * that network in clear anyway); anonymous requests go anywhere. */
static int realm_allowed(const struct reg_host *h, const char *domain, const char *realm,
			 bool anonymous, struct rs_error *err)
{
	struct reg_origin ro, ho;
	if (reg_origin_parse(realm, &ro) < 0 ||
	    (strcmp(ro.scheme, "https") != 0 && strcmp(ro.scheme, "http") != 0))
		return rs_err(err, -EACCES,
			      "authentication for %s: the token realm '%.200s' is not an http(s) "
			      "URL",
			      h->host, realm);
	if (anonymous || strcmp(ro.scheme, "https") == 0)
		return 0;
	if (reg_host_origin(h, &ho) == 0 && strcmp(ho.scheme, "http") == 0 &&
	    reg_origin_same_host(&ro, &ho))
		return 0;
	return rs_err(err, -EACCES,
		      "authentication for %s: the token realm %s:%ld is plain HTTP; credentials "
		      "for %s are sent only over HTTPS, or to the host name of a registry "
		      "configured plain HTTP",
		      h->host, ro.host, ro.port, creds_host(h, domain));
}

/* Fetches a token for scope (maybe several, space-separated) and caches it
 * under cache_scope. */
static int fetch_token_now(struct reg_client *c, const struct reg_host *h, const char *domain,
			   const struct reg_challenge *ch, const char *scope,
			   const char *cache_scope, struct rs_error *err)
{
	struct reg_creds cr = {0};
	int r = reg_creds_find(c, creds_host(h, domain), &cr, err);
	if (r < 0) {
		rs_error_prefix(err, "credentials for %s", creds_host(h, domain));
		return r;
	}

	bool anonymous = !cr.user && !cr.identity_token;
	r = realm_allowed(h, domain, ch->realm, anonymous, err);
	if (r < 0) {
		reg_creds_free(&cr);
		return r;
	}
	struct rs_buf q = {0}, url = {0}, body = {0};
	char *auth_hdr = NULL;
	const char *method = "GET";
	r = token_query(&q, ch, scope);
	if (r == 0 && cr.identity_token) {
		/* OAuth2 refresh-token grant (docker login with an identity token). */
		method = "POST";
		r = append_query(&q, "grant_type", "refresh_token");
		if (r == 0)
			r = append_query(&q, "refresh_token", cr.identity_token);
		if (r == 0)
			r = append_query(&q, "client_id", "remote-snapshotter");
		if (r == 0)
			r = rs_buf_printf(&url, "%s", ch->realm);
	} else if (r == 0) {
		if (cr.user && cr.secret)
			r = basic_value(&cr, &auth_hdr);
		if (r == 0)
			r = rs_buf_printf(&url, "%s%s%s", ch->realm,
					  strchr(ch->realm, '?') ? "&" : "?",
					  q.len ? (char *)q.data : "");
	}
	reg_creds_free(&cr);
	if (r < 0) {
		if (q.data)
			explicit_bzero(q.data, q.len);
		rs_buf_free(&q);
		rs_buf_free(&url);
		if (auth_hdr) {
			explicit_bzero(auth_hdr, strlen(auth_hdr));
			free(auth_hdr);
		}
		return rs_err(err, -ENOMEM, "out of memory");
	}
	/* The realm is another server: the default TLS checks plus the CA
	 * configured for h, never h's skip_verify or its client certificate. */
	struct reg_host realm_tls = {
	    .skip_verify = -1,
	    .dial_timeout_ms = h->dial_timeout_ms,
	    .ca_blob = h->ca_blob,
	};
	long status = 0;
	struct reg_simple_req sr = {
	    .method = method,
	    .url = (char *)url.data,
	    .authorization = auth_hdr,
	    .form = strcmp(method, "POST") == 0 ? (char *)q.data : NULL,
	    .max_body = TOKEN_REPLY_MAX,
	};
	r = reg_http_simple(c, &realm_tls, &sr, &status, &body, err);
	if (q.data)
		explicit_bzero(q.data, q.len);
	rs_buf_free(&q);
	rs_buf_free(&url);
	if (auth_hdr) {
		explicit_bzero(auth_hdr, strlen(auth_hdr));
		free(auth_hdr);
	}
	if (r < 0) {
		rs_buf_free(&body);
		rs_error_prefix(err, "authentication for %s: token server", h->host);
		return r;
	}
	if (status == 401 || status == 403) {
		r = auth_failed(h->host, &body, status, err);
		if (anonymous && err) {
			char m[RS_ERROR_MSG_MAX];
			snprintf(m, sizeof(m), "%s", err->msg);
			rs_err(err, r, "%.700s (no credentials for %.200s in the docker config)", m,
			       creds_host(h, domain));
		}
		rs_buf_free(&body);
		return r;
	}
	if (status != 200) {
		cleanup_free char *msg = reg_error_message(body.data, body.len);
		rs_buf_free(&body);
		return rs_err(err, -EACCES,
			      "authentication failed for %s: token server answered HTTP %ld%s%s",
			      h->host, status, msg ? ": " : "", msg ? msg : "");
	}
	char *value = NULL;
	time_t expires = 0;
	r = token_from_reply(&body, &value, &expires);
	if (body.data)
		explicit_bzero(body.data, body.len);
	rs_buf_free(&body);
	if (r < 0)
		return rs_err(
		    err, -EACCES,
		    "authentication failed for %s: the token server's reply holds no token",
		    h->host);
	r = cache_put(c, h->host, cache_scope, value, expires);
	return r < 0 ? rs_err(err, r, "out of memory") : 0;
}

static struct reg_token **inflight_find(struct reg_client *c, const char *host, const char *scope)
{
	for (struct reg_token **pp = &c->inflight; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->host, host) == 0 && strcmp((*pp)->scope, scope) == 0)
			return pp;
	return NULL;
}

static bool cached_locked(struct reg_client *c, const char *host, const char *scope)
{
	time_t now = time(NULL);
	for (struct reg_token *t = c->tokens; t; t = t->next)
		if ((!t->expires || t->expires > now) && strcmp(t->host, host) == 0 &&
		    strcmp(t->scope, scope) == 0)
			return true;
	return false;
}

/* One fetch per (host, scope) at a time: threads that hit the same 401
 * together wait for the first one's token instead of each asking. */
static int fetch_token(struct reg_client *c, const struct reg_host *h, const char *domain,
		       const struct reg_challenge *ch, const char *scope, const char *cache_scope,
		       struct rs_error *err)
{
	struct reg_token *me = calloc(1, sizeof(*me));
	if (!me || !(me->host = strdup(h->host)) || !(me->scope = strdup(cache_scope))) {
		if (me)
			free(me->host);
		free(me);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&c->lock);
	bool waited = false;
	while (inflight_find(c, h->host, cache_scope)) {
		pthread_cond_wait(&c->auth_cond, &c->lock);
		waited = true;
	}
	if (waited && cached_locked(c, h->host, cache_scope)) {
		pthread_mutex_unlock(&c->lock);
		token_free(me);
		return 0;
	}
	me->next = c->inflight;
	c->inflight = me;
	pthread_mutex_unlock(&c->lock);

	int r = fetch_token_now(c, h, domain, ch, scope, cache_scope, err);

	pthread_mutex_lock(&c->lock);
	struct reg_token **pp = inflight_find(c, h->host, cache_scope);
	if (pp)
		*pp = (*pp)->next;
	pthread_cond_broadcast(&c->auth_cond);
	pthread_mutex_unlock(&c->lock);
	token_free(me);
	return r;
}

static int use_basic(struct reg_client *c, const struct reg_host *h, const char *domain,
		     struct rs_error *err)
{
	struct reg_creds cr = {0};
	int r = reg_creds_find(c, creds_host(h, domain), &cr, err);
	if (r < 0) {
		rs_error_prefix(err, "credentials for %s", creds_host(h, domain));
		return r;
	}
	if (!cr.user || !cr.secret) {
		reg_creds_free(&cr);
		return rs_err(err, -EACCES,
			      "authentication failed for %s: basic authentication required and no "
			      "credentials for %s in the docker config",
			      h->host, creds_host(h, domain));
	}
	char *v = NULL;
	r = basic_value(&cr, &v);
	reg_creds_free(&cr);
	if (r < 0)
		return rs_err(err, r, "out of memory");
	r = cache_put(c, h->host, "", v, 0);
	return r < 0 ? rs_err(err, r, "out of memory") : 0;
}

int reg_auth_answer(struct reg_client *c, const struct reg_host *h, const char *domain,
		    const char *www_authenticate, const char *scope, struct rs_error *err)
{
	struct reg_challenge ch;
	if (!www_authenticate || reg_challenge_parse(www_authenticate, &ch) < 0)
		return rs_err(err, -EACCES,
			      "authentication failed for %s: HTTP 401 without a usable "
			      "WWW-Authenticate challenge",
			      h->host);
	remember_challenge(c, h->host, &ch);
	int r;
	if (ch.scheme == REG_AUTH_BASIC) {
		r = use_basic(c, h, domain, err);
	} else {
		/* The token is cached under our scope: the next request finds it. */
		cleanup_free char *want = reg_auth_merge_scope(scope, ch.scope);
		r = want ? fetch_token(c, h, domain, &ch, want, scope, err) : -ENOMEM;
		if (!want)
			rs_err(err, r, "out of memory");
	}
	reg_challenge_free(&ch);
	return r;
}

int reg_auth_prepare(struct reg_client *c, const struct reg_host *h, const char *domain,
		     const char *scope, struct rs_error *err)
{
	struct reg_challenge ch = {0};
	pthread_mutex_lock(&c->lock);
	for (struct reg_host_auth *a = c->host_auth; a; a = a->next) {
		if (strcmp(a->host, h->host) == 0 && a->ch.scheme == REG_AUTH_BEARER) {
			ch.scheme = a->ch.scheme;
			ch.realm = a->ch.realm ? strdup(a->ch.realm) : NULL;
			ch.service = a->ch.service ? strdup(a->ch.service) : NULL;
		}
	}
	pthread_mutex_unlock(&c->lock);
	int r = 0;
	if (ch.scheme == REG_AUTH_BEARER && ch.realm)
		r = fetch_token(c, h, domain, &ch, scope, scope, err);
	reg_challenge_free(&ch);
	return r;
}
