/* SPDX-License-Identifier: Apache-2.0 */
/* One layer: opened from the registry (footer and TOC), mounted with FUSE,
 * closed. A layer is freed when the last reference goes: the opener's, and
 * one per fetch job still running. */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <time.h>

#include "layerfs_internal.h"

/* Bytes read from a blob's end at open: footer and, usually, TOC. A TOC
 * compresses to ~50 bytes an entry, so this covers ~5,000 entries; a larger
 * one costs a second request. More would cost every layer its transfer time
 * (the neighbour layers are opened at once and share the link). */
#define OPEN_TAIL ((size_t)256 << 10)
/* A hinted tail beyond this is not trusted: the TOC then comes in a second
 * request of the size the footer states. */
#define OPEN_TAIL_HINT_MAX ((int64_t)32 << 20)

int64_t lfs_now_ms(void)
{
	return rs_monotonic_ms();
}

void lfs_layer_ref(struct lfs_layer *l)
{
	atomic_fetch_add(&l->refs, 1);
}

void lfs_layer_unref(struct lfs_layer *l)
{
	if (atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	esgz_blob_free(l->blob);
	reg_ref_free(&l->ref);
	free(l->expect_diff_id);
	free(l->expect_chain_id);
	free(l->expect_chain_parent);
	free(l->chunk_state);
	free(l->file_left);
	free(l->file_state);
	lfs_passthrough_free(l);
	lfs_status_handles_free(l);
	free(l->state_dir);
	free(l->mountpoint);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* The chunks before the landmark, and whether some of them are marked
 * noPrefetch (the layer was optimised with files read in part). */
static void find_prefetch_set(struct lfs_layer *l)
{
	bool no_landmark;
	int64_t end = esgz_index_prefetch_end(l->idx, &no_landmark);
	uint32_t n = 0;
	while (n < l->nchunks && l->chunks[n].offset < end)
		l->partial |= l->chunks[n++].no_prefetch;
	l->prefetch_chunks = end > 0 ? n : 0;
}

static void count_bytes(struct lfs_layer *l)
{
	for (uint32_t i = 0; i < l->nchunks; i++)
		l->data_bytes += lfs_chunk_bytes(l, i);
	for (uint32_t i = 0; i < l->nnodes; i++) {
		const struct esgz_node *n = esgz_index_node(l->idx, i);
		if (n->type == ESGZ_REG)
			l->total_bytes += n->size;
	}
}

/* The verification policy of lfs_layer_opts.allow_unverified, for a TOC
 * just read. */
static int check_verifiable(struct lfs_layer *l, const struct lfs_layer_opts *o,
			    struct rs_error *err)
{
	if (o->allow_unverified)
		return 0;
	for (uint32_t i = 0; i < l->nchunks; i++) {
		const struct esgz_chunk *c = &l->chunks[i];
		if (c->size > 0 && !c->has_digest)
			return rs_err(
			    err, LFS_EUNVERIFIED,
			    "TOC entry '%.200s' has a chunk without chunkDigest (a legacy "
			    "stargz layer?): its bytes cannot be verified; refused "
			    "unless allow_unverified",
			    esgz_node_name(l->idx, esgz_index_node(l->idx, c->node)));
	}
	if (!o->toc_digest && !o->toc_digest_later)
		return rs_err(err, LFS_EUNVERIFIED,
			      "no TOC digest (annotation " ESGZ_ANNOTATION_TOC_DIGEST
			      ") to check the TOC against: refused unless allow_unverified");
	return 0;
}

/* Opens l->blob from the tail an earlier open kept in the cache dir, with no
 * request; false (a bad file logged and removed) when there is none that
 * opens and matches o's size and TOC digest. */
static bool open_kept(struct lfs_layer *l, const struct lfs_layer_opts *o,
		      const uint8_t blob[RS_SHA256_LEN])
{
	uint8_t want[RS_SHA256_LEN];
	if (o->toc_digest && rs_digest_parse(o->toc_digest, strlen(o->toc_digest), want) < 0)
		return false; /* the registry path reports it */
	struct lfs_toc_tail t;
	int64_t t0 = lfs_now_ms();
	if (lfs_toc_load(l->rt, blob, &t) < 0)
		return false;
	char why[RS_ERROR_MSG_MAX + 64];
	if (o->size > 0 && t.blob_size != o->size) {
		snprintf(why, sizeof(why), "blob size %lld, its descriptor says %lld",
			 (long long)t.blob_size, (long long)o->size);
		lfs_toc_drop(l->rt, blob, why);
		free(t.data);
		return false;
	}
	struct esgz_reader rd;
	esgz_reader_init_tail(&rd, t.data, t.len, t.blob_size);
	if (!rd.ctx) {
		free(t.data);
		return false;
	}
	struct esgz_open_opts oo = {.expected_toc_digest = o->toc_digest, .tail_read = t.len};
	struct rs_error e = {0};
	int r = esgz_open(&rd, &oo, &l->blob, &e);
	esgz_reader_close(&rd);
	free(t.data);
	if (r < 0) {
		snprintf(why, sizeof(why), "%s", e.msg);
		lfs_toc_drop(l->rt, blob, why);
		l->blob = NULL;
		return false;
	}
	rs_log(RS_LOG_DEBUG, "layerfs: %s opened from its kept TOC (%zu bytes) in %lld ms",
	       l->digest, t.len, (long long)(lfs_now_ms() - t0));
	return true;
}

/* Opens l->blob from the registry: one suffix-range request brings the
 * blob's size, its footer and, for most layers, the whole TOC: no HEAD, no
 * second round trip. With a cache dir, what it read is kept for next time. */
static int open_registry(struct lfs_layer *l, const struct lfs_layer_opts *o,
			 const uint8_t blob[RS_SHA256_LEN], struct rs_error *err)
{
	int64_t t0 = lfs_now_ms();
	size_t tail = o->toc_tail >= ESGZ_FOOTER_SIZE && o->toc_tail <= OPEN_TAIL_HINT_MAX
			  ? (size_t)o->toc_tail
			  : OPEN_TAIL;
	struct esgz_reader rd;
	int r = reg_blob_reader_tail(l->client, &l->ref, l->digest, tail, &rd, err);
	if (r < 0)
		return r;
	if (o->size > 0 && rd.size != o->size) {
		r = rs_err(err, -EBADMSG, "the registry's blob has %lld bytes, its descriptor %lld",
			   (long long)rd.size, (long long)o->size);
		esgz_reader_close(&rd);
		return r;
	}
	int64_t t1 = lfs_now_ms();
	struct lfs_toc_recorder rec;
	struct esgz_reader rr;
	lfs_toc_recorder_wrap(&rec, &rd, &rr);
	struct esgz_open_opts oo = {.expected_toc_digest = o->toc_digest, .tail_read = tail};
	r = esgz_open(l->rt->toc_dir ? &rr : &rd, &oo, &l->blob, err);
	if (r == 0 && l->rt->toc_dir) {
		/* From the TOC to the end; never less than a footer of either
		 * kind, which esgz_open reads first. */
		int64_t from = l->blob->footer.toc_offset, floor = rd.size - ESGZ_FOOTER_SIZE;
		if (from > floor)
			from = floor > 0 ? floor : 0;
		struct lfs_toc_tail t;
		struct rs_error e = {0};
		int k = lfs_toc_recorder_tail(&rec, from, &t);
		if (k < 0)
			rs_log(RS_LOG_DEBUG, "layerfs: %s: TOC not kept: %s", l->digest,
			       strerror(-k));
		else if (lfs_toc_store(l->rt, blob, &t, &e) < 0)
			rs_log(RS_LOG_WARN, "layerfs: %s: keeping its TOC: %s", l->digest, e.msg);
		if (k == 0)
			free(t.data);
	}
	lfs_toc_recorder_free(&rec);
	esgz_reader_close(&rd);
	if (r < 0)
		return r;
	rs_log(RS_LOG_DEBUG,
	       "layerfs: %s opened: tail read %lld ms (%zu bytes), TOC and index %lld ms",
	       o->digest, (long long)(t1 - t0), tail, (long long)(lfs_now_ms() - t1));
	return 0;
}

int lfs_layer_open(struct lfs_runtime *rt, const struct lfs_layer_opts *o, struct lfs_layer **out,
		   struct rs_error *err)
{
	uint8_t sum[RS_SHA256_LEN];
	if (!o->digest || rs_digest_parse(o->digest, strlen(o->digest), sum) < 0)
		return rs_err(err, -EINVAL, "layer digest '%s' is not sha256:<64 hex digits>",
			      o->digest ? o->digest : "");
	struct lfs_layer *l = calloc(1, sizeof(*l));
	if (l)
		l->fuse_fd = -1;
	if (!l)
		return rs_err(err, -ENOMEM, "out of memory");
	atomic_init(&l->refs, 1);
	atomic_init(&l->bg_active, false);
	l->rt = rt;
	l->client = o->client;
	l->read_timeout_ms = o->read_timeout_ms > 0 ? o->read_timeout_ms : 30000;
	l->no_prefetch = o->no_prefetch;
	l->no_background = o->no_background;
	l->defer_fetch = o->defer_fetch;
	atomic_init(&l->toc_unchecked, !o->toc_digest && !o->allow_unverified);
	atomic_init(&l->fetch_started, false);
	atomic_init(&l->diffid_state, LFS_DIFFID_OFF);
	atomic_init(&l->diffid_stream_off, true);
	l->registry_ok = true;
	snprintf(l->digest, sizeof(l->digest), "%s", o->digest);
	rs_sha256(l->digest, strlen(l->digest), l->layer_key);
	pthread_mutex_init(&l->lock, NULL);
	lfs_status_handles_init(l);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);

	int r = reg_ref_parse(o->ref, &l->ref, err);
	if (r < 0)
		goto fail;
	l->toc_from_cache = open_kept(l, o, sum);
	if (!l->toc_from_cache) {
		r = open_registry(l, o, sum, err);
		if (r < 0)
			goto fail;
	}
	l->idx = l->blob->index;
	l->nnodes = esgz_index_node_count(l->idx);
	l->chunks = esgz_index_all_chunks(l->idx, &l->nchunks);
	l->chunk_state = calloc(l->nchunks ? l->nchunks : 1, 1);
	if (!l->chunk_state) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto fail;
	}
	r = check_verifiable(l, o, err);
	if (r < 0)
		goto fail;
	if (lfs_file_checks_init(l) < 0 || lfs_passthrough_init(l) < 0) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto fail;
	}
	count_bytes(l);
	find_prefetch_set(l);
	pthread_mutex_lock(&rt->lock);
	l->next = rt->layers;
	rt->layers = l;
	pthread_mutex_unlock(&rt->lock);
	*out = l;
	return 0;
