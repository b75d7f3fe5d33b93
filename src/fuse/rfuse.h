/* SPDX-License-Identifier: Apache-2.0 */
/* rfuse: a FUSE server speaking the kernel protocol over /dev/fuse (no
 * libfuse). A session is one connection: it negotiates INIT, checks every
 * request against a table of sizes before a callback sees it, answers write
 * requests with EROFS and unknown ones with ENOSYS, and formats replies.
 * Threads: rfuse_session_process() may run on many threads at once, each
 * with its own buffer; the callbacks must be thread-safe. */
#ifndef RS_RFUSE_H
#define RS_RFUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include "fuse/fuse_proto.h"
#include "util/util.h"

/* ---- INIT ------------------------------------------------------------ */

/* What we would like; each is granted only if the kernel offers it. */
struct rfuse_wishes {
	uint32_t max_request;   /* bytes per READ (max_pages), 0: 1 MiB */
	uint32_t max_write;     /* 0: 128 KiB; sizes the request buffer */
	uint32_t max_readahead; /* capped by the kernel's */
	bool async_read;
	bool passthrough;
	uint32_t max_stack_depth; /* for passthrough, 1..RFUSE_MAX_STACK_DEPTH */
	bool readdirplus;
	bool parallel_dirops;
	bool cache_symlinks;
	/* No OPENDIR or RELEASEDIR (we keep no directory state): the session
	 * answers the first OPENDIR ENOSYS and ops->opendir is never called;
	 * the kernel then caches every directory's listing. */
	bool no_opendir;
};

/* What the kernel and we agreed on. */
struct rfuse_granted {
	uint32_t major, minor;
	uint32_t max_readahead;
	uint32_t max_write;
	uint32_t max_pages; /* 0 when the kernel has no FUSE_MAX_PAGES */
	uint32_t max_stack_depth;
	bool async_read;
	bool passthrough;
	bool readdirplus;
	bool readdir_cache; /* FOPEN_CACHE_DIR understood (7.28) */
	bool keep_cache;    /* FOPEN_KEEP_CACHE understood */
	bool parallel_dirops;
	bool cache_symlinks;
	bool no_opendir;
	bool has_resend;
	uint64_t kernel_flags; /* what the kernel offered, flags2 in the high word */
	uint64_t reply_flags;  /* what we answered */
};

/* The INIT reply for the kernel's request body in[0..in_len) (an untrusted
 * fuse_init_in: 16 bytes before 7.36, 64 after). Fills *out and *out_len
 * (the size that kernel's minor expects) and *g. Returns 0, or 1 when the
 * kernel's major is newer than ours (reply *out as is and wait for another
 * INIT), or a negative errno (-EPROTO for a major we cannot speak, -EINVAL
 * for a short request). Pure: no I/O, no logging. */
int rfuse_negotiate(const void *in, size_t in_len, const struct rfuse_wishes *w,
		    struct rfuse_init_out *out, size_t *out_len, struct rfuse_granted *g,
		    struct rs_error *err);
/* Logs at debug what *g holds. */
void rfuse_log_granted(const struct rfuse_granted *g);

/* ---- sessions, requests, callbacks ---------------------------------- */

struct rfuse_session;

struct rfuse_req {
	struct rfuse_session *s;
	uint64_t unique;
	uint64_t nodeid;
	uint32_t opcode;
	uint32_t uid, gid, pid;
};

/* Every callback must answer its request exactly once with an rfuse_reply_*
 * (forget and batch_forget answer nothing). A NULL callback gets ENOSYS,
 * except the ones noted. Names are NUL-terminated and checked. */
