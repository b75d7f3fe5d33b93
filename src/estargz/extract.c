// SPDX-License-Identifier: Apache-2.0
/* Extracting a layer into a directory as GNU tar (run as root with --same-owner
 * --xattrs --numeric-owner) would. Every file system operation is relative to a
 * directory fd opened beneath the target without following any symlink, so
 * neither the layer's symlinks nor ones already in the target can redirect a
 * write outside it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "estargz.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#endif

#define RESOLVE_SAFE (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)

struct xattr_args_compat {
	uint64_t value;
	uint32_t size;
	uint32_t flags;
};

struct xctx {
	const struct esgz_blob *b;
	const struct esgz_index *idx;
	struct esgz_reader *r;
	bool same_owner;
	bool xattrs;
	int rootfd;
	uint32_t nnodes;
	uint64_t toc_entries;
	uint8_t *done;    /* per node: extracted at its own path */
	uint32_t *holder; /* per node: the hardlink whose path holds a replaced target */
	uint32_t *dirs;   /* directories in creation order (parents first) */
	size_t ndirs, capdirs;
	uint32_t *links; /* hardlinks, made once everything else exists */
	size_t nlinks, caplinks;
	uint8_t *buf;
	size_t bufcap;
	struct rs_error *err;
};

/* Cleared once the kernel says ENOSYS; any thread may see either value. */
static atomic_bool have_openat2 = true;
static atomic_bool have_setxattrat = true;

static const char *node_path(const struct xctx *x, uint32_t id)
{
	return esgz_index_str(x->idx, esgz_index_node(x->idx, id)->name);
}

/* Nodes the index made up for missing parents carry no TOC entry. */
static bool node_from_toc(const struct xctx *x, const struct esgz_node *n)
{
	return n->toc_index != ESGZ_NONE && n->toc_index < x->toc_entries;
}

static int push_id(uint32_t **arr, size_t *n, size_t *cap, uint32_t id)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		uint32_t *na = realloc(*arr, nc * sizeof(*na));
		if (!na)
			return -ENOMEM;
		*arr = na;
		*cap = nc;
	}
	(*arr)[(*n)++] = id;
	return 0;
}

/* Opens one component (or ".") of dfd, never following a symlink. */
static int open_beneath(int dfd, const char *path, int flags, mode_t mode)
{
	flags |= O_NOFOLLOW | O_CLOEXEC;
	if (have_openat2) {
		struct open_how how = {
		    .flags = (uint64_t)flags,
		    .mode = (flags & O_CREAT) ? mode : 0,
		    .resolve = RESOLVE_SAFE,
		};
		long fd;
		int tries = 0;
		do {
			fd = syscall(SYS_openat2, dfd, path, &how, sizeof(how));
		} while (fd < 0 && errno == EAGAIN && ++tries < 16);
		if (fd >= 0 || errno != ENOSYS)
			return (int)fd;
		have_openat2 = false;
	}
	if (strchr(path, '/') || strcmp(path, "..") == 0) {
		errno = EXDEV;
		return -1;
	}
	return openat(dfd, path, flags, mode);
}

/* Opens the directory at a normalised layer path, refusing symlinks on the
 * way; without openat2 it walks one no-follow component at a time. */
static int open_dir_path(const struct xctx *x, const char *path)
{
	const int flags = O_RDONLY | O_DIRECTORY;
	if (*path == '\0')
		return open_beneath(x->rootfd, ".", flags, 0);
	if (have_openat2) {
		int fd = open_beneath(x->rootfd, path, flags, 0);
		if (fd >= 0 || have_openat2)
			return fd;
	}
	cleanup_fd int cur = open_beneath(x->rootfd, ".", flags, 0);
	if (cur < 0)
		return -1;
	char comp[NAME_MAX + 1];
	const char *p = path;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || len > NAME_MAX) {
			errno = EINVAL;
			return -1;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		int next = open_beneath(cur, comp, flags, 0);
		if (next < 0)
			return -1;
		close(cur);
		cur = next;
		p += len;
		if (*p == '/')
			p++;
	}
	return rs_steal_fd(&cur);
}

