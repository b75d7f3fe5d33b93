/* SPDX-License-Identifier: Apache-2.0 */
/* The remote-layer hook: labels of a Prepare -> an eStargz layer mounted
 * with src/layerfs at the snapshot's fs dir. Both label sets are understood:
 * the default one (containerd.io/snapshot/remote/stargz.*) and CRI's
 * (containerd.io/snapshot/cri.*). The other layers of the image, named in the
 * `.layers` label, are opened (footer and TOC) in the background as soon as
 * the first one is asked for, so that their Prepares find them ready. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon_internal.h"
#include "estargz/estargz.h"

#define L_REF "containerd.io/snapshot/remote/stargz.reference"
#define L_DIGEST "containerd.io/snapshot/remote/stargz.digest"
#define L_LAYERS "containerd.io/snapshot/remote/stargz.layers"
#define L_CRI_REF "containerd.io/snapshot/cri.image-ref"
#define L_CRI_DIGEST "containerd.io/snapshot/cri.layer-digest"
#define L_CRI_LAYERS "containerd.io/snapshot/cri.image-layers"
#define L_TOC ESGZ_ANNOTATION_TOC_DIGEST
/* Ours (stargz rpull): "digest=N,..." with the bytes from each listed
 * layer's TOC to its blob's end; a hint, so anything odd is ignored. */
#define L_TOC_TAILS "containerd.io/snapshot/remote-snapshotter.toc-tails"

/* Layers opened ahead, at most this many at once. */
#define MAX_AHEAD 8

/* A mounted layer's prefetch and background fetch wait until the image's top
 * layer (the one whose .layers label lists only itself) is mounted, and at
 * most this long: while containerd prepares one layer after the other, each
 * Prepare's metadata commits (ours and containerd's, fsynced) and round
 * trips are what the pull waits for, and prefetch traffic only slows them. */
#define DEFER_MAX_MS 1000

struct mounted {
	char *fs_dir;
	char *ref;
	char *digest;
	int64_t id;              /* the snapshot's: names its fd in the store */
	struct lfs_layer *layer; /* NULL for a dead connection */
	struct lfs_dead *dead;   /* a restored connection answered with EIO */
	char *dead_why;
	bool fetch_deferred;
	int64_t mounted_ms;
};

/* A layer opened ahead of its Prepare. */
struct ahead {
	struct ahead *next;
	struct daemon_remote *r;
	char *ref, *digest;
	int64_t toc_tail;
	bool done;
	struct lfs_layer *layer; /* NULL when the open failed (the Prepare opens again) */
};

struct daemon_remote {
	struct daemon_remote_opts o;
	struct snap_remote_ops ops;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mounted *v;
	size_t n, cap;
	struct ahead *ahead;
	int ahead_running;
	pthread_t starter; /* starts deferred fetches after DEFER_MAX_MS */
	bool starter_running, stopping;
	/* Connections an earlier process kept in the fd store, by name, until
	 * their snapshot is restored (fd -1 once taken). */
	struct fdstore_entry *restored;
	size_t n_restored;
	bool keep; /* shutting down for a successor: mounts stay */
};

static void fd_name(char *buf, size_t cap, int64_t id)
{
	snprintf(buf, cap, "fuse-%lld", (long long)id);
}

/* Under r->lock: the restored fd named for id (-1: none), taken. */
static int take_restored(struct daemon_remote *r, int64_t id)
{
	char name[64];
	fd_name(name, sizeof(name), id);
	for (size_t i = 0; i < r->n_restored; i++)
		if (r->restored[i].fd >= 0 && strcmp(r->restored[i].name, name) == 0) {
			int fd = r->restored[i].fd;
			r->restored[i].fd = -1;
			return fd;
		}
	return -1;
}

