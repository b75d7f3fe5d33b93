/* SPDX-License-Identifier: Apache-2.0 */
/* src/fuse: INIT negotiation, the request decoder's bounds, the dirent
 * builders, replies; and, as root, a real mount served by one thread. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuse/rfuse.h"

/* ---- INIT ------------------------------------------------------------ */

static size_t init_in(unsigned char *buf, uint32_t major, uint32_t minor, uint32_t flags,
		      uint32_t flags2, bool ext)
{
	struct fuse_init_in in = {.major = major,
				  .minor = minor,
				  .max_readahead = 128 << 10,
				  .flags = flags,
				  .flags2 = flags2};
	memcpy(buf, &in, sizeof(in));
	return ext ? sizeof(in) : 16;
}

static const struct rfuse_wishes all_wishes = {
    .async_read = true,
    .passthrough = true,
    .max_stack_depth = 1,
    .readdirplus = true,
    .parallel_dirops = true,
    .cache_symlinks = true,
};

#define KFLAGS                                                                                     \
	(FUSE_ASYNC_READ | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS |           \
	 FUSE_DO_READDIRPLUS | FUSE_INIT_EXT | FUSE_WRITEBACK_CACHE)

static void test_init_full(void **state)
{
	unsigned char buf[64];
	size_t n = init_in(buf, 7, 44, KFLAGS,
			   (uint32_t)((FUSE_PASSTHROUGH | FUSE_HAS_RESEND) >> 32), true);
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out_len, sizeof(out));
	assert_int_equal(out.major, 7);
	assert_int_equal(out.minor, RFUSE_MINOR_MAX);
	assert_int_equal(out.max_pages, 256);
	assert_int_equal(out.max_stack_depth, 1);
	assert_true(out.flags & FUSE_INIT_EXT);
	assert_true(out.flags2 & (FUSE_PASSTHROUGH >> 32));
	/* Offered but not asked for: not taken. */
	assert_false(out.flags & FUSE_WRITEBACK_CACHE);
	assert_true(g.passthrough && g.async_read && g.readdirplus && g.parallel_dirops);
	assert_true(g.cache_symlinks && g.readdir_cache && g.keep_cache && g.has_resend);
	assert_int_equal(g.max_pages, 256);
	assert_int_equal(g.max_readahead, 128 << 10);
	rfuse_log_granted(&g);
}

static void test_init_no_passthrough(void **state)
{
	unsigned char buf[64];
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	/* A kernel with flags2 but without the passthrough bit. */
	size_t n = init_in(buf, 7, 38, KFLAGS, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_false(g.passthrough);
	assert_false(g.has_resend);
	assert_int_equal(out.max_stack_depth, 0);
	assert_int_equal(out.flags2, 0);
	assert_false(out.flags & FUSE_INIT_EXT);
	assert_int_equal(out.minor, 38);
	assert_true(g.async_read);
	/* flags2 without FUSE_INIT_EXT in flags is not there. */
	n = init_in(buf, 7, 40, KFLAGS & ~FUSE_INIT_EXT, (uint32_t)(FUSE_PASSTHROUGH >> 32), true);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_false(g.passthrough);
	assert_int_equal(g.kernel_flags >> 32, 0);
	/* Passthrough offered, not wished. */
	struct rfuse_wishes w = all_wishes;
	w.passthrough = false;
	n = init_in(buf, 7, 40, KFLAGS, (uint32_t)(FUSE_PASSTHROUGH >> 32), true);
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	assert_false(g.passthrough);
	assert_int_equal(out.flags2, 0);
	/* A wished stack depth past the kernel's limit is clamped. */
	w.passthrough = true;
	w.max_stack_depth = 9;
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out.max_stack_depth, RFUSE_MAX_STACK_DEPTH);
}

static void test_init_old_minor(void **state)
{
	unsigned char buf[64];
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	/* Before 7.36 the kernel sends 16 bytes; before 7.23 it takes 24 back. */
	size_t n = init_in(buf, 7, 22, FUSE_ASYNC_READ | FUSE_PARALLEL_DIROPS, 0, false);
	assert_int_equal(n, 16);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out_len, 24);
	assert_int_equal(out.minor, 22);
	assert_int_equal(g.max_pages, 0);
	assert_false(g.readdir_cache);
	assert_true(g.async_read);
	assert_true(g.parallel_dirops);
	assert_false(g.readdirplus);
	n = init_in(buf, 7, 4, 0, 0, false);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out_len, 8);
	n = init_in(buf, 7, 31, KFLAGS, 0, false);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out_len, sizeof(out));
	assert_true(g.readdir_cache);
	assert_int_equal(g.max_pages, 256);
	assert_false(g.passthrough);
}

