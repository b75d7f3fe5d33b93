/* SPDX-License-Identifier: Apache-2.0 */
/* One FUSE connection: the request decoder and its table. Every length in a
 * request is the kernel's word, so it is checked here, once, against the
 * table's fixed size for the opcode before any handler runs; a handler reads
 * only its fixed part and the checked name. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "rfuse_internal.h"

#define HDR sizeof(struct fuse_in_header)
/* The oldest protocol whose request layouts we decode (Linux 2.6.29). */
#define MINOR_MIN 12

enum {
	F_NAME = 1 << 0,    /* a NUL-terminated name follows the fixed part */
	F_EROFS = 1 << 1,   /* a write: refused before any decoding */
	F_NOREPLY = 1 << 2, /* the kernel expects no answer */
	F_ANYTIME = 1 << 3, /* accepted before INIT */
	F_WRITE = 1 << 4,   /* a write the ops may take: EROFS, undecoded, when they do not */
};

typedef void (*handler_fn)(struct rfuse_req *r, const unsigned char *arg, size_t len,
			   const char *name);

struct op_desc {
	handler_fn run;
	uint16_t fixed;
	uint8_t flags;
};

#define GET(type, var, arg)                                                                        \
	type var;                                                                                  \
	memcpy(&var, arg, sizeof(var))

static const struct rfuse_ops *ops_of(struct rfuse_req *r)
{
	return r->s->ops;
}

static void do_init(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	struct rfuse_session *s = r->s;
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	struct rs_error err = {0};
	if (atomic_load_explicit(&s->state, memory_order_acquire) != RFUSE_WAIT_INIT) {
		rfuse_reply_err(r, EIO);
		return;
	}
	int rc = rfuse_negotiate(arg, len, &s->wishes, &out, &out_len, &g, &err);
	if (rc == 0 && g.minor < MINOR_MIN)
		rc = rs_err(&err, -EPROTO, "FUSE INIT: kernel protocol 7.%u is older than 7.%d",
			    g.minor, MINOR_MIN);
	if (rc < 0) {
		rs_log(RS_LOG_ERROR, "%s", err.msg);
		rfuse_reply_err(r, -rc);
		return;
	}
	if (rc == 0) {
		s->granted = g;
		rfuse_log_granted(&g);
		if (s->ops->init)
			s->ops->init(s->ud, &s->granted);
	}
	struct iovec v = {.iov_base = &out, .iov_len = out_len};
	rfuse_send(s, r->unique, 0, &v, 1);
	if (rc == 0)
		atomic_store_explicit(&s->state, RFUSE_SERVING, memory_order_release);
}

static void do_destroy(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	if (ops_of(r)->destroy)
		ops_of(r)->destroy(r->s->ud);
	rfuse_reply_err(r, 0);
	atomic_store_explicit(&r->s->state, RFUSE_EXITED, memory_order_release);
}

static void do_lookup(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	if (!ops_of(r)->lookup)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->lookup(r, r->nodeid, name);
}

static void do_forget(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_forget_in, in, arg);
	if (ops_of(r)->forget)
		ops_of(r)->forget(r->s->ud, r->nodeid, in.nlookup);
}

static void do_batch_forget(struct rfuse_req *r, const unsigned char *arg, size_t len,
			    const char *name)
{
	GET(struct fuse_batch_forget_in, in, arg);
	size_t room = (len - sizeof(in)) / sizeof(struct fuse_forget_one);
	/* A count past the bytes sent is cut to what is there. */
	size_t n = in.count < room ? in.count : room;
	for (size_t i = 0; i < n && ops_of(r)->forget; i++) {
		GET(struct fuse_forget_one, one,
		    arg + sizeof(in) + i * sizeof(struct fuse_forget_one));
		ops_of(r)->forget(r->s->ud, one.nodeid, one.nlookup);
	}
}

static void do_getattr(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_getattr_in, in, arg);
	if (!ops_of(r)->getattr)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->getattr(r, r->nodeid, in.fh, in.getattr_flags & FUSE_GETATTR_FH);
}

static void do_readlink(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	if (!ops_of(r)->readlink)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->readlink(r, r->nodeid);
}

static void do_open(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_open_in, in, arg);
	if (!ops_of(r)->open)
		rfuse_reply_open(r, 0, 0, 0);
	else
		ops_of(r)->open(r, r->nodeid, in.flags);
}

