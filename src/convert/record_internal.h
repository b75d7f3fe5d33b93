/* SPDX-License-Identifier: Apache-2.0 */
/* Private to conv_record: the image's rootfs on overlayfs, the sandbox's user
 * and runtime spec, runc's lifecycle and the fanotify recorder. */
#ifndef CONV_RECORD_INTERNAL_H
#define CONV_RECORD_INTERNAL_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "convert_internal.h"

/* ---- record.c: the signals that stop a recording --------------------------------- */

/* SIGINT, SIGTERM and SIGHUP (the caller blocks them while recording). */
void conv_rec_stop_signals(sigset_t *s);
/* Whether one of them is pending. */
bool conv_rec_interrupted(void);

/* ---- record_list.c: an ordered set of strings, the record list format ------------ */

struct conv_strset {
	char **v; /* in order of insertion */
	size_t n, cap;
	uint32_t *slots; /* open addressing: index + 1, 0 free */
	size_t n_slots;
};

/* Takes str: appends it (1) unless present (0, str freed); -ENOMEM. */
int conv_strset_add(struct conv_strset *s, char *str);
bool conv_strset_has(const struct conv_strset *s, const char *str);
/* The strings (the caller frees them with conv_strv_free); s is emptied. */
char **conv_strset_steal(struct conv_strset *s, size_t *n);
void conv_strset_free(struct conv_strset *s);

/* The record list format on a stream (name: for messages), as
 * conv_record_list_read and _write use it once the file is open. */
int conv_record_list_parse(FILE *f, const char *name, struct conv_record_result *res,
			   struct rs_error *err);
int conv_record_list_print(FILE *f, const struct conv_record_result *res);

/* ---- unpack.c: one layer tar into a directory, whiteouts in overlayfs form ---- */

/* Extracts the tar (plain, gzip or zstd) in blob_fd into dir (which exists and
 * has no symlink in its path). Errors name digest. */
int conv_rec_unpack(int blob_fd, const char *dir, const char *digest, struct rs_error *err);

/* ---- rootfs.c: the image's layers on an overlay mount --------------------------- */

struct conv_rec_rootfs {
	char *dir;    /* the private work dir (realpath), everything below it */
	char *fs;     /* the loop filesystem's mount point in dir, or NULL */
	char *merged; /* the overlay mount point: the container's root */
	bool mounted;
};

/* Makes the private work dir under tmp_dir (NULL: $TMPDIR, else /var/tmp). */
int conv_rec_rootfs_init(struct conv_rec_rootfs *r, const char *tmp_dir, struct rs_error *err);
/* Unpacks the manifest's layers (each into its own dir, on a loop
 * filesystem when one can be made: r->fs) and mounts them. */
int conv_rec_rootfs_build(struct conv_rec_rootfs *r, struct conv_image *im, json_t *manifest,
			  struct rs_error *err);
/* Unmounts and removes everything; safe to call at any stage, twice. */
void conv_rec_rootfs_cleanup(struct conv_rec_rootfs *r);
/* Removes a tree without crossing into other mounts. */
int conv_rec_rmtree(const char *dir);
/* Opens rel read-only below the directory root_fd as if it were "/": the
 * image's symlinks cannot lead out of it. -1 with errno on failure. */
int conv_rec_open_in_root(int root_fd, const char *rel);

/* ---- loopfs.c: an ext4 image on a loop device with the partial readahead ------- */

/* Makes DIR/fs.img (size bytes, sparse), formats it, binds it to a free loop
 * device (readahead ESGZ_PARTIAL_READAHEAD_KB, detached once unmounted) and
 * mounts it on DIR/fs (*mountpoint, malloc'd). Needs mkfs.ext4 and loop. */
int conv_rec_loopfs_mount(const char *dir, int64_t size, char **mountpoint, struct rs_error *err);
void conv_rec_loopfs_unmount(const char *mountpoint);

/* ---- residency.c: which parts of each file the workload touched ---------------- */

/* Files smaller than this count as read whole. */
#define CONV_REC_PARTIAL_MIN ((int64_t)256 << 10)
/* Writes back and drops from the page cache every file of at least
 * CONV_REC_PARTIAL_MIN bytes under dir (not crossing mounts): afterwards,
 * their resident pages are what the workload read. */
int conv_rec_evict(const char *dir, struct rs_error *err);
/* For each recorded path (absolute, in the rootfs at merged) of at least
 * CONV_REC_PARTIAL_MIN bytes with pages that are not resident, the ranges
 * that are: appended to res->touched. */
int conv_rec_touched(const char *merged, struct conv_record_result *res, struct rs_error *err);

/* ---- sandbox_user.c: the config's User against the rootfs's passwd/group ------- */

struct conv_rec_user {
	uint32_t uid, gid;
	uint32_t *gids; /* additional groups */
	size_t n_gids;
	char *home; /* from passwd, or "/" */
};

/* Resolves "", "name", "uid", "uid:gid", "name:group" (and mixes) by reading
 * etc/passwd and etc/group inside rootfs (symlinks resolved within it). */
int conv_rec_user_resolve(const char *rootfs, const char *user, struct conv_rec_user *u,
			  struct rs_error *err);
void conv_rec_user_free(struct conv_rec_user *u);

/* ---- sandbox_spec.c: the OCI runtime spec (config.json) -------------------------- */

/* The spec for running the image config's process (img: the config's "config"
 * object, may be NULL) with o's overrides as user u, rooted at rootfs. */
int conv_rec_spec(json_t *img, const struct conv_record_options *o, const struct conv_rec_user *u,
		  const char *rootfs, json_t **spec, struct rs_error *err);

/* ---- sandbox_run.c: runc's lifecycle --------------------------------------------- */

struct conv_rec_runc {
	const char *runc; /* binary */
	char *state;      /* runc --root */
	char id[64];
	pid_t pid; /* `runc run`, or 0 */
	int pidfd; /* its pidfd, or -1 */
};

/* Starts `runc --root STATE run --bundle BUNDLE ID` with the workload's
 * output on out_fd. */
int conv_rec_runc_start(struct conv_rec_runc *r, const char *bundle, int out_fd,
			struct rs_error *err);
/* Reaps `runc run` when it has exited (1, status in *status), else 0. */
int conv_rec_runc_reap(struct conv_rec_runc *r, int *status);
/* Kills the container, waits (bounded) for `runc run`, deletes the container. */
void conv_rec_runc_stop(struct conv_rec_runc *r, int *status);

/* ---- fanotify_rec.c: the recorder ------------------------------------------------ */

struct conv_rec_fan {
	int fd;             /* the fanotify group (non-blocking), or -1 */
	const char *prefix; /* the merged dir as the host sees it */
	size_t prefix_len;
	struct conv_strset paths; /* in order of first open */
	bool incomplete;
};

/* Marks the filesystem of merged for FAN_OPEN and FAN_OPEN_EXEC. */
int conv_rec_fan_start(struct conv_rec_fan *f, const char *merged, struct rs_error *err);
/* Reads every queued event; returns 0 when the queue is empty. */
int conv_rec_fan_read(struct conv_rec_fan *f, struct rs_error *err);
/* Closes the group; the paths stay. */
void conv_rec_fan_stop(struct conv_rec_fan *f);
void conv_rec_fan_free(struct conv_rec_fan *f);

#endif
