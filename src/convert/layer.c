// SPDX-License-Identifier: Apache-2.0
/* One layer of a conversion: keep it when it already is in the target format
 * (checked by opening its footer and TOC, against the annotated TOC digest),
 * else fetch it, rebuild it with esgz_build into a temp file, and write it to
 * the destination with the eStargz annotations on its descriptor. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "convert_internal.h"

enum layer_kind { LK_TAR, LK_GZIP, LK_ZSTD, LK_OTHER };

static enum layer_kind layer_kind(const char *mt)
{
	if (strcmp(mt, REG_MT_OCI_LAYER) == 0 ||
	    strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar") == 0)
		return LK_TAR;
	if (strcmp(mt, REG_MT_OCI_LAYER_GZIP) == 0 || strcmp(mt, REG_MT_DOCKER_LAYER_GZIP) == 0)
		return LK_GZIP;
	if (strcmp(mt, REG_MT_OCI_LAYER_ZSTD) == 0)
		return LK_ZSTD;
	return LK_OTHER;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *target_media_type(const struct conv_ctx *cx)
{
	if (cx->o->zstd_chunked)
		return REG_MT_OCI_LAYER_ZSTD;
	return cx->docker_types ? REG_MT_DOCKER_LAYER_GZIP : REG_MT_OCI_LAYER_GZIP;
}

/* The zstd:chunked manifest annotations: sha256 of the compressed TOC frame
 * and "offset:compressed:raw:1" (1 = the CRFS manifest type). */
static int zstd_annotate(struct esgz_reader *r, json_t *desc, struct rs_error *err)
{
	uint8_t tail[ESGZ_ZSTD_FOOTER_FRAME];
	size_t tl = r->size < (int64_t)sizeof(tail) ? (size_t)r->size : sizeof(tail);
	int rc = esgz_read_at(r, tail, tl, r->size - (int64_t)tl, err);
	if (rc < 0)
		return rc;
	struct esgz_footer f;
	if ((rc = esgz_footer_parse(tail, tl, r->size, &f, err)) < 0)
		return rc;
	if (f.format != ESGZ_FORMAT_ZSTD_CHUNKED)
		return rs_err(err, -EINVAL, "not a zstd:chunked blob");
	if ((uint64_t)f.toc_size > ESGZ_DEFAULT_MAX_TOC_SIZE)
		return rs_err(err, -EFBIG, "compressed TOC of %lld bytes is too large",
			      (long long)f.toc_size);
	cleanup_free uint8_t *toc = malloc(f.toc_size ? (size_t)f.toc_size : 1);
	if (!toc)
		return rs_err(err, -ENOMEM, "out of memory");
	if ((rc = esgz_read_at(r, toc, (size_t)f.toc_size, f.toc_offset, err)) < 0)
		return rc;
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN], pos[96];
	rs_sha256(toc, (size_t)f.toc_size, sum);
	rs_digest_format(sum, dg);
	snprintf(pos, sizeof(pos), "%" PRId64 ":%" PRId64 ":%" PRId64 ":1", f.toc_offset,
		 f.toc_size, f.toc_raw_size);
	if (conv_desc_set_annotation(desc, ESGZ_ANNOTATION_ZSTD_MANIFEST_CHECKSUM, dg) < 0 ||
	    conv_desc_set_annotation(desc, ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION, pos) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
}

/* eStargz only: zstd:chunked layers state the same in their manifest-position. */
static int set_toc_offset_annotation(struct conv_ctx *cx, json_t *desc, int64_t toc_offset)
{
	if (cx->o->zstd_chunked)
		return 0;
	char s[32];
	snprintf(s, sizeof(s), "%" PRId64, toc_offset);
	return conv_desc_set_annotation(desc, ESGZ_ANNOTATION_TOC_OFFSET, s);
}