struct rfuse_ops {
	void (*init)(void *ud, const struct rfuse_granted *g); /* may be NULL */
	void (*destroy)(void *ud);                             /* may be NULL */
	void (*lookup)(struct rfuse_req *r, uint64_t parent, const char *name);
	void (*forget)(void *ud, uint64_t nodeid, uint64_t nlookup); /* NULL: ignored */
	void (*getattr)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, bool has_fh);
	void (*readlink)(struct rfuse_req *r, uint64_t nodeid);
	void (*open)(struct rfuse_req *r, uint64_t nodeid, uint32_t flags); /* NULL: fh 0 */
	void (*read)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
		     uint32_t size);
	void (*release)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh);    /* NULL: ok */
	void (*opendir)(struct rfuse_req *r, uint64_t nodeid, uint32_t flags); /* NULL: fh 0 */
	void (*readdir)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
			uint32_t size);
	void (*readdirplus)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
			    uint32_t size);
	void (*releasedir)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh); /* NULL: ok */
	void (*getxattr)(struct rfuse_req *r, uint64_t nodeid, const char *name, uint32_t size);
	void (*listxattr)(struct rfuse_req *r, uint64_t nodeid, uint32_t size);
	void (*statfs)(struct rfuse_req *r, uint64_t nodeid);
	void (*access)(struct rfuse_req *r, uint64_t nodeid, uint32_t mask);
	void (*lseek)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
		      uint32_t whence);
	void (*flush)(struct rfuse_req *r, uint64_t nodeid, uint64_t fh); /* NULL: ok */
	void (*interrupt)(void *ud, uint64_t unique);                     /* NULL: ignored */
	/* The two writes a mount made with RFUSE_MOUNT_WRITABLE may take (an
	 * additional layer store counts uses with them); NULL: EROFS. */
	void (*create)(struct rfuse_req *r, uint64_t parent, const char *name, uint32_t flags,
		       uint32_t mode);
	void (*rmdir)(struct rfuse_req *r, uint64_t parent, const char *name);
};

/* Where replies go; the default writes to the session's fd. Returns 0 or a
 * negative errno. Tests and the fuzzer capture replies with their own. */
typedef int (*rfuse_send_fn)(void *ctx, const struct iovec *iov, int iovcnt);

/* A session over fd (not owned: rfuse_session_free leaves it open). */
int rfuse_session_new(int fd, const struct rfuse_ops *ops, void *ud, const struct rfuse_wishes *w,
		      struct rfuse_session **out, struct rs_error *err);
void rfuse_session_free(struct rfuse_session *s);
void rfuse_session_set_send(struct rfuse_session *s, rfuse_send_fn fn, void *ctx);
void *rfuse_session_userdata(const struct rfuse_session *s);
/* Valid once INIT was answered (NULL before). */
const struct rfuse_granted *rfuse_session_granted(const struct rfuse_session *s);
/* Whether DESTROY arrived or the kernel ended the connection. */
bool rfuse_session_exited(const struct rfuse_session *s);
/* The smallest request buffer the kernel accepts for these wishes. */
size_t rfuse_session_bufsize(const struct rfuse_session *s);

/* Reads one request into buf (cap >= rfuse_session_bufsize). Returns its
 * length, 0 when there is nothing to do (EINTR, EAGAIN, an interrupted
 * request), -ENODEV when the connection is gone. */
ssize_t rfuse_session_read(struct rfuse_session *s, void *buf, size_t cap);
/* Checks the request buf[0..len) (untrusted bytes) against the opcode table,
 * then answers it or hands it to its callback. Never reads outside buf. */
void rfuse_session_process(struct rfuse_session *s, const void *buf, size_t len);
/* Reads and processes until the connection ends, on the calling thread, with
 * one buffer. Returns 0 at a clean end, or a negative errno. */
int rfuse_session_loop(struct rfuse_session *s);
/* The same, also ending (0) once stop_fd is readable (-1: never). */
int rfuse_session_serve(struct rfuse_session *s, int stop_fd);

/* Registers fd (open for reading) as a backing file, so an OPEN can answer
 * FOPEN_PASSTHROUGH with the returned id (> 0) and the kernel reads fd
 * itself. Needs CAP_SYS_ADMIN, passthrough granted at INIT, and fd on a
 * filesystem stacked less deep than the granted max_stack_depth. */
int rfuse_backing_open(struct rfuse_session *s, int fd, struct rs_error *err);
/* Drops the id; files already opened with it keep reading. */
int rfuse_backing_close(struct rfuse_session *s, int32_t id, struct rs_error *err);

/* ---- takeover: serving a connection another process opened ---------- */

/* The INIT outcome as one line of text (with its newline), to keep beside
 * the mount for the next process. Its length, or -ENOSPC. */