fail:
	rs_error_prefix(err, "layer %s", o->digest);
	lfs_layer_unref(l);
	return r;
}

int lfs_layer_toc_digest_check(struct lfs_layer *l, const char *digest, struct rs_error *err)
{
	uint8_t want[RS_SHA256_LEN];
	if (rs_digest_parse(digest, strlen(digest), want) < 0)
		return rs_err(err, -EINVAL, "TOC digest '%s' is not sha256:<64 hex digits>",
			      digest);
	if (memcmp(want, l->blob->toc_digest, RS_SHA256_LEN) != 0) {
		char got[RS_DIGEST_STR_LEN];
		rs_digest_format(l->blob->toc_digest, got);
		uint8_t blob[RS_SHA256_LEN];
		if (l->toc_from_cache && rs_digest_parse(l->digest, strlen(l->digest), blob) == 0) {
			/* A later open reads the registry's. */
			char why[2 * RS_DIGEST_STR_LEN + 64];
			snprintf(why, sizeof(why), "TOC digest %s, expected %s", got, digest);
			lfs_toc_drop(l->rt, blob, why);
		}
		return rs_err(err, ESGZ_EDIGEST, "layer %s: TOC digest is %s, expected %s",
			      l->digest, got, digest);
	}
	atomic_store(&l->toc_unchecked, false);
	return 0;
}