static int ensure_buf(struct xctx *x, size_t len)
{
	if (len <= x->bufcap)
		return 0;
	uint8_t *nb = realloc(x->buf, len);
	if (!nb)
		return -ENOMEM;
	x->buf = nb;
	x->bufcap = len;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Clears the way for a new non-directory: tar unlinks what is there; an empty
 * directory goes too, a non-empty one is an error. */
static int remove_existing(struct xctx *x, int dfd, const char *base, const char *entry)
{
	struct stat st;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return rs_err(x->err, -errno, "entry '%s': %s", entry, strerror(errno));
	}
	int flags = S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0;
	if (unlinkat(dfd, base, flags) < 0) {
		int e = errno;
		if (flags && (e == ENOTEMPTY || e == EEXIST))
			return rs_err(x->err, -e, "entry '%s': a non-empty directory is in the way",
				      entry);
		return rs_err(x->err, -e, "entry '%s': cannot remove the existing file: %s", entry,
			      strerror(e));
	}
	return 0;
}

static int set_xattr_at(int dfd, const char *base, const char *name, const void *val, size_t len)
{
	if (have_setxattrat) {
		struct xattr_args_compat args = {
		    .value = (uint64_t)(uintptr_t)val,
		    .size = (uint32_t)len,
		    .flags = 0,
		};
		long rc = syscall(SYS_setxattrat, dfd, base, AT_SYMLINK_NOFOLLOW, name, &args,
				  sizeof(args));
		if (rc == 0 || errno != ENOSYS)
			return rc == 0 ? 0 : -1;
		have_setxattrat = false;
	}
	/* The fd link names the directory we hold, not a path to re-resolve. */
	char path[64 + NAME_MAX];
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, base);
	return lsetxattr(path, name, val, len, 0);
}

/* Sets the xattrs of node id on fd, or on dfd/base when fd < 0. */
static int apply_xattrs(struct xctx *x, int fd, int dfd, const char *base, uint32_t id,
			const char *entry)
{
	if (!x->xattrs)
		return 0;
	uint32_t n = 0;
	const struct esgz_xattr *xa = esgz_index_xattrs(x->idx, id, &n);
	for (uint32_t i = 0; i < n; i++) {
		const char *name = esgz_index_str(x->idx, xa[i].name);
		const char *val = esgz_index_str(x->idx, xa[i].value);
		int rc = fd >= 0 ? fsetxattr(fd, name, val, xa[i].value_len, 0)
				 : set_xattr_at(dfd, base, name, val, xa[i].value_len);
		if (rc == 0)
			continue;
		int e = errno;
		/* The kernel refuses user.* on symlinks and devices; tar warns too. */
		bool user_special = fd < 0 && e == EPERM && strncmp(name, "user.", 5) == 0;
		if (e == EOPNOTSUPP || user_special) {
			rs_log(RS_LOG_WARN, "entry '%s': xattr %s not set: %s", entry, name,
			       strerror(e));
			continue;
		}
		return rs_err(x->err, -e, "entry '%s': cannot set xattr %s: %s", entry, name,
			      strerror(e));
	}
	return 0;
}

static mode_t final_mode(const struct xctx *x, const struct esgz_node *n)
{
	mode_t m = n->mode & 07777;
	if (!x->same_owner)
		m &= ~(mode_t)(S_ISUID | S_ISGID);
	return m;
}

static struct timespec mtime_of(const struct esgz_node *n)
{
	return (struct timespec){.tv_sec = (time_t)n->mtime, .tv_nsec = 0};
}

/* Writes the data of regular file id into fd, checking each chunk's digest
 * and the whole file's. */
