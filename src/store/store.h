/* SPDX-License-Identifier: Apache-2.0 */
/* store: an additional layer store for containers/storage (podman, CRI-O).
 *
 * One FUSE filesystem, mounted where storage.conf's
 * `additionallayerstores = ["MOUNTPOINT:ref"]` points, laid out as
 * containers/storage looks layers up:
 *
 *   MOUNTPOINT/<base64 of the image reference>/<layer blob digest>/
 *       diff  the layer's tree (a symlink to the layer's lazy layerfs mount)
 *       info  the layer as containers/storage's JSON: digests, sizes, compression
 *       blob  the compressed blob, read from the registry by range
 *
 * A layer is resolved on the first lookup of its directory: the image's
 * manifest and config, the layer's TOC checked against its TOC digest
 * annotation, then a layerfs mount under ROOT/mnt. A layer that is not eStargz
 * (no TOC digest annotation) or fails any step is not there (ENOENT), and
 * containers/storage pulls it the ordinary way. Creating `use` in a layer
 * directory counts a use, removing the directory a release (both answer
 * ENOENT, as containers/storage expects of a store that counts). */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "layerfs/layerfs.h"
#include "registry/registry.h"
#include "util/util.h"

struct store_opts {
	const char *mountpoint;    /* an existing directory */
	const char *root;          /* the store's own directory: ROOT/mnt holds the layer mounts */
	struct reg_client *client; /* shared; outlives the store */
	struct lfs_runtime *rt;    /* shared; outlives the store */
	int workers;               /* threads serving the store's FUSE requests; 0: 4 */
	bool no_prefetch;          /* layers skip the prefetch of landmarked files */
	bool no_background;        /* layers skip the background fetch */
	long read_timeout_ms;      /* a layer read not served by then gets EIO; 0: 30000 */
};

struct store;

/* Mounts the store at o->mountpoint and serves it on o->workers threads. */
int store_start(const struct store_opts *o, struct store **out, struct rs_error *err);
/* Stops serving, unmounts the store and every layer it mounted, frees. */
void store_stop(struct store *s);

/* The image reference a store directory name (base64, standard alphabet,
 * padded) stands for, into out (NUL-terminated): 0, or -ENOENT for a name
 * that is not base64 of a printable reference that fits. */
int store_ref_decode(const char *name, char *out, size_t cap);

/* What one layer's `info` file holds: the fields containers/storage reads
 * from it (compressed-diff-digest, compressed-size, diff-digest, diff-size
 * when known, compression), as one JSON object. */
struct store_layer_info {
	const char *digest;        /* the blob's, sha256:... */
	int64_t size;              /* the blob's */
	const char *diff_id;       /* the uncompressed tar's, sha256:... */
	int64_t uncompressed_size; /* < 0: unknown (left out) */
	bool zstd;                 /* zstd (4) rather than gzip (2) */
};
int store_info_json(const struct store_layer_info *i, struct rs_buf *out);

#endif
