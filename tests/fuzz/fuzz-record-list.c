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
	char **v = NULL;
	size_t n = 0;
	int rc = conv_record_list_parse(f, "<fuzz>", &v, &n, &err);
	fclose(f);
	free(copy);
	if (rc < 0) {
		if (!err.msg[0])
			abort();
		return;
	}
	struct conv_strset seen = {0};
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v[i]);
		if (v[i][0] != '/' || len >= PATH_MAX || strchr(v[i], '\n') ||
		    v[i][len - 1] == '\r')
			abort();
		if (conv_strset_add(&seen, strdup(v[i])) == 0)
			abort(); /* a repeat */
	}
	conv_strset_free(&seen);

	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	if (out && conv_record_list_print(out, (const char *const *)v, n) == 0 && len > 0) {
		fclose(out);
		out = fmemopen(buf, len, "r");
		char **w = NULL;
		size_t m = 0;
		if (out && conv_record_list_parse(out, "<again>", &w, &m, &err) < 0)
			abort(); /* what was read must read back */
		if (out && m != n)
			abort();
		for (size_t i = 0; out && i < n; i++)
			if (strcmp(v[i], w[i]) != 0)
				abort();
		conv_strv_free(w, m);
	}
	if (out)
		fclose(out);
	free(buf);
	conv_strv_free(v, n);
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