static int write_file_data(struct xctx *x, int fd, uint32_t id, const struct esgz_node *n,
			   const char *entry)
{
	uint32_t nc = 0;
	const struct esgz_chunk *c = esgz_index_chunks(x->idx, id, &nc);
	if (n->size > 0 && nc == 0)
		return rs_err(x->err, -EINVAL, "entry '%s': regular file of %lld bytes has no data",
			      entry, (long long)n->size);
	struct rs_sha256 sha = {0};
	if (n->has_digest && rs_sha256_init(&sha) < 0)
		return rs_err(x->err, -ENOMEM, "out of memory");
	int rc = 0;
	int64_t pos = 0;
	for (uint32_t i = 0; i < nc; i++) {
		if (c[i].file_offset != pos || c[i].size < 0 ||
		    (uint64_t)c[i].size > SIZE_MAX / 2 || c[i].size > n->size - pos) {
			rc = rs_err(x->err, -EINVAL,
				    "entry '%s': chunk %u (offset %lld, size %lld) does not fit "
				    "the file's %lld bytes",
				    entry, i, (long long)c[i].file_offset, (long long)c[i].size,
				    (long long)n->size);
			goto out;
		}
		if (c[i].size == 0)
			continue;
		if (ensure_buf(x, (size_t)c[i].size) < 0) {
			rc = rs_err(x->err, -ENOMEM,
				    "entry '%s': out of memory for a %lld-byte chunk", entry,
				    (long long)c[i].size);
			goto out;
		}
		rc = esgz_chunk_read(x->b, x->r, &c[i], x->buf, x->err);
		if (rc < 0) {
			rs_error_prefix(x->err, "entry '%s'", entry);
			goto out;
		}
		if (n->has_digest)
			rs_sha256_update(&sha, x->buf, (size_t)c[i].size);
		rc = write_all(fd, x->buf, (size_t)c[i].size);
		if (rc < 0) {
			rc = rs_err(x->err, rc, "entry '%s': write: %s", entry, strerror(-rc));
			goto out;
		}
		pos += c[i].size;
	}
	if (pos != n->size) {
		rc =
		    rs_err(x->err, -EINVAL, "entry '%s': chunks hold %lld of the file's %lld bytes",
			   entry, (long long)pos, (long long)n->size);
		goto out;
	}
	if (n->has_digest) {
		uint8_t sum[RS_SHA256_LEN];
		rs_sha256_final(&sha, sum);
		if (memcmp(sum, n->digest, RS_SHA256_LEN) != 0) {
			char want[RS_DIGEST_STR_LEN], got[RS_DIGEST_STR_LEN];
			rs_digest_format(n->digest, want);
			rs_digest_format(sum, got);
			rc = rs_err(x->err, ESGZ_EDIGEST,
				    "entry '%s': file digest mismatch: TOC says %s, data is %s",
				    entry, want, got);
		}
	}
out:
	if (n->has_digest)
		rs_sha256_free(&sha);
	return rc;
}

static int make_regular(struct xctx *x, int dfd, const char *base, uint32_t id,
			const struct esgz_node *n, const char *entry)
{
	cleanup_fd int fd = open_beneath(dfd, base, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot create: %s", entry,
			      strerror(errno));
	int rc = write_file_data(x, fd, id, n, entry);
	/* Ownership before xattrs (chown drops security.capability), and mode
	 * after chown (which clears setuid/setgid). */
	if (rc == 0 && x->same_owner && fchown(fd, n->uid, n->gid) < 0)
		rc = rs_err(x->err, -errno, "entry '%s': chown %u:%u: %s", entry, n->uid, n->gid,
			    strerror(errno));
	if (rc == 0)
		rc = apply_xattrs(x, fd, -1, NULL, id, entry);
	if (rc == 0 && fchmod(fd, final_mode(x, n)) < 0)
		rc = rs_err(x->err, -errno, "entry '%s': chmod: %s", entry, strerror(errno));
	if (rc == 0) {
		struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_NOW}, mtime_of(n)};
		if (futimens(fd, ts) < 0)
			rc = rs_err(x->err, -errno, "entry '%s': set mtime: %s", entry,
				    strerror(errno));
	}
	if (rc < 0)
		unlinkat(dfd, base, 0);
	return rc;
}

