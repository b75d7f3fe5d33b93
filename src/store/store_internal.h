/* SPDX-License-Identifier: Apache-2.0 */
/* Private to store: the node table, image references, layers and their mounts. */
#ifndef STORE_STORE_INTERNAL_H
#define STORE_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "fuse/rfuse.h"
#include "store.h"

/* The file names of a layer directory, as containers/storage names them. */
#define STORE_DIFF "diff"
#define STORE_INFO "info"
#define STORE_BLOB "blob"
#define STORE_USE "use"

/* Nodes are never forgotten (a store holds few); this bounds the table. */
#define STORE_MAX_NODES 65536
/* A reference longer than this is not one (the docker grammar allows 255
 * for a name, plus a tag and a digest). */
#define STORE_REF_MAX 512

enum store_kind {
	STORE_ROOT,
	STORE_REF,   /* MOUNTPOINT/<base64 ref> */
	STORE_LAYER, /* .../<digest> */
	STORE_DIFF_LINK,
	STORE_INFO_FILE,
	STORE_BLOB_FILE,
};

/* A layer blob mounted with layerfs, shared by every reference naming it.
 * Kept until the store stops, even once unmounted: nodes of a released layer
 * directory may still name its path. */
struct store_mount {
	struct store_mount *next;
	char digest[RS_DIGEST_STR_LEN];
	struct lfs_layer *layer; /* NULL once unmounted */
	char *path;              /* ROOT/mnt/<hex> */
	uint32_t users;          /* layer directories on it, under the store's lock */
};

/* An image reference as looked up, with its manifest once resolved. */
struct store_ref {
	char *ref; /* as decoded */
	struct reg_ref parsed;
	bool resolved; /* m and diff_ids hold the image */
	struct reg_manifest m;
	struct reg_diff_id *diff_ids; /* m.n_layers */
};

/* A layer directory: one layer of one reference. */
struct store_layer {
	struct store_ref *ref;
	struct store_mount *mnt;
	char digest[RS_DIGEST_STR_LEN];
	int64_t size;       /* the blob's, from the manifest */
	struct rs_buf info; /* the info file */
	uint64_t uses;      /* `use` creations minus releases, under the store's lock */
	bool gone;          /* released to zero: its directory is found no more */
};

struct store_node {
	enum store_kind kind;
	uint64_t parent;           /* node id */
	char *name;                /* NULL for the root */
	struct store_ref *ref;     /* STORE_REF */
	struct store_layer *layer; /* STORE_LAYER and its files */
};

struct store {
	struct store_opts o;
	char *mountpoint, *root, *mnt_dir;
	struct rfuse_session *se;
	int fuse_fd;
	int stop_fd; /* eventfd: the workers stop */
	pthread_t *workers;
	int nworkers;

	/* Guards nodes, the layers' use counts and mounts. Resolving a layer
	 * (registry requests, a mount) runs under resolve_lock instead, so
	 * lookups of known nodes never wait on the network. */
	pthread_mutex_t lock;
	struct store_node *nodes; /* node id n is nodes[n - 1]; the root is 1 */
	uint32_t nnodes, cap;
	struct store_mount *mounts;
	pthread_mutex_t resolve_lock;
};

/* ---- store.c: the node table, under s->lock ----------------------------- */
/* The node of id, or NULL. */
struct store_node *store_node_get(struct store *s, uint64_t id);
/* The child of parent called name, or 0. */
uint64_t store_child(struct store *s, uint64_t parent, const char *name);
/* Adds a node (name copied); its id, or 0 when full or out of memory. */
uint64_t store_node_add(struct store *s, enum store_kind kind, uint64_t parent, const char *name,
			struct store_ref *ref, struct store_layer *layer);

/* ---- resolve.c ------------------------------------------------------------ */
/* The layer digest of reference ref as a store layer, mounted: 0, or a
 * negative errno with the reason (the lookup then answers ENOENT). Under
 * s->resolve_lock; takes s->lock itself where it touches shared state. */
int store_resolve_layer(struct store *s, struct store_ref *ref, const char *digest,
			struct store_layer **out, struct rs_error *err);
void store_ref_free(struct store_ref *r);
void store_layer_free(struct store_layer *l);
/* Closes every layer mount (unmounting it) and removes its directory. */
void store_mounts_close(struct store *s);
/* Under s->resolve_lock: l, released to zero, no longer holds its mount;
 * the last layer directory on it unmounts it. */
void store_mount_put(struct store *s, struct store_layer *l);
/* Bytes [off, off + len) of the layer's blob from the registry into buf. */
int store_blob_read(struct store *s, struct store_layer *l, int64_t off, size_t len, void *buf,
		    struct rs_error *err);

/* ---- ops.c ------------------------------------------------------------------ */
extern const struct rfuse_ops store_ops;

#endif
