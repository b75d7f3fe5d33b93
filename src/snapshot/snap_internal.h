/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot internals shared by the files of src/snapshot: the snapshotter
 * state, the SQLite layer (db.c), directories (fsdir.c), disk usage
 * (usage.c), mounts (mounts.c), filters (filter.c), labels (info.c) and the
 * remote-layer helpers (health.c, restore.c). */
#ifndef SNAP_INTERNAL_H
#define SNAP_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "snapshot/snapshot.h"

/* Stored value of SNAP_LABEL_REMOTE, as stargz-snapshotter writes it. */
#define SNAP_REMOTE_VALUE "remote snapshot"
/* containerd's labels.Validate: key and value together at most 4096 bytes. */
#define SNAP_LABEL_MAX 4096
/* The layer digest labels of a remote Prepare (default set, CRI's). */
#define SNAP_LABEL_LAYER_DIGEST "containerd.io/snapshot/remote/stargz.digest"
#define SNAP_LABEL_CRI_LAYER_DIGEST "containerd.io/snapshot/cri.layer-digest"

/* A snapshot made because the hook refused to mount its layer lazily:
 * written to ROOT/snapshots/<id>/SNAP_STATUS_FILE (docs/daemon.md). */
#define SNAP_STATUS_FILE "status.json"
struct snap_fallback {
	const char *digest; /* the layer's, from the labels; NULL: none */
	const char *target; /* the snapshot the layer would have been */
	const char *reason; /* the hook's error message */
};

/* A directory whose snapshot id is not (or no longer) in the database but is
 * being worked on outside the lock: a remote layer being mounted under a
 * reserved id, or a removed snapshot whose directory is being deleted.
 * Cleanup leaves these alone; Prepares of the same target wait on them. */
struct snap_busy {
	struct snap_busy *next;
	int64_t id;
	char *target; /* remote Prepare: the target name; NULL for a removal */
};

struct snapshotter {
	char *root;     /* absolute */
	char *snap_dir; /* ROOT/snapshots */
	int root_fd;    /* ROOT, flock'ed for the snapshotter's lifetime */
	bool has_remote;
	struct snap_remote_ops remote;
	bool index_off; /* the kernel knows overlay's index= option */
	/* lock guards db (one SQLite connection, used by one thread at a time)
	 * and busy. Never held across a remote hook call or a disk-usage walk. */
	pthread_mutex_t lock;
	pthread_cond_t busy_cv; /* signalled when an entry leaves busy */
	sqlite3 *db;
	struct snap_busy *busy;
};

/* ---- db.c: metadata (caller holds s->lock) ---------------------------- */

struct snap_row {
	int64_t id;
	char *key;
	int64_t parent_id; /* 0: none */
	char *parent;      /* the parent's key, NULL when none */
	enum snap_kind kind;
	int64_t created, updated; /* ns since the epoch */
	int64_t size, inodes;
};
void snap_row_free(struct snap_row *r);

int snap_db_open(const char *path, sqlite3 **out, struct rs_error *err);
void snap_db_close(sqlite3 *db);
/* Transactions: BEGIN (read) or BEGIN IMMEDIATE (write); COMMIT; ROLLBACK. */
int snap_db_begin(sqlite3 *db, bool write, struct rs_error *err);
int snap_db_commit(sqlite3 *db, struct rs_error *err);
void snap_db_rollback(sqlite3 *db);

/* -ENOENT when no snapshot has that key. */
int snap_db_get(sqlite3 *db, const char *key, struct snap_row *r, struct rs_error *err);
int snap_db_get_id(sqlite3 *db, int64_t id, struct snap_row *r, struct rs_error *err);
int snap_db_exists(sqlite3 *db, const char *key, bool *exists, struct rs_error *err);
int snap_db_labels(sqlite3 *db, int64_t id, struct snap_label **out, size_t *n,
		   struct rs_error *err);
int snap_db_has_label(sqlite3 *db, int64_t id, const char *key, bool *has, struct rs_error *err);
/* Replaces the labels of id; empty values are not stored, a later duplicate
 * key wins (containerd's map semantics). extra (may be NULL) is added last. */
int snap_db_set_labels(sqlite3 *db, int64_t id, const struct snap_label *l, size_t n,
		       const struct snap_label *extra, struct rs_error *err);
/* Takes the next snapshot id (ids are never reused). */
int snap_db_reserve_id(sqlite3 *db, int64_t *id, struct rs_error *err);
/* Raises the id counter to at least min_next (past directories found at open). */
int snap_db_bump_id(sqlite3 *db, int64_t min_next, struct rs_error *err);
/* -EEXIST when the key is taken. */
int snap_db_insert(sqlite3 *db, const struct snap_row *r, struct rs_error *err);
int snap_db_delete(sqlite3 *db, int64_t id, struct rs_error *err);
int snap_db_has_children(sqlite3 *db, int64_t id, bool *has, struct rs_error *err);
int snap_db_commit_active(sqlite3 *db, int64_t id, const char *name, int64_t now, int64_t size,
			  int64_t inodes, struct rs_error *err);
int snap_db_touch(sqlite3 *db, int64_t id, int64_t updated, struct rs_error *err);
/* Ids of parent_id and its ancestors, nearest first. */
int snap_db_chain(sqlite3 *db, int64_t parent_id, int64_t **ids, size_t *n, struct rs_error *err);
/* Calls fn for every snapshot, ordered by key; labels only when with_labels.
 * A non-zero return from fn stops and is returned. */
