// SPDX-License-Identifier: Apache-2.0
/* Lists of strings for conv_record: the record list file (one absolute path a
 * line, with the ranges read of a file read in part) and --entrypoint / --args
 * values (a JSON array or words). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "record_internal.h"

/* A record list bigger than this is not one. */
#define LIST_MAX_BYTES (256u << 20)

void conv_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void touched_free(struct esgz_touched *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++) {
		free((char *)t[i].name);
		free((int64_t *)t[i].ranges);
	}
	free(t);
}

void conv_record_result_free(struct conv_record_result *res)
{
	if (!res)
		return;
	conv_strv_free(res->paths, res->n_paths);
	touched_free(res->touched, res->n_touched);
	res->paths = NULL;
	res->n_paths = 0;
	res->touched = NULL;
	res->n_touched = 0;
}

int conv_record_touched_add(struct conv_record_result *res, const char *path, const int64_t *ranges,
			    size_t n)
{
	if (n == 0)
		return 0;
	struct esgz_touched *t = realloc(res->touched, (res->n_touched + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	res->touched = t;
	char *name = strdup(path);
	int64_t *r = malloc(2 * n * sizeof(*r));
	if (!name || !r) {
		free(name);
		free(r);
		return -ENOMEM;
	}
	memcpy(r, ranges, 2 * n * sizeof(*r));
	t[res->n_touched++] = (struct esgz_touched){.name = name, .ranges = r, .nranges = n};
	return 0;
}

/* FNV-1a */
static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int strset_grow(struct conv_strset *s)
{
	size_t ns = s->n_slots ? s->n_slots * 2 : 64;
	uint32_t *slots = calloc(ns, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		size_t k = str_hash(s->v[i]) & (ns - 1);
		while (slots[k])
			k = (k + 1) & (ns - 1);
		slots[k] = (uint32_t)(i + 1);
	}
	free(s->slots);
	s->slots = slots;
	s->n_slots = ns;
	return 0;
}

/* Appends str to the array (v, n, cap), taking it: freed on failure. */
static int strv_push(char ***v, size_t *n, size_t *cap, char *str)
{
	if (!str)
		return -ENOMEM;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, nc * sizeof(*nv));
		if (!nv) {
			free(str);
			return -ENOMEM;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = str;
	return 0;
}

int conv_strset_add(struct conv_strset *s, char *str)
{
	if (!str)
		return -ENOMEM;
	if ((s->n + 1) * 2 > s->n_slots && strset_grow(s) < 0) {
		free(str);
		return -ENOMEM;
	}
	size_t k = str_hash(str) & (s->n_slots - 1);
	for (; s->slots[k]; k = (k + 1) & (s->n_slots - 1)) {
		if (strcmp(s->v[s->slots[k] - 1], str) == 0) {
			free(str);
			return 0;
		}
	}
	if (s->n >= UINT32_MAX - 1) {
		free(str);
		return -E2BIG;
	}
	if (strv_push(&s->v, &s->n, &s->cap, str) < 0)
		return -ENOMEM;
	s->slots[k] = (uint32_t)s->n;
	return 1;
}

bool conv_strset_has(const struct conv_strset *s, const char *str)
{
	if (s->n_slots == 0)
		return false;
	for (size_t k = str_hash(str) & (s->n_slots - 1); s->slots[k];
	     k = (k + 1) & (s->n_slots - 1))
		if (strcmp(s->v[s->slots[k] - 1], str) == 0)
			return true;
	return false;
}

char **conv_strset_steal(struct conv_strset *s, size_t *n)
{
	char **v = s->v;
	*n = s->n;
	free(s->slots);
	memset(s, 0, sizeof(*s));
	return v;
}

void conv_strset_free(struct conv_strset *s)
{
	conv_strv_free(s->v, s->n);
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

/* "OFF+LEN,OFF+LEN...": the pairs in a malloc'd array, or -EINVAL. */
static int parse_ranges(const char *s, int64_t **out, size_t *n)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	int64_t *r = malloc(2 * cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	size_t k = 0;
	const char *p = s;
	for (;;) {
		char *end;
		int64_t v[2];
		for (int i = 0; i < 2; i++) {
			if (*p < '0' || *p > '9')
				goto bad;
			errno = 0;
			unsigned long long x = strtoull(p, &end, 10);
			if (errno || x > (unsigned long long)INT64_MAX ||
			    *end != (i == 0 ? '+' : *end))
				goto bad;
			v[i] = (int64_t)x;
			p = i == 0 ? end + 1 : end;
		}
		if (v[0] > INT64_MAX - v[1])
			goto bad;
		r[2 * k] = v[0];
		r[2 * k + 1] = v[1];
		k++;
		if (*p == '\0')
			break;
		if (*p != ',')
			goto bad;
		p++;
	}
	*out = r;
	*n = k;
	return 0;
bad:
	free(r);
	return -EINVAL;
}

/* One line (its newline gone) into the list: a path, maybe a tab and ranges. */
static int add_line(struct conv_strset *s, struct conv_record_result *res, char *line, size_t len)
{
	int64_t *ranges = NULL;
	size_t nranges = 0;
	/* The last tab: a path may hold one, ranges never do. */
	char *tab = strrchr(line, '\t');
	if (tab && parse_ranges(tab + 1, &ranges, &nranges) == 0) {
		*tab = '\0';
		len = (size_t)(tab - line);
	}
	if (len == 0) {
		free(ranges);
		return -EINVAL;
	}
	/* the length with the '/' it may get: what is written reads back */
	size_t plen = len + (line[0] == '/' ? 0 : 1);
	if (plen >= PATH_MAX || strlen(line) != len) {
		free(ranges);
		return -EINVAL;
	}
	char *p = malloc(plen + 1);
	if (!p) {
		free(ranges);
		return -ENOMEM;
	}
	snprintf(p, plen + 1, "%s%s", line[0] == '/' ? "" : "/", line);
	int rc = 0;
	if (nranges > 0 && !conv_strset_has(s, p))
		rc = conv_record_touched_add(res, p, ranges, nranges);
	free(ranges);
	if (rc == 0 && conv_strset_add(s, p) < 0)
		return -ENOMEM;
	if (rc < 0)
		free(p);
	return rc;
}

int conv_record_list_parse(FILE *f, const char *name, struct conv_record_result *res,
			   struct rs_error *err)
{
	memset(res, 0, sizeof(*res));
	struct conv_strset s = {0};
	char *line = NULL;
	size_t lcap = 0, total = 0, lineno = 0;
	ssize_t len;
	int rc = 0;
	while (rc == 0 && (len = getline(&line, &lcap, f)) >= 0) {
		lineno++;
		total += (size_t)len;
		if (total > LIST_MAX_BYTES) {
			rc = rs_err(err, -EFBIG, "%s: larger than %u MiB", name,
				    LIST_MAX_BYTES >> 20);
			break;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		int r = add_line(&s, res, line, (size_t)len);
		if (r == -ENOMEM)
			rc = rs_err(err, -ENOMEM, "out of memory");
		else if (r < 0)
			rc = rs_err(err, -EINVAL, "%s: line %zu: not a path", name, lineno);
	}
	if (rc == 0 && ferror(f))
		rc = rs_err(err, -EIO, "%s: read error", name);
	free(line);
	if (rc < 0) {
		conv_strset_free(&s);
		conv_record_result_free(res);
		return rc;
	}
	res->paths = conv_strset_steal(&s, &res->n_paths);
	return 0;
}

int conv_record_list_read(const char *file, struct conv_record_result *res, struct rs_error *err)
{
	memset(res, 0, sizeof(*res));
	if (strcmp(file, "-") == 0)
		return conv_record_list_parse(stdin, "<stdin>", res, err);
	FILE *f = fopen(file, "re");
	if (!f)
		return rs_err(err, -errno, "%s: %s", file, strerror(errno));
	int rc = conv_record_list_parse(f, file, res, err);
	fclose(f);
	return rc;
}

static const struct esgz_touched *touched_of(const struct conv_record_result *res, const char *path)
{
	for (size_t i = 0; i < res->n_touched; i++)
		if (strcmp(res->touched[i].name, path) == 0)
			return &res->touched[i];
	return NULL;
}

int conv_record_list_print(FILE *f, const struct conv_record_result *res)
{
	for (size_t i = 0; i < res->n_paths; i++) {
		if (fputs(res->paths[i], f) < 0)
			return -EIO;
		const struct esgz_touched *t = touched_of(res, res->paths[i]);
		for (size_t k = 0; t && k < t->nranges; k++)
			if (fprintf(f, "%c%" PRId64 "+%" PRId64, k ? ',' : '\t', t->ranges[2 * k],
				    t->ranges[2 * k + 1]) < 0)
				return -EIO;
		if (fputc('\n', f) < 0)
			return -EIO;
	}
	return fflush(f) == 0 ? 0 : -EIO;
}

int conv_record_list_write(const char *file, const struct conv_record_result *res,
			   struct rs_error *err)
{
	for (size_t i = 0; i < res->n_paths; i++)
		if (strchr(res->paths[i], '\n'))
			return rs_err(err, -EINVAL, "%s: a path holds a newline", file);
	if (strcmp(file, "-") == 0)
		return conv_record_list_print(stdout, res) < 0
			   ? rs_err(err, -EIO, "<stdout>: write error")
			   : 0;
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", file) >= sizeof(tmp))
		return rs_err(err, -ENAMETOOLONG, "%s: name too long", file);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", file, strerror(errno));
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return rs_err(err, -e, "%s: %s", file, strerror(e));
	}
	int rc = conv_record_list_print(f, res);
	if (rc == 0 && fchmod(fd, 0644) < 0)
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -EIO;
	if (rc == 0 && rename(tmp, file) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rs_err(err, rc, "%s: %s", file, strerror(-rc));
	}
	return 0;
}

struct strv {
	char **v;
	size_t n, cap;
};

static int split_json(const char *s, struct strv *out, struct rs_error *err)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	if (!json_is_array(j)) {
		json_decref(j);
		return rs_err(err, -EINVAL, "'%s': not a JSON array of strings%s%s", s,
			      j ? "" : ": ", j ? "" : je.text);
	}
	size_t i;
	json_t *e;
	int rc = 0;
	json_array_foreach(j, i, e)
	{
		if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
			rc = rs_err(err, -EINVAL, "'%s': element %zu is not a string", s, i);
			break;
		}
		if (strv_push(&out->v, &out->n, &out->cap, strdup(json_string_value(e))) < 0) {
			rc = rs_err(err, -ENOMEM, "out of memory");
			break;
		}
	}
	json_decref(j);
	return rc;
}

int conv_record_split_args(const char *s, char ***out, size_t *n, struct rs_error *err)
{
	struct strv v = {0};
	int rc = 0;
	const char *p = s;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '[') {
		rc = split_json(p, &v, err);
	} else {
		while (rc == 0 && *p) {
			const char *w = p;
			while (*p && !isspace((unsigned char)*p))
				p++;
			if (strv_push(&v.v, &v.n, &v.cap, strndup(w, (size_t)(p - w))) < 0)
				rc = rs_err(err, -ENOMEM, "out of memory");
			while (isspace((unsigned char)*p))
				p++;
		}
	}
	if (rc < 0) {
		conv_strv_free(v.v, v.n);
		return rc;
	}
	*out = v.v;
	*n = v.n;
	return 0;
}
