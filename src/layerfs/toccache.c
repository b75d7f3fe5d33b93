/* SPDX-License-Identifier: Apache-2.0 */
/* The blob tails (TOC and footer) kept in CACHE_DIR/toc/<blob digest hex>,
 * so that a layer opened again (after a daemon restart) needs no registry
 * request. A file is untrusted local state: a header binds the payload to
 * its blob (digest, size, where the bytes sit) and to its sha256, every
 * number is checked before use, and a file that fails any check is removed.
 * They are small (a TOC compresses to ~50 bytes an entry), outside the chunk
 * store's bound, and never evicted. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layerfs_internal.h"

#define TOC_DIR "toc"
#define TMP_PREFIX ".tmp-"
#define MAGIC "RSTOCTL\n"
#define MAGIC_LEN 8
#define VERSION 1u
/* magic, version, header size, blob digest, blob size, tail offset, tail
 * length, payload sha256; integers little-endian. */
#define HDR_SIZE (MAGIC_LEN + 4 + 4 + RS_SHA256_LEN + 8 + 8 + 8 + RS_SHA256_LEN)
/* A tail is the TOC's compressed bytes and the footer; the TOC's own bound
 * caps it. */
#define TAIL_MAX ((uint64_t)ESGZ_DEFAULT_MAX_TOC_SIZE + ESGZ_ZSTD_FOOTER_FRAME)

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void hex_of(const uint8_t sum[RS_SHA256_LEN], char out[2 * RS_SHA256_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < RS_SHA256_LEN; i++) {
		out[2 * i] = digits[sum[i] >> 4];
		out[2 * i + 1] = digits[sum[i] & 15];
	}
	out[2 * RS_SHA256_LEN] = '\0';
}

