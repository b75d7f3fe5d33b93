// SPDX-License-Identifier: Apache-2.0
/* ctrd_rpull: an image from a registry into containerd, as containerd's own
 * pull with unpack (client.Pull + unpacker) leaves it, with the labels the
 * stargz remote snapshotter protocol adds to each layer's Prepare.
 *
 * Order of work, all under one lease (gc.expire 24 h, deleted at the end):
 * resolve; config from the registry (its diff_ids give the chainIDs); index,
 * manifest and config into the content store with containerd's gc labels;
 * each layer bottom first: Stat(chainID) -> "exists", or Prepare with the
 * remote labels -> ALREADY_EXISTS + Stat(chainID) -> "lazy", or an ordinary
 * active snapshot: blob into the content store (streamed from the registry
 * through a pipe), Diff.Apply, diffID check, Commit(chainID); then the
 * config's gc.ref.snapshot label and the image record. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "client/rpull_internal.h"
#include "estargz/estargz.h"

#define DEFAULT_SNAPSHOTTER "stargz"
#define LEASE_EXPIRE_S (24 * 3600)
#define CONFIG_MAX (16 << 20)
#define PIPE_CHUNK (1 << 20)

/* ---- the pull ----------------------------------------------------------- */

struct pull {
	const struct ctrd_rpull_opts *o;
	const char *sn;
	struct reg_client *reg;
	struct reg_ref ref;
	char *name;
	char *dist_key; /* containerd.io/distribution.source.<host> */
	struct reg_manifest index, manifest;
	json_t *manifest_json; /* for the layers' urls */
	struct rs_buf config;
	char (*diff_ids)[RS_DIGEST_STR_LEN];
	char (*chain)[RS_DIGEST_STR_LEN];
	struct ctrd_client *c;
	char *lease;
	struct ahead *ahead; /* NULL until a layer is downloaded */
	bool chain_absent;   /* a lower layer's chain was not there before this pull */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *ctrd_layer_action_name(enum ctrd_layer_action a)
{
	switch (a) {
	case CTRD_LAYER_EXISTS:
		return "exists";
	case CTRD_LAYER_LAZY:
		return "lazy";
	case CTRD_LAYER_DOWNLOADED:
		return "downloaded";
	case CTRD_LAYER_APPLIED:
		return "applied";
	}
	return "?";
}

/* Sets labels on content that was there already: the given ones plus this
 * repository in the distribution source label. */
static int relabel_existing(struct pull *p, const char *digest, struct ctrd_labels *l,
			    struct rs_error *err)
{
	struct ctrd_content_info info;
	int rc = ctrd_content_info(p->c, digest, &info, err);
	if (rc < 0) {
		rs_error_prefix(err, "content %s", digest);
		return rc;
	}
	cleanup_free char *v =
	    ctrd_merge_sources(ctrd_kv_get(info.labels, info.n_labels, p->dist_key), p->ref.path);
	ctrd_content_info_free(&info);
	if (!v)
		return rs_err(err, -ENOMEM, "out of memory");
	if (ctrd_label_fits(p->dist_key, strlen(v)) && ctrd_labels_set(l, p->dist_key, v) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	rc = ctrd_content_update_labels(p->c, digest, l->v, l->n, err);
	if (rc < 0) {
		rs_error_prefix(err, "labelling content %s", digest);
		return rc;
	}
	return 0;
}

/* A small blob (index, manifest, config) into the content store with labels. */
static int put_blob(struct pull *p, const char *kind, const char *digest, const void *data,
		    size_t len, struct ctrd_labels *l, struct rs_error *err)
{
	char ingest[RS_DIGEST_STR_LEN + 16];
	snprintf(ingest, sizeof(ingest), "%s-%s", kind, digest);
	if (ctrd_label_fits(p->dist_key, strlen(p->ref.path)) &&
	    ctrd_labels_set(l, p->dist_key, p->ref.path) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	int rc = ctrd_content_write(p->c, ingest, digest, data, len, l->v, l->n, err);
	if (rc == -EEXIST)
		return relabel_existing(p, digest, l, err);
	if (rc < 0) {
		rs_error_prefix(err, "storing the %s %s", kind, digest);
		return rc;
	}
	return 0;
}

/* A blob small enough for memory (the config), verified by reg_blob_fetch. */
static int fetch_small(struct pull *p, const struct reg_descriptor *d, size_t max,
		       struct rs_buf *out, struct rs_error *err)
{
	if (d->size < 0 || (uint64_t)d->size > max)
		return rs_err(err, -EFBIG, "blob %s: size %lld is out of bounds (at most %zu)",
			      d->digest, (long long)d->size, max);
	cleanup_fd int fd = memfd_create("rpull-blob", MFD_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "memfd_create: %s", strerror(errno));
	int rc = reg_blob_fetch(p->reg, &p->ref, d->digest, d->size, fd, err);
	if (rc < 0)
		return rc;
	if (rs_buf_reserve(out, (size_t)d->size + 1) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	size_t got = 0;
	while (got < (size_t)d->size) {
		ssize_t r = pread(fd, out->data + got, (size_t)d->size - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return rs_err(err, r < 0 ? -errno : -EIO, "reading blob %s back: %s",
				      d->digest, r < 0 ? strerror(errno) : "short read");
		got += (size_t)r;
	}
	out->len = got;
	out->data[got] = '\0';
	return 0;
}

/* rootfs.diff_ids of the config, one per layer. */
static int parse_diff_ids(struct pull *p, struct rs_error *err)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)p->config.data, p->config.len, 0, &jerr);
	if (!root)
		return rs_err(err, -EBADMSG, "config %s: not JSON: %s", p->manifest.config.digest,
			      jerr.text);
	int rc = 0;
	json_t *ids = json_object_get(json_object_get(root, "rootfs"), "diff_ids");
	size_t n = p->manifest.n_layers;
	if (!json_is_array(ids)) {
		rc = rs_err(err, -EBADMSG, "config %s: no rootfs.diff_ids",
			    p->manifest.config.digest);
	} else if (json_array_size(ids) != n) {
		rc = rs_err(err, -EBADMSG,
			    "config %s has %zu diff_ids for the manifest's %zu layers",
			    p->manifest.config.digest, json_array_size(ids), n);
	} else {
		p->diff_ids = calloc(n, sizeof(*p->diff_ids));
		p->chain = calloc(n, sizeof(*p->chain));
		if (!p->diff_ids || !p->chain)
			rc = rs_err(err, -ENOMEM, "out of memory");
		for (size_t i = 0; rc == 0 && i < n; i++) {
			const char *s = json_string_value(json_array_get(ids, i));
			uint8_t sum[RS_SHA256_LEN];
			if (!s || rs_digest_parse(s, strlen(s), sum) < 0) {
				rc = rs_err(err, -EBADMSG,
					    "config %s: diff_ids[%zu] is not a sha256 digest",
					    p->manifest.config.digest, i);
				break;
			}
			snprintf(p->diff_ids[i], RS_DIGEST_STR_LEN, "%s", s);
			ctrd_chain_id(i ? p->chain[i - 1] : NULL, s, p->chain[i]);
		}
	}
	json_decref(root);
	return rc;
}

struct fetch_job {
	struct reg_client *reg;
	const struct reg_ref *ref;
	const char *digest;
	int64_t size;
	int fd;
	int result;
	struct rs_error err;
};

static void *fetch_thread(void *arg)
{
	struct fetch_job *j = arg;
	/* The reader may go away (containerd failed): EPIPE, not a signal. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	j->result = reg_blob_fetch(j->reg, j->ref, j->digest, j->size, j->fd, &j->err);
	close(j->fd);
	return NULL;
}

/* Streams the blob from the registry into w: a fetch thread writes it (and
 * checks its digest) into a pipe, this thread sends it on in 1 MiB messages. */
static int stream_blob(struct pull *p, const struct reg_descriptor *d, struct ctrd_writer *w,
		       struct rs_error *err)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return rs_err(err, -errno, "pipe: %s", strerror(errno));
	fcntl(fds[0], F_SETPIPE_SZ, PIPE_CHUNK);
	struct fetch_job job = {
	    .reg = p->reg, .ref = &p->ref, .digest = d->digest, .size = d->size, .fd = fds[1]};
	pthread_t th;
	int e = pthread_create(&th, NULL, fetch_thread, &job);
	if (e) {
		close(fds[0]);
		close(fds[1]);
		return rs_err(err, -e, "cannot start a fetch thread: %s", strerror(e));
	}
	int rc = 0;
	uint8_t *buf = malloc(PIPE_CHUNK);
	if (!buf)
		rc = rs_err(err, -ENOMEM, "out of memory");
	bool eof = false;
	while (rc == 0 && !eof) {
		size_t got = 0;
		while (got < PIPE_CHUNK) {
			ssize_t r = read(fds[0], buf + got, PIPE_CHUNK - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = rs_err(err, -errno, "reading the fetched blob: %s",
					    strerror(errno));
				break;
			}
			if (r == 0) {
				eof = true;
				break;
			}
			got += (size_t)r;
		}
		if (rc == 0 && got)
			rc = ctrd_writer_write(w, buf, got, err);
	}
	free(buf);
	close(fds[0]); /* a fetch still running gets EPIPE */
	pthread_join(th, NULL);
	if (job.result < 0) {
		/* The registry's story explains a broken pipe best. */
		if (rc == 0 || job.err.code != -EPIPE) {
			*err = job.err;
			rc = job.result;
		}
	}
	return rc;
}

/* The layer blob in the content store: there already (added to the lease),
 * or downloaded. *fetched gets the bytes downloaded. */
static int ensure_layer_blob(struct pull *p, size_t i, int64_t *fetched, struct rs_error *err)
{
	const struct reg_descriptor *d = &p->manifest.layers[i];
	char ingest[RS_DIGEST_STR_LEN + 16];
	snprintf(ingest, sizeof(ingest), "layer-%s", d->digest);
	struct ctrd_labels l = {0};
	int rc = 0;
	*fetched = 0;
	struct ctrd_writer *w = NULL;
	rc = ctrd_writer_open(p->c, ingest, d->digest, d->size, &w, err);
	if (rc == -EEXIST) {
		rc = relabel_existing(p, d->digest, &l, err);
		ctrd_labels_free(&l);
		return rc;
	}
	if (rc < 0) {
		rs_error_prefix(err, "storing layer %s", d->digest);
		return rc;
	}
	rc = stream_blob(p, d, w, err);
	*fetched = ctrd_writer_offset(w);
	if (rc == 0) {
		if (ctrd_label_fits(p->dist_key, strlen(p->ref.path)) &&
		    ctrd_labels_set(&l, p->dist_key, p->ref.path) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		else
			rc = ctrd_writer_commit(w, l.v, l.n, err);
		if (rc == -EEXIST) /* someone else committed it meanwhile */
			rc = relabel_existing(p, d->digest, &l, err);
		else if (rc < 0)
			rs_error_prefix(err, "storing layer %s", d->digest);
	}
	ctrd_writer_free(w);
	if (rc < 0)
		ctrd_content_abort(p->c, ingest, NULL);
	ctrd_labels_free(&l);
	return rc;
}

/* Blobs of the ordinary layers above the first one a snapshotter did not take,
 * downloaded in order by one thread while the layers below are applied (as
 * containerd's unpacker does). eStargz layers are left out: a remote
 * snapshotter may still take them. */
struct ahead {
	bool started;
	pthread_t th;
	struct pull *p;
	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t cond;
	bool stop;
	bool *want;     /* layer i is downloaded ahead */
	uint8_t *state; /* 0 waiting, 1 downloading, 2 done */
	int *rc;
	int64_t *fetched;
	struct rs_error *errs;
};

static bool maybe_lazy(const struct reg_descriptor *d)
{
	for (size_t k = 0; k < d->n_annotations; k++)
		if (strcmp(d->annotations[k].key, ESGZ_ANNOTATION_TOC_DIGEST) == 0)
			return true;
	return false;
}

static void *ahead_thread(void *arg)
{
	struct ahead *a = arg;
	size_t n = a->p->manifest.n_layers;
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&a->lock);
		bool go = a->want[i] && !a->stop;
		if (go)
			a->state[i] = 1;
		pthread_mutex_unlock(&a->lock);
		if (!go)
			continue;
		int rc = ensure_layer_blob(a->p, i, &a->fetched[i], &a->errs[i]);
		pthread_mutex_lock(&a->lock);
		a->rc[i] = rc;
		a->state[i] = 2;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
	}
	return NULL;
}

/* Starts downloading the ordinary layers above layer `above`; best effort. */
static void ahead_start(struct ahead *a, struct pull *p, size_t above)
{
	size_t n = p->manifest.n_layers, count = 0;
	a->p = p;
	a->want = calloc(n, sizeof(*a->want));
	a->state = calloc(n, 1);
	a->rc = calloc(n, sizeof(*a->rc));
	a->fetched = calloc(n, sizeof(*a->fetched));
	a->errs = calloc(n, sizeof(*a->errs));
	if (!a->want || !a->state || !a->rc || !a->fetched || !a->errs)
		return;
	for (size_t i = above + 1; i < n; i++)
		count += a->want[i] = !maybe_lazy(&p->manifest.layers[i]);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	if (count && pthread_create(&a->th, NULL, ahead_thread, a) == 0) {
		a->started = true;
		rs_log(RS_LOG_DEBUG, "rpull: downloading %zu ordinary layer(s) ahead", count);
		return;
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
}

/* Layer i's blob as the download-ahead left it: 1 when it took care of it
 * (rc and fetched set), 0 when this thread must do it itself. */
static int ahead_take(struct ahead *a, size_t i, int64_t *fetched, int *rc, struct rs_error *err)
{
	if (!a || !a->started || !a->want[i])
		return 0;
	pthread_mutex_lock(&a->lock);
	while (a->state[i] != 2)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
	*fetched = a->fetched[i];
	*rc = a->rc[i];
	if (*rc < 0)
		*err = a->errs[i];
	return 1;
}

static void ahead_finish(struct ahead *a)
{
	if (a->started) {
		pthread_mutex_lock(&a->lock);
		a->stop = true;
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->th, NULL);
		pthread_mutex_destroy(&a->lock);
		pthread_cond_destroy(&a->cond);
	}
	free(a->want);
	free(a->state);
	free(a->rc);
	free(a->fetched);
	free(a->errs);
}

/* The ordinary path: blob, Apply onto the prepared snapshot, Commit. */
static int unpack_layer(struct pull *p, size_t i, const char *key, const struct ctrd_mounts *m,
			struct ctrd_labels *l, struct ctrd_rpull_layer *out, struct rs_error *err)
{
	const struct reg_descriptor *d = &p->manifest.layers[i];
	int rc;
	if (!ahead_take(p->ahead, i, &out->fetched, &rc, err))
		rc = ensure_layer_blob(p, i, &out->fetched, err);
	char applied[RS_DIGEST_STR_LEN] = "";
	if (rc == 0) {
		struct ctrd_descriptor desc = {
		    .media_type = d->media_type, .digest = d->digest, .size = d->size};
		rc = ctrd_diff_apply(p->c, &desc, m, applied, err);
		if (rc < 0)
			rs_error_prefix(err, "applying layer %s", d->digest);
	}
	if (rc == 0 && strcmp(applied, p->diff_ids[i]) != 0)
		rc = rs_err(err, -EBADMSG,
			    "layer %s unpacks to %s, but the config's diff_ids[%zu] is %s",
			    d->digest, applied, i, p->diff_ids[i]);
	bool committed = false;
	if (rc == 0) {
		rc = ctrd_snapshot_commit(p->c, p->sn, p->chain[i], key, l->v, l->n, err);
		if (rc == 0)
			committed = true;
		else if (rc == -EEXIST) /* the same chain was committed meanwhile: ours goes */
			rc = 0;
		else
			rs_error_prefix(err, "committing snapshot %s", p->chain[i]);
	}
	if (!committed) {
		/* containerd's unpacker aborts the extraction snapshot the same way. */
		struct rs_error ignored;
		ctrd_snapshot_remove(p->c, p->sn, key, &ignored);
	}
	if (rc < 0)
		return rc;
	/* containerd's unpacker: set once Apply has verified the diffID. */
	struct ctrd_kv u = {(char *)CTRD_LABEL_UNCOMPRESSED, p->diff_ids[i]};
	rc = ctrd_content_update_labels(p->c, d->digest, &u, 1, err);
	if (rc < 0) {
		rs_error_prefix(err, "labelling layer %s", d->digest);
		return rc;
	}
	out->action = out->fetched > 0 ? CTRD_LAYER_DOWNLOADED : CTRD_LAYER_APPLIED;
	return 0;
}

static int do_layer(struct pull *p, size_t i, struct ctrd_rpull_layer *out, struct rs_error *err)
{
	const char *chain = p->chain[i];
	const char *parent = i ? p->chain[i - 1] : "";
	/* A snapshot's parent must exist: above a chain that was not there,
	 * none can be, and a Stat round trip a layer is saved. */
	int rc = p->chain_absent ? -ENOENT : ctrd_snapshot_stat(p->c, p->sn, chain, NULL, err);
	if (rc == 0) {
		out->action = CTRD_LAYER_EXISTS;
		return 0;
	}
	if (rc != -ENOENT) {
		rs_error_prefix(err, "snapshotter %s", p->sn);
		return rc;
	}
	p->chain_absent = true;

	struct ctrd_labels l = {0};
	if (ctrd_layer_labels(&p->manifest, p->manifest_json, i, p->chain[i], p->name, &l) < 0) {
		ctrd_labels_free(&l);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	char key[CTRD_UNIQUE_LEN + RS_DIGEST_STR_LEN + 16];
	struct ctrd_mounts m = {0};
	char uniq[CTRD_UNIQUE_LEN];
	ctrd_unique_part(uniq);
	/* containerd's snapshots.UnpackKeyFormat, "extract-%s %s" */
	snprintf(key, sizeof(key), "extract-%s %s", uniq, chain);
	rc = ctrd_snapshot_prepare(p->c, p->sn, key, parent, l.v, l.n, &m, err);
	if (rc == -EEXIST) {
		/* A remote snapshotter has the layer. containerd's metadata layer
		 * answers ALREADY_EXISTS only once it has found the committed
		 * target in the backend (a Walk on containerd.io/snapshot.ref and
		 * the parent) and recorded it under the lease: no Stat needed. */
		out->action = CTRD_LAYER_LAZY;
		ctrd_labels_free(&l);
		return 0;
	}
	if (rc < 0) {
		ctrd_labels_free(&l);
		rs_error_prefix(err, "snapshotter %s: preparing %s", p->sn, chain);
		return rc;
	}
	rc = unpack_layer(p, i, key, &m, &l, out, err);
	ctrd_mounts_free(&m);
	ctrd_labels_free(&l);
	return rc;
}

static int store_metadata(struct pull *p, struct rs_error *err)
{
	int rc = 0;
	struct ctrd_labels l = {0};
	const struct reg_manifest *m = &p->manifest;
	if (p->index.digest && p->index.raw.len) {
		/* images.ChildGCLabels of the one manifest kept for this platform */
		char key[sizeof(CTRD_LABEL_GC_MANIFEST_PREFIX) + 4];
		snprintf(key, sizeof(key), "%s0", CTRD_LABEL_GC_MANIFEST_PREFIX);
		if (ctrd_labels_set(&l, key, m->digest) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
		if (rc == 0)
			rc = put_blob(p, "index", p->index.digest, p->index.raw.data,
				      p->index.raw.len, &l, err);
		ctrd_labels_free(&l);
		if (rc < 0)
			return rc;
	}
	if (ctrd_labels_set(&l, CTRD_LABEL_GC_CONFIG, m->config.digest) < 0)
		rc = rs_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < m->n_layers; i++) {
		char key[sizeof(CTRD_LABEL_GC_LAYER_PREFIX) + 24];
		snprintf(key, sizeof(key), "%s%zu", CTRD_LABEL_GC_LAYER_PREFIX, i);
		if (ctrd_labels_set(&l, key, m->layers[i].digest) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = put_blob(p, "manifest", m->digest, m->raw.data, m->raw.len, &l, err);
	ctrd_labels_free(&l);
	if (rc == 0)
		rc =
		    put_blob(p, "config", m->config.digest, p->config.data, p->config.len, &l, err);
	ctrd_labels_free(&l);
	return rc;
}

static int resolve(struct pull *p, struct rs_error *err)
{
	int rc = reg_ref_parse(p->o->ref, &p->ref, err);
	if (rc < 0)
		return rc;
	p->name = reg_ref_string(&p->ref);
	p->dist_key = ctrd_dist_source_key(p->ref.domain);
	if (!p->name || !p->dist_key)
		return rs_err(err, -ENOMEM, "out of memory");
	struct reg_options defaults = {0};
	rc = reg_client_new(p->o->reg ? p->o->reg : &defaults, &p->reg, err);
	if (rc < 0)
		return rc;
	rc = reg_resolve(p->reg, &p->ref, p->o->platform, &p->index, &p->manifest, err);
	if (rc < 0)
		return rc;
	if (p->manifest.n_layers == 0)
		return rs_err(err, -EINVAL, "image %s has no layers", p->manifest.digest);
	json_error_t jerr;
	p->manifest_json =
	    json_loadb((const char *)p->manifest.raw.data, p->manifest.raw.len, 0, &jerr);
	if (!p->manifest_json)
		return rs_err(err, -EBADMSG, "manifest %s: %s", p->manifest.digest, jerr.text);
	rc = fetch_small(p, &p->manifest.config, CONFIG_MAX, &p->config, err);
	if (rc < 0) {
		rs_error_prefix(err, "config");
		return rc;
	}
	return parse_diff_ids(p, err);
}

struct store_job {
	struct pull *p;
	double t0;
	int rc;
	struct rs_error err;
};

static void *store_thread(void *arg)
{
	struct store_job *j = arg;
	j->rc = store_metadata(j->p, &j->err);
	rs_log(RS_LOG_DEBUG, "rpull: manifest and config stored (%.1f ms)",
	       (now_s() - j->t0) * 1e3);
	return NULL;
}

static int pull_into(struct pull *p, struct ctrd_rpull_result *out, struct rs_error *err)
{
	/* The documents go to the content store while the layers are prepared:
	 * neither waits for the other, and the lease holds both. */
	struct store_job sj = {.p = p, .t0 = now_s()};
	double t0 = sj.t0;
	pthread_t store_th;
	int e = pthread_create(&store_th, NULL, store_thread, &sj);
	if (e)
		return rs_err(err, -e, "cannot start a thread: %s", strerror(e));
	int rc = 0;
	struct ahead ahead = {0};
	const struct reg_manifest *m = &p->manifest;
	for (size_t i = 0; rc == 0 && i < m->n_layers; i++) {
		struct ctrd_rpull_layer *L = &out->layers[i];
		double t = now_s();
		snprintf(L->digest, sizeof(L->digest), "%s", m->layers[i].digest);
		snprintf(L->diff_id, sizeof(L->diff_id), "%s", p->diff_ids[i]);
		snprintf(L->chain_id, sizeof(L->chain_id), "%s", p->chain[i]);
		L->size = m->layers[i].size;
		L->media_type = m->layers[i].media_type;
		rc = do_layer(p, i, L, err);
		if (rc < 0) {
			rs_error_prefix(err, "layer %zu (%s)", i, m->layers[i].digest);
			break;
		}
		L->seconds = now_s() - t;
		rs_log(RS_LOG_DEBUG, "rpull: layer %zu %s: %s (%.1f ms)", i, L->digest,
		       ctrd_layer_action_name(L->action), L->seconds * 1e3);
		if (p->o->on_layer)
			p->o->on_layer(p->o->ctx, i, m->n_layers, L);
		L->media_type = NULL;
		out->n_layers = i + 1;
		bool ordinary =
		    L->action == CTRD_LAYER_DOWNLOADED || L->action == CTRD_LAYER_APPLIED;
		if (ordinary && !p->ahead && i + 1 < m->n_layers) {
			p->ahead = &ahead;
			ahead_start(&ahead, p, i);
		}
	}
	if (p->ahead) {
		if (rc < 0) /* a download ahead is no longer wanted: end it now */
			reg_client_cancel(p->reg);
		ahead_finish(&ahead);
		p->ahead = NULL;
	}
	pthread_join(store_th, NULL);
	if (rc == 0 && sj.rc < 0) {
		*err = sj.err;
		rc = sj.rc;
	}
	if (rc < 0)
		return rc;

	/* What containerd's unpacker sets once every layer is unpacked. */
	char key[sizeof(CTRD_LABEL_GC_SNAPSHOT_PREFIX) + 256];
	snprintf(key, sizeof(key), "%s%s", CTRD_LABEL_GC_SNAPSHOT_PREFIX, p->sn);
	const char *top = p->chain[m->n_layers - 1];
	struct ctrd_kv gc = {key, (char *)top};
	rc = ctrd_content_update_labels(p->c, m->config.digest, &gc, 1, err);
	if (rc < 0) {
		rs_error_prefix(err, "labelling config %s", m->config.digest);
		return rc;
	}

	bool from_index = p->index.digest && p->index.raw.len;
	const struct reg_manifest *t = from_index ? &p->index : m;
	struct ctrd_image img = {
	    .name = p->name,
	    .target = {.media_type = t->media_type,
		       .digest = t->digest,
		       .size = (int64_t)t->raw.len},
	};
	rc = ctrd_image_put(p->c, &img, &out->image_created, err);
	if (rc < 0) {
		rs_error_prefix(err, "image %s", p->name);
		return rc;
	}
	rs_log(RS_LOG_DEBUG, "rpull: image record written (%.1f ms)", (now_s() - t0) * 1e3);
	snprintf(out->target_digest, sizeof(out->target_digest), "%s", t->digest);
	snprintf(out->chain_id, sizeof(out->chain_id), "%s", top);
	return 0;
}

void ctrd_rpull_result_free(struct ctrd_rpull_result *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->layers);
	memset(r, 0, sizeof(*r));
}

struct connect_job {
	struct pull *p;
	struct ctrd_options co;
	double t0;
	int rc;
	struct rs_error err;
};

static void *connect_thread(void *arg)
{
	struct connect_job *j = arg;
	struct pull *p = j->p;
	j->rc = ctrd_client_new(&j->co, &p->c, &j->err);
	/* containerd's client.WithLease: everything stored or prepared is held
	 * by the lease until the image record references it. */
	if (j->rc == 0)
		j->rc = ctrd_lease_create(p->c, NULL, LEASE_EXPIRE_S, NULL, 0, &p->lease, &j->err);
	if (j->rc == 0)
		j->rc = ctrd_client_set_lease(p->c, p->lease, &j->err);
	if (j->rc == 0)
		rs_log(RS_LOG_DEBUG, "rpull: containerd connected, lease %s (%.1f ms)", p->lease,
		       (now_s() - j->t0) * 1e3);
	return NULL;
}

int ctrd_rpull(const struct ctrd_rpull_opts *o, struct ctrd_rpull_result *out, struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	double t0 = now_s();
	struct pull p = {.o = o, .sn = o->snapshotter ? o->snapshotter : DEFAULT_SNAPSHOTTER};
	int rc;
	if (!o->ref || !*o->ref) {
		rc = rs_err(err, -EINVAL, "no image reference");
		goto out;
	}
	if (!*p.sn) {
		rc = rs_err(err, -EINVAL, "the snapshotter name is empty");
		goto out;
	}
	/* containerd is reached while the registry answers. */
	struct connect_job cj = {.p = &p, .t0 = t0};
	cj.co = (struct ctrd_options){
	    .address = o->address, .namespace = o->namespace, .timeout_ms = o->timeout_ms};
	pthread_t connect_th;
	int e = pthread_create(&connect_th, NULL, connect_thread, &cj);
	if (e) {
		rc = rs_err(err, -e, "cannot start a thread: %s", strerror(e));
		goto out;
	}
	rc = resolve(&p, err);
	if (rc == 0)
		rs_log(RS_LOG_DEBUG, "rpull: %s resolved, config read (%.1f ms)", p.name,
		       (now_s() - t0) * 1e3);
	pthread_join(connect_th, NULL);
	if (rc == 0 && cj.rc < 0) {
		*err = cj.err;
		rc = cj.rc;
	}
	if (rc == 0) {
		out->layers = calloc(p.manifest.n_layers, sizeof(*out->layers));
		if (!out->layers)
			rc = rs_err(err, -ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = pull_into(&p, out, err);
	if (p.lease) {
		ctrd_client_set_lease(p.c, NULL, NULL);
		struct rs_error lerr;
		if (ctrd_lease_delete(p.c, p.lease, false, &lerr) < 0)
			rs_log(RS_LOG_WARN, "rpull: deleting lease %s: %s", p.lease, lerr.msg);
	}
	if (rc == 0) {
		out->name = steal_pointer(&p.name);
		snprintf(out->manifest_digest, sizeof(out->manifest_digest), "%s",
			 p.manifest.digest);
		snprintf(out->config_digest, sizeof(out->config_digest), "%s",
			 p.manifest.config.digest);
	}
out:
	out->seconds = now_s() - t0;
	ctrd_client_free(p.c);
	free(p.lease);
	free(p.diff_ids);
	free(p.chain);
	rs_buf_free(&p.config);
	if (p.manifest_json)
		json_decref(p.manifest_json);
	reg_manifest_free(&p.manifest);
	reg_manifest_free(&p.index);
	reg_client_free(p.reg);
	free(p.dist_key);
	free(p.name);
	reg_ref_free(&p.ref);
	if (rc < 0) {
		free(out->layers);
		out->layers = NULL;
		out->n_layers = 0;
	}
	return rc;
}
