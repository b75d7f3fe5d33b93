/* SPDX-License-Identifier: Apache-2.0 */
/* fdstore internals: the name table, the holder's wire protocol, the store
 * struct and the two back ends behind fdstore.c. */
#ifndef RS_FDSTORE_INTERNAL_H
#define RS_FDSTORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "fdstore.h"

/* Most fds one store holds (systemd's FileDescriptorStoreMax= should match). */
#define FDSTORE_MAX_FDS 4096
/* How long a client waits for the holder (start, a reply, the hand-over). */
#define FDSTORE_HOLDER_TIMEOUT_MS 5000

/* ---- name table (table.c) ----------------------------------------------- */

/* Entries by name; fd -1 where only the name is kept. Owns its fds. */
struct fdt {
	struct fdstore_entry *v;
	size_t n, cap;
};

ssize_t fdt_find(const struct fdt *t, const char *name);
/* Stores fd (taking it, even on failure) under name, closing the fd it replaces. */
int fdt_put(struct fdt *t, const char *name, int fd);
/* Closes and forgets name's fd; -ENOENT when there is none. */
int fdt_remove(struct fdt *t, const char *name);
void fdt_clear(struct fdt *t);

/* ---- the holder's protocol (proto.c) ------------------------------------- */

/* One SOCK_SEQPACKET packet per message: this header, then name_len bytes of
 * name (no NUL), and for ADD and ENTRY exactly one fd in SCM_RIGHTS. */
#define FDH_MAGIC 0x52534631u /* "RSF1" */

enum fdh_op {
	/* client -> holder */
	FDH_ADD = 1, /* name, fd */
	FDH_REMOVE,  /* name */
	FDH_STOP,    /* close everything, exit */
	/* holder -> client */
	FDH_ENTRY,    /* name, fd: one stored fd of the hand-over */
	FDH_END,      /* value: how many ENTRY came before */
	FDH_OK,       /* the request before succeeded */
	FDH_ERR,      /* value: positive errno of the request before */
	FDH_REPLACED, /* another client took over; the holder closes this one */
	FDH_OP_COUNT
};

struct fdh_hdr {
	uint32_t magic;
	uint16_t op;
	uint16_t name_len;
	int32_t value;
};

#define FDH_MSG_MAX (sizeof(struct fdh_hdr) + FDSTORE_NAME_MAX)

struct fdh_msg {
	enum fdh_op op;
	int32_t value;
	char name[FDSTORE_NAME_MAX + 1]; /* "" for ops without a name */
	int fd;                          /* -1 for ops without an fd; the receiver owns it */
};

/* name may be NULL; fd -1 for none. 0 or a negative errno. */
int fdh_send(int sock, enum fdh_op op, int32_t value, const char *name, int fd);
/* 1 with a message that passed the op table's checks, 0 on end of stream,
 * -EBADMSG for a malformed one (any fds in it closed), other <0 errors. */
int fdh_recv(int sock, struct fdh_msg *m);
/* Waits up to timeout_ms for sock to be readable: 0, -ETIMEDOUT or -errno. */
int fdh_wait(int sock, int timeout_ms);

/* ---- the store ---------------------------------------------------------- */

enum fdstore_kind { FDSTORE_SYSTEMD, FDSTORE_HOLDER };

struct fdstore_systemd {
	int sock; /* SOCK_DGRAM to NOTIFY_SOCKET */
	struct sockaddr_un addr;
	socklen_t addr_len;
};

struct fdstore_holder {
	char *socket_path;
	char *program;
	int conn;      /* to the holder, -1 while none runs for us */
	int epfd;      /* the poll fd: holds conn while there is one */
	pid_t pid;     /* the holder's, from SO_PEERCRED; 0 with no conn */
	bool replaced; /* another client took over: every call is -ESTALE */
};

struct fdstore {
	pthread_mutex_t lock; /* guards everything below */
	enum fdstore_kind kind;
	/* What is stored, by name. Holder: our own dup of each fd, to give a
	 * restarted holder everything again. systemd: names only (fd -1). */
	struct fdt table;
	struct fdstore_systemd sd;
	struct fdstore_holder h;
};

/* systemd.c */
int sd_store_open(struct fdstore *s, const char *notify_socket, struct fdstore_entry **restored,
		  size_t *n_restored, struct rs_error *err);
int sd_store_add(struct fdstore *s, const char *name, int fd, struct rs_error *err);
int sd_store_remove(struct fdstore *s, const char *name, struct rs_error *err);
void sd_store_notify(struct fdstore *s, const char *text);
void sd_store_stop(struct fdstore *s);
void sd_store_close(struct fdstore *s);

/* holder_client.c */
int hc_open(struct fdstore *s, const struct fdstore_opts *o, struct fdstore_entry **restored,
	    size_t *n_restored, struct rs_error *err);
int hc_add(struct fdstore *s, const char *name, int fd, struct rs_error *err);
int hc_remove(struct fdstore *s, const char *name, struct rs_error *err);
int hc_check(struct fdstore *s, struct rs_error *err);
void hc_stop(struct fdstore *s);
void hc_close(struct fdstore *s);

/* holder_spawn.c: starts `program socket_path` detached (setsid, stdio on
 * /dev/null, no other fds, reparented away from us). */
int hc_spawn(const char *program, const char *socket_path, struct rs_error *err);

/* holder_server.c: the holder itself; returns when it has nothing left to
 * hold. ready_fd (or -1) is closed once it listens, after its error if not. */
int fdstore_holder_run(const char *socket_path, int ready_fd, struct rs_error *err);

/* For tests: the pid of the holder this store talks to, 0 when none. */
pid_t fdstore_holder_pid(struct fdstore *s);

#endif
