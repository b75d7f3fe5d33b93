// SPDX-License-Identifier: Apache-2.0
/* The disk tier's index, built by a thread after open so that a start serves
 * at once (100,000 files took 1.3-4.3 s to list and stat). The thread lists
 * each prefix dir and the backing store, stats every file without the lock,
 * and keeps what it finds in scan.found; once it has seen everything it
 * sorts those by access time into the LRU, behind what was used meanwhile,
 * and evicts to the bound. A get that comes first takes its entry from
 * found, or from the file itself where the scan has not been yet. What the
 * scan adds is checked under the lock against what puts and removals did
 * since open (the index, scan.gone): it neither doubles an entry nor brings
 * back a removed one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/disk_internal.h"

#define TMP_PREFIX ".tmp-"
#define HEX_LEN DISK_HEX_LEN

static struct timespec later(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec > b.tv_sec ? a : b;
	return a.tv_nsec > b.tv_nsec ? a : b;
}

static int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

static bool stopped(struct cache_disk *d)
{
	return atomic_load_explicit(&d->scan.stop, memory_order_relaxed);
}

/* "<key>" or "<key>.<digest>" (with a digest other than the key). */
static bool parse_name(const char *name, struct disk_ent *de)
{
	size_t n = strlen(name);
	char key[HEX_LEN + 1];
	if (n == HEX_LEN)
		return disk_hex_decode(name, de->e.key);
	if (n != 2 * HEX_LEN + 1 || name[HEX_LEN] != '.')
		return false;
	memcpy(key, name, HEX_LEN);
	key[HEX_LEN] = '\0';
	de->keyed = true;
	return disk_hex_decode(key, de->e.key) && disk_hex_decode(name + HEX_LEN + 1, de->digest) &&
	       memcmp(de->e.key, de->digest, RS_SHA256_LEN) != 0;
}

/* The directory fd and the name of de's file. */
static int ent_file(const struct cache_disk *d, const struct disk_ent *de, char rel[DISK_REL_MAX])
{
	if (de->kind == DISK_CHUNK) {
		disk_chunk_rel(de, rel);
		return d->root_fd;
	}
	disk_backing_rel(de, rel);
	return d->backing_fd;
}

static bool same_name(const struct disk_ent *a, const struct disk_ent *b)
{
	return a->kind == b->kind && a->keyed == b->keyed &&
	       (!a->keyed || memcmp(a->digest, b->digest, RS_SHA256_LEN) == 0);
}

/* Under the lock: removes f's file (by name: no put has renamed a file there
 * since open, or the key would be in the index) and frees f. */
static void unlink_found_locked(struct cache_disk *d, struct disk_found *f)
{
	char rel[DISK_REL_MAX];
	int dfd = ent_file(d, &f->de, rel);
	if (unlinkat(dfd, rel, 0) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "cache %s: remove %s: %s", d->dir, rel, strerror(errno));
	free(f);
}

/* Under the lock: the entry by which a put, a get or a removal since open
 * decided key's file, if any. */
static struct disk_ent *decided_locked(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN])
{
	struct cache_ent *e = cache_idx_find(&d->idx, key);
	if (!e)
		e = cache_idx_find(&d->scan.gone, key);
	return (struct disk_ent *)e;
}

/* Under the lock: f, listed before that decision, is stale. A file of
 * another name is a second file of the key, which the decision left out:
 * it goes, as rebuilds always removed one of two. */
static void drop_stale_locked(struct cache_disk *d, struct disk_found *f,
			      const struct disk_ent *known)
{
	if (same_name(&f->de, known))
		free(f);
	else
		unlink_found_locked(d, f);
}

static void index_found_locked(struct cache_disk *d, struct disk_found *f, bool at_tail)
{
	if (at_tail)
		cache_idx_insert_tail(&d->idx, &f->de.e);
	else
		cache_idx_insert(&d->idx, &f->de.e);
	if (f->de.kind != DISK_CHUNK) {
		d->backing_bytes += f->de.e.size;
		d->backing_files++;
	}
}

