/* SPDX-License-Identifier: Apache-2.0 */
/* client: a containerd client over gRPC (the gRPC core C API and the
 * protoc-c messages of src/proto), with what a pull needs: leases, content,
 * snapshots, diff and images. On top of it, ctrd_rpull pulls an image into
 * containerd the way containerd's own pull-and-unpack does, so that a remote
 * snapshotter can mount its layers lazily.
 *
 * Every call carries the client's namespace (`containerd-namespace`) and,
 * when one is set, its lease (`containerd-lease`), and ends by a deadline.
 * Errors are negative errno values mapped from the gRPC status, whose name
 * and details are in the message:
 *   NOT_FOUND -ENOENT          ALREADY_EXISTS -EEXIST     INVALID_ARGUMENT -EINVAL
 *   UNAVAILABLE -EAGAIN        DEADLINE_EXCEEDED -ETIMEDOUT
 *   FAILED_PRECONDITION -EBUSY UNIMPLEMENTED -ENOSYS      PERMISSION_DENIED -EACCES
 *   CANCELLED -ECANCELED       OUT_OF_RANGE -ERANGE       anything else -EIO
 * A client is used by one thread at a time. */
#ifndef CTRD_CLIENT_H
#define CTRD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/registry.h"
#include "util/util.h"

#define CTRD_DEFAULT_ADDRESS "/run/containerd/containerd.sock"
#define CTRD_DEFAULT_NAMESPACE "default"

/* Labels containerd's pull and the remote snapshotter protocol use. */
#define CTRD_LABEL_SNAPSHOT_REF "containerd.io/snapshot.ref"
#define CTRD_LABEL_GC_EXPIRE "containerd.io/gc.expire"
#define CTRD_LABEL_GC_CONFIG "containerd.io/gc.ref.content.config"
#define CTRD_LABEL_GC_LAYER_PREFIX "containerd.io/gc.ref.content.l."
#define CTRD_LABEL_GC_MANIFEST_PREFIX "containerd.io/gc.ref.content.m."
#define CTRD_LABEL_GC_SNAPSHOT_PREFIX "containerd.io/gc.ref.snapshot."
#define CTRD_LABEL_UNCOMPRESSED "containerd.io/uncompressed"
#define CTRD_LABEL_DIST_SOURCE_PREFIX "containerd.io/distribution.source."
#define CTRD_LABEL_STARGZ_REF "containerd.io/snapshot/remote/stargz.reference"
#define CTRD_LABEL_STARGZ_DIGEST "containerd.io/snapshot/remote/stargz.digest"
#define CTRD_LABEL_STARGZ_LAYERS "containerd.io/snapshot/remote/stargz.layers"
#define CTRD_LABEL_REMOTE_URLS "containerd.io/snapshot/remote/urls"
/* Ours, for our daemon: "digest=N,..." for the layers in stargz.layers whose
 * TOC position is annotated, N the bytes from the TOC's start to the blob's
 * end (what the daemon's first range request then asks for). Under
 * containerd.io/snapshot/: containerd hands a snapshotter no other labels. */
#define CTRD_LABEL_TOC_TAILS "containerd.io/snapshot/remote-snapshotter.toc-tails"
/* Layer annotations under this prefix become snapshot labels (containerd's
 * snapshots.FilterInheritedLabels), e.g. containerd.io/snapshot/stargz/toc.digest. */
#define CTRD_LABEL_INHERITED_PREFIX "containerd.io/snapshot/"
/* containerd refuses a label whose key and value together exceed this. */
#define CTRD_LABEL_MAX 4096

/* A label or annotation. Inputs are borrowed; outputs are owned (ctrd_kv_free). */
struct ctrd_kv {
	char *key;
	char *value;
};
void ctrd_kv_free(struct ctrd_kv *v, size_t n);
const char *ctrd_kv_get(const struct ctrd_kv *v, size_t n, const char *key);

/* ---- client ------------------------------------------------------------- */

struct ctrd_options {
	const char *address;   /* unix socket path; NULL: CTRD_DEFAULT_ADDRESS */
	const char *namespace; /* NULL: CTRD_DEFAULT_NAMESPACE */
	long timeout_ms;       /* each call; 0: 60000 */
	long long_timeout_ms;  /* content writes and diff Apply, which grow with the
				  layer; 0: 3600000 */
};

struct ctrd_client;

/* Sets up the channel; nothing is sent yet, so an unreachable containerd
 * shows at the first call (-EAGAIN). */
int ctrd_client_new(const struct ctrd_options *o, struct ctrd_client **out, struct rs_error *err);
void ctrd_client_free(struct ctrd_client *c);
/* Later calls carry this lease (NULL: none). */
int ctrd_client_set_lease(struct ctrd_client *c, const char *lease_id, struct rs_error *err);