static void test_init_no_opendir(void **state)
{
	unsigned char buf[64];
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	struct rfuse_wishes w = all_wishes;
	w.no_opendir = true;
	/* Offered and wished: taken, and said so in the reply. */
	size_t n = init_in(buf, 7, 44, KFLAGS | FUSE_NO_OPENDIR_SUPPORT, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	assert_true(g.no_opendir);
	assert_true(out.flags & FUSE_NO_OPENDIR_SUPPORT);
	assert_true(g.readdir_cache && g.readdirplus);
	/* Not offered (a kernel before 5.1 would fail the ENOSYS): off. */
	n = init_in(buf, 7, 44, KFLAGS, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	assert_false(g.no_opendir);
	assert_false(out.flags & FUSE_NO_OPENDIR_SUPPORT);
	/* Offered, not wished: off. */
	n = init_in(buf, 7, 44, KFLAGS | FUSE_NO_OPENDIR_SUPPORT, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 0);
	assert_false(g.no_opendir);
	assert_false(out.flags & FUSE_NO_OPENDIR_SUPPORT);
	/* And it survives a takeover's saved line. */
	w.no_opendir = true;
	n = init_in(buf, 7, 44, KFLAGS | FUSE_NO_OPENDIR_SUPPORT, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	char line[256];
	struct rfuse_granted back;
	assert_true(rfuse_granted_format(&g, line, sizeof(line)) > 0);
	assert_int_equal(rfuse_granted_parse(line, &back, NULL), 0);
	assert_true(back.no_opendir);
}

static void test_init_versions(void **state)
{
	unsigned char buf[64];
	struct rfuse_init_out out;
	size_t out_len;
	struct rfuse_granted g;
	struct rs_error err = {0};
	size_t n = init_in(buf, 8, 0, 0, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, NULL), 1);
	assert_int_equal(out_len, 8);
	assert_int_equal(out.major, 7);
	n = init_in(buf, 6, 0, 0, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &all_wishes, &out, &out_len, &g, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "too old"));
	assert_int_equal(rfuse_negotiate(buf, 7, &all_wishes, &out, &out_len, &g, NULL), -EINVAL);
	n = init_in(buf, 7, 40, 0, 0, true);
	assert_int_equal(rfuse_negotiate(buf, 12, &all_wishes, &out, &out_len, &g, NULL), -EINVAL);
	/* A smaller wished request size gives fewer pages. */
	struct rfuse_wishes w = all_wishes;
	w.max_request = 128 << 10;
	n = init_in(buf, 7, 40, FUSE_MAX_PAGES, 0, true);
	assert_int_equal(rfuse_negotiate(buf, n, &w, &out, &out_len, &g, NULL), 0);
	assert_int_equal(out.max_pages, 32);
}

/* ---- the decoder ----------------------------------------------------- */

struct capture {
	int n;
	struct {
		struct fuse_out_header h;
		unsigned char body[512];
		size_t body_len;
	} r[64];
	int lookups, reads, forgets, getxattrs;
	char last_name[64];
	uint64_t forgot;
};

static int capture_send(void *ctx, const struct iovec *iov, int n)
{
	struct capture *c = ctx;
	assert_true(c->n < 64);
	unsigned char all[1024];
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		assert_true(len + iov[i].iov_len <= sizeof(all));
		memcpy(all + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	assert_true(len >= sizeof(struct fuse_out_header));
	memcpy(&c->r[c->n].h, all, sizeof(c->r[c->n].h));
	assert_int_equal(c->r[c->n].h.len, len);
	c->r[c->n].body_len = len - sizeof(struct fuse_out_header);
	memcpy(c->r[c->n].body, all + sizeof(struct fuse_out_header), c->r[c->n].body_len);
	c->n++;
	return 0;
}

static void cb_lookup(struct rfuse_req *r, uint64_t parent, const char *name)
{
	struct capture *c = rfuse_session_userdata(r->s);
	c->lookups++;
	snprintf(c->last_name, sizeof(c->last_name), "%s", name);
	rfuse_reply_err(r, ENOENT);
}

static void cb_read(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off, uint32_t size)
{
	struct capture *c = rfuse_session_userdata(r->s);
	c->reads++;
	struct iovec v[2] = {{.iov_base = "ab", .iov_len = 2}, {.iov_base = "cd", .iov_len = 2}};
	rfuse_reply_data(r, v, 2);
}

static void cb_forget(void *ud, uint64_t nodeid, uint64_t nlookup)
{
	struct capture *c = ud;
	c->forgets++;
	c->forgot += nlookup;
}

static void cb_getxattr(struct rfuse_req *r, uint64_t nodeid, const char *name, uint32_t size)
{
	struct capture *c = rfuse_session_userdata(r->s);
	c->getxattrs++;
	snprintf(c->last_name, sizeof(c->last_name), "%s", name);
	rfuse_reply_xattr_size(r, 7);
}

static const struct rfuse_ops test_ops = {
    .lookup = cb_lookup,
    .read = cb_read,
    .forget = cb_forget,
    .getxattr = cb_getxattr,
};

static void cb_create(struct rfuse_req *r, uint64_t parent, const char *name, uint32_t flags,
		      uint32_t mode)
{
	struct capture *c = rfuse_session_userdata(r->s);
	c->lookups++;
	snprintf(c->last_name, sizeof(c->last_name), "%s:%o:%o", name, flags, mode);
	rfuse_reply_err(r, ENOENT);
}

static void cb_rmdir(struct rfuse_req *r, uint64_t parent, const char *name)
{
	struct capture *c = rfuse_session_userdata(r->s);
	c->lookups++;
	snprintf(c->last_name, sizeof(c->last_name), "rmdir:%s", name);
	rfuse_reply_err(r, ENOENT);
}

/* The two writes a writable mount's ops may take. */
static const struct rfuse_ops write_ops = {
    .lookup = cb_lookup,
    .create = cb_create,
    .rmdir = cb_rmdir,
};

/* A request: header + body, with len as given (or the true length when 0). */
static size_t req(unsigned char *buf, uint32_t opcode, uint64_t unique, const void *body,
		  size_t body_len, uint32_t len)
{
	struct fuse_in_header h = {.opcode = opcode, .unique = unique, .nodeid = 1};
	h.len = len ? len : (uint32_t)(sizeof(h) + body_len);
	memcpy(buf, &h, sizeof(h));
	if (body_len)
		memcpy(buf + sizeof(h), body, body_len);
	return sizeof(h) + body_len;
}

static struct rfuse_session *session_up_with(struct capture *c, const struct rfuse_ops *ops)
{
	struct rfuse_session *s;
	memset(c, 0, sizeof(*c));
	assert_int_equal(rfuse_session_new(-1, ops, c, &all_wishes, &s, NULL), 0);
	rfuse_session_set_send(s, capture_send, c);
	unsigned char buf[256], in[64];
	size_t n = init_in(in, 7, 44, KFLAGS, 0, true);
	size_t len = req(buf, FUSE_INIT, 1, in, n, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->r[0].h.error, 0);
	assert_int_equal(c->r[0].body_len, sizeof(struct rfuse_init_out));
	assert_non_null(rfuse_session_granted(s));
	c->n = 0;
	return s;
}

static struct rfuse_session *session_up(struct capture *c)
{
	return session_up_with(c, &test_ops);
}

static int last_error(struct capture *c)
{
	assert_true(c->n > 0);
	return c->r[c->n - 1].h.error;
}

static void test_decoder_before_init(void **state)
{
	struct capture c = {0};
	struct rfuse_session *s;
	assert_int_equal(rfuse_session_new(-1, &test_ops, &c, NULL, &s, NULL), 0);
	rfuse_session_set_send(s, capture_send, &c);
	unsigned char buf[256];
	size_t len = req(buf, FUSE_LOOKUP, 5, "a", 2, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EIO);
	assert_int_equal(c.lookups, 0);
	assert_null(rfuse_session_granted(s));
	assert_int_equal(rfuse_notify_inval_inode(s, 1, 0, 0), -ENOTCONN);
	/* A kernel too old for our request layouts is refused. */
	unsigned char in[64];
	size_t n = init_in(in, 7, 11, 0, 0, false);
	len = req(buf, FUSE_INIT, 6, in, n, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EPROTO);
	assert_null(rfuse_session_granted(s));
	rfuse_session_free(s);
}

static void test_decoder_bounds(void **state)
{
	struct capture c;
	struct rfuse_session *s = session_up(&c);
	unsigned char buf[512];

	/* Short header: too short for a unique id, nothing to answer. */
	memset(buf, 0, sizeof(buf));
	rfuse_session_process(s, buf, 10);
	assert_int_equal(c.n, 0);
	/* Short header with a unique id: EIO. */
	rfuse_session_process(s, buf, 20);
	assert_int_equal(last_error(&c), -EIO);

	/* len says more (or less) than what was read. */
	size_t len = req(buf, FUSE_LOOKUP, 7, "a", 2, 100);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EIO);
	assert_int_equal(c.r[c.n - 1].h.unique, 7);
	len = req(buf, FUSE_LOOKUP, 7, "a", 2, 41);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EIO);

	/* READ with a short fixed part never reaches the callback. */
	struct fuse_read_in rd = {.size = 4};
	len = req(buf, FUSE_READ, 8, &rd, sizeof(rd) - 1, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	assert_int_equal(c.reads, 0);
	len = req(buf, FUSE_READ, 9, &rd, sizeof(rd), 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), 0);
	assert_int_equal(c.r[c.n - 1].body_len, 4);
	assert_memory_equal(c.r[c.n - 1].body, "abcd", 4);

	/* Names: no NUL, empty, missing; then a good one. */
	len = req(buf, FUSE_LOOKUP, 10, "abc", 3, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	len = req(buf, FUSE_LOOKUP, 11, "", 1, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	len = req(buf, FUSE_LOOKUP, 12, NULL, 0, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	assert_int_equal(c.lookups, 0);
	len = req(buf, FUSE_LOOKUP, 13, "name\0junk", 9, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -ENOENT);
	assert_int_equal(c.lookups, 1);
	assert_string_equal(c.last_name, "name");

	/* GETXATTR: the name after the fixed part. */
	unsigned char gx[sizeof(struct fuse_getxattr_in) + 8] = {0};
	memcpy(gx + sizeof(struct fuse_getxattr_in), "user.x", 7);
	len = req(buf, FUSE_GETXATTR, 14, gx, sizeof(struct fuse_getxattr_in) + 6, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	len = req(buf, FUSE_GETXATTR, 15, gx, sizeof(gx), 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), 0);
	assert_int_equal(c.getxattrs, 1);
	assert_string_equal(c.last_name, "user.x");

	/* Callbacks not given: ENOSYS; defaults for open and release. */
	len = req(buf, FUSE_STATFS, 16, NULL, 0, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -ENOSYS);
	struct fuse_open_in op = {0};
	len = req(buf, FUSE_OPEN, 17, &op, sizeof(op), 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), 0);
	assert_int_equal(c.r[c.n - 1].body_len, sizeof(struct rfuse_open_out));
	rfuse_session_free(s);
}

static void test_decoder_opcodes(void **state)
{
	struct capture c;
	struct rfuse_session *s = session_up(&c);
	unsigned char buf[512], body[128] = {0};
	static const uint32_t unknown[] = {0, 7, 19, RFUSE_OP_STATX, 53, 99, 4096, 0xffffffffu};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		size_t len = req(buf, unknown[i], 100 + i, body, sizeof(body), 0);
		rfuse_session_process(s, buf, len);
		assert_int_equal(last_error(&c), -ENOSYS);
	}
	static const uint32_t writes[] = {
	    FUSE_SETATTR,   FUSE_SYMLINK,  FUSE_MKNOD,   FUSE_MKDIR,
	    FUSE_UNLINK,    FUSE_RMDIR,    FUSE_RENAME,  FUSE_LINK,
	    FUSE_WRITE,     FUSE_SETXATTR, FUSE_CREATE,  FUSE_REMOVEXATTR,
	    FUSE_FALLOCATE, FUSE_RENAME2,  FUSE_TMPFILE, FUSE_COPY_FILE_RANGE};
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		/* Refused whatever the body: even an empty one. */
		size_t len = req(buf, writes[i], 200 + i, body, i % 2 ? sizeof(body) : 0, 0);
		rfuse_session_process(s, buf, len);
		assert_int_equal(last_error(&c), -EROFS);
	}

	/* FORGET and BATCH_FORGET: no replies, even when malformed. */
	int before = c.n;
	struct fuse_forget_in fg = {.nlookup = 3};
	size_t len = req(buf, FUSE_FORGET, 300, &fg, sizeof(fg), 0);
	rfuse_session_process(s, buf, len);
	len = req(buf, FUSE_FORGET, 301, &fg, 4, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(c.forgets, 1);
	unsigned char bf[sizeof(struct fuse_batch_forget_in) + 2 * sizeof(struct fuse_forget_one)];
	struct fuse_batch_forget_in bin = {.count = 1000};
	struct fuse_forget_one one[2] = {{.nodeid = 2, .nlookup = 5}, {.nodeid = 3, .nlookup = 7}};
	memcpy(bf, &bin, sizeof(bin));
	memcpy(bf + sizeof(bin), one, sizeof(one));
	/* A count far past the bytes sent, and a torn last record. */
	len = req(buf, FUSE_BATCH_FORGET, 302, bf, sizeof(bf) - 1, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(c.forgets, 2);
	assert_int_equal(c.forgot, 3 + 5);
	struct fuse_interrupt_in it = {.unique = 9};
	len = req(buf, FUSE_INTERRUPT, 303, &it, sizeof(it), 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(c.n, before);

	/* A second INIT is an error; DESTROY ends the session. */
	unsigned char in[64];
	size_t n = init_in(in, 7, 44, KFLAGS, 0, true);
	len = req(buf, FUSE_INIT, 304, in, n, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EIO);
	len = req(buf, FUSE_DESTROY, 305, NULL, 0, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), 0);
	assert_true(rfuse_session_exited(s));
	len = req(buf, FUSE_LOOKUP, 306, "a", 2, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -ENODEV);
	rfuse_session_free(s);
}

static int opendir_calls;

static void cb_opendir(struct rfuse_req *r, uint64_t nodeid, uint32_t flags)
{
	opendir_calls++;
	rfuse_reply_open(r, 0, FOPEN_CACHE_DIR, 0);
}

/* OPENDIR: the callback's answer, unless no_opendir was granted: then
 * ENOSYS from the session, the callback never called. */
/* CREATE and RMDIR reach ops that take them, after the same checks as any
 * request; every other write is still EROFS. */
static void test_decoder_writes_taken(void **state)
{
	struct capture c;
	struct rfuse_session *s = session_up_with(&c, &write_ops);
	unsigned char buf[512], body[64] = {0};
	struct fuse_create_in ci = {.flags = 0101, .mode = 0644};
	memcpy(body, &ci, sizeof(ci));
	memcpy(body + sizeof(ci), "use", 4);
	size_t len = req(buf, FUSE_CREATE, 10, body, sizeof(ci) + 4, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -ENOENT);
	assert_string_equal(c.last_name, "use:101:644");
	/* Short of the fixed part, or no name: refused before the op. */
	len = req(buf, FUSE_CREATE, 11, body, sizeof(ci) - 1, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	len = req(buf, FUSE_CREATE, 12, body, sizeof(ci), 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	len = req(buf, FUSE_RMDIR, 13, "sha256:x", 9, 0);
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -ENOENT);
	assert_string_equal(c.last_name, "rmdir:sha256:x");
	len = req(buf, FUSE_RMDIR, 14, "abc", 3, 0); /* no NUL */
	rfuse_session_process(s, buf, len);
	assert_int_equal(last_error(&c), -EINVAL);
	assert_int_equal(c.lookups, 2);
	static const uint32_t others[] = {FUSE_MKDIR, FUSE_UNLINK, FUSE_MKNOD, FUSE_WRITE};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		len = req(buf, others[i], 20 + i, body, sizeof(body), 0);
		rfuse_session_process(s, buf, len);
		assert_int_equal(last_error(&c), -EROFS);
	}
	rfuse_session_free(s);
}

static void test_decoder_no_opendir(void **state)
{
	static const struct rfuse_ops ops = {.opendir = cb_opendir};
	for (int granted = 0; granted < 2; granted++) {
		struct capture c = {0};
		struct rfuse_session *s;
		struct rfuse_wishes w = all_wishes;
		w.no_opendir = true;
		assert_int_equal(rfuse_session_new(-1, &ops, &c, &w, &s, NULL), 0);
		rfuse_session_set_send(s, capture_send, &c);
		unsigned char buf[256], in[64];
		uint32_t kflags = KFLAGS | (granted ? FUSE_NO_OPENDIR_SUPPORT : 0);
		size_t n = init_in(in, 7, 44, kflags, 0, true);
		rfuse_session_process(s, buf, req(buf, FUSE_INIT, 1, in, n, 0));
		assert_int_equal(last_error(&c), 0);
		assert_int_equal(rfuse_session_granted(s)->no_opendir, granted);
		opendir_calls = 0;
		struct fuse_open_in op = {.flags = O_RDONLY | O_DIRECTORY};
		for (int i = 0; i < 2; i++) {
			rfuse_session_process(s, buf,
					      req(buf, FUSE_OPENDIR, 2 + i, &op, sizeof(op), 0));
			assert_int_equal(last_error(&c), granted ? -ENOSYS : 0);
		}
		assert_int_equal(opendir_calls, granted ? 0 : 2);
		/* A short OPENDIR is still refused by the table first. */
		rfuse_session_process(s, buf, req(buf, FUSE_OPENDIR, 9, &op, sizeof(op) - 1, 0));
		assert_int_equal(last_error(&c), -EINVAL);
		rfuse_session_free(s);
	}
}

/* ---- replies and dirents -------------------------------------------- */

static void test_dirbuf(void **state)
{
	unsigned char mem[200];
	memset(mem, 0xaa, sizeof(mem));
	struct rfuse_dirbuf d;
	rfuse_dirbuf_init(&d, mem, sizeof(mem));
	assert_true(rfuse_dirbuf_add(&d, "a", 1, 5, S_IFREG | 0644, 1));
	assert_int_equal(d.len, 32); /* 24 + 1, up to 8 */
	assert_true(rfuse_dirbuf_add(&d, "12345678", 8, 6, S_IFDIR | 0755, 2));
	assert_int_equal(d.len, 64);
	struct fuse_dirent de;
	memcpy(&de, mem, sizeof(de));
	assert_int_equal(de.ino, 5);
	assert_int_equal(de.off, 1);
	assert_int_equal(de.namelen, 1);
	assert_int_equal(de.type, DT_REG);
	assert_int_equal(mem[FUSE_NAME_OFFSET], 'a');
	for (size_t i = FUSE_NAME_OFFSET + 1; i < 32; i++)
		assert_int_equal(mem[i], 0);
	memcpy(&de, mem + 32, sizeof(de));
	assert_int_equal(de.type, DT_DIR);
	assert_int_equal(de.namelen, 8);
	/* Empty names and names that do not fit are refused, nothing written. */
	assert_false(rfuse_dirbuf_add(&d, "", 0, 7, S_IFREG, 3));
	char big[200];
	memset(big, 'x', sizeof(big));
	assert_false(rfuse_dirbuf_add(&d, big, 120, 7, S_IFREG, 3));
	assert_int_equal(d.len, 64);
	assert_int_equal(mem[64], 0xaa);

	struct fuse_entry_out e = {.nodeid = 9, .attr = {.ino = 9, .mode = S_IFLNK | 0777}};
	rfuse_dirbuf_init(&d, mem, sizeof(mem));
	assert_true(rfuse_dirbuf_add_plus(&d, "link", 4, &e, 1));
	assert_int_equal(d.len, FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + 4));
	struct fuse_direntplus dp;
	memcpy(&dp, mem, sizeof(dp));
	assert_int_equal(dp.entry_out.nodeid, 9);
	assert_int_equal(dp.dirent.ino, 9);
	assert_int_equal(dp.dirent.type, DT_LNK);
	assert_memory_equal(mem + FUSE_NAME_OFFSET_DIRENTPLUS, "link", 4);
	assert_false(rfuse_dirbuf_add_plus(&d, big, 100, &e, 2));
}

static void test_replies(void **state)
{
	struct capture c;
	struct rfuse_session *s = session_up(&c);
	struct rfuse_req r = {.s = s, .unique = 42};
	assert_int_equal(rfuse_reply_open(&r, 3, FOPEN_PASSTHROUGH | FOPEN_KEEP_CACHE, 11), 0);
	struct rfuse_open_out o;
	memcpy(&o, c.r[0].body, sizeof(o));
	assert_int_equal(o.fh, 3);
	assert_int_equal(o.backing_id, 11);
	assert_int_equal(c.r[0].h.unique, 42);
	assert_int_equal(rfuse_reply_open(&r, 3, FOPEN_KEEP_CACHE, 11), 0);
	memcpy(&o, c.r[1].body, sizeof(o));
	assert_int_equal(o.backing_id, 0);
	struct statvfs sv = {.f_bsize = 4096, .f_blocks = 10, .f_namemax = 255};
	assert_int_equal(rfuse_reply_statfs(&r, &sv), 0);
	struct fuse_statfs_out so;
	memcpy(&so, c.r[2].body, sizeof(so));
	assert_int_equal(so.st.blocks, 10);
	assert_int_equal(so.st.namelen, 255);
	/* Errors out of range become EIO. */
	assert_int_equal(rfuse_reply_err(&r, -5), 0);
	assert_int_equal(c.r[3].h.error, -EIO);
	assert_int_equal(rfuse_notify_inval_entry(s, 1, "abc", 3), 0);
	assert_int_equal(c.r[4].h.unique, 0);
	assert_int_equal(c.r[4].h.error, FUSE_NOTIFY_INVAL_ENTRY);
	assert_int_equal(c.r[4].body_len, sizeof(struct fuse_notify_inval_entry_out) + 4);
	assert_int_equal(rfuse_notify_inval_inode(s, 2, 0, -1), 0);
	assert_int_equal(c.r[5].h.error, FUSE_NOTIFY_INVAL_INODE);
	assert_int_equal(rfuse_notify_inval_entry(s, 1, "", 0), -EINVAL);
	struct rs_error err = {0};
	assert_int_equal(rfuse_mount("/nonexistent-dir", "a,b", "x", &err), -EINVAL);
	rfuse_session_free(s);
}

/* ---- a real mount, as root ------------------------------------------ */

static const char hello_data[] = "hello world\n";

struct tnode {
	const char *name;
	uint64_t ino;
	mode_t mode;
};
static const struct tnode tree[] = {
    {".", 1, S_IFDIR | 0755},    {"..", 1, S_IFDIR | 0755}, {"hello", 2, S_IFREG | 0644},
    {"link", 3, S_IFLNK | 0777}, {"pt", 4, S_IFREG | 0644},
};

/* "pt" is served by passthrough from this file when the kernel grants it. */
static const char pt_data[] = "read by the kernel from the backing file\n";
static int pt_fd = -1;
static _Atomic int pt_backing_id, pt_reads, pt_opens;

static const struct tnode *tnode_of(uint64_t ino)
{
	for (size_t i = 1; i < sizeof(tree) / sizeof(tree[0]); i++)
		if (tree[i].ino == ino)
			return &tree[i];
	return NULL;
}

static void tattr(const struct tnode *n, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = n->ino;
	a->mode = n->mode;
	a->nlink = S_ISDIR(n->mode) ? 2 : 1;
	a->size = n->ino == 2   ? sizeof(hello_data) - 1
		  : n->ino == 3 ? 5
		  : n->ino == 4 ? sizeof(pt_data) - 1
				: 0;
	a->mtime = 1600000000;
	a->blksize = 4096;
}

static void m_lookup(struct rfuse_req *r, uint64_t parent, const char *name)
{
	for (size_t i = 2; i < sizeof(tree) / sizeof(tree[0]); i++) {
		if (parent == 1 && strcmp(name, tree[i].name) == 0) {
			struct fuse_entry_out e = {
			    .nodeid = tree[i].ino, .entry_valid = 60, .attr_valid = 60};
			tattr(&tree[i], &e.attr);
			rfuse_reply_entry(r, &e);
			return;
		}
	}
	rfuse_reply_err(r, ENOENT);
}

static void m_getattr(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, bool has_fh)
{
	const struct tnode *n = tnode_of(nodeid);
	if (!n) {
		rfuse_reply_err(r, ENOENT);
		return;
	}
	struct fuse_attr_out a = {.attr_valid = 60};
	tattr(n, &a.attr);
	rfuse_reply_attr(r, &a);
}

static void m_readlink(struct rfuse_req *r, uint64_t nodeid)
{
	if (nodeid == 3)
		rfuse_reply_buf(r, "hello", 5);
	else
		rfuse_reply_err(r, EINVAL);
}

static void m_open(struct rfuse_req *r, uint64_t nodeid, uint32_t flags)
{
	const struct rfuse_granted *g = rfuse_session_granted(r->s);
	if (nodeid == 4 && g->passthrough) {
		pt_opens++;
		int id = pt_backing_id;
		if (id <= 0) {
			id = rfuse_backing_open(r->s, pt_fd, NULL);
			if (id < 0) {
				rfuse_reply_err(r, -id);
				return;
			}
			pt_backing_id = id;
		}
		rfuse_reply_open(r, 0, FOPEN_PASSTHROUGH, id);
		return;
	}
	rfuse_reply_open(r, 0, FOPEN_KEEP_CACHE, 0);
}

/* With drop_reads set, a READ of "hello" is taken and never answered, as by
 * a server that dies holding it; its unique id lands in dropped_unique. */
static _Atomic int drop_reads;
static _Atomic uint64_t dropped_unique, first_hello_unique;

static void m_read(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off, uint32_t size)
{
	size_t len = sizeof(hello_data) - 1;
	if (nodeid == 4)
		pt_reads++;
	if (nodeid == 2 && drop_reads) {
		dropped_unique = r->unique;
		return;
	}
	uint64_t none = 0;
	if (nodeid == 2)
		atomic_compare_exchange_strong(&first_hello_unique, &none, r->unique);
	if (nodeid != 2 || off >= len) {
		rfuse_reply_buf(r, NULL, 0);
		return;
	}
	size_t n = len - off < size ? len - off : size;
	struct iovec v[2] = {{.iov_base = (char *)hello_data + off, .iov_len = n / 2},
			     {.iov_base = (char *)hello_data + off + n / 2, .iov_len = n - n / 2}};
	rfuse_reply_data(r, v, 2);
}

static void m_readdir(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
		      uint32_t size)
{
	char mem[4096];
	struct rfuse_dirbuf d;
	rfuse_dirbuf_init(&d, mem, size < sizeof(mem) ? size : sizeof(mem));
	for (uint64_t i = off; i < sizeof(tree) / sizeof(tree[0]); i++)
		if (!rfuse_dirbuf_add(&d, tree[i].name, strlen(tree[i].name), tree[i].ino,
				      tree[i].mode, i + 1))
			break;
	rfuse_reply_buf(r, d.buf, d.len);
}

static void m_getxattr(struct rfuse_req *r, uint64_t nodeid, const char *name, uint32_t size)
{
	if (nodeid != 2 || strcmp(name, "user.k") != 0)
		rfuse_reply_err(r, ENODATA);
	else if (size == 0)
		rfuse_reply_xattr_size(r, 1);
	else
		rfuse_reply_buf(r, "v", 1);
}

static void m_listxattr(struct rfuse_req *r, uint64_t nodeid, uint32_t size)
{
	static const char names[] = "user.k"; /* with its NUL: 7 bytes */
	if (nodeid != 2)
		rfuse_reply_xattr_size(r, 0);
	else if (size == 0)
		rfuse_reply_xattr_size(r, sizeof(names));
	else if (size < sizeof(names))
		rfuse_reply_err(r, ERANGE);
	else
		rfuse_reply_buf(r, names, sizeof(names));
}

static void m_statfs(struct rfuse_req *r, uint64_t nodeid)
{
	struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255, .f_files = 3};
	rfuse_reply_statfs(r, &sv);
}