/* With no_opendir granted, ENOSYS is success: the kernel opens every
 * directory itself from then on (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, no
 * RELEASEDIR), so a walk costs the daemon no round trip per directory. */
static void do_opendir(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_open_in, in, arg);
	if (r->s->granted.no_opendir)
		rfuse_reply_err(r, ENOSYS);
	else if (!ops_of(r)->opendir)
		rfuse_reply_open(r, 0, 0, 0);
	else
		ops_of(r)->opendir(r, r->nodeid, in.flags);
}

static void do_read(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_read_in, in, arg);
	void (*fn)(struct rfuse_req *, uint64_t, uint64_t, uint64_t, uint32_t) =
	    r->opcode == FUSE_READ      ? ops_of(r)->read
	    : r->opcode == FUSE_READDIR ? ops_of(r)->readdir
					: ops_of(r)->readdirplus;
	if (!fn)
		rfuse_reply_err(r, ENOSYS);
	else
		fn(r, r->nodeid, in.fh, in.offset, in.size);
}

static void do_release(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_release_in, in, arg);
	void (*fn)(struct rfuse_req *, uint64_t, uint64_t) =
	    r->opcode == FUSE_RELEASE ? ops_of(r)->release : ops_of(r)->releasedir;
	if (!fn)
		rfuse_reply_err(r, 0);
	else
		fn(r, r->nodeid, in.fh);
}

static void do_flush(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_flush_in, in, arg);
	if (!ops_of(r)->flush)
		rfuse_reply_err(r, 0);
	else
		ops_of(r)->flush(r, r->nodeid, in.fh);
}

static void do_getxattr(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_getxattr_in, in, arg);
	if (r->opcode == FUSE_GETXATTR) {
		if (!ops_of(r)->getxattr)
			rfuse_reply_err(r, ENOSYS);
		else
			ops_of(r)->getxattr(r, r->nodeid, name, in.size);
	} else {
		if (!ops_of(r)->listxattr)
			rfuse_reply_err(r, ENOSYS);
		else
			ops_of(r)->listxattr(r, r->nodeid, in.size);
	}
}

static void do_statfs(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	if (!ops_of(r)->statfs)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->statfs(r, r->nodeid);
}

static void do_access(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_access_in, in, arg);
	if (!ops_of(r)->access)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->access(r, r->nodeid, in.mask);
}

static void do_lseek(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_lseek_in, in, arg);
	if (!ops_of(r)->lseek)
		rfuse_reply_err(r, ENOSYS);
	else
		ops_of(r)->lseek(r, r->nodeid, in.fh, in.offset, in.whence);
}

static void do_interrupt(struct rfuse_req *r, const unsigned char *arg, size_t len,
			 const char *name)
{
	GET(struct fuse_interrupt_in, in, arg);
	if (ops_of(r)->interrupt)
		ops_of(r)->interrupt(r->s->ud, in.unique);
}

static void do_create(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	GET(struct fuse_create_in, in, arg);
	ops_of(r)->create(r, r->nodeid, name, in.flags, in.mode);
}

static void do_rmdir(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
	ops_of(r)->rmdir(r, r->nodeid, name);
}

/* Whether the ops take the write opcode op (F_WRITE). */
static bool write_taken(const struct rfuse_session *s, uint32_t op)
{
	return (op == FUSE_CREATE && s->ops->create) || (op == FUSE_RMDIR && s->ops->rmdir);
}

static void do_ignore(struct rfuse_req *r, const unsigned char *arg, size_t len, const char *name)
{
}

#define ROFS                                                                                       \
	{                                                                                          \
		NULL, 0, F_EROFS                                                                   \
	}

