// SPDX-License-Identifier: Apache-2.0
/* Prepare, View and Commit: containerd's createSnapshot and CommitActive
 * (snapshots/overlay/overlay.go, snapshots/storage/bolt.go), and the remote
 * Prepare of stargz-snapshotter (snapshot/snapshot.go, Prepare): a layer the
 * hook mounts becomes a committed snapshot named by the target and the
 * Prepare answers ALREADY_EXISTS. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/snap_internal.h"

/* Resolves the parent of a new snapshot: 0 for none, else its id. Caller
 * holds the lock, in a transaction. */
static int resolve_parent(struct snapshotter *s, const char *parent, int64_t *pid,
			  struct rs_error *err)
{
	*pid = 0;
	if (!parent || !*parent)
		return 0;
	struct snap_row row;
	int r = snap_db_get(s->db, parent, &row, err);
	if (r == -ENOENT)
		return rs_err(err, -ENOENT, "missing parent \"%s\": not found", parent);
	if (r < 0)
		return r;
	if (row.kind != SNAP_KIND_COMMITTED)
		r = rs_err(err, -EINVAL, "parent \"%s\" is not committed snapshot", parent);
	else
		*pid = row.id;
	snap_row_free(&row);
	return r;
}

static int check_free(struct snapshotter *s, const char *key, struct rs_error *err)
{
	bool exists = false;
	int r = snap_db_exists(s->db, key, &exists, err);
	if (r == 0 && exists)
		r = rs_err(err, -EEXIST, "snapshot %s: already exists", key);
	return r;
}

static int check_args(const char *key, const struct snap_label *labels, size_t n,
		      struct rs_error *err)
{
	if (!key || !*key)
		return rs_err(err, -EINVAL, "snapshot key must not be empty");
	return snap_labels_validate(labels, n, err);
}

/* Asks the hook about the remote layers under parent before a snapshot is
 * made on it, so that an unhealthy chain leaves nothing behind. */
