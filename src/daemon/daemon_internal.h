/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/daemon: the remote-layer hook that mounts eStargz layers
 * with src/layerfs for src/snapshot. */
#ifndef DAEMON_DAEMON_INTERNAL_H
#define DAEMON_DAEMON_INTERNAL_H

#include "daemon/daemon.h"
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
};

int daemon_remote_new(const struct daemon_remote_opts *o, struct daemon_remote **out,
		      struct rs_error *err);
/* The hook for snap_opts.remote (valid while r lives). */
const struct snap_remote_ops *daemon_remote_ops(struct daemon_remote *r);
/* Unmounts every layer still mounted. */
void daemon_remote_free(struct daemon_remote *r);

#endif