int lfs_toc_dir_init(struct lfs_runtime *rt, const char *cache_dir, struct rs_error *err)
{
	if (!cache_dir)
		return 0;
	if (asprintf(&rt->toc_dir, "%s/" TOC_DIR, cache_dir) < 0) {
		rt->toc_dir = NULL;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (mkdir(rt->toc_dir, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "mkdir %s: %s", rt->toc_dir, strerror(errno));
	/* Temp files a crash left between create and rename. */
	DIR *d = opendir(rt->toc_dir);
	if (!d)
		return rs_err(err, -errno, "%s: %s", rt->toc_dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	return 0;
}

static void path_of(const struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN], char *out,
		    size_t cap)
{
	char hex[2 * RS_SHA256_LEN + 1];
	hex_of(blob, hex);
	snprintf(out, cap, "%s/%s", rt->toc_dir, hex);
}

/* Removes the file at path if it is still the one fd has open (a good one
 * renamed over it since stays). */
static void remove_if_same(const char *path, int fd)
{
	struct stat a, b;
	if (fd >= 0 && (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_dev != b.st_dev ||
			a.st_ino != b.st_ino))
		return;
	if (unlink(path) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "layerfs: remove %s: %s", path, strerror(errno));
}

static void drop(const char *path, int fd, const char *why)
{
	rs_log(RS_LOG_WARN, "layerfs: kept TOC %s: %s; removed (the TOC comes from the registry)",
	       path, why);
	remove_if_same(path, fd);
}

void lfs_toc_drop(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN], const char *why)
{
	if (!rt->toc_dir)
		return;
	char path[PATH_MAX];
	path_of(rt, blob, path, sizeof(path));
	drop(path, -1, why);
}

static int read_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

const char *lfs_toc_check(const uint8_t *file, size_t file_size, const uint8_t blob[RS_SHA256_LEN],
			  struct lfs_toc_tail *t, char *why, size_t cap)
{
	memset(t, 0, sizeof(*t));
	if (file_size < HDR_SIZE) {
		snprintf(why, cap, "short file (%zu bytes)", file_size);
		return why;
	}
	if (memcmp(file, MAGIC, MAGIC_LEN) != 0)
		return "not a kept TOC (wrong magic)";
	const uint8_t *p = file + MAGIC_LEN;
	uint64_t version = get_le(p, 4), hsize = get_le(p + 4, 4);
	if (version != VERSION || hsize != HDR_SIZE) {
		snprintf(why, cap,
			 "version %" PRIu64 " with a %" PRIu64 "-byte header (want %u, %d)",
			 version, hsize, VERSION, HDR_SIZE);
		return why;
	}
	p += 8;
	if (memcmp(p, blob, RS_SHA256_LEN) != 0)
		return "it names another blob digest";
	p += RS_SHA256_LEN;
	uint64_t size = get_le(p, 8), off = get_le(p + 8, 8), len = get_le(p + 16, 8);
	p += 24;
	if (size == 0 || size > INT64_MAX || len == 0 || len > TAIL_MAX || len > size ||
	    off != size - len) {
		snprintf(why, cap,
			 "implausible blob size %" PRIu64 ", tail offset %" PRIu64
			 ", tail length %" PRIu64,
			 size, off, len);
		return why;
	}
	if ((uint64_t)file_size != HDR_SIZE + len) {
		snprintf(why, cap, "%zu bytes, the header says %" PRIu64, file_size,
			 (uint64_t)HDR_SIZE + len);
		return why;
	}
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(file + HDR_SIZE, (size_t)len, sum);
	if (memcmp(sum, p, RS_SHA256_LEN) != 0)
		return "payload does not match its sha256";
	t->data = (uint8_t *)file + HDR_SIZE;
	t->len = (size_t)len;
	t->blob_size = (int64_t)size;
	return NULL;
}

int lfs_toc_load(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN],
		 struct lfs_toc_tail *out)
{
	memset(out, 0, sizeof(*out));
	if (!rt->toc_dir)
		return -ENOENT;
	char path[PATH_MAX], why[160];
	path_of(rt, blob, path, sizeof(path));
	/* O_NONBLOCK: a FIFO put there must not hang the open. */
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		snprintf(why, sizeof(why), "open: %s", strerror(errno));
		drop(path, -1, why);
		return -EBADMSG;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		drop(path, fd, "not a regular file");
		return -EBADMSG;
	}
	if ((uint64_t)st.st_size > HDR_SIZE + TAIL_MAX) {
		snprintf(why, sizeof(why), "too large (%lld bytes)", (long long)st.st_size);
		drop(path, fd, why);
		return -EBADMSG;
	}
	size_t fsize = (size_t)st.st_size;
	cleanup_free uint8_t *file = malloc(fsize ? fsize : 1);
	if (!file)
		return -ENOMEM;
	int r = read_full(fd, file, fsize, 0);
	if (r < 0) {
		snprintf(why, sizeof(why), "read: %s", strerror(-r));
		drop(path, fd, why);
		return -EBADMSG;
	}
	struct lfs_toc_tail t;
	const char *bad = lfs_toc_check(file, fsize, blob, &t, why, sizeof(why));
	if (bad) {
		drop(path, fd, bad);
		return -EBADMSG;
	}
	memmove(file, t.data, t.len);
	t.data = steal_pointer(&file);
	*out = t;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
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

