// SPDX-License-Identifier: Apache-2.0
/* Disk tier: content-addressed files in DIR/sha256/<2 hex>/<64 hex>, written
 * through a temp file and rename, bounded in size with LRU eviction, and
 * checked against their key on every load. A value whose key is not its
 * content's sha256 (a legacy chunk, keyed by layer and offset) carries that
 * sha256 in its name, <key>.<sha256>, and is checked against it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/disk_internal.h"

#define TMP_PREFIX ".tmp-"
#define HEX_LEN DISK_HEX_LEN
#define REL_MAX DISK_REL_MAX
#define DIRECT_MIN ((size_t)1 << 20)
#define DIRECT_ALIGN ((size_t)4096)

void disk_hex_encode(const uint8_t key[RS_SHA256_LEN], char out[HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < RS_SHA256_LEN; i++) {
		out[2 * i] = digits[key[i] >> 4];
		out[2 * i + 1] = digits[key[i] & 15];
	}
	out[HEX_LEN] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parses exactly 64 lowercase hex digits. */
bool disk_hex_decode(const char *s, uint8_t key[RS_SHA256_LEN])
{
	if (strlen(s) != HEX_LEN)
		return false;
	for (size_t i = 0; i < RS_SHA256_LEN; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* The file of key: "ab/<key>", or "ab/<key>.<digest>" with a digest that is
 * not the key. */
static void rel_path(const uint8_t key[RS_SHA256_LEN], const uint8_t *digest, char out[REL_MAX])
{
	char hex[HEX_LEN + 1], dhex[HEX_LEN + 1];
	disk_hex_encode(key, hex);
	if (!digest) {
		snprintf(out, REL_MAX, "%.2s/%s", hex, hex);
		return;
	}
	disk_hex_encode(digest, dhex);
	snprintf(out, REL_MAX, "%.2s/%s.%s", hex, hex, dhex);
}

void disk_chunk_rel(const struct disk_ent *de, char out[REL_MAX])
{
	rel_path(de->e.key, de->keyed ? de->digest : NULL, out);
}

static void ent_list_free(struct cache_ent *e)
{
	while (e) {
		struct cache_ent *next = e->next;
		free(e);
		e = next;
	}
}

void disk_forget_locked(struct cache_disk *d, struct cache_ent *e)
{
	if (((struct disk_ent *)e)->kind != DISK_CHUNK) {
		d->backing_bytes -= e->size;
		d->backing_files--;
	}
	cache_idx_remove(&d->idx, e);
	if (!d->scan.running) {
		free(e);
		return;
	}
	struct cache_ent *old = cache_idx_find(&d->scan.gone, e->key);
	if (old) {
		cache_idx_remove(&d->scan.gone, old);
		free(old);
	}
	cache_idx_insert(&d->scan.gone, e);
}

void disk_remove_locked(struct cache_disk *d, struct cache_ent *e)
{
	const struct disk_ent *de = (const struct disk_ent *)e;
	char rel[REL_MAX];
	int dfd = d->root_fd;
	if (de->kind == DISK_CHUNK) {
		disk_chunk_rel(de, rel);
	} else {
		disk_backing_rel(de, rel);
		dfd = d->backing_fd;
	}
	if (unlinkat(dfd, rel, 0) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "cache %s: remove %s: %s", d->dir, rel, strerror(errno));
	disk_forget_locked(d, e);
}

static bool over_bound(const struct cache_disk *d)
{
	return d->idx.bytes + d->reserved > d->max_bytes;
}

/* Not while the scan runs: the LRU holds only what was used since the start
 * and the bytes count only part of the files, so the bound is enforced when
 * the scan ends. Until then puts may exceed it by what they add. */
bool disk_evict_locked(struct cache_disk *d, struct cache_ent *keep)
{
	if (d->scan.running)
		return true;
	for (struct cache_ent *v = d->idx.tail; v && over_bound(d);) {
		struct cache_ent *prev = v->prev;
		if (v != keep && ((struct disk_ent *)v)->pins == 0) {
			disk_remove_locked(d, v);
			d->evictions++;
		}
		v = prev;
	}
	if (keep && over_bound(d) && ((struct disk_ent *)keep)->pins == 0) {
		disk_remove_locked(d, keep);
		d->evictions++;
		return false;
	}
	return true;
}

/* The prefix dirs are made at open, before any put may need one: a mkdirat
 * each, which the scan's listing of 100,000 files would not allow. */
static int make_prefix_dirs(struct cache_disk *d, struct rs_error *err)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 256; i++) {
		const char prefix[3] = {digits[i >> 4], digits[i & 15], '\0'};
		if (mkdirat(d->root_fd, prefix, 0700) < 0 && errno != EEXIST)
			return rs_err(err, -errno, "cache %s: mkdir sha256/%s: %s", d->dir, prefix,
				      strerror(errno));
	}
	return 0;
}

