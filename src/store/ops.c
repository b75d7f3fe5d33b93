/* SPDX-License-Identifier: Apache-2.0 */
/* The store's FUSE operations. Names come from whoever looks them up: a
 * reference directory is created for a name only when it decodes to a
 * reference, a layer directory only when the name is a digest that resolves
 * to a verifiable layer of it; everything else is ENOENT (never cached, so
 * a registry that was down is asked again). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "store_internal.h"

/* A node, once made, never changes. */
#define ENTRY_TIMEOUT 3600

static struct store *store_of(struct rfuse_req *r)
{
	return rfuse_session_userdata(r->s);
}

/* Under s->lock. */
static void fill_stat(struct store *s, uint64_t id, const struct store_node *n, struct stat *st)
{
	(void)s;
	memset(st, 0, sizeof(*st));
	st->st_ino = id;
	st->st_uid = 0;
	st->st_gid = 0;
	st->st_blksize = 4096;
	switch (n->kind) {
	case STORE_ROOT:
	case STORE_REF:
	case STORE_LAYER:
		st->st_mode = S_IFDIR | 0500;
		st->st_nlink = 2;
		break;
	case STORE_DIFF_LINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen(n->layer->mnt->path);
		break;
	case STORE_INFO_FILE:
		st->st_mode = S_IFREG | 0400;
		st->st_nlink = 1;
		st->st_size = (off_t)n->layer->info.len;
		break;
	case STORE_BLOB_FILE:
		st->st_mode = S_IFREG | 0400;
		st->st_nlink = 1;
		st->st_size = (off_t)n->layer->size;
		break;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

static void reply_node(struct rfuse_req *req, struct store *s, uint64_t id)
{
	struct fuse_entry_out e = {0};
	struct stat st;
	pthread_mutex_lock(&s->lock);
	fill_stat(s, id, store_node_get(s, id), &st);
	pthread_mutex_unlock(&s->lock);
	e.nodeid = id;
	e.entry_valid = e.attr_valid = ENTRY_TIMEOUT;
	rfuse_attr_from_stat(&e.attr, &st);
	rfuse_reply_entry(req, &e);
}

/* A name that is not there, not cached: it may be there at the next lookup. */
static void reply_absent(struct rfuse_req *req)
{
	rfuse_reply_err(req, ENOENT);
}

static void lookup_ref(struct rfuse_req *req, struct store *s, const char *name)
{
	char ref[STORE_REF_MAX];
	struct rs_error err = {0};
	struct store_ref *r = NULL;
	if (store_ref_decode(name, ref, sizeof(ref)) < 0) {
		reply_absent(req);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->ref = strdup(ref)) || reg_ref_parse(ref, &r->parsed, &err) < 0) {
		rs_log(RS_LOG_DEBUG, "store: %s is no image reference: %s", ref,
		       r ? err.msg : "out of memory");
		store_ref_free(r);
		reply_absent(req);
		return;
	}
	pthread_mutex_lock(&s->lock);
	uint64_t id = store_child(s, FUSE_ROOT_ID, name);
	if (id == 0 && (id = store_node_add(s, STORE_REF, FUSE_ROOT_ID, name, r, NULL)) != 0)
		r = NULL;
	pthread_mutex_unlock(&s->lock);
	store_ref_free(r);
	if (id == 0)
		rfuse_reply_err(req, ENOSPC);
	else
		reply_node(req, s, id);
}

/* Adds the layer directory and its files; its id, or 0 (*owned: the table
 * holds l all the same, and frees it at the end). Under s->lock. */
static uint64_t add_layer(struct store *s, uint64_t parent, struct store_layer *l, bool *owned)
{
	uint64_t id = store_node_add(s, STORE_LAYER, parent, l->digest, NULL, l);
	*owned = id != 0;
	if (id == 0)
		return 0;
	if (!store_node_add(s, STORE_DIFF_LINK, id, STORE_DIFF, NULL, l) ||
	    !store_node_add(s, STORE_INFO_FILE, id, STORE_INFO, NULL, l) ||
	    !store_node_add(s, STORE_BLOB_FILE, id, STORE_BLOB, NULL, l)) {
		/* Half a layer directory is no layer: nameless, no one finds it. */
		struct store_node *n = store_node_get(s, id);
		free(n->name);
		n->name = NULL;
		return 0;
	}
	return id;
}

static void lookup_layer(struct rfuse_req *req, struct store *s, uint64_t parent,
			 struct store_ref *r, const char *name)
{
	uint8_t sum[RS_SHA256_LEN];
	if (rs_digest_parse(name, strlen(name), sum) < 0) {
		reply_absent(req);
		return;
	}
	/* One resolution at a time (containers/storage looks layers up one
	 * by one anyway); a second lookup of the same layer finds it made. */
	pthread_mutex_lock(&s->resolve_lock);
	pthread_mutex_lock(&s->lock);
	uint64_t id = store_child(s, parent, name);
	pthread_mutex_unlock(&s->lock);
	struct store_layer *l = NULL;
	struct rs_error err = {0};
	int rc = 0;
	if (id == 0) {
		rc = store_resolve_layer(s, r, name, &l, &err);
		if (rc == 0) {
			bool owned;
			pthread_mutex_lock(&s->lock);
			id = add_layer(s, parent, l, &owned);
			pthread_mutex_unlock(&s->lock);
			if (!owned) {
				store_mount_put(s, l);
				store_layer_free(l);
			}
			if (id == 0)
				rc = rs_err(&err, -ENOSPC, "layer %s of %s: the store is full",
					    name, r->ref);
		}
	}
	pthread_mutex_unlock(&s->resolve_lock);
	if (rc < 0) {
		rs_log(rc == -ENOENT ? RS_LOG_INFO : RS_LOG_WARN, "store: not offering %s: %s",
		       name, err.msg);
		reply_absent(req);
		return;
	}
	reply_node(req, s, id);
}

static void op_lookup(struct rfuse_req *req, uint64_t parent, const char *name)
{
	struct store *s = store_of(req);
	pthread_mutex_lock(&s->lock);
	struct store_node *p = store_node_get(s, parent);
	enum store_kind kind = p ? p->kind : STORE_INFO_FILE;
	struct store_ref *r = p ? p->ref : NULL;
	bool gone = p && p->kind == STORE_LAYER && p->layer->gone;
	uint64_t id = p && !gone ? store_child(s, parent, name) : 0;
	pthread_mutex_unlock(&s->lock);
	if (!p || gone) {
		rfuse_reply_err(req, ENOENT);
	} else if (id != 0) {
		reply_node(req, s, id);
	} else if (kind == STORE_ROOT) {
		lookup_ref(req, s, name);
	} else if (kind == STORE_REF) {
		lookup_layer(req, s, parent, r, name);
	} else if (kind == STORE_LAYER) {
		/* `use` among them: never there, its creation counts a use. */
		reply_absent(req);
	} else {
		rfuse_reply_err(req, ENOTDIR);
	}
}

static void op_getattr(struct rfuse_req *req, uint64_t id, uint64_t fh, bool has_fh)
{
	(void)fh;
	(void)has_fh;
	struct store *s = store_of(req);
	struct fuse_attr_out a = {0};
	struct stat st;
	pthread_mutex_lock(&s->lock);
	struct store_node *n = store_node_get(s, id);
	if (n)
		fill_stat(s, id, n, &st);
	pthread_mutex_unlock(&s->lock);
	if (!n) {
		rfuse_reply_err(req, ENOENT);
		return;
	}
	a.attr_valid = ENTRY_TIMEOUT;
	rfuse_attr_from_stat(&a.attr, &st);
	rfuse_reply_attr(req, &a);
}

static void op_readlink(struct rfuse_req *req, uint64_t id)
{
	struct store *s = store_of(req);
	pthread_mutex_lock(&s->lock);
	struct store_node *n = store_node_get(s, id);
	const char *target = n && n->kind == STORE_DIFF_LINK ? n->layer->mnt->path : NULL;
	pthread_mutex_unlock(&s->lock);
	/* The path stays: mounts live as long as the store. */
	if (!target)
		rfuse_reply_err(req, EINVAL);
	else
		rfuse_reply_buf(req, target, strlen(target));
}

static void op_open(struct rfuse_req *req, uint64_t id, uint32_t flags)
{
	struct store *s = store_of(req);
	pthread_mutex_lock(&s->lock);
	struct store_node *n = store_node_get(s, id);
	enum store_kind kind = n ? n->kind : STORE_ROOT;
	pthread_mutex_unlock(&s->lock);
	if (!n)
		rfuse_reply_err(req, ENOENT);
	else if (kind != STORE_INFO_FILE && kind != STORE_BLOB_FILE)
		rfuse_reply_err(req, EISDIR);
	else if ((flags & O_ACCMODE) != O_RDONLY)
		rfuse_reply_err(req, EROFS);
	else
		rfuse_reply_open(req, 0, FOPEN_KEEP_CACHE, 0);
}

static void op_read(struct rfuse_req *req, uint64_t id, uint64_t fh, uint64_t off, uint32_t size)
{
	(void)fh;
	struct store *s = store_of(req);
	pthread_mutex_lock(&s->lock);
	struct store_node *n = store_node_get(s, id);
	enum store_kind kind = n ? n->kind : STORE_ROOT;
	struct store_layer *l = n ? n->layer : NULL;
	pthread_mutex_unlock(&s->lock);
	if (kind == STORE_INFO_FILE) {
		size_t len = l->info.len;
		if (off >= len) {
			rfuse_reply_buf(req, NULL, 0);
			return;
		}
		size_t part = len - (size_t)off < size ? len - (size_t)off : size;
		rfuse_reply_buf(req, l->info.data + off, part);
		return;
	}
	if (kind != STORE_BLOB_FILE) {
		rfuse_reply_err(req, EINVAL);
		return;
	}
	if (off >= (uint64_t)l->size || size == 0) {
		rfuse_reply_buf(req, NULL, 0);
		return;
	}
	size_t len = (uint64_t)l->size - off < size ? (size_t)((uint64_t)l->size - off) : size;
	cleanup_free void *buf = malloc(len);
	struct rs_error err = {0};
	if (!buf) {
		rfuse_reply_err(req, ENOMEM);
	} else if (store_blob_read(s, l, (int64_t)off, len, buf, &err) < 0) {
		rs_log(RS_LOG_ERROR, "store: blob %s [%llu, +%zu): %s", l->digest,
		       (unsigned long long)off, len, err.msg);
		rfuse_reply_err(req, EIO);
	} else {
		rfuse_reply_buf(req, buf, len);
	}
}

/* Offsets: 1 and 2 follow "." and "..", i + 3 follows the node at table
 * index i, so an offset stays valid: nodes are never removed. */
static void op_readdir(struct rfuse_req *req, uint64_t id, uint64_t fh, uint64_t off, uint32_t size)
{
	(void)fh;
	struct store *s = store_of(req);
	cleanup_free char *buf = malloc(size ? size : 1);
	if (!buf) {
		rfuse_reply_err(req, ENOMEM);
		return;
	}
	struct rfuse_dirbuf db;
	rfuse_dirbuf_init(&db, buf, size);
	pthread_mutex_lock(&s->lock);
	struct store_node *n = store_node_get(s, id);
	if (!n || (n->kind != STORE_ROOT && n->kind != STORE_REF && n->kind != STORE_LAYER)) {
		pthread_mutex_unlock(&s->lock);
		rfuse_reply_err(req, n ? ENOTDIR : ENOENT);
		return;
	}
	uint64_t parent = n->parent ? n->parent : FUSE_ROOT_ID;
	for (uint64_t k = off; k < (uint64_t)s->nnodes + 3; k++) {
		bool fits;
		if (k < 2) {
			fits = rfuse_dirbuf_add(&db, k == 0 ? "." : "..", k + 1,
						k == 0 ? id : parent, S_IFDIR, k + 1);
		} else if (k == 2) {
			continue;
		} else {
			struct store_node *c = &s->nodes[k - 3];
			if (c->parent != id || !c->name)
				continue;
			struct stat st;
			fill_stat(s, k - 2, c, &st);
			fits = rfuse_dirbuf_add(&db, c->name, strlen(c->name), k - 2, st.st_mode,
						k + 1);
		}
		if (!fits)
			break;
	}
	pthread_mutex_unlock(&s->lock);
	rfuse_reply_buf(req, buf, db.len);
}

/* containers/storage creates `use` to say it uses the layer. */
static void op_create(struct rfuse_req *req, uint64_t parent, const char *name, uint32_t flags,
		      uint32_t mode)
{
	(void)flags;
	(void)mode;
	struct store *s = store_of(req);
	pthread_mutex_lock(&s->lock);
	struct store_node *p = store_node_get(s, parent);
	bool use = p && p->kind == STORE_LAYER && strcmp(name, STORE_USE) == 0;
	uint64_t uses = 0;
	char digest[RS_DIGEST_STR_LEN] = "";
	if (use) {
		uses = ++p->layer->uses;
		snprintf(digest, sizeof(digest), "%s", p->layer->digest);
	}
	pthread_mutex_unlock(&s->lock);
	if (use)
		rs_log(RS_LOG_INFO, "store: %s in use (%llu)", digest, (unsigned long long)uses);
	/* ENOENT tells containers/storage that the store counted it. */
	rfuse_reply_err(req, use ? ENOENT : EROFS);
}

/* ... and removes the layer directory to say it let go of it. The release
 * that brings a layer's uses to zero (`podman rmi`) drops its directory
 * (a later lookup resolves it anew) and, with no other directory on it, its
 * mount. */
static void op_rmdir(struct rfuse_req *req, uint64_t parent, const char *name)
{
	struct store *s = store_of(req);
	/* No resolution may mount this blob while its mount is being closed. */
	pthread_mutex_lock(&s->resolve_lock);
	pthread_mutex_lock(&s->lock);
	struct store_node *p = store_node_get(s, parent);
	uint64_t id = p && p->kind == STORE_REF ? store_child(s, parent, name) : 0;
	struct store_node *n = id ? store_node_get(s, id) : NULL;
	struct store_layer *l = n ? n->layer : NULL;
	uint64_t uses = 0;
	bool drop = false;
	if (l && l->uses > 0) {
		uses = --l->uses;
		drop = uses == 0;
	}
	if (drop) {
		l->gone = true;
		free(n->name);
		n->name = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (drop)
		store_mount_put(s, l);
	pthread_mutex_unlock(&s->resolve_lock);
	if (l)
		rs_log(RS_LOG_INFO, "store: %s released (%llu in use)", name,
		       (unsigned long long)uses);
	rfuse_reply_err(req, ENOENT);
	/* After the reply: the kernel holds the directory's lock until then.
	 * Its cached entry goes, so the next lookup reaches the store. */
	if (drop)
		(void)rfuse_notify_inval_entry(s->se, parent, name, strlen(name));
}

static void op_statfs(struct rfuse_req *req, uint64_t id)
{
	(void)id;
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_namemax = 255;
	rfuse_reply_statfs(req, &sv);
}

const struct rfuse_ops store_ops = {
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .readdir = op_readdir,
    .statfs = op_statfs,
    .create = op_create,
    .rmdir = op_rmdir,
};