static const struct rfuse_ops mount_ops = {
    .lookup = m_lookup,
    .getattr = m_getattr,
    .readlink = m_readlink,
    .open = m_open,
    .read = m_read,
    .readdir = m_readdir,
    .getxattr = m_getxattr,
    .listxattr = m_listxattr,
    .statfs = m_statfs,
};

static void *serve(void *arg)
{
	return (void *)(intptr_t)rfuse_session_loop(arg);
}

/* What the mounted tree showed, checked after unmounting, so that a failed
 * check never leaves a mount behind. */
struct seen {
	int root_stat, file_stat, read_n, link_n, xattr_n, list_n, entries, erofs, statfs_rc;
	mode_t root_mode;
	off_t file_size;
	char data[64], link[16], xattr[8], list[16], pt[128];
	int pt_n, ovl_rc, ovl_n, ovl_pt_n;
	char ovl[64], ovl_pt[128];
	bool saw_hello, saw_link;
};

static void look(const char *dir, struct seen *v)
{
	char p[512], q[512];
	struct stat st;
	v->root_stat = stat(dir, &st);
	v->root_mode = st.st_mode;
	snprintf(p, sizeof(p), "%s/hello", dir);
	v->file_stat = stat(p, &st);
	v->file_size = st.st_size;
	int fd = open(p, O_RDONLY);
	v->read_n = fd >= 0 ? (int)read(fd, v->data, sizeof(v->data) - 1) : -errno;
	if (fd >= 0)
		close(fd);
	fd = open(p, O_WRONLY);
	v->erofs = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	v->xattr_n = (int)getxattr(p, "user.k", v->xattr, sizeof(v->xattr) - 1);
	v->list_n = (int)listxattr(p, v->list, sizeof(v->list));
	snprintf(q, sizeof(q), "%s/pt", dir);
	fd = open(q, O_RDONLY);
	v->pt_n = fd >= 0 ? (int)read(fd, v->pt, sizeof(v->pt) - 1) : -errno;
	if (fd >= 0)
		close(fd);
	snprintf(q, sizeof(q), "%s/link", dir);
	v->link_n = (int)readlink(q, v->link, sizeof(v->link) - 1);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		v->entries++;
		v->saw_hello |= strcmp(de->d_name, "hello") == 0 && de->d_type == DT_REG;
		v->saw_link |= strcmp(de->d_name, "link") == 0 && de->d_type == DT_LNK;
	}
	if (d)
		closedir(d);
	struct statvfs sv;
	v->statfs_rc = statvfs(dir, &sv);
}

