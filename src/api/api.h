/* SPDX-License-Identifier: Apache-2.0 */
/* api: containerd's snapshots service (containerd.services.snapshots.v1.Snapshots)
 * over gRPC on a unix socket, served from src/snapshot, for containerd's
 * [proxy_plugins]. gRPC core's completion queue runs on its own thread; calls
 * are handled by a fixed pool of threads, so a slow Prepare (a remote layer
 * being mounted) never holds up the others. */
#ifndef API_API_H
#define API_API_H

#include "snapshot/snapshot.h"
#include "util/util.h"

struct api_opts {
	const char *socket; /* unix socket path; an existing stale socket is replaced */
	int threads;        /* call handlers; 0: 8 */
};

struct api_server;

int api_server_start(const struct api_opts *o, struct snapshotter *s, struct api_server **out,
		     struct rs_error *err);
/* Stops accepting calls, finishes those in progress, removes the socket.
 * Calls still running after 10 s are cancelled (their clients see
 * UNAVAILABLE); a handler blocked in src/snapshot is still waited for. */
void api_server_stop(struct api_server *srv);

/* gRPC status code for a negative errno from src/snapshot (see snapshot.h). */
int api_status_of(int err);

#endif
