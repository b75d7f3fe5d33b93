// SPDX-License-Identifier: Apache-2.0
/* The image's root filesystem for a recording: a private work dir holding,
 * on the loop filesystem of loopfs.c when one can be made, one directory per
 * layer, an overlay mount of them (plus upper and work dirs) and, afterwards,
 * nothing: unmount and remove, whatever stage we got to. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "record_internal.h"

int conv_rec_rootfs_init(struct conv_rec_rootfs *r, const char *tmp_dir, struct rs_error *err)
{
	memset(r, 0, sizeof(*r));
	const char *base = tmp_dir;
	if (!base || !*base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/var/tmp";
	char real[PATH_MAX], tmpl[PATH_MAX];
	if (!realpath(base, real))
		return rs_err(err, -errno, "%s: %s", base, strerror(errno));
	if ((size_t)snprintf(tmpl, sizeof(tmpl), "%s/stargz-optimize.XXXXXX", real) >= sizeof(tmpl))
		return rs_err(err, -ENAMETOOLONG, "%s: name too long", real);
	if (!mkdtemp(tmpl))
		return rs_err(err, -errno, "%s: cannot make a work dir: %s", real, strerror(errno));
	r->dir = strdup(tmpl);
	if (!r->dir || asprintf(&r->merged, "%s/merged", tmpl) < 0) {
		r->merged = NULL;
		conv_rec_rmtree(tmpl);
		free(r->dir);
		r->dir = NULL;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int subdir(const struct conv_rec_rootfs *r, const char *name, char *out,
		  struct rs_error *err)
{
	const char *base = r->fs ? r->fs : r->dir;
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", base, name) >= PATH_MAX)
		return rs_err(err, -ENAMETOOLONG, "%s: name too long", base);
	if (mkdir(out, 0755) < 0)
		return rs_err(err, -errno, "%s: %s", out, strerror(errno));
	return 0;
}

/* Unpacks each layer of the manifest into its own subdir; lower[i] gets its path. */
static int unpack_layers(const struct conv_rec_rootfs *r, struct conv_image *im, json_t *layers,
			 char (*lower)[PATH_MAX], struct rs_error *err)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < json_array_size(layers); i++) {
		const char *mt, *dg;
		int64_t size;
		char name[32];
		snprintf(name, sizeof(name), "%zu", i);
		rc = conv_desc_get(json_array_get(layers, i), &mt, &dg, &size, "layer", err);
		if (rc == 0)
			rc = subdir(r, name, lower[i], err);
		cleanup_fd int fd = -1;
		if (rc == 0)
			rc = conv_image_blob_fd(im, dg, size, &fd, err);
		if (rc == 0)
			rc = conv_rec_unpack(fd, lower[i], dg, err);
	}
	return rc;
}

/* Gives the loop filesystem up: unmounted (the kernel detaches the loop
 * device), its image removed; the layers go in the work dir itself. */
static void drop_loopfs(struct conv_rec_rootfs *r)
{
	conv_rec_loopfs_unmount(r->fs);
	free(r->fs);
	r->fs = NULL;
	char img[PATH_MAX];
	if ((size_t)snprintf(img, sizeof(img), "%s/fs.img", r->dir) < sizeof(img))
		unlink(img);
}

/* overlay with the new mount API: no page-size limit on the lowerdir list
 * (kernel 6.8+: "lowerdir+"). Returns -ENOSYS/-EINVAL when unsupported. */
