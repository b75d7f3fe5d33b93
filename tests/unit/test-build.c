// SPDX-License-Identifier: Apache-2.0
/* esgz_build(): a tar made with libarchive goes in; the blob is taken apart
 * with zlib/zstd, libarchive and jansson, independently of the reader code. */
#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cmocka.h>

#include "estargz/estargz.h"

#define CHUNK 4096
#define BIG_SIZE 10000

/* ---- making the input ------------------------------------------------- */

static la_ssize_t buf_write(struct archive *a, void *ctx, const void *p, size_t n)
{
	(void)a;
	return rs_buf_append(ctx, p, n) == 0 ? (la_ssize_t)n : -1;
}

static void add(struct archive *a, const char *name, mode_t type, mode_t perm, const void *data,
		size_t len, const char *link, bool hard)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, 1000);
	archive_entry_set_gid(e, 1000);
	archive_entry_set_uname(e, "user");
	archive_entry_set_gname(e, "group");
	archive_entry_set_mtime(e, 1700000000, 0);
	if (type == AE_IFREG && !hard)
		archive_entry_set_size(e, (la_int64_t)len);
	if (link && hard)
		archive_entry_set_hardlink(e, link);
	else if (link)
		archive_entry_set_symlink(e, link);
	if (type == AE_IFCHR) {
		archive_entry_set_rdevmajor(e, 1);
		archive_entry_set_rdevminor(e, 3);
	}
	if (strcmp(name, "dir/small.txt") == 0)
		archive_entry_xattr_add_entry(e, "user.foo", "bar\0baz", 7);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (len && !hard)
		assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

static char long_name[200];
static uint8_t big[BIG_SIZE];

static void make_tar(struct rs_buf *out, bool gzip)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (gzip)
		archive_write_add_filter_gzip(a);
	archive_write_set_bytes_in_last_block(a, 1);
	assert_int_equal(archive_write_open(a, out, NULL, buf_write, NULL), ARCHIVE_OK);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + i / 100);
	snprintf(long_name, sizeof(long_name), "dir/%0150d/file", 0);
	add(a, "dir/", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "dir/small.txt", AE_IFREG, 0644, "hello\n", 6, NULL, false);
	add(a, "dir/big.bin", AE_IFREG, 0600, big, sizeof(big), NULL, false);
	add(a, "dir/empty", AE_IFREG, 0644, NULL, 0, NULL, false);
	add(a, "dir/link", AE_IFLNK, 0777, NULL, 0, "small.txt", false);
	add(a, "dir/hard", AE_IFREG, 0644, NULL, 0, "dir/small.txt", true);
	add(a, "dev/", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "dev/null", AE_IFCHR, 0666, NULL, 0, NULL, false);
	add(a, "fifo", AE_IFIFO, 0644, NULL, 0, NULL, false);
	add(a, long_name, AE_IFREG, 0644, "long", 4, NULL, false);
	add(a, "stargz.index.json", AE_IFREG, 0644, "{}", 2, NULL, false);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* ---- running the builder ---------------------------------------------- */