static int check_parent_health(struct snapshotter *s, const char *key, const char *parent,
			       struct rs_error *err)
{
	struct snap_remote_refs refs = {0};
	cleanup_free int64_t *chain = NULL;
	size_t nchain = 0;
	int64_t pid;
	if (!s->has_remote || !s->remote.check || !parent || !*parent)
		return 0;
	pthread_mutex_lock(&s->lock);
	int r = snap_db_begin(s->db, false, err);
	if (r == 0) {
		r = resolve_parent(s, parent, &pid, err);
		if (r == 0)
			r = check_free(s, key, err);
		if (r == 0)
			r = snap_db_chain(s->db, pid, &chain, &nchain, err);
		if (r == 0)
			r = snap_remote_refs_collect(s, chain, nchain, &refs, err);
		snap_db_rollback(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		r = snap_remote_refs_check(s, &refs, err);
	snap_remote_refs_free(&refs);
	return r;
}

static void id_name(int64_t id, char out[32])
{
	snprintf(out, 32, "%lld", (long long)id);
}

/* Appends v as a JSON string (quoted, escaped). */
static void json_str(FILE *f, const char *v)
{
	if (!v) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* ROOT/snapshots/<id>/status.json of a snapshot made because its layer could
 * not be mounted lazily: what a user or a test reads to learn why the layer
 * was downloaded (the log says it too, but is not an interface). Beside fs/,
 * so that nothing of it reaches the container. */
static int write_fallback_status(struct snapshotter *s, int64_t id, const struct snap_fallback *fb,
				 struct rs_error *err)
{
	cleanup_free char *dir = snap_id_dir(s, id);
	cleanup_free char *path = NULL;
	if (!dir || asprintf(&path, "%s/" SNAP_STATUS_FILE, dir) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return rs_err(err, -errno, "create %s: %s", path, strerror(errno));
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int e = errno;
		close(fd);
		return rs_err(err, -e, "create %s: %s", path, strerror(e));
	}
	fputs("{\"lazy\": false, \"digest\": ", f);
	json_str(f, fb->digest);
	fputs(", \"target\": ", f);
	json_str(f, fb->target);
	fputs(", \"reason\": ", f);
	json_str(f, fb->reason);
	fputs("}\n", f);
	if (ferror(f) | (fclose(f) != 0))
		return rs_err(err, -EIO, "write %s: %s", path, strerror(errno));
	return 0;
}

/* Makes the row and directories of an active or view snapshot. Caller holds
 * the lock. */
static int create_locked(struct snapshotter *s, enum snap_kind kind, const char *key,
			 const char *parent, const struct snap_label *labels, size_t n,
			 const struct snap_fallback *fb, int64_t *id, int64_t **chain,
			 size_t *nchain, struct rs_error *err)
{
	int64_t pid = 0;
	bool made = false;
	int r = snap_db_begin(s->db, true, err);
	if (r < 0)
		return r;
	r = resolve_parent(s, parent, &pid, err);
	if (r == 0)
		r = check_free(s, key, err);
	if (r == 0)
		r = snap_db_chain(s->db, pid, chain, nchain, err);
	if (r == 0)
		r = snap_db_reserve_id(s->db, id, err);
	if (r == 0) {
		cleanup_free char *owner = pid ? snap_fs_dir(s, pid) : NULL;
		if (pid && !owner)
			r = rs_err(err, -ENOMEM, "out of memory");
		else
			r = snap_dir_create(s, *id, kind == SNAP_KIND_ACTIVE, owner, err);
		made = r == 0;
	}
	if (r == 0 && fb)
		r = write_fallback_status(s, *id, fb, err);
	if (r == 0) {
		int64_t now = snap_now_ns();
		struct snap_row row = {.id = *id,
				       .key = (char *)key,
				       .parent_id = pid,
				       .kind = kind,
				       .created = now,
				       .updated = now};
		r = snap_db_insert(s->db, &row, err);
	}
	if (r == 0)
		r = snap_db_set_labels(s->db, *id, labels, n, NULL, err);
	if (r == 0)
		r = snap_db_commit(s->db, err);
	if (r < 0) {
		snap_db_rollback(s->db);
		if (made) {
			char name[32];
			id_name(*id, name);
			snap_dir_remove(s, name, NULL);
		}
		free(*chain);
		*chain = NULL;
	}
	return r;
}

static int create_snapshot(struct snapshotter *s, enum snap_kind kind, const char *key,
			   const char *parent, const struct snap_label *labels, size_t n,
			   const struct snap_fallback *fb, struct snap_mounts *out,
			   struct rs_error *err)
{
	int r = check_parent_health(s, key, parent, err);
	if (r < 0)
		return r;
	int64_t id = 0;
	cleanup_free int64_t *chain = NULL;
	size_t nchain = 0;
	pthread_mutex_lock(&s->lock);
	r = create_locked(s, kind, key, parent, labels, n, fb, &id, &chain, &nchain, err);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	if (!out)
		return 0;
	return snap_build_mounts(s, id, kind, chain, nchain, out, err);
}

/* Stores the mounted layer as the committed snapshot target. Caller holds
 * the lock. */
static int store_remote(struct snapshotter *s, int64_t id, const char *target, const char *parent,
			const struct snap_label *labels, size_t n, struct rs_error *err)
{
	static const struct snap_label remote = {.key = SNAP_LABEL_REMOTE,
						 .value = SNAP_REMOTE_VALUE};
	int64_t pid = 0;
	int r = snap_db_begin(s->db, true, err);
	if (r < 0)
		return r;
	r = resolve_parent(s, parent, &pid, err);
	if (r == 0)
		r = check_free(s, target, err);
	if (r == 0) {
		int64_t now = snap_now_ns();
		struct snap_row row = {.id = id,
				       .key = (char *)target,
				       .parent_id = pid,
				       .kind = SNAP_KIND_COMMITTED,
				       .created = now,
				       .updated = now};
		r = snap_db_insert(s->db, &row, err);
	}
	if (r == 0)
		r = snap_db_set_labels(s->db, id, labels, n, &remote, err);
	if (r == 0)
		r = snap_db_commit(s->db, err);
	if (r < 0)
		snap_db_rollback(s->db);
	return r;
}

/* Reserves an id and makes the directories for a remote Prepare, once the
 * usual checks pass and no other Prepare is mounting the same target (a
 * second one waits for the first). 1: do not mount (the target is being
 * mounted and was not stored: an ordinary Prepare follows). Caller holds the
 * lock. */
static int reserve_remote(struct snapshotter *s, const char *key, const char *parent,
			  const char *target, int64_t *id, struct rs_error *err)
{
	bool waited = false;
	int64_t pid = 0;
	int r;
	for (;;) {
		r = snap_db_begin(s->db, true, err);
		if (r < 0)
			return r;
		r = resolve_parent(s, parent, &pid, err);
		if (r == 0)
			r = check_free(s, key, err);
		if (r == 0) {
			bool exists = false;
			r = snap_db_exists(s->db, target, &exists, err);
			if (r == 0 && exists)
				r = rs_err(err, -EEXIST, "target snapshot \"%s\": already exists",
					   target);
		}
		if (r == 0 && !snap_busy_target(s, target)) {
			if (waited) {
				snap_db_rollback(s->db);
				return 1;
			}
			r = snap_db_reserve_id(s->db, id, err);
			if (r == 0)
				r = snap_db_commit(s->db, err);
			if (r < 0) {
				snap_db_rollback(s->db);
				return r;
			}
			break;
		}
		snap_db_rollback(s->db);
		if (r < 0)
			return r;
		pthread_cond_wait(&s->busy_cv, &s->lock);
		waited = true;
	}
	cleanup_free char *owner = pid ? snap_fs_dir(s, pid) : NULL;
	if (pid && !owner)
		return rs_err(err, -ENOMEM, "out of memory");
	r = snap_dir_create(s, *id, true, owner, err);
	if (r == 0 && snap_busy_add(s, *id, target) < 0) {
		char name[32];
		id_name(*id, name);
		snap_dir_remove(s, name, NULL);
		r = rs_err(err, -ENOMEM, "out of memory");
	}
	return r;
}

/* Drops a remote Prepare's directory (unmounting the layer when mounted)
 * and its busy entry. Lock not held. */
static void abandon_remote(struct snapshotter *s, int64_t id, const char *fs, bool mounted)
{
	char name[32];
	id_name(id, name);
	if (mounted && s->remote.unmount)
		s->remote.unmount(s->remote.ctx, fs);
	struct rs_error e = {0};
	if (snap_dir_remove(s, name, &e) < 0)
		rs_log(RS_LOG_WARN, "snapshot: %s", e.msg);
	pthread_mutex_lock(&s->lock);
	snap_busy_del(s, id);
	pthread_mutex_unlock(&s->lock);
}

/* The remote path of Prepare. 1: not taken, go on with an ordinary Prepare
 * (why: the hook's reason when it refused a layer, else empty); otherwise the
 * answer (-EEXIST when the layer is there). */
static int prepare_remote(struct snapshotter *s, const char *key, const char *parent,
			  const char *target, const struct snap_label *labels, size_t n,
			  struct rs_error *why_out, struct rs_error *err)
{
	int64_t id = 0;
	pthread_mutex_lock(&s->lock);
	int r = reserve_remote(s, key, parent, target, &id, err);
	pthread_mutex_unlock(&s->lock);
	if (r != 0)
		return r;
	cleanup_free char *fs = snap_fs_dir(s, id);
	if (!fs) {
		abandon_remote(s, id, NULL, false);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	cleanup_free char *dir = snap_id_dir(s, id);
	if (!dir) {
		abandon_remote(s, id, NULL, false);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	struct snap_remote_target rt = {.id = id, .dir = dir};
	struct rs_error merr = {0};
	r = s->remote.mount(s->remote.ctx, fs, &rt, parent && *parent ? parent : NULL, labels, n,
			    &merr);
	if (r < 0) {
		const char *why = merr.msg[0] ? merr.msg : strerror(-r);
		if (r == -ENOTSUP)
			rs_log(RS_LOG_DEBUG, "snapshot: %s: not a remote layer: %s", target, why);
		else {
			rs_log(RS_LOG_WARN,
			       "snapshot: remote snapshot %s (key %s) not prepared, falling back "
			       "to download: %s",
			       target, key, why);
			rs_err(why_out, r, "%s", why);
		}
		abandon_remote(s, id, fs, false);
		return 1;
	}
	pthread_mutex_lock(&s->lock);
	r = store_remote(s, id, target, parent, labels, n, err);
	if (r == 0)
		snap_busy_del(s, id);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		abandon_remote(s, id, fs, true);
		if (r == -EEXIST)
			return rs_err(err, -EEXIST, "target snapshot \"%s\": already exists",
				      target);
		return r;
	}
	rs_log(RS_LOG_DEBUG, "snapshot: prepared remote snapshot %s at %s", target, fs);
	return rs_err(err, -EEXIST, "target snapshot \"%s\": already exists", target);
}

int snap_prepare(struct snapshotter *s, const char *key, const char *parent,
		 const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
		 struct rs_error *err)
{
	int r = check_args(key, labels, nlabels, err);
	if (r < 0)
		return r;
	const char *target = snap_label_get(labels, nlabels, SNAP_LABEL_TARGET);
	struct rs_error why = {0};
	if (s->has_remote && s->remote.mount && target && *target) {
		r = prepare_remote(s, key, parent, target, labels, nlabels, &why, err);
		if (r != 1)
			return r;
		rs_error_clear(err);
	}
	const char *digest = snap_label_get(labels, nlabels, SNAP_LABEL_LAYER_DIGEST);
	if (!digest)
		digest = snap_label_get(labels, nlabels, SNAP_LABEL_CRI_LAYER_DIGEST);
	struct snap_fallback fb = {.digest = digest, .target = target, .reason = why.msg};
	return create_snapshot(s, SNAP_KIND_ACTIVE, key, parent, labels, nlabels,
			       why.code ? &fb : NULL, out, err);
}

int snap_view(struct snapshotter *s, const char *key, const char *parent,
	      const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
	      struct rs_error *err)
{
	int r = check_args(key, labels, nlabels, err);
	if (r < 0)
		return r;
	return create_snapshot(s, SNAP_KIND_VIEW, key, parent, labels, nlabels, NULL, out, err);
}

/* The checks of Commit, in containerd's order: key missing, name taken,
 * key not active. Caller holds the lock, in a transaction. */
static int commit_check(struct snapshotter *s, const char *name, const char *key,
			struct snap_row *row, bool check_name, struct rs_error *err)
{
	int r = snap_db_get(s->db, key, row, err);
	if (r < 0)
		return r;
	if (check_name || row->kind != SNAP_KIND_ACTIVE) {
		bool exists = false;
		r = snap_db_exists(s->db, name, &exists, err);
		if (r == 0 && exists)
			r = rs_err(err, -EEXIST, "committed snapshot %s: already exists", name);
	}
	if (r == 0 && row->kind != SNAP_KIND_ACTIVE)
		r = rs_err(err, SNAP_EPRECONDITION, "snapshot \"%s\" is not active", key);
	if (r < 0)
		snap_row_free(row);
	return r;
}

/* Bound on retries when the key is removed and made again during a Commit's
 * disk-usage walk. */
#define COMMIT_TRIES 3

int snap_commit(struct snapshotter *s, const char *name, const char *key,
		const struct snap_label *labels, size_t nlabels, struct rs_error *err)
{
	if (!name || !*name)
		return rs_err(err, -EINVAL, "snapshot name must not be empty");
	int r = check_args(key, labels, nlabels, err);
	for (int tries = 0; r == 0; tries++) {
		struct snap_row row;
		pthread_mutex_lock(&s->lock);
		r = snap_db_begin(s->db, false, err);
		if (r == 0) {
			r = commit_check(s, name, key, &row, false, err);
			snap_db_rollback(s->db);
		}
		pthread_mutex_unlock(&s->lock);
		if (r < 0)
			return r;
		/* The walk may be long: outside the lock. */
		int64_t size = 0, inodes = 0, id = row.id;
		snap_row_free(&row);
		cleanup_free char *fs = snap_fs_dir(s, id);
		if (!fs)
			return rs_err(err, -ENOMEM, "out of memory");
		r = snap_disk_usage(fs, &size, &inodes, err);
		if (r < 0)
			return r;
		pthread_mutex_lock(&s->lock);
		r = snap_db_begin(s->db, true, err);
		if (r == 0)
			r = commit_check(s, name, key, &row, true, err);
		if (r == 0) {
			bool same = row.id == id;
			snap_row_free(&row);
			if (!same) {
				snap_db_rollback(s->db);
				pthread_mutex_unlock(&s->lock);
				if (tries + 1 < COMMIT_TRIES)
					continue;
				return rs_err(err, -EAGAIN,
					      "snapshot %s was replaced during commit", key);
			}
			r = snap_db_commit_active(s->db, id, name, snap_now_ns(), size, inodes,
						  err);
			if (r == 0)
				r = snap_db_set_labels(s->db, id, labels, nlabels, NULL, err);
			if (r == 0)
				r = snap_db_commit(s->db, err);
		}
		if (r < 0)
			snap_db_rollback(s->db);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	return r;
}
