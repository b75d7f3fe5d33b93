// SPDX-License-Identifier: Apache-2.0
/* What a successor process needs to serve this mount's connection, kept in
 * the mount's state directory: the INIT outcome (fuse.granted, one line)
 * and, per node, the I/O modes of the opens the kernel holds and the backing
 * id they use (fuse.opens, a file mapped shared: every change lands in the
 * page cache at once, so it survives this process being killed). The kernel
 * keeps one I/O mode per inode and one backing file per passthrough inode;
 * a successor that did not know them would answer an open the kernel then
 * refuses. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs_internal.h"

#define OPENS_MAGIC "remote-snapshotter fuse.opens 1"

struct opens_header {
	char magic[32];
	char digest[RS_DIGEST_STR_LEN];
	uint32_t nnodes;
	uint32_t rec_size;
};

#define HEADER_SIZE ((size_t)4096)

_Static_assert(sizeof(struct opens_header) <= HEADER_SIZE, "header fits its page");

static int path_in(const struct lfs_layer *l, const char *name, char *out, size_t cap)
{
	if (snprintf(out, cap, "%s/%s", l->state_dir, name) >= (int)cap)
		return -ENAMETOOLONG;
	return 0;
}

int lfs_state_save_granted(struct lfs_layer *l, const struct rfuse_granted *g)
{
	if (!l->state_dir)
		return 0;
	char line[256], path[4096], tmp[4200];
	int n = rfuse_granted_format(g, line, sizeof(line));
	if (n < 0 || path_in(l, "fuse.granted", path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = write(fd, line, (size_t)n) == n ? 0 : -EIO;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

int lfs_state_load_granted(struct lfs_layer *l, struct rfuse_granted *g, struct rs_error *err)
{
	char path[4096], line[512];
	if (!l->state_dir || path_in(l, "fuse.granted", path, sizeof(path)) < 0)
		return rs_err(err, -EINVAL, "layer %s: no state directory to take over from",
			      l->digest);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "layer %s: %s: %s", l->digest, path, strerror(errno));
	ssize_t n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return rs_err(err, -EINVAL, "layer %s: %s: empty", l->digest, path);
	line[n] = '\0';
	int r = rfuse_granted_parse(line, g, err);
	if (r < 0)
		rs_error_prefix(err, "layer %s: %s: ", l->digest, path);
	return r;
}

int lfs_state_opens_map(struct lfs_layer *l, bool adopting, bool *kept)
{
	*kept = false;
	if (!l->state_dir)
		return 0;
	char path[4096];
	if (path_in(l, "fuse.opens", path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	size_t size = HEADER_SIZE + (size_t)l->nnodes * sizeof(struct lfs_open_rec);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct opens_header want = {.nnodes = l->nnodes, .rec_size = sizeof(struct lfs_open_rec)};
	snprintf(want.magic, sizeof(want.magic), "%s", OPENS_MAGIC);
	snprintf(want.digest, sizeof(want.digest), "%s", l->digest);
	struct opens_header have = {0};
	struct stat st;
	bool same = adopting && fstat(fd, &st) == 0 && (uint64_t)st.st_size == size &&
		    pread(fd, &have, sizeof(have), 0) == (ssize_t)sizeof(have) &&
		    memcmp(&have, &want, sizeof(want)) == 0;
	/* Not this layer's (or not adopting): the counts start from zero. */
	if (!same && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0 ||
		      pwrite(fd, &want, sizeof(want), 0) != (ssize_t)sizeof(want))) {
		int e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	l->opens_map = m;
	l->opens_map_size = size;
	l->opens = (struct lfs_open_rec *)((char *)m + HEADER_SIZE);
	*kept = same;
	return 0;
}

void lfs_state_opens_unmap(struct lfs_layer *l)
{
	if (l->opens_map)
		munmap(l->opens_map, l->opens_map_size);
	l->opens_map = NULL;
	l->opens = NULL;
}
