// SPDX-License-Identifier: Apache-2.0
/* esgz_extract and esgz_list against blobs crafted here: gzip members made with
 * zlib, a TOC written by hand, the footer from esgz_footer_gzip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include "estargz/estargz.h"

/* ---- a small eStargz writer ---------------------------------------------- */

struct ent {
	const char *name;
	const char *type; /* dir reg symlink hardlink char block fifo */
	const char *data; /* reg */
	size_t len;
	const char *link;
	unsigned mode;
	unsigned uid, gid;
	int64_t mtime;
	unsigned devmajor, devminor;
	const char *xattr_name, *xattr_value;
	size_t chunk;    /* reg: split into chunks of this size (0: one chunk) */
	bool bad_digest; /* reg: write a wrong file digest */
};

struct tb {
	struct rs_buf blob; /* compressed members so far */
	struct rs_buf cur;  /* uncompressed bytes of the open member */
	struct rs_buf toc;
	int n;
};

static void gz_member(struct rs_buf *out, const void *data, size_t len)
{
	z_stream zs = {0};
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t bound = deflateBound(&zs, (uLong)len) + 64;
	assert_int_equal(rs_buf_reserve(out, bound), 0);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = out->data + out->len;
	zs.avail_out = (uInt)bound;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	out->len += bound - zs.avail_out;
	deflateEnd(&zs);
}

/* Closes the open member (if it holds anything) and starts a new one. */
static void tb_cut(struct tb *t)
{
	if (t->cur.len)
		gz_member(&t->blob, t->cur.data, t->cur.len);
	rs_buf_reset(&t->cur);
}

/* width-1 octal digits and a NUL, as ustar wants. */
static void octal(char *field, size_t width, unsigned long long v)
{
	field[width - 1] = '\0';
	for (size_t i = width - 1; i > 0; i--, v >>= 3)
		field[i - 1] = (char)('0' + (v & 7));
}

static void tar_header(struct rs_buf *b, const char *name, char typeflag, size_t size,
		       const struct ent *e)
{
	char h[512] = {0};
	snprintf(h, 100, "%s", name);
	octal(h + 100, 8, e ? e->mode : 0644);
	octal(h + 108, 8, e ? e->uid : 0);
	octal(h + 116, 8, e ? e->gid : 0);
	octal(h + 124, 12, size);
	octal(h + 136, 12, e ? (unsigned long long)e->mtime : 0);
	h[156] = typeflag;
	if (e && e->link)
		snprintf(h + 157, 100, "%s", e->link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	octal(h + 329, 8, e ? e->devmajor : 0);
	octal(h + 337, 8, e ? e->devminor : 0);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	assert_int_equal(rs_buf_append(b, h, 512), 0);
}

static void pad512(struct rs_buf *b, size_t len)
{
	static const char zero[512];
	if (len % 512)
		assert_int_equal(rs_buf_append(b, zero, 512 - len % 512), 0);
}

static void digest_of(const void *d, size_t len, char out[RS_DIGEST_STR_LEN])
{
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(d, len, sum);
	rs_digest_format(sum, out);
}

static void toc_common(struct tb *t, const struct ent *e, const char *type, const char *name)
{
	char when[32];
	rs_rfc3339_format(e->mtime, when);
	rs_buf_printf(&t->toc,
		      "%s{\"name\":\"%s\",\"type\":\"%s\",\"modtime\":\"%s\",\"mode\":%u,"
		      "\"uid\":%u,\"gid\":%u",
		      t->n++ ? "," : "", name, type, when, e->mode, e->uid, e->gid);
}

static void tb_add(struct tb *t, const struct ent *e)
{
	static const struct {
		const char *type;
		char flag;
	} flags[] = {{"dir", '5'},  {"reg", '0'},   {"symlink", '2'}, {"hardlink", '1'},
		     {"char", '3'}, {"block", '4'}, {"fifo", '6'}};
	char flag = 0;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcmp(flags[i].type, e->type) == 0)
			flag = flags[i].flag;
	assert_true(flag != 0);
	bool reg = flag == '0';
	tar_header(&t->cur, e->name, flag, reg ? e->len : 0, e);
	toc_common(t, e, e->type, e->name);
	if (e->link)
		rs_buf_printf(&t->toc, ",\"linkName\":\"%s\"", e->link);
	if (flag == '3' || flag == '4')
		rs_buf_printf(&t->toc, ",\"devMajor\":%u,\"devMinor\":%u", e->devmajor,
			      e->devminor);
	if (e->xattr_name) {
		char b64[256];
		rs_base64_encode((const uint8_t *)e->xattr_value, strlen(e->xattr_value), b64);
		rs_buf_printf(&t->toc, ",\"xattrs\":{\"%s\":\"%s\"}", e->xattr_name, b64);
	}
	if (!reg || e->len == 0) {
		if (reg)
			rs_buf_printf(&t->toc, ",\"size\":0");
		rs_buf_printf(&t->toc, "}");
		return;
	}
	char dg[RS_DIGEST_STR_LEN];
	digest_of(e->data, e->len, dg);
	if (e->bad_digest)
		dg[10] = dg[10] == '0' ? '1' : '0';
	rs_buf_printf(&t->toc, ",\"size\":%zu,\"digest\":\"%s\"", e->len, dg);
	size_t csz = e->chunk ? e->chunk : e->len;
	for (size_t off = 0; off < e->len; off += csz) {
		size_t n = e->len - off < csz ? e->len - off : csz;
		tb_cut(t);
		int64_t moff = (int64_t)t->blob.len;
		assert_int_equal(rs_buf_append(&t->cur, e->data + off, n), 0);
		char cd[RS_DIGEST_STR_LEN];
		digest_of(e->data + off, n, cd);
		if (off > 0)
			toc_common(t, e, "chunk", e->name);
		rs_buf_printf(&t->toc,
			      ",\"offset\":%lld,\"chunkOffset\":%zu,\"chunkSize\":%zu,"
			      "\"chunkDigest\":\"%s\"}",
			      (long long)moff, off, n, cd);
	}
	pad512(&t->cur, e->len);
}