/* Tells this open's temp files from an earlier run's, which may have had
 * the same pid (a container's daemon). */
static uint64_t new_tmp_tag(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The store is the daemon's alone: chunks of private images, unreadable to
 * other users (0700 dirs, 0600 files). */
static int mkdir_p1(const char *path, struct rs_error *err)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "cache: mkdir %s: %s", path, strerror(errno));
	return 0;
}

int cache_disk_open(const char *dir, uint64_t max_bytes, unsigned flags, struct cache_disk **out,
		    struct rs_error *err)
{
	*out = NULL;
	cleanup_free char *lockp = NULL, *rootp = NULL;
	int rc = mkdir_p1(dir, err);
	if (rc < 0)
		return rc;
	struct cache_disk *d = calloc(1, sizeof(*d));
	if (!d)
		return rs_err(err, -ENOMEM, "cache %s: out of memory", dir);
	d->lock_fd = d->root_fd = d->backing_fd = -1;
	d->flags = flags;
	d->max_bytes = max_bytes;
	pthread_mutex_init(&d->lock, NULL);
	d->dir = strdup(dir);
	if (!d->dir || cache_idx_init(&d->idx) < 0 || cache_idx_init(&d->scan.found) < 0 ||
	    cache_idx_init(&d->scan.gone) < 0) {
		rc = rs_err(err, -ENOMEM, "cache %s: out of memory", dir);
		goto fail;
	}

	if (asprintf(&lockp, "%s/lock", dir) < 0 || asprintf(&rootp, "%s/sha256", dir) < 0) {
		lockp = rootp = NULL;
		rc = rs_err(err, -ENOMEM, "cache %s: out of memory", dir);
		goto fail;
	}
	d->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0) {
		rc = rs_err(err, -errno, "cache: open %s: %s", lockp, strerror(errno));
		goto fail;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK
			 ? rs_err(err, -EBUSY, "cache %s: in use by another process", dir)
			 : rs_err(err, -errno, "cache: lock %s: %s", lockp, strerror(errno));
		goto fail;
	}
	rc = mkdir_p1(rootp, err);
	if (rc < 0)
		goto fail;
	d->root_fd = open(rootp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->root_fd < 0) {
		rc = rs_err(err, -errno, "cache: open %s: %s", rootp, strerror(errno));
		goto fail;
	}
	rc = make_prefix_dirs(d, err);
	if (rc == 0)
		rc = disk_backing_prepare(d, err);
	if (rc < 0)
		goto fail;
	d->tmp_tag = new_tmp_tag();
	char backing_dir[4200];
	snprintf(backing_dir, sizeof(backing_dir), "%s/backing", dir);
	rc = cache_backing_store_new(d, backing_dir, &d->backing, err);
	if (rc < 0)
		goto fail;
	disk_scan_start(d);
	*out = d;
	return 0;
fail:
	cache_disk_close(d);
	return rc;
}

void cache_disk_close(struct cache_disk *d)
{
	if (!d)
		return;
	disk_scan_stop(d);
	if (d->idx.buckets) {
		ent_list_free(d->idx.head);
		cache_idx_fini(&d->idx);
	}
	cache_backing_store_free(d->backing);
	if (d->root_fd >= 0)
		close(d->root_fd);
	if (d->backing_fd >= 0)
		close(d->backing_fd);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->dir);
	free(d);
}

/* Under d->lock: whether the file at rel is the one fd has open. */
static bool same_file_locked(struct cache_disk *d, const char *rel, int fd)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && fstatat(d->root_fd, rel, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Forgets key and deletes its file when the file fd has open failed
 * verification; a put may have renamed a good file over it since the get
 * opened it, and that one stays. */
static void drop_corrupt(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], const char *rel,
			 int fd)
{
	pthread_mutex_lock(&d->lock);
	if (same_file_locked(d, rel, fd)) {
		struct cache_ent *e = cache_idx_find(&d->idx, key);
		char erel[REL_MAX];
		if (e)
			disk_chunk_rel((struct disk_ent *)e, erel);
		if (e && strcmp(erel, rel) == 0)
			disk_forget_locked(d, e);
		unlinkat(d->root_fd, rel, 0);
	}
	d->corrupt++;
	d->misses++;
	pthread_mutex_unlock(&d->lock);
	rs_log(RS_LOG_WARN, "cache %s: sha256/%s: content does not match its digest; deleted",
	       d->dir, rel);
}

