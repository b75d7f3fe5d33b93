// SPDX-License-Identifier: Apache-2.0
/* Loads a TOC into a parser: the whole JSON is inflated first (the parser
 * wants it in one buffer), then hashed on a second thread while the caller's
 * thread parses, so a large TOC costs inflate plus the longer of the two. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "index_internal.h"

/* Below this many JSON bytes a second thread costs more than it saves. */
#define THREAD_MIN_JSON (1u << 20)

struct hash_job {
	const uint8_t *json;
	size_t len;
	uint8_t *digest;
	struct rs_buf *keep;
	int rc;
};

static void *hash_json(void *arg)
{
	struct hash_job *h = arg;
	rs_sha256(h->json, h->len, h->digest);
	if (h->keep && rs_buf_append(h->keep, h->json, h->len) < 0)
		h->rc = -ENOMEM;
	return NULL;
}

int esgz_toc_load(const struct esgz_footer *f, const uint8_t *data, size_t len, uint64_t max_size,
		  struct esgz_toc_parser *parser, uint8_t digest[RS_SHA256_LEN],
		  struct rs_buf *keep, struct rs_error *err)
{
	struct esgz_toc_json j;
	int rc = esgz_toc_inflate(f, data, len, max_size, &j, err);
	if (rc < 0)
		return rc;
	/* The parser only reads the JSON, so the hash can read it at the same time. */
	struct hash_job h = {j.json, j.len, digest, keep, 0};
	pthread_t th;
	bool threaded = j.len >= THREAD_MIN_JSON && pthread_create(&th, NULL, hash_json, &h) == 0;
	if (!threaded)
		hash_json(&h);
	rc = esgz_toc_parser_parse(parser, j.json, j.len, err);
	if (threaded)
		pthread_join(th, NULL);
	if (rc == 0 && h.rc < 0)
		rc = rs_err(err, h.rc, "out of memory");
	free(j.buf);
	return rc;
}
