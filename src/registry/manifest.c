// SPDX-License-Identifier: Apache-2.0
/* Parsing image manifests and indexes (OCI and docker schema 2) from
 * untrusted JSON into struct reg_manifest. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ops_internal.h"

bool reg_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0)
		return false;
	s += 7;
	size_t i;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

static void kv_free(struct reg_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void descriptor_free(struct reg_descriptor *d)
{
	free(d->media_type);
	free(d->digest);
	kv_free(d->annotations, d->n_annotations);
	free(d->os);
	free(d->arch);
	free(d->variant);
	memset(d, 0, sizeof(*d));
}

void reg_manifest_free(struct reg_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	free(m->digest);
	rs_buf_free(&m->raw);
	descriptor_free(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		descriptor_free(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->n_manifests; i++)
		descriptor_free(&m->manifests[i]);
	free(m->manifests);
	kv_free(m->annotations, m->n_annotations);
	memset(m, 0, sizeof(*m));
}

const char *reg_descriptor_annotation(const struct reg_descriptor *d, const char *key)
{
	for (size_t i = 0; d && i < d->n_annotations; i++)
		if (strcmp(d->annotations[i].key, key) == 0)
			return d->annotations[i].value;
	return NULL;
}

/* A string member, or NULL when absent; -EINVAL when present but not a string. */
static int opt_string(json_t *obj, const char *key, const char *what, char **out,
		      struct rs_error *err)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return rs_err(err, -EINVAL, "%s: \"%s\" is not a string", what, key);
	*out = strdup(json_string_value(v));
	return *out ? 0 : rs_err(err, -ENOMEM, "out of memory");
}

static int parse_annotations(json_t *obj, const char *what, struct reg_kv **out, size_t *n,
			     struct rs_error *err)
{
	json_t *a = json_object_get(obj, "annotations");
	*out = NULL;
	*n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_object(a))
		return rs_err(err, -EINVAL, "%s: \"annotations\" is not an object", what);
	size_t cnt = json_object_size(a);
	if (cnt == 0)
		return 0;
	struct reg_kv *kv = calloc(cnt, sizeof(*kv));
	if (!kv)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *k;
	json_t *v;
	size_t i = 0;
	json_object_foreach(a, k, v)
	{
		if (!json_is_string(v)) {
			kv_free(kv, i);
			return rs_err(err, -EINVAL, "%s: annotation \"%s\" is not a string", what,
				      k);
		}
		kv[i].key = strdup(k);
		kv[i].value = strdup(json_string_value(v));
		i++;
		if (!kv[i - 1].key || !kv[i - 1].value) {
			kv_free(kv, i);
			return rs_err(err, -ENOMEM, "out of memory");
		}
	}
	*out = kv;
	*n = i;
	return 0;
}