static int memfd_with(const void *p, size_t n)
{
	int fd = memfd_create("t", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static void read_fd_all(int fd, struct rs_buf *out)
{
	uint8_t b[65536];
	ssize_t n;
	while ((n = read(fd, b, sizeof(b))) > 0)
		assert_int_equal(rs_buf_append(out, b, (size_t)n), 0);
	assert_true(n == 0);
}

static int build_mem(const struct rs_buf *tar, const struct esgz_build_opts *o, struct rs_buf *blob,
		     struct esgz_build_result *res, struct rs_error *err)
{
	int in = memfd_with(tar->data, tar->len);
	int out = memfd_create("o", MFD_CLOEXEC);
	memset(res, 0, sizeof(*res));
	int r = esgz_build(in, out, o, res, err);
	lseek(out, 0, SEEK_SET);
	read_fd_all(out, blob);
	close(in);
	close(out);
	return r;
}

struct pipe_io {
	int fd;
	const struct rs_buf *src;
	struct rs_buf *dst;
};

static void *feeder(void *arg)
{
	struct pipe_io *p = arg;
	size_t off = 0;
	while (off < p->src->len) {
		ssize_t n = write(p->fd, p->src->data + off, p->src->len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(p->fd);
	return NULL;
}

static void *drainer(void *arg)
{
	struct pipe_io *p = arg;
	read_fd_all(p->fd, p->dst);
	close(p->fd);
	return NULL;
}

/* ---- taking the blob apart -------------------------------------------- */

struct member {
	int64_t comp_off;
	int64_t raw_off;
};

struct unpacked {
	struct rs_buf raw;
	struct member *m;
	size_t nm;
};

static void gunzip_members(const struct rs_buf *blob, int64_t end, struct unpacked *u)
{
	z_stream z = {0};
	assert_int_equal(inflateInit2(&z, 16 + 15), Z_OK);
	int64_t off = 0;
	uint8_t out[65536];
	while (off < end) {
		u->m = realloc(u->m, (u->nm + 1) * sizeof(*u->m));
		u->m[u->nm++] = (struct member){off, (int64_t)u->raw.len};
		z.next_in = blob->data + off;
		z.avail_in = (uInt)(end - off);
		int zr;
		do {
			z.next_out = out;
			z.avail_out = sizeof(out);
			zr = inflate(&z, Z_NO_FLUSH);
			assert_true(zr == Z_OK || zr == Z_STREAM_END);
			rs_buf_append(&u->raw, out, sizeof(out) - z.avail_out);
		} while (zr != Z_STREAM_END);
		off = end - z.avail_in;
		inflateReset(&z);
	}
	inflateEnd(&z);
}

static void unzstd_frames(const struct rs_buf *blob, int64_t end, struct unpacked *u)
{
	int64_t off = 0;
	while (off < end) {
		size_t fs = ZSTD_findFrameCompressedSize(blob->data + off, (size_t)(end - off));
		assert_false(ZSTD_isError(fs));
		unsigned long long cs = ZSTD_getFrameContentSize(blob->data + off, fs);
		assert_true(cs != ZSTD_CONTENTSIZE_ERROR);
		u->m = realloc(u->m, (u->nm + 1) * sizeof(*u->m));
		u->m[u->nm++] = (struct member){off, (int64_t)u->raw.len};
		if (cs != ZSTD_CONTENTSIZE_UNKNOWN) {
			assert_int_equal(rs_buf_reserve(&u->raw, cs), 0);
			size_t n =
			    ZSTD_decompress(u->raw.data + u->raw.len, cs, blob->data + off, fs);
			assert_int_equal(n, cs);
			u->raw.len += n;
		}
		off += (int64_t)fs;
	}
}

static void unpacked_free(struct unpacked *u)
{
	rs_buf_free(&u->raw);
	free(u->m);
}

static const struct member *member_at(const struct unpacked *u, int64_t comp_off)
{
	for (size_t i = 0; i < u->nm; i++)
		if (u->m[i].comp_off == comp_off)
			return &u->m[i];
	return NULL;
}

/* The entries of a tar, in order; data of regular files kept. */
struct tentry {
	char name[256];
	char link[256];
	mode_t type;
	int64_t size;
	uint8_t *data;
	size_t nxattrs;
};

static size_t read_tar(const uint8_t *p, size_t n, struct tentry *v, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_memory(a, p, n), ARCHIVE_OK);
	struct archive_entry *e;
	size_t k = 0;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		assert_true(k < max);
		struct tentry *t = &v[k++];
		memset(t, 0, sizeof(*t));
		snprintf(t->name, sizeof(t->name), "%s", archive_entry_pathname(e));
		const char *l = archive_entry_hardlink(e);
		if (!l)
			l = archive_entry_symlink(e);
		snprintf(t->link, sizeof(t->link), "%s", l ? l : "");
		t->type = archive_entry_filetype(e);
		t->size = archive_entry_size(e);
		t->nxattrs = (size_t)archive_entry_xattr_count(e);
		if (t->type == AE_IFREG && t->size > 0) {
			t->data = malloc((size_t)t->size);
			assert_int_equal(archive_read_data(a, t->data, (size_t)t->size), t->size);
		}
	}
	assert_int_equal(r, ARCHIVE_EOF);
	archive_read_free(a);
	return k;
}

static void free_tentries(struct tentry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].data);
}

