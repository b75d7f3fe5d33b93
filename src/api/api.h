/* SPDX-License-Identifier: Apache-2.0 */
/* api: containerd's snapshots service (containerd.services.snapshots.v1.Snapshots)
 * over gRPC on a unix socket, served from src/snapshot, for containerd's
 * [proxy_plugins]. gRPC core's completion queue runs on its own thread; calls
 * are handled by a fixed pool of threads, so a slow Prepare (a remote layer
 * being mounted) never holds up the others. */
#ifndef API_API_H
#define API_API_H

#include <stdbool.h>

#include "snapshot/snapshot.h"
#include "util/util.h"

struct api_opts {
	const char *socket; /* the listening socket's path, for logs */
	/* A listening unix stream socket (api_listen_open). The caller's: the
	 * server only accepts from it, and it stays open after the server
	 * stops (a successor accepts from it next). */
	int listen_fd;
	int threads; /* call handlers; 0: 8 */
};

/* ---- the listening socket (listen.c) ----------------------------------------- */

/* A listening socket at path, non-blocking: restored_fd (a socket an earlier
 * process kept in an fd store, or -1; taken: closed when not used) when
 * api_listen_check accepts it, else bound anew: its directory made (0700),
 * a stale socket file nobody listens on replaced, a live one or a non-socket
 * refused, the socket 0660 from its first moment. *reused says which. */
int api_listen_open(const char *path, int restored_fd, int *out, bool *reused,
		    struct rs_error *err);
/* 0 when fd is a listening unix stream socket bound to path, and path still
 * leads to it (still there, a socket, the file it was bound to where the
 * kernel can say); else -errno and why. */
int api_listen_check(int fd, const char *path, struct rs_error *err);

/* ---- the server (server.c) ------------------------------------------------------ */

struct api_server;

/* Serves on o->listen_fd: accepts connections on a thread of its own and
 * hands each to gRPC. */
int api_server_start(const struct api_opts *o, struct snapshotter *s, struct api_server **out,
		     struct rs_error *err);
/* Stops accepting at once (connections coming later wait in the socket's
 * backlog for whoever accepts next). With drain, first waits (bounded) for
 * the connections accepted so far to close: each is sent an HTTP/2 GOAWAY at
 * its age limit and closes once its calls are done, so a client moves to
 * a new connection without a call failing. Then finishes the calls in
 * progress; those still running after 10 s are cancelled (their clients see
 * UNAVAILABLE); a handler blocked in src/snapshot is still waited for. Never
 * removes the socket. */
void api_server_stop(struct api_server *srv, bool drain);

/* gRPC status code for a negative errno from src/snapshot (see snapshot.h). */
int api_status_of(int err);

#endif
