/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/registry: the pure helpers of the operations (manifests,
 * platforms, multipart replies, upload URLs), apart so tests reach them
 * without a server. */
#ifndef REG_OPS_INTERNAL_H
#define REG_OPS_INTERNAL_H

#include "registry_internal.h"

static inline void reg_http_resp_freep(struct reg_http_resp *r)
{
	reg_http_resp_free(r);
}
#define cleanup_resp rs_cleanup(reg_http_resp_freep)

/* A manifest or index body is never larger than this. */
#define REG_MANIFEST_MAX (4 << 20)

/* True for "sha256:" followed by 64 lowercase hex digits. */
bool reg_digest_valid(const char *s);

/* ---- image configs (config.c) -------------------------------------------- */

/* An image config is never larger than this. */
#define REG_CONFIG_MAX (16 << 20)

/* rootfs.diff_ids of a config body, checked to be n_layers digests. */
int reg_config_parse_diff_ids(const void *data, size_t len, size_t n_layers,
			      struct reg_diff_id **out, struct rs_error *err);

/* ---- platforms (platform.c) ---------------------------------------------- */

/* This host's architecture in GOARCH terms (amd64, arm64, arm, 386, ...). */
const char *reg_host_arch(void);
/* GOARCH name for a uname/alias name ("x86_64" -> "amd64"); others as given. */
const char *reg_arch_normalize(const char *arch);
/* Whether an index entry runs on platform p (NULL fields: defaults). */
bool reg_platform_match(const struct reg_platform *p, const struct reg_descriptor *d);
/* Picks the entry of index for p: *idx receives its position. -ENOENT with
 * the platforms on offer named in err when none fits. */
int reg_platform_pick(const struct reg_manifest *index, const struct reg_platform *p, size_t *idx,
		      struct rs_error *err);

/* ---- multipart/byteranges (multipart.c) ---------------------------------- */

/* Parses "bytes FIRST-LAST/TOTAL" (TOTAL may be "*": *total = -1). */
int reg_content_range_parse(const char *s, int64_t *first, int64_t *last, int64_t *total);

/* The boundary parameter of a multipart/byteranges Content-Type, into out
 * (out_size bytes). -EINVAL when the type is not multipart/byteranges or has
 * no usable boundary. */
int reg_multipart_boundary(const char *content_type, char *out, size_t out_size);

struct reg_part {
	int64_t first, last; /* inclusive, from the part's Content-Range */
	const uint8_t *data; /* points into the body */
	size_t len;          /* last - first + 1 */
};

/* Splits a multipart/byteranges body into its parts (*parts is malloc'ed).
 * Truncated or malformed bodies fail with -EBADMSG and a reason in err. */
int reg_multipart_parse(const char *content_type, const void *body, size_t len,
			struct reg_part **parts, size_t *n, struct rs_error *err);

/* ---- range reads (blob.c) ------------------------------------------------ */

struct reg_span {
	int64_t off, end; /* [off, end) */
};

/* The non-empty ranges sorted, overlapping and adjacent ones merged
 * (*out is malloc'ed). -EINVAL for negative or overflowing ranges. */
int reg_spans_make(const struct reg_range *ranges, size_t n, struct reg_span **out, size_t *ns,
		   struct rs_error *err);
/* Copies span s out of the reply parts into every range it overlaps; false
 * when the parts miss a byte of s. */
bool reg_spans_fill(const struct reg_span *s, const struct reg_part *parts, size_t np,
		    struct reg_range *ranges, size_t n);

/* ---- upload URLs (push.c) ------------------------------------------------- */

/* Where an upload continues: an absolute URL or absolute path from Location
 * as it is, a relative one resolved against /v2/<repo>/blobs/uploads/.
 * NULL on allocation failure. */
char *reg_upload_url(const char *repo, const char *location);
/* url with "key=value" added to its query ('?' or '&' as needed). */
char *reg_url_add_query(const char *url, const char *key, const char *value);

#endif
