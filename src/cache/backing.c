// SPDX-License-Identifier: Apache-2.0
/* Backing files for FUSE passthrough: the whole content of one regular file,
 * in DIR/backing/sha256/<hex> (keyed by the file's sha256, checked before a
 * file counts) or DIR/backing/derived/<hex> (a key the caller derived, never
 * equal to a content key's place). Written to a temp file and renamed into
 * place, so a crash leaves the whole file or none. The disk tier counts them
 * in its bound (room is reserved before a file is written) and leaves them
 * while they are open (disk_backing.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/disk_internal.h"

#define HEX_LEN (2 * RS_SHA256_LEN)

struct cache_backing_store {
	struct cache_disk *disk;
	char *dir;                          /* DIR/backing */
	pthread_mutex_t lock;               /* guards verified and tmp_seq */
	uint8_t (*verified)[RS_SHA256_LEN]; /* content keys checked by this process */
	size_t nverified, capverified;
	uint64_t tmp_seq;
};

struct cache_backing {
	struct cache_backing_store *bs;
	uint8_t key[RS_SHA256_LEN];
	bool content;
	int fd;
};

struct cache_backing_writer {
	struct cache_backing_store *bs;
	uint8_t key[RS_SHA256_LEN];
	bool content;
	uint64_t size;
	int fd;
	char tmp[4200];
};

int cache_backing_store_new(struct cache_disk *d, const char *backing_dir,
			    struct cache_backing_store **out, struct rs_error *err)
{
	struct cache_backing_store *bs = calloc(1, sizeof(*bs));
	if (!bs || !(bs->dir = strdup(backing_dir))) {
		free(bs);
		return rs_err(err, -ENOMEM, "cache: out of memory");
	}
	bs->disk = d;
	pthread_mutex_init(&bs->lock, NULL);
	*out = bs;
	return 0;
}

void cache_backing_store_free(struct cache_backing_store *bs)
{
	if (!bs)
		return;
	free(bs->verified);
	free(bs->dir);
	pthread_mutex_destroy(&bs->lock);
	free(bs);
}

static bool is_verified(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN])
{
	bool found = false;
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < bs->nverified && !found; i++)
		found = memcmp(bs->verified[i], key, RS_SHA256_LEN) == 0;
	pthread_mutex_unlock(&bs->lock);
	return found;
}

static void mark_verified(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN])
{
	pthread_mutex_lock(&bs->lock);
	if (bs->nverified == bs->capverified) {
		size_t cap = bs->capverified ? 2 * bs->capverified : 64;
		void *v = realloc(bs->verified, cap * RS_SHA256_LEN);
		if (!v) {
			pthread_mutex_unlock(&bs->lock);
			return;
		}
		bs->verified = v;
		bs->capverified = cap;
	}
	memcpy(bs->verified[bs->nverified++], key, RS_SHA256_LEN);
	pthread_mutex_unlock(&bs->lock);
}

/* sha256 of fd's whole content. */
static int hash_fd(int fd, uint8_t out[RS_SHA256_LEN])
{
	struct rs_sha256 h;
	if (rs_sha256_init(&h) < 0)
		return -ENOMEM;
	static __thread uint8_t buf[1 << 16];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;
			rs_sha256_free(&h);
			return e;
		}
		if (n == 0)
			break;
		rs_sha256_update(&h, buf, (size_t)n);
		off += n;
	}
	rs_sha256_final(&h, out);
	rs_sha256_free(&h);
	return 0;
}