/* Ends the blob: TOC member, footer. Returns the blob (caller frees). */
static uint8_t *tb_finish(struct tb *t, size_t *len)
{
	tb_cut(t);
	int64_t toc_off = (int64_t)t->blob.len;
	rs_buf_printf(&t->toc, "]}");
	struct rs_buf json = {0};
	rs_buf_printf(&json, "{\"version\":1,\"entries\":[");
	assert_int_equal(rs_buf_append(&json, t->toc.data, t->toc.len), 0);
	tar_header(&t->cur, ESGZ_TOC_TAR_NAME, '0', json.len, NULL);
	assert_int_equal(rs_buf_append(&t->cur, json.data, json.len), 0);
	pad512(&t->cur, json.len);
	static const char zero[1024];
	assert_int_equal(rs_buf_append(&t->cur, zero, sizeof(zero)), 0);
	tb_cut(t);
	uint8_t footer[ESGZ_FOOTER_SIZE];
	esgz_footer_gzip(toc_off, footer);
	assert_int_equal(rs_buf_append(&t->blob, footer, sizeof(footer)), 0);
	rs_buf_free(&json);
	rs_buf_free(&t->cur);
	rs_buf_free(&t->toc);
	*len = t->blob.len;
	return t->blob.data;
}

static uint8_t *make_blob(const struct ent *ents, size_t n, size_t *len)
{
	struct tb t = {0};
	for (size_t i = 0; i < n; i++)
		tb_add(&t, &ents[i]);
	return tb_finish(&t, len);
}

/* ---- temp dirs ---------------------------------------------------------- */

