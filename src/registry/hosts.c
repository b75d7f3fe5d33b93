// SPDX-License-Identifier: Apache-2.0
/* containerd's certs.d layout: which endpoints serve a registry namespace and
 * with what TLS settings (docs/hosts.md in containerd). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "transport.h"

#define HOSTS_DIR_DEFAULT "/etc/containerd/certs.d"
#define HOSTS_FILE_MAX (1 << 20)
#define CA_FILE_MAX (4 << 20)

static const char *const system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
};

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void reg_host_free(struct reg_host *h)
{
	free(h->url);
	free(h->scheme);
	free(h->host);
	free(h->path);
	free_strv(h->ca, h->n_ca);
	for (size_t i = 0; i < h->n_clients; i++) {
		free(h->clients[i].cert);
		free(h->clients[i].key);
	}
	free(h->clients);
	free_strv(h->headers, h->n_headers);
	rs_buf_free(&h->ca_blob);
	memset(h, 0, sizeof(*h));
}

void reg_hosts_free(struct reg_hosts *hs)
{
	for (size_t i = 0; i < hs->n; i++)
		reg_host_free(&hs->v[i]);
	free(hs->v);
	free(hs->domain);
	memset(hs, 0, sizeof(*hs));
}

/* Reads a whole small file; -EFBIG past max. */
static int read_file(const char *path, size_t max, struct rs_buf *out)
{
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (rs_buf_reserve(out, 65536) < 0)
			return -ENOMEM;
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		out->len += (size_t)n;
		if (out->len > max)
			return -EFBIG;
	}
	return 0;
}

static char *abs_path(const char *dir, const char *p)
{
	if (p[0] == '/')
		return strdup(p);
	size_t n = strlen(dir) + strlen(p) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s/%s", dir, p);
	return s;
}

static int make_abs(char **p, const char *dir)
{
	if (!*p)
		return 0;
	char *a = abs_path(dir, *p);
	if (!a)
		return -ENOMEM;
	free(*p);
	*p = a;
	return 0;
}

/* "https://host[:port][/path]" (scheme optional) into scheme, host, API path. */
static int split_url(struct reg_host *h, const char *file, struct rs_error *err)
{
	const char *u = h->url;
	const char *sep = strstr(u, "://");
	const char *rest = u;
	if (sep) {
		h->scheme = strndup(u, (size_t)(sep - u));
		rest = sep + 3;
	} else {
		h->scheme = strdup("https");
	}
	if (!h->scheme)
		return rs_err(err, -ENOMEM, "out of memory");
	if (strcmp(h->scheme, "https") != 0 && strcmp(h->scheme, "http") != 0)
		return rs_err(err, -EINVAL, "%s: host \"%s\": scheme must be http or https", file,
			      u);
	size_t hl = strcspn(rest, "/?#");
	if (hl == 0)
		return rs_err(err, -EINVAL, "%s: host \"%s\" names no host", file, u);
	h->host = strndup(rest, hl);
	struct rs_buf path = {0};
	const char *p = rest + hl;
	/* Clean: collapse slashes, drop a trailing one. */
	while (*p && *p != '?' && *p != '#') {
		while (*p == '/')
			p++;
		size_t cl = strcspn(p, "/?#");
		if (cl && rs_buf_printf(&path, "/%.*s", (int)cl, p) < 0)
			goto oom;
		p += cl;
	}
	bool v2 = path.len >= 3 && memcmp(path.data + path.len - 3, "/v2", 3) == 0;
	if (!h->override_path && !v2 && rs_buf_printf(&path, "/v2") < 0)
		goto oom;
	if (rs_buf_append(&path, "", 1) < 0)
		goto oom;
	h->path = (char *)path.data;
	if (!h->host)
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
oom:
	rs_buf_free(&path);
	return rs_err(err, -ENOMEM, "out of memory");
}

