// SPDX-License-Identifier: Apache-2.0
/* Snapshot directories: ROOT/snapshots/<id>/{fs,work} made under a temp name
 * and renamed into place, removed by renaming to "rm-<name>" and deleting,
 * and never deleted through a mount (a FUSE layer, or a dead one left by a
 * previous run): mounts inside are detached first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "snapshot/snap_internal.h"

#define TMP_PREFIX "new-"
#define RM_PREFIX SNAP_RM_PREFIX
/* Mounts stacked on one path that a detach loop peels off at most. */
#define DETACH_MAX 16

static char *path_fmt(const char *fmt, const char *dir, long long id)
{
	char *p = NULL;
	if (asprintf(&p, fmt, dir, id) < 0)
		return NULL;
	return p;
}

char *snap_id_dir(const struct snapshotter *s, int64_t id)
{
	return path_fmt("%s/%lld", s->snap_dir, (long long)id);
}

char *snap_fs_dir(const struct snapshotter *s, int64_t id)
{
	return path_fmt("%s/%lld/fs", s->snap_dir, (long long)id);
}

char *snap_work_dir(const struct snapshotter *s, int64_t id)
{
	return path_fmt("%s/%lld/work", s->snap_dir, (long long)id);
}

static char *join(const char *a, const char *b)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

/* Undoes mountinfo's octal escapes (\040 and friends) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/* Calls fn with each mount point of /proc/self/mountinfo; stops on non-zero. */
static int mountinfo_each(int (*fn)(void *ctx, const char *mp), void *ctx)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int r = 0;
	while (r == 0 && getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint ... */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape(tok);
		r = fn(ctx, tok);
	}
	free(line);
	fclose(f);
	return r;
}

static int mp_equal(void *ctx, const char *mp)
{
	return strcmp(ctx, mp) == 0;
}

bool snap_is_mountpoint(const char *path)
{
	/* mountinfo first: an lstat of a FUSE mount whose server is gone (kept
	 * in an fd store for this process to take over) would wait for it. */
	if (mountinfo_each(mp_equal, (void *)path) == 1)
		return true;
	struct stat st, pst;
	if (lstat(path, &st) < 0)
		return errno == ENOTCONN;
	cleanup_free char *parent = join(path, "..");
	if (parent && lstat(parent, &pst) == 0 && pst.st_dev != st.st_dev)
		return true;
	return mountinfo_each(mp_equal, (void *)path) == 1;
}

int snap_detach(const char *path)
{
	for (int i = 0; i < DETACH_MAX; i++) {
		if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
			return errno == EINVAL || errno == ENOENT ? 0 : -errno;
	}
	return -EBUSY;
}

struct under {
	const char *prefix;
	size_t len;
	char **v;
	size_t n, cap;
};

static int collect_under(void *ctx, const char *mp)
{
	struct under *u = ctx;
	if (strncmp(mp, u->prefix, u->len) != 0 || (mp[u->len] != '/' && mp[u->len] != '\0'))
		return 0;
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 4;
		char **nv = realloc(u->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		u->v = nv;
		u->cap = ncap;
	}
	u->v[u->n] = strdup(mp);
	if (!u->v[u->n])
		return -ENOMEM;
	u->n++;
	return 0;
}

/* Detaches every mount at or below path, deepest first. */
static void detach_under(const char *path)
{
	struct under u = {.prefix = path, .len = strlen(path)};
	mountinfo_each(collect_under, &u);
	for (size_t i = u.n; i-- > 0;) {
		int r = snap_detach(u.v[i]);
		if (r < 0)
			rs_log(RS_LOG_WARN, "snapshot: detach %s: %s", u.v[i], strerror(-r));
		free(u.v[i]);
	}
	free(u.v);
}

/* Deletes path; a directory on another device than dev (a mount) is
 * detached instead of entered. */
static int rm_rec(const char *path, dev_t dev)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno != ENOTCONN)
			return -errno;
		snap_detach(path);
		if (lstat(path, &st) < 0)
			return errno == ENOENT ? 0 : -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	if (st.st_dev != dev) {
		int r = snap_detach(path);
		if (r < 0)
			return r;
		return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
	}
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *child = join(path, e->d_name);
		int r = child ? rm_rec(child, dev) : -ENOMEM;
		free(child);
		if (r < 0 && ret == 0)
			ret = r;
	}
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT && ret == 0)
		ret = -errno;
	return ret;
}