static const struct op_desc op_table[] = {
    [FUSE_LOOKUP] = {do_lookup, 0, F_NAME},
    [FUSE_FORGET] = {do_forget, sizeof(struct fuse_forget_in), F_NOREPLY},
    [FUSE_GETATTR] = {do_getattr, sizeof(struct fuse_getattr_in), 0},
    [FUSE_SETATTR] = ROFS,
    [FUSE_READLINK] = {do_readlink, 0, 0},
    [FUSE_SYMLINK] = ROFS,
    [FUSE_MKNOD] = ROFS,
    [FUSE_MKDIR] = ROFS,
    [FUSE_UNLINK] = ROFS,
    [FUSE_RMDIR] = {do_rmdir, 0, F_NAME | F_WRITE},
    [FUSE_RENAME] = ROFS,
    [FUSE_LINK] = ROFS,
    [FUSE_OPEN] = {do_open, sizeof(struct fuse_open_in), 0},
    [FUSE_READ] = {do_read, sizeof(struct fuse_read_in), 0},
    [FUSE_WRITE] = ROFS,
    [FUSE_STATFS] = {do_statfs, 0, 0},
    [FUSE_RELEASE] = {do_release, sizeof(struct fuse_release_in), 0},
    [FUSE_SETXATTR] = ROFS,
    [FUSE_GETXATTR] = {do_getxattr, sizeof(struct fuse_getxattr_in), F_NAME},
    [FUSE_LISTXATTR] = {do_getxattr, sizeof(struct fuse_getxattr_in), 0},
    [FUSE_REMOVEXATTR] = ROFS,
    [FUSE_FLUSH] = {do_flush, sizeof(struct fuse_flush_in), 0},
    [FUSE_INIT] = {do_init, 8, F_ANYTIME},
    [FUSE_OPENDIR] = {do_opendir, sizeof(struct fuse_open_in), 0},
    [FUSE_READDIR] = {do_read, sizeof(struct fuse_read_in), 0},
    [FUSE_RELEASEDIR] = {do_release, sizeof(struct fuse_release_in), 0},
    [FUSE_ACCESS] = {do_access, sizeof(struct fuse_access_in), 0},
    [FUSE_CREATE] = {do_create, sizeof(struct fuse_create_in), F_NAME | F_WRITE},
    [FUSE_INTERRUPT] = {do_interrupt, sizeof(struct fuse_interrupt_in), F_NOREPLY},
    [FUSE_DESTROY] = {do_destroy, 0, 0},
    /* A reply to a RETRIEVE we never send: nothing to answer. */
    [FUSE_NOTIFY_REPLY] = {do_ignore, 0, F_NOREPLY},
    [FUSE_BATCH_FORGET] = {do_batch_forget, sizeof(struct fuse_batch_forget_in), F_NOREPLY},
    [FUSE_FALLOCATE] = ROFS,
    [FUSE_READDIRPLUS] = {do_read, sizeof(struct fuse_read_in), 0},
    [FUSE_RENAME2] = ROFS,
    [FUSE_LSEEK] = {do_lseek, sizeof(struct fuse_lseek_in), 0},
    [FUSE_COPY_FILE_RANGE] = ROFS,
    [FUSE_TMPFILE] = ROFS,
};

void rfuse_session_process(struct rfuse_session *s, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	struct fuse_in_header h;
	if (len < HDR) {
		/* No whole header: answer only if the unique id is there. */
		if (len >= offsetof(struct fuse_in_header, nodeid)) {
			memcpy(&h.unique, p + offsetof(struct fuse_in_header, unique),
			       sizeof(h.unique));
			rfuse_send(s, h.unique, -EIO, NULL, 0);
		}
		return;
	}
	memcpy(&h, p, HDR);
	struct rfuse_req r = {.s = s,
			      .unique = h.unique,
			      .nodeid = h.nodeid,
			      .opcode = h.opcode,
			      .uid = h.uid,
			      .gid = h.gid,
			      .pid = h.pid};
	const struct op_desc *d =
	    h.opcode < sizeof(op_table) / sizeof(op_table[0]) ? &op_table[h.opcode] : NULL;
	bool noreply = d && (d->flags & F_NOREPLY);
	int bad = 0;
	const char *name = NULL;
	size_t arglen = len - HDR;
	int state = atomic_load_explicit(&s->state, memory_order_acquire);
	if (h.len != len)
		bad = EIO;
	else if (state == RFUSE_EXITED)
		bad = ENODEV;
	else if (!d || (!d->run && !(d->flags & F_EROFS)))
		bad = ENOSYS;
	else if (state == RFUSE_WAIT_INIT && !(d->flags & F_ANYTIME))
		bad = EIO;
	else if ((d->flags & F_EROFS) || ((d->flags & F_WRITE) && !write_taken(s, h.opcode)))
		bad = EROFS;
	else if (arglen < d->fixed)
		bad = EINVAL;
	else if (d->flags & F_NAME) {
		const char *n = (const char *)p + HDR + d->fixed;
		size_t room = arglen - d->fixed;
		if (room == 0 || n[0] == '\0' || !memchr(n, '\0', room))
			bad = EINVAL;
		else
			name = n;
	}
	if (bad) {
		if (!noreply)
			rfuse_reply_err(&r, bad);
		return;
	}
	d->run(&r, p + HDR, arglen, name);
}

