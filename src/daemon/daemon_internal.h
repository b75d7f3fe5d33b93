/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/daemon: the remote-layer hook that mounts eStargz layers
 * with src/layerfs for src/snapshot. */
#ifndef DAEMON_DAEMON_INTERNAL_H
#define DAEMON_DAEMON_INTERNAL_H

#include "daemon/daemon.h"
#include "fdstore/fdstore.h"
#include "layerfs/layerfs.h"
#include "registry/registry.h"
#include "snapshot/snapshot.h"

/* ---- the remote-layer hook ---------------------------------------------- */

struct daemon_remote;

struct daemon_remote_opts {
	struct lfs_runtime *rt;
	struct reg_client *client;
	bool no_prefetch, no_background;
	long read_timeout_ms;
	const struct daemon_config *cfg; /* the verification policy; outlives the hook */
	/* Where each layer's FUSE connection is kept so that it outlives this
	 * process (NULL: mounts end with it), and what an earlier process kept
	 * there (the hook owns the array and its fds). */
	struct fdstore *store;
	struct fdstore_entry *restored;
	size_t n_restored;
};

int daemon_remote_new(const struct daemon_remote_opts *o, struct daemon_remote **out,
		      struct rs_error *err);
/* The hook for snap_opts.remote (valid while r lives). */
const struct snap_remote_ops *daemon_remote_ops(struct daemon_remote *r);
/* After the restore: restored connections no snapshot took are closed and
 * dropped from the store. */
void daemon_remote_restore_done(struct daemon_remote *r);
/* From now on, daemon_remote_free and unmounts leave every mount and its
 * stored connection for the next process. */
void daemon_remote_keep_mounts(struct daemon_remote *r);
/* Unmounts every layer still mounted (or leaves them, see keep_mounts). */
void daemon_remote_free(struct daemon_remote *r);

#endif
