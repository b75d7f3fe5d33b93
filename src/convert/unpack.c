// SPDX-License-Identifier: Apache-2.0
/* One layer tar (plain, gzip or zstd; eStargz and zstd:chunked are such tars)
 * into its own directory, as an overlayfs lower layer: `.wh.NAME` becomes a 0/0
 * character device NAME, `.wh..wh..opq` the opaque xattr on its directory, and
 * eStargz's own entries are left out. The tar is untrusted: names are cleaned
 * (no "..", no leading '/'), libarchive refuses to write through symlinks, and
 * whiteouts are placed by walking directories with O_NOFOLLOW. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "estargz/estargz.h" /* esgz_clean_name: the converter's own names */
#include "record_internal.h"

#define WH_PREFIX ".wh."
#define WH_META_PREFIX ".wh..wh."
#define WH_OPAQUE ".wh..wh..opq"
#define OVL_XATTR_PREFIX "trusted.overlay."

/* The directory rel (created when missing) below dirfd, never through a
 * symlink. Returns an O_RDONLY fd or a negative errno. */
static int open_dir_beneath(int dirfd, const char *rel)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	char comp[NAME_MAX + 1];
	for (const char *p = rel; *p;) {
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - s);
		while (*p == '/')
			p++;
		if (n == 0)
			continue;
		if (n > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(comp, s, n);
		comp[n] = 0;
		int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(fd);
				return -e;
			}
			next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int e = errno;
		close(fd);
		if (next < 0)
			return e == ELOOP ? -ENOTDIR : -e;
		fd = next;
	}
	return fd;
}

/* `.wh.NAME` or `.wh..wh..opq` at path (cleaned, layer-relative). */
static int whiteout(int layer_fd, char *path, const char *digest, struct rs_error *err)
{
	char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	if (slash)
		*slash = 0;
	cleanup_fd int dfd = open_dir_beneath(layer_fd, slash ? path : "");
	if (slash)
		*slash = '/';
	if (dfd < 0)
		return rs_err(err, dfd, "layer %s: %s: %s", digest, path, strerror(-dfd));
	if (strcmp(base, WH_OPAQUE) == 0) {
		if (fsetxattr(dfd, OVL_XATTR_PREFIX "opaque", "y", 1, 0) < 0)
			return rs_err(err, -errno, "layer %s: %s: set opaque xattr: %s", digest,
				      path, strerror(errno));
		return 0;
	}
	const char *name = base + strlen(WH_PREFIX);
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return rs_err(err, -EINVAL, "layer %s: %s: a whiteout without a name", digest,
			      path);
	if (mknodat(dfd, name, S_IFCHR | 0, makedev(0, 0)) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "layer %s: %s: %s", digest, path, strerror(errno));
	return 0;
}

static bool is_esgz_meta(const char *path)
{
	return strcmp(path, "stargz.index.json") == 0 || strcmp(path, ".prefetch.landmark") == 0 ||
	       strcmp(path, ".no.prefetch.landmark") == 0;
}

/* Drops trusted.overlay.* xattrs: only whiteout handling may set them. */
static int drop_overlay_xattrs(struct archive_entry *e)
{
	const char *name;
	const void *val;
	size_t size;
	bool any = false;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &val, &size) == ARCHIVE_OK)
		any |= strncmp(name, OVL_XATTR_PREFIX, strlen(OVL_XATTR_PREFIX)) == 0;
	if (!any)
		return 0;
	struct archive_entry *copy = archive_entry_clone(e);
	if (!copy)
		return -ENOMEM;
	archive_entry_xattr_clear(e);
	archive_entry_xattr_reset(copy);
	while (archive_entry_xattr_next(copy, &name, &val, &size) == ARCHIVE_OK)
		if (strncmp(name, OVL_XATTR_PREFIX, strlen(OVL_XATTR_PREFIX)) != 0)
			archive_entry_xattr_add_entry(e, name, val, size);
	archive_entry_free(copy);
	return 0;
}

/* dir + "/" + the cleaned name (no leading '/', no "." or empty components,
 * ".." resolved lexically and never above the root: the name the converter
 * gives the entry) into out (PATH_MAX); false when too long. clean has
 * strlen(name)+1 bytes. */
static bool full_path(const char *dir, const char *name, char *clean, char *out)
{
	esgz_clean_name(name, clean);
	return (size_t)snprintf(out, PATH_MAX, "%s/%s", dir, clean) < PATH_MAX;
}

struct unpacker {
	struct archive *r, *w;
	int layer_fd;
	const char *dir, *digest;
	char *clean, *path; /* PATH_MAX each */
};

/* A write error's code: -ENOSPC when the disk is full (the caller may retry
 * elsewhere), else dflt. */
static int write_code(const struct unpacker *u, int dflt)
{
	int e = archive_errno(u->w);
	return e == ENOSPC || e == EDQUOT ? -ENOSPC : dflt;
}

