// SPDX-License-Identifier: Apache-2.0
/* Input side of esgz_build(): any tar libarchive reads (plain, gzip, zstd, ...;
 * ustar, GNU, PAX, sparse files) becomes a list of entries whose payloads sit in
 * a spool (memory while small, then an unlinked temp file), hashed on the way
 * in, so that build.c can reorder them. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "build_internal.h"

/* Payload bytes kept in memory before switching to a temp file. */
#define SPOOL_MEM_MAX (8u << 20)
#define READ_BLOCK (1u << 20)

void esgz_clean_name(const char *name, char *out)
{
	size_t o = 0;
	const char *p = name;
	while (*p) {
		while (*p == '/')
			p++;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - s);
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		if (o > 0)
			out[o++] = '/';
		memcpy(out + o, s, n);
		o += n;
	}
	out[o] = 0;
}

static int open_tmpfile(struct rs_error *err)
{
	const char *dirs[2] = {getenv("TMPDIR"), "/var/tmp"};
	for (int i = 0; i < 2; i++) {
		if (!dirs[i] || !*dirs[i])
			continue;
		int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		char path[4096];
		snprintf(path, sizeof(path), "%s/esgz-build-XXXXXX", dirs[i]);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0) {
			unlink(path);
			return fd;
		}
	}
	return rs_err(err, -errno, "cannot create a temp file in $TMPDIR or /var/tmp: %s",
		      strerror(errno));
}

