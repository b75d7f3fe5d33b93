// SPDX-License-Identifier: Apache-2.0
/* containerd's filter syntax (pkg/filters: scanner.go, parser.go, quote.go)
 * applied to snapshots (core/snapshots/storage/bolt.go, adaptSnapshot):
 *
 *   selectors := selector ("," selector)*
 *   selector  := fieldpath (operator value)
 *   fieldpath := field ('.' field)*
 *   field     := quoted | [A-Za-z0-9_]+
 *   operator  := "==" | "!=" | "~="
 *   value     := quoted | [^\s,]+
 *   quoted    := "..." with Go escapes; /.../ and |...| too after ~=
 *
 * Fields: name, parent (always present, "" for none), kind (view, active,
 * committed), labels.KEY (the rest of the path joined by '.'). A selector with
 * no operator tests presence; several filters match when any does. `~=` uses
 * POSIX extended regular expressions (containerd uses Go's RE2); a pattern
 * that does not compile matches nothing, as in containerd. Bytes >= 0x80 are
 * value characters, never field characters. */
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snap_internal.h"

/* Bounds on an untrusted regular expression (see sel_finish). */
#define MAX_REGEX_LEN 256
#define MAX_REGEX_REPEATS 8
#define MAX_REGEX_COPIES 256

enum {
	TOK_EOF = -1,
	TOK_QUOTED = -2,
	TOK_VALUE = -3,
	TOK_FIELD = -4,
	TOK_SEP = -5,
	TOK_OP = -6,
	TOK_ILLEGAL = -7,
};

enum op { OP_PRESENT, OP_EQ, OP_NE, OP_MATCH };

struct selector {
	char **path;
	size_t npath;
	char *label; /* path[1..] joined by '.', when path[0] is "labels" */
	enum op op;
	char *value;
	regex_t re;
	bool re_ok;
};

struct conj {
	struct selector *v;
	size_t n;
};

struct snap_filter {
	struct conj *v;
	size_t n;
	bool always;
};

/* ---- scanner ------------------------------------------------------------ */

struct scanner {
	const char *in;
	size_t len;
	size_t pos;  /* start of the character last read */
	size_t ppos; /* next character to read */
	bool value;  /* an operator was seen: the next bare word is a value */
	const char *err;
};

static int sc_next(struct scanner *s)
{
	if (s->ppos >= s->len) {
		s->pos = s->len;
		return TOK_EOF;
	}
	s->pos = s->ppos;
	return (unsigned char)s->in[s->ppos++];
}

static int sc_peek(struct scanner *s)
{
	size_t pos = s->pos, ppos = s->ppos;
	int ch = sc_next(s);
	s->pos = pos;
	s->ppos = ppos;
	return ch;
}

static void sc_error(struct scanner *s, const char *msg)
{
	if (!s->err)
		s->err = msg;
}

static bool is_field_ch(int c)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9');
}

static bool is_op_ch(int c)
{
	return c == '=' || c == '!' || c == '~';
}

static bool is_quote_ch(int c)
{
	return c == '/' || c == '|' || c == '"';
}

static bool is_sep_ch(int c)
{
	return c == ',' || c == '.';
}

static bool is_space_ch(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_value_ch(int c)
{
	if (c < 0 || c == ',' || is_space_ch(c))
		return false;
	return c >= 0x80 || (c > 0x20 && c < 0x7f);
}

static int digit_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 16;
}

static int sc_digits(struct scanner *s, int ch, int base, int n, bool *legal)
{
	while (n > 0 && digit_val(ch) < base) {
		ch = sc_next(s);
		n--;
	}
	*legal = n == 0;
	if (n > 0)
		sc_error(s, "illegal numeric escape sequence");
	return ch;
}

static int sc_escape(struct scanner *s, int quote, bool *legal)
{
	int ch = sc_next(s);
	*legal = false;
	if (ch == quote || (ch > 0 && strchr("abfnrtv\\", ch))) {
		*legal = true;
		return sc_next(s);
	}
	if (ch >= '0' && ch <= '7')
		return sc_digits(s, ch, 8, 3, legal);
	if (ch == 'x')
		return sc_digits(s, sc_next(s), 16, 2, legal);
	if (ch == 'u')
		return sc_digits(s, sc_next(s), 16, 4, legal);
	if (ch == 'U')
		return sc_digits(s, sc_next(s), 16, 8, legal);
	sc_error(s, "illegal escape sequence");
	return ch;
}

