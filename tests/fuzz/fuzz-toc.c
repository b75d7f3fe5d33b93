// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the TOC JSON parser and index validation, then walks the index. */
#include <string.h>

#include "estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct esgz_index *idx = NULL;
	struct rs_error err;
	struct esgz_index_limits lim = {.max_entries = 10000};
	if (esgz_index_parse(data, size, &lim, 1 << 20, &idx, &err) == 0) {
		uint32_t n = esgz_index_node_count(idx);
		for (uint32_t i = 0; i < n; i++) {
			const struct esgz_node *node = esgz_index_node(idx, i);
			const char *name = esgz_node_name(idx, node);
			if (esgz_index_lookup(idx, name, strlen(name)) == ESGZ_NONE &&
			    node->parent != ESGZ_NONE)
				__builtin_trap(); /* a linked node must be found by its path */
			uint32_t nk;
			const uint32_t *kids = esgz_index_children(idx, i, &nk);
			for (uint32_t k = 0; k < nk; k++)
				if (esgz_index_node(idx, kids[k])->parent != i)
					__builtin_trap();
			if (node->type == ESGZ_REG && node->size > 0)
				(void)esgz_index_chunk_at(idx, i, node->size - 1);
		}
		esgz_index_free(idx);
	}
	return 0;
}
