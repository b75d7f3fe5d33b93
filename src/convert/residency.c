// SPDX-License-Identifier: Apache-2.0
/* Which parts of each recorded file the workload touched: the page cache is
 * emptied of the unpacked image before the run, so the pages resident after
 * it (mincore) are those it read or mapped, plus what the kernel read ahead
 * around them: on the loop filesystem of loopfs.c, the same window a lazy
 * mount uses. A big file touched in a small part (a 30 MiB ICU data library,
 * a compiler of which one compile maps half) then has only those parts
 * prefetched. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

int conv_rec_evict(const char *dir, struct rs_error *err)
{
	if (nftw(dir, evict_one, 64, FTW_PHYS | FTW_MOUNT) < 0)
		return rs_err(err, -errno, "walking %s: %s", dir, strerror(errno));
	return 0;
}

/* A file with more runs than this is taken as read whole. */
#define MAX_RANGES 65536

/* The resident runs of a file as (offset, length) pairs; *n = 0 when the
 * file is small, wholly resident, untouched or cannot be measured. */
static int resident_ranges(int root, const char *path, int64_t **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	cleanup_fd int fd = conv_rec_open_in_root(root, path + 1);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size < CONV_REC_PARTIAL_MIN || (uint64_t)st.st_size > SIZE_MAX)
		return 0;
	size_t len = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return 0;
	size_t pages = (len + page - 1) / page;
	cleanup_free unsigned char *vec = malloc(pages);
	int rc = 0;
	if (!vec)
		rc = -ENOMEM;
	else if (mincore(map, len, vec) < 0)
		pages = 0; /* unknown: whole */
	munmap(map, len);
	size_t runs = 0, resident = 0;
	for (size_t i = 0; rc == 0 && i < pages; i++) {
		resident += vec[i] & 1;
		runs += (vec[i] & 1) && (i == 0 || !(vec[i - 1] & 1));
	}
	if (rc < 0 || resident == 0 || resident == pages || runs > MAX_RANGES)
		return rc;
	int64_t *r = malloc(2 * runs * sizeof(*r));
	if (!r)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < pages; i++) {
		if (!(vec[i] & 1))
			continue;
		size_t j = i;
		while (j < pages && (vec[j] & 1))
			j++;
		int64_t off = (int64_t)(i * page), end = (int64_t)(j * page);
		r[2 * k] = off;
		r[2 * k + 1] = (end > st.st_size ? st.st_size : end) - off;
		k++;
		i = j;
	}
	*out = r;
	*n = k;
	return 0;
}

int conv_rec_touched(const char *merged, struct conv_record_result *res, struct rs_error *err)
{
	cleanup_fd int root = open(merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return rs_err(err, -errno, "%s: %s", merged, strerror(errno));
	for (size_t i = 0; i < res->n_paths; i++) {
		const char *p = res->paths[i];
		int64_t *ranges;
		size_t n;
		int rc = resident_ranges(root, p, &ranges, &n);
		if (rc == 0 && n > 0)
			rc = conv_record_touched_add(res, p, ranges, n);
		free(ranges);
		if (rc < 0)
			return rs_err(err, rc, "%s: %s", p, strerror(-rc));
	}
	return 0;
}
