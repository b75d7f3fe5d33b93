// SPDX-License-Identifier: Apache-2.0
/* The disk tier's side of backing files: they sit in DIR/backing, share the
 * chunks' index, LRU and size bound, and are pinned while a passthrough open
 * uses them, so that eviction passes them by. Their index keys are derived
 * from the store key with a tag, so no chunk key can name one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/disk_internal.h"

void disk_backing_idx_key(const uint8_t key[RS_SHA256_LEN], bool content,
			  uint8_t out[RS_SHA256_LEN])
{
	static const char tag[] = "remote-snapshotter disk tier: backing file";
	uint8_t buf[sizeof(tag) + 1 + RS_SHA256_LEN];
	memcpy(buf, tag, sizeof(tag));
	buf[sizeof(tag)] = content ? 'c' : 'd';
	memcpy(buf + sizeof(tag) + 1, key, RS_SHA256_LEN);
	rs_sha256(buf, sizeof(buf), out);
}

static const char *sub_of(uint8_t kind)
{
	return kind == DISK_BACKING_CONTENT ? "sha256" : "derived";
}

void disk_backing_rel(const struct disk_ent *e, char out[DISK_REL_MAX])
{
	char hex[DISK_HEX_LEN + 1];
	disk_hex_encode(e->digest, hex);
	snprintf(out, DISK_REL_MAX, "%s/%s", sub_of(e->kind), hex);
}

static void rel_of(const uint8_t key[RS_SHA256_LEN], bool content, char out[DISK_REL_MAX])
{
	char hex[DISK_HEX_LEN + 1];
	disk_hex_encode(key, hex);
	snprintf(out, DISK_REL_MAX, "%s/%s", content ? "sha256" : "derived", hex);
}

static struct timespec later(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec > b.tv_sec ? a : b;
	return a.tv_nsec > b.tv_nsec ? a : b;
}

static int open_sub(struct cache_disk *d, const char *sub, struct rs_error *err)
{
	if (mkdirat(d->backing_fd, sub, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "cache %s: mkdir backing/%s: %s", d->dir, sub,
			      strerror(errno));
	int fd = openat(d->backing_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "cache %s: open backing/%s: %s", d->dir, sub,
			      strerror(errno));
	return fd;
}

int disk_backing_prepare(struct cache_disk *d, struct rs_error *err)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/backing", d->dir);
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "cache: mkdir %s: %s", p, strerror(errno));
	d->backing_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->backing_fd < 0)
		return rs_err(err, -errno, "cache: open %s: %s", p, strerror(errno));
	for (int i = 0; i < 2; i++) {
		int fd = open_sub(d, i == 0 ? "sha256" : "derived", err);
		if (fd < 0)
			return fd;
		close(fd);
	}
	int fd = open_sub(d, "tmp", err);
	if (fd < 0)
		return fd;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int e = errno;
		close(fd);
		return rs_err(err, -e, "cache %s: read backing/tmp: %s", d->dir, strerror(e));
	}
	/* Files being written when an earlier run stopped. */
	for (struct dirent *de; (de = readdir(dir));)
		if (de->d_name[0] != '.' && unlinkat(fd, de->d_name, 0) == 0)
			d->tmp_removed++;
	closedir(dir);
	return 0;
}

