// SPDX-License-Identifier: Apache-2.0
/* WWW-Authenticate challenges (RFC 7235 auth-params, quoted strings with
 * escapes, several challenges in one header) and token scope lists. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "transport.h"

void reg_challenge_free(struct reg_challenge *ch)
{
	free(ch->realm);
	free(ch->service);
	free(ch->scope);
	free(ch->error);
	memset(ch, 0, sizeof(*ch));
}

static bool is_tchar(char ch)
{
	return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~/", ch));
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A quoted-string (backslash escapes) or a token; *out malloc'ed. */
static const char *read_value(const char *p, char **out)
{
	struct rs_buf b = {0};
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			rs_buf_append(&b, p, 1);
			p++;
		}
		if (*p == '"')
			p++;
	} else {
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			rs_buf_append(&b, p++, 1);
	}
	rs_buf_append(&b, "", 1);
	*out = (char *)b.data;
	return p;
}

int reg_challenge_parse(const char *value, struct reg_challenge *out)
{
	memset(out, 0, sizeof(*out));
	struct reg_challenge cur = {0};
	const char *p = value;
	while (*p) {
		p = skip_ws(p);
		while (*p == ',' || *p == ' ')
			p++;
		if (!*p)
			break;
		const char *s = p;
		while (is_tchar(*p))
			p++;
		if (p == s)
			break;
		size_t sl = (size_t)(p - s);
		enum reg_auth_scheme scheme = REG_AUTH_NONE;
		if (sl == 6 && strncasecmp(s, "bearer", 6) == 0)
			scheme = REG_AUTH_BEARER;
		else if (sl == 5 && strncasecmp(s, "basic", 5) == 0)
			scheme = REG_AUTH_BASIC;
		memset(&cur, 0, sizeof(cur));
		cur.scheme = scheme;
		/* auth-params until the next scheme */
		for (;;) {
			p = skip_ws(p);
			const char *ks = p;
			while (is_tchar(*p) && *p != '=')
				p++;
			const char *ke = p;
			const char *eq = skip_ws(p);
			if (ke == ks || *eq != '=') {
				p = ks;
				break;
			}
			p = skip_ws(eq + 1);
			char *v = NULL;
			p = read_value(p, &v);
			size_t kl = (size_t)(ke - ks);
			char **slot = NULL;
			if (kl == 5 && strncasecmp(ks, "realm", 5) == 0)
				slot = &cur.realm;
			else if (kl == 7 && strncasecmp(ks, "service", 7) == 0)
				slot = &cur.service;
			else if (kl == 5 && strncasecmp(ks, "scope", 5) == 0)
				slot = &cur.scope;
			else if (kl == 5 && strncasecmp(ks, "error", 5) == 0)
				slot = &cur.error;
			if (slot && !*slot)
				*slot = v;
			else
				free(v);
			p = skip_ws(p);
			if (*p == ',')
				p++;
			else
				break;
		}
		bool better = scheme != REG_AUTH_NONE &&
			      (out->scheme == REG_AUTH_NONE ||
			       (scheme == REG_AUTH_BEARER && out->scheme == REG_AUTH_BASIC));
		if (better) {
			reg_challenge_free(out);
			*out = cur;
		} else {
			reg_challenge_free(&cur);
		}
	}
	if (out->scheme == REG_AUTH_BEARER && (!out->realm || !*out->realm)) {
		reg_challenge_free(out);
		return -EINVAL;
	}
	return out->scheme == REG_AUTH_NONE ? -EINVAL : 0;
}

/* Whether scope list `have` (space-separated type:name:actions) already
 * grants one scope `want` of length n. */
static bool scope_covered(const char *have, const char *want, size_t n)
{
	const char *wc = NULL;
	for (size_t i = 0; i < n; i++)
		if (want[i] == ':')
			wc = want + i;
	if (!wc)
		return false;
	size_t res_len = (size_t)(wc - want); /* "repository:name" */
	for (const char *q = have; *q;) {
		size_t m = strcspn(q, " ");
		if (m > res_len && strncmp(q, want, res_len) == 0 && q[res_len] == ':') {
			const char *acts = q + res_len + 1;
			size_t al = m - res_len - 1;
			bool all = true;
			for (const char *a = wc + 1; a < want + n && all;) {
				size_t k = 0;
				while (a + k < want + n && a[k] != ',')
					k++;
				bool found = false;
				for (const char *b = acts; b < acts + al && !found;) {
					size_t j = 0;
					while (b + j < acts + al && b[j] != ',')
						j++;
					found = j == k && strncmp(a, b, k) == 0;
					b += j + 1;
				}
				all = found;
				a += k + 1;
			}
			if (all)
				return true;
		}
		q += m;
		while (*q == ' ')
			q++;
	}
	return false;
}

/* Our scope plus whatever else the registry asked for. */
char *reg_auth_merge_scope(const char *ours, const char *theirs)
{
	struct rs_buf b = {0};
	if (rs_buf_printf(&b, "%s", ours) < 0)
		return NULL;
	const char *p = theirs ? theirs : "";
	while (*p) {
		size_t n = strcspn(p, " ");
		if (n && !scope_covered((char *)b.data, p, n) &&
		    rs_buf_printf(&b, " %.*s", (int)n, p) < 0) {
			rs_buf_free(&b);
			return NULL;
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	return (char *)b.data;
}
