// SPDX-License-Identifier: Apache-2.0
/* Fuzzes a kept TOC file (CACHE_DIR/toc/<hex>) as a layer open reads it: the
 * header checks, then esgz_open over the tail it holds. The blob digest is
 * taken from the input's own header, so inputs get past that check. */
#include <string.h>

#include "layerfs/layerfs_internal.h"

/* Where the blob digest sits in the header: after magic, version, size. */
#define DIGEST_AT 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t blob[RS_SHA256_LEN] = {0};
	if (size >= DIGEST_AT + RS_SHA256_LEN)
		memcpy(blob, data + DIGEST_AT, RS_SHA256_LEN);
	struct lfs_toc_tail t;
	char why[160];
	if (lfs_toc_check(data, size, blob, &t, why, sizeof(why)))
		return 0;
	struct esgz_reader r;
	esgz_reader_init_tail(&r, t.data, t.len, t.blob_size);
	if (!r.ctx)
		return 0;
	struct esgz_open_opts o = {
	    .max_entries = 10000, .max_toc_size = 4 << 20, .tail_read = t.len};
	struct esgz_blob *b = NULL;
	struct rs_error err;
	if (esgz_open(&r, &o, &b, &err) == 0)
		esgz_blob_free(b);
	esgz_reader_close(&r);
	return 0;
}