static void store_add(struct daemon_remote *r, int64_t id, int fd, const char *digest)
{
	if (!r->o.store || fd < 0)
		return;
	char name[64];
	fd_name(name, sizeof(name), id);
	struct rs_error e = {0};
	if (fdstore_add(r->o.store, name, fd, &e) < 0)
		rs_log(RS_LOG_WARN,
		       "remote: layer %s: its FUSE connection is not kept (%s): it will not "
		       "survive a restart of this daemon",
		       digest, e.msg);
}

static void store_remove(struct daemon_remote *r, int64_t id)
{
	if (!r->o.store)
		return;
	char name[64];
	fd_name(name, sizeof(name), id);
	struct rs_error e = {0};
	if (fdstore_remove(r->o.store, name, &e) < 0)
		rs_log(RS_LOG_WARN, "remote: fd store: removing %s: %s", name, e.msg);
}

/* Under r->lock: starts the deferred fetches (all, or those overdue). */
static void start_deferred_locked(struct daemon_remote *r, bool all)
{
	int64_t now = rs_monotonic_ms();
	for (size_t i = 0; i < r->n; i++) {
		struct mounted *m = &r->v[i];
		if (m->layer && m->fetch_deferred && (all || now - m->mounted_ms >= DEFER_MAX_MS)) {
			m->fetch_deferred = false;
			lfs_layer_fetch_start(m->layer);
		}
	}
}