static int write_all(int fd, const void *buf, size_t len, int64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int spool_append(struct esgz_b_spool *s, const void *data, size_t len, struct rs_error *err)
{
	if (len == 0)
		return 0;
	if (s->fd < 0 && (uint64_t)s->size + len <= SPOOL_MEM_MAX) {
		size_t need = (size_t)s->size + len;
		if (need > s->mem_cap) {
			size_t cap = s->mem_cap ? s->mem_cap : (256u << 10);
			while (cap < need)
				cap *= 2;
			if (cap > SPOOL_MEM_MAX)
				cap = SPOOL_MEM_MAX;
			uint8_t *m = realloc(s->mem, cap);
			if (!m)
				return rs_err(err, -ENOMEM, "out of memory spooling input");
			s->mem = m;
			s->mem_cap = cap;
		}
		memcpy(s->mem + s->size, data, len);
		s->size += (int64_t)len;
		return 0;
	}
	if (s->fd < 0) {
		int fd = open_tmpfile(err);
		if (fd < 0)
			return fd;
		s->fd = fd;
		int r = write_all(fd, s->mem, (size_t)s->size, 0);
		free(s->mem);
		s->mem = NULL;
		s->mem_cap = 0;
		if (r < 0)
			return rs_err(err, r, "writing spool file: %s", strerror(-r));
	}
	int r = write_all(s->fd, data, len, s->size);
	if (r < 0)
		return rs_err(err, r, "writing spool file: %s", strerror(-r));
	s->size += (int64_t)len;
	return 0;
}

int esgz_b_spool_read(const struct esgz_b_spool *s, void *buf, size_t len, int64_t off,
		      struct rs_error *err)
{
	if (off < 0 || off > s->size || (int64_t)len > s->size - off)
		return rs_err(err, -EINVAL, "spool read out of range");
	if (s->fd < 0) {
		memcpy(buf, s->mem + off, len);
		return 0;
	}
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(s->fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return rs_err(err, n < 0 ? -errno : -EIO, "reading spool file: %s",
				      n < 0 ? strerror(errno) : "short read");
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

void esgz_b_entry_free(struct esgz_b_entry *e)
{
	free(e->name);
	free(e->link);
	free(e->uname);
	free(e->gname);
	for (size_t i = 0; i < e->nxattrs; i++) {
		free(e->xattrs[i].name);
		free(e->xattrs[i].value);
	}
	free(e->xattrs);
	free(e->chunk_digests);
	free(e->chunk_offs);
	free(e->no_prefetch);
	memset(e, 0, sizeof(*e));
}

void esgz_b_tar_free(struct esgz_b_tar *t)
{
	for (size_t i = 0; i < t->n; i++)
		esgz_b_entry_free(&t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
	if (t->spool.fd >= 0)
		close(t->spool.fd);
	t->spool.fd = -1;
	free(t->spool.mem);
	t->spool.mem = NULL;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct esgz_b_xattr *)a)->name,
		      ((const struct esgz_b_xattr *)b)->name);
}

static int read_xattrs(struct archive_entry *ae, struct esgz_b_entry *e, struct rs_error *err)
{
	int n = archive_entry_xattr_reset(ae);
	if (n <= 0)
		return 0;
	e->xattrs = calloc((size_t)n, sizeof(*e->xattrs));
	if (!e->xattrs)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *name;
	const void *value;
	size_t size;
	while (e->nxattrs < (size_t)n &&
	       archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
		struct esgz_b_xattr *x = &e->xattrs[e->nxattrs];
		x->name = strdup(name);
		x->value = malloc(size ? size : 1);
		if (!x->name || !x->value) {
			free(x->name);
			free(x->value);
			return rs_err(err, -ENOMEM, "out of memory");
		}
		if (size)
			memcpy(x->value, value, size);
		x->len = size;
		e->nxattrs++;
	}
	qsort(e->xattrs, e->nxattrs, sizeof(*e->xattrs), cmp_xattr);
	/* libarchive's own writers store each xattr twice (LIBARCHIVE.xattr.* and
	 * SCHILY.xattr.*); keep one of a name */
	size_t o = 0;
	for (size_t i = 0; i < e->nxattrs; i++) {
		if (o > 0 && strcmp(e->xattrs[o - 1].name, e->xattrs[i].name) == 0) {
			free(e->xattrs[o - 1].name);
			free(e->xattrs[o - 1].value);
			o--;
		}
		e->xattrs[o++] = e->xattrs[i];
	}
	e->nxattrs = o;
	return 0;
}

/* Hashes data into the file digest and the per-chunk digests. */
struct hasher {
	struct rs_sha256 file, chunk;
	int64_t chunk_size;
	int64_t in_chunk;
	struct esgz_b_entry *e;
	uint32_t cap;
};

static int hasher_chunk_done(struct hasher *h, struct rs_error *err)
{
	struct esgz_b_entry *e = h->e;
	if (e->nchunks == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 4;
		void *p = realloc(e->chunk_digests, (size_t)cap * RS_SHA256_LEN);
		if (!p)
			return rs_err(err, -ENOMEM, "out of memory");
		e->chunk_digests = p;
		h->cap = cap;
	}
	rs_sha256_final(&h->chunk, e->chunk_digests[e->nchunks++]);
	h->in_chunk = 0;
	return rs_sha256_init(&h->chunk) < 0 ? rs_err(err, -ENOMEM, "sha256 init failed") : 0;
}

static int hasher_feed(struct hasher *h, const uint8_t *p, size_t len, struct rs_error *err)
{
	rs_sha256_update(&h->file, p, len);
	while (len) {
		int64_t room = h->chunk_size - h->in_chunk;
		size_t n = (int64_t)len < room ? len : (size_t)room;
		rs_sha256_update(&h->chunk, p, n);
		h->in_chunk += (int64_t)n;
		p += n;
		len -= n;
		if (h->in_chunk == h->chunk_size) {
			int r = hasher_chunk_done(h, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int spool_data(struct esgz_b_tar *t, struct archive *a, struct esgz_b_entry *e,
		      int64_t chunk_size, struct rs_error *err)
{
	static const uint8_t zeros[65536];
	struct hasher h = {.chunk_size = chunk_size, .e = e};
	int r = 0;
	if (rs_sha256_init(&h.file) < 0 || rs_sha256_init(&h.chunk) < 0) {
		r = rs_err(err, -ENOMEM, "sha256 init failed");
		goto out;
	}
	e->data_off = t->spool.size;
	int64_t pos = 0;
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int ar = archive_read_data_block(a, &buf, &len, &off);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			r = rs_err(err, -EIO, "reading data: %s",
				   archive_error_string(a) ? archive_error_string(a) : "error");
			goto out;
		}
		if (off < pos || off > e->size || (int64_t)len > e->size - off) {
			r = rs_err(err, -EINVAL, "data block outside the file's size");
			goto out;
		}
		/* sparse holes read as zeros */
		while (pos < off) {
			size_t n = off - pos < (int64_t)sizeof(zeros) ? (size_t)(off - pos)
								      : sizeof(zeros);
			if ((r = hasher_feed(&h, zeros, n, err)) < 0 ||
			    (r = spool_append(&t->spool, zeros, n, err)) < 0)
				goto out;
			pos += (int64_t)n;
		}
		if ((r = hasher_feed(&h, buf, len, err)) < 0 ||
		    (r = spool_append(&t->spool, buf, len, err)) < 0)
			goto out;
		pos += (int64_t)len;
	}
	while (pos < e->size) {
		size_t n = e->size - pos < (int64_t)sizeof(zeros) ? (size_t)(e->size - pos)
								  : sizeof(zeros);
		if ((r = hasher_feed(&h, zeros, n, err)) < 0 ||
		    (r = spool_append(&t->spool, zeros, n, err)) < 0)
			goto out;
		pos += (int64_t)n;
	}
	if (h.in_chunk > 0 && (r = hasher_chunk_done(&h, err)) < 0)
		goto out;
	rs_sha256_final(&h.file, e->digest);
out:
	rs_sha256_free(&h.file);
	rs_sha256_free(&h.chunk);
	if (r < 0)
		rs_error_prefix(err, "entry '%s'", e->name);
	return r;
}

static int fill_entry(struct archive *a, struct archive_entry *ae, struct esgz_b_entry *e,
		      struct rs_error *err)
{
	const char *name = archive_entry_pathname(ae);
	if (!name || !*name)
		return rs_err(err, -EINVAL, "tar entry without a name");
	e->name = strdup(name);
	e->uname = dup_or_empty(archive_entry_uname(ae));
	e->gname = dup_or_empty(archive_entry_gname(ae));
	if (!e->name || !e->uname || !e->gname)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *hl = archive_entry_hardlink(ae);
	if (hl) {
		e->type = ESGZ_HARDLINK;
		if (!(e->link = strdup(hl)))
			return rs_err(err, -ENOMEM, "out of memory");
	} else {
		switch (archive_entry_filetype(ae)) {
		case AE_IFREG:
			e->type = ESGZ_REG;
			break;
		case AE_IFDIR:
			e->type = ESGZ_DIR;
			break;
		case AE_IFLNK:
			e->type = ESGZ_SYMLINK;
			if (!(e->link = dup_or_empty(archive_entry_symlink(ae))))
				return rs_err(err, -ENOMEM, "out of memory");
			break;
		case AE_IFCHR:
			e->type = ESGZ_CHAR;
			break;
		case AE_IFBLK:
			e->type = ESGZ_BLOCK;
			break;
		case AE_IFIFO:
			e->type = ESGZ_FIFO;
			break;
		default:
			return rs_err(err, -ENOTSUP,
				      "entry '%s': unsupported tar entry type (mode %#o)", name,
				      (unsigned)archive_entry_filetype(ae));
		}
	}
	if (e->type == ESGZ_CHAR || e->type == ESGZ_BLOCK) {
		e->devmajor = (uint32_t)archive_entry_rdevmajor(ae);
		e->devminor = (uint32_t)archive_entry_rdevminor(ae);
	}
	if (e->type == ESGZ_REG) {
		e->size = archive_entry_size(ae);
		if (e->size < 0)
			return rs_err(err, -EINVAL, "entry '%s': negative size", name);
	}
	e->mode = (uint32_t)archive_entry_mode(ae) & 07777;
	e->uid = archive_entry_uid(ae);
	e->gid = archive_entry_gid(ae);
	if (archive_entry_mtime_is_set(ae)) {
		e->mtime = archive_entry_mtime(ae);
		e->mtime_nsec = (int32_t)archive_entry_mtime_nsec(ae);
	}
	int fmt = archive_format(a);
	if (fmt == ARCHIVE_FORMAT_TAR_GNUTAR)
		e->flavor = ESGZ_BF_GNU;
	else if (fmt == ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE ||
		 fmt == ARCHIVE_FORMAT_TAR_PAX_RESTRICTED)
		e->flavor = ESGZ_BF_PAX;
	else
		e->flavor = ESGZ_BF_USTAR;
	if (e->flavor == ESGZ_BF_PAX) {
		if ((e->has_atime = archive_entry_atime_is_set(ae))) {
			e->atime = archive_entry_atime(ae);
			e->atime_nsec = (int32_t)archive_entry_atime_nsec(ae);
		}
		if ((e->has_ctime = archive_entry_ctime_is_set(ae))) {
			e->ctime = archive_entry_ctime(ae);
			e->ctime_nsec = (int32_t)archive_entry_ctime_nsec(ae);
		}
	}
	return read_xattrs(ae, e, err);
}

static bool dropped_name(const char *name)
{
	size_t n = strlen(name);
	char *c = malloc(n + 1);
	if (!c)
		return false;
	esgz_clean_name(name, c);
	bool drop = strcmp(c, ESGZ_TOC_TAR_NAME) == 0 || strcmp(c, ESGZ_PREFETCH_LANDMARK) == 0 ||
		    strcmp(c, ESGZ_NO_PREFETCH_LANDMARK) == 0;
	free(c);
	return drop;
}

static void archive_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

int esgz_b_read_tar(int fd, int64_t chunk_size, struct esgz_b_tar *t, struct rs_error *err)
{
	rs_cleanup(archive_freep) struct archive *a = archive_read_new();
	if (!a)
		return rs_err(err, -ENOMEM, "out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_format_empty(a);
	if (archive_read_open_fd(a, fd, READ_BLOCK) != ARCHIVE_OK)
		return rs_err(err, -EIO, "opening input tar: %s", archive_error_string(a));
	for (;;) {
		struct archive_entry *ae;
		int ar = archive_read_next_header(a, &ae);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			const char *prev = t->n ? t->v[t->n - 1].name : NULL;
			if (prev)
				return rs_err(err, -EIO, "reading input tar after entry '%s': %s",
					      prev, archive_error_string(a));
			return rs_err(err, -EIO, "reading input tar: %s", archive_error_string(a));
		}
		/* libarchive skips what it cannot take in a header (a PAX record
		 * claiming a terabyte, a malformed one) with a warning and goes on
		 * with the entry stripped of it: an entry other than the tar's.
		 * Only a name not in the locale's charset (EILSEQ) is harmless. */
		if (ar == ARCHIVE_WARN && archive_errno(a) != EILSEQ) {
			const char *wn = archive_entry_pathname(ae);
			return rs_err(
			    err, -EINVAL, "input tar: header of entry '%s' at byte %lld: %s",
			    wn ? wn : "?", (long long)archive_read_header_position(a),
			    archive_error_string(a) ? archive_error_string(a) : "bad header");
		}
		const char *name = archive_entry_pathname(ae);
		if (name && dropped_name(name))
			continue;
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 256;
			void *v = realloc(t->v, cap * sizeof(*t->v));
			if (!v)
				return rs_err(err, -ENOMEM, "out of memory");
			t->v = v;
			t->cap = cap;
		}
		struct esgz_b_entry *e = &t->v[t->n++];
		memset(e, 0, sizeof(*e));
		int r = fill_entry(a, ae, e, err);
		if (r < 0)
			return r;
		if (e->type == ESGZ_REG && e->size > 0 &&
		    (r = spool_data(t, a, e, chunk_size, err)) < 0)
			return r;
	}
	return 0;
}
