/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot: containerd's snapshotter semantics over an overlayfs layout, with
 * remote (lazily mounted) layers.
 *
 * Metadata lives in SQLite (ROOT/metadata.db, WAL, one transaction per
 * operation). Each snapshot has a numeric id and the directories
 * ROOT/snapshots/<id>/fs and ROOT/snapshots/<id>/work, as containerd's own
 * overlayfs snapshotter lays them out. Mounts are what that snapshotter would
 * return: a bind mount for a snapshot with no parent, overlay otherwise.
 *
 * Remote layers: a Prepare whose labels carry `containerd.io/snapshot.ref`
 * (the target name) is offered to the remote hook first. If the hook mounts
 * the layer at the new snapshot's fs dir, the snapshot is stored as committed
 * under the target name with the label `containerd.io/snapshot/remote` and
 * the Prepare fails with -EEXIST (containerd's ALREADY_EXISTS: "the layer is
 * there, skip download"). If the hook declines or fails, the Prepare goes on
 * as an ordinary active snapshot and containerd downloads the layer.
 *
 * Errors are negative errno values that the gRPC layer maps to codes:
 *   -ENOENT  NOT_FOUND            -EEXIST  ALREADY_EXISTS
 *   -EINVAL  INVALID_ARGUMENT     SNAP_EPRECONDITION  FAILED_PRECONDITION
 *   SNAP_EUNAVAILABLE  UNAVAILABLE (an unhealthy remote ancestor)
 *   anything else      UNKNOWN, with the message.
 * All calls are thread-safe. */
#ifndef SNAP_SNAPSHOT_H
#define SNAP_SNAPSHOT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define SNAP_EPRECONDITION (-EBUSY)
#define SNAP_EUNAVAILABLE (-EHOSTDOWN)

/* Labels containerd and the remote snapshotter protocol use. */
#define SNAP_LABEL_TARGET "containerd.io/snapshot.ref"
#define SNAP_LABEL_REMOTE "containerd.io/snapshot/remote"

/* containerd's snapshots.v1 Kind values. */
enum snap_kind {
	SNAP_KIND_UNKNOWN = 0,
	SNAP_KIND_VIEW = 1,
	SNAP_KIND_ACTIVE = 2,
	SNAP_KIND_COMMITTED = 3,
};

struct snap_label {
	char *key;
	char *value;
};

struct snap_info {
	char *name;
	char *parent; /* NULL or "" when none */
	enum snap_kind kind;
	struct snap_label *labels;
	size_t nlabels;
	int64_t created_ns; /* unix time in nanoseconds */
	int64_t updated_ns;
};
void snap_info_free(struct snap_info *i);
const char *snap_label_get(const struct snap_label *l, size_t n, const char *key);

struct snap_mount {
	char *type;   /* "bind" or "overlay" */
	char *source; /* a directory, or "overlay" */
	char **options;
	size_t noptions;
};
struct snap_mounts {
	struct snap_mount *v;
	size_t n;
};
void snap_mounts_free(struct snap_mounts *m);

/* What the remote-layer hook is told of the snapshot it mounts. */
struct snap_remote_target {
	int64_t id;      /* the snapshot's id: stable for its life, never reused */
	const char *dir; /* ROOT/snapshots/<id>: the hook may keep state under it */
	bool restoring;  /* at start, for a stored snapshot (its mount may be live) */
};

/* The remote-layer hook (implemented by the daemon with src/layerfs). */
struct snap_remote_ops {
	void *ctx;
	/* Mounts the layer the labels name at fs_dir (an empty directory), as
	 * the snapshot whose parent is the snapshot named parent (NULL: none).
	 * 0: mounted. -ENOTSUP: the labels name no remote layer, or the layer is
	 * not lazily mountable (say, plain gzip): an ordinary snapshot follows.
	 * Other errors: logged with err's reason, then an ordinary snapshot
	 * follows. Called for a Prepare, and at start for every stored remote
	 * snapshot (restore). May block on the network; calls run in parallel. */
	int (*mount)(void *ctx, const char *fs_dir, const struct snap_remote_target *t,
		     const char *parent, const struct snap_label *labels, size_t n,
		     struct rs_error *err);
	/* At restore, for a live mount found at fs_dir: true when the hook will
	 * take it over as it is (a connection kept in an fd store), so it is not
	 * detached first. NULL: every such mount is detached. */
	bool (*adoptable)(void *ctx, const struct snap_remote_target *t, const char *fs_dir);
	/* Unmounts fs_dir (Remove, Cleanup, shutdown). */
	void (*unmount)(void *ctx, const char *fs_dir);
	/* 0 when the layer at fs_dir can serve reads: its FUSE mount answers and its
	 * registry was reachable lately or its data is fully cached. Otherwise a
	 * negative errno and the reason in err. */
	int (*check)(void *ctx, const char *fs_dir, struct rs_error *err);
};

struct snap_opts {
	const char *root;                     /* created if missing */
	const struct snap_remote_ops *remote; /* NULL: no remote layers */
	bool restore;                         /* at open: remount, drop leftovers */
	int restore_threads;                  /* 0: 8 */
};

struct snapshotter;

int snap_open(const struct snap_opts *o, struct snapshotter **out, struct rs_error *err);
/* Unmounts remote layers (through the hook) and closes the database. */
void snap_close(struct snapshotter *s);

/* Active snapshot key on parent (NULL or "": none). */
int snap_prepare(struct snapshotter *s, const char *key, const char *parent,
		 const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
		 struct rs_error *err);
/* Read-only view key on parent. */
int snap_view(struct snapshotter *s, const char *key, const char *parent,
	      const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
	      struct rs_error *err);
int snap_mounts(struct snapshotter *s, const char *key, struct snap_mounts *out,
		struct rs_error *err);
/* Active key becomes committed name (key disappears). Labels replace the
 * active snapshot's. */
int snap_commit(struct snapshotter *s, const char *name, const char *key,
		const struct snap_label *labels, size_t nlabels, struct rs_error *err);
int snap_remove(struct snapshotter *s, const char *key, struct rs_error *err);
int snap_stat(struct snapshotter *s, const char *key, struct snap_info *out, struct rs_error *err);
/* Updates the fields paths name ("labels" or "labels.KEY"; none given: all
 * labels) from in; out receives the result. */
int snap_update(struct snapshotter *s, const struct snap_info *in, const char *const *paths,
		size_t npaths, struct snap_info *out, struct rs_error *err);
int snap_usage(struct snapshotter *s, const char *key, int64_t *size, int64_t *inodes,
	       struct rs_error *err);

/* Calls fn for each snapshot matching any of the filters (containerd's filter
 * syntax: `name==x`, `parent!=y`, `kind==committed`, `labels."a.b"==c`,
 * `labels.x` (present), `name~=regexp`, comma for AND; no filters: all).
 * A non-zero return from fn stops the walk and is returned. -EINVAL for a
 * filter that does not parse, with the reason. */
typedef int (*snap_walk_fn)(void *ctx, const struct snap_info *info);
int snap_walk(struct snapshotter *s, const char *const *filters, size_t nfilters, snap_walk_fn fn,
	      void *ctx, struct rs_error *err);
/* Removes directories under ROOT/snapshots that no snapshot owns. */
int snap_cleanup(struct snapshotter *s, struct rs_error *err);

#endif
