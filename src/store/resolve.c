/* SPDX-License-Identifier: Apache-2.0 */
/* From a looked-up (reference, layer digest) to a mounted layer: the image's
 * manifest and config (once per reference), the layer's descriptor and its
 * TOC digest annotation, the layer opened with layerfs (footer and TOC, the
 * TOC checked against the annotation) and mounted under ROOT/mnt, shared by
 * every reference that names the same blob. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "estargz/estargz.h"
#include "store_internal.h"

void store_ref_free(struct store_ref *r)
{
	if (!r)
		return;
	free(r->ref);
	reg_ref_free(&r->parsed);
	reg_manifest_free(&r->m);
	free(r->diff_ids);
	free(r);
}

void store_layer_free(struct store_layer *l)
{
	if (!l)
		return;
	rs_buf_free(&l->info);
	free(l);
}

void store_mounts_close(struct store *s)
{
	struct store_mount *m = s->mounts;
	s->mounts = NULL;
	while (m) {
		struct store_mount *next = m->next;
		if (m->layer)
			lfs_layer_close(m->layer);
		if (rmdir(m->path) < 0 && errno != ENOENT)
			rs_log(RS_LOG_WARN, "store: %s: %s", m->path, strerror(errno));
		free(m->path);
		free(m);
		m = next;
	}
}

/* The image the reference names, fetched once (again when asked for a
 * layer it does not hold: the tag may have moved). */
static int ensure_image(struct store *s, struct store_ref *r, bool refresh, struct rs_error *err)
{
	if (r->resolved && !refresh)
		return 0;
	struct reg_manifest m = {0};
	struct reg_diff_id *ids = NULL;
	int rc = reg_resolve(s->o.client, &r->parsed, NULL, NULL, &m, err);
	if (rc == 0)
		rc = reg_config_diff_ids(s->o.client, &r->parsed, &m, &ids, err);
	if (rc < 0) {
		reg_manifest_free(&m);
		rs_error_prefix(err, "%s", r->ref);
		return rc;
	}
	reg_manifest_free(&r->m);
	free(r->diff_ids);
	r->m = m;
	r->diff_ids = ids;
	r->resolved = true;
	return 0;
}

static const struct reg_descriptor *find_layer(const struct store_ref *r, const char *digest,
					       size_t *index)
{
	for (size_t i = 0; r->resolved && i < r->m.n_layers; i++)
		if (strcmp(r->m.layers[i].digest, digest) == 0) {
			*index = i;
			return &r->m.layers[i];
		}
	return NULL;
}

static struct store_mount *find_mount(struct store *s, const char *digest)
{
	for (struct store_mount *m = s->mounts; m; m = m->next)
		if (m->layer && strcmp(m->digest, digest) == 0)
			return m;
	return NULL;
}