static const struct tentry *find(const struct tentry *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static void sha_str(const void *p, size_t n, char out[RS_DIGEST_STR_LEN])
{
	uint8_t s[RS_SHA256_LEN];
	rs_sha256(p, n, s);
	rs_digest_format(s, out);
}

/* Checks a built blob against its input; returns the parsed TOC. */
static json_t *check_blob(const struct rs_buf *blob, const struct esgz_build_result *res, bool zstd,
			  struct tentry *ents, size_t *nents)
{
	char d[RS_DIGEST_STR_LEN];
	assert_int_equal(res->size, (int64_t)blob->len);
	sha_str(blob->data, blob->len, d);
	assert_string_equal(d, res->digest);

	struct esgz_footer f;
	struct rs_error err = {0};
	size_t tail = blob->len < 256 ? blob->len : 256;
	assert_int_equal(
	    esgz_footer_parse(blob->data + blob->len - tail, tail, (int64_t)blob->len, &f, &err),
	    0);
	assert_int_equal(f.format, zstd ? ESGZ_FORMAT_ZSTD_CHUNKED : ESGZ_FORMAT_ESTARGZ);

	struct unpacked u = {0};
	if (zstd)
		unzstd_frames(blob, (int64_t)blob->len - ESGZ_ZSTD_FOOTER_FRAME, &u);
	else
		gunzip_members(blob, (int64_t)blob->len, &u);
	sha_str(u.raw.data, u.raw.len, d);
	assert_string_equal(d, res->diff_id);
	assert_int_equal(res->uncompressed_size, (int64_t)u.raw.len);

	const uint8_t *json;
	size_t json_len;
	struct rs_buf zjson = {0};
	if (zstd) {
		/* the TOC: a skippable frame holding a zstd frame, then the footer */
		int64_t sf = f.toc_offset - 8;
		assert_int_equal(blob->data[sf], 0x50);
		assert_int_equal(blob->data[sf + 3], 0x18);
		assert_int_equal(rs_buf_reserve(&zjson, (size_t)f.toc_raw_size), 0);
		size_t n = ZSTD_decompress(zjson.data, (size_t)f.toc_raw_size,
					   blob->data + f.toc_offset, (size_t)f.toc_size);
		assert_int_equal(n, (size_t)f.toc_raw_size);
		json = zjson.data;
		json_len = n;
	} else {
		const struct member *tm = member_at(&u, f.toc_offset);
		assert_non_null(tm);
		/* header + JSON + padding + two zero blocks */
		const uint8_t *h = u.raw.data + tm->raw_off;
		assert_string_equal((const char *)h, ESGZ_TOC_TAR_NAME);
		json_len = strtoull((const char *)h + 124, NULL, 8);
		json = h + 512;
		assert_int_equal(u.raw.len - (size_t)tm->raw_off,
				 512 + ((json_len + 511) & ~(size_t)511) + 1024);
	}
	sha_str(json, json_len, d);
	assert_string_equal(d, res->toc_digest);
	json_error_t je;
	json_t *toc = json_loadb((const char *)json, json_len, 0, &je);
	assert_non_null(toc);
	assert_int_equal(json_integer_value(json_object_get(toc, "version")), 1);

	/* the uncompressed stream is a valid tar */
	*nents = read_tar(u.raw.data, u.raw.len, ents, 64);

	/* every offset is a member start holding that chunk's data */
	json_t *arr = json_object_get(toc, "entries"), *je2;
	size_t i;
	json_array_foreach(arr, i, je2)
	{
		const char *name = json_string_value(json_object_get(je2, "name"));
		const char *type = json_string_value(json_object_get(je2, "type"));
		if (strcmp(type, "reg") != 0 && strcmp(type, "chunk") != 0)
			continue;
		const char *cd = json_string_value(json_object_get(je2, "chunkDigest"));
		if (strcmp(type, "reg") == 0 &&
		    json_integer_value(json_object_get(je2, "size")) == 0) {
			assert_null(cd);
			continue;
		}
		const struct tentry *t = find(ents, *nents, name);
		assert_non_null(t);
		int64_t off = json_integer_value(json_object_get(je2, "offset"));
		int64_t coff = json_integer_value(json_object_get(je2, "chunkOffset"));
		int64_t csz = json_integer_value(json_object_get(je2, "chunkSize"));
		if (csz == 0)
			csz = t->size - coff;
		const struct member *m = member_at(&u, off);
		assert_non_null(m);
		assert_memory_equal(u.raw.data + m->raw_off, t->data + coff, (size_t)csz);
		sha_str(t->data + coff, (size_t)csz, d);
		assert_non_null(cd);
		assert_string_equal(cd, d);
		if (strcmp(type, "reg") == 0) {
			sha_str(t->data, (size_t)t->size, d);
			assert_string_equal(json_string_value(json_object_get(je2, "digest")), d);
		}
	}
	rs_buf_free(&zjson);
	unpacked_free(&u);
	return toc;
}

static json_t *toc_entry(json_t *toc, size_t i)
{
	return json_array_get(json_object_get(toc, "entries"), i);
}

static const char *toc_str(json_t *toc, size_t i, const char *key)
{
	return json_string_value(json_object_get(toc_entry(toc, i), key));
}

/* ---- tests -------------------------------------------------------------- */

static void check_content(const struct tentry *ents, size_t n, bool with_toc)
{
	assert_string_equal(ents[0].name, ESGZ_NO_PREFETCH_LANDMARK);
	const struct tentry *s = find(ents, n, "dir/small.txt");
	assert_non_null(s);
	assert_memory_equal(s->data, "hello\n", 6);
	assert_int_equal(s->nxattrs, 1);
	const struct tentry *b = find(ents, n, "dir/big.bin");
	assert_non_null(b);
	assert_int_equal(b->size, BIG_SIZE);
	assert_memory_equal(b->data, big, BIG_SIZE);
	assert_string_equal(find(ents, n, "dir/link")->link, "small.txt");
	assert_string_equal(find(ents, n, "dir/hard")->link, "dir/small.txt");
	assert_int_equal(find(ents, n, "dev/null")->type, AE_IFCHR);
	assert_int_equal(find(ents, n, "fifo")->type, AE_IFIFO);
	assert_memory_equal(find(ents, n, long_name)->data, "long", 4);
	/* the input's stargz.index.json is dropped; ours is last */
	size_t tocs = 0;
	for (size_t i = 0; i < n; i++)
		tocs += strcmp(ents[i].name, ESGZ_TOC_TAR_NAME) == 0;
	assert_int_equal(tocs, with_toc ? 1 : 0);
	if (with_toc)
		assert_string_equal(ents[n - 1].name, ESGZ_TOC_TAR_NAME);
}

static void test_gzip_roundtrip(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_tar(&tar, false);
	struct esgz_build_opts o = {.chunk_size = CHUNK, .threads = 2};
	struct esgz_build_result res;
	struct rs_error err = {0};
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	struct tentry ents[64];
	size_t n;
	json_t *toc = check_blob(&blob, &res, false, ents, &n);
	check_content(ents, n, true);

	/* TOC: landmark first, big file as reg + 2 chunks, last one without chunkSize */
	assert_string_equal(toc_str(toc, 0, "name"), ESGZ_NO_PREFETCH_LANDMARK);
	assert_string_equal(toc_str(toc, 1, "name"), "dir/");
	assert_string_equal(toc_str(toc, 1, "userName"), "user");
	assert_string_equal(toc_str(toc, 1, "groupName"), "group");
	size_t i;
	json_t *e;
	int chunks = 0;
	json_array_foreach(json_object_get(toc, "entries"), i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		if (strcmp(name, "dir/big.bin") == 0) {
			int64_t cs = json_integer_value(json_object_get(e, "chunkSize"));
			chunks++;
			assert_int_equal(cs, chunks < 3 ? CHUNK : 0);
			assert_string_equal(json_string_value(json_object_get(e, "type")),
					    chunks == 1 ? "reg" : "chunk");
		}
		if (strcmp(name, "dir/small.txt") == 0) {
			json_t *x = json_object_get(e, "xattrs");
			assert_string_equal(json_string_value(json_object_get(x, "user.foo")),
					    "YmFyAGJheg==");
			/* named on "dir/" already (nameIfChanged) */
			assert_null(json_object_get(e, "userName"));
			assert_string_equal(json_string_value(json_object_get(e, "modtime")),
					    "2023-11-14T22:13:20Z");
			assert_int_equal(json_integer_value(json_object_get(e, "mode")), 0644);
		}
		if (strcmp(name, "dev/null") == 0) {
			assert_int_equal(json_integer_value(json_object_get(e, "devMajor")), 1);
			assert_int_equal(json_integer_value(json_object_get(e, "devMinor")), 3);
		}
		if (strcmp(name, "dir/hard") == 0)
			assert_string_equal(json_string_value(json_object_get(e, "type")),
					    "hardlink");
	}
	assert_int_equal(chunks, 3);
	json_decref(toc);
	free_tentries(ents, n);

	/* gzip input gives the same blob */
	struct rs_buf tgz = {0}, blob2 = {0};
	make_tar(&tgz, true);
	assert_int_equal(build_mem(&tgz, &o, &blob2, &res, &err), 0);
	assert_int_equal(blob.len, blob2.len);
	assert_memory_equal(blob.data, blob2.data, blob.len);
	rs_buf_free(&tgz);
	rs_buf_free(&blob2);
	rs_buf_free(&tar);
	rs_buf_free(&blob);
}

static void test_deterministic_and_pipes(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, b1 = {0}, b4 = {0};
	make_tar(&tar, false);
	struct esgz_build_result r1, r4;
	struct rs_error err = {0};
	struct esgz_build_opts o = {.chunk_size = CHUNK, .threads = 1, .level = 6};
	assert_int_equal(build_mem(&tar, &o, &b1, &r1, &err), 0);

	/* threads=4, through pipes both ways */
	int pin[2], pout[2];
	assert_int_equal(pipe(pin), 0);
	assert_int_equal(pipe(pout), 0);
	struct pipe_io fi = {.fd = pin[1], .src = &tar}, dr = {.fd = pout[0], .dst = &b4};
	pthread_t tf, td;
	pthread_create(&tf, NULL, feeder, &fi);
	pthread_create(&td, NULL, drainer, &dr);
	o.threads = 4;
	assert_int_equal(esgz_build(pin[0], pout[1], &o, &r4, &err), 0);
	close(pin[0]);
	close(pout[1]);
	pthread_join(tf, NULL);
	pthread_join(td, NULL);
	assert_int_equal(b1.len, b4.len);
	assert_memory_equal(b1.data, b4.data, b1.len);
	assert_string_equal(r1.digest, r4.digest);
	assert_string_equal(r1.diff_id, r4.diff_id);
	rs_buf_free(&tar);
	rs_buf_free(&b1);
	rs_buf_free(&b4);
}

static void test_zstd_chunked(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_tar(&tar, false);
	struct esgz_build_opts o = {.chunk_size = CHUNK, .zstd_chunked = true};
	struct esgz_build_result res;
	struct rs_error err = {0};
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	struct tentry ents[64];
	size_t n;
	json_t *toc = check_blob(&blob, &res, true, ents, &n);
	check_content(ents, n, false);
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&tar);
	rs_buf_free(&blob);
}