static void test_mount(void **state)
{
	if (getuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0)
		skip();
	char dir[] = "/tmp/rfuse-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct rs_error err = {0};
	int fd = rfuse_mount(dir, "rfuse-test", "rfusetest", &err);
	if (fd == -EPERM || fd == -ENODEV) {
		rmdir(dir);
		skip();
	}
	if (fd < 0)
		rmdir(dir);
	assert_true(fd >= 0);
	char backing[] = "/tmp/rfuse-backing-XXXXXX";
	pt_fd = mkstemp(backing);
	assert_true(pt_fd >= 0);
	unlink(backing);
	assert_int_equal(write(pt_fd, pt_data, sizeof(pt_data) - 1), sizeof(pt_data) - 1);
	/* Depth 1: an overlay can still stack on the mount; the backing file
	 * must then sit on a plain filesystem. */
	static const struct rfuse_wishes w = {.async_read = true,
					      .parallel_dirops = true,
					      .cache_symlinks = true,
					      .passthrough = true,
					      .max_stack_depth = 1};
	struct rfuse_session *s;
	assert_int_equal(rfuse_session_new(fd, &mount_ops, NULL, &w, &s, NULL), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, serve, s), 0);
	struct seen v = {0};
	look(dir, &v);
	/* An overlay on the mount, as containers use it: it must still stack
	 * (passthrough's depth 1 leaves room) and read through. */
	char low[] = "/tmp/rfuse-low-XXXXXX", odir[] = "/tmp/rfuse-ovl-XXXXXX";
	assert_non_null(mkdtemp(low));
	assert_non_null(mkdtemp(odir));
	char oopts[256], p[300];
	snprintf(oopts, sizeof(oopts), "lowerdir=%s:%s", dir, low);
	v.ovl_rc = mount("overlay", odir, "overlay", MS_RDONLY, oopts) < 0 ? errno : 0;
	if (v.ovl_rc == 0) {
		snprintf(p, sizeof(p), "%s/hello", odir);
		int ofd = open(p, O_RDONLY);
		v.ovl_n = ofd >= 0 ? (int)read(ofd, v.ovl, sizeof(v.ovl) - 1) : -errno;
		if (ofd >= 0)
			close(ofd);
		snprintf(p, sizeof(p), "%s/pt", odir);
		ofd = open(p, O_RDONLY);
		v.ovl_pt_n = ofd >= 0 ? (int)read(ofd, v.ovl_pt, sizeof(v.ovl_pt) - 1) : -errno;
		if (ofd >= 0)
			close(ofd);
		umount2(odir, MNT_DETACH);
	}
	rmdir(odir);
	rmdir(low);
	int um = rfuse_unmount(dir, &err);
	void *rc = NULL;
	pthread_join(t, &rc);
	const struct rfuse_granted *g = rfuse_session_granted(s);
	bool inited = g != NULL;
	uint32_t max_pages = g ? g->max_pages : 0;
	bool passthrough = g && g->passthrough;
	if (pt_backing_id > 0)
		rfuse_backing_close(s, pt_backing_id, NULL);
	close(pt_fd);
	rfuse_session_free(s);
	close(fd);
	rmdir(dir);

	assert_int_equal(um, 0);
	assert_int_equal((intptr_t)rc, 0);
	assert_true(inited);
	assert_int_equal(max_pages, 256);
	assert_int_equal(v.root_stat, 0);
	assert_true(S_ISDIR(v.root_mode));
	assert_int_equal(v.file_stat, 0);
	assert_int_equal(v.file_size, sizeof(hello_data) - 1);
	assert_int_equal(v.read_n, sizeof(hello_data) - 1);
	assert_string_equal(v.data, hello_data);
	assert_int_equal(v.erofs, EROFS);
	assert_int_equal(v.xattr_n, 1);
	assert_string_equal(v.xattr, "v");
	assert_int_equal(v.list_n, 7);
	assert_string_equal(v.list, "user.k");
	assert_int_equal(v.link_n, 5);
	assert_string_equal(v.link, "hello");
	assert_int_equal(v.entries, 5);
	assert_true(v.saw_hello && v.saw_link);
	assert_int_equal(v.statfs_rc, 0);
	if (v.ovl_rc == 0) {
		assert_int_equal(v.ovl_n, sizeof(hello_data) - 1);
		assert_string_equal(v.ovl, hello_data);
	}
	if (passthrough) {
		/* Opened through the daemon, read with no READ reaching it. */
		assert_int_equal(v.pt_n, sizeof(pt_data) - 1);
		assert_string_equal(v.pt, pt_data);
		assert_int_equal(v.ovl_rc, 0);
		assert_int_equal(v.ovl_pt_n, sizeof(pt_data) - 1);
		assert_string_equal(v.ovl_pt, pt_data);
		assert_int_equal(pt_opens, 2);
		assert_int_equal(pt_reads, 0);
		assert_true(pt_backing_id > 0);
	} else {
		print_message("kernel did not grant passthrough: not checked\n");
	}
}