/* The kernel's readahead on the mount, in KiB. Best effort. */
static void set_readahead(const struct lfs_layer *l, unsigned kb)
{
	if (l->bdi_dev == 0)
		return;
	char path[96], val[16];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(l->bdi_dev),
		 minor(l->bdi_dev));
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	int n = snprintf(val, sizeof(val), "%u", kb);
	ssize_t w = write(fd, val, (size_t)n);
	(void)w;
	close(fd);
}

/* A layer is read in large sequential pieces: the kernel reads ahead 1 MiB
 * (FUSE's default is 128 KiB). A layer with files read in part keeps the
 * window they were recorded with until it is complete: with 1 MiB, every
 * fault in a big mapped file would ask for the megabyte around it, most of
 * which the prefetch rightly left out, and wait for it on the network. */
static void choose_readahead(struct lfs_layer *l, const char *mountpoint)
{
	struct stat st;
	if (stat(mountpoint, &st) < 0)
		return;
	l->bdi_dev = st.st_dev;
	l->readahead_low = l->partial;
	set_readahead(l, l->readahead_low ? ESGZ_PARTIAL_READAHEAD_KB : LFS_READAHEAD_KB);
	if (l->readahead_low)
		rs_log(RS_LOG_DEBUG,
		       "layerfs: %s: readahead %u KiB until complete (files read in "
		       "part)",
		       l->digest, (unsigned)ESGZ_PARTIAL_READAHEAD_KB);
}

