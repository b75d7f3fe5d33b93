/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/convert: image endpoints (registry or OCI layout), documents,
 * platforms, temp files and the per-layer step. */
#ifndef CONV_CONVERT_INTERNAL_H
#define CONV_CONVERT_INTERNAL_H

#include <jansson.h>

#include "convert.h"
#include "estargz/estargz.h"

/* Bounds for what a source hands us. */
#define CONV_MAX_MANIFEST (4 << 20)    /* manifest or index JSON */
#define CONV_MAX_CONFIG (32 << 20)     /* image config JSON */
#define CONV_MAX_INDEX_JSON (16 << 20) /* an OCI layout's index.json */
#define CONV_MAX_LAYERS 4096
#define CONV_MAX_MANIFESTS 4096

/* ---- documents (manifests, indexes) --------------------------------------- */

/* A manifest or index as fetched: the raw bytes (verified against digest) and
 * their parse. */
struct conv_doc {
	char media_type[96];
	char digest[RS_DIGEST_STR_LEN];
	struct rs_buf raw;
	json_t *json;
};

/* Parses d->raw; the media type comes from the JSON, else hint, else the shape
 * (a "manifests" array makes an index). Checks it is a manifest or index. */
int conv_doc_parse(struct conv_doc *d, const char *hint, const char *what, struct rs_error *err);
void conv_doc_free(struct conv_doc *d);
bool conv_mt_is_index(const char *mt);
bool conv_mt_is_manifest(const char *mt);
bool conv_mt_is_docker(const char *mt);

/* A descriptor's fields, checked: digest is "sha256:<hex>", size >= 0. */
int conv_desc_get(json_t *desc, const char **media_type, const char **digest, int64_t *size,
		  const char *what, struct rs_error *err);
/* An annotation's value, or NULL. */
const char *conv_desc_annotation(json_t *desc, const char *key);
int conv_desc_set_annotation(json_t *desc, const char *key, const char *value);
void conv_desc_del_annotation(json_t *desc, const char *key);

/* Serialises compactly into a freshly allocated buffer and digests it. */
int conv_json_dump(json_t *j, struct rs_buf *out, char digest[RS_DIGEST_STR_LEN],
		   struct rs_error *err);

/* ---- platforms -------------------------------------------------------------- */

/* "os/arch[/variant]" of an index entry's platform object ("" when absent). */
void conv_platform_format(json_t *platform, char *out, size_t n);

/* The image manifests of an index: the one that fits want best (by
 * reg_platform_rank; NULL fields: the host's), or (want NULL) all, skipping
 * nested indexes and attestation manifests (os "unknown"). */
int conv_index_select(const char *name, struct conv_doc *idx, const struct reg_platform *want,
		      json_t **out, struct rs_error *err);

/* ---- temp files and fds ------------------------------------------------------ */

/* An unlinked temp file in $TMPDIR (or /tmp). */
int conv_tmpfile(int *fd, struct rs_error *err);
/* sha256 and size of everything in fd from offset 0 (pread: offset unchanged). */
int conv_fd_digest(int fd, char digest[RS_DIGEST_STR_LEN], int64_t *size, struct rs_error *err);
/* Reads the whole fd from offset 0 into out, at most max bytes. */
int conv_fd_read_all(int fd, size_t max, struct rs_buf *out, struct rs_error *err);
/* Writes all of data at the current offset. */
int conv_write_all(int fd, const void *data, size_t len, struct rs_error *err);
/* A random-access reader over fd (which it dups). */
int conv_fd_reader(int fd, struct esgz_reader *r, struct rs_error *err);
/* Uncompressed size and sha256 (the diffID) of a gzip, zstd or plain tar blob. */
int conv_uncompressed(int fd, int64_t *size, char diff_id[RS_DIGEST_STR_LEN], struct rs_error *err);

/* ---- OCI image layouts -------------------------------------------------------- */

struct conv_layout;

/* Splits "oci:DIR[:TAG]" (the first ':' after "oci:" starts the tag, as skopeo
 * does). Returns 1 when spec is a layout, 0 when it is not (a registry
 * reference), negative on a malformed layout spec. */
int conv_layout_spec(const char *spec, char **dir, char **tag, struct rs_error *err);
/* Opens DIR; with create, makes it (and oci-layout, blobs/sha256) when missing. */
int conv_layout_open(const char *dir, const char *tag, bool create, struct conv_layout **out,
		     struct rs_error *err);
void conv_layout_free(struct conv_layout *l);
/* The manifest or index the tag names (the only image when there is no tag).
 * Several entries with the tag make a synthetic index. */
