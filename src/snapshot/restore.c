// SPDX-License-Identifier: Apache-2.0
/* Restore at start: every stored remote snapshot is mounted again through
 * the hook, a few at a time on a small pool of threads. A mount left dead by
 * the previous run is detached first. A failure is logged and leaves the
 * others and the open alone (stargz-snapshotter's allow_invalid_mounts_on_restart
 * behaviour): Mounts on it then fail the health check. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/snap_internal.h"

struct task {
	int64_t id;
	char *name;
	char *parent; /* NULL: none */
	struct snap_label *labels;
	size_t nlabels;
};

struct tasks {
	struct task *v;
	size_t n;
	struct snapshotter *s;
	atomic_size_t next;
	atomic_size_t ok;
};

static void tasks_free(struct tasks *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].parent);
		snap_labels_free(t->v[i].labels, t->v[i].nlabels);
	}
	free(t->v);
}

static int collect(void *ctx, const struct snap_row *r, const struct snap_label *l, size_t nl)
{
	struct tasks *t = ctx;
	struct task *nv = realloc(t->v, (t->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	t->v = nv;
	struct task *k = &t->v[t->n];
	memset(k, 0, sizeof(*k));
	k->id = r->id;
	k->name = strdup(r->key);
	k->parent = r->parent ? strdup(r->parent) : NULL;
	if (!k->name || (r->parent && !k->parent) || snap_labels_dup(l, nl, &k->labels) < 0) {
		free(k->name);
		free(k->parent);
		return -ENOMEM;
	}
	k->nlabels = nl;
	t->n++;
	return 0;
}

/* Stored remote snapshots, read in one transaction. */
static int load(struct snapshotter *s, struct tasks *t, struct rs_error *err)
{
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = snap_db_each_labelled(s->db, SNAP_LABEL_REMOTE, collect, t, err);
		if (r == -ENOMEM)
			rs_err(err, r, "out of memory");
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* true when the layer is mounted again. */
static bool restore_one(struct snapshotter *s, const struct task *t)
{
	cleanup_free char *dir = snap_id_dir(s, t->id);
	cleanup_free char *fs = snap_fs_dir(s, t->id);
	if (!dir || !fs) {
		rs_log(RS_LOG_ERROR, "snapshot: restore %s: out of memory", t->name);
		return false;
	}
	struct snap_remote_target rt = {.id = t->id, .dir = dir, .restoring = true};
	if (snap_is_mountpoint(fs) &&
	    !(s->remote.adoptable && s->remote.adoptable(s->remote.ctx, &rt, fs))) {
		int r = snap_detach(fs);
		rs_log(r < 0 ? RS_LOG_WARN : RS_LOG_INFO,
		       "snapshot: restore %s: detached stale mount at %s%s%s", t->name, fs,
		       r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
	}
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(fs, 0755) < 0 && errno != EEXIST)) {
		rs_log(RS_LOG_ERROR, "snapshot: restore remote snapshot %s: mkdir %s: %s", t->name,
		       fs, strerror(errno));
		return false;
	}
	struct rs_error e = {0};
	int r = s->remote.mount(s->remote.ctx, fs, &rt, t->parent, t->labels, t->nlabels, &e);
	if (r < 0) {
		rs_log(RS_LOG_ERROR, "snapshot: restore remote snapshot %s at %s: %s", t->name, fs,
		       e.msg[0] ? e.msg : strerror(-r));
		return false;
	}
	rs_log(RS_LOG_DEBUG, "snapshot: restored remote snapshot %s at %s", t->name, fs);
	return true;
}

static void *worker(void *arg)
{
	struct tasks *t = arg;
	size_t i;
	while ((i = atomic_fetch_add(&t->next, 1)) < t->n)
		if (restore_one(t->s, &t->v[i]))
			atomic_fetch_add(&t->ok, 1);
	return NULL;
}

void snap_restore(struct snapshotter *s, int threads)
{
	struct tasks t = {.s = s};
	struct rs_error err = {0};
	if (!s->has_remote || !s->remote.mount)
		return;
	if (load(s, &t, &err) < 0) {
		rs_log(RS_LOG_ERROR, "snapshot: restore: %s", err.msg);
		tasks_free(&t);
		return;
	}
	size_t nthr = threads > 0 ? (size_t)threads : 8;
	if (nthr > t.n)
		nthr = t.n;
	/* nthr - 1 threads and the caller, who does it all if none started. */
	pthread_t *tid = calloc(nthr ? nthr : 1, sizeof(*tid));
	size_t started = 0;
	while (tid && started + 1 < nthr && pthread_create(&tid[started], NULL, worker, &t) == 0)
		started++;
	worker(&t);
	for (size_t i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	free(tid);
	if (t.n)
		rs_log(RS_LOG_INFO, "snapshot: restored %zu of %zu remote snapshot(s)",
		       (size_t)atomic_load(&t.ok), t.n);
	tasks_free(&t);
}

void snap_unmount_all(struct snapshotter *s)
{
	struct tasks t = {.s = s};
	struct rs_error err = {0};
	if (!s->has_remote || !s->remote.unmount)
		return;
	if (load(s, &t, &err) < 0)
		rs_log(RS_LOG_ERROR, "snapshot: unmount remote layers: %s", err.msg);
	for (size_t i = 0; i < t.n; i++) {
		cleanup_free char *fs = snap_fs_dir(s, t.v[i].id);
		if (fs)
			s->remote.unmount(s->remote.ctx, fs);
	}
	tasks_free(&t);
}
