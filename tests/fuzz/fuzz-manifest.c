// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the manifest/index parser and platform choice. */
#include <string.h>

#include "registry/ops_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reg_manifest m;
	struct rs_error err;
	if (reg_manifest_parse(data, size, NULL, &m, &err) == 0) {
		struct reg_platform p = {"linux", "arm64", "v8"};
		size_t i;
		if (reg_platform_pick(&m, &p, &i, &err) == 0 && i >= m.n_manifests)
			__builtin_trap();
		for (size_t k = 0; k < m.n_layers; k++)
			if (!reg_digest_valid(m.layers[k].digest) || m.layers[k].size < 0)
				__builtin_trap();
		reg_manifest_free(&m);
	}
	return 0;
}
