// SPDX-License-Identifier: Apache-2.0
/* The registry client: options, the curl share (DNS, TLS sessions; not
 * connections, which curl cannot share between threads safely: each pooled
 * easy handle keeps its own), a small pool of easy handles, and the
 * per-domain hosts cache. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "transport.h"

#ifndef RS_VERSION
#define RS_VERSION "0.1.0"
#endif

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *ud)
{
	struct reg_client *c = ud;
	pthread_mutex_lock(&c->share_locks[(unsigned)data % 8]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct reg_client *c = ud;
	pthread_mutex_unlock(&c->share_locks[(unsigned)data % 8]);
}

int reg_client_new(const struct reg_options *o, struct reg_client **out, struct rs_error *err)
{
	*out = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return rs_err(err, -EIO, "libcurl initialisation failed: %s",
			      curl_easy_strerror(curl_init_rc));
	struct reg_options def = {0};
	if (!o)
		o = &def;
	struct reg_client *c = calloc(1, sizeof(*c));
	if (!c)
		return rs_err(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->auth_cond, NULL);
	for (int i = 0; i < 8; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	c->plain_http = o->plain_http;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
	c->retries = o->retries == 0 ? 4 : o->retries < 0 ? 0 : o->retries;
	c->hosts_dir = o->hosts_dir ? strdup(o->hosts_dir) : NULL;
	c->docker_config = o->docker_config ? strdup(o->docker_config) : NULL;
	c->user_agent = strdup(o->user_agent ? o->user_agent : "remote-snapshotter/" RS_VERSION);
	c->rand_state = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)c;
	bool nomem = false;
	if (o->n_auth_files) {
		c->auth_files = calloc(o->n_auth_files, sizeof(*c->auth_files));
		nomem = !c->auth_files;
		for (size_t i = 0; c->auth_files && i < o->n_auth_files; i++, c->n_auth_files++)
			nomem |= !(c->auth_files[i] = strdup(o->auth_files[i]));
	}
	if ((o->hosts_dir && !c->hosts_dir) || (o->docker_config && !c->docker_config) ||
	    !c->user_agent || nomem) {
		reg_client_free(c);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	CURLSH *sh = curl_share_init();
	if (!sh) {
		reg_client_free(c);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	c->share = sh;
	curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(sh, CURLSHOPT_USERDATA, c);
	curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = c;
	return 0;
}

void reg_client_cancel(struct reg_client *c)
{
	if (c)
		__atomic_store_n(&c->cancelled, 1, __ATOMIC_RELAXED);
}

void reg_client_free(struct reg_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	if (c->share)
		curl_share_cleanup(c->share);
	reg_auth_state_free(c);
	while (c->urls) {
		struct reg_url_cache *u = c->urls;
		c->urls = u->next;
		free(u->url);
		free(u->final_url);
		free(u);
	}
	while (c->hosts) {
		struct reg_hosts_cache *h = c->hosts;
		c->hosts = h->next;
		reg_hosts_free(&h->hosts);
		free(h);
	}
	free(c->hosts_dir);
	free(c->docker_config);
	for (size_t i = 0; i < c->n_auth_files; i++)
		free(c->auth_files[i]);
	free(c->auth_files);
	free(c->user_agent);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->auth_cond);
	for (int i = 0; i < 8; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	free(c);
}

void *reg_client_easy_get(struct reg_client *c)
{
	CURL *e = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->n_pool > 0)
		e = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->lock);
	if (e)
		curl_easy_reset(e);
	else
		e = curl_easy_init();
	return e;
}

void reg_client_easy_put(struct reg_client *c, void *easy)
{
	if (!easy)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->n_pool < REG_POOL_MAX) {
		c->pool[c->n_pool++] = easy;
		easy = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (easy)
		curl_easy_cleanup(easy);
}

/* Hosts never change during a client's life: load once, keep until free. */
int reg_client_hosts(struct reg_client *c, const char *domain, const struct reg_hosts **out,
		     struct rs_error *err)
{
	pthread_mutex_lock(&c->lock);
	for (struct reg_hosts_cache *h = c->hosts; h; h = h->next) {
		if (strcmp(h->hosts.domain, domain) == 0) {
			*out = &h->hosts;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	struct reg_hosts_cache *n = calloc(1, sizeof(*n));
	if (!n)
		return rs_err(err, -ENOMEM, "out of memory");
	int r = reg_hosts_load(c->hosts_dir, domain, c->plain_http, &n->hosts, err);
	if (r < 0) {
		free(n);
		return r;
	}
	pthread_mutex_lock(&c->lock);
	for (struct reg_hosts_cache *h = c->hosts; h; h = h->next) {
		if (strcmp(h->hosts.domain, domain) == 0) {
			/* another thread won the race */
			*out = &h->hosts;
			pthread_mutex_unlock(&c->lock);
			reg_hosts_free(&n->hosts);
			free(n);
			return 0;
		}
	}
	n->next = c->hosts;
	c->hosts = n;
	*out = &n->hosts;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void reg_backoff(struct reg_client *c, int attempt)
{
	long ms = 200L << (attempt > 5 ? 5 : attempt);
	if (ms > 5000)
		ms = 5000;
	pthread_mutex_lock(&c->lock);
	unsigned r = (unsigned)rand_r(&c->rand_state);
	pthread_mutex_unlock(&c->lock);
	/* jitter: 50% .. 150% */
	ms = ms / 2 + (long)(r % (unsigned)(ms + 1));
	/* In steps, so that reg_client_cancel is not kept waiting. */
	while (ms > 0 && !__atomic_load_n(&c->cancelled, __ATOMIC_RELAXED)) {
		long step = ms < 100 ? ms : 100;
		struct timespec ts = {0, step * 1000000L};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		ms -= step;
	}
}
