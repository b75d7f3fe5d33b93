// SPDX-License-Identifier: Apache-2.0
/* Mounts, Remove, Stat, Update, Usage, Walk and Cleanup, with containerd's
 * semantics (snapshots/overlay/overlay.go over snapshots/storage/bolt.go). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/snap_internal.h"

int snap_mounts(struct snapshotter *s, const char *key, struct snap_mounts *out,
		struct rs_error *err)
{
	struct snap_row row = {0};
	struct snap_remote_refs refs = {0};
	cleanup_free int64_t *chain = NULL;
	size_t nchain = 0;
	if (!key || !*key)
		return rs_err(err, -EINVAL, "snapshot key must not be empty");
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = snap_db_get(s->db, key, &row, err);
		if (r == 0 && row.kind != SNAP_KIND_ACTIVE && row.kind != SNAP_KIND_VIEW)
			r = rs_err(err, SNAP_EPRECONDITION,
				   "requested snapshot %s not active or view", key);
		if (r == 0)
			r = snap_db_chain(s->db, row.parent_id, &chain, &nchain, err);
		if (r == 0)
			r = snap_remote_refs_collect(s, &row.id, 1, &refs, err);
		if (r == 0)
			r = snap_remote_refs_collect(s, chain, nchain, &refs, err);
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		r = snap_remote_refs_check(s, &refs, err);
	if (r == 0)
		r = snap_build_mounts(s, row.id, row.kind, chain, nchain, out, err);
	snap_remote_refs_free(&refs);
	snap_row_free(&row);
	return r;
}

/* Deletes the row of key; *remote says whether it was a remote layer. */
static int remove_row(struct snapshotter *s, const char *key, int64_t *id, bool *remote,
		      struct rs_error *err)
{
	struct snap_row row;
	bool children = false;
	int r = snap_db_begin(s->db, true, err);
	if (r < 0)
		return r;
	r = snap_db_get(s->db, key, &row, err);
	if (r == 0) {
		*id = row.id;
		snap_row_free(&row);
		r = snap_db_has_children(s->db, *id, &children, err);
	}
	if (r == 0 && children)
		r = rs_err(err, SNAP_EPRECONDITION, "cannot remove snapshot %s with child", key);
	if (r == 0)
		r = snap_db_has_label(s->db, *id, SNAP_LABEL_REMOTE, remote, err);
	if (r == 0)
		r = snap_db_delete(s->db, *id, err);
	if (r == 0)
		r = snap_db_commit(s->db, err);
	if (r < 0)
		snap_db_rollback(s->db);
	return r;
}

int snap_remove(struct snapshotter *s, const char *key, struct rs_error *err)
{
	int64_t id = 0;
	bool remote = false;
	if (!key || !*key)
		return rs_err(err, -EINVAL, "snapshot key must not be empty");
	pthread_mutex_lock(&s->lock);
	int r = remove_row(s, key, &id, &remote, err);
	bool busy = r == 0 && snap_busy_add(s, id, NULL) == 0;
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	/* The row is gone: what follows only logs, as containerd does. */
	cleanup_free char *fs = snap_fs_dir(s, id);
	if (remote && fs && s->has_remote && s->remote.unmount)
		s->remote.unmount(s->remote.ctx, fs);
	char name[32];
	snprintf(name, sizeof(name), "%lld", (long long)id);
	struct rs_error e = {0};
	if (snap_dir_remove(s, name, &e) < 0)
		rs_log(RS_LOG_WARN, "snapshot: remove %s: %s (left for cleanup)", key, e.msg);
	if (busy) {
		pthread_mutex_lock(&s->lock);
		snap_busy_del(s, id);
		pthread_mutex_unlock(&s->lock);
	}
	return 0;
}

/* Reads key's row and labels into info. Caller holds the lock, in a
 * transaction. */
static int read_info(struct snapshotter *s, const char *key, struct snap_info *info,
		     struct snap_row *row_out, struct rs_error *err)
{
	struct snap_row row;
	struct snap_label *l = NULL;
	size_t nl = 0;
	int r = snap_db_get(s->db, key, &row, err);
	if (r < 0)
		return r;
	r = snap_db_labels(s->db, row.id, &l, &nl, err);
	if (r == 0 && info && snap_info_from_row(&row, l, nl, info) < 0)
		r = rs_err(err, -ENOMEM, "out of memory");
	else if (r == 0 && !info)
		snap_labels_free(l, nl);
	if (r == 0 && row_out)
		*row_out = row;
	else
		snap_row_free(&row);
	return r;
}