static void test_prioritized(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_tar(&tar, false);
	const char *prio[] = {"dir/hard", "./fifo"};
	struct esgz_build_opts o = {.chunk_size = CHUNK, .prioritized = prio, .n_prioritized = 2};
	struct esgz_build_result res;
	struct rs_error err = {0};
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	struct tentry ents[64];
	size_t n;
	json_t *toc = check_blob(&blob, &res, false, ents, &n);
	const char *want[] = {"dir/", "dir/small.txt",        "dir/hard",
			      "fifo", ESGZ_PREFETCH_LANDMARK, "dir/big.bin"};
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(ents[i].name, want[i]);
		assert_string_equal(toc_str(toc, i, "name"), want[i]);
	}
	assert_null(find(ents, n, ESGZ_NO_PREFETCH_LANDMARK));
	const struct tentry *lm = find(ents, n, ESGZ_PREFETCH_LANDMARK);
	assert_int_equal(lm->size, 1);
	assert_int_equal(lm->data[0], ESGZ_LANDMARK_BYTE);
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&blob);

	const char *missing[] = {"dir/small.txt", "no/such/file"};
	o.prioritized = missing;
	assert_true(build_mem(&tar, &o, &blob, &res, &err) < 0);
	assert_non_null(strstr(err.msg, "no/such/file"));
	rs_buf_free(&blob);

	/* an image-wide list: what the layer lacks is skipped */
	o.prioritized_skip_missing = true;
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	toc = check_blob(&blob, &res, false, ents, &n);
	const char *want_skip[] = {"dir/", "dir/small.txt", ESGZ_PREFETCH_LANDMARK};
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(ents[i].name, want_skip[i]);
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&blob);

	/* a landmark line in the list: what follows it comes next, unprefetched */
	const char *split[] = {"fifo", "/.prefetch.landmark", "dir/big.bin", "no/such"};
	o.prioritized = split;
	o.n_prioritized = 4;
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	toc = check_blob(&blob, &res, false, ents, &n);
	const char *want_split[] = {"fifo", ESGZ_PREFETCH_LANDMARK, "dir/", "dir/big.bin"};
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(ents[i].name, want_split[i]);
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&blob);
	const char *late_only[] = {"/.prefetch.landmark", "fifo"};
	o.prioritized = late_only;
	o.n_prioritized = 2;
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	toc = check_blob(&blob, &res, false, ents, &n);
	assert_string_equal(ents[0].name, ESGZ_NO_PREFETCH_LANDMARK);
	assert_string_equal(ents[1].name, "fifo");
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&blob);
	o.n_prioritized = 2;

	/* ... and a layer holding none of it is not worth prefetching */
	const char *none[] = {"no/such/file", "other"};
	o.prioritized = none;
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	toc = check_blob(&blob, &res, false, ents, &n);
	assert_string_equal(ents[0].name, ESGZ_NO_PREFETCH_LANDMARK);
	assert_null(find(ents, n, ESGZ_PREFETCH_LANDMARK));
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&blob);
	rs_buf_free(&tar);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_tar(&tar, false);
	struct esgz_build_opts o = {.chunk_size = CHUNK};
	struct esgz_build_result res;
	struct rs_error err = {0};

	/* cut inside dir/big.bin's data */
	struct rs_buf cut = {0};
	rs_buf_append(&cut, tar.data, 5000);
	assert_true(build_mem(&cut, &o, &blob, &res, &err) < 0);
	assert_true(err.msg[0] != 0);
	rs_buf_free(&blob);

	/* a header claiming 8 GiB, followed by a little data */
	uint8_t h[2048] = {0};
	memcpy(h, "huge", 4);
	memcpy(h + 100, "0000644", 7);
	memcpy(h + 108, "0000000", 7);
	memcpy(h + 116, "0000000", 7);
	memcpy(h + 124, "77777777777", 11);
	memcpy(h + 136, "00000000000", 11);
	h[156] = '0';
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	struct rs_buf hb = {0};
	rs_buf_append(&hb, h, sizeof(h));
	rs_error_clear(&err);
	assert_true(build_mem(&hb, &o, &blob, &res, &err) < 0);
	assert_non_null(strstr(err.msg, "huge"));
	rs_buf_free(&blob);

	/* base-256 size near INT64_MAX */
	memset(h + 124, 0, 12);
	h[124] = 0x80;
	memset(h + 128, 0x7f, 1);
	memset(h + 129, 0xff, 7);
	memset(h + 148, ' ', 8);
	sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	rs_buf_reset(&hb);
	rs_buf_append(&hb, h, sizeof(h));
	rs_error_clear(&err);
	assert_true(build_mem(&hb, &o, &blob, &res, &err) < 0);
	assert_true(err.msg[0] != 0);
	rs_buf_free(&blob);

	/* not a tar at all */
	rs_buf_reset(&hb);
	rs_buf_append(&hb, "this is not a tar archive, not at all", 37);
	rs_error_clear(&err);
	assert_true(build_mem(&hb, &o, &blob, &res, &err) < 0);
	rs_buf_free(&blob);

	/* bad options */
	o.level = 12;
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), -EINVAL);
	rs_buf_free(&blob);
	rs_buf_free(&hb);
	rs_buf_free(&cut);
	rs_buf_free(&tar);
}