static void *starter_main(void *arg)
{
	struct daemon_remote *r = arg;
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		start_deferred_locked(r, false);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Whether a .layers list (this layer and those above it) names only self. */
static bool is_top_layer(const char *layers, const char *self)
{
	return !layers || !strchr(layers, ',') || strcmp(layers, self) == 0;
}

static const char *label(const struct snap_label *l, size_t n, const char *a, const char *b)
{
	const char *v = snap_label_get(l, n, a);
	if (!v || !*v)
		v = snap_label_get(l, n, b);
	return v && *v ? v : NULL;
}

/* The policy for layers read through ref: [verify] and its host tables. */
static bool allow_unverified(const struct daemon_remote *r, const char *ref)
{
	if (!r->o.cfg)
		return false;
	struct reg_ref rr;
	struct rs_error e = {0};
	if (reg_ref_parse(ref, &rr, &e) < 0)
		return false;
	bool allow = daemon_config_allow_unverified(r->o.cfg, rr.domain);
	reg_ref_free(&rr);
	return allow;
}

static void *open_ahead(void *arg)
{
	struct ahead *a = arg;
	struct daemon_remote *r = a->r;
	struct lfs_layer_opts lo = {
	    .client = r->o.client,
	    .ref = a->ref,
	    .digest = a->digest,
	    .allow_unverified = allow_unverified(r, a->ref),
	    .toc_digest_later = true, /* the .layers label has no TOC digests */
	    .toc_tail = a->toc_tail,
	    .defer_fetch = true,
	    .no_prefetch = r->o.no_prefetch,
	    .no_background = r->o.no_background,
	    .read_timeout_ms = r->o.read_timeout_ms,
	};
	struct lfs_layer *l = NULL;
	struct rs_error err = {0};
	int rc = lfs_layer_open(r->o.rt, &lo, &l, &err);
	pthread_mutex_lock(&r->lock);
	if (rc < 0)
		rs_log(RS_LOG_DEBUG, "remote: opening %s ahead: %s", a->digest, err.msg);
	a->done = true;
	a->layer = rc == 0 ? l : NULL;
	r->ahead_running--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* digest's N in a toc-tails label; 0 when it is not there or not a number. */
static int64_t toc_tail_of(const char *tails, const char *digest)
{
	size_t dlen = strlen(digest);
	for (const char *p = tails; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len > dlen + 1 && strncmp(p, digest, dlen) == 0 && p[dlen] == '=') {
			int64_t v = rs_parse_decimal(p + dlen + 1, len - dlen - 1);
			return v > 0 ? v : 0;
		}
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

static struct ahead *find_ahead(struct daemon_remote *r, const char *ref, const char *digest)
{
	for (struct ahead *a = r->ahead; a; a = a->next)
		if (strcmp(a->digest, digest) == 0 && strcmp(a->ref, ref) == 0)
			return a;
	return NULL;
}

/* Under r->lock: starts opening each listed layer not yet known. */
static void start_ahead(struct daemon_remote *r, const char *ref, const char *list,
			const char *tails, const char *self)
{
	const char *p = list;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char digest[RS_DIGEST_STR_LEN];
		if (len > 0 && len < sizeof(digest)) {
			memcpy(digest, p, len);
			digest[len] = '\0';
			if (strcmp(digest, self) != 0 && !find_ahead(r, ref, digest) &&
			    r->ahead_running < MAX_AHEAD) {
				struct ahead *a = calloc(1, sizeof(*a));
				if (a) {
					a->r = r;
					a->ref = strdup(ref);
					a->digest = strdup(digest);
					a->toc_tail = toc_tail_of(tails, digest);
					pthread_t t;
					if (a->ref && a->digest &&
					    pthread_create(&t, NULL, open_ahead, a) == 0) {
						pthread_detach(t);
						r->ahead_running++;
						a->next = r->ahead;
						r->ahead = a;
					} else {
						free(a->ref);
						free(a->digest);
						free(a);
					}
				}
			}
		}
		p = comma ? comma + 1 : NULL;
	}
}

/* The layer opened ahead for (ref, digest), waiting for it if it is still
 * being opened; NULL when none was started or it failed. */
static struct lfs_layer *take_ahead(struct daemon_remote *r, const char *ref, const char *digest)
{
	struct ahead *a = find_ahead(r, ref, digest);
	if (!a)
		return NULL;
	while (!a->done)
		pthread_cond_wait(&r->cond, &r->lock);
	struct lfs_layer *l = a->layer;
	a->layer = NULL;
	return l;
}

static int add_mounted(struct daemon_remote *r, const char *fs_dir, const char *ref,
		       const char *digest, int64_t id, struct lfs_layer *l, struct lfs_dead *dead,
		       const char *dead_why)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		struct mounted *v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	struct mounted *m = &r->v[r->n];
	m->fs_dir = strdup(fs_dir);
	m->ref = strdup(ref);
	m->digest = strdup(digest);
	m->id = id;
	m->layer = l;
	m->dead = dead;
	m->dead_why = dead_why ? strdup(dead_why) : NULL;
	m->fetch_deferred = l != NULL;
	m->mounted_ms = rs_monotonic_ms();
	if (!m->fs_dir || !m->ref || !m->digest || (dead_why && !m->dead_why)) {
		free(m->fs_dir);
		free(m->ref);
		free(m->digest);
		free(m->dead_why);
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

static struct mounted *find_mounted(struct daemon_remote *r, const char *fs_dir)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].fs_dir, fs_dir) == 0)
			return &r->v[i];
	return NULL;
}

/* Opens and mounts (or, adopt_fd >= 0, takes over) the layer the labels
 * name; *out the layer. */
static int mount_layer(struct daemon_remote *r, const char *fs_dir, const char *parent,
		       const struct snap_label *labels, size_t n, const struct lfs_mount_opts *mo,
		       struct lfs_layer **out, struct rs_error *err)
{
	const char *ref = label(labels, n, L_REF, L_CRI_REF);
	const char *digest = label(labels, n, L_DIGEST, L_CRI_DIGEST);
	if (!ref || !digest)
		return rs_err(err, -ENOTSUP, "no remote layer labels");
	const char *layers = label(labels, n, L_LAYERS, L_CRI_LAYERS);
	const char *toc = snap_label_get(labels, n, L_TOC);
	const char *tails = snap_label_get(labels, n, L_TOC_TAILS);
	bool allow = allow_unverified(r, ref);

	pthread_mutex_lock(&r->lock);
	if (find_mounted(r, fs_dir)) {
		pthread_mutex_unlock(&r->lock);
		return rs_err(err, -EBUSY, "%s is mounted already", fs_dir);
	}
	if (layers)
		start_ahead(r, ref, layers, tails, digest);
	struct lfs_layer *l = take_ahead(r, ref, digest);
	pthread_mutex_unlock(&r->lock);

