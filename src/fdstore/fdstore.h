/* SPDX-License-Identifier: Apache-2.0 */
/* fdstore: keeps fds (each /dev/fuse connection, the gRPC socket) outside the
 * daemon so that a restarted daemon gets them back and the mounts never die.
 * Back ends: systemd's fd store (NOTIFY_SOCKET set) or our rs-fd-holder. */
#ifndef RS_FDSTORE_H
#define RS_FDSTORE_H

#include <stddef.h>

#include "util/util.h"

#define FDSTORE_NAME_MAX 255

struct fdstore_opts {
	const char *holder_socket;  /* our holder's socket path (e.g. ROOT/fd-holder.sock) */
	const char *holder_program; /* rs-fd-holder; NULL: "rs-fd-holder" beside /proc/self/exe */
};

struct fdstore_entry {
	char name[FDSTORE_NAME_MAX + 1];
	int fd;
};

struct fdstore;

/* Opens the store: systemd's when NOTIFY_SOCKET is set, else our holder's
 * (connecting to a running one, which hands over its fds and drops any earlier
 * client). *restored (malloc'd array, caller frees it and owns the fds) gets
 * the fds an earlier process stored; they stay stored. */
int fdstore_open(const struct fdstore_opts *o, struct fdstore **out,
		 struct fdstore_entry **restored, size_t *n_restored, struct rs_error *err);
/* "systemd" or "holder" */
const char *fdstore_kind(const struct fdstore *s);
/* 0 when name is 1..FDSTORE_NAME_MAX characters of [A-Za-z0-9._+-], else -EINVAL. */
int fdstore_check_name(const char *name);
/* Stores a dup of fd under name (replacing one of that name). */
int fdstore_add(struct fdstore *s, const char *name, int fd, struct rs_error *err);
int fdstore_remove(struct fdstore *s, const char *name, struct rs_error *err);
/* An fd to poll for POLLIN: readable when the holder died or another daemon
 * took over; -1 with systemd. The same fd for the life of the store. */
int fdstore_poll_fd(const struct fdstore *s);
/* After poll_fd was readable: 0 (holder restarted and given every fd again, or
 * nothing happened), -ESTALE (another process took the store over: stop
 * serving, keep the mounts, exit), <0 error. */
int fdstore_check(struct fdstore *s, struct rs_error *err);
void fdstore_notify_ready(struct fdstore *s);    /* READY=1 (systemd only) */
void fdstore_notify_stopping(struct fdstore *s); /* STOPPING=1 (systemd only) */
/* Leaves every fd stored (for the next process) and frees. */
void fdstore_close(struct fdstore *s);
/* Empties the store (holder told to close everything and exit; systemd:
 * FDSTOREREMOVE of each name) and frees. */
void fdstore_stop(struct fdstore *s);

#endif