static void test_empty_tar(void **state)
{
	(void)state;
	uint8_t zeros[1024] = {0};
	struct rs_buf tar = {0}, blob = {0};
	rs_buf_append(&tar, zeros, sizeof(zeros));
	struct esgz_build_opts o = {0};
	struct esgz_build_result res;
	struct rs_error err = {0};
	assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), 0);
	struct tentry ents[8];
	size_t n;
	json_t *toc = check_blob(&blob, &res, false, ents, &n);
	assert_int_equal(n, 2);
	assert_string_equal(ents[0].name, ESGZ_NO_PREFETCH_LANDMARK);
	json_decref(toc);
	free_tentries(ents, n);
	rs_buf_free(&tar);
	rs_buf_free(&blob);
}

/* ---- touched ranges (stargz optimize) ------------------------------------ */

#define T_SIZE ((1 << 20) + 12345)
#define T_CHUNK 100000
static uint8_t tbig[T_SIZE];

/* "big" (T_SIZE bytes), "small" and "hl", a hardlink to big. */
static void make_touched_tar(struct rs_buf *out)
{
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(tbig); i++) {
		x = x * 1103515245 + 12345;
		tbig[i] = (uint8_t)(i % 7 ? x >> 24 : i >> 10);
	}
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	assert_int_equal(archive_write_open(a, out, NULL, buf_write, NULL), ARCHIVE_OK);
	add(a, "big", AE_IFREG, 0644, tbig, sizeof(tbig), NULL, false);
	add(a, "small", AE_IFREG, 0644, "tiny\n", 5, NULL, false);
	add(a, "hl", AE_IFREG, 0644, NULL, 0, "big", true);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* Opens a built blob kept in memory. */