struct fixture {
	char root[64]; /* holds dir/ and outside/ */
	char dir[96];
	char outside[96];
};

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/test-extract.XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/dir", f->root);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->root);
	if (mkdir(f->dir, 0755) < 0 || mkdir(f->outside, 0755) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->root, rm_one, 32, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static int extract_blob(const uint8_t *blob, size_t len, const char *dir, struct rs_error *err)
{
	struct esgz_reader r;
	esgz_reader_init_mem(&r, blob, len);
	struct esgz_blob *b = NULL;
	int rc = esgz_open(&r, NULL, &b, err);
	if (rc == 0) {
		struct esgz_extract_opts o = {.no_same_owner = geteuid() != 0};
		rc = esgz_extract(b, &r, dir, &o, err);
	}
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return rc;
}

static char *path_in(const char *dir, const char *rel)
{
	static char buf[4][512];
	static int i;
	char *p = buf[i++ % 4];
	snprintf(p, 512, "%s/%s", dir, rel);
	return p;
}

static void assert_content(const char *path, const char *want, size_t len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *got = malloc(len + 1);
	size_t n = fread(got, 1, len + 1, fp);
	fclose(fp);
	assert_int_equal(n, len);
	assert_memory_equal(got, want, len);
	free(got);
}

static bool dir_is_empty(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", path);
	return system(cmd) == 0;
}

/* ---- tests -------------------------------------------------------------- */

#define T0 1600000000 /* 2020-09-13 12:26:40 UTC */

static void test_tree(void **state)
{
	struct fixture *f = *state;
	bool root = geteuid() == 0;
	static char big[10000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 23);
	const struct ent ents[] = {
	    {.name = "a/", .type = "dir", .mode = 0750, .uid = 1000, .gid = 1001, .mtime = T0},
	    {.name = "a/f",
	     .type = "reg",
	     .data = "hello\n",
	     .len = 6,
	     .mode = 04755,
	     .uid = 1000,
	     .gid = 1001,
	     .mtime = T0 + 1,
	     .xattr_name = "user.test",
	     .xattr_value = "v1"},
	    {.name = "a/empty", .type = "reg", .mode = 0600, .mtime = T0 + 2},
	    {.name = "a/big",
	     .type = "reg",
	     .data = big,
	     .len = sizeof(big),
	     .chunk = 4096,
	     .mode = 0644,
	     .mtime = T0 + 3},
	    {.name = "a/l",
	     .type = "symlink",
	     .link = "f",
	     .mode = 0777,
	     .uid = 1000,
	     .gid = 1001,
	     .mtime = T0 + 4},
	    {.name = "a/h", .type = "hardlink", .link = "a/f", .mode = 04755, .mtime = T0 + 1},
	    {.name = "p", .type = "fifo", .mode = 0640, .mtime = T0 + 5},
	    {.name = "dev/null",
	     .type = "char",
	     .mode = 0666,
	     .devmajor = 1,
	     .devminor = 3,
	     .mtime = T0 + 6},
	    {.name = "b/.wh.gone", .type = "reg", .mode = 0, .mtime = T0 + 7},
	    {.name = "sticky/", .type = "dir", .mode = 01777, .mtime = T0 + 8},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, sizeof(ents) / sizeof(ents[0]), &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);

	struct stat st;
	assert_int_equal(lstat(path_in(f->dir, "a"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_mtime, T0); /* restored after its content was written */
	if (root) {
		assert_int_equal(st.st_uid, 1000);
		assert_int_equal(st.st_gid, 1001);
	}

	assert_int_equal(lstat(path_in(f->dir, "a/f"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, root ? 04755 : 0755); /* setuid survives chown */
	assert_int_equal(st.st_mtime, T0 + 1);
	assert_int_equal(st.st_nlink, 2);
	assert_content(path_in(f->dir, "a/f"), "hello\n", 6);
	char xv[16];
	ssize_t xl = lgetxattr(path_in(f->dir, "a/f"), "user.test", xv, sizeof(xv));
	if (xl < 0 && errno == EOPNOTSUPP) {
		print_message("user xattrs unsupported here; not checked\n");
	} else {
		assert_int_equal(xl, 2);
		assert_memory_equal(xv, "v1", 2);
	}

	struct stat hst;
	assert_int_equal(lstat(path_in(f->dir, "a/h"), &hst), 0);
	assert_int_equal(hst.st_ino, st.st_ino);

	assert_int_equal(lstat(path_in(f->dir, "a/empty"), &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_content(path_in(f->dir, "a/big"), big, sizeof(big));

	char target[64];
	ssize_t tl = readlink(path_in(f->dir, "a/l"), target, sizeof(target));
	assert_int_equal(tl, 1);
	assert_memory_equal(target, "f", 1);
	assert_int_equal(lstat(path_in(f->dir, "a/l"), &st), 0);
	assert_int_equal(st.st_mtime, T0 + 4);
	if (root)
		assert_int_equal(st.st_uid, 1000);

	assert_int_equal(lstat(path_in(f->dir, "p"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_mtime, T0 + 5);

	if (root) {
		assert_int_equal(lstat(path_in(f->dir, "dev/null"), &st), 0);
		assert_true(S_ISCHR(st.st_mode));
		assert_int_equal(major(st.st_rdev), 1);
		assert_int_equal(minor(st.st_rdev), 3);
	}

	assert_int_equal(lstat(path_in(f->dir, "b/.wh.gone"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(lstat(path_in(f->dir, "sticky"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 01777);
	free(blob);
}

static void test_list(void **state)
{
	(void)state;
	const struct ent ents[] = {
	    {.name = "z/", .type = "dir", .mode = 0755, .mtime = T0},
	    {.name = "z/f",
	     .type = "reg",
	     .data = "abc",
	     .len = 3,
	     .mode = 04755,
	     .uid = 1,
	     .gid = 2,
	     .mtime = T0},
	    {.name = "a", .type = "symlink", .link = "z/f", .mode = 0777, .mtime = T0},
	    {.name = "h", .type = "hardlink", .link = "z/f", .mode = 0644, .mtime = T0},
	    {.name = "c", .type = "char", .mode = 0600, .devmajor = 4, .devminor = 5, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, sizeof(ents) / sizeof(ents[0]), &len);
	struct esgz_reader r;
	esgz_reader_init_mem(&r, blob, len);
	struct esgz_blob *b = NULL;
	struct rs_error err = {0};
	int rc = esgz_open(&r, NULL, &b, &err);
	if (rc)
		print_message("open: %s\n", err.msg);
	assert_int_equal(rc, 0);
	char *text = NULL;
	size_t tlen = 0;
	FILE *out = open_memstream(&text, &tlen);
	assert_int_equal(esgz_list(b, out, false, &err), 0);
	fclose(out);
	const char *want = "drwxr-xr-x 0/0               0 2020-09-13 12:26 z/\n"
			   "-rwsr-xr-x 1/2               3 2020-09-13 12:26 z/f\n"
			   "lrwxrwxrwx 0/0               0 2020-09-13 12:26 a -> z/f\n"
			   "hrw-r--r-- 0/0               0 2020-09-13 12:26 h link to z/f\n"
			   "crw------- 0/0             4,5 2020-09-13 12:26 c\n";
	assert_string_equal(text, want);
	free(text);
	out = open_memstream(&text, &tlen);
	assert_int_equal(esgz_list(b, out, true, &err), 0);
	fclose(out);
	assert_non_null(strstr(text, "{\"name\":\"z/f\",\"type\":\"reg\",\"size\":3,\"mode\":2541,"
				     "\"uid\":1,\"gid\":2,"));
	assert_non_null(strstr(text, "\"chunks\":1}\n"));
	assert_non_null(strstr(text, "\"linkName\":\"z/f\""));
	free(text);
	esgz_blob_free(b);
	esgz_reader_close(&r);
	free(blob);
}

/* A symlink the layer makes, then an entry through it. */
static void check_symlink_escape(struct fixture *f, const char *target)
{
	const struct ent ents[] = {
	    {.name = "evil", .type = "symlink", .link = target, .mode = 0777, .mtime = T0},
	    {.name = "evil/pwned", .type = "reg", .data = "x", .len = 1, .mode = 0644, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 2, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	assert_int_not_equal(rc, 0);
	print_message("refused: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "evil"));
	assert_true(dir_is_empty(f->outside));
	free(blob);
}

static void test_escape_absolute(void **state)
{
	struct fixture *f = *state;
	check_symlink_escape(f, f->outside);
}

static void test_escape_relative(void **state)
{
	struct fixture *f = *state;
	check_symlink_escape(f, "../outside");
}

static void test_escape_dotdot(void **state)
{
	struct fixture *f = *state;
	check_symlink_escape(f, "..");
}

/* Symlink, then a directory of the same name replacing it, then a file in it:
 * legal, and the file must land inside. */
static void test_symlink_replaced_by_dir(void **state)
{
	struct fixture *f = *state;
	const struct ent ents[] = {
	    {.name = "evil", .type = "symlink", .link = f->outside, .mode = 0777, .mtime = T0},
	    {.name = "evil/", .type = "dir", .mode = 0755, .mtime = T0},
	    {.name = "evil/pwned", .type = "reg", .data = "x", .len = 1, .mode = 0644, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 3, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);
	struct stat st;
	assert_int_equal(lstat(path_in(f->dir, "evil"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(lstat(path_in(f->dir, "evil/pwned"), &st), 0);
	assert_true(dir_is_empty(f->outside));
	free(blob);
}

/* Symlinks already in DIR where the layer wants a directory or a file. */
static void test_existing_symlinks(void **state)
{
	struct fixture *f = *state;
	char victim[128];
	snprintf(victim, sizeof(victim), "%s/victim", f->outside);
	assert_int_equal(symlink(f->outside, path_in(f->dir, "evil")), 0);
	assert_int_equal(symlink("../outside", path_in(f->dir, "rel")), 0);
	assert_int_equal(symlink(victim, path_in(f->dir, "file")), 0);
	const struct ent ents[] = {
	    {.name = "evil/pwned", .type = "reg", .data = "x", .len = 1, .mode = 0644, .mtime = T0},
	    {.name = "rel/", .type = "dir", .mode = 0755, .mtime = T0},
	    {.name = "rel/pwned", .type = "fifo", .mode = 0644, .mtime = T0},
	    {.name = "file", .type = "reg", .data = "y", .len = 1, .mode = 0644, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 4, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_true(dir_is_empty(f->outside));
	struct stat st;
	assert_int_equal(lstat(path_in(f->dir, "evil"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(lstat(path_in(f->dir, "rel"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(lstat(path_in(f->dir, "file"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_content(path_in(f->dir, "file"), "y", 1);
	free(blob);
}

/* tar semantics: a link made before its target was replaced keeps the old file. */
static void test_hardlink_to_replaced(void **state)
{
	struct fixture *f = *state;
	const struct ent ents[] = {
	    {.name = "a", .type = "reg", .data = "old", .len = 3, .mode = 0644, .mtime = T0},
	    {.name = "h1", .type = "hardlink", .link = "a", .mode = 0644, .mtime = T0},
	    {.name = "h2", .type = "hardlink", .link = "a", .mode = 0644, .mtime = T0},
	    {.name = "a", .type = "reg", .data = "new!", .len = 4, .mode = 0600, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 4, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_content(path_in(f->dir, "a"), "new!", 4);
	assert_content(path_in(f->dir, "h1"), "old", 3);
	assert_content(path_in(f->dir, "h2"), "old", 3);
	struct stat s1, s2, sa;
	assert_int_equal(lstat(path_in(f->dir, "h1"), &s1), 0);
	assert_int_equal(lstat(path_in(f->dir, "h2"), &s2), 0);
	assert_int_equal(lstat(path_in(f->dir, "a"), &sa), 0);
	assert_int_equal(s1.st_ino, s2.st_ino);
	assert_int_not_equal(s1.st_ino, sa.st_ino);
	free(blob);
}

/* xattrs on a symlink and a fifo go through setxattrat (or /proc), never
 * through the link. */
static void test_special_xattrs(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	const struct ent ents[] = {
	    {.name = "t", .type = "reg", .data = "t", .len = 1, .mode = 0644, .mtime = T0},
	    {.name = "l",
	     .type = "symlink",
	     .link = "t",
	     .mode = 0777,
	     .mtime = T0,
	     .xattr_name = "trusted.sym",
	     .xattr_value = "s"},
	    {.name = "p",
	     .type = "fifo",
	     .mode = 0600,
	     .mtime = T0,
	     .xattr_name = "trusted.fifo",
	     .xattr_value = "p"},
	    {.name = "u",
	     .type = "symlink",
	     .link = "t",
	     .mode = 0777,
	     .mtime = T0,
	     .xattr_name = "user.refused",
	     .xattr_value = "u"},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 4, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);
	char v[8];
	assert_int_equal(lgetxattr(path_in(f->dir, "l"), "trusted.sym", v, sizeof(v)), 1);
	assert_int_equal(v[0], 's');
	assert_int_equal(getxattr(path_in(f->dir, "t"), "trusted.sym", v, sizeof(v)), -1);
	assert_int_equal(lgetxattr(path_in(f->dir, "p"), "trusted.fifo", v, sizeof(v)), 1);
	assert_int_equal(v[0], 'p');
	free(blob);
}

static void test_bad_digest(void **state)
{
	struct fixture *f = *state;
	const struct ent ents[] = {
	    {.name = "f",
	     .type = "reg",
	     .data = "data",
	     .len = 4,
	     .mode = 0644,
	     .mtime = T0,
	     .bad_digest = true},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 1, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	assert_int_equal(rc, ESGZ_EDIGEST);
	assert_non_null(strstr(err.msg, "'f'"));
	struct stat st;
	assert_int_equal(lstat(path_in(f->dir, "f"), &st), -1); /* no unverified file left */
	free(blob);
}

/* A file already in DIR is replaced, not written through or appended to. */
static void test_replace_existing(void **state)
{
	struct fixture *f = *state;
	FILE *fp = fopen(path_in(f->dir, "f"), "w");
	fputs("previous content, longer", fp);
	fclose(fp);
	assert_int_equal(mkdir(path_in(f->dir, "emptydir"), 0755), 0);
	const struct ent ents[] = {
	    {.name = "f", .type = "reg", .data = "new", .len = 3, .mode = 0644, .mtime = T0},
	    {.name = "emptydir", .type = "symlink", .link = "f", .mode = 0777, .mtime = T0},
	};
	size_t len;
	uint8_t *blob = make_blob(ents, 2, &len);
	struct rs_error err = {0};
	int rc = extract_blob(blob, len, f->dir, &err);
	if (rc)
		print_message("extract: %s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_content(path_in(f->dir, "f"), "new", 3);
	struct stat st;
	assert_int_equal(lstat(path_in(f->dir, "emptydir"), &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_tree, setup, teardown),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test_setup_teardown(test_escape_absolute, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_escape_relative, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_escape_dotdot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlink_replaced_by_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_existing_symlinks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hardlink_to_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_special_xattrs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_digest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replace_existing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