	if (!toc && !allow) {
		/* Nothing to check the TOC against: refused before any request. */
		if (l)
			lfs_layer_close(l);
		return rs_err(err, LFS_EUNVERIFIED,
			      "layer %s: no TOC digest annotation (%s) and unverified layers are "
			      "not allowed ([verify] allow_unverified)",
			      digest, L_TOC);
	}
	int rc = 0;
	if (!l) {
		struct lfs_layer_opts lo = {
		    .client = r->o.client,
		    .ref = ref,
		    .digest = digest,
		    .toc_digest = toc,
		    .allow_unverified = allow,
		    .toc_tail = toc_tail_of(tails, digest),
		    .defer_fetch = true,
		    .no_prefetch = r->o.no_prefetch,
		    .no_background = r->o.no_background,
		    .read_timeout_ms = r->o.read_timeout_ms,
		};
		rc = lfs_layer_open(r->o.rt, &lo, &l, err);
		if (rc < 0)
			return rc;
	} else if (toc) {
		/* Opened ahead without the annotation (the .layers label has none):
		 * check the TOC digest now. */
		if (lfs_layer_toc_digest_check(l, toc, err) < 0) {
			lfs_layer_close(l);
			return err->code;
		}
	}
	/* containerd names a layer's snapshot by its chain ID: the layer's
	 * diffID, once the blob is in, must give it. */
	rc = lfs_layer_expect_diff_id(l, NULL, snap_label_get(labels, n, SNAP_LABEL_TARGET), parent,
				      err);
	if (rc == 0)
		rc = lfs_layer_mount_with(l, fs_dir, mo, err);
	if (rc < 0) {
		lfs_layer_close(l);
		return rc;
	}
	*out = l;
	return 0;
}

/* A restored connection whose layer could not be served again: its
 * requests get EIO from now on; the reason stays for the health check. */
static int serve_dead(struct daemon_remote *r, const char *fs_dir, int64_t id, const char *ref,
		      const char *digest, int fd, const char *state_dir, struct rs_error *err)
{
	char why[sizeof(err->msg)];
	snprintf(why, sizeof(why), "%s", err->msg[0] ? err->msg : strerror(-err->code));
	int code = err->code < 0 ? err->code : -EIO;
	struct lfs_dead *d = NULL;
	struct rs_error de = {0};
	if (lfs_dead_adopt(fd, state_dir, why, &d, &de) < 0) {
		close(fd);
		store_remove(r, id);
		return rs_err(err, code, "%s (and its connection cannot be answered: %s)", why,
			      de.msg);
	}
	store_add(r, id, fd, digest ? digest : "?");
	pthread_mutex_lock(&r->lock);
	int rc = add_mounted(r, fs_dir, ref ? ref : "", digest ? digest : "", id, NULL, d, why);
	pthread_mutex_unlock(&r->lock);
	if (rc < 0) {
		lfs_dead_close(d, NULL);
		return rs_err(err, rc, "out of memory");
	}
	rs_log(RS_LOG_ERROR,
	       "remote: the layer at %s cannot be served after the restart: %s; its reads get "
	       "EIO until it is removed or a later start rebuilds it",
	       fs_dir, why);
	return rs_err(err, code, "%s (its reads get EIO)", why);
}