static bool sc_quoted(struct scanner *s, int quote)
{
	bool illegal = false;
	int ch = sc_next(s);
	while (ch != quote) {
		if (ch == '\n' || ch < 0) {
			sc_error(s, "quoted literal not terminated");
			return false;
		}
		if (ch == '\\') {
			bool legal;
			ch = sc_escape(s, quote, &legal);
			if (!legal)
				illegal = true;
		} else {
			ch = sc_next(s);
		}
	}
	return !illegal;
}

/* Next token; [*start, *end) is its text. Other characters come back as
 * themselves (>= 0). */
static int sc_scan(struct scanner *s, size_t *start, size_t *end)
{
	int ch = sc_next(s);
	for (;;) {
		*start = s->pos;
		if (ch == TOK_EOF) {
			*end = s->pos;
			return TOK_EOF;
		}
		if (is_quote_ch(ch)) {
			bool ok = sc_quoted(s, ch);
			*end = s->ppos;
			return ok ? TOK_QUOTED : TOK_ILLEGAL;
		}
		if (is_sep_ch(ch)) {
			s->value = false;
			*end = s->ppos;
			return TOK_SEP;
		}
		if (is_op_ch(ch)) {
			while (is_op_ch(sc_peek(s)))
				sc_next(s);
			s->value = true;
			*end = s->ppos;
			return TOK_OP;
		}
		if (is_space_ch(ch)) {
			ch = sc_next(s);
			continue;
		}
		if (s->value) {
			while (is_value_ch(sc_peek(s)))
				sc_next(s);
			s->value = false;
			*end = s->ppos;
			return TOK_VALUE;
		}
		if (is_field_ch(ch)) {
			while (is_field_ch(sc_peek(s)))
				sc_next(s);
			*end = s->ppos;
			return TOK_FIELD;
		}
		*end = s->pos;
		return ch;
	}
}

/* ---- unquoting (Go's strconv.Unquote, with / and | as quotes) ----------- */

static int put_utf8(struct rs_buf *b, uint32_t c)
{
	uint8_t u[4];
	size_t n;
	if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		c = 0xfffd;
	if (c < 0x80) {
		u[0] = (uint8_t)c;
		n = 1;
	} else if (c < 0x800) {
		u[0] = (uint8_t)(0xc0 | c >> 6);
		u[1] = (uint8_t)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		u[0] = (uint8_t)(0xe0 | c >> 12);
		u[1] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
		u[2] = (uint8_t)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | c >> 18);
		u[1] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
		u[2] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
		u[3] = (uint8_t)(0x80 | (c & 0x3f));
		n = 4;
	}
	return rs_buf_append(b, u, n);
}

/* One escape after a backslash at s[*i]; false on a syntax error. */
static bool unquote_escape(const char *s, size_t len, size_t *i, char quote, struct rs_buf *b)
{
	static const char simple[] = "abfnrtv";
	static const char values[] = "\a\b\f\n\r\t\v";
	if (*i + 1 >= len)
		return false;
	char c = s[*i + 1];
	*i += 2;
	const char *sp = c ? strchr(simple, c) : NULL;
	if (sp) {
		char v = values[sp - simple];
		return rs_buf_append(b, &v, 1) == 0;
	}
	if (c == 'x' || c == 'u' || c == 'U') {
		size_t n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
		uint32_t v = 0;
		if (len - *i < n)
			return false;
		for (size_t j = 0; j < n; j++) {
			int d = digit_val((unsigned char)s[*i + j]);
			if (d >= 16)
				return false;
			v = v << 4 | (uint32_t)d;
		}
		*i += n;
		if (c == 'x') {
			uint8_t byte = (uint8_t)v;
			return rs_buf_append(b, &byte, 1) == 0;
		}
		if (v > 0x10ffff)
			return false;
		return put_utf8(b, v) == 0;
	}
	if (c >= '0' && c <= '7') {
		uint32_t v = (uint32_t)(c - '0');
		if (len - *i < 2)
			return false;
		for (size_t j = 0; j < 2; j++) {
			char d = s[*i + j];
			if (d < '0' || d > '7')
				return false;
			v = v << 3 | (uint32_t)(d - '0');
		}
		*i += 2;
		if (v > 255)
			return false;
		uint8_t byte = (uint8_t)v;
		return rs_buf_append(b, &byte, 1) == 0;
	}
	if (c == '\\')
		return rs_buf_append(b, "\\", 1) == 0;
	if (c == '\'' || c == '"' || c == '|' || c == '/')
		return c == quote && rs_buf_append(b, &c, 1) == 0;
	return false;
}

