/* SPDX-License-Identifier: Apache-2.0 */
/* The whole-layer check: once every chunk of a layer is in, the blob is read
 * once more from start to end, uncompressed as a stream and hashed, and the
 * result must be the layer's diffID (or give containerd's chain ID of the
 * snapshot). Chunk digests vouch for file data only; the diffID also covers
 * the tar headers (names, modes, owners, links) and proves that the snapshot
 * holds the layer its chain ID names, so two images cannot share a snapshot
 * with different content. A layer that fails is marked failed: every read
 * gets EIO. A check that passed leaves a marker in the chunk cache, so a
 * restarted daemon with the same disk cache does not read the blob again.
 *
 * A layer whose check is pending has its background fetch done by the same
 * stream: each chunk not yet fetched is landed as its bytes pass, so the
 * blob is read once, not once for the chunks and once for the check. If
 * that stream breaks off, the ordinary background fetch takes over and the
 * check reads the blob again once the layer is complete. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "layerfs_internal.h"

#define OUT_BUF ((size_t)256 << 10)
/* How long the stream waits, per piece, while on-demand reads are queued:
 * short, since a receiver that stops reading for long trips the transfer's
 * low-speed limit. */
#define YIELD_MS 200
#define RETRY_MS 5000
/* A chunk whose compressed bytes claim more than this is left to the
 * ordinary fetch (which bounds its own requests): the stream keeps a
 * chunk's bytes until they are all in. */
#define LAND_MAX_COMP ((int64_t)64 << 20)
/* A mismatch is believed only when a second reading of the blob gives it
 * too: bytes flipped on the way would otherwise fail a good layer. */
#define MISMATCHES_TO_FAIL 2

struct hash_stream {
	struct lfs_layer *l;
	enum esgz_format fmt;
	z_stream z;
	bool z_ready, in_member;
	ZSTD_DStream *zs;
	size_t zs_hint; /* ZSTD_decompressStream's last answer: 0 at a frame boundary */
	struct rs_sha256 sha;
	uint8_t *out;
	uint64_t raw_bytes;
	struct rs_error err;
	/* Landing (the stream as background fetch): bytes [keep_off, pos) of
	 * the blob are in keep, from the offset of chunk next, the first not
	 * yet passed. */
	bool land;
	int64_t pos, keep_off;
	struct rs_buf keep;
	uint32_t next;
	uint32_t landed, bad;
};

static bool ondemand_waiting(struct lfs_runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
	bool busy = rt->queue_head[LFS_PRIO_ONDEMAND] || rt->queue_head[LFS_PRIO_READAHEAD];
	pthread_mutex_unlock(&rt->lock);
	return busy;
}

static bool stopping(struct lfs_layer *l)
{
	pthread_mutex_lock(&l->lock);
	bool closing = l->closing;
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&l->rt->lock);
	closing |= l->rt->stopping;
	pthread_mutex_unlock(&l->rt->lock);
	return closing;
}

static int feed_gzip(struct hash_stream *h, const uint8_t *data, size_t n)
{
	h->z.next_in = (Bytef *)data;
	h->z.avail_in = (uInt)n;
	while (h->z.avail_in > 0) {
		if (!h->in_member) {
			if (inflateReset2(&h->z, 16 + MAX_WBITS) != Z_OK)
				return rs_err(&h->err, -EIO, "inflate reset failed");
			h->in_member = true;
		}
		h->z.next_out = h->out;
		h->z.avail_out = (uInt)OUT_BUF;
		int zr = inflate(&h->z, Z_NO_FLUSH);
		size_t got = OUT_BUF - h->z.avail_out;
		rs_sha256_update(&h->sha, h->out, got);
		h->raw_bytes += got;
		if (zr == Z_STREAM_END)
			h->in_member = false;
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return rs_err(&h->err, -EBADMSG, "the blob is not a valid gzip stream: %s",
				      h->z.msg ? h->z.msg : "inflate error");
	}
	return 0;
}

