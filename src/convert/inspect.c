// SPDX-License-Identifier: Apache-2.0
/* conv_inspect: an image's index, manifest, config and, per layer, what its
 * footer and TOC say (read with two range requests, not a download). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "convert_internal.h"

static int set(json_t *o, const char *k, json_t *v)
{
	return json_object_set_new(o, k, v ? v : json_null());
}

/* Errors that say "this blob is not eStargz" rather than "could not read it". */
static bool format_error(int rc)
{
	return rc == -EINVAL || rc == -ENOTSUP || rc == -EFBIG || rc == ESGZ_EDIGEST ||
	       rc == -E2BIG || rc == -EOVERFLOW;
}

/* A layer's report; an error when its blob could not be read at all. */
static int layer_info(struct conv_image *im, json_t *desc, size_t i, json_t **out,
		      struct rs_error *err)
{
	json_t *o = *out = json_object();
	if (!o)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *mt, *dg;
	int64_t size;
	struct rs_error e = {0};
	char what[32];
	snprintf(what, sizeof(what), "layer %zu", i + 1);
	if (conv_desc_get(desc, &mt, &dg, &size, what, &e) < 0) {
		set(o, "error", json_string(e.msg));
		return 0;
	}
	set(o, "digest", json_string(dg));
	set(o, "mediaType", json_string(mt));
	set(o, "size", json_integer(size));
	const char *ann = conv_desc_annotation(desc, ESGZ_ANNOTATION_TOC_DIGEST);
	const char *usize = conv_desc_annotation(desc, ESGZ_ANNOTATION_UNCOMPRESSED_SIZE);
	set(o, "tocDigestAnnotation", ann ? json_string(ann) : NULL);
	set(o, "uncompressedSizeAnnotation", usize ? json_string(usize) : NULL);

	struct esgz_reader r = {0};
	struct esgz_blob *b = NULL;
	struct esgz_open_opts oo = {.tail_read = 16384};
	int rc = conv_image_blob_reader(im, dg, size, &r, &e);
	if (rc == 0) {
		rc = esgz_open(&r, &oo, &b, &e);
		esgz_reader_close(&r);
	}
	if (rc < 0 && !format_error(rc))
		return rs_err(err, rc, "%s: layer %s: %s", im->name, dg, e.msg);
	if (rc < 0) {
		set(o, "format", json_string("not eStargz"));
		set(o, "reason", json_string(e.msg));
		set(o, "tocDigest", NULL);
		return 0;
	}
	char toc[RS_DIGEST_STR_LEN];
	rs_digest_format(b->toc_digest, toc);
	const char *fmt = b->footer.format == ESGZ_FORMAT_ZSTD_CHUNKED ? "zstd:chunked"
			  : b->footer.format == ESGZ_FORMAT_ESTARGZ    ? "estargz"
								       : "stargz";
	set(o, "format", json_string(fmt));
	set(o, "tocDigest", json_string(toc));
	if (ann)
		set(o, "tocDigestMatches", json_boolean(strcmp(ann, toc) == 0));
	set(o, "tocEntries", json_integer((json_int_t)esgz_index_toc_entries(b->index)));
	set(o, "tocOffset", json_integer(b->footer.toc_offset));
	esgz_blob_free(b);
	return 0;
}

static int inspect_image(struct conv_image *im, struct conv_doc *m, json_t *out,
			 struct rs_error *err)
{
	set(out, "manifestDigest", json_string(m->digest));
	set(out, "manifestMediaType", json_string(m->media_type));
	set(out, "manifest", json_incref(m->json));
	const char *cdg;
	int64_t csize;
	int rc =
	    conv_desc_get(json_object_get(m->json, "config"), NULL, &cdg, &csize, "config", err);
	if (rc < 0) {
		rs_error_prefix(err, "%s", im->name);
		return rc;
	}
	struct rs_buf raw = {0};
	if ((rc = conv_image_blob_mem(im, cdg, csize, CONV_MAX_CONFIG, &raw, err)) < 0)
		return rc;
	json_error_t je;
	json_t *cfg = json_loadb((const char *)raw.data, raw.len, 0, &je);
	rs_buf_free(&raw);
	if (!cfg)
		return rs_err(err, -EINVAL, "%s: config %s: not valid JSON: %s", im->name, cdg,
			      je.text);
	set(out, "configDigest", json_string(cdg));
	set(out, "config", cfg);
	json_t *layers = json_array();
	set(out, "layers", layers);
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(m->json, "layers"), i, d)
	{
		json_t *li = NULL;
		rc = layer_info(im, d, i, &li, err);
		if (rc == 0 && json_array_append_new(layers, li) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		else if (rc < 0)
			json_decref(li);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int inspect(struct conv_image *im, const struct conv_inspect_options *o, json_t *out,
		   struct rs_error *err)
{
	struct reg_platform want = {0};
	cleanup_free char *want_storage = NULL;
	int rc = 0;
	if (o && o->platform)
		rc = reg_platform_parse(o->platform, &want, &want_storage, err);
	if (rc < 0)
		return rc;
	struct conv_doc root = {0};
	if ((rc = conv_image_root(im, &root, err)) < 0)
		return rc;
	if (conv_mt_is_manifest(root.media_type)) {
		rc = inspect_image(im, &root, out, err);
		conv_doc_free(&root);
		return rc;
	}
	json_t *idx = json_object();
	set(idx, "digest", json_string(root.digest));
	set(idx, "mediaType", json_string(root.media_type));
	set(idx, "index", json_incref(root.json));
	set(out, "index", idx);
	json_t *sel = NULL;
	struct conv_doc m = {0};
	rc = conv_index_select(im->name, &root, &want, &sel, err);
	if (rc == 0) {
		json_t *e = json_array_get(sel, 0);
		const char *mt = json_string_value(json_object_get(e, "mediaType"));
		const char *dg = json_string_value(json_object_get(e, "digest"));
		char ps[128];
		conv_platform_format(json_object_get(e, "platform"), ps, sizeof(ps));
		set(out, "platform", json_string(ps));
		rc = conv_image_manifest(im, dg, mt, &m, err);
	}
	if (rc == 0)
		rc = inspect_image(im, &m, out, err);
	conv_doc_free(&m);
	json_decref(sel);
	conv_doc_free(&root);
	return rc;
}

int conv_inspect(const char *ref, const struct conv_inspect_options *opts, FILE *out,
		 struct rs_error *err)
{
	struct conv_image *im = NULL;
	int rc = conv_image_open(ref, opts ? opts->reg : NULL, false, &im, err);
	if (rc < 0)
		return rc;
	json_t *o = json_object();
	if (!o) {
		conv_image_free(im);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	set(o, "reference", json_string(ref));
	rc = inspect(im, opts, o, err);
	if (rc == 0 &&
	    (json_dumpf(o, out, JSON_INDENT(2)) < 0 || fputc('\n', out) == EOF || fflush(out) != 0))
		rc = rs_err(err, -EIO, "writing the report: %s", strerror(errno ? errno : EIO));
	json_decref(o);
	conv_image_free(im);
	return rc;
}