static int parse_descriptor(json_t *o, const char *what, bool with_platform,
			    struct reg_descriptor *d, struct rs_error *err)
{
	int r;
	if (!json_is_object(o))
		return rs_err(err, -EINVAL, "%s is not an object", what);
	if ((r = opt_string(o, "mediaType", what, &d->media_type, err)) < 0)
		return r;
	if (!d->media_type)
		return rs_err(err, -EINVAL, "%s has no mediaType", what);
	if ((r = opt_string(o, "digest", what, &d->digest, err)) < 0)
		return r;
	if (!reg_digest_valid(d->digest))
		return rs_err(err, -EINVAL, "%s: bad digest '%.80s' (want sha256:<64 hex>)", what,
			      d->digest ? d->digest : "");
	json_t *size = json_object_get(o, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return rs_err(err, -EINVAL, "%s (%s): size missing or negative", what, d->digest);
	d->size = json_integer_value(size);
	if ((r = parse_annotations(o, what, &d->annotations, &d->n_annotations, err)) < 0)
		return r;
	json_t *p = json_object_get(o, "platform");
	if (!with_platform || !p || json_is_null(p))
		return 0;
	if (!json_is_object(p))
		return rs_err(err, -EINVAL, "%s: \"platform\" is not an object", what);
	if ((r = opt_string(p, "os", what, &d->os, err)) < 0 ||
	    (r = opt_string(p, "architecture", what, &d->arch, err)) < 0 ||
	    (r = opt_string(p, "variant", what, &d->variant, err)) < 0)
		return r;
	return 0;
}

static int parse_descriptor_array(json_t *root, const char *key, bool with_platform,
				  struct reg_descriptor **out, size_t *n, struct rs_error *err)
{
	json_t *a = json_object_get(root, key);
	if (!json_is_array(a))
		return rs_err(err, -EINVAL, "\"%s\" is missing or not an array", key);
	size_t cnt = json_array_size(a);
	*out = NULL;
	*n = 0;
	if (cnt == 0)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return rs_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < cnt; i++) {
		char what[64];
		snprintf(what, sizeof(what), "%s[%zu]", key, i);
		*n = i + 1;
		int r =
		    parse_descriptor(json_array_get(a, i), what, with_platform, &(*out)[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The media type part of a Content-Type ("type/sub; charset=..."), or NULL
 * for types that say nothing about the manifest kind. */
static char *hint_type(const char *hint)
{
	if (!hint)
		return NULL;
	while (*hint == ' ')
		hint++;
	size_t n = strcspn(hint, "; \t");
	if (n == 0 || (n == 16 && strncasecmp(hint, "application/json", 16) == 0) ||
	    (n == 10 && strncasecmp(hint, "text/plain", 10) == 0) ||
	    (n == 24 && strncasecmp(hint, "application/octet-stream", 24) == 0))
		return NULL;
	return strndup(hint, n);
}

static bool is_html(const uint8_t *p, size_t len)
{
	while (len && isspace(*p)) {
		p++;
		len--;
	}
	return len && *p == '<';
}

static int parse_root(json_t *root, const char *hint, struct reg_manifest *out,
		      struct rs_error *err)
{
	int r;
	if (!json_is_object(root))
		return rs_err(err, -EINVAL, "manifest is not a JSON object");
	json_t *sv = json_object_get(root, "schemaVersion");
	if (json_is_integer(sv) && json_integer_value(sv) == 1)
		return rs_err(err, -ENOTSUP,
			      "docker schema 1 manifests are not supported (schemaVersion 1)");
	if (sv && !(json_is_integer(sv) && json_integer_value(sv) == 2))
		return rs_err(err, -EINVAL, "unsupported manifest schemaVersion");
	if ((r = opt_string(root, "mediaType", "manifest", &out->media_type, err)) < 0)
		return r;
	if (!out->media_type)
		out->media_type = hint_type(hint);
	if (!out->media_type) {
		/* OCI made mediaType optional at first: tell the kinds apart by shape. */
		if (json_is_array(json_object_get(root, "manifests")))
			out->media_type = strdup(REG_MT_OCI_INDEX);
		else if (json_is_object(json_object_get(root, "config")))
			out->media_type = strdup(REG_MT_OCI_MANIFEST);
		else
			return rs_err(err, -EINVAL, "manifest has no mediaType");
		if (!out->media_type)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	const char *mt = out->media_type;
	if (strncmp(mt, "application/vnd.docker.distribution.manifest.v1", 47) == 0)
		return rs_err(err, -ENOTSUP, "docker schema 1 manifests are not supported (%s)",
			      mt);
	if (strcmp(mt, REG_MT_OCI_MANIFEST) == 0 || strcmp(mt, REG_MT_DOCKER_MANIFEST) == 0) {
		if ((r = parse_descriptor(json_object_get(root, "config"), "config", false,
					  &out->config, err)) < 0)
			return r;
		if ((r = parse_descriptor_array(root, "layers", false, &out->layers, &out->n_layers,
						err)) < 0)
			return r;
	} else if (strcmp(mt, REG_MT_OCI_INDEX) == 0 || strcmp(mt, REG_MT_DOCKER_LIST) == 0) {
		if ((r = parse_descriptor_array(root, "manifests", true, &out->manifests,
						&out->n_manifests, err)) < 0)
			return r;
	} else {
		return rs_err(err, -ENOTSUP, "unsupported media type %.200s", mt);
	}
	return parse_annotations(root, "manifest", &out->annotations, &out->n_annotations, err);
}

int reg_manifest_parse(const void *data, size_t len, const char *media_type_hint,
		       struct reg_manifest *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	if (len > REG_MANIFEST_MAX)
		return rs_err(err, -EFBIG, "manifest of %zu bytes is larger than the %d byte limit",
			      len, REG_MANIFEST_MAX);
	if (is_html(data, len))
		return rs_err(err, -EBADMSG, "expected a JSON manifest, got HTML");
	json_error_t je;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return rs_err(err, -EBADMSG, "manifest is not valid JSON (line %d: %s)", je.line,
			      je.text);
	int r = parse_root(root, media_type_hint, out, err);
	json_decref(root);
	if (r == 0 && rs_buf_append(&out->raw, data, len) < 0)
		r = rs_err(err, -ENOMEM, "out of memory");
	if (r == 0) {
		uint8_t sum[RS_SHA256_LEN];
		char dg[RS_DIGEST_STR_LEN];
		rs_sha256(data, len, sum);
		rs_digest_format(sum, dg);
		out->digest = strdup(dg);
		if (!out->digest)
			r = rs_err(err, -ENOMEM, "out of memory");
	}
	if (r < 0)
		reg_manifest_free(out);
	return r;
}
