/* SPDX-License-Identifier: Apache-2.0 */
/* The inode table is the TOC index itself: inode = node id + 1, so nothing is
 * allocated per file and lookups never change state (no lookup counts). What
 * overlayfs expects of a layer is applied here: `.wh.X` shows as a 0/0
 * character device named X, `.wh..wh..opq` is hidden and marks its directory
 * opaque. */
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "layerfs_internal.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

uint32_t lfs_node_of(const struct lfs_layer *l, uint64_t ino)
{
	if (ino < 1 || ino > l->nnodes)
		return ESGZ_NONE;
	return (uint32_t)(ino - 1);
}

static const char *base_of(const struct lfs_layer *l, uint32_t node)
{
	return esgz_index_str(l->idx, esgz_index_node(l->idx, node)->base);
}

bool lfs_is_whiteout(const struct lfs_layer *l, uint32_t node)
{
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	if (n->type == ESGZ_DIR)
		return false;
	const char *b = esgz_index_str(l->idx, n->base);
	return strncmp(b, WH_PREFIX, 4) == 0 && strcmp(b, WH_OPAQUE) != 0 && b[4] != '\0';
}

bool lfs_is_opaque(const struct lfs_layer *l, uint32_t dir)
{
	return esgz_index_child(l->idx, dir, WH_OPAQUE, strlen(WH_OPAQUE)) != ESGZ_NONE;
}

/* The landmarks are the format's, not the image's: a container never sees them. */
static bool is_landmark(const struct lfs_layer *l, uint32_t parent, const char *name)
{
	(void)l;
	return parent == ESGZ_ROOT && (strcmp(name, ESGZ_PREFETCH_LANDMARK) == 0 ||
				       strcmp(name, ESGZ_NO_PREFETCH_LANDMARK) == 0);
}

const char *lfs_shown_name(const struct lfs_layer *l, uint32_t node, size_t *len)
{
	const char *b = base_of(l, node);
	if (strcmp(b, WH_OPAQUE) == 0 || is_landmark(l, esgz_index_node(l->idx, node)->parent, b))
		return NULL;
	if (lfs_is_whiteout(l, node))
		b += 4;
	*len = strlen(b);
	return b;
}

uint32_t lfs_lookup(const struct lfs_layer *l, uint32_t dir, const char *name)
{
	size_t len = strlen(name);
	if (strncmp(name, WH_PREFIX, 4) == 0 || len > 255 || is_landmark(l, dir, name))
		return ESGZ_NONE;
	uint32_t c = esgz_index_child(l->idx, dir, name, len);
	if (c != ESGZ_NONE)
		return esgz_index_resolve(l->idx, c);
	char wh[4 + 256];
	memcpy(wh, WH_PREFIX, 4);
	memcpy(wh + 4, name, len);
	c = esgz_index_child(l->idx, dir, wh, len + 4);
	if (c != ESGZ_NONE && lfs_is_whiteout(l, c))
		return c;
	return ESGZ_NONE;
}

void lfs_fill_stat(const struct lfs_layer *l, uint32_t node, struct stat *st)
{
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	memset(st, 0, sizeof(*st));
	st->st_ino = lfs_ino_of(node);
	st->st_blksize = 4096;
	st->st_mtim.tv_sec = n->mtime;
	st->st_atim = st->st_ctim = st->st_mtim;
	if (lfs_is_whiteout(l, node)) {
		st->st_mode = S_IFCHR;
		st->st_nlink = 1;
		st->st_rdev = makedev(0, 0);
		return;
	}
	mode_t type = S_IFREG;
	switch (n->type) {
	case ESGZ_DIR:
		type = S_IFDIR;
		break;
	case ESGZ_SYMLINK:
		type = S_IFLNK;
		break;
	case ESGZ_CHAR:
		type = S_IFCHR;
		break;
	case ESGZ_BLOCK:
		type = S_IFBLK;
		break;
	case ESGZ_FIFO:
		type = S_IFIFO;
		break;
	default:
		break;
	}
	st->st_mode = type | (n->mode & 07777);
	st->st_nlink = n->nlink ? n->nlink : 1;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	if (type == S_IFCHR || type == S_IFBLK)
		st->st_rdev = makedev(n->devmajor, n->devminor);
	if (type == S_IFREG || type == S_IFLNK)
		st->st_size = n->size;
	else if (type == S_IFDIR)
		st->st_size = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
}

void lfs_fill_status_stat(const struct lfs_layer *l, uint64_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_blksize = 4096;
	const struct esgz_node *root = esgz_index_node(l->idx, ESGZ_ROOT);
	st->st_mtim.tv_sec = root->mtime;
	st->st_atim = st->st_ctim = st->st_mtim;
	if (ino == lfs_status_dir_ino(l)) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		st->st_size = 4096;
		return;
	}
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	struct lfs_status s;
	struct rs_buf b = {0};
	lfs_layer_status((struct lfs_layer *)l, &s);
	if (lfs_status_json(&s, &b) == 0)
		st->st_size = (off_t)b.len;
	rs_buf_free(&b);
}