static int remote_mount(void *ctx, const char *fs_dir, const struct snap_remote_target *t,
			const char *parent, const struct snap_label *labels, size_t n,
			struct rs_error *err)
{
	struct daemon_remote *r = ctx;
	char state_dir[4096];
	if (snprintf(state_dir, sizeof(state_dir), "%s/fuse", t->dir) >= (int)sizeof(state_dir))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", t->dir);
	if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "mkdir %s: %s", state_dir, strerror(errno));
	int adopt_fd = -1;
	if (t->restoring) {
		pthread_mutex_lock(&r->lock);
		adopt_fd = take_restored(r, t->id);
		pthread_mutex_unlock(&r->lock);
	}
	struct lfs_mount_opts mo = {.state_dir = r->o.store ? state_dir : NULL,
				    .adopt_fd = adopt_fd};
	const char *ref = label(labels, n, L_REF, L_CRI_REF);
	const char *digest = label(labels, n, L_DIGEST, L_CRI_DIGEST);
	struct lfs_layer *l = NULL;
	int64_t t0 = rs_monotonic_ms();
	int rc = mount_layer(r, fs_dir, parent, labels, n, &mo, &l, err);
	if (rc < 0 && adopt_fd >= 0)
		return serve_dead(r, fs_dir, t->id, ref, digest, adopt_fd, state_dir, err);
	if (rc < 0)
		return rc;
	store_add(r, t->id, lfs_layer_fuse_fd(l), digest);
	pthread_mutex_lock(&r->lock);
	rc = add_mounted(r, fs_dir, ref, digest, t->id, l, NULL, NULL);
	if (rc == 0 && is_top_layer(label(labels, n, L_LAYERS, L_CRI_LAYERS), digest))
		start_deferred_locked(r, true);
	pthread_mutex_unlock(&r->lock);
	if (rc < 0) {
		if (adopt_fd >= 0)
			lfs_layer_close_keep(l);
		else {
			lfs_layer_close(l);
			store_remove(r, t->id);
		}
		return rs_err(err, rc, "out of memory");
	}
	rs_log(RS_LOG_INFO, "remote layer %s of %s %s at %s (%lld ms)", digest, ref,
	       adopt_fd >= 0 ? "taken over" : "mounted", fs_dir,
	       (long long)(rs_monotonic_ms() - t0));
	return 0;
}

static bool remote_adoptable(void *ctx, const struct snap_remote_target *t, const char *fs_dir)
{
	struct daemon_remote *r = ctx;
	char name[64];
	fd_name(name, sizeof(name), t->id);
	bool found = false;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_restored && !found; i++)
		found = r->restored[i].fd >= 0 && strcmp(r->restored[i].name, name) == 0;
	pthread_mutex_unlock(&r->lock);
	return found;
}

static void free_mounted(struct mounted *m)
{
	free(m->fs_dir);
	free(m->ref);
	free(m->digest);
	free(m->dead_why);
}

static void remote_unmount(void *ctx, const char *fs_dir)
{
	struct daemon_remote *r = ctx;
	pthread_mutex_lock(&r->lock);
	struct mounted *m = find_mounted(r, fs_dir);
	struct mounted copy = {0};
	bool keep = r->keep;
	if (m) {
		copy = *m;
		*m = r->v[--r->n];
	}
	pthread_mutex_unlock(&r->lock);
	if (!copy.fs_dir)
		return;
	if (copy.layer && keep)
		lfs_layer_close_keep(copy.layer);
	else if (copy.layer)
		lfs_layer_close(copy.layer);
	if (copy.dead)
		lfs_dead_close(copy.dead, keep ? NULL : copy.fs_dir);
	if (!keep)
		store_remove(r, copy.id);
	free_mounted(&copy);
}

