// SPDX-License-Identifier: Apache-2.0
/* Manifests, indexes and descriptors as JSON: parse, check, annotate, dump. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "convert_internal.h"

bool conv_mt_is_index(const char *mt)
{
	return strcmp(mt, REG_MT_OCI_INDEX) == 0 || strcmp(mt, REG_MT_DOCKER_LIST) == 0;
}

bool conv_mt_is_manifest(const char *mt)
{
	return strcmp(mt, REG_MT_OCI_MANIFEST) == 0 || strcmp(mt, REG_MT_DOCKER_MANIFEST) == 0;
}

bool conv_mt_is_docker(const char *mt)
{
	return strncmp(mt, "application/vnd.docker.", 23) == 0;
}

int conv_doc_parse(struct conv_doc *d, const char *hint, const char *what, struct rs_error *err)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)d->raw.data, d->raw.len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return rs_err(err, -EINVAL, "%s: not valid JSON (line %d: %s)", what, je.line,
			      je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return rs_err(err, -EINVAL, "%s: not a JSON object", what);
	}
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	if (!mt || !*mt)
		mt = hint && *hint ? hint : NULL;
	if (!mt)
		mt = json_is_array(json_object_get(j, "manifests")) ? REG_MT_OCI_INDEX
								    : REG_MT_OCI_MANIFEST;
	if (!conv_mt_is_index(mt) && !conv_mt_is_manifest(mt)) {
		int rc = rs_err(err, -ENOTSUP, "%s: unsupported media type '%.80s'", what, mt);
		json_decref(j);
		return rc;
	}
	json_int_t sv = json_integer_value(json_object_get(j, "schemaVersion"));
	if (sv != 2) {
		json_decref(j);
		return rs_err(err, -ENOTSUP, "%s: schemaVersion %lld is not supported (want 2)",
			      what, (long long)sv);
	}
	const char *key = conv_mt_is_index(mt) ? "manifests" : "layers";
	json_t *arr = json_object_get(j, key);
	size_t max = conv_mt_is_index(mt) ? CONV_MAX_MANIFESTS : CONV_MAX_LAYERS;
	if (!json_is_array(arr) || json_array_size(arr) > max) {
		json_decref(j);
		return rs_err(err, -EINVAL, "%s: '%s' is missing, not an array or longer than %zu",
			      what, key, max);
	}
	if (conv_mt_is_manifest(mt) && !json_is_object(json_object_get(j, "config"))) {
		json_decref(j);
		return rs_err(err, -EINVAL, "%s: manifest has no config descriptor", what);
	}
	snprintf(d->media_type, sizeof(d->media_type), "%s", mt);
	json_decref(d->json);
	d->json = j;
	return 0;
}

void conv_doc_free(struct conv_doc *d)
{
	rs_buf_free(&d->raw);
	json_decref(d->json);
	d->json = NULL;
}

int conv_desc_get(json_t *desc, const char **media_type, const char **digest, int64_t *size,
		  const char *what, struct rs_error *err)
{
	if (!json_is_object(desc))
		return rs_err(err, -EINVAL, "%s: descriptor is not an object", what);
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	const char *dg = json_string_value(json_object_get(desc, "digest"));
	json_t *sz = json_object_get(desc, "size");
	uint8_t sum[RS_SHA256_LEN];
	if (!mt || !*mt)
		return rs_err(err, -EINVAL, "%s: descriptor has no mediaType", what);
	if (!dg || rs_digest_parse(dg, strlen(dg), sum) < 0)
		return rs_err(err, -EINVAL, "%s: descriptor digest '%.80s' is not sha256:<64 hex>",
			      what, dg ? dg : "");
	if (!json_is_integer(sz) || json_integer_value(sz) < 0)
		return rs_err(err, -EINVAL, "%s: descriptor size is missing or negative", what);
	if (media_type)
		*media_type = mt;
	if (digest)
		*digest = dg;
	if (size)
		*size = json_integer_value(sz);
	return 0;
}

const char *conv_desc_annotation(json_t *desc, const char *key)
{
	return json_string_value(json_object_get(json_object_get(desc, "annotations"), key));
}

int conv_desc_set_annotation(json_t *desc, const char *key, const char *value)
{
	json_t *a = json_object_get(desc, "annotations");
	if (!json_is_object(a)) {
		a = json_object();
		if (!a || json_object_set_new(desc, "annotations", a) < 0)
			return -ENOMEM;
	}
	return json_object_set_new(a, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

void conv_desc_del_annotation(json_t *desc, const char *key)
{
	json_t *a = json_object_get(desc, "annotations");
	if (json_is_object(a))
		json_object_del(a, key);
}

int conv_json_dump(json_t *j, struct rs_buf *out, char digest[RS_DIGEST_STR_LEN],
		   struct rs_error *err)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if (!s)
		return rs_err(err, -ENOMEM, "JSON: out of memory");
	size_t len = strlen(s);
	rs_buf_reset(out);
	int rc = rs_buf_append(out, s, len);
	free(s);
	if (rc < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(out->data, out->len, sum);
	rs_digest_format(sum, digest);
	return 0;
}