int lfs_toc_store(struct lfs_runtime *rt, const uint8_t blob[RS_SHA256_LEN],
		  const struct lfs_toc_tail *t, struct rs_error *err)
{
	if (!rt->toc_dir)
		return 0;
	if (t->len == 0 || t->len > TAIL_MAX || t->blob_size < (int64_t)t->len)
		return rs_err(err, -EINVAL, "a tail of %zu bytes of a %lld-byte blob", t->len,
			      (long long)t->blob_size);
	char path[PATH_MAX], tmp[PATH_MAX], hex[2 * RS_SHA256_LEN + 1];
	path_of(rt, blob, path, sizeof(path));
	hex_of(blob, hex);
	static atomic_uint_fast64_t seq;
	snprintf(tmp, sizeof(tmp), "%s/" TMP_PREFIX "%s-%ld-%" PRIuFAST64, rt->toc_dir, hex,
		 (long)getpid(), atomic_fetch_add(&seq, 1));
	uint8_t h[HDR_SIZE];
	uint8_t *p = h;
	memcpy(p, MAGIC, MAGIC_LEN);
	p += MAGIC_LEN;
	put_le(p, VERSION, 4);
	put_le(p + 4, HDR_SIZE, 4);
	p += 8;
	memcpy(p, blob, RS_SHA256_LEN);
	p += RS_SHA256_LEN;
	put_le(p, (uint64_t)t->blob_size, 8);
	put_le(p + 8, (uint64_t)(t->blob_size - (int64_t)t->len), 8);
	put_le(p + 16, t->len, 8);
	p += 24;
	rs_sha256(t->data, t->len, p);

	cleanup_fd int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return rs_err(err, -errno, "create %s: %s", tmp, strerror(errno));
	int r = write_all(fd, h, sizeof(h));
	if (r == 0)
		r = write_all(fd, t->data, t->len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && close(rs_steal_fd(&fd)) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp);
		return rs_err(err, r, "write %s: %s", path, strerror(-r));
	}
	cleanup_fd int dfd = open(rt->toc_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		return rs_err(err, -errno, "fsync %s: %s", rt->toc_dir, strerror(errno));
	return 0;
}

/* ---- what an open read --------------------------------------------------- */

static int rec_read_at(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err)
{
	struct lfs_toc_recorder *rec = ctx;
	int r = esgz_read_at(rec->inner, buf, len, off, err);
	if (r < 0 || len == 0)
		return r;
	if (rec->n == LFS_TOC_REC_SPANS || len > TAIL_MAX)
		return 0;
	uint8_t *copy = malloc(len);
	if (!copy)
		return 0; /* only the kept copy is lost */
	memcpy(copy, buf, len);
	rec->spans[rec->n++] = (struct lfs_toc_span){.off = off, .len = len, .data = copy};
	return 0;
}

void lfs_toc_recorder_wrap(struct lfs_toc_recorder *rec, struct esgz_reader *inner,
			   struct esgz_reader *out)
{
	memset(rec, 0, sizeof(*rec));
	rec->inner = inner;
	*out = (struct esgz_reader){.ctx = rec, .size = inner->size, .read_at = rec_read_at};
}

int lfs_toc_recorder_tail(const struct lfs_toc_recorder *rec, int64_t from,
			  struct lfs_toc_tail *out)
{
	memset(out, 0, sizeof(*out));
	int64_t size = rec->inner->size;
	if (from < 0 || from >= size || (uint64_t)(size - from) > TAIL_MAX)
		return -E2BIG;
	uint8_t *data = malloc((size_t)(size - from));
	if (!data)
		return -ENOMEM;
	for (int64_t pos = from; pos < size;) {
		const struct lfs_toc_span *s = NULL;
		for (unsigned k = 0; k < rec->n && !s; k++)
			if (rec->spans[k].off <= pos &&
			    pos < rec->spans[k].off + (int64_t)rec->spans[k].len)
				s = &rec->spans[k];
		if (!s) {
			free(data);
			return -ENOENT;
		}
		int64_t end = s->off + (int64_t)s->len;
		if (end > size)
			end = size;
		memcpy(data + (pos - from), s->data + (pos - s->off), (size_t)(end - pos));
		pos = end;
	}
	*out = (struct lfs_toc_tail){.data = data, .len = (size_t)(size - from), .blob_size = size};
	return 0;
}

void lfs_toc_recorder_free(struct lfs_toc_recorder *rec)
{
	for (unsigned k = 0; k < rec->n; k++)
		free(rec->spans[k].data);
	rec->n = 0;
}
