// SPDX-License-Identifier: Apache-2.0
/* Opening a blob: footer and TOC in at most two reads, digest checked, index built. */
#include <errno.h>
#include <string.h>

#include "index_internal.h"

#define DEFAULT_TAIL (64 * 1024)

int esgz_open(struct esgz_reader *r, const struct esgz_open_opts *opts, struct esgz_blob **out,
	      struct rs_error *err)
{
	static const struct esgz_open_opts defaults;
	if (!opts)
		opts = &defaults;
	uint8_t want[RS_SHA256_LEN];
	if (opts->expected_toc_digest &&
	    rs_digest_parse(opts->expected_toc_digest, strlen(opts->expected_toc_digest), want) < 0)
		return rs_err(err, -EINVAL, "expected TOC digest '%s' is not a sha256 digest",
			      opts->expected_toc_digest);

	int64_t size = r->size;
	size_t tail_len = opts->tail_read ? opts->tail_read : DEFAULT_TAIL;
	if (tail_len < ESGZ_FOOTER_SIZE)
		tail_len = ESGZ_FOOTER_SIZE;
	if ((int64_t)tail_len > size)
		tail_len = (size_t)(size > 0 ? size : 0);
	cleanup_free uint8_t *tail = malloc(tail_len ? tail_len : 1);
	if (!tail)
		return rs_err(err, -ENOMEM, "out of memory");
	cleanup_free uint8_t *toc_buf = NULL;
	int rc = esgz_read_at(r, tail, tail_len, size - (int64_t)tail_len, err);
	if (rc < 0)
		return rc;

	struct esgz_blob *b = calloc(1, sizeof(*b));
	if (!b)
		return rs_err(err, -ENOMEM, "out of memory");
	b->size = size;
	rc = esgz_footer_parse(tail, tail_len, size, &b->footer, err);
	if (rc < 0)
		goto fail;

	/* The TOC is in the tail already unless it is larger than the first read. */
	const uint8_t *toc;
	int64_t tail_start = size - (int64_t)tail_len;
	if (b->footer.toc_offset >= tail_start) {
		toc = tail + (b->footer.toc_offset - tail_start);
	} else {
		if ((uint64_t)b->footer.toc_size > SIZE_MAX / 2) {
			rc = rs_err(err, -E2BIG, "TOC of %lld bytes is too large",
				    (long long)b->footer.toc_size);
			goto fail;
		}
		toc_buf = esgz_alloc_huge((size_t)b->footer.toc_size);
		if (!toc_buf) {
			rc = rs_err(err, -ENOMEM, "TOC of %lld bytes: out of memory",
				    (long long)b->footer.toc_size);
			goto fail;
		}
		rc =
		    esgz_read_at(r, toc_buf, (size_t)b->footer.toc_size, b->footer.toc_offset, err);
		if (rc < 0)
			goto fail;
		toc = toc_buf;
	}

	struct esgz_index_limits lim = {.max_entries = opts->max_entries};
	/* zstd:chunked states the JSON size; a gzip member ends with its own
	 * (mod 2^32). Either is only a hint: a lie costs address space, not memory. */
	uint64_t max_toc = opts->max_toc_size ? opts->max_toc_size : ESGZ_DEFAULT_MAX_TOC_SIZE;
	uint64_t hint =
	    b->footer.format == ESGZ_FORMAT_ZSTD_CHUNKED ? (uint64_t)b->footer.toc_raw_size
	    : b->footer.toc_size >= 4                    ? (uint64_t)toc[b->footer.toc_size - 4] |
					    (uint64_t)toc[b->footer.toc_size - 3] << 8 |
					    (uint64_t)toc[b->footer.toc_size - 2] << 16 |
					    (uint64_t)toc[b->footer.toc_size - 1] << 24
				      : 0;
	uint64_t plausible = (uint64_t)b->footer.toc_size * 64;
	lim.json_size_hint = hint < max_toc && hint < plausible ? hint : 0;
	struct esgz_toc_parser *parser;
	rc = esgz_toc_parser_new(&lim, &parser, err);
	if (rc < 0)
		goto fail;
	rc = esgz_toc_load(&b->footer, toc, (size_t)b->footer.toc_size, opts->max_toc_size, parser,
			   b->toc_digest, opts->keep_toc_json ? &b->toc_json : NULL, err);
	if (rc == 0 && opts->expected_toc_digest && memcmp(want, b->toc_digest, RS_SHA256_LEN)) {
		char got[RS_DIGEST_STR_LEN];
		rs_digest_format(b->toc_digest, got);
		rc = rs_err(err, ESGZ_EDIGEST, "TOC digest mismatch: expected %s, got %s",
			    opts->expected_toc_digest, got);
	}
	if (rc == 0)
		rc = esgz_toc_parser_finish(parser, b->footer.payload_end, &b->index, err);
	esgz_toc_parser_free(parser);
	if (rc < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	esgz_blob_free(b);
	return rc;
}

void esgz_blob_free(struct esgz_blob *b)
{
	if (!b)
		return;
	esgz_index_free(b->index);
	rs_buf_free(&b->toc_json);
	free(b);
}