static struct esgz_blob *open_built(const struct rs_buf *blob, struct esgz_reader *r)
{
	struct rs_error err = {0};
	struct esgz_blob *b = NULL;
	struct esgz_open_opts oo = {.keep_toc_json = true};
	esgz_reader_init_mem(r, blob->data, blob->len);
	if (esgz_open(r, &oo, &b, &err) != 0)
		fail_msg("esgz_open: %s", err.msg);
	return b;
}

static size_t count_str(const struct rs_buf *b, const char *needle)
{
	size_t n = 0, len = strlen(needle);
	for (size_t i = 0; i + len <= b->len; i++)
		n += memcmp(b->data + i, needle, len) == 0;
	return n;
}

/* The chunks of "big" are at want[0, n) (file offsets), flagged where flag[i]. */
static void check_touched_blob(const struct rs_buf *blob, const int64_t *want, const bool *flag,
			       size_t n)
{
	struct esgz_reader r;
	struct esgz_blob *b = open_built(blob, &r);
	uint32_t id = esgz_index_lookup(b->index, "big", 3), nc;
	assert_int_not_equal(id, ESGZ_NONE);
	const struct esgz_chunk *c = esgz_index_chunks(b->index, id, &nc);
	assert_int_equal(nc, n);
	size_t flagged = 0;
	uint8_t *buf = malloc(T_CHUNK);
	for (uint32_t i = 0; i < nc; i++) {
		int64_t end = i + 1 < n ? want[i + 1] : T_SIZE;
		assert_int_equal(c[i].file_offset, want[i]);
		assert_int_equal(c[i].size, end - want[i]);
		assert_true(c[i].size <= T_CHUNK);
		assert_int_equal(c[i].no_prefetch, flag[i]);
		flagged += flag[i];
		struct rs_error err = {0};
		assert_int_equal(esgz_chunk_read(b, &r, &c[i], buf, &err), 0);
		assert_memory_equal(buf, tbig + want[i], (size_t)c[i].size);
	}
	free(buf);
	/* other files carry no flag */
	uint32_t sid = esgz_index_lookup(b->index, "small", 5);
	assert_int_equal(esgz_index_chunks(b->index, sid, &nc)->no_prefetch, 0);
	/* the field closes the entries of flagged chunks, and only those */
	char tail[128];
	snprintf(tail, sizeof(tail), ",\n\t\t\t\"%s\": true\n\t\t}", ESGZ_TOC_NO_PREFETCH);
	assert_int_equal(count_str(&b->toc_json, tail), flagged);
	assert_int_equal(count_str(&b->toc_json, ESGZ_TOC_NO_PREFETCH), flagged);
	struct esgz_verify_stats st;
	struct rs_error err = {0};
	char *listing = NULL, want_list[64];
	size_t listing_len = 0;
	FILE *lf = open_memstream(&listing, &listing_len);
	assert_int_equal(esgz_list(b, lf, true, &err), 0);
	fclose(lf);
	snprintf(want_list, sizeof(want_list), "\"chunks\":%zu,\"noPrefetchChunks\":%zu}", n,
		 flagged);
	assert_non_null(strstr(listing, want_list));
	assert_int_equal(count_str(&(struct rs_buf){.data = (uint8_t *)listing, .len = listing_len},
				   "noPrefetchChunks"),
			 1);
	free(listing);
	if (esgz_verify(b, &r, &st, &err) != 0)
		fail_msg("verify: %s", err.msg);

	/* extracted, the file is whole */
	char dir[] = "/tmp/test-build-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct esgz_extract_opts xo = {.no_same_owner = true};
	if (esgz_extract(b, &r, dir, &xo, &err) != 0)
		fail_msg("extract: %s", err.msg);
	char path[64];
	snprintf(path, sizeof(path), "%s/big", dir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct rs_buf got = {0};
	read_fd_all(fd, &got);
	close(fd);
	assert_int_equal(got.len, T_SIZE);
	assert_memory_equal(got.data, tbig, T_SIZE);
	rs_buf_free(&got);
	const char *names[] = {"big", "small", "hl", ESGZ_PREFETCH_LANDMARK};
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(unlink(path), 0);
	}
	assert_int_equal(rmdir(dir), 0);
	esgz_blob_free(b);
	esgz_reader_close(&r);
}