typedef int (*snap_db_row_fn)(void *ctx, const struct snap_row *r, const struct snap_label *l,
			      size_t nl);
int snap_db_each(sqlite3 *db, bool with_labels, snap_db_row_fn fn, void *ctx, struct rs_error *err);
/* Snapshots carrying label key: rows and labels (caller frees). */
int snap_db_each_labelled(sqlite3 *db, const char *label, snap_db_row_fn fn, void *ctx,
			  struct rs_error *err);

/* ---- info.c: labels and info --------------------------------------- */

int snap_labels_validate(const struct snap_label *l, size_t n, struct rs_error *err);
void snap_labels_free(struct snap_label *l, size_t n);
int snap_labels_dup(const struct snap_label *l, size_t n, struct snap_label **out);
/* Fills info from a row and its labels (labels are moved into info). */
int snap_info_from_row(const struct snap_row *r, struct snap_label *labels, size_t nl,
		       struct snap_info *info);
int64_t snap_now_ns(void);

/* ---- fsdir.c: snapshot directories ------------------------------------- */

/* ROOT/snapshots/<id>[/fs|/work]; NULL on ENOMEM. */
char *snap_id_dir(const struct snapshotter *s, int64_t id);
char *snap_fs_dir(const struct snapshotter *s, int64_t id);
char *snap_work_dir(const struct snapshotter *s, int64_t id);
/* Makes ROOT/snapshots/<id> with fs (and work when with_work) through a temp
 * name and a rename, fs owned like owner_fs (NULL: not chowned), then syncs
 * the snapshots directory. A stale <id> (left by a crash) is replaced. */
int snap_dir_create(struct snapshotter *s, int64_t id, bool with_work, const char *owner_fs,
		    struct rs_error *err);
/* Renames dir (under ROOT/snapshots) to a removal name and deletes it, never
 * crossing into a mount: a mount found inside is detached first. */
int snap_dir_remove(struct snapshotter *s, const char *name, struct rs_error *err);
/* A directory name that is a snapshot id: decimal, no leading zero. */
bool snap_parse_id(const char *name, int64_t *id);
#define SNAP_RM_PREFIX "rm-"
/* True when path is a mountpoint, including a dead FUSE mount (ENOTCONN). */
bool snap_is_mountpoint(const char *path);
/* Detaches whatever is mounted on path (umount2 MNT_DETACH); 0 if nothing. */
int snap_detach(const char *path);
/* Deletes a tree (ENOENT is success), detaching mounts found inside. */
int snap_rm_tree(const char *path);

/* ---- usage.c -------------------------------------------------------- */

/* containerd's fs.DiskUsage: st_blocks*512 summed over distinct inodes,
 * and the number of distinct inodes, the root included. */
int snap_disk_usage(const char *dir, int64_t *size, int64_t *inodes, struct rs_error *err);

/* ---- mounts.c ------------------------------------------------------- */

/* The mounts containerd's overlayfs snapshotter returns for snapshot id of
 * kind with the given ancestors (nearest first). */
int snap_build_mounts(const struct snapshotter *s, int64_t id, enum snap_kind kind,
		      const int64_t *parents, size_t np, struct snap_mounts *out,
		      struct rs_error *err);

/* ---- filter.c: containerd's filter syntax ------------------------------- */

struct snap_filter;
/* Any of the filters (each a comma-separated AND of selectors); n == 0 or an
 * empty filter string matches everything. -EINVAL with the reason. */
int snap_filter_parse(const char *const *filters, size_t n, struct snap_filter **out,
		      struct rs_error *err);
bool snap_filter_match(const struct snap_filter *f, const struct snap_info *info);
void snap_filter_free(struct snap_filter *f);

/* ---- health.c: remote ancestors --------------------------------------- */

struct snap_remote_ref {
	char *fs_dir;
	char *layer; /* the layer digest when a label names it, else the snapshot name */
};
struct snap_remote_refs {
	struct snap_remote_ref *v;
	size_t n;
};
void snap_remote_refs_free(struct snap_remote_refs *r);
/* Appends the remote snapshots among ids (caller holds s->lock, in a transaction). */
int snap_remote_refs_collect(struct snapshotter *s, const int64_t *ids, size_t n,
			     struct snap_remote_refs *out, struct rs_error *err);
/* Calls the check hook on each (lock not held); SNAP_EUNAVAILABLE on failure. */
int snap_remote_refs_check(struct snapshotter *s, const struct snap_remote_refs *r,
			   struct rs_error *err);

/* ---- busy list (snapshot.c; caller holds s->lock) ------------------------ */

int snap_busy_add(struct snapshotter *s, int64_t id, const char *target);
void snap_busy_del(struct snapshotter *s, int64_t id);
bool snap_busy_id(const struct snapshotter *s, int64_t id);
bool snap_busy_target(const struct snapshotter *s, const char *target);

/* ---- restore.c ----------------------------------------------------- */

/* Remounts every stored remote snapshot through the hook, threads at a time. */
void snap_restore(struct snapshotter *s, int threads);
/* Unmounts every stored remote snapshot through the hook. */
void snap_unmount_all(struct snapshotter *s);

#endif
