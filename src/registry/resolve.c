// SPDX-License-Identifier: Apache-2.0
/* Fetching manifests (verified against the digest that names them) and
 * resolving a reference to one platform's image manifest. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops_internal.h"
#include "registry_internal.h"

static const char *const accept_header = "Accept: " REG_MT_OCI_MANIFEST ", " REG_MT_OCI_INDEX
					 ", " REG_MT_DOCKER_MANIFEST ", " REG_MT_DOCKER_LIST;

static bool is_index_type(const char *mt)
{
	return strcmp(mt, REG_MT_OCI_INDEX) == 0 || strcmp(mt, REG_MT_DOCKER_LIST) == 0;
}

int reg_manifest_get(struct reg_client *c, const struct reg_ref *ref, const char *reference,
		     struct reg_manifest *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	bool by_digest = strncmp(reference, "sha256:", 7) == 0;
	const char *sep = by_digest ? "@" : ":";
	if (by_digest && !reg_digest_valid(reference))
		return rs_err(err, -EINVAL, "bad manifest digest '%.80s'", reference);
	cleanup_free char *path = NULL;
	if (asprintf(&path, "manifests/%s", reference) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *headers[] = {accept_header, NULL};
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body_fd = -1,
				   .max_body = REG_MANIFEST_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	int r = reg_http_do(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (resp.status != 200)
		return reg_http_status_error(&req, &resp, "fetching manifest", err);
	if (resp.content_type && strncasecmp(resp.content_type, "text/html", 9) == 0) {
		return rs_err(err, -EBADMSG,
			      "registry %s answered HTML, not a manifest, for %s%s%s", ref->domain,
			      ref->path, sep, reference);
	}
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN];
	rs_sha256(resp.body.data, resp.body.len, sum);
	rs_digest_format(sum, dg);
	const char *want = by_digest ? reference : resp.docker_content_digest;
	if (want && strncmp(want, "sha256:", 7) == 0 && strcmp(want, dg) != 0) {
		return rs_err(err, -EBADMSG,
			      "manifest digest mismatch for %s/%s%s%s: expected %.80s, got %s",
			      ref->domain, ref->path, sep, reference, want, dg);
	}
	r = reg_manifest_parse(resp.body.data, resp.body.len, resp.content_type, out, err);
	if (r < 0)
		rs_error_prefix(err, "registry %s, manifest %s%s%s", ref->domain, ref->path, sep,
				reference);
	return r;
}

int reg_resolve(struct reg_client *c, const struct reg_ref *ref,
		const struct reg_platform *platform, struct reg_manifest *index,
		struct reg_manifest *out, struct rs_error *err)
{
	struct reg_manifest m;
	const char *reference = ref->digest ? ref->digest : ref->tag ? ref->tag : "latest";
	if (index)
		memset(index, 0, sizeof(*index));
	memset(out, 0, sizeof(*out));
	int r = reg_manifest_get(c, ref, reference, &m, err);
	if (r < 0)
		return r;
	if (!is_index_type(m.media_type)) {
		*out = m;
		return 0;
	}
	size_t i;
	if ((r = reg_platform_pick(&m, platform, &i, err)) < 0) {
		rs_error_prefix(err, "%s/%s:%s", ref->domain, ref->path, reference);
		goto fail;
	}
	const struct reg_descriptor *d = &m.manifests[i];
	if ((r = reg_manifest_get(c, ref, d->digest, out, err)) < 0)
		goto fail;
	if (is_index_type(out->media_type)) {
		r = rs_err(err, -ENOTSUP, "%s/%s: index entry %s is itself an index", ref->domain,
			   ref->path, d->digest);
		goto fail;
	}
	if ((int64_t)out->raw.len != d->size) {
		r = rs_err(err, -EBADMSG, "%s/%s: manifest %s is %zu bytes, the index says %lld",
			   ref->domain, ref->path, d->digest, out->raw.len, (long long)d->size);
		goto fail;
	}
	if (index)
		*index = m;
	else
		reg_manifest_free(&m);
	return 0;
fail:
	reg_manifest_free(out);
	reg_manifest_free(&m);
	return r;
}