/* ---- no_opendir on a real mount: what reaches the server ------------ */

struct counted {
	struct rfuse_session *s;
	_Atomic int opendirs, releasedirs, readdirs;
};

static void *serve_counting(void *arg)
{
	struct counted *c = arg;
	size_t cap = rfuse_session_bufsize(c->s);
	void *buf = malloc(cap);
	while (buf && !rfuse_session_exited(c->s)) {
		ssize_t n = rfuse_session_read(c->s, buf, cap);
		if (n < 0)
			break;
		if ((size_t)n >= sizeof(struct fuse_in_header)) {
			struct fuse_in_header h;
			memcpy(&h, buf, sizeof(h));
			c->opendirs += h.opcode == FUSE_OPENDIR;
			c->releasedirs += h.opcode == FUSE_RELEASEDIR;
			c->readdirs += h.opcode == FUSE_READDIR;
		}
		if (n > 0)
			rfuse_session_process(c->s, buf, (size_t)n);
	}
	free(buf);
	return NULL;
}

/* One listing of dir: the names joined, and the rest of it again after a
 * seekdir to where telldir was after the second entry. */
struct listing {
	char names[128], rest[128], again[128];
	int n;
};

static void add_name(char *buf, size_t cap, const char *name)
{
	size_t len = strlen(buf);
	snprintf(buf + len, cap - len, "%s/", name);
}