/* Under the lock: adds a listed file to found. */
static void add_found_locked(struct cache_disk *d, struct disk_found *f)
{
	struct disk_ent *known = decided_locked(d, f->de.e.key);
	if (known) {
		drop_stale_locked(d, f, known);
		return;
	}
	if (f->de.kind == DISK_CHUNK && f->de.e.size > CACHE_MAX_VALUE) {
		unlink_found_locked(d, f);
		d->corrupt++;
		return;
	}
	struct disk_found *o = (struct disk_found *)cache_idx_find(&d->scan.found, f->de.e.key);
	if (o) {
		/* Two files of one key (a crash between a put's rename and its
		 * removal of the other name): the older one goes. */
		if (ts_cmp(f->t, o->t) < 0) {
			unlink_found_locked(d, f);
			return;
		}
		cache_idx_remove(&d->scan.found, &o->de.e);
		unlink_found_locked(d, o);
	}
	cache_idx_insert(&d->scan.found, &f->de.e);
}

/* Under the lock: key's entry out of found, unless a removal since made it
 * stale (the caller has found no entry in the index). */
static struct disk_found *take_found_locked(struct cache_disk *d, const uint8_t key[RS_SHA256_LEN])
{
	struct disk_found *f = (struct disk_found *)cache_idx_find(&d->scan.found, key);
	if (!f)
		return NULL;
	cache_idx_remove(&d->scan.found, &f->de.e);
	struct cache_ent *g = cache_idx_find(&d->scan.gone, key);
	if (g) {
		drop_stale_locked(d, f, (struct disk_ent *)g);
		return NULL;
	}
	return f;
}

static bool listed_locked(const struct cache_disk *d, uint8_t kind,
			  const uint8_t key[RS_SHA256_LEN])
{
	if (kind == DISK_CHUNK)
		return d->scan.listed[key[0]];
	return d->scan.backing_listed[kind == DISK_BACKING_CONTENT ? 0 : 1];
}

/* f's size and time from its file; under the lock, so that what it finds is
 * the file as it is (a put renames and a removal unlinks under it). */
static bool stat_found_locked(struct cache_disk *d, struct disk_found *f)
{
	char rel[DISK_REL_MAX];
	struct stat st;
	int dfd = ent_file(d, &f->de, rel);
	if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return false;
	f->de.e.size = (uint64_t)st.st_size;
	f->t = later(st.st_atim, st.st_mtim);
	return true;
}

/* Without the lock: the name of a keyed file of f's key in its prefix dir
 * (the newest, if a crash left two), which only a listing can tell. */