/* The text between the quotes s[0] and s[len-1], unescaped; NULL on a
 * syntax error or ENOMEM (*nomem says which). */
static char *unquote(const char *s, size_t len, bool *nomem)
{
	*nomem = false;
	if (len < 2 || s[0] != s[len - 1])
		return NULL;
	char quote = s[0];
	if (quote != '"' && quote != '|' && quote != '/')
		return NULL;
	s++;
	len -= 2;
	if (memchr(s, '\n', len))
		return NULL;
	struct rs_buf b = {0};
	for (size_t i = 0; i < len;) {
		bool ok;
		if (s[i] == quote) {
			ok = false;
		} else if (s[i] == '\\') {
			ok = unquote_escape(s, len, &i, quote, &b);
		} else {
			ok = rs_buf_append(&b, &s[i], 1) == 0;
			i++;
		}
		if (!ok) {
			rs_buf_free(&b);
			return NULL;
		}
	}
	if (rs_buf_append(&b, "", 1) < 0) {
		*nomem = true;
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

/* ---- parser ------------------------------------------------------------- */

struct parser {
	struct scanner sc;
	struct rs_error *err;
};

static int mkerr(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mkerr(struct parser *p, size_t pos, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *in = p->sc.in;
	if (pos < p->sc.len)
		return rs_err(p->err, -EINVAL, "filters: parse error: [%.*s >|%c|< %s]: %s",
			      (int)pos, in, in[pos], in + pos + 1, msg);
	return rs_err(p->err, -EINVAL, "filters: parse error: [%s]: %s", in, msg);
}

static char *dup_range(const char *s, size_t start, size_t end)
{
	return strndup(s + start, end - start);
}

static int p_unquote(struct parser *p, size_t start, size_t end, bool alt, char **out)
{
	const char *s = p->sc.in + start;
	if (!alt && s[0] != '"')
		return mkerr(p, start, "invalid quote encountered");
	bool nomem;
	*out = unquote(s, end - start, &nomem);
	if (nomem)
		return rs_err(p->err, -ENOMEM, "out of memory");
	if (!*out)
		return mkerr(p, start, "unquoting failed: quote syntax error");
	return 0;
}

static int p_field(struct parser *p, char **out)
{
	size_t start, end;
	int tok = sc_scan(&p->sc, &start, &end);
	switch (tok) {
	case TOK_FIELD:
		*out = dup_range(p->sc.in, start, end);
		return *out ? 0 : rs_err(p->err, -ENOMEM, "out of memory");
	case TOK_QUOTED:
		return p_unquote(p, start, end, false, out);
	case TOK_ILLEGAL:
		return mkerr(p, start, "%s", p->sc.err ? p->sc.err : "illegal token");
	}
	return mkerr(p, start, "expected field or quoted");
}

static int p_fieldpath(struct parser *p, struct selector *sel)
{
	for (;;) {
		char *f = NULL;
		int r = p_field(p, &f);
		if (r < 0)
			return r;
		char **nv = realloc(sel->path, (sel->npath + 1) * sizeof(*nv));
		if (!nv) {
			free(f);
			return rs_err(p->err, -ENOMEM, "out of memory");
		}
		sel->path = nv;
		sel->path[sel->npath++] = f;
		if (sc_peek(&p->sc) != '.')
			return 0;
		size_t start, end;
		if (sc_scan(&p->sc, &start, &end) != TOK_SEP)
			return mkerr(p, start, "expected a field separator (`.`)");
	}
}

static int p_operator(struct parser *p, enum op *op)
{
	size_t start, end;
	int tok = sc_scan(&p->sc, &start, &end);
	if (tok == TOK_OP) {
		size_t n = end - start;
		const char *s = p->sc.in + start;
		if (n == 2 && memcmp(s, "==", 2) == 0)
			*op = OP_EQ;
		else if (n == 2 && memcmp(s, "!=", 2) == 0)
			*op = OP_NE;
		else if (n == 2 && memcmp(s, "~=", 2) == 0)
			*op = OP_MATCH;
		else
			return mkerr(p, start, "unsupported operator \"%.*s\"", (int)n, s);
		return 0;
	}
	if (tok == TOK_ILLEGAL)
		return mkerr(p, start, "%s", p->sc.err ? p->sc.err : "illegal token");
	return mkerr(p, start, "expected an operator (\"==\"|\"!=\"|\"~=\")");
}

static int p_value(struct parser *p, bool alt, char **out)
{
	size_t start, end;
	int tok = sc_scan(&p->sc, &start, &end);
	switch (tok) {
	case TOK_VALUE:
	case TOK_FIELD:
		*out = dup_range(p->sc.in, start, end);
		return *out ? 0 : rs_err(p->err, -ENOMEM, "out of memory");
	case TOK_QUOTED:
		return p_unquote(p, start, end, alt, out);
	case TOK_ILLEGAL:
		return mkerr(p, start, "%s", p->sc.err ? p->sc.err : "illegal token");
	}
	return mkerr(p, start, "expected value or quoted");
}

static int sel_finish(struct parser *p, struct selector *sel)
{
	if (strcmp(sel->path[0], "labels") == 0) {
		struct rs_buf b = {0};
		int r = rs_buf_append(&b, "", 1);
		b.len = 0;
		for (size_t i = 1; i < sel->npath && r == 0; i++)
			r = rs_buf_printf(&b, "%s%s", i > 1 ? "." : "", sel->path[i]);
		if (r < 0) {
			rs_buf_free(&b);
			return rs_err(p->err, -ENOMEM, "out of memory");
		}
		sel->label = (char *)b.data;
	}
	if (sel->op == OP_MATCH) {
		/* glibc's regcomp copies the pattern's tree for each repetition
		 * operator: "(a+++...+)" from a List request grew past 2 GiB under
		 * the fuzzer. An untrusted pattern is bounded first. */
		size_t reps = 0, len = strlen(sel->value);
		unsigned long copies = 1; /* product of the {m,n} bounds */
		for (const char *c = sel->value; *c; c++) {
			reps += *c == '*' || *c == '+' || *c == '?' || *c == '{';
			if (*c != '{')
				continue;
			unsigned long most = 0;
			for (const char *d = c + 1; *d && *d != '}'; d++)
				if (*d >= '0' && *d <= '9') {
					unsigned long v = strtoul(d, (char **)&d, 10);
					most = v > most ? v : most;
					d--;
				}
			copies *=
			    most > 1 ? (most > MAX_REGEX_COPIES ? MAX_REGEX_COPIES + 1 : most) : 1;
			if (copies > MAX_REGEX_COPIES)
				break;
		}
		/* A backreference makes glibc's matcher backtrack without bound
		 * (a fuzzer input ran for minutes); containerd's Go regexp has
		 * none, so no valid filter uses one. */
		for (const char *c = sel->value; *c; c++) {
			if (*c != '\\' || !c[1])
				continue;
			if (c[1] >= '1' && c[1] <= '9')
				return rs_err(p->err, -EINVAL,
					      "filter: regular expression with a backreference "
					      "(\\%c) is not supported",
					      c[1]);
			c++;
		}
		if (len > MAX_REGEX_LEN || reps > MAX_REGEX_REPEATS || copies > MAX_REGEX_COPIES)
			return rs_err(p->err, -EINVAL,
				      "filter: regular expression too complex (%zu bytes, %zu "
				      "repetitions; at most %d bytes, %d repetitions and %d "
				      "copies in {m,n} bounds)",
				      len, reps, MAX_REGEX_LEN, MAX_REGEX_REPEATS,
				      MAX_REGEX_COPIES);
		int rc = regcomp(&sel->re, sel->value, REG_EXTENDED | REG_NOSUB);
		sel->re_ok = rc == 0;
		if (!sel->re_ok) {
			char why[128];
			regerror(rc, &sel->re, why, sizeof(why));
			rs_log(RS_LOG_ERROR, "snapshot: filter: error compiling regexp \"%s\": %s",
			       sel->value, why);
		}
	}
	return 0;
}

static int p_selector(struct parser *p, struct selector *sel)
{
	int r = p_fieldpath(p, sel);
	if (r < 0)
		return r;
	int next = sc_peek(&p->sc);
	if (next == ',' || next == TOK_EOF) {
		sel->op = OP_PRESENT;
	} else {
		r = p_operator(p, &sel->op);
		if (r == 0)
			r = p_value(p, sel->op == OP_MATCH, &sel->value);
		if (r < 0)
			return r;
	}
	return sel_finish(p, sel);
}

static void sel_free(struct selector *sel)
{
	for (size_t i = 0; i < sel->npath; i++)
		free(sel->path[i]);
	free(sel->path);
	free(sel->label);
	free(sel->value);
	if (sel->re_ok)
		regfree(&sel->re);
}

static void conj_free(struct conj *c)
{
	for (size_t i = 0; i < c->n; i++)
		sel_free(&c->v[i]);
	free(c->v);
}

static int p_selectors(struct parser *p, struct conj *c)
{
	for (;;) {
		struct selector *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
		if (!nv)
			return rs_err(p->err, -ENOMEM, "out of memory");
		c->v = nv;
		memset(&c->v[c->n], 0, sizeof(c->v[0]));
		c->n++;
		int r = p_selector(p, &c->v[c->n - 1]);
		if (r < 0)
			return r;
		int tok = sc_peek(&p->sc);
		if (tok == TOK_EOF)
			return 0;
		if (tok != ',') {
			if (tok >= 0x20 && tok < 0x7f)
				return mkerr(p, p->sc.ppos, "unexpected input: %c", tok);
			return mkerr(p, p->sc.ppos, "unexpected input");
		}
		size_t start, end;
		if (sc_scan(&p->sc, &start, &end) != TOK_SEP)
			return mkerr(p, start, "expected a separator");
	}
}

void snap_filter_free(struct snap_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++)
		conj_free(&f->v[i]);
	free(f->v);
	free(f);
}

int snap_filter_parse(const char *const *filters, size_t n, struct snap_filter **out,
		      struct rs_error *err)
{
	struct snap_filter *f = calloc(1, sizeof(*f));
	if (!f)
		return rs_err(err, -ENOMEM, "out of memory");
	f->always = n == 0;
	if (n) {
		f->v = calloc(n, sizeof(*f->v));
		if (!f->v) {
			free(f);
			return rs_err(err, -ENOMEM, "out of memory");
		}
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = filters[i] ? filters[i] : "";
		f->n = i + 1;
		if (!*s) {
			f->always = true; /* containerd: an empty filter matches all */
			continue;
		}
		struct parser p = {.sc = {.in = s, .len = strlen(s)}, .err = err};
		int r = p_selectors(&p, &f->v[i]);
		if (r < 0) {
			snap_filter_free(f);
			return r;
		}
	}
	*out = f;
	return 0;
}

static const char *kind_name(enum snap_kind k)
{
	switch (k) {
	case SNAP_KIND_VIEW:
		return "view";
	case SNAP_KIND_ACTIVE:
		return "active";
	case SNAP_KIND_COMMITTED:
		return "committed";
	default:
		return NULL;
	}
}

/* adaptSnapshot: the value of a field path, NULL when not present. */
static const char *field_value(const struct selector *sel, const struct snap_info *info)
{
	const char *f = sel->path[0];
	if (strcmp(f, "kind") == 0)
		return kind_name(info->kind);
	if (strcmp(f, "name") == 0)
		return info->name ? info->name : "";
	if (strcmp(f, "parent") == 0)
		return info->parent ? info->parent : "";
	if (strcmp(f, "labels") == 0 && info->nlabels)
		return snap_label_get(info->labels, info->nlabels, sel->label);
	return NULL;
}

static bool sel_match(const struct selector *sel, const struct snap_info *info)
{
	const char *v = field_value(sel, info);
	switch (sel->op) {
	case OP_PRESENT:
		return v != NULL;
	case OP_EQ:
		return v && strcmp(v, sel->value) == 0;
	case OP_NE:
		return strcmp(v ? v : "", sel->value) != 0;
	case OP_MATCH:
		return sel->re_ok && regexec(&sel->re, v ? v : "", 0, NULL, 0) == 0;
	}
	return false;
}

bool snap_filter_match(const struct snap_filter *f, const struct snap_info *info)
{
	if (f->always)
		return true;
	for (size_t i = 0; i < f->n; i++) {
		bool all = true;
		for (size_t j = 0; j < f->v[i].n && all; j++)
			all = sel_match(&f->v[i].v[j], info);
		if (all)
			return true;
	}
	return false;
}
