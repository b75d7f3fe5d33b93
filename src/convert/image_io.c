// SPDX-License-Identifier: Apache-2.0
/* One interface over the two kinds of image endpoint: a registry reference
 * (through src/registry) and an OCI image layout (oci_layout.c). */
#include <errno.h>
#include <string.h>

#include "convert_internal.h"

int conv_image_open(const char *spec, const struct reg_options *ro, bool for_write,
		    struct conv_image **out, struct rs_error *err)
{
	struct conv_image *im = calloc(1, sizeof(*im));
	if (!im || !(im->name = strdup(spec))) {
		free(im);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	cleanup_free char *dir = NULL;
	cleanup_free char *tag = NULL;
	int rc = conv_layout_spec(spec, &dir, &tag, err);
	if (rc > 0) {
		rc = conv_layout_open(dir, tag, for_write, &im->layout, err);
	} else if (rc == 0) {
		rc = reg_ref_parse(spec, &im->ref, err);
		im->have_ref = rc == 0;
		if (rc == 0 && for_write && !im->ref.tag)
			rc = rs_err(err, -EINVAL, "%s: a destination must name a tag", spec);
		if (rc == 0) {
			struct reg_options dflt = {0};
			rc = reg_client_new(ro ? ro : &dflt, &im->client, err);
		}
	}
	if (rc < 0) {
		conv_image_free(im);
		return rc;
	}
	*out = im;
	return 0;
}

void conv_image_free(struct conv_image *im)
{
	if (!im)
		return;
	conv_layout_free(im->layout);
	if (im->client)
		reg_client_free(im->client);
	if (im->have_ref)
		reg_ref_free(&im->ref);
	free(im->name);
	free(im);
}

static int from_registry(struct reg_manifest *m, struct conv_doc *out, const char *what,
			 struct rs_error *err)
{
	rs_buf_reset(&out->raw);
	if (rs_buf_append(&out->raw, m->raw.data, m->raw.len) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	snprintf(out->digest, sizeof(out->digest), "%s", m->digest ? m->digest : "");
	return conv_doc_parse(out, m->media_type, what, err);
}

int conv_image_root(struct conv_image *im, struct conv_doc *out, struct rs_error *err)
{
	if (im->layout)
		return conv_layout_root(im->layout, out, err);
	struct reg_manifest m = {0};
	const char *reference = im->ref.digest ? im->ref.digest : reg_ref_reference(&im->ref);
	int rc = reg_manifest_get(im->client, &im->ref, reference, &m, err);
	if (rc == 0)
		rc = from_registry(&m, out, im->name, err);
	reg_manifest_free(&m);
	return rc;
}

int conv_image_manifest(struct conv_image *im, const char *digest, const char *mt_hint,
			struct conv_doc *out, struct rs_error *err)
{
	char what[160];
	snprintf(what, sizeof(what), "%.60s: manifest %s", im->name, digest);
	int rc;
	if (im->layout) {
		cleanup_fd int fd = -1;
		if ((rc = conv_layout_blob_open(im->layout, digest, -1, &fd, err)) < 0)
			return rc;
		if ((rc = conv_fd_read_all(fd, CONV_MAX_MANIFEST, &out->raw, err)) < 0) {
			rs_error_prefix(err, "%s", what);
			return rc;
		}
		snprintf(out->digest, sizeof(out->digest), "%s", digest);
		return conv_doc_parse(out, mt_hint, what, err);
	}
	struct reg_manifest m = {0};
	rc = reg_manifest_get(im->client, &im->ref, digest, &m, err);
	if (rc == 0 && (!m.digest || strcmp(m.digest, digest) != 0))
		rc = rs_err(err, ESGZ_EDIGEST, "%s: content has digest %s", what,
			    m.digest ? m.digest : "(none)");
	if (rc == 0)
		rc = from_registry(&m, out, what, err);
	reg_manifest_free(&m);
	return rc;
}

int conv_image_blob_fd(struct conv_image *im, const char *digest, int64_t size, int *fd,
		       struct rs_error *err)
{
	if (im->layout)
		return conv_layout_blob_open(im->layout, digest, size, fd, err);
	cleanup_fd int f = -1;
	int rc = conv_tmpfile(&f, err);
	if (rc < 0)
		return rc;
	if ((rc = reg_blob_fetch(im->client, &im->ref, digest, size, f, err)) < 0)
		return rc;
	*fd = rs_steal_fd(&f);
	return 0;
}

int conv_image_blob_mem(struct conv_image *im, const char *digest, int64_t size, size_t max,
			struct rs_buf *out, struct rs_error *err)
{
	if (size < 0 || (uint64_t)size > max)
		return rs_err(err, -EFBIG, "%s: blob %s: %lld bytes, more than the %zu allowed",
			      im->name, digest, (long long)size, max);
	cleanup_fd int fd = -1;
	int rc = conv_image_blob_fd(im, digest, size, &fd, err);
	if (rc < 0)
		return rc;
	if ((rc = conv_fd_read_all(fd, max, out, err)) < 0) {
		rs_error_prefix(err, "%s: blob %s", im->name, digest);
		return rc;
	}
	return 0;
}

int conv_image_blob_reader(struct conv_image *im, const char *digest, int64_t size,
			   struct esgz_reader *r, struct rs_error *err)
{
	if (im->layout)
		return conv_layout_blob_reader(im->layout, digest, size, r, err);
	return reg_blob_reader(im->client, &im->ref, digest, size, r, err);
}

int conv_image_blob_exists(struct conv_image *im, const char *digest, int64_t size, bool *exists,
			   struct rs_error *err)
{
	if (im->layout)
		return conv_layout_blob_exists(im->layout, digest, size, exists, err);
	return reg_blob_exists(im->client, &im->ref, digest, exists, err);
}

int conv_image_put_blob(struct conv_image *im, const char *digest, int fd, int64_t size,
			const char *mount_from, struct rs_error *err)
{
	if (im->layout)
		return conv_layout_blob_put(im->layout, digest, fd, size, err);
	return reg_blob_push(im->client, &im->ref, digest, fd, size, mount_from, err);
}

int conv_image_put_blob_mem(struct conv_image *im, const char *digest, const void *data, size_t len,
			    struct rs_error *err)
{
	cleanup_fd int fd = -1;
	int rc = conv_tmpfile(&fd, err);
	if (rc < 0)
		return rc;
	if ((rc = conv_write_all(fd, data, len, err)) < 0)
		return rc;
	return conv_image_put_blob(im, digest, fd, (int64_t)len, NULL, err);
}

int conv_image_put_manifest(struct conv_image *im, const char *media_type, const char *digest,
			    const void *data, size_t len, bool tag, struct rs_error *err)
{
	if (im->layout) {
		int rc = conv_image_put_blob_mem(im, digest, data, len, err);
		if (rc == 0 && tag)
			rc = conv_layout_tag(im->layout, media_type, digest, (int64_t)len, err);
		return rc;
	}
	return reg_manifest_put(im->client, &im->ref, tag ? im->ref.tag : digest, media_type, data,
				len, err);
}

const char *conv_image_mount_source(const struct conv_image *src, const struct conv_image *dst)
{
	if (src->layout || dst->layout || strcmp(src->ref.domain, dst->ref.domain) != 0 ||
	    strcmp(src->ref.path, dst->ref.path) == 0)
		return NULL;
	return src->ref.path;
}
