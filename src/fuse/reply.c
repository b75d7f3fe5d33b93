/* SPDX-License-Identifier: Apache-2.0 */
/* Replies and notifications: a fuse_out_header and the body, in one writev
 * (the kernel takes a reply only whole, in one write). */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "rfuse_internal.h"

/* The kernel refuses names longer than this (FUSE_NAME_MAX). */
#define NAME_MAX_KERNEL 1024
#define MAX_IOV 256

int rfuse_send(struct rfuse_session *s, uint64_t unique, int error, const struct iovec *iov, int n)
{
	if (n < 0 || n >= MAX_IOV)
		return -EINVAL;
	struct fuse_out_header h = {.error = error, .unique = unique};
	struct iovec v[MAX_IOV];
	size_t total = sizeof(h);
	v[0].iov_base = &h;
	v[0].iov_len = sizeof(h);
	for (int i = 0; i < n; i++) {
		if (rs_add_overflow(total, iov[i].iov_len, &total))
			return -EOVERFLOW;
		v[i + 1] = iov[i];
	}
	if (total > UINT32_MAX)
		return -EOVERFLOW;
	h.len = (uint32_t)total;
	return s->send(s->send_ctx, v, n + 1);
}

static int reply_iov(struct rfuse_req *r, const struct iovec *iov, int n)
{
	return rfuse_send(r->s, r->unique, 0, iov, n);
}

int rfuse_reply_err(struct rfuse_req *r, int err)
{
	/* Error codes travel negated; a positive or huge one would be refused. */
	if (err < 0 || err > 4095)
		err = EIO;
	return rfuse_send(r->s, r->unique, -err, NULL, 0);
}

int rfuse_reply_buf(struct rfuse_req *r, const void *data, size_t len)
{
	struct iovec v = {.iov_base = (void *)data, .iov_len = len};
	return reply_iov(r, &v, len ? 1 : 0);
}

int rfuse_reply_data(struct rfuse_req *r, const struct iovec *iov, int iovcnt)
{
	return reply_iov(r, iov, iovcnt);
}

int rfuse_reply_entry(struct rfuse_req *r, const struct fuse_entry_out *e)
{
	return rfuse_reply_buf(r, e, sizeof(*e));
}

int rfuse_reply_attr(struct rfuse_req *r, const struct fuse_attr_out *a)
{
	return rfuse_reply_buf(r, a, sizeof(*a));
}

int rfuse_reply_open(struct rfuse_req *r, uint64_t fh, uint32_t open_flags, int32_t backing_id)
{
	struct rfuse_open_out o = {.fh = fh, .open_flags = open_flags};
	if (open_flags & FOPEN_PASSTHROUGH)
		o.backing_id = backing_id;
	return rfuse_reply_buf(r, &o, sizeof(o));
}

int rfuse_reply_xattr_size(struct rfuse_req *r, uint32_t size)
{
	struct fuse_getxattr_out o = {.size = size};
	return rfuse_reply_buf(r, &o, sizeof(o));
}

int rfuse_reply_statfs(struct rfuse_req *r, const struct statvfs *st)
{
	struct fuse_statfs_out o = {.st = {
					.blocks = st->f_blocks,
					.bfree = st->f_bfree,
					.bavail = st->f_bavail,
					.files = st->f_files,
					.ffree = st->f_ffree,
					.bsize = (uint32_t)st->f_bsize,
					.namelen = (uint32_t)st->f_namemax,
					.frsize = (uint32_t)st->f_frsize,
				    }};
	return rfuse_reply_buf(r, &o, sizeof(o));
}

int rfuse_reply_lseek(struct rfuse_req *r, uint64_t off)
{
	struct fuse_lseek_out o = {.offset = off};
	return rfuse_reply_buf(r, &o, sizeof(o));
}

void rfuse_attr_from_stat(struct fuse_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = (uint32_t)st->st_rdev;
	a->blksize = (uint32_t)st->st_blksize;
}

void rfuse_dirbuf_init(struct rfuse_dirbuf *d, void *buf, size_t cap)
{
	d->buf = buf;
	d->cap = cap;
	d->len = 0;
}

/* Reserves an aligned record of head + namelen bytes, zeroed (the padding
 * goes to the kernel and must not leak our memory). */
static char *dirbuf_take(struct rfuse_dirbuf *d, size_t head, size_t namelen)
{
	if (namelen == 0 || namelen > NAME_MAX_KERNEL)
		return NULL;
	size_t rec = FUSE_DIRENT_ALIGN(head + namelen);
	if (d->len > d->cap || rec > d->cap - d->len)
		return NULL;
	char *p = d->buf + d->len;
	memset(p, 0, rec);
	d->len += rec;
	return p;
}

bool rfuse_dirbuf_add(struct rfuse_dirbuf *d, const char *name, size_t namelen, uint64_t ino,
		      uint32_t mode, uint64_t off)
{
	char *p = dirbuf_take(d, FUSE_NAME_OFFSET, namelen);
	if (!p)
		return false;
	struct fuse_dirent de = {
	    .ino = ino, .off = off, .namelen = (uint32_t)namelen, .type = (mode & S_IFMT) >> 12};
	memcpy(p, &de, FUSE_NAME_OFFSET);
	memcpy(p + FUSE_NAME_OFFSET, name, namelen);
	return true;
}

bool rfuse_dirbuf_add_plus(struct rfuse_dirbuf *d, const char *name, size_t namelen,
			   const struct fuse_entry_out *e, uint64_t off)
{
	char *p = dirbuf_take(d, FUSE_NAME_OFFSET_DIRENTPLUS, namelen);
	if (!p)
		return false;
	struct fuse_dirent de = {.ino = e->attr.ino,
				 .off = off,
				 .namelen = (uint32_t)namelen,
				 .type = (e->attr.mode & S_IFMT) >> 12};
	memcpy(p, e, sizeof(*e));
	memcpy(p + offsetof(struct fuse_direntplus, dirent), &de, FUSE_NAME_OFFSET);
	memcpy(p + FUSE_NAME_OFFSET_DIRENTPLUS, name, namelen);
	return true;
}

static int notify(struct rfuse_session *s, int code, const struct iovec *iov, int n)
{
	if (atomic_load_explicit(&s->state, memory_order_acquire) != RFUSE_SERVING)
		return -ENOTCONN;
	return rfuse_send(s, 0, code, iov, n);
}

int rfuse_notify_inval_inode(struct rfuse_session *s, uint64_t nodeid, int64_t off, int64_t len)
{
	struct fuse_notify_inval_inode_out o = {.ino = nodeid, .off = off, .len = len};
	struct iovec v = {.iov_base = &o, .iov_len = sizeof(o)};
	return notify(s, FUSE_NOTIFY_INVAL_INODE, &v, 1);
}

int rfuse_notify_inval_entry(struct rfuse_session *s, uint64_t parent, const char *name,
			     size_t namelen)
{
	if (namelen == 0 || namelen > NAME_MAX_KERNEL)
		return -EINVAL;
	struct fuse_notify_inval_entry_out o = {.parent = parent, .namelen = (uint32_t)namelen};
	/* The kernel wants the name NUL-terminated, past namelen. */
	struct iovec v[3] = {{.iov_base = &o, .iov_len = sizeof(o)},
			     {.iov_base = (void *)name, .iov_len = namelen},
			     {.iov_base = "", .iov_len = 1}};
	return notify(s, FUSE_NOTIFY_INVAL_ENTRY, v, 3);
}

int rfuse_notify_resend(struct rfuse_session *s)
{
	return notify(s, RFUSE_NOTIFY_RESEND, NULL, 0);
}
