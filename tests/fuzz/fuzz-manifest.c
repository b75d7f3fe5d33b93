// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the manifest/index parser, platform choice and the image config's
 * diff_ids parser. */
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
	struct reg_diff_id *ids;
	if (reg_config_parse_diff_ids(data, size, 2, &ids, &err) == 0) {
		for (size_t k = 0; k < 2; k++)
			if (!reg_digest_valid(ids[k].s))
				__builtin_trap();
		free(ids);
	}
	return 0;
}
