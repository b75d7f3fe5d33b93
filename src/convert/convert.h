/* SPDX-License-Identifier: Apache-2.0 */
/* convert: image-level conversion to eStargz / zstd:chunked, and inspection.
 * An image is named either by a registry reference ("host/repo:tag") or by an
 * OCI image layout directory ("oci:DIR[:TAG]"); both sides of a conversion may
 * be either. Everything read from either side is untrusted: manifests, configs
 * and blobs are verified against their digests and sizes are bounded. */
#ifndef CONV_CONVERT_H
#define CONV_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "estargz/estargz.h"
#include "registry/registry.h"
#include "util/util.h"

/* The annotation an OCI layout's index.json uses for a tag. */
#define CONV_ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"

struct conv_options {
	const char *platform;          /* "os/arch[/variant]"; NULL: the host's */
	bool all_platforms;            /* every platform of an index (overrides platform) */
	int64_t chunk_size;            /* 0: ESGZ_DEFAULT_CHUNK_SIZE */
	int level;                     /* 0: ESGZ_DEFAULT_LEVEL */
	bool zstd_chunked;             /* write zstd:chunked layers (always OCI media types) */
	bool oci;                      /* OCI media types even for a docker-typed source */
	int threads;                   /* compression threads; 0: every core */
	const struct reg_options *reg; /* for registry references; NULL: defaults */
	/* Paths from the image root in order of first access (stargz optimize).
	 * When set, every layer is rebuilt, even one already in the target format:
	 * each puts the listed entries it holds first (parents first), then
	 * .prefetch.landmark; a layer holding none gets .no.prefetch.landmark. */
	const char *const *prioritized;
	size_t n_prioritized;
	/* Of those, the files read only in part: each is cut into chunks at the
	 * edges of its ranges, and the chunks outside are marked for a lazy
	 * mount's prefetch to skip (ESGZ_TOC_NO_PREFETCH). */
	const struct esgz_touched *touched;
	size_t n_touched;
};

enum conv_event_kind {
	CONV_EV_IMAGE,       /* a platform's manifest is about to be converted */
	CONV_EV_LAYER_START, /* layer i of n: fetching / checking */
	CONV_EV_LAYER_DONE,  /* layer i of n: kept or converted */
	CONV_EV_PUSHED,      /* the final manifest or index was written */
};

enum conv_layer_action {
	CONV_LAYER_KEPT,      /* already in the target format */
	CONV_LAYER_CONVERTED, /* rebuilt with esgz_build */
};

struct conv_event {
	enum conv_event_kind kind;
	const char *platform; /* "linux/amd64", or "" when unknown */
	size_t layer, n_layers;
	const char *digest;     /* the source layer, or the pushed manifest */
	int64_t size;           /* its size */
	const char *new_digest; /* LAYER_DONE: the layer written */
	int64_t new_size;
	enum conv_layer_action action;
	double seconds; /* LAYER_DONE: time this layer took */
};

struct conv_progress {
	void (*fn)(void *ctx, const struct conv_event *ev);
	void *ctx;
};

struct conv_result {
	char digest[RS_DIGEST_STR_LEN]; /* the manifest or index the destination tag names */
	char media_type[96];
	size_t images;    /* platform manifests written */
	size_t converted; /* layer descriptors rebuilt (a layer shared by platforms counts each
			     time) */
	size_t kept;      /* layer descriptors kept as they were */
};

/* Converts src into dst (each a registry reference or oci:DIR[:TAG]): every
 * layer of the selected platforms becomes eStargz (or zstd:chunked), layers
 * already in that format are kept, configs get the new diff_ids, and blobs,
 * configs, manifests and (for several platforms) an index are written, the tag
 * last. progress and res may be NULL. */
int conv_convert(const char *src, const char *dst, const struct conv_options *opts,
		 const struct conv_progress *progress, struct conv_result *res,
		 struct rs_error *err);

struct conv_inspect_options {
	const char *platform;          /* NULL: the host's */
	const struct reg_options *reg; /* NULL: defaults */
};

/* Prints one JSON object: the resolved index (if any), manifest, config, and
 * per layer its digest, media type, size, format found by reading its footer
 * ("estargz", "zstd:chunked", "stargz" or "not eStargz"), TOC digests
 * (annotated and computed) and uncompressed size. */
int conv_inspect(const char *ref, const struct conv_inspect_options *opts, FILE *out,
		 struct rs_error *err);

/* ---- optimize: record what a workload opens, then convert with it first ------------- */