static int copy_data(struct unpacker *u, struct rs_error *err)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int r;
	while ((r = archive_read_data_block(u->r, &buf, &size, &off)) == ARCHIVE_OK) {
		if (archive_write_data_block(u->w, buf, size, off) < ARCHIVE_WARN)
			return rs_err(err, write_code(u, -EIO), "layer %s: %s: %s", u->digest,
				      u->clean, archive_error_string(u->w));
	}
	if (r != ARCHIVE_EOF)
		return rs_err(err, -EINVAL, "layer %s: %s: %s", u->digest, u->clean,
			      archive_error_string(u->r));
	return 0;
}

static int one_entry(struct unpacker *u, struct archive_entry *e, struct rs_error *err)
{
	const char *name = archive_entry_pathname(e);
	if (!name)
		return rs_err(err, -EINVAL, "layer %s: an entry without a name", u->digest);
	if (strlen(name) >= PATH_MAX || !full_path(u->dir, name, u->clean, u->path))
		return rs_err(err, -ENAMETOOLONG, "layer %s: %.100s...: name too long", u->digest,
			      name);
	if (!*u->clean || is_esgz_meta(u->clean))
		return 0;
	const char *slash = strrchr(u->clean, '/');
	const char *base = slash ? slash + 1 : u->clean;
	if (strncmp(base, WH_META_PREFIX, strlen(WH_META_PREFIX)) == 0 &&
	    strcmp(base, WH_OPAQUE) != 0)
		return 0; /* aufs metadata (.wh..wh.plnk, ...), as containerd skips it */
	if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
		return whiteout(u->layer_fd, u->clean, u->digest, err);
	archive_entry_set_pathname(e, u->path);
	const char *link = archive_entry_hardlink(e);
	if (link) {
		char lclean[PATH_MAX], lpath[PATH_MAX];
		if (strlen(link) >= PATH_MAX || !full_path(u->dir, link, lclean, lpath) || !*lclean)
			return rs_err(err, -EINVAL, "layer %s: %s: bad hard link target", u->digest,
				      u->clean);
		archive_entry_set_hardlink(e, lpath);
	}
	if (drop_overlay_xattrs(e) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	int r = archive_write_header(u->w, e);
	if (r < ARCHIVE_WARN)
		return rs_err(err, write_code(u, -EINVAL), "layer %s: %s: %s", u->digest, u->clean,
			      archive_error_string(u->w));
	if (archive_entry_size(e) > 0 || archive_entry_sparse_count(e) > 0) {
		int rc = copy_data(u, err);
		if (rc < 0)
			return rc;
	}
	if (archive_write_finish_entry(u->w) < ARCHIVE_WARN)
		return rs_err(err, write_code(u, -EIO), "layer %s: %s: %s", u->digest, u->clean,
			      archive_error_string(u->w));
	return 0;
}

int conv_rec_unpack(int blob_fd, const char *dir, const char *digest, struct rs_error *err)
{
	struct unpacker u = {.dir = dir, .digest = digest, .layer_fd = -1};
	u.clean = malloc(PATH_MAX);
	u.path = malloc(PATH_MAX);
	u.r = archive_read_new();
	u.w = archive_write_disk_new();
	int rc = 0;
	if (!u.clean || !u.path || !u.r || !u.w) {
		rc = rs_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	u.layer_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u.layer_fd < 0) {
		rc = rs_err(err, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	archive_read_support_filter_gzip(u.r);
	archive_read_support_filter_zstd(u.r);
	archive_read_support_format_tar(u.r);
	archive_write_disk_set_options(
	    u.w, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
		     ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		     ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SPARSE);
	if (lseek(blob_fd, 0, SEEK_SET) < 0 || archive_read_open_fd(u.r, blob_fd, 1 << 16) != 0) {
		rc =
		    rs_err(err, -EINVAL, "layer %s: %s", digest,
			   archive_error_string(u.r) ? archive_error_string(u.r) : strerror(errno));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(u.r, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (conv_rec_interrupted()) {
			rc = rs_err(err, -EINTR, "interrupted");
			goto out;
		}
		if ((rc = one_entry(&u, e, err)) < 0)
			goto out;
	}
	if (r != ARCHIVE_EOF) {
		rc = rs_err(err, -EINVAL, "layer %s: not a valid tar: %s", digest,
			    archive_error_string(u.r));
		goto out;
	}
	if (archive_write_close(u.w) < ARCHIVE_WARN)
		rc = rs_err(err, -EIO, "layer %s: %s", digest, archive_error_string(u.w));
out:
	if (u.layer_fd >= 0)
		close(u.layer_fd);
	if (u.r)
		archive_read_free(u.r);
	if (u.w)
		archive_write_free(u.w);
	free(u.clean);
	free(u.path);
	return rc;
}