int snap_rm_tree(const char *path)
{
	struct stat st;
	detach_under(path);
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return rm_rec(path, st.st_dev);
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int snap_dir_remove(struct snapshotter *s, const char *name, struct rs_error *err)
{
	cleanup_free char *path = join(s->snap_dir, name);
	cleanup_free char *rm = NULL;
	if (!path)
		return rs_err(err, -ENOMEM, "out of memory");
	if (strncmp(name, RM_PREFIX, strlen(RM_PREFIX)) != 0) {
		if (asprintf(&rm, "%s/" RM_PREFIX "%s", s->snap_dir, name) < 0) {
			rm = NULL;
			return rs_err(err, -ENOMEM, "out of memory");
		}
		int r = rename(path, rm) < 0 ? -errno : 0;
		if (r == -EEXIST || r == -ENOTEMPTY) {
			/* A removal of the same name that a crash interrupted. */
			snap_rm_tree(rm);
			r = rename(path, rm) < 0 ? -errno : 0;
		}
		if (r == -ENOENT)
			return 0;
		if (r == 0) {
			free(path);
			path = steal_pointer(&rm);
		} else {
			rs_log(RS_LOG_WARN, "snapshot: rename %s for removal: %s", path,
			       strerror(-r));
		}
	}
	int r = snap_rm_tree(path);
	if (r < 0)
		return rs_err(err, r, "remove %s: %s", path, strerror(-r));
	return 0;
}

static int make_dirs(const char *td, bool with_work, const char *owner_fs, struct rs_error *err)
{
	cleanup_free char *fs = join(td, "fs");
	cleanup_free char *work = join(td, "work");
	if (!fs || !work)
		return rs_err(err, -ENOMEM, "out of memory");
	if (mkdir(fs, 0755) < 0)
		return rs_err(err, -errno, "mkdir %s: %s", fs, strerror(errno));
	if (with_work && mkdir(work, 0711) < 0)
		return rs_err(err, -errno, "mkdir %s: %s", work, strerror(errno));
	if (owner_fs) {
		struct stat st;
		if (stat(owner_fs, &st) < 0)
			return rs_err(err, -errno, "failed to stat parent %s: %s", owner_fs,
				      strerror(errno));
		if (lchown(fs, st.st_uid, st.st_gid) < 0)
			return rs_err(err, -errno, "failed to chown %s: %s", fs, strerror(errno));
	}
	return 0;
}

int snap_dir_create(struct snapshotter *s, int64_t id, bool with_work, const char *owner_fs,
		    struct rs_error *err)
{
	cleanup_free char *td = join(s->snap_dir, TMP_PREFIX "XXXXXX");
	cleanup_free char *final = snap_id_dir(s, id);
	if (!td || !final)
		return rs_err(err, -ENOMEM, "out of memory");
	if (!mkdtemp(td))
		return rs_err(err, -errno, "failed to create temp dir in %s: %s", s->snap_dir,
			      strerror(errno));
	int r = make_dirs(td, with_work, owner_fs, err);
	if (r == 0 && rename(td, final) < 0) {
		r = -errno;
		if (r == -EEXIST || r == -ENOTEMPTY) {
			/* <id> made by a run that crashed before its row was committed. */
			char name[32];
			snprintf(name, sizeof(name), "%lld", (long long)id);
			rs_log(RS_LOG_INFO, "snapshot: replacing stale directory %s", final);
			snap_dir_remove(s, name, NULL);
			r = rename(td, final) < 0 ? -errno : 0;
		}
		if (r < 0)
			rs_err(err, r, "failed to rename %s to %s: %s", td, final, strerror(-r));
	}
	if (r < 0) {
		snap_rm_tree(td);
		return r;
	}
	r = sync_dir(s->snap_dir);
	if (r < 0) {
		snap_rm_tree(final);
		return rs_err(err, r, "fsync %s: %s", s->snap_dir, strerror(-r));
	}
	return 0;
}

bool snap_parse_id(const char *name, int64_t *id)
{
	int64_t v = 0;
	if (name[0] < '1' || name[0] > '9')
		return false;
	for (const char *p = name; *p; p++) {
		if (*p < '0' || *p > '9' || p - name >= 18)
			return false;
		v = v * 10 + (*p - '0');
	}
	*id = v;
	return true;
}