/* System CAs plus the host's own, as one PEM blob for CURLOPT_CAINFO_BLOB. */
static int build_ca_blob(struct reg_host *h, const char *domain, struct rs_error *err)
{
	if (h->n_ca == 0)
		return 0;
	for (size_t i = 0; i < sizeof(system_bundles) / sizeof(system_bundles[0]); i++) {
		if (read_file(system_bundles[i], 16 << 20, &h->ca_blob) == 0)
			break;
		rs_buf_reset(&h->ca_blob);
	}
	for (size_t i = 0; i < h->n_ca; i++) {
		struct rs_buf pem = {0};
		int r = read_file(h->ca[i], CA_FILE_MAX, &pem);
		if (r < 0) {
			rs_buf_free(&pem);
			return rs_err(err, r, "TLS settings for %s: cannot read CA file %s: %s",
				      domain, h->ca[i], strerror(-r));
		}
		bool is_pem = pem.len > 0 &&
			      memmem(pem.data, pem.len, "-----BEGIN CERTIFICATE-----", 27) != NULL;
		if (!is_pem) {
			rs_buf_free(&pem);
			return rs_err(err, -EINVAL,
				      "TLS settings for %s: CA file %s holds no PEM certificate",
				      domain, h->ca[i]);
		}
		r = rs_buf_append(&h->ca_blob, "\n", 1);
		if (r == 0)
			r = rs_buf_append(&h->ca_blob, pem.data, pem.len);
		rs_buf_free(&pem);
		if (r < 0)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static bool is_docker_hub(const char *domain)
{
	return strcmp(domain, "docker.io") == 0;
}

/* Fills scheme/host/path of the server entry when the file named none. */
static int default_server(struct reg_host *h, const char *domain, bool plain_http)
{
	if (is_docker_hub(domain)) {
		h->scheme = strdup("https");
		h->host = strdup("registry-1.docker.io");
	} else {
		h->scheme = strdup(plain_http ? "http" : "https");
		h->host = strdup(domain);
	}
	h->path = strdup("/v2");
	return h->scheme && h->host && h->path ? 0 : -ENOMEM;
}

static bool same_endpoint(const struct reg_host *a, const struct reg_host *b)
{
	return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 &&
	       strcmp(a->path, b->path) == 0;
}

static int finish(struct reg_hosts *hs, const char *file, const char *dir, const char *domain,
		  bool plain_http, struct rs_error *err)
{
	for (size_t i = 0; i < hs->n; i++) {
		struct reg_host *h = &hs->v[i];
		int r;
		if (h->url) {
			r = split_url(h, file, err);
		} else {
			r = default_server(h, domain, plain_http);
			if (r < 0)
				rs_err(err, r, "out of memory");
		}
		if (r < 0)
			return r;
		/* The server (last) adds nothing when a [host] table names the
		 * same endpoint with its own settings: drop it. */
		bool listed = false;
		for (size_t k = 0; i + 1 == hs->n && k < i && !listed; k++)
			listed = same_endpoint(&hs->v[k], h);
		if (listed && !h->n_ca && !h->n_clients && h->skip_verify < 0 && !h->n_headers) {
			reg_host_free(h);
			hs->n--;
			break;
		}
		for (size_t k = 0; k < h->n_ca; k++)
			if (make_abs(&h->ca[k], dir) < 0)
				return rs_err(err, -ENOMEM, "out of memory");
		for (size_t k = 0; k < h->n_clients; k++)
			if (make_abs(&h->clients[k].cert, dir) < 0 ||
			    make_abs(&h->clients[k].key, dir) < 0)
				return rs_err(err, -ENOMEM, "out of memory");
		h->mirror =
		    strcmp(h->host, domain) != 0 &&
		    !(is_docker_hub(domain) && strcmp(h->host, "registry-1.docker.io") == 0);
		r = build_ca_blob(h, domain, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_str(char ***v, size_t *n, char *s)
{
	if (!s)
		return -ENOMEM;
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n > m && strcmp(s + n - m, suf) == 0;
}

/* Docker's layout: *.crt are CAs, *.cert (+ same-named *.key) client pairs. */
static int load_cert_files(const char *dir, struct reg_host *h)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (has_suffix(e->d_name, ".crt")) {
			r = add_str(&h->ca, &h->n_ca, abs_path(dir, e->d_name));
		} else if (has_suffix(e->d_name, ".cert")) {
			struct reg_client_cert *nc =
			    realloc(h->clients, (h->n_clients + 1) * sizeof(*nc));
			if (!nc) {
				r = -ENOMEM;
				break;
			}
			h->clients = nc;
			struct reg_client_cert *cc = &h->clients[h->n_clients++];
			cc->cert = abs_path(dir, e->d_name);
			cc->key = NULL;
			char key[4096];
			snprintf(key, sizeof(key), "%s/%.*s.key", dir, (int)(strlen(e->d_name) - 5),
				 e->d_name);
			if (access(key, R_OK) == 0)
				cc->key = strdup(key);
			if (!cc->cert)
				r = -ENOMEM;
		}
	}
	closedir(d);
	return r;
}

/* The first of <dir>/<host>_<port>_, <dir>/<host:port>, <dir>/_default that exists. */
static char *find_host_dir(const char *root, const char *domain)
{
	char cand[3][4096];
	int n = 0;
	const char *colon = strrchr(domain, ':');
	if (colon && colon > domain && !strchr(colon, ']'))
		snprintf(cand[n++], sizeof(cand[0]), "%s/%.*s_%s_", root, (int)(colon - domain),
			 domain, colon + 1);
	snprintf(cand[n++], sizeof(cand[0]), "%s/%s", root, domain);
	snprintf(cand[n++], sizeof(cand[0]), "%s/_default", root);
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (stat(cand[i], &st) == 0 && S_ISDIR(st.st_mode))
			return strdup(cand[i]);
	}
	return NULL;
}

int reg_hosts_load(const char *hosts_dir, const char *domain, bool plain_http,
		   struct reg_hosts *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	const char *root = hosts_dir ? hosts_dir : HOSTS_DIR_DEFAULT;
	cleanup_free char *dir = strchr(domain, '/') ? NULL : find_host_dir(root, domain);
	char file[4200] = "";
	struct rs_buf text = {0};
	int r = -ENOENT;
	if (dir) {
		snprintf(file, sizeof(file), "%s/hosts.toml", dir);
		r = read_file(file, HOSTS_FILE_MAX, &text);
		if (r < 0 && r != -ENOENT) {
			rs_buf_free(&text);
			return rs_err(err, r, "%s: %s", file, strerror(-r));
		}
	}
	if (r == 0 && text.len > 0) {
		r = reg_hosts_toml_parse(file, (const char *)text.data, text.len, &out->v, &out->n,
					 err);
		rs_buf_free(&text);
		if (r < 0)
			return r;
	} else {
		rs_buf_free(&text);
		out->v = calloc(1, sizeof(*out->v));
		if (!out->v)
			return rs_err(err, -ENOMEM, "out of memory");
		out->n = 1;
		out->v[0].skip_verify = -1;
		out->v[0].caps = REG_CAP_PULL | REG_CAP_RESOLVE | REG_CAP_PUSH;
		if (dir && (r = load_cert_files(dir, &out->v[0])) < 0) {
			reg_hosts_free(out);
			return rs_err(err, r, "%s: %s", dir, strerror(-r));
		}
		snprintf(file, sizeof(file), "%s", dir ? dir : root);
	}
	out->domain = strdup(domain);
	if (!out->domain) {
		reg_hosts_free(out);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	r = finish(out, file, dir ? dir : root, domain, plain_http, err);
	if (r < 0)
		reg_hosts_free(out);
	return r;
}
