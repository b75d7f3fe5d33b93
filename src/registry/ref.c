// SPDX-License-Identifier: Apache-2.0
/* Image references by the docker reference grammar (distribution/reference):
 * [domain[:port]/]path[:tag][@sha256:hex], normalised the way docker does it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"

#define REF_NAME_MAX 255
#define REF_TAG_MAX 128
#define DEFAULT_DOMAIN "docker.io"

static int bad(struct rs_error *err, const char *s, const char *fmt, const char *arg)
{
	char why[512];
	snprintf(why, sizeof(why), fmt, arg ? arg : "");
	return rs_err(err, -EINVAL, "invalid reference '%s': %s", s, why);
}

static bool is_alnum_lower(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

/* [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)* */
static bool path_component_ok(const char *p, size_t n)
{
	size_t i = 0;
	if (n == 0 || !is_alnum_lower(p[0]))
		return false;
	while (i < n) {
		while (i < n && is_alnum_lower(p[i]))
			i++;
		if (i == n)
			return true;
		size_t sep = i;
		if (p[i] == '.') {
			i++;
		} else if (p[i] == '_') {
			i++;
			if (i < n && p[i] == '_')
				i++;
		} else if (p[i] == '-') {
			while (i < n && p[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i == n || !is_alnum_lower(p[i]) || i == sep)
			return false;
	}
	return true;
}

/* [a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])? */
static bool domain_label_ok(const char *p, size_t n)
{
	if (n == 0 || !isalnum((unsigned char)p[0]) || !isalnum((unsigned char)p[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '-')
			return false;
	return true;
}

static bool ipv6_ok(const char *p, size_t n)
{
	if (n < 2)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.')
			return false;
	return memchr(p, ':', n) != NULL;
}

/* host[:port], host a dotted name or "[ipv6]"; returns a reason or NULL. */
static const char *domain_check(const char *d, size_t n)
{
	size_t host_end = n;
	if (n > 0 && d[0] == '[') {
		const char *close = memchr(d, ']', n);
		if (!close)
			return "unterminated '[' in IPv6 host";
		if (!ipv6_ok(d + 1, (size_t)(close - d) - 1))
			return "invalid IPv6 address in host";
		host_end = (size_t)(close - d) + 1;
		if (host_end < n && d[host_end] != ':')
			return "unexpected characters after IPv6 host";
	} else {
		const char *colon = memchr(d, ':', n);
		if (colon)
			host_end = (size_t)(colon - d);
		size_t start = 0;
		for (size_t i = 0; i <= host_end; i++) {
			if (i == host_end || d[i] == '.') {
				if (!domain_label_ok(d + start, i - start))
					return "invalid registry host name";
				start = i + 1;
			}
		}
	}
	if (host_end < n) {
		size_t plen = n - host_end - 1;
		if (plen == 0 || plen > 5)
			return "invalid port";
		for (size_t i = host_end + 1; i < n; i++)
			if (!isdigit((unsigned char)d[i]))
				return "invalid port";
	}
	return NULL;
}

static bool tag_ok(const char *t, size_t n)
{
	if (n == 0 || n > REF_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = t[i];
		bool w = isalnum((unsigned char)ch) || ch == '_';
		if (!w && (i == 0 || (ch != '.' && ch != '-')))
			return false;
	}
	return true;
}

static int digest_check(const char *s, const char *dg, struct rs_error *err)
{
	const char *colon = strchr(dg, ':');
	if (!colon || colon == dg)
		return bad(err, s, "digest '%s' is not ALGORITHM:HEX", dg);
	if ((size_t)(colon - dg) != 6 || strncmp(dg, "sha256", 6) != 0) {
		char alg[64];
		snprintf(alg, sizeof(alg), "%.*s", (int)(colon - dg), dg);
		return bad(err, s, "unsupported digest algorithm '%s' (only sha256)", alg);
	}
	const char *hex = colon + 1;
	size_t n = strlen(hex);
	bool hex_ok = n == 64;
	for (size_t i = 0; hex_ok && i < n; i++)
		hex_ok = (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f');
	if (!hex_ok)
		return bad(err, s, "digest '%s' is not sha256 with 64 lowercase hex digits", dg);
	return 0;
}

static bool all_hex64(const char *p, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

static int path_check(const char *s, const char *path, size_t n, struct rs_error *err)
{
	if (n == 0)
		return bad(err, s, "empty repository name%s", NULL);
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && path[i] != '/')
			continue;
		const char *c = path + start;
		size_t cl = i - start;
		if (cl == 0)
			return bad(err, s, "empty path component in repository name%s", NULL);
		if (!path_component_ok(c, cl)) {
			for (size_t k = 0; k < cl; k++)
				if (isupper((unsigned char)c[k]))
					return bad(err, s, "repository name must be lowercase%s",
						   NULL);
			char comp[128];
			snprintf(comp, sizeof(comp), "%.*s", (int)(cl > 100 ? 100 : cl), c);
			return bad(err, s,
				   "invalid path component '%s' (lowercase letters, digits and "
				   "single separators . _ __ - only)",
				   comp);
		}
		start = i + 1;
	}
	return 0;
}

int reg_ref_parse(const char *s, struct reg_ref *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return rs_err(err, -EINVAL, "invalid reference '': empty reference");
	for (const char *q = s; *q; q++)
		if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
			return bad(err, s, "contains a space or control character%s", NULL);

	cleanup_free char *work = strdup(s);
	if (!work)
		return rs_err(err, -ENOMEM, "out of memory");

	char *digest = NULL;
	char *at = strchr(work, '@');
	if (at) {
		*at = '\0';
		digest = at + 1;
		if (strchr(digest, '@'))
			return bad(err, s, "more than one '@'%s", NULL);
		int r = digest_check(s, digest, err);
		if (r < 0)
			return r;
	}

	char *tag = NULL;
	char *last_slash = strrchr(work, '/');
	char *colon = strrchr(last_slash ? last_slash : work, ':');
	if (colon) {
		*colon = '\0';
		tag = colon + 1;
		if (!tag_ok(tag, strlen(tag))) {
			if (strlen(tag) > REF_TAG_MAX)
				return bad(err, s, "tag longer than 128 characters%s", NULL);
			return bad(err, s,
				   "invalid tag '%s' (letters, digits, '_', '.', '-'; not starting "
				   "with '.' or '-')",
				   tag);
		}
	}

	const char *name = work;
	if (!*name)
		return bad(err, s, "empty repository name%s", NULL);
	if (!last_slash && !digest && !tag && all_hex64(name, strlen(name)))
		return bad(err, s, "a 64-hex-digit string is an image ID, not a repository name%s",
			   NULL);

	/* A first component is a domain if it looks like one. */
	const char *domain = DEFAULT_DOMAIN;
	size_t domain_len = strlen(DEFAULT_DOMAIN);
	const char *path = name;
	const char *slash = strchr(name, '/');
	if (slash) {
		size_t fl = (size_t)(slash - name);
		bool upper = false;
		for (size_t i = 0; i < fl; i++)
			upper |= isupper((unsigned char)name[i]) != 0;
		if (memchr(name, '.', fl) || memchr(name, ':', fl) || memchr(name, '[', fl) ||
		    (fl == 9 && strncmp(name, "localhost", 9) == 0) || upper) {
			domain = name;
			domain_len = fl;
			path = slash + 1;
			const char *why = domain_check(domain, domain_len);
			if (why)
				return bad(err, s, "%s", why);
		}
	} else if (strchr(name, ':') || strchr(name, '[')) {
		return bad(err, s, "repository name missing after host%s", NULL);
	}
	if (domain_len == 15 && strncmp(domain, "index.docker.io", 15) == 0) {
		domain = DEFAULT_DOMAIN;
		domain_len = strlen(DEFAULT_DOMAIN);
	}

	int r = path_check(s, path, strlen(path), err);
	if (r < 0)
		return r;

	bool library =
	    domain_len == 9 && strncmp(domain, DEFAULT_DOMAIN, 9) == 0 && !strchr(path, '/');
	size_t total = domain_len + 1 + (library ? 8 : 0) + strlen(path);
	if (total > REF_NAME_MAX)
		return bad(err, s, "repository name longer than 255 characters%s", NULL);

	out->domain = strndup(domain, domain_len);
	if (library) {
		out->path = malloc(strlen(path) + 9);
		if (out->path)
			sprintf(out->path, "library/%s", path);
	} else {
		out->path = strdup(path);
	}
	if (!tag && !digest)
		tag = "latest";
	out->tag = tag ? strdup(tag) : NULL;
	out->digest = digest ? strdup(digest) : NULL;
	if (!out->domain || !out->path || (tag && !out->tag) || (digest && !out->digest)) {
		reg_ref_free(out);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

void reg_ref_free(struct reg_ref *r)
{
	if (!r)
		return;
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

char *reg_ref_string(const struct reg_ref *r)
{
	struct rs_buf b = {0};
	if (rs_buf_printf(&b, "%s/%s", r->domain, r->path) < 0 ||
	    (r->tag && rs_buf_printf(&b, ":%s", r->tag) < 0) ||
	    (r->digest && rs_buf_printf(&b, "@%s", r->digest) < 0)) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

const char *reg_ref_reference(const struct reg_ref *r)
{
	return r->tag ? r->tag : r->digest;
}