static int send_fd(void *ctx, const struct iovec *iov, int n)
{
	int fd = *(int *)ctx;
	if (writev(fd, iov, n) < 0)
		return -errno;
	return 0;
}

int rfuse_session_new(int fd, const struct rfuse_ops *ops, void *ud, const struct rfuse_wishes *w,
		      struct rfuse_session **out, struct rs_error *err)
{
	struct rfuse_session *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "fuse session: out of memory");
	s->fd = fd;
	s->ops = ops;
	s->ud = ud;
	if (w)
		s->wishes = *w;
	if (!s->wishes.max_write)
		s->wishes.max_write = 128u << 10;
	s->send = send_fd;
	s->send_ctx = &s->fd;
	atomic_init(&s->state, RFUSE_WAIT_INIT);
	*out = s;
	return 0;
}

void rfuse_session_free(struct rfuse_session *s)
{
	free(s);
}

void rfuse_session_set_send(struct rfuse_session *s, rfuse_send_fn fn, void *ctx)
{
	s->send = fn;
	s->send_ctx = ctx;
}

void *rfuse_session_userdata(const struct rfuse_session *s)
{
	return s->ud;
}

const struct rfuse_granted *rfuse_session_granted(const struct rfuse_session *s)
{
	int st = atomic_load_explicit(&((struct rfuse_session *)s)->state, memory_order_acquire);
	return st == RFUSE_WAIT_INIT ? NULL : &s->granted;
}

bool rfuse_session_exited(const struct rfuse_session *s)
{
	return atomic_load_explicit(&((struct rfuse_session *)s)->state, memory_order_acquire) ==
	       RFUSE_EXITED;
}

size_t rfuse_session_bufsize(const struct rfuse_session *s)
{
	/* The kernel refuses a read smaller than a whole WRITE request. */
	size_t n = (size_t)s->wishes.max_write + HDR + sizeof(struct fuse_write_in);
	n = (n + 4095) & ~(size_t)4095;
	return n < FUSE_MIN_READ_BUFFER ? FUSE_MIN_READ_BUFFER : n;
}

ssize_t rfuse_session_read(struct rfuse_session *s, void *buf, size_t cap)
{
	ssize_t n = read(s->fd, buf, cap);
	if (n >= 0)
		return n;
	/* ENOENT: the request was interrupted before we read it. */
	if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
		return 0;
	int e = errno;
	if (e == ENODEV)
		atomic_store_explicit(&s->state, RFUSE_EXITED, memory_order_release);
	return -e;
}

int rfuse_session_loop(struct rfuse_session *s)
{
	return rfuse_session_serve(s, -1);
}

int rfuse_session_serve(struct rfuse_session *s, int stop_fd)
{
	size_t cap = rfuse_session_bufsize(s);
	cleanup_free void *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	while (!rfuse_session_exited(s)) {
		struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
				      {.fd = stop_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents)
			return 0;
		ssize_t n = rfuse_session_read(s, buf, cap);
		if (n == -ENODEV)
			return 0;
		if (n < 0)
			return (int)n;
		if (n > 0)
			rfuse_session_process(s, buf, (size_t)n);
	}
	return 0;
}

int rfuse_backing_open(struct rfuse_session *s, int fd, struct rs_error *err)
{
	const struct rfuse_granted *g = rfuse_session_granted(s);
	if (!g || !g->passthrough)
		return rs_err(err, -EOPNOTSUPP, "fuse passthrough was not granted at INIT");
	struct rfuse_backing_map map = {.fd = fd};
	int id = ioctl(s->fd, RFUSE_DEV_IOC_BACKING_OPEN, &map);
	if (id < 0)
		return rs_err(err, -errno, "FUSE_DEV_IOC_BACKING_OPEN: %s", strerror(errno));
	if (id == 0)
		return rs_err(err, -EIO, "FUSE_DEV_IOC_BACKING_OPEN gave id 0");
	return id;
}

int rfuse_backing_close(struct rfuse_session *s, int32_t id, struct rs_error *err)
{
	uint32_t v = (uint32_t)id;
	if (ioctl(s->fd, RFUSE_DEV_IOC_BACKING_CLOSE, &v) < 0)
		return rs_err(err, -errno, "FUSE_DEV_IOC_BACKING_CLOSE %d: %s", id,
			      strerror(errno));
	return 0;
}
