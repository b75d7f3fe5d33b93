// SPDX-License-Identifier: Apache-2.0
/* Fuzzes what `stargz optimize` reads from the user: the record list parser
 * (a --record-in file, from anywhere) and the --entrypoint / --args splitter.
 * A list that parses holds absolute paths, each once, none with a newline,
 * and prints and parses back to itself; split words hold no whitespace. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/record_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_list(const uint8_t *data, size_t size)
{
	if (size == 0)
		return; /* fmemopen wants a byte; an empty list is in the unit tests */
	char *copy = malloc(size);
	if (!copy)
		return;
	memcpy(copy, data, size);
	FILE *f = fmemopen(copy, size, "r");
	if (!f) {
		free(copy);
		return;
	}
	struct rs_error err = {0};
	struct conv_record_result r;
	int rc = conv_record_list_parse(f, "<fuzz>", &r, &err);
	fclose(f);
	free(copy);
	if (rc < 0) {
		if (!err.msg[0])
			abort();
		return;
	}
	struct conv_strset seen = {0};
	for (size_t i = 0; i < r.n_paths; i++) {
		const char *p = r.paths[i];
		size_t len = strlen(p);
		bool ranged = false;
		for (size_t k = 0; k < r.n_touched; k++)
			ranged |= strcmp(r.touched[k].name, p) == 0;
		/* a trailing CR is the line's, unless ranges followed the path */
		if (p[0] != '/' || len >= PATH_MAX || strchr(p, '\n') ||
		    (!ranged && p[len - 1] == '\r'))
			abort();
		if (conv_strset_add(&seen, strdup(p)) == 0)
			abort(); /* a repeat */
	}
	conv_strset_free(&seen);
	for (size_t k = 0; k < r.n_touched; k++)
		if (r.touched[k].nranges == 0)
			abort();

	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	if (out && conv_record_list_print(out, &r) == 0 && len > 0) {
		fclose(out);
		out = fmemopen(buf, len, "r");
		struct conv_record_result w;
		if (out && conv_record_list_parse(out, "<again>", &w, &err) < 0)
			abort(); /* what was read must read back */
		if (out && (w.n_paths != r.n_paths || w.n_touched != r.n_touched))
			abort();
		for (size_t i = 0; out && i < r.n_paths; i++)
			if (strcmp(r.paths[i], w.paths[i]) != 0)
				abort();
		for (size_t k = 0; out && k < r.n_touched; k++)
			if (strcmp(r.touched[k].name, w.touched[k].name) != 0 ||
			    r.touched[k].nranges != w.touched[k].nranges ||
			    memcmp(r.touched[k].ranges, w.touched[k].ranges,
				   2 * r.touched[k].nranges * sizeof(int64_t)) != 0)
				abort();
		if (out)
			conv_record_result_free(&w);
	}
	if (out)
		fclose(out);
	free(buf);
	conv_record_result_free(&r);
}

static void check_split(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	struct rs_error err = {0};
	char **v = NULL;
	size_t n = 0;
	const char *p = s;
	while (isspace((unsigned char)*p))
		p++;
	bool json = *p == '[';
	if (conv_record_split_args(s, &v, &n, &err) == 0) {
		for (size_t i = 0; !json && i < n; i++) {
			if (!v[i][0])
				abort();
			for (const char *c = v[i]; *c; c++)
				if (isspace((unsigned char)*c))
					abort();
		}
		conv_strv_free(v, n);
	} else if (!json || !err.msg[0]) {
		abort(); /* only a JSON array can be malformed */
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	check_list(data, size);
	check_split(data, size);
	return 0;
}