static void list_dir(const char *dir, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	DIR *d = opendir(dir);
	if (!d) {
		l->n = -errno;
		return;
	}
	struct dirent *de;
	long pos = -1;
	while ((de = readdir(d))) {
		l->n++;
		add_name(l->names, sizeof(l->names), de->d_name);
		if (l->n == 2)
			pos = telldir(d);
		else if (l->n > 2)
			add_name(l->rest, sizeof(l->rest), de->d_name);
	}
	if (pos >= 0) {
		seekdir(d, pos);
		while ((de = readdir(d)))
			add_name(l->again, sizeof(l->again), de->d_name);
	}
	closedir(d);
}

/* With no_opendir the kernel sends one OPENDIR (answered ENOSYS), never a
 * RELEASEDIR, and lists the directory from its cache after the first
 * listing; the listings, seekdir and telldir are the same as without. */
static void test_mount_no_opendir(void **state)
{
	if (getuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0)
		skip();
	char dir[] = "/tmp/rfuse-noopendir-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct rs_error err = {0};
	int fd = rfuse_mount(dir, "rfuse-test", "rfusetest", &err);
	if (fd == -EPERM || fd == -ENODEV) {
		rmdir(dir);
		skip();
	}
	if (fd < 0)
		rmdir(dir);
	assert_true(fd >= 0);
	static const struct rfuse_wishes w = {.async_read = true, .no_opendir = true};
	struct counted c = {0};
	assert_int_equal(rfuse_session_new(fd, &mount_ops, NULL, &w, &c.s, NULL), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, serve_counting, &c), 0);
	struct listing l[3];
	int readdirs_after_first = -1;
	for (int i = 0; i < 3; i++) {
		list_dir(dir, &l[i]);
		if (i == 0)
			readdirs_after_first = c.readdirs;
	}
	int opendirs = c.opendirs, releasedirs = c.releasedirs, readdirs = c.readdirs;
	int um = rfuse_unmount(dir, &err);
	pthread_join(t, NULL);
	const struct rfuse_granted *g = rfuse_session_granted(c.s);
	bool granted = g && g->no_opendir;
	rfuse_session_free(c.s);
	close(fd);
	rmdir(dir);

	assert_int_equal(um, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(l[i].n, 5);
		assert_string_equal(l[i].names, "./../hello/link/pt/");
		assert_string_equal(l[i].rest, "hello/link/pt/");
		assert_string_equal(l[i].again, l[i].rest);
	}
	if (!granted) {
		print_message("kernel did not offer FUSE_NO_OPENDIR_SUPPORT: not checked\n");
		assert_int_equal(opendirs, 3);
		return;
	}
	assert_int_equal(opendirs, 1);
	assert_int_equal(releasedirs, 0);
	assert_true(readdirs_after_first > 0);
	assert_int_equal(readdirs, readdirs_after_first);
}