int conv_layout_root(struct conv_layout *l, struct conv_doc *out, struct rs_error *err);
/* Opens a blob after checking its size (when size >= 0) and digest. */
int conv_layout_blob_open(struct conv_layout *l, const char *digest, int64_t size, int *fd,
			  struct rs_error *err);
/* A reader over a blob, unverified (for footer and TOC checks, which verify
 * what they read themselves). */
int conv_layout_blob_reader(struct conv_layout *l, const char *digest, int64_t size,
			    struct esgz_reader *r, struct rs_error *err);
int conv_layout_blob_exists(struct conv_layout *l, const char *digest, int64_t size, bool *exists,
			    struct rs_error *err);
/* Copies size bytes of fd (from offset 0) into blobs/ under digest, checking
 * the digest, atomically. */
int conv_layout_blob_put(struct conv_layout *l, const char *digest, int fd, int64_t size,
			 struct rs_error *err);
/* Points the tag (in index.json) at a manifest or index, replacing any entry
 * with the same tag. */
int conv_layout_tag(struct conv_layout *l, const char *media_type, const char *digest, int64_t size,
		    struct rs_error *err);

/* ---- image endpoints: one interface over registry and layout ---------------------- */

struct conv_image {
	char *name;                 /* as the user gave it, for messages */
	struct conv_layout *layout; /* layout, or NULL for a registry */
	struct reg_client *client;
	struct reg_ref ref;
	bool have_ref;
};

/* for_write: the layout is created when missing; a registry reference must
 * name a tag. */
int conv_image_open(const char *spec, const struct reg_options *ro, bool for_write,
		    struct conv_image **out, struct rs_error *err);
void conv_image_free(struct conv_image *im);
/* The manifest or index the name refers to. */
int conv_image_root(struct conv_image *im, struct conv_doc *out, struct rs_error *err);
/* A manifest by digest (verified). */
int conv_image_manifest(struct conv_image *im, const char *digest, const char *mt_hint,
			struct conv_doc *out, struct rs_error *err);
/* A small blob (a config) into memory, verified, at most max bytes. */
int conv_image_blob_mem(struct conv_image *im, const char *digest, int64_t size, size_t max,
			struct rs_buf *out, struct rs_error *err);
/* A blob as an fd at offset 0, verified (a temp file for a registry). */
int conv_image_blob_fd(struct conv_image *im, const char *digest, int64_t size, int *fd,
		       struct rs_error *err);
int conv_image_blob_reader(struct conv_image *im, const char *digest, int64_t size,
			   struct esgz_reader *r, struct rs_error *err);
int conv_image_blob_exists(struct conv_image *im, const char *digest, int64_t size, bool *exists,
			   struct rs_error *err);
/* Writes a blob from fd (offset 0). mount_from: a repository on the same
 * registry to mount from first, or NULL. */
int conv_image_put_blob(struct conv_image *im, const char *digest, int fd, int64_t size,
			const char *mount_from, struct rs_error *err);
int conv_image_put_blob_mem(struct conv_image *im, const char *digest, const void *data, size_t len,
			    struct rs_error *err);
/* Writes a manifest or index; tag: under the image's tag (else by digest only). */
int conv_image_put_manifest(struct conv_image *im, const char *media_type, const char *digest,
			    const void *data, size_t len, bool tag, struct rs_error *err);
/* The repository path to mount from when src and dst share a registry. */
const char *conv_image_mount_source(const struct conv_image *src, const struct conv_image *dst);

/* ---- layers ------------------------------------------------------------------- */

struct conv_ctx {
	const struct conv_options *o;
	struct conv_image *src, *dst;
	const struct conv_progress *progress;
	bool docker_types; /* write docker media types */
	const char *mount_from;
	struct conv_result *res;
	/* layers already done (shared between platforms): source digest -> result */
	struct conv_done {
		char src_digest[RS_DIGEST_STR_LEN];
		json_t *desc;
		char diff_id[RS_DIGEST_STR_LEN];
		enum conv_layer_action action;
	} * done;
	size_t n_done;
};

/* Turns one source layer descriptor into the destination's (kept or rebuilt)
 * and writes the blob to the destination. diff_id is the source config's
 * diffID for the layer; new_diff_id receives the new one. */
int conv_layer(struct conv_ctx *cx, json_t *src_desc, const char *diff_id, size_t i, size_t n,
	       const char *platform, json_t **new_desc, char new_diff_id[RS_DIGEST_STR_LEN],
	       struct rs_error *err);

#endif