static int feed_zstd(struct hash_stream *h, const uint8_t *data, size_t n)
{
	ZSTD_inBuffer in = {data, n, 0};
	while (in.pos < in.size) {
		ZSTD_outBuffer out = {h->out, OUT_BUF, 0};
		size_t zr = ZSTD_decompressStream(h->zs, &out, &in);
		if (ZSTD_isError(zr))
			return rs_err(&h->err, -EBADMSG, "the blob is not a valid zstd stream: %s",
				      ZSTD_getErrorName(zr));
		h->zs_hint = zr;
		rs_sha256_update(&h->sha, h->out, out.pos);
		h->raw_bytes += out.pos;
	}
	return 0;
}

/* Lands chunk i from its compressed bytes if nobody has it or is on it. */
static void land_one(struct hash_stream *h, uint32_t i, const uint8_t *comp)
{
	struct lfs_layer *l = h->l;
	pthread_mutex_lock(&l->lock);
	bool take = !(l->chunk_state[i] & (LFS_CHUNK_INFLIGHT | LFS_CHUNK_FETCHED));
	if (take)
		l->chunk_state[i] |= LFS_CHUNK_INFLIGHT;
	pthread_mutex_unlock(&l->lock);
	if (!take)
		return;
	lfs_chunk_land_settle(l->rt, l, i, comp, LFS_PRIO_BACKGROUND);
	pthread_mutex_lock(&l->lock);
	if (l->chunk_state[i] & LFS_CHUNK_FETCHED)
		h->landed++;
	else
		h->bad++;
	pthread_mutex_unlock(&l->lock);
}

/* Keeps what the chunks still ahead need of bytes [pos, pos + n) and lands
 * every chunk whose bytes are now all in. */
static int land_passing(struct hash_stream *h, const uint8_t *data, size_t n)
{
	struct lfs_layer *l = h->l;
	int64_t end = h->pos + (int64_t)n;
	while (h->next < l->nchunks) {
		const struct esgz_chunk *c = &l->chunks[h->next];
		if (c->comp_end - c->offset > LAND_MAX_COMP || c->offset < h->keep_off) {
			h->next++; /* the ordinary fetch gets it */
			continue;
		}
		break;
	}
	if (h->next >= l->nchunks)
		return 0;
	/* Drop what no chunk ahead needs, then keep the part of this piece
	 * from the next chunk's start on. */
	int64_t from = l->chunks[h->next].offset;
	if (from > h->keep_off) {
		int64_t drop = from - h->keep_off;
		if (drop >= (int64_t)h->keep.len) {
			h->keep.len = 0;
		} else {
			memmove(h->keep.data, h->keep.data + drop, h->keep.len - (size_t)drop);
			h->keep.len -= (size_t)drop;
		}
		h->keep_off = from;
	}
	int64_t skip = h->keep_off > h->pos ? h->keep_off - h->pos : 0;
	if (skip < (int64_t)n && rs_buf_append(&h->keep, data + skip, n - (size_t)skip) < 0)
		return rs_err(&h->err, -ENOMEM, "out of memory");
	while (h->next < l->nchunks) {
		const struct esgz_chunk *c = &l->chunks[h->next];
		if (c->offset < h->keep_off || c->comp_end - c->offset > LAND_MAX_COMP) {
			h->next++;
			continue;
		}
		if (c->comp_end > end)
			break;
		land_one(h, h->next, h->keep.data + (c->offset - h->keep_off));
		h->next++;
	}
	return 0;
}

static int on_blob_bytes(void *ctx, const void *data, size_t n)
{
	struct hash_stream *h = ctx;
	if (stopping(h->l))
		return rs_err(&h->err, -ECANCELED, "the layer is being closed");
	for (int waited = 0; waited < YIELD_MS && ondemand_waiting(h->l->rt); waited += 20)
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000L}, NULL);
	int r = h->fmt == ESGZ_FORMAT_ZSTD_CHUNKED ? feed_zstd(h, data, n) : feed_gzip(h, data, n);
	if (r == 0 && h->land)
		r = land_passing(h, data, n);
	h->pos += (int64_t)n;
	return r;
}

/* The sha256 of the blob's uncompressed bytes; with land, the chunks not
 * yet fetched are landed on the way (*bad: how many failed verification). */
