// SPDX-License-Identifier: Apache-2.0
/* Parsing range replies: Content-Range values and multipart/byteranges
 * bodies (RFC 9110 14.6), from untrusted servers. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "ops_internal.h"

#define PART_HEADERS_MAX 8192
#define BOUNDARY_MAX 200

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A non-negative decimal; advances *s. */
static int parse_num(const char **s, int64_t *out)
{
	const char *p = *s;
	int64_t v = 0;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (rs_mul_overflow(v, 10, &v) || rs_add_overflow(v, *p - '0', &v))
			return -ERANGE;
	}
	*s = p;
	*out = v;
	return 0;
}

int reg_content_range_parse(const char *s, int64_t *first, int64_t *last, int64_t *total)
{
	if (!s)
		return -EINVAL;
	s = skip_ws(s);
	if (strncasecmp(s, "bytes", 5) != 0)
		return -EINVAL;
	s = skip_ws(s + 5);
	if (parse_num(&s, first) < 0 || *s++ != '-' || parse_num(&s, last) < 0 || *s++ != '/')
		return -EINVAL;
	if (*s == '*') {
		*total = -1;
		s++;
	} else if (parse_num(&s, total) < 0) {
		return -EINVAL;
	}
	s = skip_ws(s);
	if (*s && *s != '\r' && *s != '\n')
		return -EINVAL;
	if (*last < *first || (*total >= 0 && *last >= *total))
		return -EINVAL;
	return 0;
}

int reg_multipart_boundary(const char *ct, char *out, size_t out_size)
{
	if (!ct)
		return -EINVAL;
	ct = skip_ws(ct);
	if (strncasecmp(ct, "multipart/byteranges", 20) != 0)
		return -EINVAL;
	const char *p = ct + 20;
	while ((p = strchr(p, ';'))) {
		p = skip_ws(p + 1);
		if (strncasecmp(p, "boundary", 8) != 0)
			continue;
		const char *v = skip_ws(p + 8);
		if (*v != '=')
			continue;
		v = skip_ws(v + 1);
		size_t n;
		if (*v == '"') {
			v++;
			const char *e = strchr(v, '"');
			if (!e)
				return -EINVAL;
			n = (size_t)(e - v);
		} else {
			n = strcspn(v, "; \t\r\n");
		}
		if (n == 0 || n > BOUNDARY_MAX || n >= out_size)
			return -EINVAL;
		memcpy(out, v, n);
		out[n] = '\0';
		return 0;
	}
	return -EINVAL;
}

/* Finds needle in [p, end); NULL if absent. */
static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *needle, size_t nl)
{
	while (p && (size_t)(end - p) >= nl) {
		p = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
		if (!p)
			return NULL;
		if (memcmp(p, needle, nl) == 0)
			return p;
		p++;
	}
	return NULL;
}

/* Skips a line break (CRLF or LF) at *p; false if there is none. */
static bool eol(const uint8_t **p, const uint8_t *end)
{
	if (*p < end && **p == '\r')
		(*p)++;
	if (*p < end && **p == '\n') {
		(*p)++;
		return true;
	}
	return false;
}

/* Reads a part's header block up to its blank line; fills first/last from
 * Content-Range. */
static int part_headers(const uint8_t **pp, const uint8_t *end, struct reg_part *part,
			struct rs_error *err)
{
	const uint8_t *p = *pp;
	bool have_range = false;
	for (;;) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return rs_err(err, -EBADMSG,
				      "multipart reply truncated in a part's headers");
		if (nl - *pp > PART_HEADERS_MAX)
			return rs_err(err, -EBADMSG, "multipart part headers too long");
		size_t ll = (size_t)(nl - p);
		if (ll && p[ll - 1] == '\r')
			ll--;
		if (ll == 0) {
			p = nl + 1;
			break;
		}
		if (ll > 14 && strncasecmp((const char *)p, "Content-Range:", 14) == 0) {
			char v[128];
			size_t vl = ll - 14 < sizeof(v) - 1 ? ll - 14 : sizeof(v) - 1;
			memcpy(v, p + 14, vl);
			v[vl] = '\0';
			int64_t total;
			if (reg_content_range_parse(v, &part->first, &part->last, &total) < 0)
				return rs_err(err, -EBADMSG,
					      "multipart part: bad Content-Range '%s'", v);
			have_range = true;
		}
		p = nl + 1;
	}
	if (!have_range)
		return rs_err(err, -EBADMSG, "multipart part without Content-Range");
	*pp = p;
	return 0;
}

int reg_multipart_parse(const char *content_type, const void *body, size_t len,
			struct reg_part **parts, size_t *n, struct rs_error *err)
{
	char b[BOUNDARY_MAX + 3];
	*parts = NULL;
	*n = 0;
	b[0] = b[1] = '-';
	if (reg_multipart_boundary(content_type, b + 2, sizeof(b) - 2) < 0)
		return rs_err(err, -EBADMSG,
			      "no multipart/byteranges boundary in Content-Type '%.100s'",
			      content_type ? content_type : "");
	size_t bl = strlen(b);
	const uint8_t *p = body, *end = p + len;
	/* The first delimiter may follow a preamble. */
	const uint8_t *d = find(p, end, b, bl);
	if (!d || (d != p && d[-1] != '\n'))
		return rs_err(err, -EBADMSG, "multipart reply has no boundary line");
	struct reg_part *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	for (p = d + bl;;) {
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			break; /* close delimiter */
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (!eol(&p, end)) {
			r = rs_err(err, -EBADMSG,
				   "multipart reply truncated or malformed after a "
				   "boundary");
			goto fail;
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct reg_part *nv = realloc(v, nc * sizeof(*v));
			if (!nv) {
				r = rs_err(err, -ENOMEM, "out of memory");
				goto fail;
			}
			v = nv;
			cap = nc;
		}
		struct reg_part *part = &v[cnt];
		if ((r = part_headers(&p, end, part, err)) < 0)
			goto fail;
		int64_t plen = part->last - part->first + 1;
		if (plen > end - p) {
			r = rs_err(
			    err, -EBADMSG,
			    "multipart reply truncated: part bytes %lld-%lld has %lld of %lld "
			    "bytes",
			    (long long)part->first, (long long)part->last, (long long)(end - p),
			    (long long)plen);
			goto fail;
		}
		part->data = p;
		part->len = (size_t)plen;
		cnt++;
		p += plen;
		if (!eol(&p, end) || (size_t)(end - p) < bl || memcmp(p, b, bl) != 0) {
			r = rs_err(err, -EBADMSG,
				   "multipart reply truncated or malformed: no "
				   "boundary after part %zu",
				   cnt);
			goto fail;
		}
		p += bl;
	}
	if (cnt == 0) {
		r = rs_err(err, -EBADMSG, "multipart reply has no parts");
		goto fail;
	}
	*parts = v;
	*n = cnt;
	return 0;
fail:
	free(v);
	return r;
}