/* Opens the blob with layerfs and mounts it at ROOT/mnt/<hex>. */
static int mount_layer(struct store *s, struct store_ref *r, const struct reg_descriptor *d,
		       const char *toc_digest, const char *diff_id, struct store_mount **out,
		       struct rs_error *err)
{
	struct store_mount *m = calloc(1, sizeof(*m));
	if (!m)
		return rs_err(err, -ENOMEM, "out of memory");
	snprintf(m->digest, sizeof(m->digest), "%s", d->digest);
	if (asprintf(&m->path, "%s/%s", s->mnt_dir, d->digest + strlen("sha256:")) < 0) {
		free(m);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	int rc = 0;
	if (mkdir(m->path, 0755) < 0 && errno != EEXIST)
		rc = rs_err(err, -errno, "%s: %s", m->path, strerror(errno));
	struct lfs_layer_opts lo = {
	    .client = s->o.client,
	    .ref = r->ref,
	    .digest = d->digest,
	    .size = d->size,
	    .toc_digest = toc_digest,
	    .no_prefetch = s->o.no_prefetch,
	    .no_background = s->o.no_background,
	    .read_timeout_ms = s->o.read_timeout_ms,
	};
	if (rc == 0)
		rc = lfs_layer_open(s->o.rt, &lo, &m->layer, err);
	if (rc == 0 && !s->o.no_background)
		rc = lfs_layer_expect_diff_id(m->layer, diff_id, NULL, NULL, err);
	if (rc == 0)
		rc = lfs_layer_mount(m->layer, m->path, err);
	if (rc < 0) {
		if (m->layer)
			lfs_layer_close(m->layer);
		(void)rmdir(m->path);
		free(m->path);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int store_resolve_layer(struct store *s, struct store_ref *r, const char *digest,
			struct store_layer **out, struct rs_error *err)
{
	size_t i = 0;
	int rc = ensure_image(s, r, false, err);
	const struct reg_descriptor *d = rc == 0 ? find_layer(r, digest, &i) : NULL;
	if (rc == 0 && !d && (rc = ensure_image(s, r, true, err)) == 0)
		d = find_layer(r, digest, &i);
	if (rc < 0)
		return rc;
	if (!d)
		return rs_err(err, -ENOENT, "%s has no layer %s", r->ref, digest);
	const char *toc = reg_descriptor_annotation(d, ESGZ_ANNOTATION_TOC_DIGEST);
	if (!toc)
		return rs_err(err, -ENOENT,
			      "layer %s of %s: no TOC digest annotation (%s): not a verifiable "
			      "eStargz layer",
			      digest, r->ref, ESGZ_ANNOTATION_TOC_DIGEST);
	bool zstd = d->media_type && strstr(d->media_type, "zstd");
	const char *us = reg_descriptor_annotation(d, ESGZ_ANNOTATION_UNCOMPRESSED_SIZE);
	int64_t usize = us ? rs_parse_decimal(us, strlen(us)) : -1;

	struct store_layer *l = calloc(1, sizeof(*l));
	if (!l)
		return rs_err(err, -ENOMEM, "out of memory");
	l->ref = r;
	l->size = d->size;
	snprintf(l->digest, sizeof(l->digest), "%s", d->digest);
	struct store_layer_info info = {
	    .digest = d->digest,
	    .size = d->size,
	    .diff_id = r->diff_ids[i].s,
	    .uncompressed_size = usize,
	    .zstd = zstd,
	};
	if (store_info_json(&info, &l->info) < 0) {
		store_layer_free(l);
		return rs_err(err, -ENOENT, "layer %s of %s: a descriptor that does not fit",
			      digest, r->ref);
	}
	pthread_mutex_lock(&s->lock);
	l->mnt = find_mount(s, d->digest);
	if (l->mnt)
		l->mnt->users++;
	pthread_mutex_unlock(&s->lock);
	if (!l->mnt) {
		struct store_mount *m = NULL;
		rc = mount_layer(s, r, d, toc, r->diff_ids[i].s, &m, err);
		if (rc < 0) {
			store_layer_free(l);
			rs_error_prefix(err, "layer %s of %s", digest, r->ref);
			return rc;
		}
		pthread_mutex_lock(&s->lock);
		m->users = 1;
		m->next = s->mounts;
		s->mounts = m;
		pthread_mutex_unlock(&s->lock);
		l->mnt = m;
		rs_log(RS_LOG_INFO, "store: %s of %s mounted at %s", digest, r->ref, m->path);
	}
	*out = l;
	return 0;
}

void store_mount_put(struct store *s, struct store_layer *l)
{
	pthread_mutex_lock(&s->lock);
	struct store_mount *m = l->mnt;
	struct lfs_layer *last = NULL;
	if (m->users > 0 && --m->users == 0) {
		last = m->layer;
		m->layer = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (!last)
		return;
	lfs_layer_close(last);
	if (rmdir(m->path) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "store: %s: %s", m->path, strerror(errno));
	rs_log(RS_LOG_INFO, "store: %s unmounted: no image uses it", m->digest);
}

int store_blob_read(struct store *s, struct store_layer *l, int64_t off, size_t len, void *buf,
		    struct rs_error *err)
{
	struct reg_range rg = {.off = off, .len = len, .buf = buf};
	return reg_blob_read(s->o.client, &l->ref->parsed, l->digest, &rg, 1, err);
}