/* ---- leases ------------------------------------------------------------- */

/* Creates a lease; id NULL: a random one. expire_s > 0 adds the label
 * containerd.io/gc.expire = now + expire_s (RFC 3339), as containerd's
 * client.WithLease does (24 h). *id_out (caller frees) gets the lease's id. */
int ctrd_lease_create(struct ctrd_client *c, const char *id, long expire_s,
		      const struct ctrd_kv *labels, size_t n, char **id_out, struct rs_error *err);
/* sync: wait for the garbage collection the deletion triggers. */
int ctrd_lease_delete(struct ctrd_client *c, const char *id, bool sync, struct rs_error *err);

/* ---- content ------------------------------------------------------------ */

struct ctrd_content_info {
	char digest[RS_DIGEST_STR_LEN];
	int64_t size;
	struct ctrd_kv *labels;
	size_t n_labels;
};
void ctrd_content_info_free(struct ctrd_content_info *i);

int ctrd_content_info(struct ctrd_client *c, const char *digest, struct ctrd_content_info *out,
		      struct rs_error *err);
/* Sets (or replaces) these labels, leaving the others alone. */
int ctrd_content_update_labels(struct ctrd_client *c, const char *digest,
			       const struct ctrd_kv *labels, size_t n, struct rs_error *err);
/* Drops the partial ingest named ref (-ENOENT when there is none). */
int ctrd_content_abort(struct ctrd_client *c, const char *ref, struct rs_error *err);

/* A small blob in one Write stream: WRITE messages (the first carries ref,
 * expected digest and total), then COMMIT with labels. -EEXIST when the
 * content is there already (containerd then adds it to the lease; its labels
 * are left as they were). */
int ctrd_content_write(struct ctrd_client *c, const char *ref, const char *expected,
		       const void *data, size_t len, const struct ctrd_kv *labels, size_t n,
		       struct rs_error *err);

/* The Write stream for large blobs, data sent as it comes. */
struct ctrd_writer;
/* Opens the stream with a STAT message naming ref, expected and total, so
 * content that is there already shows before a byte is sent: -EEXIST (and
 * containerd adds it to the lease). A partial ingest under ref is restarted. */
int ctrd_writer_open(struct ctrd_client *c, const char *ref, const char *expected, int64_t total,
		     struct ctrd_writer **out, struct rs_error *err);
/* Sends data in messages of at most 1 MiB. */
int ctrd_writer_write(struct ctrd_writer *w, const void *data, size_t len, struct rs_error *err);
/* COMMIT with labels; containerd checks size and digest. -EEXIST when another
 * writer committed the same content meanwhile. */
int ctrd_writer_commit(struct ctrd_writer *w, const struct ctrd_kv *labels, size_t n,
		       struct rs_error *err);
int64_t ctrd_writer_offset(const struct ctrd_writer *w);
/* Ends the stream (cancelled when not committed; the partial ingest stays
 * under its ref until ctrd_content_abort). */
void ctrd_writer_free(struct ctrd_writer *w);

/* ---- snapshots ------------------------------------------------------------ */

struct ctrd_mount {
	char *type;
	char *source;
	char *target;
	char **options;
	size_t n_options;
};
struct ctrd_mounts {
	struct ctrd_mount *v;
	size_t n;
};
void ctrd_mounts_free(struct ctrd_mounts *m);

enum ctrd_snapshot_kind {
	CTRD_KIND_UNKNOWN = 0,
	CTRD_KIND_VIEW = 1,
	CTRD_KIND_ACTIVE = 2,
	CTRD_KIND_COMMITTED = 3,
};

struct ctrd_snapshot_info {
	char *name;
	char *parent; /* "" when none */
	enum ctrd_snapshot_kind kind;
	struct ctrd_kv *labels;
	size_t n_labels;
};
void ctrd_snapshot_info_free(struct ctrd_snapshot_info *i);

/* parent NULL or "": none. out may be NULL. -EEXIST from a remote
 * snapshotter means "the target (label containerd.io/snapshot.ref) is there". */
int ctrd_snapshot_prepare(struct ctrd_client *c, const char *snapshotter, const char *key,
			  const char *parent, const struct ctrd_kv *labels, size_t n,
			  struct ctrd_mounts *out, struct rs_error *err);
int ctrd_snapshot_commit(struct ctrd_client *c, const char *snapshotter, const char *name,
			 const char *key, const struct ctrd_kv *labels, size_t n,
			 struct rs_error *err);
int ctrd_snapshot_stat(struct ctrd_client *c, const char *snapshotter, const char *key,
		       struct ctrd_snapshot_info *out, struct rs_error *err);
