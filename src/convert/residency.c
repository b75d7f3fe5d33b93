// SPDX-License-Identifier: Apache-2.0
/* Which part of each recorded file the workload touched: the page cache is
 * emptied of the unpacked image before the run, so the pages resident after
 * it (mincore) are those it read or mapped, plus the kernel's readahead.
 * A big file touched in a small part (a 30 MiB ICU data library, a WAL
 * segment) is then fetched on demand instead of being prefetched whole.
 * Readahead (the disk's read_ahead_kb around every fault) makes files of a
 * few MiB look read whole: only the bigger ones are told apart. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "record_internal.h"

/* Only big files are measured; only they need writing back and dropping. */
static int evict_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode) || st->st_size < CONV_REC_PARTIAL_MIN)
		return 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		/* Dirty pages cannot be dropped: write the unpacked file back first. */
		(void)fdatasync(fd);
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	return 0;
}

int conv_rec_evict(const char *dir, bool *measurable, struct rs_error *err)
{
	struct statfs sf;
	if (statfs(dir, &sf) < 0)
		return rs_err(err, -errno, "%s: %s", dir, strerror(errno));
	*measurable = sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC;
	if (!*measurable) {
		rs_log(RS_LOG_WARN,
		       "optimize: %s is in memory (tmpfs): which part of a big file the workload "
		       "reads cannot be told, so every recorded file is prefetched whole (set "
		       "TMPDIR to a disk-backed directory)",
		       dir);
		return 0;
	}
	if (nftw(dir, evict_one, 64, FTW_PHYS | FTW_MOUNT) < 0)
		return rs_err(err, -errno, "walking %s: %s", dir, strerror(errno));
	return 0;
}

/* Whether path is big and less than half resident; false when unknown. */
static bool partly_touched(int root, const char *path)
{
	cleanup_fd int fd = conv_rec_open_in_root(root, path + 1);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size < CONV_REC_PARTIAL_MIN || (uint64_t)st.st_size > SIZE_MAX)
		return false;
	size_t len = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return false;
	size_t pages = (len + page - 1) / page, resident = 0;
	unsigned char *vec = malloc(pages);
	bool ok = vec && mincore(map, len, vec) == 0;
	for (size_t i = 0; ok && i < pages; i++)
		resident += vec[i] & 1;
	free(vec);
	munmap(map, len);
	return ok && resident * 2 < pages;
}

int conv_rec_split_partial(const char *merged, char ***paths, size_t *n, struct rs_error *err)
{
	cleanup_fd int root = open(merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return rs_err(err, -errno, "%s: %s", merged, strerror(errno));
	char **v = *paths;
	size_t k = *n;
	bool *late = calloc(k ? k : 1, sizeof(*late));
	char **out = calloc(k + 1, sizeof(*out));
	char *mark = strdup(CONV_RECORD_LANDMARK);
	if (!late || !out || !mark) {
		free(late);
		free(out);
		free(mark);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	size_t nlate = 0, at = 0;
	for (size_t i = 0; i < k; i++)
		nlate += late[i] = v[i][0] == '/' && partly_touched(root, v[i]);
	for (size_t i = 0; i < k; i++)
		if (!late[i])
			out[at++] = v[i];
	if (nlate) {
		out[at++] = mark;
		mark = NULL;
	}
	for (size_t i = 0; i < k; i++)
		if (late[i])
			out[at++] = v[i];
	free(mark);
	free(late);
	free(v);
	*paths = out;
	*n = at;
	return 0;
}