void lfs_layer_complete(struct lfs_layer *l)
{
	if (atomic_exchange(&l->readahead_low, false)) {
		set_readahead(l, LFS_READAHEAD_KB);
		rs_log(RS_LOG_DEBUG, "layerfs: %s: complete; readahead %u KiB", l->digest,
		       (unsigned)LFS_READAHEAD_KB);
	}
	lfs_diffid_check(l);
}

void lfs_layer_fetch_start(struct lfs_layer *l)
{
	if (!l->se || atomic_exchange(&l->fetch_started, true))
		return;
	rs_log(RS_LOG_DEBUG, "layerfs: %s: prefetch and background fetch start", l->digest);
	lfs_fetch_layer_start(l);
}

/* Lazily detaches the mount, then closes the connection: files still open
 * through it get ENOTCONN. */
static void end_session(struct lfs_layer *l)
{
	struct rs_error err = {0};
	/* A connection the kernel already ended (unmounted from outside) has
	 * no mount of ours left: the path may now hold someone else's. */
	struct pollfd p = {.fd = l->fuse_fd, .events = 0};
	bool gone = poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
	if (l->mountpoint && !gone && rfuse_unmount(l->mountpoint, &err) < 0)
		rs_log(RS_LOG_DEBUG, "layerfs: %s: %s", l->digest, err.msg);
	close(l->fuse_fd);
	l->fuse_fd = -1;
	rfuse_session_free(l->se);
	l->se = NULL;
}

/* Serves the connection fd, already mounted at mountpoint by an earlier
 * process, with what that process left in the state directory. */
static int adopt(struct lfs_layer *l, const char *mountpoint, int fd, struct rfuse_session **se,
		 struct rs_error *err)
{
	/* Not statfs: nothing serves the connection yet, a request would hang. */
	int m = rfuse_mounted_at(mountpoint);
	if (m < 0)
		return rs_err(err, m, "/proc/self/mountinfo: %s", strerror(-m));
	if (m == 0)
		return rs_err(err, -EINVAL,
			      "layer %s: %s is not a FUSE mount: nothing to take over", l->digest,
			      mountpoint);
	struct rfuse_granted g;
	int r = lfs_state_load_granted(l, &g, err);
	if (r < 0)
		return r;
	bool kept;
	r = lfs_state_opens_map(l, true, &kept);
	if (r < 0)
		return rs_err(err, r, "layer %s: %s/fuse.opens: %s", l->digest, l->state_dir,
			      strerror(-r));
	if (!kept)
		rs_log(RS_LOG_WARN,
		       "layerfs: %s: no record of the files open at %s; opens of files in "
		       "passthrough use may fail until they are closed",
		       l->digest, mountpoint);
	return rfuse_session_adopt(fd, &lfs_ops, l, &l->rt->fuse_wishes, &g, se, err);
}