static int remote_check(void *ctx, const char *fs_dir, struct rs_error *err)
{
	struct daemon_remote *r = ctx;
	/* The status is read under r->lock: an unmount (Remove, Cleanup) takes
	 * the layer out of r->v under it and frees it right after. */
	pthread_mutex_lock(&r->lock);
	struct mounted *m = find_mounted(r, fs_dir);
	char ref[1024], digest[RS_DIGEST_STR_LEN];
	struct lfs_status st;
	bool found = m != NULL, dead = m && !m->layer;
	char why[512] = "";
	if (m) {
		snprintf(ref, sizeof(ref), "%s", m->ref);
		snprintf(digest, sizeof(digest), "%s", m->digest);
		if (m->layer)
			lfs_layer_status(m->layer, &st);
		else
			snprintf(why, sizeof(why), "%s", m->dead_why ? m->dead_why : "");
	}
	pthread_mutex_unlock(&r->lock);
	if (!found)
		return rs_err(err, -ENOTCONN, "no layer is mounted at %s", fs_dir);
	if (dead)
		return rs_err(err, -EIO, "layer %s at %s was not served again after a restart: %s",
			      digest, fs_dir, why);
	if (!st.mounted)
		return rs_err(err, -ENOTCONN, "the FUSE mount of %s at %s is gone", digest, fs_dir);
	if (st.state == LFS_STATE_FAILED)
		return rs_err(err, -EIO,
			      "layer %s at %s failed its whole-layer check: its diffID %s does not "
			      "give the snapshot's chain ID",
			      digest, fs_dir, st.diff_id);
	if (st.state == LFS_STATE_COMPLETE || st.registry_ok)
		return 0;
	/* The last fetch failed: is the registry back? */
	struct reg_ref rr;
	int64_t size;
	struct rs_error herr = {0};
	int rc = reg_ref_parse(ref, &rr, &herr);
	if (rc == 0) {
		rc = reg_blob_size(r->o.client, &rr, digest, &size, &herr);
		reg_ref_free(&rr);
	}
	if (rc < 0)
		return rs_err(err, -EHOSTDOWN,
			      "layer %s: registry unreachable and %.0f%% cached: %s", digest,
			      st.percent, herr.msg);
	return 0;
}

int daemon_remote_new(const struct daemon_remote_opts *o, struct daemon_remote **out,
		      struct rs_error *err)
{
	struct daemon_remote *r = calloc(1, sizeof(*r));
	if (!r)
		return rs_err(err, -ENOMEM, "out of memory");
	r->o = *o;
	r->o.restored = NULL;
	r->o.n_restored = 0;
	r->restored = o->restored;
	r->n_restored = o->n_restored;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->ops = (struct snap_remote_ops){
	    .ctx = r,
	    .mount = remote_mount,
	    .adoptable = remote_adoptable,
	    .unmount = remote_unmount,
	    .check = remote_check,
	};
	int e = pthread_create(&r->starter, NULL, starter_main, r);
	if (e) {
		daemon_remote_free(r);
		return rs_err(err, -e, "cannot start a thread: %s", strerror(e));
	}
	r->starter_running = true;
	*out = r;
	return 0;
}

const struct snap_remote_ops *daemon_remote_ops(struct daemon_remote *r)
{
	return &r->ops;
}

void daemon_remote_restore_done(struct daemon_remote *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_restored; i++) {
		struct fdstore_entry *e = &r->restored[i];
		if (e->fd < 0 || strncmp(e->name, "fuse-", 5) != 0)
			continue;
		/* A connection no stored snapshot claims (a Prepare killed before
		 * its commit, a snapshot removed while no daemon ran): ended. */
		rs_log(RS_LOG_INFO, "remote: fd store: %s belongs to no snapshot: closed", e->name);
		close(e->fd);
		e->fd = -1;
		if (r->o.store) {
			struct rs_error err = {0};
			(void)fdstore_remove(r->o.store, e->name, &err);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

void daemon_remote_keep_mounts(struct daemon_remote *r)
{
	pthread_mutex_lock(&r->lock);
	r->keep = true;
	pthread_mutex_unlock(&r->lock);
}

void daemon_remote_free(struct daemon_remote *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	while (r->ahead_running > 0)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (r->starter_running)
		pthread_join(r->starter, NULL);
	while (r->n > 0)
		remote_unmount(r, r->v[r->n - 1].fs_dir);
	free(r->v);
	daemon_remote_restore_done(r);
	free(r->restored);
	while (r->ahead) {
		struct ahead *a = r->ahead;
		r->ahead = a->next;
		if (a->layer)
			lfs_layer_close(a->layer);
		free(a->ref);
		free(a->digest);
		free(a);
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
