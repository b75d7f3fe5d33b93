// SPDX-License-Identifier: Apache-2.0
/* The image config's rootfs.diff_ids: what each layer must give once
 * uncompressed. The config comes from the registry, so it is bounded before
 * it is asked for, checked against the manifest's digest and size, and every
 * entry must be a digest. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "ops_internal.h"
#include "registry_internal.h"

int reg_config_parse_diff_ids(const void *data, size_t len, size_t n_layers,
			      struct reg_diff_id **out, struct rs_error *err)
{
	*out = NULL;
	if (len > REG_CONFIG_MAX)
		return rs_err(err, -EFBIG, "config of %zu bytes is larger than the %d byte limit",
			      len, REG_CONFIG_MAX);
	json_error_t je;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return rs_err(err, -EBADMSG, "config is not valid JSON (line %d: %s)", je.line,
			      je.text);
	int r = 0;
	json_t *rootfs = json_object_get(root, "rootfs");
	json_t *ids = json_object_get(rootfs, "diff_ids");
	struct reg_diff_id *v = NULL;
	if (!json_is_object(root)) {
		r = rs_err(err, -EBADMSG, "config is not a JSON object");
	} else if (!json_is_object(rootfs)) {
		r = rs_err(err, -EBADMSG, "config has no \"rootfs\" object");
	} else if (!json_is_array(ids)) {
		r = rs_err(err, -EBADMSG, "config has no \"rootfs.diff_ids\" array");
	} else if (json_array_size(ids) != n_layers) {
		r = rs_err(err, -EBADMSG, "config has %zu diff_ids for the manifest's %zu layers",
			   json_array_size(ids), n_layers);
	} else if (n_layers && !(v = calloc(n_layers, sizeof(*v)))) {
		r = rs_err(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; r == 0 && i < n_layers; i++) {
		const char *s = json_string_value(json_array_get(ids, i));
		if (!reg_digest_valid(s))
			r = rs_err(err, -EBADMSG,
				   "rootfs.diff_ids[%zu] '%.80s' is not sha256:<64 hex digits>", i,
				   s ? s : "(not a string)");
		else
			snprintf(v[i].s, sizeof(v[i].s), "%s", s);
	}
	json_decref(root);
	if (r < 0) {
		free(v);
		return r;
	}
	*out = v;
	return 0;
}

int reg_config_diff_ids(struct reg_client *c, const struct reg_ref *ref,
			const struct reg_manifest *m, struct reg_diff_id **out,
			struct rs_error *err)
{
	const struct reg_descriptor *d = &m->config;
	*out = NULL;
	if (!reg_digest_valid(d->digest))
		return rs_err(err, -EINVAL, "the manifest's config digest '%.80s' is not a digest",
			      d->digest ? d->digest : "");
	if (d->size < 0 || d->size > REG_CONFIG_MAX)
		return rs_err(err, -EFBIG,
			      "config %s: the manifest gives it %lld bytes, more than the %d byte "
			      "limit",
			      d->digest, (long long)d->size, REG_CONFIG_MAX);
	cleanup_free char *path = NULL;
	if (asprintf(&path, "blobs/%s", d->digest) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .body_fd = -1,
				   .max_body = d->size > 0 ? d->size : 1};
	cleanup_resp struct reg_http_resp resp = {0};
	int r = reg_http_do(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (resp.status != 200)
		return reg_http_status_error(&req, &resp, "fetching the config", err);
	if ((int64_t)resp.body.len != d->size)
		return rs_err(err, -EBADMSG,
			      "registry %s: config %s is %zu bytes, the manifest says %lld",
			      ref->domain, d->digest, resp.body.len, (long long)d->size);
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN];
	rs_sha256(resp.body.data, resp.body.len, sum);
	rs_digest_format(sum, dg);
	if (strcmp(dg, d->digest) != 0)
		return rs_err(err, -EBADMSG, "registry %s: config %s has digest %s", ref->domain,
			      d->digest, dg);
	r = reg_config_parse_diff_ids(resp.body.data, resp.body.len, m->n_layers, out, err);
	if (r < 0)
		rs_error_prefix(err, "registry %s, config %s", ref->domain, d->digest);
	return r;
}