static int hash_blob(struct lfs_layer *l, bool land, uint8_t sum[RS_SHA256_LEN], uint32_t *bad,
		     struct rs_error *err)
{
	struct hash_stream h = {.l = l, .fmt = l->blob->footer.format, .land = land};
	int r = 0;
	h.out = malloc(OUT_BUF);
	if (!h.out || rs_sha256_init(&h.sha) < 0) {
		free(h.out);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (h.fmt == ESGZ_FORMAT_ZSTD_CHUNKED) {
		h.zs = ZSTD_createDStream();
		if (!h.zs)
			r = rs_err(err, -ENOMEM, "out of memory");
	} else if (inflateInit2(&h.z, 16 + MAX_WBITS) != Z_OK) {
		r = rs_err(err, -ENOMEM, "out of memory");
	} else {
		h.z_ready = true;
		h.in_member = true;
	}
	if (r == 0) {
		r = reg_blob_read_stream(l->client, &l->ref, l->digest, 0, (size_t)l->blob->size,
					 on_blob_bytes, &h, err);
		if (r < 0 && h.err.code < 0)
			*err = h.err;
	}
	if (r == 0 && ((h.z_ready && h.in_member) || (h.zs && h.zs_hint != 0)))
		r = rs_err(err, -EBADMSG, "the blob ends inside a compressed member");
	if (h.z_ready)
		inflateEnd(&h.z);
	ZSTD_freeDStream(h.zs);
	rs_sha256_final(&h.sha, sum);
	rs_sha256_free(&h.sha);
	free(h.out);
	rs_buf_free(&h.keep);
	*bad = h.bad;
	if (r == 0)
		rs_log(RS_LOG_DEBUG,
		       "layerfs: %s: %llu uncompressed bytes hashed, %u chunks landed", l->digest,
		       (unsigned long long)h.raw_bytes, h.landed);
	return r;
}

/* The statement a passed check proves, as the content of its cache marker
 * (keyed by its own sha256, so the disk tier's check on load holds). */
static int marker(const struct lfs_layer *l, struct rs_buf *out)
{
	if (l->expect_diff_id)
		return rs_buf_printf(out,
				     "remote-snapshotter diffID check passed: layer %s diffID %s",
				     l->digest, l->expect_diff_id);
	return rs_buf_printf(
	    out, "remote-snapshotter diffID check passed: layer %s chain %s parent %s", l->digest,
	    l->expect_chain_id, l->expect_chain_parent ? l->expect_chain_parent : "");
}

static bool marker_cached(struct lfs_layer *l, const struct rs_buf *m, uint8_t key[RS_SHA256_LEN])
{
	rs_sha256(m->data, m->len, key);
	struct cache_buf *b = NULL;
	if (cache_get(l->rt->cache, key, &b, NULL) < 0)
		return false;
	bool same = cache_buf_len(b) == m->len && memcmp(cache_buf_data(b), m->data, m->len) == 0;
	cache_buf_unref(b);
	return same;
}

static void marker_store(struct lfs_layer *l, const struct rs_buf *m,
			 const uint8_t key[RS_SHA256_LEN])
{
	struct cache_buf *b = NULL;
	if (cache_buf_new(m->len, &b) < 0)
		return;
	memcpy(cache_buf_wdata(b), m->data, m->len);
	struct rs_error err = {0};
	if (cache_put(l->rt->cache, key, b, CACHE_PUT_WRITEBACK, &err) < 0)
		rs_log(RS_LOG_WARN, "layerfs: %s: disk cache: %s", l->digest, err.msg);
	cache_buf_unref(b);
}

/* Whether sum, the layer's diffID, is what was expected. */
static bool diffid_matches(const struct lfs_layer *l, const uint8_t sum[RS_SHA256_LEN])
{
	char diff_id[RS_DIGEST_STR_LEN];
	rs_digest_format(sum, diff_id);
	if (l->expect_diff_id)
		return strcmp(diff_id, l->expect_diff_id) == 0;
	if (!l->expect_chain_parent || !*l->expect_chain_parent)
		return strcmp(diff_id, l->expect_chain_id) == 0;
	char line[2 * RS_DIGEST_STR_LEN + 2];
	int n = snprintf(line, sizeof(line), "%s %s", l->expect_chain_parent, diff_id);
	if (n < 0 || (size_t)n >= sizeof(line))
		return false;
	uint8_t chain[RS_SHA256_LEN];
	char chain_id[RS_DIGEST_STR_LEN];
	rs_sha256(line, (size_t)n, chain);
	rs_digest_format(chain, chain_id);
	return strcmp(chain_id, l->expect_chain_id) == 0;
}

int lfs_layer_expect_diff_id(struct lfs_layer *l, const char *diff_id, const char *chain_id,
			     const char *chain_parent, struct rs_error *err)
{
	uint8_t tmp[RS_SHA256_LEN];
	const char *d = diff_id && *diff_id ? diff_id : NULL;
	const char *c = !d && chain_id && *chain_id ? chain_id : NULL;
	const char *p = c && chain_parent && *chain_parent ? chain_parent : NULL;
	if (l->se)
		return rs_err(err, -EBUSY, "layer %s is mounted already", l->digest);
	free(l->expect_diff_id);
	free(l->expect_chain_id);
	free(l->expect_chain_parent);
	l->expect_diff_id = l->expect_chain_id = l->expect_chain_parent = NULL;
	atomic_store(&l->diffid_state, LFS_DIFFID_OFF);
	atomic_store(&l->diffid_stream_off, true);
	if (!d && !c)
		return 0;
	/* Names that are not digests (a snapshot named by hand) say nothing
	 * about the content: no check rather than a false failure. */
	const char *bad = d && rs_digest_parse(d, strlen(d), tmp) < 0   ? d
			  : c && rs_digest_parse(c, strlen(c), tmp) < 0 ? c
			  : p && rs_digest_parse(p, strlen(p), tmp) < 0 ? p
									: NULL;
	if (bad) {
		if (d)
			return rs_err(err, -EINVAL, "diffID '%s' is not sha256:<64 hex digits>", d);
		rs_log(RS_LOG_DEBUG, "layerfs: %s: no diffID check: '%s' is not a chain ID",
		       l->digest, bad);
		return 0;
	}
	l->expect_diff_id = d ? strdup(d) : NULL;
	l->expect_chain_id = c ? strdup(c) : NULL;
	l->expect_chain_parent = p ? strdup(p) : NULL;
	if ((d && !l->expect_diff_id) || (c && !l->expect_chain_id) ||
	    (p && !l->expect_chain_parent))
		return rs_err(err, -ENOMEM, "out of memory");
	atomic_store(&l->diffid_state, LFS_DIFFID_PENDING);
	atomic_store(&l->diffid_stream_off, false);
	return 0;
}

/* Re-arms the background fetch, which calls again after RETRY_MS. */
static void retry_later(struct lfs_layer *l)
{
	pthread_mutex_lock(&l->lock);
	l->bg_retry_at = lfs_now_ms() + RETRY_MS;
	pthread_mutex_unlock(&l->lock);
	atomic_store(&l->bg_active, true);
}

static void judge_failed(struct lfs_layer *l, int r, const char *got, const struct rs_error *err)
{
	atomic_store(&l->diffid_state, LFS_DIFFID_MISMATCH);
	pthread_mutex_lock(&l->lock);
	l->verify_errors++;
	pthread_mutex_unlock(&l->lock);
	if (r < 0)
		rs_log(RS_LOG_ERROR, "layerfs: %s: layer failed: %s", l->digest, err->msg);
	else if (l->expect_diff_id)
		rs_log(RS_LOG_ERROR, "layerfs: %s: layer failed: diffID is %s, expected %s",
		       l->digest, got, l->expect_diff_id);
	else
		rs_log(RS_LOG_ERROR,
		       "layerfs: %s: layer failed: diffID %s does not give chain ID %s (parent %s)",
		       l->digest, got, l->expect_chain_id,
		       l->expect_chain_parent ? l->expect_chain_parent : "none");
}

/* One reading of the blob for a pending check; with land, as the layer's
 * background fetch. */
static void run_check(struct lfs_layer *l, bool land)
{
	struct rs_buf m = {0};
	uint8_t key[RS_SHA256_LEN];
	if (marker(l, &m) == 0 && marker_cached(l, &m, key)) {
		/* The marker proves an expected diffID; a chain ID hides it. */
		if (l->expect_diff_id)
			l->diff_id_known =
			    rs_digest_parse(l->expect_diff_id, strlen(l->expect_diff_id),
					    l->diff_id) == 0;
		atomic_store(&l->diffid_state, LFS_DIFFID_OK);
		rs_log(RS_LOG_DEBUG, "layerfs: %s: diffID checked before (cache)", l->digest);
		rs_buf_free(&m);
		return;
	}
	int64_t t0 = lfs_now_ms();
	uint8_t sum[RS_SHA256_LEN];
	uint32_t bad = 0;
	struct rs_error err = {0};
	int r = hash_blob(l, land, sum, &bad, &err);
	char got[RS_DIGEST_STR_LEN] = "";
	if (r == 0)
		rs_digest_format(sum, got);
	if (r == -ECANCELED) {
		/* the layer is closing */
	} else if (r < 0 && r != -EBADMSG) {
		/* The registry, not the layer: asked again later; a broken
		 * landing stream leaves the rest to the ordinary fetch. */
		rs_log(RS_LOG_WARN, "layerfs: %s: diffID check postponed: %s", l->digest, err.msg);
		pthread_mutex_lock(&l->lock);
		l->fetch_errors++;
		pthread_mutex_unlock(&l->lock);
		atomic_store(&l->diffid_stream_off, true);
		retry_later(l);
	} else if (r == 0 && bad == 0 && diffid_matches(l, sum)) {
		memcpy(l->diff_id, sum, RS_SHA256_LEN);
		l->diff_id_known = true;
		atomic_store(&l->diffid_state, LFS_DIFFID_OK);
		if (m.len)
			marker_store(l, &m, key);
		rs_log(RS_LOG_INFO, "layerfs: %s: diffID %s checked (%lld ms)", l->digest, got,
		       (long long)(lfs_now_ms() - t0));
	} else if (bad > 0 || ++l->diffid_mismatches < MISMATCHES_TO_FAIL) {
		/* Chunks that failed their digest on the way, or a first
		 * mismatch: read again (by chunks, then whole) before judging. */
		rs_log(RS_LOG_WARN, "layerfs: %s: diffID %s%s; checking again", l->digest,
		       r == 0 ? got : err.msg,
		       bad > 0 ? " with chunks that failed verification" : "");
		if (r == 0 && bad == 0) {
			memcpy(l->diff_id, sum, RS_SHA256_LEN);
			l->diff_id_known = true;
		}
		atomic_store(&l->diffid_stream_off, true);
		retry_later(l);
	} else {
		if (r == 0) {
			memcpy(l->diff_id, sum, RS_SHA256_LEN);
			l->diff_id_known = true;
		}
		judge_failed(l, r, got, &err);
	}
	rs_buf_free(&m);
}

void lfs_diffid_check(struct lfs_layer *l)
{
	if (atomic_load(&l->diffid_state) == LFS_DIFFID_PENDING)
		run_check(l, false);
}

bool lfs_diffid_stream(struct lfs_layer *l)
{
	if (atomic_load(&l->diffid_state) != LFS_DIFFID_PENDING ||
	    atomic_load(&l->diffid_stream_off))
		return false;
	atomic_store(&l->diffid_stream_off, true); /* once; a retry goes by chunks */
	run_check(l, true);
	return true;
}

bool lfs_layer_failed(struct lfs_layer *l)
{
	return atomic_load(&l->diffid_state) == LFS_DIFFID_MISMATCH;
}

const char *lfs_diffid_state_name(int s)
{
	switch (s) {
	case LFS_DIFFID_PENDING:
		return "pending";
	case LFS_DIFFID_OK:
		return "ok";
	case LFS_DIFFID_MISMATCH:
		return "mismatch";
	}
	return "off";
}