int lfs_layer_mount_with(struct lfs_layer *l, const char *mountpoint,
			 const struct lfs_mount_opts *mo, struct rs_error *err)
{
	static const struct lfs_mount_opts none = {.adopt_fd = -1};
	if (!mo)
		mo = &none;
	if (l->se)
		return rs_err(err, -EBUSY, "layer %s is mounted already", l->digest);
	if (atomic_load(&l->toc_unchecked))
		return rs_err(err, LFS_EUNVERIFIED,
			      "layer %s: its TOC digest was never checked (no "
			      "annotation " ESGZ_ANNOTATION_TOC_DIGEST
			      "): refused unless allow_unverified",
			      l->digest);
	struct stat st;
	if (mo->adopt_fd < 0 && stat(mountpoint, &st) < 0)
		return rs_err(err, -errno, "mountpoint %s: %s", mountpoint, strerror(errno));
	if (mo->adopt_fd < 0 && !S_ISDIR(st.st_mode))
		return rs_err(err, -ENOTDIR, "mountpoint %s is not a directory", mountpoint);
	if (mo->state_dir && !(l->state_dir = strdup(mo->state_dir)))
		return rs_err(err, -ENOMEM, "out of memory");
	int64_t t0 = lfs_now_ms();
	bool adopting = mo->adopt_fd >= 0;
	struct rfuse_session *se = NULL;
	int fd = mo->adopt_fd, r;
	if (adopting) {
		r = adopt(l, mountpoint, fd, &se, err);
	} else {
		char fsname[64];
		snprintf(fsname, sizeof(fsname), "stargz-%.12s", l->digest + 7);
		bool kept;
		r = lfs_state_opens_map(l, false, &kept);
		if (r < 0)
			return rs_err(err, r, "layer %s: %s/fuse.opens: %s", l->digest,
				      l->state_dir, strerror(-r));
		fd = rfuse_mount(mountpoint, fsname, "stargz", err);
		if (fd < 0)
			return fd;
		r = rfuse_session_new(fd, &lfs_ops, l, &l->rt->fuse_wishes, &se, err);
		if (r < 0) {
			(void)rfuse_unmount(mountpoint, NULL);
			close(fd);
		}
	}
	if (r < 0) {
		lfs_state_opens_unmap(l);
		return r;
	}
	l->mountpoint = strdup(mountpoint);
	l->se = se;
	l->fuse_fd = fd;
	if (adopting)
		lfs_passthrough_adopt(l);
	r = lfs_runtime_attach(l->rt, l, err);
	if (r < 0) {
		/* An adopted connection is not ours to end: its holder keeps it. */
		if (adopting) {
			rfuse_session_free(l->se);
			l->se = NULL;
			l->fuse_fd = -1;
		} else {
			end_session(l);
		}
		return r;
	}
	if (adopting) {
		/* Requests the dead process had read come again. */
		int rr = rfuse_notify_resend(se);
		if (rr < 0)
			rs_log(RS_LOG_WARN,
			       "layerfs: %s: FUSE_NOTIFY_RESEND: %s (requests the old process "
			       "had read stay unanswered; Linux 6.9+ resends them)",
			       l->digest, strerror(-rr));
	}
	choose_readahead(l, mountpoint);
	pthread_mutex_lock(&l->rt->lock);
	l->mounted = true;
	pthread_mutex_unlock(&l->rt->lock);
	if (!l->defer_fetch)
		lfs_layer_fetch_start(l);
	rs_log(RS_LOG_INFO, "layerfs: %s %s at %s (%u entries, %lld ms)", l->digest,
	       adopting ? "taken over" : "mounted", mountpoint, l->nnodes,
	       (long long)(lfs_now_ms() - t0));
	return 0;
}

int lfs_layer_mount(struct lfs_layer *l, const char *mountpoint, struct rs_error *err)
{
	return lfs_layer_mount_with(l, mountpoint, NULL, err);
}

int lfs_layer_fuse_fd(const struct lfs_layer *l)
{
	return l->se ? l->fuse_fd : -1;
}