/* ---- takeover: a second session serves the first one's connection ---- */

static void *serve_until_drop(void *arg)
{
	struct rfuse_session *s = arg;
	size_t cap = rfuse_session_bufsize(s);
	void *buf = malloc(cap);
	while (buf && !dropped_unique && !rfuse_session_exited(s)) {
		ssize_t n = rfuse_session_read(s, buf, cap);
		if (n < 0)
			break;
		if (n > 0)
			rfuse_session_process(s, buf, (size_t)n);
	}
	free(buf);
	return NULL;
}

struct reader {
	char path[300];
	_Atomic int done;
	int n;
	char data[64];
};

static void *read_file(void *arg)
{
	struct reader *rd = arg;
	int fd = open(rd->path, O_RDONLY);
	rd->n = fd >= 0 ? (int)read(fd, rd->data, sizeof(rd->data) - 1) : -errno;
	if (fd >= 0)
		close(fd);
	rd->done = 1;
	return NULL;
}

static void test_takeover(void **state)
{
	if (getuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0)
		skip();
	char dir[] = "/tmp/rfuse-takeover-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct rs_error err = {0};
	int fd = rfuse_mount(dir, "rfuse-test", "rfusetest", &err);
	if (fd == -EPERM || fd == -ENODEV) {
		rmdir(dir);
		skip();
	}
	assert_true(fd >= 0);
	static const struct rfuse_wishes w = {.async_read = true};
	struct rfuse_session *a, *b = NULL;
	assert_int_equal(rfuse_session_new(fd, &mount_ops, NULL, &w, &a, NULL), 0);
	drop_reads = 1;
	dropped_unique = 0;
	pthread_t ta, tb, tr;
	assert_int_equal(pthread_create(&ta, NULL, serve_until_drop, a), 0);
	struct reader rd = {0};
	snprintf(rd.path, sizeof(rd.path), "%s/hello", dir);
	assert_int_equal(pthread_create(&tr, NULL, read_file, &rd), 0);
	pthread_join(ta, NULL); /* the first server took the READ and is gone */
	usleep(200 * 1000);
	int blocked = !rd.done;

	/* The second one knows the INIT outcome only from the saved line. */
	char line[256];
	struct rfuse_granted g;
	int fl = rfuse_granted_format(rfuse_session_granted(a), line, sizeof(line));
	int pl = fl > 0 ? rfuse_granted_parse(line, &g, &err) : -1;
	rfuse_session_free(a);
	drop_reads = 0;
	first_hello_unique = 0;
	int ad = pl == 0 ? rfuse_session_adopt(fd, &mount_ops, NULL, &w, &g, &b, &err) : -1;
	int started = ad == 0 ? pthread_create(&tb, NULL, serve, b) : -1;
	int resend = started == 0 ? rfuse_notify_resend(b) : -1;
	for (int i = 0; i < 500 && !rd.done; i++)
		usleep(10 * 1000);
	int done = rd.done;
	/* And new requests go to it as well. */
	struct reader rd2 = {0};
	snprintf(rd2.path, sizeof(rd2.path), "%s/hello", dir);
	if (done) {
		int dfd = open("/proc/sys/vm/drop_caches", O_WRONLY);
		if (dfd >= 0) {
			(void)!write(dfd, "3", 1);
			close(dfd);
		}
		read_file(&rd2);
	}
	int um = rfuse_unmount(dir, &err);
	if (!done) {
		/* Unblock the reader: the connection is gone once unmounted and
		 * aborted; a stuck read must not hang the test. */
		close(fd);
		fd = -1;
	}
	pthread_join(tr, NULL);
	if (started == 0)
		pthread_join(tb, NULL);
	/* The first READ the new server answers is the one the old took. */
	bool resent_bit = (first_hello_unique & RFUSE_UNIQUE_RESEND) != 0;
	bool same_id = (first_hello_unique & ~RFUSE_UNIQUE_RESEND) == dropped_unique;
	bool has_resend = ad == 0 && rfuse_session_granted(b)->has_resend;
	rfuse_session_free(b);
	if (fd >= 0)
		close(fd);
	rmdir(dir);

	assert_true(blocked);
	assert_true(fl > 0);
	assert_int_equal(pl, 0);
	assert_int_equal(ad, 0);
	assert_int_equal(started, 0);
	assert_int_equal(resend, 0);
	assert_true(done);
	assert_int_equal(rd.n, sizeof(hello_data) - 1);
	assert_string_equal(rd.data, hello_data);
	assert_int_equal(rd2.n, sizeof(hello_data) - 1);
	assert_string_equal(rd2.data, hello_data);
	assert_int_equal(um, 0);
	assert_true(same_id);
	if (has_resend)
		assert_true(resent_bit);
}

