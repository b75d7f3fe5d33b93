// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the registry transport's parsers of untrusted text: the first byte
 * picks one (reference, WWW-Authenticate, error JSON, hosts.toml), the rest
 * is its input. */
#include <string.h>

#include "registry/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	struct rs_error err;
	switch (data[0] % 4) {
	case 0: {
		struct reg_ref r;
		if (reg_ref_parse(s, &r, &err) == 0) {
			char *back = reg_ref_string(&r);
			struct reg_ref again;
			/* a parsed reference prints as one that parses the same */
			if (!back || reg_ref_parse(back, &again, &err) != 0 ||
			    strcmp(again.domain, r.domain) != 0 || strcmp(again.path, r.path) != 0)
				__builtin_trap();
			reg_ref_free(&again);
			free(back);
			reg_ref_free(&r);
		}
		break;
	}
	case 1: {
		struct reg_challenge ch;
		if (reg_challenge_parse(s, &ch) == 0)
			reg_challenge_free(&ch);
		break;
	}
	case 2:
		free(reg_error_message(data + 1, size - 1));
		break;
	default: {
		struct reg_host *v;
		size_t n;
		if (reg_hosts_toml_parse("fuzz.toml", (const char *)data + 1, size - 1, &v, &n,
					 &err) == 0) {
			for (size_t i = 0; i < n; i++)
				reg_host_free(&v[i]);
			free(v);
		}
		break;
	}
	}
	free(s);
	return 0;
}