int snap_stat(struct snapshotter *s, const char *key, struct snap_info *out, struct rs_error *err)
{
	if (!key || !*key)
		return rs_err(err, -EINVAL, "snapshot key must not be empty");
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = read_info(s, key, out, NULL, err);
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* A growing list of labels where a later key wins (as the database stores
 * them); borrowed strings. */
struct label_list {
	struct snap_label *v;
	size_t n;
};

static int list_add(struct label_list *l, const char *key, const char *value)
{
	struct snap_label *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	l->v[l->n++] = (struct snap_label){.key = (char *)key, .value = (char *)value};
	return 0;
}

/* The labels Update stores: containerd's UpdateInfo over the current ones. */
static int update_labels(const struct snap_info *in, const char *const *paths, size_t npaths,
			 const struct snap_label *cur, size_t ncur, struct label_list *out,
			 struct rs_error *err)
{
	int r = 0;
	if (!npaths) {
		for (size_t i = 0; i < in->nlabels && r == 0; i++)
			r = list_add(out, in->labels[i].key, in->labels[i].value);
		return r < 0 ? rs_err(err, r, "out of memory") : 0;
	}
	for (size_t i = 0; i < ncur && r == 0; i++)
		r = list_add(out, cur[i].key, cur[i].value);
	for (size_t p = 0; p < npaths && r == 0; p++) {
		const char *path = paths[p] ? paths[p] : "";
		if (strncmp(path, "labels.", strlen("labels.")) == 0) {
			const char *k = path + strlen("labels.");
			const char *v = snap_label_get(in->labels, in->nlabels, k);
			r = list_add(out, k, v ? v : "");
		} else if (strcmp(path, "labels") == 0) {
			out->n = 0;
			for (size_t i = 0; i < in->nlabels && r == 0; i++)
				r = list_add(out, in->labels[i].key, in->labels[i].value);
		} else {
			return rs_err(err, -EINVAL, "cannot update \"%s\" field on snapshot \"%s\"",
				      path, in->name);
		}
	}
	return r < 0 ? rs_err(err, r, "out of memory") : 0;
}

int snap_update(struct snapshotter *s, const struct snap_info *in, const char *const *paths,
		size_t npaths, struct snap_info *out, struct rs_error *err)
{
	if (!in || !in->name || !*in->name)
		return rs_err(err, -EINVAL, "snapshot name must not be empty");
	if (in->nlabels && !in->labels)
		return rs_err(err, -EINVAL, "labels: NULL array");
	struct snap_info cur = {0};
	struct snap_row row = {0};
	struct label_list next = {0};
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, true, err);
	if (r == 0)
		r = read_info(s, in->name, &cur, &row, err);
	if (r == 0)
		r = update_labels(in, paths, npaths, cur.labels, cur.nlabels, &next, err);
	if (r == 0)
		r = snap_labels_validate(next.v, next.n, err);
	if (r == 0)
		r = snap_db_set_labels(s->db, row.id, next.v, next.n, NULL, err);
	if (r == 0)
		r = snap_db_touch(s->db, row.id, snap_now_ns(), err);
	bool filled = false;
	if (r == 0 && out) {
		r = read_info(s, in->name, out, NULL, err);
		filled = r == 0;
	}
	if (r == 0)
		r = snap_db_commit(s->db, err);
	if (r < 0) {
		snap_db_rollback(s->db);
		if (filled)
			snap_info_free(out);
	}
	pthread_mutex_unlock(&s->lock);
	free(next.v);
	snap_info_free(&cur);
	snap_row_free(&row);
	return r;
}

int snap_usage(struct snapshotter *s, const char *key, int64_t *size, int64_t *inodes,
	       struct rs_error *err)
{
	struct snap_row row = {0};
	if (!key || !*key)
		return rs_err(err, -EINVAL, "snapshot key must not be empty");
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = snap_db_get(s->db, key, &row, err);
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	if (row.kind == SNAP_KIND_ACTIVE) {
		cleanup_free char *fs = snap_fs_dir(s, row.id);
		r = fs ? snap_disk_usage(fs, size, inodes, err)
		       : rs_err(err, -ENOMEM, "out of memory");
	} else {
		*size = row.size;
		*inodes = row.inodes;
	}
	snap_row_free(&row);
	return r;
}

struct walk {
	const struct snap_filter *f;
	struct snap_info *v;
	size_t n;
};

