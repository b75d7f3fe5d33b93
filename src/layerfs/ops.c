/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE low-level operations of a layer. A layer never changes, so entries
 * and attributes are cached by the kernel for long and file pages are kept
 * across opens; only the status file is served uncached. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "layerfs_internal.h"

/* Seconds the kernel may keep entries and attributes: a layer never changes. */
#define LAYER_TIMEOUT 86400
#define OPAQUE_XATTR "trusted.overlay.opaque"

static struct lfs_layer *layer_of(struct rfuse_req *r)
{
	return rfuse_session_userdata(r->s);
}

static void fill_entry(struct lfs_layer *l, uint64_t ino, struct fuse_entry_out *e)
{
	struct stat st;
	memset(e, 0, sizeof(*e));
	e->nodeid = ino;
	uint32_t node = lfs_node_of(l, ino);
	if (node != ESGZ_NONE) {
		lfs_fill_stat(l, node, &st);
		e->attr_valid = e->entry_valid = LAYER_TIMEOUT;
	} else {
		lfs_fill_status_stat(l, ino, &st);
	}
	rfuse_attr_from_stat(&e->attr, &st);
}

static bool is_dir(struct lfs_layer *l, uint32_t node)
{
	return node != ESGZ_NONE && esgz_index_node(l->idx, node)->type == ESGZ_DIR &&
	       !lfs_is_whiteout(l, node);
}

static void op_lookup(struct rfuse_req *req, uint64_t parent, const char *name)
{
	struct lfs_layer *l = layer_of(req);
	struct fuse_entry_out e;
	if (parent == lfs_status_dir_ino(l)) {
		if (strcmp(name, LFS_STATUS_FILE) != 0) {
			rfuse_reply_err(req, ENOENT);
			return;
		}
		fill_entry(l, lfs_status_file_ino(l), &e);
		rfuse_reply_entry(req, &e);
		return;
	}
	uint32_t dir = lfs_node_of(l, parent);
	if (!is_dir(l, dir)) {
		rfuse_reply_err(req, dir == ESGZ_NONE ? ENOENT : ENOTDIR);
		return;
	}
	if (dir == ESGZ_ROOT && strcmp(name, LFS_STATUS_DIR) == 0) {
		fill_entry(l, lfs_status_dir_ino(l), &e);
		rfuse_reply_entry(req, &e);
		return;
	}
	uint32_t node = lfs_lookup(l, dir, name);
	if (node == ESGZ_NONE) {
		/* Absent names are cached too (node id 0): the layer will not
		 * grow them. */
		memset(&e, 0, sizeof(e));
		e.entry_valid = LAYER_TIMEOUT;
		rfuse_reply_entry(req, &e);
		return;
	}
	fill_entry(l, lfs_ino_of(node), &e);
	rfuse_reply_entry(req, &e);
}

static void op_getattr(struct rfuse_req *req, uint64_t ino, uint64_t fh, bool has_fh)
{
	(void)fh;
	(void)has_fh;
	struct lfs_layer *l = layer_of(req);
	struct stat st;
	struct fuse_attr_out a = {0};
	uint32_t node = lfs_node_of(l, ino);
	if (node != ESGZ_NONE) {
		lfs_fill_stat(l, node, &st);
		a.attr_valid = LAYER_TIMEOUT;
	} else if (ino == lfs_status_dir_ino(l) || ino == lfs_status_file_ino(l)) {
		lfs_fill_status_stat(l, ino, &st);
	} else {
		rfuse_reply_err(req, ENOENT);
		return;
	}
	rfuse_attr_from_stat(&a.attr, &st);
	rfuse_reply_attr(req, &a);
}

static void op_readlink(struct rfuse_req *req, uint64_t ino)
{
	struct lfs_layer *l = layer_of(req);
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE || esgz_index_node(l->idx, node)->type != ESGZ_SYMLINK) {
		rfuse_reply_err(req, EINVAL);
		return;
	}
	const char *target = esgz_index_str(l->idx, esgz_index_node(l->idx, node)->link);
	rfuse_reply_buf(req, target, strlen(target));
}

static void op_opendir(struct rfuse_req *req, uint64_t ino, uint32_t flags)
{
	(void)flags;
	struct lfs_layer *l = layer_of(req);
	if (ino != lfs_status_dir_ino(l) && !is_dir(l, lfs_node_of(l, ino))) {
		rfuse_reply_err(req, ENOTDIR);
		return;
	}
	rfuse_reply_open(req, 0, FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE, 0);
}

/* Directory offsets: 1 and 2 follow "." and "..", k + 3 follows child k, so
 * an offset stays valid across calls whatever is hidden. */