static void test_granted_text(void **state)
{
	struct rfuse_granted g = {.major = FUSE_KERNEL_VERSION,
				  .minor = 41,
				  .max_readahead = 1 << 20,
				  .max_write = 128 << 10,
				  .max_pages = 256,
				  .max_stack_depth = 1,
				  .passthrough = true,
				  .has_resend = true,
				  .kernel_flags = 0x1234567890ull,
				  .reply_flags = 0x42},
			     back;
	char line[256];
	struct rs_error err = {0};
	assert_true(rfuse_granted_format(&g, line, sizeof(line)) > 0);
	assert_int_equal(rfuse_granted_parse(line, &back, &err), 0);
	assert_memory_equal(&g, &back, sizeof(g));
	assert_int_equal(rfuse_granted_format(&g, line, 10), -ENOSPC);
	/* Not ours, out of range, or with more after it: refused. */
	static const char *bad[] = {
	    "",
	    "rfuse-granted-2 7 41 1 131072 256 1 0 0 0",
	    "rfuse-granted-1 8 41 1 131072 256 1 0 0 0",
	    "rfuse-granted-1 7 11 1 131072 256 1 0 0 0",
	    "rfuse-granted-1 7 41 1 1024 256 1 0 0 0",
	    "rfuse-granted-1 7 41 1 4294967295 256 1 0 0 0",
	    "rfuse-granted-1 7 41 1 131072 256 9 0 0 0",
	    "rfuse-granted-1 7 41 1 131072 256 1 4096 0 0",
	    "rfuse-granted-1 7 41 1 131072 256 1 0 0 0 extra",
	    "rfuse-granted-1 7 41 1 131072",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rfuse_granted_parse(bad[i], &back, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_full),
	    cmocka_unit_test(test_init_no_passthrough),
	    cmocka_unit_test(test_init_old_minor),
	    cmocka_unit_test(test_init_versions),
	    cmocka_unit_test(test_init_no_opendir),
	    cmocka_unit_test(test_decoder_before_init),
	    cmocka_unit_test(test_decoder_bounds),
	    cmocka_unit_test(test_decoder_opcodes),
	    cmocka_unit_test(test_decoder_writes_taken),
	    cmocka_unit_test(test_decoder_no_opendir),
	    cmocka_unit_test(test_dirbuf),
	    cmocka_unit_test(test_replies),
	    cmocka_unit_test(test_mount),
	    cmocka_unit_test(test_mount_no_opendir),
	    cmocka_unit_test(test_granted_text),
	    cmocka_unit_test(test_takeover),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