static bool find_keyed_name(struct cache_disk *d, struct disk_found *f)
{
	char hex[HEX_LEN + 1];
	disk_hex_encode(f->de.e.key, hex);
	const char prefix[3] = {hex[0], hex[1], '\0'};
	int fd = openat(d->root_fd, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool found = false;
	struct timespec newest = {0};
	for (struct dirent *de; (de = readdir(dir));) {
		struct disk_ent cand = {0};
		struct stat st;
		if (strncmp(de->d_name, hex, HEX_LEN) != 0 || !parse_name(de->d_name, &cand) ||
		    !cand.keyed || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		struct timespec t = later(st.st_atim, st.st_mtim);
		if (found && ts_cmp(t, newest) < 0)
			continue;
		found = true;
		newest = t;
		f->de.keyed = true;
		memcpy(f->de.digest, cand.digest, RS_SHA256_LEN);
	}
	closedir(dir);
	return found;
}

struct cache_ent *disk_scan_find_locked(struct cache_disk *d, const uint8_t ikey[RS_SHA256_LEN],
					uint8_t kind, const uint8_t *store_key)
{
	struct disk_found *f = take_found_locked(d, ikey);
	if (f) {
		index_found_locked(d, f, false);
		return &f->de.e;
	}
	if (listed_locked(d, kind, ikey) || !(f = calloc(1, sizeof(*f))))
		return NULL;
	memcpy(f->de.e.key, ikey, RS_SHA256_LEN);
	f->de.kind = kind;
	if (kind != DISK_CHUNK)
		memcpy(f->de.digest, store_key, RS_SHA256_LEN);
	/* The plain name takes one fstatat; a keyed file of the key, if one
	 * is there too, the scan removes when it comes to it. */
	bool there = stat_found_locked(d, f);
	if (!there && kind == DISK_CHUNK) {
		pthread_mutex_unlock(&d->lock);
		bool named = find_keyed_name(d, f);
		pthread_mutex_lock(&d->lock);
		/* Meanwhile a put may have indexed the key, the scan listed it,
		 * or ended. */
		struct cache_ent *e = cache_idx_find(&d->idx, ikey);
		if (e || !d->scan.running) {
			free(f);
			return e;
		}
		struct disk_found *g = take_found_locked(d, ikey);
		if (g) {
			free(f);
			index_found_locked(d, g, false);
			return &g->de.e;
		}
		there = named && !listed_locked(d, kind, ikey) && stat_found_locked(d, f);
	}
	if (!there) {
		free(f);
		return NULL;
	}
	index_found_locked(d, f, false);
	return &f->de.e;
}

/* ---- the scan thread ---------------------------------------------------- */

struct listing {
	struct disk_found **v;
	size_t n, cap;
	bool oom;
};

static void listing_add(void *arg, struct disk_found *f)
{
	struct listing *l = arg;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 256;
		struct disk_found **nv =
		    ncap <= SIZE_MAX / sizeof(*nv) ? realloc(l->v, ncap * sizeof(*nv)) : NULL;
		if (!nv) {
			l->oom = true;
			free(f);
			return;
		}
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = f;
}

/* Lists one prefix dir: removes an earlier run's temp files (own_tmp is in
 * this open's), stats the rest. */
static void list_prefix(struct cache_disk *d, int i, const char *own_tmp, struct listing *l,
			uint64_t *tmp_removed)
{
	static const char digits[] = "0123456789abcdef";
	const char prefix[3] = {digits[i >> 4], digits[i & 15], '\0'};
	int fd = openat(d->root_fd, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		rs_log(RS_LOG_WARN, "cache %s: read sha256/%s: %s", d->dir, prefix,
		       strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	for (struct dirent *de; !stopped(d) && (de = readdir(dir));) {
		const char *name = de->d_name;
		if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
			if (!strstr(name, own_tmp) && unlinkat(fd, name, 0) == 0)
				(*tmp_removed)++;
			continue;
		}
		struct disk_ent probe = {0};
		struct stat st;
		if (!parse_name(name, &probe) || strncmp(name, prefix, 2) != 0 ||
		    fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue; /* not ours: left alone */
		struct disk_found *f = calloc(1, sizeof(*f));
		if (!f) {
			l->oom = true;
			break;
		}
		f->de = probe;
		f->de.e.size = (uint64_t)st.st_size;
		f->t = later(st.st_atim, st.st_mtim);
		listing_add(l, f);
	}
	closedir(dir);
}

static void add_listing(struct cache_disk *d, struct listing *l, bool *listed, uint64_t tmp_removed)
{
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < l->n; i++)
		add_found_locked(d, l->v[i]);
	*listed = true;
	d->tmp_removed += tmp_removed;
	pthread_mutex_unlock(&d->lock);
	l->n = 0;
}

static int found_cmp(const void *a, const void *b)
{
	const struct disk_found *x = *(struct disk_found *const *)a;
	const struct disk_found *y = *(struct disk_found *const *)b;
	int c = ts_cmp(x->t, y->t);
	return c ? c : memcmp(x->de.e.key, y->de.e.key, RS_SHA256_LEN);
}

static void move_found_locked(struct cache_disk *d, struct disk_found *f)
{
	cache_idx_remove(&d->scan.found, &f->de.e);
	struct disk_ent *known = decided_locked(d, f->de.e.key);
	if (known)
		drop_stale_locked(d, f, known);
	else
		index_found_locked(d, f, true);
}

/* Under the lock, once every file is listed: found into the index, oldest
 * access last, behind everything used since open. */
static void merge_found_locked(struct cache_disk *d)
{
	size_t n = d->scan.found.count, k = 0;
	struct disk_found **v = n && n <= SIZE_MAX / sizeof(*v) ? malloc(n * sizeof(*v)) : NULL;
	if (v) {
		for (struct cache_ent *e = d->scan.found.head; e; e = e->next)
			v[k++] = (struct disk_found *)e;
		qsort(v, k, sizeof(*v), found_cmp);
		while (k)
			move_found_locked(d, v[--k]);
		free(v);
	}
	/* Out of memory for the sort: in any order. */
	while (d->scan.found.head)
		move_found_locked(d, (struct disk_found *)d->scan.found.head);
	while (d->scan.gone.head) {
		struct cache_ent *g = d->scan.gone.head;
		cache_idx_remove(&d->scan.gone, g);
		free(g);
	}
}

static void *scan_main(void *arg)
{
	struct cache_disk *d = arg;
	int64_t t0 = rs_monotonic_ms();
	char own_tmp[32];
	snprintf(own_tmp, sizeof(own_tmp), "-%016" PRIx64 "-", d->tmp_tag);
	struct listing l = {0};
	for (int i = 0; i < 256 && !stopped(d); i++) {
		uint64_t tmp_removed = 0;
		list_prefix(d, i, own_tmp, &l, &tmp_removed);
		add_listing(d, &l, &d->scan.listed[i], tmp_removed);
	}
	for (int k = 0; k < 2 && !stopped(d); k++) {
		disk_backing_list(d, k == 0, listing_add, &l, &d->scan.stop);
		add_listing(d, &l, &d->scan.backing_listed[k], 0);
	}
	free(l.v);
	if (l.oom)
		rs_log(RS_LOG_WARN,
		       "cache %s: out of memory while scanning: files left out of "
		       "the index (and the bound)",
		       d->dir);
	if (stopped(d))
		return NULL; /* what it found, close frees */
	pthread_mutex_lock(&d->lock);
	merge_found_locked(d);
	d->scan.running = false;
	disk_evict_locked(d, NULL);
	uint64_t files = d->idx.count, bytes = d->idx.bytes;
	pthread_mutex_unlock(&d->lock);
	rs_log(RS_LOG_INFO,
	       "cache %s: index built: %" PRIu64 " files, %" PRIu64 " bytes, in %lld ms", d->dir,
	       files, bytes, (long long)(rs_monotonic_ms() - t0));
	return NULL;
}

void disk_scan_start(struct cache_disk *d)
{
	d->scan.running = true;
	/* Signals are for the threads that take them, never this one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&d->scan.thread, NULL, scan_main, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		d->scan.started = true;
		return;
	}
	rs_log(RS_LOG_WARN, "cache %s: no scan thread (%s): scanning before serving", d->dir,
	       strerror(rc));
	scan_main(d);
}

static void free_all(struct cache_idx *ix)
{
	while (ix->head) {
		struct cache_ent *e = ix->head;
		cache_idx_remove(ix, e);
		free(e);
	}
	cache_idx_fini(ix);
}

void disk_scan_stop(struct cache_disk *d)
{
	atomic_store(&d->scan.stop, true);
	if (d->scan.started) {
		pthread_join(d->scan.thread, NULL);
		d->scan.started = false;
	}
	if (d->scan.found.buckets)
		free_all(&d->scan.found);
	if (d->scan.gone.buckets)
		free_all(&d->scan.gone);
}
