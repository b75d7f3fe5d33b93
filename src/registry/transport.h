/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/registry: the pieces under reg_http_do (hosts.toml, docker
 * credentials, WWW-Authenticate, the client's shared state), apart so tests
 * reach them without a server. */
#ifndef REG_TRANSPORT_H
#define REG_TRANSPORT_H

#include <pthread.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "registry_internal.h"

/* ---- hosts (hosts.c, hosts_toml.cpp) ------------------------------------ */

enum { REG_CAP_PULL = 1, REG_CAP_RESOLVE = 2, REG_CAP_PUSH = 4 };

struct reg_client_cert {
	char *cert;
	char *key; /* NULL: the key is in cert */
};

/* One endpoint to try for a registry namespace: a mirror or the server. */
struct reg_host {
	char *url; /* as written in hosts.toml (NULL for a default server) */
	bool override_path;
	char *scheme;  /* "https" or "http" */
	char *host;    /* "mirror.example:5000" */
	char *path;    /* API root, "/v2" unless override_path; no trailing '/' */
	unsigned caps; /* REG_CAP_* */
	char **ca;     /* CA files, absolute */
	size_t n_ca;
	struct reg_client_cert *clients; /* curl uses the first */
	size_t n_clients;
	int skip_verify; /* -1: not set */
	char **headers;  /* "Name: value" */
	size_t n_headers;
	long dial_timeout_ms;  /* 0: default */
	bool mirror;           /* not the reference's own namespace: requests carry ?ns= */
	struct rs_buf ca_blob; /* system CAs + ca, built at load when ca is set */
};

struct reg_hosts {
	char *domain;       /* the namespace these are for */
	struct reg_host *v; /* in order of trial; the server last */
	size_t n;
};

/* Hosts for a reference domain from hosts_dir (NULL: /etc/containerd/certs.d):
 * <dir>/<host>_<port>_, <dir>/<host:port>, <dir>/_default, in that order;
 * hosts.toml there, else legacy *.crt / *.cert + *.key files. */
int reg_hosts_load(const char *hosts_dir, const char *domain, bool plain_http,
		   struct reg_hosts *out, struct rs_error *err);
void reg_hosts_free(struct reg_hosts *h);
void reg_host_free(struct reg_host *h);

/* The C++ shim over toml++: the [host."..."] tables in file order, then the
 * root table as the server (url NULL when the file names none); raw values,
 * no path resolution. Errors name file and line. */
int reg_hosts_toml_parse(const char *file, const char *text, size_t len, struct reg_host **hosts,
			 size_t *n, struct rs_error *err);

/* ---- origins (origin.c) --------------------------------------------------- */

/* Credentials belong to one origin: the host that challenged for them. */
struct reg_origin {
	char scheme[8]; /* "https", "http" */
	char host[256]; /* as curl parses it: "127.0.0.1", "[::1]", "example.com" */
	long port;      /* the scheme's default when the URL names none */
};

/* -EINVAL for anything that is not an absolute http(s) URL with a host. */
int reg_origin_parse(const char *url, struct reg_origin *o);
/* The origin of h's scheme://host. */
int reg_host_origin(const struct reg_host *h, struct reg_origin *o);
bool reg_origin_equal(const struct reg_origin *a, const struct reg_origin *b);
/* Same host name, whatever the scheme and port. */
bool reg_origin_same_host(const struct reg_origin *a, const struct reg_origin *b);

/* ---- credentials (creds.c) ---------------------------------------------- */

struct reg_creds {
	char *user;
	char *secret;
	char *identity_token; /* a refresh token for the token server */
};

/* Credentials for a registry host (a reference domain such as "docker.io" or
 * "host:5000") from a docker config.json (NULL: $DOCKER_CONFIG/config.json,
 * else ~/.docker/config.json). No credentials is not an error: out stays
 * empty. Errors never quote a secret. */
int reg_creds_load(const char *config_path, const char *host, struct reg_creds *out,
		   struct rs_error *err);
/* Credentials for host as the client finds them: each of its auth files,
 * then its docker config. */
int reg_creds_find(const struct reg_client *c, const char *host, struct reg_creds *out,
		   struct rs_error *err);
/* Runs docker-credential-<helper> get for server_url (found on PATH). */
int reg_creds_helper(const char *helper, const char *server_url, struct reg_creds *out,
		     struct rs_error *err);
void reg_creds_free(struct reg_creds *c);

/* ---- WWW-Authenticate (challenge.c) ------------------------------------------- */

enum reg_auth_scheme { REG_AUTH_NONE, REG_AUTH_BASIC, REG_AUTH_BEARER };

struct reg_challenge {
	enum reg_auth_scheme scheme;
	char *realm;
	char *service;
	char *scope;
	char *error; /* error="insufficient_scope" etc. */
};

/* Parses a WWW-Authenticate value; picks Bearer over Basic when the header
 * offers several challenges. -EINVAL when no known scheme is there. */
int reg_challenge_parse(const char *value, struct reg_challenge *out);
void reg_challenge_free(struct reg_challenge *ch);
/* ours plus the scopes of theirs (space-separated) that ours does not
 * already grant; caller frees. */
char *reg_auth_merge_scope(const char *ours, const char *theirs);

/* ---- client state (client.c) --------------------------------------------- */

struct reg_token {
	struct reg_token *next;
	char *host;
	char *scope;
	char *value;    /* "Bearer ..." or "Basic ..." header value */
	time_t expires; /* 0: never (basic) */
};

/* What a host asked for last time, so later requests authenticate upfront. */
struct reg_host_auth {
	struct reg_host_auth *next;
	char *host;
	struct reg_challenge ch;
};

struct reg_url_cache {
	struct reg_url_cache *next;
	char *url;
	char *final_url;
	time_t expires;
};

struct reg_hosts_cache {
	struct reg_hosts_cache *next;
	struct reg_hosts hosts;
};

#define REG_POOL_MAX 8

struct reg_client {
	/* immutable after reg_client_new */
	char *hosts_dir;
	char *docker_config;
	char **auth_files;
	size_t n_auth_files;
	char *user_agent;
	bool plain_http;
	long timeout_ms;
	int retries;
	void *share;   /* CURLSH: DNS cache and TLS sessions */
	int cancelled; /* reg_client_cancel: every transfer aborts (__atomic access) */
	pthread_mutex_t share_locks[8];

	/* lock guards everything below */
	pthread_mutex_t lock;
	void *pool[REG_POOL_MAX]; /* idle CURL easy handles */
	size_t n_pool;
	struct reg_token *tokens;
	struct reg_host_auth *host_auth;
	struct reg_token *inflight; /* token fetches under way (value NULL) */
	pthread_cond_t auth_cond;   /* signalled when one of them ends */
	struct reg_url_cache *urls;
	struct reg_hosts_cache *hosts;
	unsigned rand_state;
};

/* The hosts for domain, loaded once per client (owned by the client). */
int reg_client_hosts(struct reg_client *c, const char *domain, const struct reg_hosts **out,
		     struct rs_error *err);
void *reg_client_easy_get(struct reg_client *c);
void reg_client_easy_put(struct reg_client *c, void *easy);

/* ---- auth state (auth.c) -------------------------------------------------- */

/* The Authorization header value to send to host for scope, if known; caller
 * frees. NULL when none is cached. */
char *reg_auth_cached(struct reg_client *c, const char *host, const char *scope);
/* Answers a 401 challenge from host: fetches a bearer token (or builds basic
 * credentials) for scope and caches it. -EACCES "authentication failed for
 * HOST: ..." when the token server refuses. */
int reg_auth_answer(struct reg_client *c, const struct reg_host *h, const char *domain,
		    const char *www_authenticate, const char *scope, struct rs_error *err);
/* Drops a cached header for (host, scope) after the registry refused it. */
void reg_auth_forget(struct reg_client *c, const char *host, const char *scope);
/* Whether host answered with a challenge before (authenticate upfront). */
int reg_auth_prepare(struct reg_client *c, const struct reg_host *h, const char *domain,
		     const char *scope, struct rs_error *err);
void reg_auth_state_free(struct reg_client *c);

/* A plain exchange outside the registry API (token servers), with h's TLS
 * settings; body bounded by max_body. */
struct reg_simple_req {
	const char *method; /* "GET" or "POST" */
	const char *url;
	const char *authorization; /* a whole header value, or NULL */
	const char *form;          /* POST body, x-www-form-urlencoded, or NULL */
	int64_t max_body;
};
int reg_http_simple(struct reg_client *c, const struct reg_host *h, const struct reg_simple_req *r,
		    long *status, struct rs_buf *body, struct rs_error *err);

/* The registry's own message from an error reply ({"errors":[...]}), or
 * NULL; caller frees. */
char *reg_error_message(const void *body, size_t len);

/* Sleeps for attempt's backoff: 200 ms * 2^attempt, at most 5 s, jittered. */
void reg_backoff(struct reg_client *c, int attempt);

#ifdef __cplusplus
}
#endif

#endif