static int walk_collect(void *ctx, const struct snap_row *r, const struct snap_label *l, size_t nl)
{
	struct walk *w = ctx;
	struct snap_label *copy = NULL;
	struct snap_info info;
	if (snap_labels_dup(l, nl, &copy) < 0)
		return -ENOMEM;
	if (snap_info_from_row(r, copy, nl, &info) < 0)
		return -ENOMEM;
	if (!snap_filter_match(w->f, &info)) {
		snap_info_free(&info);
		return 0;
	}
	struct snap_info *nv = realloc(w->v, (w->n + 1) * sizeof(*nv));
	if (!nv) {
		snap_info_free(&info);
		return -ENOMEM;
	}
	w->v = nv;
	w->v[w->n++] = info;
	return 0;
}

int snap_walk(struct snapshotter *s, const char *const *filters, size_t nfilters, snap_walk_fn fn,
	      void *ctx, struct rs_error *err)
{
	struct snap_filter *f = NULL;
	int r = snap_filter_parse(filters, nfilters, &f, err);
	if (r < 0)
		return r;
	struct walk w = {.f = f};
	/* Matches are copied out, so fn runs without the lock and may call us. */
	pthread_mutex_lock(&s->lock);
	r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = snap_db_each(s->db, true, walk_collect, &w, err);
		if (r == -ENOMEM)
			rs_err(err, r, "out of memory");
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < w.n && r == 0; i++)
		r = fn(ctx, &w.v[i]);
	for (size_t i = 0; i < w.n; i++)
		snap_info_free(&w.v[i]);
	free(w.v);
	snap_filter_free(f);
	return r;
}

struct id_set {
	int64_t *v;
	size_t n;
};

static int add_id(void *ctx, const struct snap_row *r, const struct snap_label *l, size_t nl)
{
	struct id_set *ids = ctx;
	int64_t *nv = realloc(ids->v, (ids->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	ids->v = nv;
	ids->v[ids->n++] = r->id;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* ids->v is sorted. */
static bool has_id(const struct id_set *ids, int64_t id)
{
	return ids->n && bsearch(&id, ids->v, ids->n, sizeof(id), cmp_id);
}

/* Names under ROOT/snapshots that no stored snapshot owns and nothing is
 * working on. Caller holds the lock. */
static int orphans(struct snapshotter *s, const struct id_set *ids, char ***out, size_t *n,
		   struct rs_error *err)
{
	DIR *d = opendir(s->snap_dir);
	if (!d)
		return rs_err(err, -errno, "open %s: %s", s->snap_dir, strerror(errno));
	char **v = NULL;
	size_t len = 0;
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *name = e->d_name;
		int64_t id;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (snap_parse_id(name, &id) && (has_id(ids, id) || snap_busy_id(s, id)))
			continue;
		if (strncmp(name, SNAP_RM_PREFIX, strlen(SNAP_RM_PREFIX)) == 0 &&
		    snap_parse_id(name + strlen(SNAP_RM_PREFIX), &id) && snap_busy_id(s, id))
			continue;
		char **nv = realloc(v, (len + 1) * sizeof(*nv));
		if (!nv || !(nv[len] = strdup(name))) {
			v = nv ? nv : v;
			r = rs_err(err, -ENOMEM, "out of memory");
			break;
		}
		v = nv;
		len++;
	}
	closedir(d);
	*out = v;
	*n = len;
	return r;
}

int snap_cleanup(struct snapshotter *s, struct rs_error *err)
{
	struct id_set ids = {0};
	char **names = NULL;
	size_t n = 0;
	/* A write transaction keeps writers out while the directory is read. */
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, true, err);
	if (r == 0) {
		r = snap_db_each(s->db, false, add_id, &ids, err);
		if (r == -ENOMEM)
			rs_err(err, r, "out of memory");
		if (r == 0) {
			if (ids.n)
				qsort(ids.v, ids.n, sizeof(ids.v[0]), cmp_id);
			r = orphans(s, &ids, &names, &n, err);
		}
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			cleanup_free char *fs = NULL;
			if (asprintf(&fs, "%s/%s/fs", s->snap_dir, names[i]) < 0)
				fs = NULL;
			/* A remote layer's leftover mount: let the hook finalise it. */
			if (fs && s->has_remote && s->remote.unmount && snap_is_mountpoint(fs))
				s->remote.unmount(s->remote.ctx, fs);
			struct rs_error e = {0};
			if (snap_dir_remove(s, names[i], &e) < 0)
				rs_log(RS_LOG_WARN, "snapshot: cleanup: %s", e.msg);
			else
				rs_log(RS_LOG_INFO,
				       "snapshot: cleanup: removed %s/%s (no snapshot of that id: "
				       "an interrupted Prepare or removal)",
				       s->snap_dir, names[i]);
		}
		free(names[i]);
	}
	free(names);
	free(ids.v);
	return r;
}