int rfuse_granted_format(const struct rfuse_granted *g, char *buf, size_t cap);
/* Reads such a line back (checked: sizes within what our INIT gives). */
int rfuse_granted_parse(const char *text, struct rfuse_granted *g, struct rs_error *err);
/* A session over fd, a connection whose INIT was answered before (by a
 * process that is gone, or another session): serving at once, with g as
 * granted (ops->init is called with it). Requests the old server had read
 * but not answered wait until rfuse_notify_resend. */
int rfuse_session_adopt(int fd, const struct rfuse_ops *ops, void *ud, const struct rfuse_wishes *w,
			const struct rfuse_granted *g, struct rfuse_session **out,
			struct rs_error *err);

/* ---- replies --------------------------------------------------------- */

void rfuse_attr_from_stat(struct fuse_attr *a, const struct stat *st);

int rfuse_reply_err(struct rfuse_req *r, int err); /* err: a positive errno, or 0 */
int rfuse_reply_entry(struct rfuse_req *r, const struct fuse_entry_out *e);
int rfuse_reply_attr(struct rfuse_req *r, const struct fuse_attr_out *a);
int rfuse_reply_open(struct rfuse_req *r, uint64_t fh, uint32_t open_flags, int32_t backing_id);
int rfuse_reply_buf(struct rfuse_req *r, const void *data, size_t len);
int rfuse_reply_data(struct rfuse_req *r, const struct iovec *iov, int iovcnt);
int rfuse_reply_xattr_size(struct rfuse_req *r, uint32_t size);
int rfuse_reply_statfs(struct rfuse_req *r, const struct statvfs *st);
int rfuse_reply_lseek(struct rfuse_req *r, uint64_t off);

/* Builds a READDIR or READDIRPLUS reply in a caller's buffer (the request's
 * size), each entry padded to 8 bytes as the kernel walks them. */
struct rfuse_dirbuf {
	char *buf;
	size_t cap;
	size_t len;
};
void rfuse_dirbuf_init(struct rfuse_dirbuf *d, void *buf, size_t cap);
/* false when the entry does not fit (the buffer is left as it was). type is
 * the S_IFMT part of a mode; off the offset of the entry after this one. */
bool rfuse_dirbuf_add(struct rfuse_dirbuf *d, const char *name, size_t namelen, uint64_t ino,
		      uint32_t mode, uint64_t off);
bool rfuse_dirbuf_add_plus(struct rfuse_dirbuf *d, const char *name, size_t namelen,
			   const struct fuse_entry_out *e, uint64_t off);

/* ---- notifications ------------------------------------------------- */

int rfuse_notify_inval_inode(struct rfuse_session *s, uint64_t nodeid, int64_t off, int64_t len);
int rfuse_notify_inval_entry(struct rfuse_session *s, uint64_t parent, const char *name,
			     size_t namelen);
/* FUSE_NOTIFY_RESEND (Linux 6.9): the kernel queues again every request
 * this connection's readers took and did not answer (their unique ids gain
 * RFUSE_UNIQUE_RESEND when has_resend was granted). -EINVAL or -ENOSYS from
 * an older kernel. */
int rfuse_notify_resend(struct rfuse_session *s);

/* ---- mounting (as root, no fusermount) ------------------------------- */

/* Opens /dev/fuse and mounts it read-only at mountpoint as type
 * "fuse.<subtype>" with source fsname. Returns the fd (>= 0) or a negative
 * errno. */
int rfuse_mount(const char *mountpoint, const char *fsname, const char *subtype,
		struct rs_error *err);
/* rfuse_mount with flags: RFUSE_MOUNT_WRITABLE mounts without MS_RDONLY, so
 * that CREATE and RMDIR reach ops->create and ops->rmdir (every other write
 * still gets EROFS from the session). */
#define RFUSE_MOUNT_WRITABLE 1u
int rfuse_mount_with(const char *mountpoint, const char *fsname, const char *subtype,
		     unsigned flags, struct rs_error *err);
/* 1 when a FUSE filesystem is mounted at mountpoint (from /proc/self/mountinfo,
 * without touching the mount: a connection nobody serves yet would block a
 * stat), 0 when not, or a negative errno. */
int rfuse_mounted_at(const char *mountpoint);
/* Lazily detaches the mount (MNT_DETACH): open files keep working until closed. */
int rfuse_unmount(const char *mountpoint, struct rs_error *err);

#endif
