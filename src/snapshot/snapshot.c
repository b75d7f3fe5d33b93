// SPDX-License-Identifier: Apache-2.0
/* The snapshotter's life: open (root, lock, database, restore), close, and
 * the list of directories being worked on outside the lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "snapshot/snap_internal.h"

#define OVERLAY_INDEX_PARAM "/sys/module/overlay/parameters/index"

int snap_busy_add(struct snapshotter *s, int64_t id, const char *target)
{
	struct snap_busy *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->id = id;
	if (target && !(b->target = strdup(target))) {
		free(b);
		return -ENOMEM;
	}
	b->next = s->busy;
	s->busy = b;
	return 0;
}

void snap_busy_del(struct snapshotter *s, int64_t id)
{
	for (struct snap_busy **p = &s->busy; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			struct snap_busy *b = *p;
			*p = b->next;
			free(b->target);
			free(b);
			break;
		}
	}
	pthread_cond_broadcast(&s->busy_cv);
}

bool snap_busy_id(const struct snapshotter *s, int64_t id)
{
	for (const struct snap_busy *b = s->busy; b; b = b->next)
		if (b->id == id)
			return true;
	return false;
}

bool snap_busy_target(const struct snapshotter *s, const char *target)
{
	for (const struct snap_busy *b = s->busy; b; b = b->next)
		if (b->target && strcmp(b->target, target) == 0)
			return true;
	return false;
}

static int mkdir_p(const char *path, mode_t mode)
{
	cleanup_free char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *c = p + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -errno;
		*c = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Highest numeric directory name under ROOT/snapshots (0: none), also inside
 * removal names, so that no id handed out later meets a leftover directory. */
static int64_t max_dir_id(const char *snap_dir)
{
	DIR *d = opendir(snap_dir);
	int64_t max = 0, id;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		if (strncmp(n, SNAP_RM_PREFIX, strlen(SNAP_RM_PREFIX)) == 0)
			n += strlen(SNAP_RM_PREFIX);
		if (snap_parse_id(n, &id) && id > max)
			max = id;
	}
	closedir(d);
	return max;
}

static void free_snapshotter(struct snapshotter *s)
{
	snap_db_close(s->db);
	if (s->root_fd >= 0)
		close(s->root_fd);
	while (s->busy)
		snap_busy_del(s, s->busy->id);
	pthread_cond_destroy(&s->busy_cv);
	pthread_mutex_destroy(&s->lock);
	free(s->root);
	free(s->snap_dir);
	free(s);
}

static int open_root(struct snapshotter *s, const char *root, struct rs_error *err)
{
	int r = mkdir_p(root, 0700);
	if (r < 0)
		return rs_err(err, r, "create %s: %s", root, strerror(-r));
	s->root = realpath(root, NULL);
	if (!s->root)
		return rs_err(err, -errno, "resolve %s: %s", root, strerror(errno));
	if (asprintf(&s->snap_dir, "%s/snapshots", s->root) < 0) {
		s->snap_dir = NULL;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (mkdir(s->snap_dir, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "create %s: %s", s->snap_dir, strerror(errno));
	s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root_fd < 0)
		return rs_err(err, -errno, "open %s: %s", s->root, strerror(errno));
	if (flock(s->root_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return rs_err(err, -EBUSY, "%s is in use by another snapshotter", s->root);
		return rs_err(err, -errno, "lock %s: %s", s->root, strerror(errno));
	}
	return 0;
}

int snap_open(const struct snap_opts *o, struct snapshotter **out, struct rs_error *err)
{
	if (!o || !o->root || !*o->root)
		return rs_err(err, -EINVAL, "snapshotter: no root directory");
	struct snapshotter *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	s->root_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->busy_cv, NULL);
	if (o->remote) {
		s->remote = *o->remote;
		s->has_remote = true;
	}
	s->index_off = access(OVERLAY_INDEX_PARAM, F_OK) == 0;
	int r = open_root(s, o->root, err);
	cleanup_free char *dbpath = NULL;
	if (r == 0 && asprintf(&dbpath, "%s/metadata.db", s->root) < 0) {
		dbpath = NULL;
		r = rs_err(err, -ENOMEM, "out of memory");
	}
	if (r == 0)
		r = snap_db_open(dbpath, &s->db, err);
	if (r == 0) {
		int64_t max = max_dir_id(s->snap_dir);
		if (max > 0)
			r = snap_db_bump_id(s->db, max + 1, err);
	}
	if (r < 0) {
		free_snapshotter(s);
		return r;
	}
	if (o->restore) {
		snap_restore(s, o->restore_threads);
		/* What a process killed inside Prepare or Remove left (a
		 * directory, perhaps a layer's mount) has no row: nothing else
		 * runs yet, so it goes now, not at containerd's next GC. */
		struct rs_error e = {0};
		if (snap_cleanup(s, &e) < 0)
			rs_log(RS_LOG_WARN, "snapshot: cleanup at start: %s", e.msg);
	}
	*out = s;
	return 0;
}

void snap_close(struct snapshotter *s)
{
	if (!s)
		return;
	snap_unmount_all(s);
	free_snapshotter(s);
}