static bool size_annotation_ok(json_t *desc)
{
	const char *s = conv_desc_annotation(desc, ESGZ_ANNOTATION_UNCOMPRESSED_SIZE);
	if (!s || !*s || strlen(s) > 19)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static int set_size_annotation(json_t *desc, int64_t size)
{
	char s[32];
	snprintf(s, sizeof(s), "%" PRId64, size);
	return conv_desc_set_annotation(desc, ESGZ_ANNOTATION_UNCOMPRESSED_SIZE, s);
}

/* Whether the source blob already is in the target format; on yes, fills
 * toc_digest (the computed one) and toc_offset (the footer's). Any failure to open it means "no".
 */
static bool already_target(struct conv_ctx *cx, json_t *desc, const char *dg, int64_t size,
			   enum layer_kind kind, char toc_digest[RS_DIGEST_STR_LEN],
			   int64_t *toc_offset)
{
	if (kind != (cx->o->zstd_chunked ? LK_ZSTD : LK_GZIP))
		return false;
	const char *want = conv_desc_annotation(desc, ESGZ_ANNOTATION_TOC_DIGEST);
	uint8_t sum[RS_SHA256_LEN];
	if (want && rs_digest_parse(want, strlen(want), sum) < 0)
		want = NULL;
	struct rs_error e = {0};
	struct esgz_reader r = {0};
	if (conv_image_blob_reader(cx->src, dg, size, &r, &e) < 0) {
		rs_log(RS_LOG_DEBUG, "layer %s: %s", dg, e.msg);
		return false;
	}
	struct esgz_open_opts oo = {.expected_toc_digest = want};
	struct esgz_blob *b = NULL;
	bool ok = esgz_open(&r, &oo, &b, &e) == 0;
	if (!ok && want)
		rs_log(RS_LOG_WARN, "layer %s: annotated as eStargz but %s; converting it", dg,
		       e.msg);
	enum esgz_format fmt = cx->o->zstd_chunked ? ESGZ_FORMAT_ZSTD_CHUNKED : ESGZ_FORMAT_ESTARGZ;
	ok = ok && b->footer.format == fmt;
	if (ok) {
		rs_digest_format(b->toc_digest, toc_digest);
		*toc_offset = b->footer.toc_offset;
	}
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return ok;
}

struct layer_out {
	json_t *desc;
	char diff_id[RS_DIGEST_STR_LEN];
	char digest[RS_DIGEST_STR_LEN];
	int64_t size;
};

static int keep_layer(struct conv_ctx *cx, json_t *src_desc, const char *dg, int64_t size,
		      const char *diff_id, const char *toc_digest, int64_t toc_offset,
		      struct layer_out *lo, struct rs_error *err)
{
	json_t *d = lo->desc = json_deep_copy(src_desc);
	if (!d || json_object_set_new(d, "mediaType", json_string(target_media_type(cx))) < 0 ||
	    conv_desc_set_annotation(d, ESGZ_ANNOTATION_TOC_DIGEST, toc_digest) < 0 ||
	    set_toc_offset_annotation(cx, d, toc_offset) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	snprintf(lo->diff_id, sizeof(lo->diff_id), "%s", diff_id);
	snprintf(lo->digest, sizeof(lo->digest), "%s", dg);
	lo->size = size;
	int rc;
	cleanup_fd int fd = -1;
	if (!size_annotation_ok(d)) {
		int64_t usize;
		if ((rc = conv_image_blob_fd(cx->src, dg, size, &fd, err)) < 0 ||
		    (rc = conv_uncompressed(fd, &usize, lo->diff_id, err)) < 0)
			return rc;
		if (set_size_annotation(d, usize) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	if (cx->o->zstd_chunked) {
		struct esgz_reader r = {0};
		if ((rc = conv_image_blob_reader(cx->src, dg, size, &r, err)) < 0)
			return rc;
		rc = zstd_annotate(&r, d, err);
		esgz_reader_close(&r);
		if (rc < 0)
			return rc;
	}
	bool exists = false;
	if ((rc = conv_image_blob_exists(cx->dst, dg, size, &exists, err)) < 0 || exists)
		return rc;
	if (fd < 0 && (rc = conv_image_blob_fd(cx->src, dg, size, &fd, err)) < 0)
		return rc;
	return conv_image_put_blob(cx->dst, dg, fd, size, cx->mount_from, err);
}

static const char *const stale_annotations[] = {
    ESGZ_ANNOTATION_TOC_DIGEST,
    ESGZ_ANNOTATION_UNCOMPRESSED_SIZE,
    ESGZ_ANNOTATION_ZSTD_MANIFEST_CHECKSUM,
    ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION,
    ESGZ_ANNOTATION_TOC_OFFSET,
};

static int rebuild_layer(struct conv_ctx *cx, json_t *src_desc, const char *dg, int64_t size,
			 struct layer_out *lo, struct rs_error *err)
{
	cleanup_fd int in = -1;
	cleanup_fd int out = -1;
	int rc = conv_image_blob_fd(cx->src, dg, size, &in, err);
	if (rc < 0)
		return rc;
	if ((rc = conv_tmpfile(&out, err)) < 0)
		return rc;
	if (lseek(in, 0, SEEK_SET) < 0)
		return rs_err(err, -errno, "seek: %s", strerror(errno));
	struct esgz_build_opts bo = {
	    .chunk_size = cx->o->chunk_size,
	    .level = cx->o->level,
	    .zstd_chunked = cx->o->zstd_chunked,
	    .threads = cx->o->threads,
	    .prioritized = cx->o->prioritized,
	    .n_prioritized = cx->o->n_prioritized,
	    .prioritized_skip_missing = true,
	    .touched = cx->o->touched,
	    .n_touched = cx->o->n_touched,
	};
	struct esgz_build_result res;
	if ((rc = esgz_build(in, out, &bo, &res, err)) < 0)
		return rc;
	close(rs_steal_fd(&in));

	json_t *d = lo->desc = json_deep_copy(src_desc);
	if (!d)
		return rs_err(err, -ENOMEM, "out of memory");
	json_object_del(d, "urls");
	for (size_t i = 0; i < sizeof(stale_annotations) / sizeof(stale_annotations[0]); i++)
		conv_desc_del_annotation(d, stale_annotations[i]);
	if (json_object_set_new(d, "mediaType", json_string(target_media_type(cx))) < 0 ||
	    json_object_set_new(d, "digest", json_string(res.digest)) < 0 ||
	    json_object_set_new(d, "size", json_integer(res.size)) < 0 ||
	    conv_desc_set_annotation(d, ESGZ_ANNOTATION_TOC_DIGEST, res.toc_digest) < 0 ||
	    set_size_annotation(d, res.uncompressed_size) < 0 ||
	    set_toc_offset_annotation(cx, d, res.toc_offset) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	if (cx->o->zstd_chunked) {
		struct esgz_reader r = {0};
		if ((rc = conv_fd_reader(out, &r, err)) < 0)
			return rc;
		rc = zstd_annotate(&r, d, err);
		esgz_reader_close(&r);
		if (rc < 0) {
			rs_error_prefix(err, "built layer");
			return rc;
		}
	}
	snprintf(lo->diff_id, sizeof(lo->diff_id), "%s", res.diff_id);
	snprintf(lo->digest, sizeof(lo->digest), "%s", res.digest);
	lo->size = res.size;
	return conv_image_put_blob(cx->dst, res.digest, out, res.size, NULL, err);
}

static void emit(struct conv_ctx *cx, const struct conv_event *ev)
{
	if (cx->progress && cx->progress->fn)
		cx->progress->fn(cx->progress->ctx, ev);
}

static void count(struct conv_ctx *cx, enum conv_layer_action a)
{
	if (!cx->res)
		return;
	if (a == CONV_LAYER_KEPT)
		cx->res->kept++;
	else
		cx->res->converted++;
}

static int remember(struct conv_ctx *cx, const char *src_digest, const struct layer_out *lo,
		    enum conv_layer_action action)
{
	struct conv_done *n = realloc(cx->done, (cx->n_done + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	cx->done = n;
	struct conv_done *d = &n[cx->n_done];
	snprintf(d->src_digest, sizeof(d->src_digest), "%s", src_digest);
	snprintf(d->diff_id, sizeof(d->diff_id), "%s", lo->diff_id);
	d->desc = json_incref(lo->desc);
	d->action = action;
	cx->n_done++;
	return 0;
}

int conv_layer(struct conv_ctx *cx, json_t *src_desc, const char *diff_id, size_t i, size_t n,
	       const char *platform, json_t **new_desc, char new_diff_id[RS_DIGEST_STR_LEN],
	       struct rs_error *err)
{
	const char *mt, *dg;
	int64_t size;
	char what[64];
	snprintf(what, sizeof(what), "layer %zu", i + 1);
	int rc = conv_desc_get(src_desc, &mt, &dg, &size, what, err);
	if (rc < 0)
		return rc;
	enum layer_kind kind = layer_kind(mt);
	if (kind == LK_OTHER)
		return rs_err(err, -ENOTSUP, "layer %s: media type '%.100s' cannot be converted",
			      dg, mt);
	struct conv_event ev = {.kind = CONV_EV_LAYER_START,
				.platform = platform,
				.layer = i,
				.n_layers = n,
				.digest = dg,
				.size = size};
	emit(cx, &ev);
	double t0 = now();

	for (size_t k = 0; k < cx->n_done; k++) {
		if (strcmp(cx->done[k].src_digest, dg) != 0)
			continue;
		*new_desc = json_deep_copy(cx->done[k].desc);
		if (!*new_desc)
			return rs_err(err, -ENOMEM, "out of memory");
		snprintf(new_diff_id, RS_DIGEST_STR_LEN, "%s", cx->done[k].diff_id);
		count(cx, cx->done[k].action);
		ev.kind = CONV_EV_LAYER_DONE;
		ev.action = cx->done[k].action;
		ev.new_digest = json_string_value(json_object_get(*new_desc, "digest"));
		ev.new_size = json_integer_value(json_object_get(*new_desc, "size"));
		emit(cx, &ev);
		return 0;
	}

	struct layer_out lo = {0};
	char toc_digest[RS_DIGEST_STR_LEN];
	int64_t toc_offset = 0;
	/* A prioritized list reorders every layer, so nothing is kept as it is. */
	bool keep = cx->o->n_prioritized == 0 &&
		    already_target(cx, src_desc, dg, size, kind, toc_digest, &toc_offset);
	if (keep)
		rc = keep_layer(cx, src_desc, dg, size, diff_id, toc_digest, toc_offset, &lo, err);
	else
		rc = rebuild_layer(cx, src_desc, dg, size, &lo, err);
	if (rc < 0) {
		json_decref(lo.desc);
		rs_error_prefix(err, "layer %s", dg);
		return rc;
	}
	enum conv_layer_action action = keep ? CONV_LAYER_KEPT : CONV_LAYER_CONVERTED;
	if (remember(cx, dg, &lo, action) < 0) {
		json_decref(lo.desc);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	count(cx, action);
	ev.kind = CONV_EV_LAYER_DONE;
	ev.action = action;
	ev.new_digest = lo.digest;
	ev.new_size = lo.size;
	ev.seconds = now() - t0;
	emit(cx, &ev);
	*new_desc = lo.desc;
	snprintf(new_diff_id, RS_DIGEST_STR_LEN, "%s", lo.diff_id);
	return 0;
}