static int mount_fsconfig(char (*lower)[PATH_MAX], size_t n, const char *upper, const char *work,
			  const char *merged)
{
	int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	int rc = 0;
	for (size_t i = n; rc == 0 && i-- > 0;)
		if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", lower[i], 0) < 0)
			rc = -errno;
	if (rc == 0 && (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
			fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
			fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0))
		rc = -errno;
	int mfd = rc == 0 ? fsmount(fs, FSMOUNT_CLOEXEC, 0) : -1;
	if (rc == 0 && mfd < 0)
		rc = -errno;
	if (rc == 0 && move_mount(mfd, "", AT_FDCWD, merged, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		rc = -errno;
	if (mfd >= 0)
		close(mfd);
	close(fs);
	return rc;
}

/* overlay with mount(2): the options must fit in a page. */
static int mount_legacy(char (*lower)[PATH_MAX], size_t n, const char *upper, const char *work,
			const char *merged, struct rs_error *err)
{
	struct rs_buf o = {0};
	int rc = rs_buf_printf(&o, "lowerdir=");
	for (size_t i = n; rc == 0 && i-- > 0;)
		rc = rs_buf_printf(&o, "%s%s", lower[i], i ? ":" : "");
	if (rc == 0)
		rc = rs_buf_printf(&o, ",upperdir=%s,workdir=%s", upper, work);
	if (rc < 0) {
		rs_buf_free(&o);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (o.len >= 4096 || strpbrk(upper, ",:"))
		rc = rs_err(err, -E2BIG,
			    "%zu layers: the overlay mount options do not fit in a page "
			    "(this kernel has no \"lowerdir+\")",
			    n);
	else if (mount("overlay", merged, "overlay", 0, (const char *)o.data) < 0)
		rc = rs_err(err, -errno, "mount overlay on %s: %s", merged, strerror(errno));
	rs_buf_free(&o);
	return rc;
}

int conv_rec_rootfs_build(struct conv_rec_rootfs *r, struct conv_image *im, json_t *manifest,
			  struct rs_error *err)
{
	json_t *layers = json_object_get(manifest, "layers");
	size_t n = json_array_size(layers);
	if (n == 0)
		return rs_err(err, -EINVAL, "%s: the image has no layers", im->name);
	if (n > CONV_MAX_LAYERS)
		return rs_err(err, -E2BIG, "%s: %zu layers (at most %d)", im->name, n,
			      CONV_MAX_LAYERS);
	cleanup_free char(*lower)[PATH_MAX] = calloc(n, PATH_MAX);
	if (!lower)
		return rs_err(err, -ENOMEM, "out of memory");
	/* Room for the layers unpacked (compressed ~8x at most) and what the
	 * workload writes, and at least 16 GiB: 4 Mi inodes at one per 4 KiB,
	 * twice a TOC's entry limit. Sparse: only what is written takes room. */
	int64_t room = (int64_t)1 << 30;
	for (size_t i = 0; i < n; i++) {
		json_t *sz = json_object_get(json_array_get(layers, i), "size");
		if (json_is_integer(sz) && json_integer_value(sz) > 0 &&
		    json_integer_value(sz) < ((int64_t)1 << 40))
			room += 8 * json_integer_value(sz);
	}
	if (room < ((int64_t)16 << 30))
		room = (int64_t)16 << 30;
	struct rs_error lerr = {0};
	if (conv_rec_loopfs_mount(r->dir, room, &r->fs, &lerr) < 0)
		rs_log(RS_LOG_WARN,
		       "optimize: no loop filesystem for the image (%s): which part of a file "
		       "the workload reads cannot be told, so every recorded file is prefetched "
		       "whole",
		       lerr.msg);
	int rc = unpack_layers(r, im, layers, lower, err);
	if (rc == -ENOSPC && r->fs) {
		rs_log(RS_LOG_WARN,
		       "optimize: the loop filesystem is full (%s); unpacking again without it: "
		       "every recorded file is prefetched whole",
		       err->msg);
		drop_loopfs(r);
		rc = unpack_layers(r, im, layers, lower, err);
	}
	char upper[PATH_MAX], work[PATH_MAX];
	if (rc == 0)
		rc = subdir(r, "upper", upper, err);
	if (rc == 0)
		rc = subdir(r, "work", work, err);
	if (rc == 0 && mkdir(r->merged, 0755) < 0)
		rc = rs_err(err, -errno, "%s: %s", r->merged, strerror(errno));
	if (rc < 0)
		return rc;
	rc = mount_fsconfig(lower, n, upper, work, r->merged);
	if (rc == -ENOSYS || rc == -EINVAL)
		rc = mount_legacy(lower, n, upper, work, r->merged, err);
	else if (rc < 0)
		rc = rs_err(err, rc, "mount overlay on %s: %s", r->merged, strerror(-rc));
	r->mounted = rc == 0;
	return rc;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int conv_rec_rmtree(const char *dir)
{
	if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return -errno;
	struct stat st;
	return lstat(dir, &st) == 0 ? -ENOTEMPTY : 0;
}

void conv_rec_rootfs_cleanup(struct conv_rec_rootfs *r)
{
	if (r->mounted) {
		if (umount2(r->merged, 0) < 0 && umount2(r->merged, MNT_DETACH) < 0)
			rs_log(RS_LOG_WARN, "cannot unmount %s: %s", r->merged, strerror(errno));
		else
			r->mounted = false;
	}
	if (r->fs && !r->mounted)
		drop_loopfs(r);
	if (r->dir && !r->mounted && conv_rec_rmtree(r->dir) < 0)
		rs_log(RS_LOG_WARN, "cannot remove %s entirely", r->dir);
	free(r->dir);
	free(r->merged);
	r->dir = r->merged = NULL;
}

int conv_rec_open_in_root(int root_fd, const char *rel)
{
	struct open_how how = {
	    .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	return (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof(how));
}