/* Metadata of a node that has no fd we may open (symlink, device, fifo). */
static int finish_at(struct xctx *x, int dfd, const char *base, uint32_t id,
		     const struct esgz_node *n, const char *entry)
{
	if (x->same_owner && fchownat(dfd, base, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return rs_err(x->err, -errno, "entry '%s': chown %u:%u: %s", entry, n->uid, n->gid,
			      strerror(errno));
	int rc = apply_xattrs(x, -1, dfd, base, id, entry);
	if (rc < 0)
		return rc;
	if (n->type != ESGZ_SYMLINK && fchmodat(dfd, base, final_mode(x, n), 0) < 0)
		return rs_err(x->err, -errno, "entry '%s': chmod: %s", entry, strerror(errno));
	struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_NOW}, mtime_of(n)};
	if (utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return rs_err(x->err, -errno, "entry '%s': set mtime: %s", entry, strerror(errno));
	return 0;
}

/* Creates at dfd/base a non-directory, non-hardlink with the content and
 * metadata of node id; entry names the TOC entry for errors. */
static int make_node(struct xctx *x, int dfd, const char *base, uint32_t id, const char *entry)
{
	const struct esgz_node *n = esgz_index_node(x->idx, id);
	int rc = remove_existing(x, dfd, base, entry);
	if (rc < 0)
		return rc;
	switch (n->type) {
	case ESGZ_REG:
		return make_regular(x, dfd, base, id, n, entry);
	case ESGZ_SYMLINK: {
		const char *target = esgz_index_str(x->idx, n->link);
		if (symlinkat(target, dfd, base) < 0)
			return rs_err(x->err, -errno, "entry '%s': cannot create symlink: %s",
				      entry, strerror(errno));
		break;
	}
	case ESGZ_CHAR:
	case ESGZ_BLOCK:
	case ESGZ_FIFO: {
		mode_t fmt = n->type == ESGZ_CHAR    ? S_IFCHR
			     : n->type == ESGZ_BLOCK ? S_IFBLK
						     : S_IFIFO;
		dev_t dev = n->type == ESGZ_FIFO ? 0 : makedev(n->devmajor, n->devminor);
		if (mknodat(dfd, base, fmt | 0600, dev) < 0)
			return rs_err(x->err, -errno, "entry '%s': cannot create %s: %s", entry,
				      n->type == ESGZ_FIFO ? "fifo" : "device", strerror(errno));
		break;
	}
	default:
		return rs_err(x->err, -EINVAL, "entry '%s': unexpected node type %u", entry,
			      n->type);
	}
	rc = finish_at(x, dfd, base, id, n, entry);
	if (rc < 0)
		unlinkat(dfd, base, 0);
	return rc;
}

/* Makes dfd/base a real directory: keeps one that is there, replaces anything
 * else (a symlink in particular is removed, never followed). */
static int make_dir(struct xctx *x, int dfd, const char *base, uint32_t id, const char *entry)
{
	/* A parent the TOC never named gets tar's default mode (umask applies);
	 * a named one stays private until its metadata is set at the end. */
	mode_t mode = node_from_toc(x, esgz_index_node(x->idx, id)) ? 0700 : 0777;
	struct stat st;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		if (unlinkat(dfd, base, 0) < 0)
			return rs_err(x->err, -errno,
				      "entry '%s': cannot remove the existing file: %s", entry,
				      strerror(errno));
	} else if (errno != ENOENT) {
		return rs_err(x->err, -errno, "entry '%s': %s", entry, strerror(errno));
	}
	if (mkdirat(dfd, base, mode) < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot create directory: %s", entry,
			      strerror(errno));
	return 0;
}

