// SPDX-License-Identifier: Apache-2.0
/* Disk usage of a snapshot's fs directory, counted as containerd's
 * fs.DiskUsage (continuity fs/du_unix.go) does: a walk with lstat, each
 * distinct (dev, ino) counted once, size = st_blocks * 512. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/snap_internal.h"

#define BLOCK_UNIT 512

struct ino_key {
	dev_t dev;
	ino_t ino;
	bool used;
};

/* Open-addressed set of inodes seen; cap is a power of two. */
struct ino_set {
	struct ino_key *v;
	size_t n, cap;
};

static size_t ino_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
	return (size_t)(h ^ h >> 29);
}

static bool ino_insert_nogrow(struct ino_set *s, dev_t dev, ino_t ino)
{
	size_t mask = s->cap - 1;
	for (size_t i = ino_hash(dev, ino) & mask;; i = (i + 1) & mask) {
		struct ino_key *k = &s->v[i];
		if (!k->used) {
			*k = (struct ino_key){.dev = dev, .ino = ino, .used = true};
			s->n++;
			return true;
		}
		if (k->dev == dev && k->ino == ino)
			return false;
	}
}

/* 1: new, 0: seen before, -ENOMEM. */
static int ino_insert(struct ino_set *s, dev_t dev, ino_t ino)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		struct ino_key *nv = calloc(ncap, sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		struct ino_set ns = {.v = nv, .cap = ncap};
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i].used)
				ino_insert_nogrow(&ns, s->v[i].dev, s->v[i].ino);
		free(s->v);
		*s = ns;
	}
	return ino_insert_nogrow(s, dev, ino) ? 1 : 0;
}

struct du {
	struct ino_set seen;
	int64_t size;
	struct rs_error *err;
};

static int du_path(struct du *du, const char *path, bool root)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT && !root)
			return 0; /* removed while we walked */
		return rs_err(du->err, -errno, "disk usage: lstat %s: %s", path, strerror(errno));
	}
	int r = ino_insert(&du->seen, st.st_dev, st.st_ino);
	if (r < 0)
		return rs_err(du->err, r, "out of memory");
	if (r == 1)
		du->size += (int64_t)st.st_blocks * BLOCK_UNIT;
	if (!S_ISDIR(st.st_mode))
		return 0;
	/* Names first, directory closed before descending: depth costs no fds. */
	DIR *d = opendir(path);
	if (!d) {
		if (errno == ENOENT && !root)
			return 0;
		return rs_err(du->err, -errno, "disk usage: open %s: %s", path, strerror(errno));
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	int ret = 0;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **nv = realloc(names, ncap * sizeof(*nv));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			names = nv;
			cap = ncap;
		}
		if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0) {
			ret = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (ret < 0)
		rs_err(du->err, ret, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (ret == 0)
			ret = du_path(du, names[i], false);
		free(names[i]);
	}
	free(names);
	return ret;
}

int snap_disk_usage(const char *dir, int64_t *size, int64_t *inodes, struct rs_error *err)
{
	struct du du = {.err = err};
	int r = du_path(&du, dir, true);
	if (r == 0) {
		*size = du.size;
		*inodes = (int64_t)du.seen.n;
	}
	free(du.seen.v);
	return r;
}
