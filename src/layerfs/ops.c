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

#define LAYER_TIMEOUT 86400.0
#define OPAQUE_XATTR "trusted.overlay.opaque"

static struct lfs_layer *layer_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	unsigned want = FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_READ;
	conn->want |= conn->capable & want;
	/* Contents never change: no invalidation on attribute changes. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = conn->max_readahead > (1u << 20) ? (1u << 20) : conn->max_readahead;
}

static void fill_entry(struct lfs_layer *l, fuse_ino_t ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	uint32_t node = lfs_node_of(l, ino);
	if (node != ESGZ_NONE) {
		lfs_fill_stat(l, node, &e->attr);
		e->attr_timeout = e->entry_timeout = LAYER_TIMEOUT;
	} else {
		lfs_fill_status_stat(l, ino, &e->attr);
	}
}

static bool is_dir(struct lfs_layer *l, uint32_t node)
{
	return node != ESGZ_NONE && esgz_index_node(l->idx, node)->type == ESGZ_DIR &&
	       !lfs_is_whiteout(l, node);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_layer *l = layer_of(req);
	struct fuse_entry_param e;
	if (parent == lfs_status_dir_ino(l)) {
		if (strcmp(name, LFS_STATUS_FILE) != 0) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		fill_entry(l, lfs_status_file_ino(l), &e);
		fuse_reply_entry(req, &e);
		return;
	}
	uint32_t dir = lfs_node_of(l, parent);
	if (!is_dir(l, dir)) {
		fuse_reply_err(req, dir == ESGZ_NONE ? ENOENT : ENOTDIR);
		return;
	}
	if (dir == ESGZ_ROOT && strcmp(name, LFS_STATUS_DIR) == 0) {
		fill_entry(l, lfs_status_dir_ino(l), &e);
		fuse_reply_entry(req, &e);
		return;
	}
	uint32_t node = lfs_lookup(l, dir, name);
	if (node == ESGZ_NONE) {
		/* Absent names are cached too: the layer will not grow them. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = LAYER_TIMEOUT;
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(l, lfs_ino_of(node), &e);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct lfs_layer *l = layer_of(req);
	struct stat st;
	uint32_t node = lfs_node_of(l, ino);
	if (node != ESGZ_NONE) {
		lfs_fill_stat(l, node, &st);
		fuse_reply_attr(req, &st, LAYER_TIMEOUT);
	} else if (ino == lfs_status_dir_ino(l) || ino == lfs_status_file_ino(l)) {
		lfs_fill_status_stat(l, ino, &st);
		fuse_reply_attr(req, &st, 0);
	} else {
		fuse_reply_err(req, ENOENT);
	}
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct lfs_layer *l = layer_of(req);
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE || esgz_index_node(l->idx, node)->type != ESGZ_SYMLINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_readlink(req, esgz_index_str(l->idx, esgz_index_node(l->idx, node)->link));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_layer *l = layer_of(req);
	if (ino != lfs_status_dir_ino(l) && !is_dir(l, lfs_node_of(l, ino))) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Directory offsets: 1 and 2 follow "." and "..", k + 3 follows child k, so
 * an offset stays valid across calls whatever is hidden. */
static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct lfs_layer *l = layer_of(req);
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t pos = 0;
	bool status_dir = ino == lfs_status_dir_ino(l);
	uint32_t dir = lfs_node_of(l, ino), n = 0;
	const uint32_t *kids = NULL;
	if (status_dir) {
		n = 1;
	} else if (is_dir(l, dir)) {
		kids = esgz_index_children(l->idx, dir, &n);
	} else {
		free(buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (off_t k = off; k < (off_t)n + 2; k++) {
		struct fuse_entry_param e;
		const char *name;
		char namebuf[256];
		fuse_ino_t child;
		if (k < 2) {
			name = k == 0 ? "." : "..";
			child = k == 0 ? ino
				       : (status_dir
					      ? FUSE_ROOT_ID
					      : lfs_ino_of(esgz_index_node(l->idx, dir)->parent));
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = child;
			e.attr.st_mode = S_IFDIR;
		} else if (status_dir) {
			name = LFS_STATUS_FILE;
			fill_entry(l, lfs_status_file_ino(l), &e);
		} else {
			size_t len;
			uint32_t c = kids[k - 2];
			const char *shown = lfs_shown_name(l, c, &len);
			if (!shown || len >= sizeof(namebuf))
				continue;
			memcpy(namebuf, shown, len);
			namebuf[len] = '\0';
			name = namebuf;
			/* A whiteout and an entry of the same name: show the entry. */
			if (shown != esgz_index_str(l->idx, esgz_index_node(l->idx, c)->base) &&
			    esgz_index_child(l->idx, dir, shown, len) != ESGZ_NONE)
				continue;
			uint32_t target = lfs_is_whiteout(l, c) ? c : esgz_index_resolve(l->idx, c);
			fill_entry(l, lfs_ino_of(target), &e);
		}
		size_t used;
		if (plus) {
			/* "." and ".." carry no entry: the kernel does not look them up. */
			if (k < 2)
				e.ino = 0;
			used = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, k + 1);
		} else {
			used = fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr, k + 1);
		}
		if (used > size - pos)
			break;
		pos += used;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, true);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_layer *l = layer_of(req);
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (ino == lfs_status_file_ino(l)) {
		/* A snapshot of the status, taken at open, served as it was. */
		struct rs_buf *b = calloc(1, sizeof(*b));
		struct lfs_status s;
		lfs_layer_status(l, &s);
		if (!b || lfs_status_json(&s, b) < 0) {
			if (b)
				rs_buf_free(b);
			free(b);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->fh = (uint64_t)(uintptr_t)b;
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	}
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (lfs_is_whiteout(l, node) || esgz_index_node(l->idx, node)->type != ESGZ_REG) {
		fuse_reply_err(req,
			       esgz_index_node(l->idx, node)->type == ESGZ_DIR ? EISDIR : ENXIO);
		return;
	}
	/* Failed its whole-file digest: the page cache may still hold pages
	 * read before the check, so a new open must not reach them. */
	if (lfs_file_bad(l, node)) {
		fuse_reply_err(req, EIO);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct lfs_layer *l = layer_of(req);
	if (ino == lfs_status_file_ino(l)) {
		const struct rs_buf *b = (const struct rs_buf *)(uintptr_t)fi->fh;
		if (off < 0 || (size_t)off >= b->len) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		size_t n = b->len - (size_t)off;
		if (n > size)
			n = size;
		/* A copy: once the kernel has the reply, the reader may close the
		 * file and RELEASE (freeing b) can run while this worker is still
		 * returning from the write. */
		char *copy = malloc(n);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(copy, b->data + off, n);
		fuse_reply_buf(req, copy, n);
		free(copy);
		return;
	}
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	lfs_do_read(l, req, node, size, off);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_layer *l = layer_of(req);
	if (ino == lfs_status_file_ino(l) && fi->fh) {
		struct rs_buf *b = (struct rs_buf *)(uintptr_t)fi->fh;
		rs_buf_free(b);
		free(b);
	}
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
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
	fuse_reply_statfs(req, &sv);
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
static void reply_xattr(fuse_req_t req, const void *value, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct lfs_layer *l = layer_of(req);
	uint32_t node = lfs_node_of(l, ino);
	if (node == ESGZ_NONE || lfs_is_whiteout(l, node)) {
		fuse_reply_err(req, ENODATA);
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
	fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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
	fuse_reply_err(req, ENOMEM);
}

const struct fuse_lowlevel_ops lfs_ops = {
    .init = op_init,
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