void disk_backing_list(struct cache_disk *d, bool content, void (*add)(void *, struct disk_found *),
		       void *arg, const atomic_bool *stop)
{
	const char *sub = content ? "sha256" : "derived";
	int fd = openat(d->backing_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		rs_log(RS_LOG_WARN, "cache %s: read backing/%s: %s", d->dir, sub, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	for (struct dirent *de;
	     !atomic_load_explicit(stop, memory_order_relaxed) && (de = readdir(dir));) {
		uint8_t key[RS_SHA256_LEN];
		struct stat st;
		if (de->d_name[0] == '.' || !disk_hex_decode(de->d_name, key) ||
		    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue; /* not ours: left alone */
		struct disk_found *f = calloc(1, sizeof(*f));
		if (!f) {
			rs_log(RS_LOG_WARN, "cache %s: out of memory while scanning", d->dir);
			break;
		}
		f->de.kind = content ? DISK_BACKING_CONTENT : DISK_BACKING_DERIVED;
		memcpy(f->de.digest, key, RS_SHA256_LEN);
		disk_backing_idx_key(key, content, f->de.e.key);
		f->de.e.size = (uint64_t)st.st_size;
		f->t = later(st.st_atim, st.st_mtim);
		add(arg, f);
	}
	closedir(dir);
}

/* Under the lock: whether size more bytes would fit with every unpinned
 * entry gone. */
static bool can_fit_locked(const struct cache_disk *d, uint64_t size)
{
	uint64_t held = d->pinned_bytes + d->reserved;
	return held <= d->max_bytes && size <= d->max_bytes - held;
}

int cache_disk_reserve(struct cache_disk *d, uint64_t size, struct rs_error *err)
{
	pthread_mutex_lock(&d->lock);
	if (!can_fit_locked(d, size)) {
		uint64_t pinned = d->pinned_bytes, reserved = d->reserved;
		pthread_mutex_unlock(&d->lock);
		return rs_err(err, -ENOSPC,
			      "cache %s: a backing file of %llu bytes does not fit the bound of "
			      "%llu bytes (%llu in use by open files, %llu being written)",
			      d->dir, (unsigned long long)size, (unsigned long long)d->max_bytes,
			      (unsigned long long)pinned, (unsigned long long)reserved);
	}
	d->reserved += size;
	disk_evict_locked(d, NULL);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void cache_disk_unreserve(struct cache_disk *d, uint64_t size)
{
	pthread_mutex_lock(&d->lock);
	d->reserved -= size <= d->reserved ? size : d->reserved;
	pthread_mutex_unlock(&d->lock);
}

int cache_disk_place_backing(struct cache_disk *d, const char *tmp,
			     const uint8_t key[RS_SHA256_LEN], bool content, uint64_t size,
			     struct rs_error *err)
{
	uint8_t ikey[RS_SHA256_LEN];
	disk_backing_idx_key(key, content, ikey);
	char rel[DISK_REL_MAX];
	rel_of(key, content, rel);
	struct disk_ent *ne = calloc(1, sizeof(*ne));
	pthread_mutex_lock(&d->lock);
	d->reserved -= size <= d->reserved ? size : d->reserved;
	/* A file the scan found but has not indexed is renamed over just the
	 * same; the scan then finds this entry and drops its own. */
	struct cache_ent *old = cache_idx_find(&d->idx, ikey);
	if (old && ((struct disk_ent *)old)->pins > 0) {
		/* In use (and so the same content): the new copy is not needed. */
		pthread_mutex_unlock(&d->lock);
		unlink(tmp);
		free(ne);
		return 0;
	}
	if (!ne || renameat(AT_FDCWD, tmp, d->backing_fd, rel) < 0) {
		int e = ne ? errno : ENOMEM;
		pthread_mutex_unlock(&d->lock);
		unlink(tmp);
		free(ne);
		return rs_err(err, -e, "cache %s: placing backing/%s: %s", d->dir, rel,
			      strerror(e));
	}
	if (old) /* renamed over: only the entry goes */
		disk_forget_locked(d, old);
	memcpy(ne->e.key, ikey, RS_SHA256_LEN);
	ne->e.size = size;
	ne->kind = content ? DISK_BACKING_CONTENT : DISK_BACKING_DERIVED;
	memcpy(ne->digest, key, RS_SHA256_LEN);
	cache_idx_insert(&d->idx, &ne->e);
	d->backing_bytes += size;
	d->backing_files++;
	/* It was reserved, so it fits unless pins grew meanwhile. */
	bool kept = disk_evict_locked(d, &ne->e);
	pthread_mutex_unlock(&d->lock);
	if (!kept)
		return rs_err(err, -ENOSPC, "cache %s: backing/%s: no room left in the bound",
			      d->dir, rel);
	return 0;
}

int cache_disk_pin_backing(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], bool content,
			   uint64_t size, int *fd_out, struct rs_error *err)
{
	uint8_t ikey[RS_SHA256_LEN];
	disk_backing_idx_key(key, content, ikey);
	char rel[DISK_REL_MAX];
	rel_of(key, content, rel);
	*fd_out = -1;
	pthread_mutex_lock(&d->lock);
	struct cache_ent *e = cache_idx_find(&d->idx, ikey);
	if (!e && d->scan.running)
		e = disk_scan_find_locked(
		    d, ikey, content ? DISK_BACKING_CONTENT : DISK_BACKING_DERIVED, key);
	struct disk_ent *de = (struct disk_ent *)e;
	if (!e) {
		pthread_mutex_unlock(&d->lock);
		return rs_err(err, -ENOENT, "cache %s: backing/%s: not there", d->dir, rel);
	}
	int fd = openat(d->backing_fd, rel, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size ||
	    e->size != size) {
		int gone = fd < 0 && errno == ENOENT;
		if (fd >= 0)
			close(fd);
		/* Removed behind our back, or another size than the TOC's. */
		if (de->pins == 0) {
			if (gone) {
				disk_forget_locked(d, e);
			} else {
				disk_remove_locked(d, e);
				d->corrupt++;
			}
		}
		pthread_mutex_unlock(&d->lock);
		return rs_err(err, -ENOENT, "cache %s: backing/%s: missing or not %llu bytes",
			      d->dir, rel, (unsigned long long)size);
	}
	if (de->pins++ == 0)
		d->pinned_bytes += e->size;
	cache_idx_touch(&d->idx, e);
	pthread_mutex_unlock(&d->lock);
	/* The access time orders the LRU after a restart. */
	const struct timespec times[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};
	(void)futimens(fd, times);
	*fd_out = fd;
	return 0;
}

void cache_disk_unpin_backing(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN], bool content,
			      int fd, bool remove)
{
	uint8_t ikey[RS_SHA256_LEN];
	disk_backing_idx_key(key, content, ikey);
	pthread_mutex_lock(&d->lock);
	struct cache_ent *e = cache_idx_find(&d->idx, ikey);
	struct disk_ent *de = (struct disk_ent *)e;
	if (e && de->pins > 0 && --de->pins == 0)
		d->pinned_bytes -= e->size;
	if (e && remove && de->pins == 0) {
		char rel[DISK_REL_MAX];
		struct stat a, b;
		disk_backing_rel(de, rel);
		if (fstat(fd, &a) == 0 &&
		    fstatat(d->backing_fd, rel, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			disk_remove_locked(d, e);
			d->corrupt++;
		}
	}
	/* Pins are the bound's slack: once one goes, what waited may fit. */
	disk_evict_locked(d, NULL);
	pthread_mutex_unlock(&d->lock);
}

struct cache_backing_store *cache_disk_backing(struct cache_disk *d)
{
	return d->backing;
}