static void close_layer(struct lfs_layer *l, bool keep)
{
	if (!l)
		return;
	struct lfs_runtime *rt = l->rt;
	pthread_mutex_lock(&rt->lock);
	for (struct lfs_layer **pp = &rt->layers; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	l->mounted = false;
	pthread_mutex_unlock(&rt->lock);
	atomic_store(&l->bg_active, false);
	pthread_mutex_lock(&l->lock);
	l->closing = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	lfs_fetch_cancel(rt, l);
	if (l->se) {
		lfs_runtime_detach(rt, l);
		lfs_passthrough_close(l, keep);
		if (keep) {
			/* The mount and its connection stay, for a successor that
			 * gets the fd from whoever holds a copy of it. */
			close(l->fuse_fd);
			l->fuse_fd = -1;
			rfuse_session_free(l->se);
			l->se = NULL;
		} else {
			end_session(l);
		}
	}
	lfs_state_opens_unmap(l);
	lfs_layer_unref(l);
}

void lfs_layer_close(struct lfs_layer *l)
{
	close_layer(l, false);
}

void lfs_layer_close_keep(struct lfs_layer *l)
{
	close_layer(l, true);
}

bool lfs_layer_alive(struct lfs_layer *l)
{
	return l->se && lfs_runtime_session_alive(l->rt, l);
}

const char *lfs_state_name(enum lfs_state s)
{
	switch (s) {
	case LFS_STATE_PREFETCHING:
		return "prefetching";
	case LFS_STATE_FETCHING:
		return "fetching";
	case LFS_STATE_LAZY:
		return "lazy";
	case LFS_STATE_COMPLETE:
		return "complete";
	case LFS_STATE_FAILED:
		return "failed";
	}
	return "unknown";
}

void lfs_layer_status(struct lfs_layer *l, struct lfs_status *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->digest, sizeof(out->digest), "%s", l->digest);
	out->size = l->blob->size;
	out->data_bytes = l->data_bytes;
	out->entries = l->nnodes;
	pthread_mutex_lock(&l->lock);
	out->fetched_bytes = l->fetched_bytes;
	out->registry_ok = l->registry_ok;
	out->fetch_errors = l->fetch_errors;
	out->verify_errors = l->verify_errors;
	out->cache_size_mismatches = l->cache_size_mismatches;
	bool prefetching = l->prefetch_pending > 0;
	pthread_mutex_unlock(&l->lock);
	out->percent =
	    l->data_bytes > 0 ? 100.0 * (double)out->fetched_bytes / (double)l->data_bytes : 100.0;
	int check = atomic_load(&l->diffid_state);
	out->diff_id_check = lfs_diffid_state_name(check);
	if ((check == LFS_DIFFID_OK || check == LFS_DIFFID_MISMATCH) && l->diff_id_known)
		rs_digest_format(l->diff_id, out->diff_id);
	if (check == LFS_DIFFID_MISMATCH)
		out->state = LFS_STATE_FAILED;
	else if (out->fetched_bytes >= l->data_bytes)
		out->state = LFS_STATE_COMPLETE;
	else if (prefetching)
		out->state = LFS_STATE_PREFETCHING;
	else if (atomic_load(&l->bg_active))
		out->state = LFS_STATE_FETCHING;
	else
		out->state = LFS_STATE_LAZY;
	out->mounted = lfs_layer_alive(l);
	out->passthrough = l->rt->pt_active;
	out->passthrough_opens = atomic_load(&l->passthrough_opens);
	out->backing_files = atomic_load(&l->backing_built);
	out->toc_from_cache = l->toc_from_cache;
}

int lfs_status_json(const struct lfs_status *s, struct rs_buf *out)
{
	return rs_buf_printf(
	    out,
	    "{\"digest\":\"%s\",\"size\":%lld,\"data_bytes\":%lld,"
	    "\"fetched_bytes\":%lld,\"percent\":%.2f,\"state\":\"%s\","
	    "\"mounted\":%s,\"registry_ok\":%s,\"fetch_errors\":%llu,"
	    "\"verify_errors\":%llu,\"cache_size_mismatches\":%llu,"
	    "\"entries\":%llu,\"diff_id_check\":\"%s\",\"diff_id\":\"%s\","
	    "\"passthrough\":%s,\"passthrough_opens\":%llu,\"backing_files\":%llu,"
	    "\"toc_cached\":%s}\n",
	    s->digest, (long long)s->size, (long long)s->data_bytes, (long long)s->fetched_bytes,
	    s->percent, lfs_state_name(s->state), s->mounted ? "true" : "false",
	    s->registry_ok ? "true" : "false", (unsigned long long)s->fetch_errors,
	    (unsigned long long)s->verify_errors, (unsigned long long)s->cache_size_mismatches,
	    (unsigned long long)s->entries, s->diff_id_check ? s->diff_id_check : "off", s->diff_id,
	    s->passthrough ? "true" : "false", (unsigned long long)s->passthrough_opens,
	    (unsigned long long)s->backing_files, s->toc_from_cache ? "true" : "false");
}