static void test_touched_chunks(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_touched_tar(&tar);
	/* [200000, 350000) from two overlapping, unsorted ranges; [700000,
	 * 725000) from two with a gap under ESGZ_TOUCHED_MIN_GAP; an empty range
	 * and one past the end dropped; a second item for the same file merged */
	const int64_t r1[] = {300000, 50000, 2000000, 10, 200000, 120000, 5, 0};
	const int64_t r2[] = {720000, 5000, 700000, 10000};
	const struct esgz_touched touched[] = {
	    {.name = "/big", .ranges = r1, .nranges = 4},
	    {.name = "./big", .ranges = r2, .nranges = 2},
	};
	const char *prio[] = {"./big", "small"};
	struct esgz_build_opts o = {.chunk_size = T_CHUNK,
				    .threads = 2,
				    .prioritized = prio,
				    .n_prioritized = 2,
				    .touched = touched,
				    .n_touched = 2};
	const int64_t want[] = {0,      100000, 200000, 300000, 350000, 450000, 550000,
				650000, 700000, 725000, 825000, 925000, 1025000};
	const bool flag[] = {1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1};
	struct esgz_build_result res;
	struct rs_error err = {0};
	struct tentry ents[16];
	size_t n;
	for (int zstd = 0; zstd < 2; zstd++) {
		o.zstd_chunked = zstd;
		if (build_mem(&tar, &o, &blob, &res, &err) != 0)
			fail_msg("build: %s", err.msg);
		json_t *toc = check_blob(&blob, &res, zstd, ents, &n);
		json_decref(toc);
		free_tentries(ents, n);
		check_touched_blob(&blob, want, flag, sizeof(want) / sizeof(want[0]));

		/* the same whatever the thread count */
		struct rs_buf b1 = {0};
		o.threads = 1;
		assert_int_equal(build_mem(&tar, &o, &b1, &res, &err), 0);
		o.threads = 2;
		assert_int_equal(b1.len, blob.len);
		assert_memory_equal(b1.data, blob.data, blob.len);
		rs_buf_free(&b1);
		rs_buf_free(&blob);
	}

	/* through a hardlink: the data of its target */
	const int64_t r3[] = {0, 150000};
	const struct esgz_touched via_link[] = {{.name = "hl", .ranges = r3, .nranges = 1}};
	const char *prio_hl[] = {"hl"};
	struct esgz_build_opts oh = {.chunk_size = T_CHUNK,
				     .prioritized = prio_hl,
				     .n_prioritized = 1,
				     .touched = via_link,
				     .n_touched = 1};
	assert_int_equal(build_mem(&tar, &oh, &blob, &res, &err), 0);
	int64_t want_hl[12] = {0, 100000, 150000};
	bool flag_hl[12] = {0, 0, 1};
	for (size_t i = 3; i < 12; i++) {
		want_hl[i] = want_hl[i - 1] + T_CHUNK;
		flag_hl[i] = 1;
	}
	check_touched_blob(&blob, want_hl, flag_hl, 12);
	rs_buf_free(&blob);
	rs_buf_free(&tar);
}