/* Forgets key when its file is gone (removed behind our back), unless a put
 * has written it again since the get missed it. */
static void drop_missing(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN])
{
	pthread_mutex_lock(&d->lock);
	struct cache_ent *e = cache_idx_find(&d->idx, key);
	if (e) {
		char rel[REL_MAX];
		struct stat st;
		disk_chunk_rel((struct disk_ent *)e, rel);
		if (fstatat(d->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			disk_forget_locked(d, e);
	}
	d->misses++;
	pthread_mutex_unlock(&d->lock);
}

bool cache_disk_has(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], uint64_t *size)
{
	pthread_mutex_lock(&d->lock);
	struct cache_ent *e = cache_idx_find(&d->idx, key);
	if (!e && d->scan.running)
		e = disk_scan_find_locked(d, key, DISK_CHUNK, NULL);
	bool has = e && ((struct disk_ent *)e)->kind == DISK_CHUNK;
	if (has)
		*size = e->size;
	pthread_mutex_unlock(&d->lock);
	return has;
}

int cache_disk_get(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], struct cache_buf **out,
		   struct rs_error *err)
{
	*out = NULL;
	char rel[REL_MAX];
	uint8_t want[RS_SHA256_LEN];
	pthread_mutex_lock(&d->lock);
	struct cache_ent *e = cache_idx_find(&d->idx, key);
	if (!e && d->scan.running)
		e = disk_scan_find_locked(d, key, DISK_CHUNK, NULL);
	if (!e || ((struct disk_ent *)e)->kind != DISK_CHUNK) {
		d->misses++;
		pthread_mutex_unlock(&d->lock);
		return -ENOENT;
	}
	const struct disk_ent *de = (const struct disk_ent *)e;
	disk_chunk_rel(de, rel);
	memcpy(want, de->keyed ? de->digest : key, RS_SHA256_LEN);
	cache_idx_touch(&d->idx, e);
	pthread_mutex_unlock(&d->lock);