int cache_backing_begin(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			bool content, uint64_t size, struct cache_backing_writer **out,
			struct rs_error *err)
{
	if (size > (uint64_t)INT64_MAX)
		return rs_err(err, -EFBIG, "cache: a backing file of %llu bytes",
			      (unsigned long long)size);
	struct cache_backing_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return rs_err(err, -ENOMEM, "cache: out of memory");
	int r = cache_disk_reserve(bs->disk, size, err);
	if (r < 0) {
		free(w);
		return r;
	}
	w->bs = bs;
	memcpy(w->key, key, RS_SHA256_LEN);
	w->content = content;
	w->size = size;
	pthread_mutex_lock(&bs->lock);
	uint64_t seq = bs->tmp_seq++;
	pthread_mutex_unlock(&bs->lock);
	snprintf(w->tmp, sizeof(w->tmp), "%s/tmp/%d.%llu", bs->dir, (int)getpid(),
		 (unsigned long long)seq);
	w->fd = open(w->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		int e = errno;
		cache_disk_unreserve(bs->disk, size);
		free(w);
		return rs_err(err, -e, "cache: backing temp file: %s", strerror(e));
	}
	if (ftruncate(w->fd, (off_t)size) < 0) {
		int e = errno;
		cache_backing_abort(w);
		return rs_err(err, -e, "cache: backing file of %llu bytes: %s",
			      (unsigned long long)size, strerror(e));
	}
	*out = w;
	return 0;
}

int cache_backing_pwrite(struct cache_backing_writer *w, const void *data, size_t len, uint64_t off,
			 struct rs_error *err)
{
	if (off > w->size || len > w->size - off)
		return rs_err(err, -EINVAL, "cache: backing write past the file's size");
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return rs_err(err, n < 0 ? -errno : -EIO,
				      "cache: writing a backing file: %s",
				      strerror(n < 0 ? errno : EIO));
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

void cache_backing_abort(struct cache_backing_writer *w)
{
	if (!w)
		return;
	close(w->fd);
	unlink(w->tmp);
	cache_disk_unreserve(w->bs->disk, w->size);
	free(w);
}

int cache_backing_commit(struct cache_backing_writer *w, struct rs_error *err)
{
	int r = 0;
	if (w->content) {
		uint8_t got[RS_SHA256_LEN];
		r = hash_fd(w->fd, got);
		if (r < 0)
			r = rs_err(err, r, "cache: hashing a backing file: %s", strerror(-r));
		else if (memcmp(got, w->key, RS_SHA256_LEN) != 0)
			r = rs_err(err, -EBADMSG,
				   "cache: backing file content does not match its digest");
	}
	close(w->fd);
	if (r < 0) {
		unlink(w->tmp);
		cache_disk_unreserve(w->bs->disk, w->size);
	} else {
		r = cache_disk_place_backing(w->bs->disk, w->tmp, w->key, w->content, w->size, err);
	}
	if (r == 0 && w->content)
		mark_verified(w->bs, w->key);
	free(w);
	return r;
}

int cache_backing_open(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
		       bool content, uint64_t size, struct cache_backing **out, int *fd_out,
		       struct rs_error *err)
{
	int fd;
	int r = cache_disk_pin_backing(bs->disk, key, content, size, &fd, err);
	if (r < 0)
		return r;
	/* A file left by an earlier run is checked once before it is used. */
	if (content && !is_verified(bs, key)) {
		uint8_t got[RS_SHA256_LEN];
		if (hash_fd(fd, got) < 0 || memcmp(got, key, RS_SHA256_LEN) != 0) {
			cache_disk_unpin_backing(bs->disk, key, content, fd, true);
			close(fd);
			return rs_err(err, -ENOENT,
				      "cache: a backing file does not match its digest; removed");
		}
		mark_verified(bs, key);
	}
	struct cache_backing *b = calloc(1, sizeof(*b));
	if (!b) {
		cache_disk_unpin_backing(bs->disk, key, content, fd, false);
		close(fd);
		return rs_err(err, -ENOMEM, "cache: out of memory");
	}
	b->bs = bs;
	memcpy(b->key, key, RS_SHA256_LEN);
	b->content = content;
	b->fd = fd;
	*out = b;
	*fd_out = fd;
	return 0;
}

bool cache_backing_checked(struct cache_backing_store *bs, const uint8_t key[RS_SHA256_LEN],
			   bool content)
{
	return !content || is_verified(bs, key);
}

void cache_backing_release(struct cache_backing *b)
{
	if (!b)
		return;
	cache_disk_unpin_backing(b->bs->disk, b->key, b->content, b->fd, false);
	close(b->fd);
	free(b);
}