static void readdir_common(struct rfuse_req *req, uint64_t ino, uint32_t size, uint64_t off,
			   bool plus)
{
	struct lfs_layer *l = layer_of(req);
	cleanup_free char *buf = malloc(size ? size : 1);
	if (!buf) {
		rfuse_reply_err(req, ENOMEM);
		return;
	}
	struct rfuse_dirbuf db;
	rfuse_dirbuf_init(&db, buf, size);
	bool status_dir = ino == lfs_status_dir_ino(l);
	uint32_t dir = lfs_node_of(l, ino), n = 0;
	const uint32_t *kids = NULL;
	if (status_dir) {
		n = 1;
	} else if (is_dir(l, dir)) {
		kids = esgz_index_children(l->idx, dir, &n);
	} else {
		rfuse_reply_err(req, ENOTDIR);
		return;
	}
	for (uint64_t k = off; k < (uint64_t)n + 2; k++) {
		struct fuse_entry_out e;
		const char *name;
		size_t namelen;
		if (k < 2) {
			name = k == 0 ? "." : "..";
			namelen = k + 1;
			memset(&e, 0, sizeof(e));
			/* "." and ".." carry no entry (node id 0): the kernel does
			 * not look them up. */
			e.attr.ino = k == 0 ? ino
				     : status_dir
					 ? FUSE_ROOT_ID
					 : lfs_ino_of(esgz_index_node(l->idx, dir)->parent);
			e.attr.mode = S_IFDIR;
		} else if (status_dir) {
			name = LFS_STATUS_FILE;
			namelen = strlen(name);
			fill_entry(l, lfs_status_file_ino(l), &e);
		} else {
			uint32_t c = kids[k - 2];
			name = lfs_shown_name(l, c, &namelen);
			if (!name || namelen > 255)
				continue;
			/* A whiteout and an entry of the same name: show the entry. */
			if (name != esgz_index_str(l->idx, esgz_index_node(l->idx, c)->base) &&
			    esgz_index_child(l->idx, dir, name, namelen) != ESGZ_NONE)
				continue;
			uint32_t target = lfs_is_whiteout(l, c) ? c : esgz_index_resolve(l->idx, c);
			fill_entry(l, lfs_ino_of(target), &e);
		}
		bool fits =
		    plus ? rfuse_dirbuf_add_plus(&db, name, namelen, &e, k + 1)
			 : rfuse_dirbuf_add(&db, name, namelen, e.attr.ino, e.attr.mode, k + 1);
		if (!fits)
			break;
	}
	rfuse_reply_buf(req, buf, db.len);
}

static void op_readdir(struct rfuse_req *req, uint64_t ino, uint64_t fh, uint64_t off,
		       uint32_t size)
{
	(void)fh;
	readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(struct rfuse_req *req, uint64_t ino, uint64_t fh, uint64_t off,
			   uint32_t size)
{
	(void)fh;
	readdir_common(req, ino, size, off, true);
}

static void op_open(struct rfuse_req *req, uint64_t ino, uint32_t flags)
{
	struct lfs_layer *l = layer_of(req);
	if ((flags & O_ACCMODE) != O_RDONLY) {
		rfuse_reply_err(req, EROFS);
		return;
	}
	if (ino == lfs_status_file_ino(l)) {
		uint64_t fh;
		if (lfs_status_open(l, &fh) < 0)
			rfuse_reply_err(req, ENOMEM);
		else if (rfuse_reply_open(req, fh, FOPEN_DIRECT_IO, 0) < 0)
			lfs_status_release(l, fh); /* no RELEASE will come */
		return;
	}
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE) {
		rfuse_reply_err(req, ENOENT);
		return;
	}
	if (lfs_is_whiteout(l, node) || esgz_index_node(l->idx, node)->type != ESGZ_REG) {
		rfuse_reply_err(req,
				esgz_index_node(l->idx, node)->type == ESGZ_DIR ? EISDIR : ENXIO);
		return;
	}
	/* Failed its whole-file digest: the page cache may still hold pages
	 * read before the check, so a new open must not reach them. */
	if (lfs_file_bad(l, node)) {
		rfuse_reply_err(req, EIO);
		return;
	}
	int32_t id;
	uint64_t fh = lfs_passthrough_open(l, node, &id);
	uint32_t open_flags = id > 0 ? FOPEN_PASSTHROUGH : FOPEN_KEEP_CACHE;
	if (rfuse_reply_open(req, fh, open_flags, id) < 0)
		lfs_passthrough_release(l, node, fh); /* no RELEASE will come */
}

static void op_read(struct rfuse_req *req, uint64_t ino, uint64_t fh, uint64_t off, uint32_t size)
{
	struct lfs_layer *l = layer_of(req);
	if (ino == lfs_status_file_ino(l)) {
		lfs_status_read(l, req, fh, off, size);
		return;
	}
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE) {
		rfuse_reply_err(req, ENOENT);
		return;
	}
	if (off > (uint64_t)INT64_MAX) {
		rfuse_reply_err(req, EINVAL);
		return;
	}
	lfs_do_read(l, req, node, size, (off_t)off);
}