static bool valid_base(const char *base)
{
	return *base && strchr(base, '/') == NULL && strcmp(base, ".") != 0 &&
	       strcmp(base, "..") != 0 && strlen(base) <= NAME_MAX;
}

static int extract_dir_entries(struct xctx *x, uint32_t dir, uint32_t **stack, size_t *nstack,
			       size_t *capstack)
{
	const char *dpath = node_path(x, dir);
	cleanup_fd int dfd = open_dir_path(x, dpath);
	if (dfd < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot open directory: %s",
			      *dpath ? dpath : ".", strerror(errno));
	uint32_t n = 0;
	const uint32_t *kids = esgz_index_children(x->idx, dir, &n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t id = kids[i];
		if (id >= x->nnodes || x->done[id])
			return rs_err(x->err, -EINVAL, "directory '%s': bad child node %u", dpath,
				      id);
		const struct esgz_node *c = esgz_index_node(x->idx, id);
		const char *entry = esgz_node_name(x->idx, c);
		const char *base = esgz_index_str(x->idx, c->base);
		if (!valid_base(base))
			return rs_err(x->err, -EINVAL, "entry '%s': invalid name '%s'", entry,
				      base);
		x->done[id] = 1;
		int rc = 0;
		switch (c->type) {
		case ESGZ_DIR:
			rc = make_dir(x, dfd, base, id, entry);
			if (rc == 0 && push_id(stack, nstack, capstack, id) < 0)
				rc = rs_err(x->err, -ENOMEM, "out of memory");
			break;
		case ESGZ_HARDLINK:
			x->done[id] = 0;
			if (push_id(&x->links, &x->nlinks, &x->caplinks, id) < 0)
				rc = rs_err(x->err, -ENOMEM, "out of memory");
			break;
		default:
			rc = make_node(x, dfd, base, id, entry);
			break;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int open_parent(struct xctx *x, uint32_t id, const char **base)
{
	const struct esgz_node *n = esgz_index_node(x->idx, id);
	*base = esgz_index_str(x->idx, n->base);
	return open_dir_path(x, node_path(x, n->parent));
}

static int make_hardlink(struct xctx *x, uint32_t id)
{
	const struct esgz_node *n = esgz_index_node(x->idx, id);
	const char *entry = esgz_node_name(x->idx, n);
	uint32_t target = n->link;
	if (target >= x->nnodes)
		return rs_err(x->err, -EINVAL, "entry '%s': hard link to a missing entry", entry);
	const struct esgz_node *t = esgz_index_node(x->idx, target);
	if (t->type == ESGZ_DIR || t->type == ESGZ_HARDLINK)
		return rs_err(x->err, -EINVAL, "entry '%s': hard link to directory '%s'", entry,
			      esgz_node_name(x->idx, t));
	const char *base;
	cleanup_fd int dfd = open_parent(x, id, &base);
	if (dfd < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot open its directory: %s", entry,
			      strerror(errno));
	uint32_t src = x->done[target] ? target : x->holder[target];
	if (src == ESGZ_NONE) {
		/* A later entry replaced the target; tar's link still reaches the
		 * old file, so its first link gets the old content. */
		int rc = make_node(x, dfd, base, target, entry);
		if (rc == 0)
			x->holder[target] = id;
		return rc;
	}
	const char *sbase;
	cleanup_fd int sfd = open_parent(x, src, &sbase);
	if (sfd < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot open the directory of '%s': %s",
			      entry, node_path(x, src), strerror(errno));
	int rc = remove_existing(x, dfd, base, entry);
	if (rc < 0)
		return rc;
	if (linkat(sfd, sbase, dfd, base, 0) < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot link to '%s': %s", entry,
			      node_path(x, src), strerror(errno));
	return 0;
}

/* Directory metadata goes last, deepest first, so that creating content does
 * not disturb mtimes and restrictive modes do not block the way in. */
static int finish_dir(struct xctx *x, uint32_t id)
{
	const struct esgz_node *n = esgz_index_node(x->idx, id);
	const char *path = node_path(x, id);
	const char *entry = *path ? path : ".";
	if (!node_from_toc(x, n))
		return 0;
	cleanup_fd int fd = open_dir_path(x, path);
	if (fd < 0)
		return rs_err(x->err, -errno, "entry '%s': cannot open directory: %s", entry,
			      strerror(errno));
	if (x->same_owner && fchown(fd, n->uid, n->gid) < 0)
		return rs_err(x->err, -errno, "entry '%s': chown %u:%u: %s", entry, n->uid, n->gid,
			      strerror(errno));
	int rc = apply_xattrs(x, fd, -1, NULL, id, entry);
	if (rc < 0)
		return rc;
	if (fchmod(fd, final_mode(x, n)) < 0)
		return rs_err(x->err, -errno, "entry '%s': chmod: %s", entry, strerror(errno));
	struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_NOW}, mtime_of(n)};
	if (futimens(fd, ts) < 0)
		return rs_err(x->err, -errno, "entry '%s': set mtime: %s", entry, strerror(errno));
	return 0;
}

static int run(struct xctx *x)
{
	uint32_t *stack = NULL;
	size_t nstack = 0, capstack = 0;
	int rc = push_id(&stack, &nstack, &capstack, ESGZ_ROOT);
	if (rc < 0) {
		free(stack);
		return rs_err(x->err, -ENOMEM, "out of memory");
	}
	x->done[ESGZ_ROOT] = 1;
	while (rc == 0 && nstack > 0) {
		uint32_t d = stack[--nstack];
		if (push_id(&x->dirs, &x->ndirs, &x->capdirs, d) < 0)
			rc = rs_err(x->err, -ENOMEM, "out of memory");
		else
			rc = extract_dir_entries(x, d, &stack, &nstack, &capstack);
	}
	free(stack);
	for (size_t i = 0; rc == 0 && i < x->nlinks; i++)
		rc = make_hardlink(x, x->links[i]);
	for (size_t i = x->ndirs; rc == 0 && i > 0; i--)
		rc = finish_dir(x, x->dirs[i - 1]);
	return rc;
}

int esgz_extract(const struct esgz_blob *b, struct esgz_reader *r, const char *dir,
		 const struct esgz_extract_opts *opts, struct rs_error *err)
{
	struct esgz_extract_opts defaults = {0};
	if (!opts)
		opts = &defaults;
	if (!b || !b->index)
		return rs_err(err, -EINVAL, "no layer index to extract");
	const struct esgz_index *idx = b->index;
	uint32_t nnodes = esgz_index_node_count(idx);
	if (nnodes == 0 || esgz_index_node(idx, ESGZ_ROOT)->type != ESGZ_DIR)
		return rs_err(err, -EINVAL, "layer has no root directory");
	cleanup_fd int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return rs_err(err, -errno, "%s: %s", dir, strerror(errno));
	struct xctx x = {
	    .b = b,
	    .idx = idx,
	    .r = r,
	    .same_owner = !opts->no_same_owner,
	    .xattrs = !opts->no_xattrs,
	    .rootfd = rootfd,
	    .nnodes = nnodes,
	    .toc_entries = esgz_index_toc_entries(idx),
	    .err = err,
	};
	x.done = calloc(nnodes, 1);
	x.holder = malloc((size_t)nnodes * sizeof(*x.holder));
	int rc;
	if (!x.done || !x.holder) {
		rc = rs_err(err, -ENOMEM, "out of memory for %u entries", nnodes);
	} else {
		memset(x.holder, 0xff, (size_t)nnodes * sizeof(*x.holder));
		rc = run(&x);
	}
	free(x.done);
	free(x.holder);
	free(x.dirs);
	free(x.links);
	free(x.buf);
	return rc;
}
