/* SPDX-License-Identifier: Apache-2.0 */
/* registry: an OCI distribution client. References, hosts (certs.d/hosts.toml:
 * mirrors, TLS, plain HTTP), auth (bearer tokens, basic, docker credentials),
 * resolve (manifests, indexes, platforms), blobs (range reads), push.
 * Every reply from a registry is untrusted: sizes are bounded, anything
 * fetched by digest is verified against it. Credentials never appear in
 * error messages or logs. */
#ifndef REG_REGISTRY_H
#define REG_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Filled by reg_blob_reader*: estargz's reader interface, declared there. */
struct esgz_reader;

/* ---- media types -------------------------------------------------------- */

#define REG_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define REG_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define REG_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define REG_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define REG_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define REG_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define REG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REG_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define REG_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define REG_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* ---- references --------------------------------------------------------- */

/* A parsed image reference, by the docker reference grammar:
 * "ubuntu" -> docker.io/library/ubuntu:latest; "host:5000/a/b@sha256:..";
 * "[::1]:5000/x:tag". */
struct reg_ref {
	char *domain; /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char *path;   /* "library/ubuntu" */
	char *tag;    /* NULL when only a digest was given */
	char *digest; /* "sha256:...", or NULL */
};

int reg_ref_parse(const char *s, struct reg_ref *out, struct rs_error *err);
void reg_ref_free(struct reg_ref *r);
/* "domain/path:tag@digest" (tag and digest as present); caller frees. */
char *reg_ref_string(const struct reg_ref *r);
/* The tag, else the digest: what a manifest request names. */
const char *reg_ref_reference(const struct reg_ref *r);

/* ---- client ------------------------------------------------------------- */

struct reg_options {
	const char *hosts_dir;     /* certs.d layout; NULL: /etc/containerd/certs.d */
	bool plain_http;           /* plain HTTP for every host (tests, local registries) */
	const char *docker_config; /* config.json; NULL: $DOCKER_CONFIG, ~/.docker */
	long timeout_ms;           /* each request; 0: 30000 */
	int retries;               /* on 5xx and connection errors; 0: 4, -1: none */
	const char *user_agent;    /* NULL: "remote-snapshotter/VERSION" */
	/* Files in the same format (containers' auth.json) tried first, in
	 * order; the first that has credentials for a host gives them. A file
	 * that does not exist is passed by. */
	const char *const *auth_files;
	size_t n_auth_files;
};

struct reg_client;

/* The auth.json files podman and skopeo read, in containers/image's order
 * (before the docker config): $REGISTRY_AUTH_FILE, else
 * $XDG_RUNTIME_DIR/containers/auth.json, else /run/containers/<uid>/auth.json;
 * then $XDG_CONFIG_HOME/containers/auth.json (~/.config without it). Into
 * *paths (*n of them; reg_auth_files_free). -ENOMEM. */
int reg_containers_auth_files(char ***paths, size_t *n);
void reg_auth_files_free(char **paths, size_t n);

int reg_client_new(const struct reg_options *o, struct reg_client **out, struct rs_error *err);
void reg_client_free(struct reg_client *c);
/* Shutdown: every request in progress ends within about a second and every
 * later one fails at once (-ECANCELED), so no thread waits out a timeout on a
 * dead network. Cannot be undone. */
void reg_client_cancel(struct reg_client *c);

/* ---- manifests ---------------------------------------------------------- */

struct reg_kv {
	char *key;
	char *value;
};

struct reg_descriptor {
	char *media_type;
	char *digest;
	int64_t size;
	struct reg_kv *annotations;
	size_t n_annotations;
	char *os, *arch, *variant; /* index entries only */
};

/* A manifest or index as fetched (raw bytes kept, digest verified). */
struct reg_manifest {
	char *media_type;
	char *digest; /* sha256 of raw */
	struct rs_buf raw;
	/* image manifest */
	struct reg_descriptor config;
	struct reg_descriptor *layers;
	size_t n_layers;
	/* index / manifest list */
	struct reg_descriptor *manifests;
	size_t n_manifests;
	struct reg_kv *annotations;
	size_t n_annotations;
};

struct reg_platform {
	const char *os;      /* NULL: linux */
	const char *arch;    /* NULL: this host's, in GOARCH terms (amd64, arm64, ...) */
	const char *variant; /* NULL: any */
};

/* Parses "os/arch[/variant]"; p's strings point into *storage (caller frees). */
int reg_platform_parse(const char *s, struct reg_platform *p, char **storage, struct rs_error *err);
/* How well an index entry's os/arch/variant (as the index names them; NULL:
 * absent) fits p (NULL or NULL fields: linux, this host's arch and variant):
 * 0 not at all, else higher is better. Architectures by their GOARCH names
 * (x86_64 = amd64, aarch64 = arm64); arm64 "v8" and amd64 "v1" are no
 * variant, arm's default is v7; no wanted variant takes any, the default one
 * first; arm vN and amd64 vN also take older variants, the closest first. */