/* Builds tar with and without touched; the blobs must be the same. */
static void expect_same_blob(const struct rs_buf *tar, struct esgz_build_opts o,
			     const struct esgz_touched *t, size_t n)
{
	struct rs_buf plain = {0}, with = {0};
	struct esgz_build_result res;
	struct rs_error err = {0};
	assert_int_equal(build_mem(tar, &o, &plain, &res, &err), 0);
	o.touched = t;
	o.n_touched = n;
	if (build_mem(tar, &o, &with, &res, &err) != 0)
		fail_msg("build: %s", err.msg);
	assert_int_equal(plain.len, with.len);
	assert_memory_equal(plain.data, with.data, plain.len);
	rs_buf_free(&plain);
	rs_buf_free(&with);
}

static void test_touched_ignored(void **state)
{
	(void)state;
	struct rs_buf tar = {0};
	make_touched_tar(&tar);
	const char *prio[] = {"big", "small"};
	struct esgz_build_opts o = {.chunk_size = T_CHUNK, .prioritized = prio, .n_prioritized = 2};

	/* read whole, once the short gap is closed */
	const int64_t whole[] = {500000, 30000000, 0, 500000 - ESGZ_TOUCHED_MIN_GAP + 1};
	const struct esgz_touched t_whole[] = {{.name = "big", .ranges = whole, .nranges = 2}};
	expect_same_blob(&tar, o, t_whole, 1);
	for (int zstd = 0; zstd < 2; zstd++) {
		o.zstd_chunked = zstd;
		expect_same_blob(&tar, o, t_whole, 1);
	}
	o.zstd_chunked = false;

	/* not in the layer, read whole (5 bytes), not prioritized itself (a
	 * hardlink to a prioritized file), no name */
	const int64_t part[] = {0, 1000};
	const struct esgz_touched t_other[] = {
	    {.name = "no/such/file", .ranges = part, .nranges = 1},
	    {.name = "small", .ranges = part, .nranges = 1},
	    {.name = "hl", .ranges = part, .nranges = 1},
	    {.name = NULL, .ranges = part, .nranges = 1},
	};
	expect_same_blob(&tar, o, t_other, 4);
	const char *prio_small[] = {"small"};
	o.prioritized = prio_small;
	o.n_prioritized = 1;
	const struct esgz_touched t_big[] = {{.name = "big", .ranges = part, .nranges = 1}};
	expect_same_blob(&tar, o, t_big, 1);
	rs_buf_free(&tar);
}

static void test_touched_negative(void **state)
{
	(void)state;
	struct rs_buf tar = {0}, blob = {0};
	make_touched_tar(&tar);
	const char *prio[] = {"big"};
	const int64_t neg_off[] = {0, 10, -1, 10};
	const int64_t neg_len[] = {10, -5};
	const struct esgz_touched t[] = {
	    {.name = "dir/some file", .ranges = neg_off, .nranges = 2},
	    {.name = "other", .ranges = neg_len, .nranges = 1},
	};
	struct esgz_build_opts o = {
	    .chunk_size = T_CHUNK, .prioritized = prio, .n_prioritized = 1, .touched = t};
	struct esgz_build_result res;
	struct rs_error err = {0};
	for (size_t i = 0; i < 2; i++) {
		o.touched = &t[i];
		o.n_touched = 1;
		rs_error_clear(&err);
		assert_int_equal(build_mem(&tar, &o, &blob, &res, &err), -EINVAL);
		assert_non_null(strstr(err.msg, t[i].name));
		rs_buf_free(&blob);
	}
	rs_buf_free(&tar);
}

/* src/estargz (its simdjson shim) leaves the program's operator new[]
 * alone: the one a C++ library of the process calls is libstdc++'s (or a
 * sanitizer's), not a definition linked into this executable. */
extern void *_Znam(size_t);
static void test_array_new_not_replaced(void **state)
{
	(void)state;
	Dl_info a = {0}, b = {0};
	assert_true(dladdr((void *)_Znam, &a) != 0);
	assert_true(dladdr((void *)test_array_new_not_replaced, &b) != 0);
	assert_non_null(a.dli_fname);
	if (b.dli_fname && strcmp(a.dli_fname, b.dli_fname) == 0)
		fail_msg("operator new[] is defined in %s itself", a.dli_fname);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gzip_roundtrip),   cmocka_unit_test(test_deterministic_and_pipes),
	    cmocka_unit_test(test_zstd_chunked),     cmocka_unit_test(test_prioritized),
	    cmocka_unit_test(test_bad_input),        cmocka_unit_test(test_empty_tar),
	    cmocka_unit_test(test_touched_chunks),   cmocka_unit_test(test_touched_ignored),
	    cmocka_unit_test(test_touched_negative), cmocka_unit_test(test_array_new_not_replaced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