static void op_release(struct rfuse_req *req, uint64_t ino, uint64_t fh)
{
	struct lfs_layer *l = layer_of(req);
	if (ino == lfs_status_file_ino(l)) {
		lfs_status_release(l, fh);
	} else {
		uint32_t node = lfs_node_of(l, ino);
		if (node != ESGZ_NONE)
			lfs_passthrough_release(l, node, fh);
	}
	rfuse_reply_err(req, 0);
}

static void op_statfs(struct rfuse_req *req, uint64_t ino)
{
	(void)ino;
	struct lfs_layer *l = layer_of(req);
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((l->total_bytes + 4095) / 4096);
	sv.f_files = l->nnodes + 2;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	rfuse_reply_statfs(req, &sv);
}

/* trusted.* and security.* are the kernel's business (overlayfs markers,
 * file capabilities): a TOC naming them would make overlayfs or exec trust
 * what the image's author wrote. The only such xattr shown is the opaque
 * marker layerfs derives itself from `.wh..wh..opq`. */
static bool xattr_served(const char *name)
{
	return strncmp(name, "trusted.", 8) != 0 && strncmp(name, "security.", 9) != 0;
}

/* Replies with value (or its size when size is 0). */
static void reply_xattr(struct rfuse_req *req, const void *value, size_t len, uint32_t size)
{
	if (len > UINT32_MAX)
		rfuse_reply_err(req, E2BIG);
	else if (size == 0)
		rfuse_reply_xattr_size(req, (uint32_t)len);
	else if (size < len)
		rfuse_reply_err(req, ERANGE);
	else
		rfuse_reply_buf(req, value, len);
}

static void op_getxattr(struct rfuse_req *req, uint64_t ino, const char *name, uint32_t size)
{
	struct lfs_layer *l = layer_of(req);
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE || lfs_is_whiteout(l, node)) {
		rfuse_reply_err(req, ENODATA);
		return;
	}
	if (strcmp(name, OPAQUE_XATTR) == 0 && is_dir(l, node) && lfs_is_opaque(l, node)) {
		reply_xattr(req, "y", 1, size);
		return;
	}
	uint32_t n;
	const struct esgz_xattr *x = esgz_index_xattrs(l->idx, node, &n);
	for (uint32_t i = 0; i < n && xattr_served(name); i++)
		if (strcmp(esgz_index_str(l->idx, x[i].name), name) == 0) {
			reply_xattr(req, esgz_index_str(l->idx, x[i].value), x[i].value_len, size);
			return;
		}
	rfuse_reply_err(req, ENODATA);
}

static void op_listxattr(struct rfuse_req *req, uint64_t ino, uint32_t size)
{
	struct lfs_layer *l = layer_of(req);
	uint32_t node = lfs_node_of(l, ino);
	struct rs_buf b = {0};
	if (node != ESGZ_NONE && !lfs_is_whiteout(l, node)) {
		uint32_t n;
		const struct esgz_xattr *x = esgz_index_xattrs(l->idx, node, &n);
		for (uint32_t i = 0; i < n; i++) {
			const char *nm = esgz_index_str(l->idx, x[i].name);
			if (!xattr_served(nm))
				continue;
			if (rs_buf_append(&b, nm, strlen(nm) + 1) < 0)
				goto nomem;
		}
		if (is_dir(l, node) && lfs_is_opaque(l, node) &&
		    rs_buf_append(&b, OPAQUE_XATTR, sizeof(OPAQUE_XATTR)) < 0)
			goto nomem;
	}
	reply_xattr(req, b.data, b.len, size);
	rs_buf_free(&b);
	return;
nomem:
	rs_buf_free(&b);
	rfuse_reply_err(req, ENOMEM);
}

/* Nothing to flush on a read-only layer; ENOSYS tells the kernel to stop
 * asking (it remembers per connection), so a close needs no daemon. */
static void op_flush(struct rfuse_req *req, uint64_t ino, uint64_t fh)
{
	(void)ino;
	(void)fh;
	rfuse_reply_err(req, ENOSYS);
}

static void op_init(void *ud, const struct rfuse_granted *g)
{
	struct lfs_layer *l = ud;
	int r = lfs_state_save_granted(l, g);
	if (r < 0)
		rs_log(RS_LOG_WARN, "layerfs: %s: saving the INIT outcome in %s: %s", l->digest,
		       l->state_dir, strerror(-r));
}

const struct rfuse_ops lfs_ops = {
    .init = op_init,
    .flush = op_flush,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
};