	cleanup_fd int fd = openat(d->root_fd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e2 = errno;
		drop_missing(d, key);
		if (e2 == ENOENT)
			return -ENOENT;
		return rs_err(err, -e2, "cache %s: open sha256/%s: %s", d->dir, rel, strerror(e2));
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "cache %s: stat sha256/%s: %s", d->dir, rel,
			      strerror(errno));
	if ((uint64_t)st.st_size > CACHE_MAX_VALUE) {
		drop_corrupt(d, key, rel, fd);
		return -ENOENT;
	}
	cleanup_cache_buf struct cache_buf *b = NULL;
	int rc = cache_buf_new((size_t)st.st_size, &b);
	if (rc < 0)
		return rs_err(err, rc, "cache %s: sha256/%s: out of memory", d->dir, rel);
	uint8_t *p = cache_buf_wdata(b);
	size_t len = cache_buf_len(b), got = 0;
	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rs_err(err, -errno, "cache %s: read sha256/%s: %s", d->dir, rel,
				      strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(p, got, sum);
	if (got != len || memcmp(sum, want, RS_SHA256_LEN) != 0) {
		drop_corrupt(d, key, rel, fd);
		return -ENOENT;
	}
	/* The access time orders the LRU after a restart; relatime won't keep it. */
	const struct timespec times[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};
	(void)futimens(fd, times);
	pthread_mutex_lock(&d->lock);
	d->hits++;
	pthread_mutex_unlock(&d->lock);
	*out = steal_pointer(&b);
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The aligned bulk with O_DIRECT, the tail (and everything, where the file
 * system refuses direct I/O) through the page cache. */
static int write_direct(int fd, const uint8_t *p, size_t len)
{
	size_t bulk = len & ~(DIRECT_ALIGN - 1), done = 0;
	while (done < bulk) {
		ssize_t n = write(fd, p + done, bulk - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	done &= ~(DIRECT_ALIGN - 1);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0 ||
	    lseek(fd, (off_t)done, SEEK_SET) < 0)
		return -errno;
	return write_all(fd, p + done, len - done);
}

int cache_disk_put_keyed(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN],
			 const uint8_t *digest, const void *data, size_t len, unsigned put_flags,
			 struct rs_error *err)
{
	if (len > CACHE_MAX_VALUE || len > d->max_bytes)
		return 0;
	if (digest && memcmp(digest, key, RS_SHA256_LEN) == 0)
		digest = NULL;
	char hex[HEX_LEN + 1], rel[REL_MAX], tmp[REL_MAX];
	disk_hex_encode(key, hex);
	rel_path(key, digest, rel);
	uint64_t seq = atomic_fetch_add(&d->tmp_seq, 1);
	snprintf(tmp, sizeof(tmp), "%.2s/" TMP_PREFIX "%s-%ld-%016" PRIx64 "-%" PRIu64, hex, hex,
		 (long)getpid(), d->tmp_tag, seq);

	/* Big aligned chunks bypass the page cache: copying them there cost a
	 * fifth of a cold read's CPU, and the memory tier holds them anyway. */
	bool direct = !(put_flags & CACHE_PUT_WRITEBACK) && len >= DIRECT_MIN &&
		      ((uintptr_t)data & (DIRECT_ALIGN - 1)) == 0;
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
	cleanup_fd int fd = openat(d->root_fd, tmp, flags | (direct ? O_DIRECT : 0), 0600);
	if (fd < 0 && direct && errno == EINVAL) {
		direct = false;
		fd = openat(d->root_fd, tmp, flags, 0600);
	}
	if (fd < 0)
		return rs_err(err, -errno, "cache %s: create sha256/%s: %s", d->dir, tmp,
			      strerror(errno));
	int rc = direct ? write_direct(fd, data, len) : write_all(fd, data, len);
	if (rc == 0 && (d->flags & CACHE_FSYNC) && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && close(rs_steal_fd(&fd)) < 0)
		rc = -errno;
	struct disk_ent *ne = rc == 0 ? calloc(1, sizeof(*ne)) : NULL;
	if (rc == 0 && !ne)
		rc = -ENOMEM;
	if (rc < 0) {
		unlinkat(d->root_fd, tmp, 0);
		return rs_err(err, rc, "cache %s: write sha256/%s: %s", d->dir, rel, strerror(-rc));
	}

	/* The rename and the index change together: an eviction or a failed get
	 * in between would unlink or forget the file just written. */
	pthread_mutex_lock(&d->lock);
	if (renameat(d->root_fd, tmp, d->root_fd, rel) < 0) {
		rc = -errno;
		pthread_mutex_unlock(&d->lock);
		unlinkat(d->root_fd, tmp, 0);
		free(ne);
		return rs_err(err, rc, "cache %s: write sha256/%s: %s", d->dir, rel, strerror(-rc));
	}
	struct cache_ent *e = cache_idx_find(&d->idx, key);
	if (e) {
		/* Another name (a digest of other content) or size: replaced. */
		char orel[REL_MAX];
		disk_chunk_rel((struct disk_ent *)e, orel);
		if (strcmp(orel, rel) != 0)
			unlinkat(d->root_fd, orel, 0);
		disk_forget_locked(d, e);
	}
	memcpy(ne->e.key, key, RS_SHA256_LEN);
	ne->e.size = len;
	ne->keyed = digest != NULL;
	if (digest)
		memcpy(ne->digest, digest, RS_SHA256_LEN);
	cache_idx_insert(&d->idx, &ne->e);
	disk_evict_locked(d, &ne->e);
	pthread_mutex_unlock(&d->lock);

	if (d->flags & CACHE_FSYNC) {
		char prefix[3] = {hex[0], hex[1], '\0'};
		cleanup_fd int dfd = openat(d->root_fd, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			return rs_err(err, -errno, "cache %s: fsync sha256/%s: %s", d->dir, prefix,
				      strerror(errno));
	}
	return 0;
}

int cache_disk_put(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], const void *data,
		   size_t len, unsigned put_flags, struct rs_error *err)
{
	return cache_disk_put_keyed(d, key, NULL, data, len, put_flags, err);
}

void cache_disk_stats(struct cache_disk *d, struct cache_disk_stats *out)
{
	pthread_mutex_lock(&d->lock);
	out->hits = d->hits;
	out->misses = d->misses;
	out->evictions = d->evictions;
	out->corrupt = d->corrupt;
	out->tmp_removed = d->tmp_removed;
	out->bytes = d->idx.bytes;
	out->entries = d->idx.count;
	out->max_bytes = d->max_bytes;
	out->backing_files = d->backing_files;
	out->backing_bytes = d->backing_bytes;
	out->pinned_bytes = d->pinned_bytes;
	out->scanning = d->scan.running;
	out->scan_found = d->scan.found.count;
	pthread_mutex_unlock(&d->lock);
}