int reg_platform_rank(const struct reg_platform *p, const char *os, const char *arch,
		      const char *variant);
/* "os/arch[/variant]" of p with the defaults filled in. */
void reg_platform_format(const struct reg_platform *p, char *out, size_t n);
const char *reg_descriptor_annotation(const struct reg_descriptor *d, const char *key);

/* Fetches the manifest or index that reference (tag or digest) names. */
int reg_manifest_get(struct reg_client *c, const struct reg_ref *ref, const char *reference,
		     struct reg_manifest *out, struct rs_error *err);
/* Resolves ref to one image manifest: an index or list is narrowed to
 * platform (NULL: the host's). If index is non-NULL it receives the index
 * (empty when ref named an image manifest directly). */
int reg_resolve(struct reg_client *c, const struct reg_ref *ref,
		const struct reg_platform *platform, struct reg_manifest *index,
		struct reg_manifest *out, struct rs_error *err);
/* Parses raw manifest/index JSON (media type from the JSON or the hint). */
int reg_manifest_parse(const void *data, size_t len, const char *media_type_hint,
		       struct reg_manifest *out, struct rs_error *err);
void reg_manifest_free(struct reg_manifest *m);

/* ---- image configs ------------------------------------------------------ */

/* One layer's diffID: the sha256 of its uncompressed tar, "sha256:<hex>". */
struct reg_diff_id {
	char s[RS_DIGEST_STR_LEN];
};

/* The config of image manifest m, fetched (at most 16 MiB, checked against
 * the manifest's digest and size): its rootfs.diff_ids, one per layer of m,
 * bottom first, into *out (m->n_layers entries; caller frees). -EBADMSG for a
 * config that is not JSON, lacks rootfs.diff_ids, gives another count or an
 * entry that is not a digest; -EFBIG when it would be too large. */
int reg_config_diff_ids(struct reg_client *c, const struct reg_ref *ref,
			const struct reg_manifest *m, struct reg_diff_id **out,
			struct rs_error *err);

/* ---- blobs -------------------------------------------------------------- */

/* Size by HEAD. */
int reg_blob_size(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		  int64_t *size, struct rs_error *err);

struct reg_range {
	int64_t off;
	size_t len;
	void *buf; /* receives exactly len bytes */
};

/* Reads byte ranges of a blob: one request with several ranges
 * (multipart/byteranges) where the registry supports it, single-range
 * requests otherwise. Fails cleanly if the server ignores Range. */
int reg_blob_read(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		  struct reg_range *ranges, size_t n, struct rs_error *err);
/* Bytes [off, off + len) of a blob, handed to fn in order as they arrive.
 * Only a 206 reply for exactly that range is passed on: anything else (a
 * server that ignores Range, another range) fails with -EPROTO before fn
 * sees a byte, and the caller may fall back to reg_blob_read. fn returning a
 * negative errno aborts. */
int reg_blob_read_stream(struct reg_client *c, const struct reg_ref *ref, const char *digest,
			 int64_t off, size_t len, int (*fn)(void *ctx, const void *data, size_t n),
			 void *ctx, struct rs_error *err);
/* Writes the whole blob to fd, verifying its digest and size. */
int reg_blob_fetch(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		   int64_t size, int fd, struct rs_error *err);
/* The last len bytes of a blob whose size is not known (one request with a
 * suffix range); *size receives the blob's size, out the bytes (fewer when
 * the blob is smaller). */
int reg_blob_read_tail(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		       size_t len, struct rs_buf *out, int64_t *size, struct rs_error *err);
/* A reader that fetched the blob's last tail_len bytes first (and its size
 * with them): reads falling there cost no request. Opening an eStargz layer
 * through it takes one request, two when the TOC is larger than the tail. */
int reg_blob_reader_tail(struct reg_client *c, const struct reg_ref *ref, const char *digest,
			 size_t tail_len, struct esgz_reader *out, struct rs_error *err);
/* A random-access reader over a registry blob (for esgz_open and friends). */
int reg_blob_reader(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		    int64_t size, struct esgz_reader *out, struct rs_error *err);

/* ---- push --------------------------------------------------------------- */

int reg_blob_exists(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		    bool *exists, struct rs_error *err);
/* Uploads size bytes from fd (read from offset 0) as blob digest, unless it
 * is there already. mount_from (a repository path on the same registry, or
 * NULL) is tried first as a cross-repository mount. Large blobs go in
 * chunks. */
int reg_blob_push(struct reg_client *c, const struct reg_ref *ref, const char *digest, int fd,
		  int64_t size, const char *mount_from, struct rs_error *err);
/* PUTs a manifest or index under reference (a tag or its digest). */
int reg_manifest_put(struct reg_client *c, const struct reg_ref *ref, const char *reference,
		     const char *media_type, const void *data, size_t len, struct rs_error *err);

#endif
