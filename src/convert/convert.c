// SPDX-License-Identifier: Apache-2.0
/* conv_convert: an image (one platform, or every platform of an index) into
 * eStargz. Layers first (layer.c), then each platform's config (new diff_ids)
 * and manifest, then the index when there are several, the tag last. */
#include <errno.h>
#include <string.h>

#include "convert_internal.h"

/* A converted platform image, ready to be written. */
struct conv_out {
	char media_type[96];
	char digest[RS_DIGEST_STR_LEN];
	struct rs_buf raw;
};

static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

static void emit(struct conv_ctx *cx, const struct conv_event *ev)
{
	if (cx->progress && cx->progress->fn)
		cx->progress->fn(cx->progress->ctx, ev);
}

/* The config with rootfs.diff_ids replaced, everything else as it was. */
static int rewrite_config(json_t *cfg, json_t *diff_ids, struct rs_buf *raw,
			  char digest[RS_DIGEST_STR_LEN], struct rs_error *err)
{
	json_t *rootfs = json_object_get(cfg, "rootfs");
	if (json_object_set(rootfs, "diff_ids", diff_ids) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return conv_json_dump(cfg, raw, digest, err);
}

static int load_config(struct conv_ctx *cx, json_t *cdesc, struct rs_buf *raw, json_t **cfg,
		       struct rs_error *err)
{
	const char *mt, *dg;
	int64_t size;
	int rc = conv_desc_get(cdesc, &mt, &dg, &size, "config", err);
	if (rc < 0 || (rc = conv_image_blob_mem(cx->src, dg, size, CONV_MAX_CONFIG, raw, err)) < 0)
		return rc;
	json_error_t je;
	json_t *j = json_loadb((const char *)raw->data, raw->len, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return rs_err(err, -EINVAL, "config %s: not a JSON object%s%s", dg, j ? "" : ": ",
			      j ? "" : je.text);
	}
	*cfg = j;
	return 0;
}

/* Converts one platform's manifest m; out receives the new manifest. */
static int convert_image(struct conv_ctx *cx, struct conv_doc *m, const char *platform,
			 struct conv_out *out, struct rs_error *err)
{
	json_t *cdesc = json_object_get(m->json, "config");
	json_t *layers = json_object_get(m->json, "layers");
	struct rs_buf craw = {0};
	json_t *cfg = NULL, *new_layers = json_array(), *new_ids = json_array();
	json_t *man = NULL;
	int rc = new_layers && new_ids ? 0 : rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = load_config(cx, cdesc, &craw, &cfg, err);
	json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	size_t n = json_array_size(layers);
	if (rc == 0 && (!json_is_array(ids) || json_array_size(ids) != n))
		rc = rs_err(err, -EINVAL, "config: rootfs.diff_ids has %zu entries for %zu layers",
			    json_array_size(ids), n);

	char plat[128];
	if (platform && *platform)
		snprintf(plat, sizeof(plat), "%s", platform);
	else
		snprintf(plat, sizeof(plat), "%.40s/%.40s",
			 str_or(json_string_value(json_object_get(cfg, "os")), "?"),
			 str_or(json_string_value(json_object_get(cfg, "architecture")), "?"));
	if (rc == 0) {
		struct conv_event ev = {
		    .kind = CONV_EV_IMAGE, .platform = plat, .n_layers = n, .digest = m->digest};
		emit(cx, &ev);
	}
	bool changed = false;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		uint8_t sum[RS_SHA256_LEN];
		if (!id || rs_digest_parse(id, strlen(id), sum) < 0) {
			rc = rs_err(err, -EINVAL, "config: diff_id %zu is not sha256:<64 hex>", i);
			break;
		}
		json_t *nd = NULL;
		char nid[RS_DIGEST_STR_LEN];
		rc = conv_layer(cx, json_array_get(layers, i), id, i, n, plat, &nd, nid, err);
		if (rc < 0)
			break;
		changed |= strcmp(nid, id) != 0;
		if (json_array_append_new(new_layers, nd) < 0 ||
		    json_array_append_new(new_ids, json_string(nid)) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
	}

	/* config */
	const char *cmt = json_string_value(json_object_get(cdesc, "mediaType"));
	char cdigest[RS_DIGEST_STR_LEN];
	snprintf(cdigest, sizeof(cdigest), "%s",
		 str_or(json_string_value(json_object_get(cdesc, "digest")), ""));
	if (rc == 0 && changed)
		rc = rewrite_config(cfg, new_ids, &craw, cdigest, err);
	if (rc == 0)
		rc = conv_image_put_blob_mem(cx->dst, cdigest, craw.data, craw.len, err);
	if (rc < 0)
		rs_error_prefix(err, "%s", plat);

	/* manifest */
	if (rc == 0 && !(man = json_deep_copy(m->json)))
		rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0) {
		const char *mt = cx->docker_types ? REG_MT_DOCKER_MANIFEST : REG_MT_OCI_MANIFEST;
		if (!cx->docker_types && cmt && strcmp(cmt, REG_MT_DOCKER_CONFIG) == 0)
			cmt = REG_MT_OCI_CONFIG;
		json_t *nc = json_object_get(man, "config");
		if ((cmt && json_object_set_new(nc, "mediaType", json_string(cmt)) < 0) ||
		    json_object_set_new(nc, "digest", json_string(cdigest)) < 0 ||
		    json_object_set_new(nc, "size", json_integer((json_int_t)craw.len)) < 0 ||
		    json_object_set(man, "layers", new_layers) < 0 ||
		    json_object_set_new(man, "mediaType", json_string(mt)) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		snprintf(out->media_type, sizeof(out->media_type), "%s", mt);
	}
	if (rc == 0 && json_equal(man, m->json)) {
		/* nothing changed: keep the bytes (and so the digest) */
		snprintf(out->digest, sizeof(out->digest), "%s", m->digest);
		rc = rs_buf_append(&out->raw, m->raw.data, m->raw.len) < 0
			 ? rs_err(err, -ENOMEM, "out of memory")
			 : 0;
	} else if (rc == 0) {
		rc = conv_json_dump(man, &out->raw, out->digest, err);
	}
	if (cx->res && rc == 0)
		cx->res->images++;
	json_decref(man);
	json_decref(cfg);
	json_decref(new_layers);
	json_decref(new_ids);
	rs_buf_free(&craw);
	return rc;
}

static int write_tagged(struct conv_ctx *cx, const char *mt, const char *digest,
			const struct rs_buf *raw, struct rs_error *err)
{
	int rc = conv_image_put_manifest(cx->dst, mt, digest, raw->data, raw->len, true, err);
	if (rc < 0) {
		rs_error_prefix(err, "%s", cx->dst->name);
		return rc;
	}
	if (cx->res) {
		snprintf(cx->res->digest, sizeof(cx->res->digest), "%s", digest);
		snprintf(cx->res->media_type, sizeof(cx->res->media_type), "%s", mt);
	}
	struct conv_event ev = {.kind = CONV_EV_PUSHED, .platform = "", .digest = digest};
	ev.size = (int64_t)raw->len;
	emit(cx, &ev);
	return 0;
}

static int convert_index(struct conv_ctx *cx, struct conv_doc *root, json_t *sel,
			 struct rs_error *err)
{
	bool one = !cx->o->all_platforms;
	json_t *entries = json_array();
	int rc = entries ? 0 : rs_err(err, -ENOMEM, "out of memory");
	size_t i;
	json_t *e;
	json_array_foreach(sel, i, e)
	{
		if (rc < 0)
			break;
		const char *mt, *dg;
		char ps[128];
		conv_platform_format(json_object_get(e, "platform"), ps, sizeof(ps));
		conv_desc_get(e, &mt, &dg, NULL, "index entry", NULL);
		struct conv_doc m = {0};
		struct conv_out out = {0};
		rc = conv_image_manifest(cx->src, dg, mt, &m, err);
		if (rc == 0 && !conv_mt_is_manifest(m.media_type))
			rc = rs_err(err, -EINVAL, "%s: %s is an index, not an image manifest",
				    cx->src->name, dg);
		if (rc == 0)
			rc = convert_image(cx, &m, ps, &out, err);
		if (rc == 0 && one)
			rc = write_tagged(cx, out.media_type, out.digest, &out.raw, err);
		else if (rc == 0)
			rc = conv_image_put_manifest(cx->dst, out.media_type, out.digest,
						     out.raw.data, out.raw.len, false, err);
		if (rc == 0 && !one) {
			json_t *ne = json_deep_copy(e);
			if (!ne ||
			    json_object_set_new(ne, "mediaType", json_string(out.media_type)) < 0 ||
			    json_object_set_new(ne, "digest", json_string(out.digest)) < 0 ||
			    json_object_set_new(ne, "size", json_integer((json_int_t)out.raw.len)) <
				0 ||
			    json_array_append_new(entries, ne) < 0)
				rc = rs_err(err, -ENOMEM, "out of memory");
		}
		rs_buf_free(&out.raw);
		conv_doc_free(&m);
	}
	if (rc == 0 && !one) {
		const char *mt = cx->docker_types ? REG_MT_DOCKER_LIST : REG_MT_OCI_INDEX;
		json_t *idx = json_deep_copy(root->json);
		struct rs_buf raw = {0};
		char dg[RS_DIGEST_STR_LEN];
		if (!idx || json_object_set(idx, "manifests", entries) < 0 ||
		    json_object_set_new(idx, "mediaType", json_string(mt)) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		if (rc == 0)
			rc = conv_json_dump(idx, &raw, dg, err);
		if (rc == 0)
			rc = write_tagged(cx, mt, dg, &raw, err);
		rs_buf_free(&raw);
		json_decref(idx);
	}
	json_decref(entries);
	return rc;
}

static int run(struct conv_ctx *cx, struct rs_error *err)
{
	struct reg_platform want = {0};
	cleanup_free char *want_storage = NULL;
	int rc = 0;
	if (cx->o->platform && !cx->o->all_platforms)
		rc = reg_platform_parse(cx->o->platform, &want, &want_storage, err);
	if (rc < 0)
		return rc;
	struct conv_doc root = {0};
	if ((rc = conv_image_root(cx->src, &root, err)) < 0)
		return rc;
	cx->docker_types = conv_mt_is_docker(root.media_type) && !cx->o->oci &&
			   !cx->o->zstd_chunked && !cx->dst->layout;
	cx->mount_from = conv_image_mount_source(cx->src, cx->dst);
	if (conv_mt_is_manifest(root.media_type)) {
		struct conv_out out = {0};
		rc = convert_image(cx, &root, NULL, &out, err);
		if (rc == 0)
			rc = write_tagged(cx, out.media_type, out.digest, &out.raw, err);
		rs_buf_free(&out.raw);
	} else {
		json_t *sel = NULL;
		rc = conv_index_select(cx->src->name, &root, cx->o->all_platforms ? NULL : &want,
				       &sel, err);
		if (rc == 0)
			rc = convert_index(cx, &root, sel, err);
		json_decref(sel);
	}
	conv_doc_free(&root);
	return rc;
}

int conv_convert(const char *src, const char *dst, const struct conv_options *opts,
		 const struct conv_progress *progress, struct conv_result *res,
		 struct rs_error *err)
{
	static const struct conv_options dflt = {0};
	struct conv_ctx cx = {.o = opts ? opts : &dflt, .progress = progress, .res = res};
	if (res)
		memset(res, 0, sizeof(*res));
	int rc = conv_image_open(src, cx.o->reg, false, &cx.src, err);
	if (rc == 0)
		rc = conv_image_open(dst, cx.o->reg, true, &cx.dst, err);
	if (rc == 0)
		rc = run(&cx, err);
	for (size_t i = 0; i < cx.n_done; i++)
		json_decref(cx.done[i].desc);
	free(cx.done);
	conv_image_free(cx.src);
	conv_image_free(cx.dst);
	return rc;
}
