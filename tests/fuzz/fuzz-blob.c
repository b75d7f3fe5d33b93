// SPDX-License-Identifier: Apache-2.0
/* Fuzzes a whole blob: footer, TOC decompression, TOC parse, then verify. */
#include "estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct esgz_reader r;
	esgz_reader_init_mem(&r, data, size);
	struct esgz_blob *b = NULL;
	struct rs_error err;
	struct esgz_open_opts o = {.max_entries = 10000, .max_toc_size = 4 << 20};
	if (esgz_open(&r, &o, &b, &err) == 0) {
		(void)esgz_verify(b, &r, NULL, &err);
		esgz_blob_free(b);
	}
	esgz_reader_close(&r);
	return 0;
}
