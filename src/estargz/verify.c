// SPDX-License-Identifier: Apache-2.0
/* Whole-blob verification: every chunk against chunkDigest, every file against digest. */
#include <errno.h>
#include <string.h>

#include "estargz.h"

int esgz_verify(const struct esgz_blob *b, struct esgz_reader *r, struct esgz_verify_stats *st,
		struct rs_error *err)
{
	const struct esgz_index *idx = b->index;
	struct esgz_verify_stats local = {0};
	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	uint32_t nnodes = esgz_index_node_count(idx);
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = 0;
	struct rs_sha256 sha = {0};
	for (uint32_t id = 0; id < nnodes && rc == 0; id++) {
		const struct esgz_node *n = esgz_index_node(idx, id);
		if (n->type != ESGZ_REG || n->nchunks == 0)
			continue;
		uint32_t nc;
		const struct esgz_chunk *cs = esgz_index_chunks(idx, id, &nc);
		if (n->has_digest && (rc = rs_sha256_init(&sha)) < 0) {
			rc = rs_err(err, rc, "out of memory");
			break;
		}
		for (uint32_t k = 0; k < nc; k++) {
			const struct esgz_chunk *c = &cs[k];
			if ((size_t)c->size > cap) {
				uint8_t *nb = realloc(buf, (size_t)c->size);
				if (!nb) {
					rc = rs_err(err, -ENOMEM, "out of memory");
					break;
				}
				buf = nb;
				cap = (size_t)c->size;
			}
			rc = esgz_chunk_read(b, r, c, buf, err);
			if (rc < 0) {
				rs_error_prefix(err, "'%s' at file offset %lld",
						esgz_node_name(idx, n), (long long)c->file_offset);
				break;
			}
			if (n->has_digest)
				rs_sha256_update(&sha, buf, (size_t)c->size);
			st->chunks++;
			st->bytes += (uint64_t)c->size;
		}
		if (rc < 0)
			break;
		if (n->has_digest) {
			uint8_t sum[RS_SHA256_LEN];
			rs_sha256_final(&sha, sum);
			if (memcmp(sum, n->digest, RS_SHA256_LEN) != 0) {
				char want[RS_DIGEST_STR_LEN], got[RS_DIGEST_STR_LEN];
				rs_digest_format(n->digest, want);
				rs_digest_format(sum, got);
				rc = rs_err(err, ESGZ_EDIGEST,
					    "'%s': file digest mismatch: expected %s, got %s",
					    esgz_node_name(idx, n), want, got);
			}
		}
		st->files++;
	}
	rs_sha256_free(&sha);
	free(buf);
	return rc;
}