/* At most this many distinct paths are recorded (the rest are dropped). */
#define CONV_RECORD_MAX_PATHS (1 << 20)

struct conv_record_options {
	const char *platform;          /* "os/arch[/variant]"; NULL: the host's */
	const struct reg_options *reg; /* NULL: defaults */
	/* Overrides of the image config. With set_entrypoint and no set_args the
	 * config's Cmd is dropped too (as docker does). */
	const char *const *entrypoint;
	size_t n_entrypoint;
	bool set_entrypoint;
	const char *const *args;
	size_t n_args;
	bool set_args;
	const char *const *env; /* "K=V", replacing or adding to the config's Env */
	size_t n_env;
	const char *cwd;     /* NULL: the config's WorkingDir, else "/" */
	double period;       /* seconds the workload may run; <= 0: 10 */
	const char *runc;    /* NULL: "runc" from PATH */
	const char *tmp_dir; /* private work dir goes here; NULL: $TMPDIR, else /var/tmp */
	int output_fd;       /* the workload's stdout and stderr; 0: our stderr */
};

struct conv_record_result {
	char **paths; /* absolute paths in the container, in order of first open */
	size_t n_paths;
	/* The recorded files of which the workload touched only some parts
	 * (name and ranges owned here; the name is also in paths). */
	struct esgz_touched *touched;
	size_t n_touched;
	int exit_status; /* the workload's status (128+N: killed by signal N); -1: never ran */
	bool timed_out;  /* still running when the period ended: killed */
	bool incomplete; /* events were lost, or more than CONV_RECORD_MAX_PATHS */
	double seconds;  /* how long the workload ran */
};

/* Runs the image src's workload once in a sandbox (runc, the image unpacked on
 * overlayfs, no network, the config's user, env, cwd and entrypoint/cmd unless
 * overridden) and records, with fanotify, the regular files it opens until it
 * exits or the period ends. A workload that fails still yields its list
 * (res->exit_status, res->timed_out say how it ended). Needs root.
 * SIGINT, SIGTERM and SIGHUP, when blocked by the caller in every thread, are
 * noticed: everything is cleaned up and -EINTR returned. */
int conv_record(const char *src, const struct conv_record_options *o,
		struct conv_record_result *res, struct rs_error *err);
void conv_record_result_free(struct conv_record_result *res);

/* In a record list, this line splits what is prefetched (the files before
 * it) from files that come right after the landmark, in order, but are only
 * fetched when read. The recorder never writes it; a list edited by hand may
 * have it. In a prioritized list it places .prefetch.landmark there. */
#define CONV_RECORD_LANDMARK "/.prefetch.landmark"

/* A record list: one absolute path a line, in order; a file read only in
 * part has, after a tab, the byte ranges it read: OFFSET+LENGTH,... (decimal).
 * Reading skips blank lines, adds a missing leading '/', drops repeats
 * (keeping the first) and fills res->paths and res->touched. */
int conv_record_list_read(const char *file, struct conv_record_result *res, struct rs_error *err);
/* Writes res's paths and ranges atomically (a temp file renamed over file);
 * "-" is stdout. */
int conv_record_list_write(const char *file, const struct conv_record_result *res,
			   struct rs_error *err);
/* Adds path's ranges (n offset, length pairs, copied) to res->touched. */
int conv_record_touched_add(struct conv_record_result *res, const char *path, const int64_t *ranges,
			    size_t n);
/* An --entrypoint / --args value: a JSON array of strings when it starts with
 * '[', else split on whitespace. */
int conv_record_split_args(const char *s, char ***out, size_t *n, struct rs_error *err);
void conv_strv_free(char **v, size_t n);

struct conv_optimize_options {
	struct conv_record_options record;
	struct conv_options convert; /* prioritized is set from the list */
	const char *record_in;       /* convert with this list; nothing runs */
	const char *record_out;      /* write the list here before converting */
	/* Called once the list is known (before converting); may be NULL. */
	void (*on_recorded)(void *ctx, const struct conv_record_result *r);
	void *ctx;
};

struct conv_optimize_result {
	struct conv_record_result record; /* free with conv_record_result_free */
	struct conv_result convert;
};

/* Records src's workload (or reads o->record_in), writes o->record_out, and
 * converts src into dst with the recorded files first in each layer. */
int conv_optimize(const char *src, const char *dst, const struct conv_optimize_options *o,
		  const struct conv_progress *progress, struct conv_optimize_result *res,
		  struct rs_error *err);

#endif