int ctrd_snapshot_remove(struct ctrd_client *c, const char *snapshotter, const char *key,
			 struct rs_error *err);

/* ---- diff ----------------------------------------------------------------- */

struct ctrd_descriptor {
	const char *media_type;
	const char *digest;
	int64_t size;
	const struct ctrd_kv *annotations;
	size_t n_annotations;
};

/* Applies the layer desc (read from the content store) onto mounts with the
 * default applier; applied (RS_DIGEST_STR_LEN bytes, may be NULL) receives
 * the digest of the uncompressed layer (its diffID). */
int ctrd_diff_apply(struct ctrd_client *c, const struct ctrd_descriptor *desc,
		    const struct ctrd_mounts *mounts, char *applied, struct rs_error *err);

/* ---- images --------------------------------------------------------------- */

struct ctrd_image {
	const char *name;
	struct ctrd_descriptor target;
	const struct ctrd_kv *labels;
	size_t n_labels;
};

int ctrd_image_create(struct ctrd_client *c, const struct ctrd_image *img, struct rs_error *err);
/* Replaces the record's target and labels. */
int ctrd_image_update(struct ctrd_client *c, const struct ctrd_image *img, struct rs_error *err);
/* Create; on -EEXIST Update (and Create again if it vanished meanwhile), as
 * containerd's client does. *created (may be NULL) tells which happened. */
int ctrd_image_put(struct ctrd_client *c, const struct ctrd_image *img, bool *created,
		   struct rs_error *err);

/* ---- rpull ---------------------------------------------------------------- */

enum ctrd_layer_action {
	CTRD_LAYER_EXISTS,     /* its snapshot was there already */
	CTRD_LAYER_LAZY,       /* the snapshotter mounted it remotely (Prepare: ALREADY_EXISTS) */
	CTRD_LAYER_DOWNLOADED, /* fetched from the registry, applied, committed */
	CTRD_LAYER_APPLIED,    /* its blob was in the content store; applied, committed */
};
const char *ctrd_layer_action_name(enum ctrd_layer_action a);

struct ctrd_rpull_layer {
	char digest[RS_DIGEST_STR_LEN];
	char diff_id[RS_DIGEST_STR_LEN];
	char chain_id[RS_DIGEST_STR_LEN];
	const char *media_type; /* points into the manifest; valid during on_layer only */
	enum ctrd_layer_action action;
	int64_t size;    /* blob size from the manifest */
	int64_t fetched; /* bytes downloaded from the registry */
	double seconds;
};

struct ctrd_rpull_opts {
	const char *ref;                     /* "host/repo:tag", "...@sha256:..." */
	const char *address;                 /* NULL: CTRD_DEFAULT_ADDRESS */
	const char *namespace;               /* NULL: CTRD_DEFAULT_NAMESPACE */
	const char *snapshotter;             /* NULL: "stargz" */
	const struct reg_options *reg;       /* NULL: defaults */
	const struct reg_platform *platform; /* NULL: this host's */
	long timeout_ms;                     /* each containerd call; 0: 60000 */
	/* Called after each layer, bottom first (may be NULL). */
	void (*on_layer)(void *ctx, size_t i, size_t n, const struct ctrd_rpull_layer *l);
	void *ctx;
};

struct ctrd_rpull_result {
	char *name; /* the image record's name: the normalised reference */
	char target_digest[RS_DIGEST_STR_LEN]; /* the index's, or the manifest's */
	char manifest_digest[RS_DIGEST_STR_LEN];
	char config_digest[RS_DIGEST_STR_LEN];
	char chain_id[RS_DIGEST_STR_LEN]; /* the top layer's snapshot */
	struct ctrd_rpull_layer *layers;
	size_t n_layers;
	bool image_created; /* false: an existing record was updated */
	double seconds;
};
void ctrd_rpull_result_free(struct ctrd_rpull_result *r);

/* Pulls ref into containerd as its own pull with unpack does, under a lease
 * that expires in 24 h and is deleted at the end: the index (if any),
 * manifest and config go to the content store with containerd's gc labels;
 * each layer is Prepared with the remote snapshotter labels, so a remote
 * snapshotter answers ALREADY_EXISTS (lazy, nothing downloaded); any other
 * layer is downloaded into the content store, applied and committed under
 * its chainID. Last, the image record is created or updated. */
int ctrd_rpull(const struct ctrd_rpull_opts *o, struct ctrd_rpull_result *out,
	       struct rs_error *err);

/* chainID of layers 0..i: chain[0] = diff_ids[0], chain[i] =
 * sha256(chain[i-1] + " " + diff_ids[i]) (OCI image-spec identity.ChainID). */
void ctrd_chain_id(const char *parent_chain, const char *diff_id, char out[RS_DIGEST_STR_LEN]);

#endif
