// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the reading side: footer, TOC parser, index, chunks, verifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "blobkit.h"

/* ---- helpers ---------------------------------------------------------- */

struct opened {
	struct blobkit k;
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err;
	int rc;
};

/* A blob with one 4 KiB member of filler followed by the given TOC. */
static void open_toc(struct opened *o, const char *toc, const struct esgz_open_opts *opts)
{
	memset(o, 0, sizeof(*o));
	uint8_t filler[4096];
	memset(filler, 'f', sizeof(filler));
	bk_member(&o->k, filler, sizeof(filler));
	bk_finish(&o->k, toc, 0);
	o->rc = bk_open(&o->k, &o->r, opts, &o->b, &o->err);
}

static void close_opened(struct opened *o)
{
	esgz_blob_free(o->b);
	esgz_reader_close(&o->r);
	rs_buf_free(&o->k.blob);
}

static void expect_error(const char *toc, const char *needle)
{
	struct opened o;
	open_toc(&o, toc, NULL);
	if (o.rc == 0 || !strstr(o.err.msg, needle))
		fail_msg("TOC %s: expected error containing '%s', got rc=%d '%s'", toc, needle,
			 o.rc, o.err.msg);
	close_opened(&o);
}

static uint32_t node_of(struct esgz_blob *b, const char *path)
{
	return esgz_index_lookup(b->index, path, strlen(path));
}

/* ---- footer ----------------------------------------------------------- */

static void test_footer_roundtrip(void **state)
{
	(void)state;
	uint8_t f[ESGZ_FOOTER_SIZE];
	esgz_footer_gzip(0x1234, f);
	struct esgz_footer out;
	struct rs_error err;
	assert_int_equal(
	    esgz_footer_parse(f, sizeof(f), 0x1234 + 100 + ESGZ_FOOTER_SIZE, &out, &err), 0);
	assert_int_equal(out.format, ESGZ_FORMAT_ESTARGZ);
	assert_int_equal(out.toc_offset, 0x1234);
	assert_int_equal(out.toc_size, 100);
	assert_int_equal(out.payload_end, 0x1234);
	/* The footer is itself a valid, empty gzip member. */
	uint8_t dst[8];
	uLongf dl = sizeof(dst);
	z_stream zs = {0};
	inflateInit2(&zs, 16 + MAX_WBITS);
	zs.next_in = f;
	zs.avail_in = sizeof(f);
	zs.next_out = dst;
	zs.avail_out = (uInt)dl;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	assert_int_equal(zs.total_out, 0);
	inflateEnd(&zs);
}

static void test_footer_zstd(void **state)
{
	(void)state;
	uint8_t f[ESGZ_ZSTD_FOOTER_FRAME];
	esgz_footer_zstd(1000, 200, 5000, f);
	struct esgz_footer out;
	struct rs_error err;
	assert_int_equal(esgz_footer_parse(f, sizeof(f), 1000 + 200 + sizeof(f), &out, &err), 0);
	assert_int_equal(out.format, ESGZ_FORMAT_ZSTD_CHUNKED);
	assert_int_equal(out.toc_offset, 1000);
	assert_int_equal(out.toc_size, 200);
	assert_int_equal(out.toc_raw_size, 5000);
	assert_int_equal(out.payload_end, 992);
	/* TOC past the end of the blob */
	assert_int_not_equal(esgz_footer_parse(f, sizeof(f), 1100, &out, &err), 0);
	assert_non_null(strstr(err.msg, "outside"));
}

static void test_footer_bad(void **state)
{
	(void)state;
	struct esgz_footer out;
	struct rs_error err;
	uint8_t f[ESGZ_FOOTER_SIZE];
	esgz_footer_gzip(5000, f);
	/* TOC offset beyond the blob */
	assert_int_not_equal(esgz_footer_parse(f, sizeof(f), 1000, &out, &err), 0);
	assert_non_null(strstr(err.msg, "outside the blob"));
	/* Truncated: too small for any footer */
	assert_int_not_equal(esgz_footer_parse(f, 20, 20, &out, &err), 0);
	assert_non_null(strstr(err.msg, "too small"));
	/* Garbage */
	uint8_t junk[64];
	memset(junk, 'j', sizeof(junk));
	assert_int_not_equal(esgz_footer_parse(junk, sizeof(junk), 1 << 20, &out, &err), 0);
	assert_non_null(strstr(err.msg, "no eStargz"));
	/* Bad hex in the offset text */
	esgz_footer_gzip(10, f);
	f[20] = 'z';
	assert_int_not_equal(esgz_footer_parse(f, sizeof(f), 1 << 20, &out, &err), 0);
}

/* ---- a real blob: data, chunks, verify --------------------------------- */

struct sample {
	struct blobkit k;
	uint8_t big[300000];
	char toc[8192];
};

/* a/ dir, a/big in 3 chunks, a/small, a/link -> small, a/hl => a/big, x/y/z implicit dirs */
static void make_sample(struct sample *s, bool corrupt_chunk, bool wrong_file_digest)
{
	memset(&s->k, 0, sizeof(s->k));
	for (size_t i = 0; i < sizeof(s->big); i++)
		s->big[i] = (uint8_t)(i * 7 + (i >> 9));
	uint8_t head[512] = {0};
	bk_member(&s->k, head, sizeof(head)); /* headers ride here */
	int64_t off[3];
	char cd[3][RS_DIGEST_STR_LEN];
	const size_t cs = 120000;
	for (int i = 0; i < 3; i++) {
		size_t start = (size_t)i * cs, len = i < 2 ? cs : sizeof(s->big) - 2 * cs;
		bk_digest(s->big + start, len, cd[i]);
		if (corrupt_chunk && i == 1) {
			uint8_t tmp[120000];
			memcpy(tmp, s->big + start, len);
			tmp[5] ^= 1;
			off[i] = bk_member(&s->k, tmp, len);
		} else {
			off[i] = bk_member(&s->k, s->big + start, len);
		}
	}
	char fd[RS_DIGEST_STR_LEN], sd[RS_DIGEST_STR_LEN];
	bk_digest(s->big, sizeof(s->big), fd);
	if (wrong_file_digest)
		bk_digest("nope", 4, fd);
	int64_t small = bk_member(&s->k, "hello", 5);
	bk_digest("hello", 5, sd);
	int64_t zz = bk_member(&s->k, "zz", 2);
	char zd[RS_DIGEST_STR_LEN];
	bk_digest("zz", 2, zd);
	snprintf(
	    s->toc, sizeof(s->toc),
	    "{\"version\":1,\"entries\":["
	    "{\"name\":\"./\",\"type\":\"dir\",\"mode\":493,\"modtime\":\"2020-01-02T03:04:05Z\"},"
	    "{\"name\":\"a/\",\"type\":\"dir\",\"mode\":448,\"uid\":10,\"gid\":20,"
	    "\"userName\":\"ten\",\"groupName\":\"twenty\"},"
	    "{\"name\":\"a/big\",\"type\":\"reg\",\"size\":300000,\"mode\":420,\"uid\":10,"
	    "\"offset\":%lld,\"chunkSize\":120000,\"digest\":\"%s\",\"chunkDigest\":\"%s\"},"
	    "{\"name\":\"a/big\",\"type\":\"chunk\",\"offset\":%lld,\"chunkOffset\":120000,"
	    "\"chunkSize\":120000,\"chunkDigest\":\"%s\"},"
	    "{\"name\":\"a/big\",\"type\":\"chunk\",\"offset\":%lld,\"chunkOffset\":240000,"
	    "\"chunkDigest\":\"%s\"},"
	    "{\"name\":\"a/small\",\"type\":\"reg\",\"size\":5,\"offset\":%lld,\"digest\":\"%s\","
	    "\"chunkDigest\":\"%s\",\"xattrs\":{\"user.k\":\"dmFsdWU=\"}},"
	    "{\"name\":\"a/link\",\"type\":\"symlink\",\"linkName\":\"small\"},"
	    "{\"name\":\"a/hl\",\"type\":\"hardlink\",\"linkName\":\"./a/big\"},"
	    "{\"name\":\"a/fifo\",\"type\":\"fifo\",\"mode\":420},"
	    "{\"name\":\"a/dev\",\"type\":\"char\",\"devMajor\":1,\"devMinor\":3},"
	    "{\"name\":\"x/y/z\",\"type\":\"reg\",\"size\":2,\"offset\":%lld,\"digest\":\"%s\","
	    "\"unknownField\":{\"nested\":[1,2,{\"a\":null}]}}"
	    "],\"extra\":[1,2,3]}",
	    (long long)off[0], fd, cd[0], (long long)off[1], cd[1], (long long)off[2], cd[2],
	    (long long)small, sd, sd, (long long)zz, zd);
	bk_finish(&s->k, s->toc, 0);
}

static void test_index_sample(void **state)
{
	(void)state;
	static struct sample s;
	make_sample(&s, false, false);
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err = {0};
	assert_int_equal(bk_open(&s.k, &r, NULL, &b, &err), 0);
	const struct esgz_index *idx = b->index;

	assert_int_equal(esgz_index_toc_entries(idx), 11);
	const struct esgz_node *root = esgz_index_node(idx, ESGZ_ROOT);
	assert_int_equal(root->mode, 0755);
	assert_int_equal(root->nlink, 4); /* a, x */

	uint32_t a = node_of(b, "a");
	assert_int_not_equal(a, ESGZ_NONE);
	const struct esgz_node *an = esgz_index_node(idx, a);
	assert_int_equal(an->type, ESGZ_DIR);
	assert_int_equal(an->mode, 0700);
	assert_string_equal(esgz_index_str(idx, an->uname), "ten");
	assert_string_equal(esgz_index_str(idx, an->gname), "twenty");

	/* children sorted by name */
	uint32_t n;
	const uint32_t *kids = esgz_index_children(idx, a, &n);
	assert_int_equal(n, 6);
	const char *want[] = {"big", "dev", "fifo", "hl", "link", "small"};
	for (uint32_t i = 0; i < n; i++)
		assert_string_equal(esgz_index_str(idx, esgz_index_node(idx, kids[i])->base),
				    want[i]);
	assert_int_equal(esgz_index_child(idx, a, "link", 4), node_of(b, "a/link"));
	assert_int_equal(esgz_index_child(idx, a, "lin", 3), ESGZ_NONE);

	/* chunked file, its hardlink, nlink */
	uint32_t big = node_of(b, "a/big");
	const struct esgz_node *bn = esgz_index_node(idx, big);
	assert_int_equal(bn->size, 300000);
	assert_int_equal(bn->nchunks, 3);
	assert_int_equal(bn->nlink, 2);
	assert_string_equal(esgz_index_str(idx, bn->uname), "ten"); /* inherited by uid */
	uint32_t hl = node_of(b, "a/hl");
	assert_int_equal(esgz_index_resolve(idx, hl), big);
	const struct esgz_chunk *c = esgz_index_chunk_at(idx, hl, 250000);
	assert_non_null(c);
	assert_int_equal(c->file_offset, 240000);
	assert_int_equal(c->size, 60000);
	assert_null(esgz_index_chunk_at(idx, big, 300000));
	c = esgz_index_chunk_at(idx, big, 119999);
	assert_int_equal(c->file_offset, 0);
	assert_true(c->comp_end > c->offset);

	/* symlink, device, xattr, implicit parents */
	const struct esgz_node *ln = esgz_index_node(idx, node_of(b, "a/link"));
	assert_string_equal(esgz_index_str(idx, ln->link), "small");
	const struct esgz_node *dn = esgz_index_node(idx, node_of(b, "a/dev"));
	assert_int_equal(dn->type, ESGZ_CHAR);
	assert_int_equal(dn->devmajor, 1);
	assert_int_equal(dn->devminor, 3);
	uint32_t nx;
	const struct esgz_xattr *xa = esgz_index_xattrs(idx, node_of(b, "a/small"), &nx);
	assert_int_equal(nx, 1);
	assert_string_equal(esgz_index_str(idx, xa->name), "user.k");
	assert_int_equal(xa->value_len, 5);
	assert_memory_equal(esgz_index_str(idx, xa->value), "value", 5);
	uint32_t xy = node_of(b, "x/y");
	assert_int_not_equal(xy, ESGZ_NONE);
	assert_int_equal(esgz_index_node(idx, xy)->type, ESGZ_DIR);
	assert_int_equal(esgz_index_node(idx, node_of(b, "x/y/z"))->parent, xy);

	/* read a chunk */
	uint8_t buf[120000];
	assert_int_equal(esgz_chunk_read(b, &r, esgz_index_chunk_at(idx, big, 130000), buf, &err),
			 0);
	assert_memory_equal(buf, s.big + 120000, 120000);

	struct esgz_verify_stats st;
	assert_int_equal(esgz_verify(b, &r, &st, &err), 0);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.chunks, 5);
	esgz_blob_free(b);
	esgz_reader_close(&r);
	rs_buf_free(&s.k.blob);
}

static void test_verify_corrupt_chunk(void **state)
{
	(void)state;
	static struct sample s;
	make_sample(&s, true, false);
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err = {0};
	assert_int_equal(bk_open(&s.k, &r, NULL, &b, &err), 0);
	assert_int_equal(esgz_verify(b, &r, NULL, &err), ESGZ_EDIGEST);
	assert_non_null(strstr(err.msg, "a/big"));
	assert_non_null(strstr(err.msg, "chunk digest mismatch"));
	uint8_t buf[120000];
	const struct esgz_chunk *c = esgz_index_chunk_at(b->index, node_of(b, "a/big"), 120000);
	assert_int_equal(esgz_chunk_read(b, &r, c, buf, &err), ESGZ_EDIGEST);
	esgz_blob_free(b);
	esgz_reader_close(&r);
	rs_buf_free(&s.k.blob);
}

static void test_verify_wrong_file_digest(void **state)
{
	(void)state;
	static struct sample s;
	make_sample(&s, false, true);
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err = {0};
	assert_int_equal(bk_open(&s.k, &r, NULL, &b, &err), 0);
	assert_int_equal(esgz_verify(b, &r, NULL, &err), ESGZ_EDIGEST);
	assert_non_null(strstr(err.msg, "file digest mismatch"));
	esgz_blob_free(b);
	esgz_reader_close(&r);
	rs_buf_free(&s.k.blob);
}

static void test_toc_digest_and_second_read(void **state)
{
	(void)state;
	static struct sample s;
	make_sample(&s, false, false);
	char want[RS_DIGEST_STR_LEN];
	bk_digest(s.toc, strlen(s.toc), want);
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err = {0};
	/* tail_read smaller than the TOC forces the second read */
	struct esgz_open_opts o = {
	    .expected_toc_digest = want, .tail_read = 64, .keep_toc_json = true};
	assert_int_equal(bk_open(&s.k, &r, &o, &b, &err), 0);
	assert_int_equal(b->toc_json.len, strlen(s.toc));
	assert_memory_equal(b->toc_json.data, s.toc, strlen(s.toc));
	esgz_blob_free(b);
	esgz_reader_close(&r);
	o.expected_toc_digest =
	    "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	assert_int_equal(bk_open(&s.k, &r, &o, &b, &err), ESGZ_EDIGEST);
	assert_non_null(strstr(err.msg, "TOC digest mismatch"));
	esgz_reader_close(&r);
	o.expected_toc_digest = "md5:1234";
	assert_int_not_equal(bk_open(&s.k, &r, &o, &b, &err), 0);
	esgz_reader_close(&r);
	rs_buf_free(&s.k.blob);
}

static void test_legacy_footer_blob(void **state)
{
	(void)state;
	struct blobkit k = {0};
	int64_t off = bk_member(&k, "data", 4);
	char toc[256];
	snprintf(toc, sizeof(toc),
		 "{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":4,"
		 "\"offset\":%lld}]}",
		 (long long)off);
	bk_finish(&k, toc, 1);
	struct esgz_reader r;
	struct esgz_blob *b;
	struct rs_error err = {0};
	assert_int_equal(bk_open(&k, &r, NULL, &b, &err), 0);
	assert_int_equal(b->footer.format, ESGZ_FORMAT_STARGZ_LEGACY);
	assert_int_equal(esgz_verify(b, &r, NULL, &err), 0);
	uint8_t buf[4];
	assert_int_equal(esgz_chunk_read(b, &r, esgz_index_chunk_at(b->index, 1, 0), buf, &err), 0);
	assert_memory_equal(buf, "data", 4);
	esgz_blob_free(b);
	esgz_reader_close(&r);
	rs_buf_free(&k.blob);
}

/* ---- TOC validation ---------------------------------------------------- */

static void test_toc_not_json(void **state)
{
	(void)state;
	expect_error("this is not json", "not valid JSON");
	expect_error("[1,2,3]", "not a JSON object");
	expect_error("\"str\"", "not a JSON object");
	expect_error("{\"version\":1}", "no 'entries'");
	expect_error("{\"version\":99,\"entries\":[]}", "unsupported version 99");
	expect_error("{\"version\":1,\"entries\":5}", "must be an array");
	expect_error("{\"version\":1,\"entries\":{}}", "must be an array");
	expect_error("{\"version\":1,\"entries\":[5]}", "not a JSON object");
	expect_error("{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"reg\"}",
		     "not valid JSON");
}

static void test_toc_bad_entries(void **state)
{
	(void)state;
	expect_error("{\"entries\":[{\"type\":\"reg\"}]}", "has no name");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"weird\"}]}", "unknown type 'weird'");
	expect_error("{\"entries\":[{\"name\":\"a\"}]}", "missing type");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"size\":\"12\"}]}",
		     "must be an integer");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"size\":-1}]}",
		     "not a non-negative integer");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"size\":1.5}]}",
		     "not a non-negative integer");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"digest\":\"md5:x\"}]}",
		     "not a sha256 digest");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"modtime\":\"yesterday\"}]}",
		     "not RFC 3339");
	expect_error(
	    "{\"entries\":[{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":{\"user.x\":\"!!\"}}]}",
	    "not valid base64");
	expect_error("{\"entries\":[{\"name\":\"a\",\"type\":\"reg\",\"uid\":99999999999}]}",
		     "too large");
}

static void test_toc_paths(void **state)
{
	(void)state;
	expect_error("{\"entries\":[{\"name\":\"../etc/passwd\",\"type\":\"reg\"}]}", "'..'");
	expect_error("{\"entries\":[{\"name\":\"a/../../x\",\"type\":\"reg\"}]}", "'..'");
	expect_error("{\"entries\":[{\"name\":\"/etc/passwd\",\"type\":\"reg\"}]}", "absolute");
	expect_error("{\"entries\":[{\"name\":\"l\",\"type\":\"symlink\",\"linkName\":\"/etc\"},"
		     "{\"name\":\"l/passwd\",\"type\":\"reg\"}]}",
		     "parent 'l' is a symlink");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\"},"
		     "{\"name\":\"f/g\",\"type\":\"reg\"}]}",
		     "not a directory");
	expect_error("{\"entries\":[{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"nope\"}]}",
		     "not an earlier entry");
	expect_error("{\"entries\":[{\"name\":\"d\",\"type\":\"dir\"},"
		     "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"d\"}]}",
		     "is a directory");
	expect_error("{\"entries\":[{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"../x\"}]}",
		     "hardlink target");
	expect_error("{\"entries\":[{\"name\":\"./\",\"type\":\"reg\"}]}",
		     "root must be a directory");
}

static void test_toc_duplicates(void **state)
{
	(void)state;
	struct opened o;
	open_toc(&o,
		 "{\"entries\":[{\"name\":\"d/\",\"type\":\"dir\",\"mode\":448},"
		 "{\"name\":\"d/f\",\"type\":\"symlink\",\"linkName\":\"x\"},"
		 "{\"name\":\"./d/f\",\"type\":\"fifo\"},"
		 "{\"name\":\"d//\",\"type\":\"dir\",\"mode\":511},"
		 "{\"name\":\"d/./g\",\"type\":\"fifo\"}]}",
		 NULL);
	assert_int_equal(o.rc, 0);
	uint32_t d = node_of(o.b, "d");
	assert_int_equal(esgz_index_node(o.b->index, d)->mode, 0777); /* later dir wins */
	uint32_t n;
	const uint32_t *kids = esgz_index_children(o.b->index, d, &n);
	assert_int_equal(n, 2); /* f (the fifo) and g, both under the new d */
	assert_int_equal(esgz_index_node(o.b->index, kids[0])->type, ESGZ_FIFO);
	assert_int_equal(esgz_index_node(o.b->index, node_of(o.b, "d/f"))->type, ESGZ_FIFO);
	close_opened(&o);
}

static void test_toc_chunks(void **state)
{
	(void)state;
	expect_error("{\"entries\":[{\"name\":\"c\",\"type\":\"chunk\"}]}",
		     "without a preceding reg");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1,"
		     "\"chunkSize\":4},{\"name\":\"f\",\"type\":\"chunk\",\"offset\":2,"
		     "\"chunkOffset\":5}]}",
		     "does not continue");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1,"
		     "\"chunkSize\":4}]}",
		     "chunks cover 4 of the file's 10");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1,"
		     "\"chunkSize\":40}]}",
		     "run past");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1},"
		     "{\"name\":\"g\",\"type\":\"chunk\",\"offset\":2,\"chunkOffset\":10}]}",
		     "does not follow its file");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,"
		     "\"offset\":99999999}]}",
		     "outside");
	expect_error("{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1,"
		     "\"chunkOffset\":3}]}",
		     "first chunk must start");
}

static void test_toc_entry_limit(void **state)
{
	(void)state;
	struct rs_buf j = {0};
	rs_buf_printf(&j, "{\"entries\":[");
	for (int i = 0; i < 100; i++)
		rs_buf_printf(&j, "%s{\"name\":\"f%d\",\"type\":\"fifo\"}", i ? "," : "", i);
	rs_buf_printf(&j, "]}");
	rs_buf_append(&j, "", 1);
	struct opened o;
	struct esgz_open_opts opts = {.max_entries = 50};
	open_toc(&o, (char *)j.data, &opts);
	assert_int_equal(o.rc, -E2BIG);
	assert_non_null(strstr(o.err.msg, "more than 50 entries"));
	close_opened(&o);
	opts.max_entries = 100;
	open_toc(&o, (char *)j.data, &opts);
	assert_int_equal(o.rc, 0);
	close_opened(&o);
	rs_buf_free(&j);
}

static void test_toc_landmarks(void **state)
{
	(void)state;
	struct opened o;
	open_toc(&o,
		 "{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":1,\"offset\":10},"
		 "{\"name\":\".prefetch.landmark\",\"type\":\"reg\",\"size\":1,\"offset\":20}]}",
		 NULL);
	assert_int_equal(o.rc, 0);
	bool no;
	assert_int_equal(esgz_index_prefetch_end(o.b->index, &no), 20);
	assert_false(no);
	close_opened(&o);
	open_toc(&o, "{\"entries\":[{\"name\":\".no.prefetch.landmark\",\"type\":\"reg\"}]}", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(esgz_index_prefetch_end(o.b->index, &no), -1);
	assert_true(no);
	close_opened(&o);
}

static void test_toc_no_prefetch(void **state)
{
	(void)state;
	struct opened o;
	open_toc(&o,
		 "{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":1,"
		 "\"chunkSize\":4,\"" ESGZ_TOC_NO_PREFETCH "\":true},"
		 "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":2,\"chunkOffset\":4,"
		 "\"chunkSize\":4,\"" ESGZ_TOC_NO_PREFETCH "\":false},"
		 "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":3,\"chunkOffset\":8,"
		 "\"" ESGZ_TOC_NO_PREFETCH "\":true,\"chunkDigest\":\"\"},"
		 "{\"name\":\"g\",\"type\":\"reg\",\"size\":3,\"offset\":4,"
		 "\"" ESGZ_TOC_NO_PREFETCH "\":null,\"io.github.other\":true}]}",
		 NULL);
	if (o.rc != 0)
		fail_msg("open: %s", o.err.msg);
	uint32_t n;
	const struct esgz_chunk *c = esgz_index_chunks(o.b->index, node_of(o.b, "f"), &n);
	assert_int_equal(n, 3);
	assert_int_equal(c[0].no_prefetch, 1);
	assert_int_equal(c[1].no_prefetch, 0);
	assert_int_equal(c[2].no_prefetch, 1);
	assert_int_equal(c[2].size, 2);
	c = esgz_index_chunks(o.b->index, node_of(o.b, "g"), &n);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].no_prefetch, 0);
	close_opened(&o);

	const char *bad[] = {"\"yes\"", "1", "{}", "[true]"};
	for (size_t i = 0; i < 4; i++) {
		char toc[256];
		snprintf(toc, sizeof(toc),
			 "{\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":1,\"offset\":1,"
			 "\"%s\":%s}]}",
			 ESGZ_TOC_NO_PREFETCH, bad[i]);
		expect_error(toc, "field '" ESGZ_TOC_NO_PREFETCH "' must be a boolean");
		expect_error(toc, "'f'");
	}
}

/* ---- util ------------------------------------------------------------- */

static void test_path_clean(void **state)
{
	(void)state;
	char out[64];
	size_t n;
	const char *why;
	assert_int_equal(rs_path_clean("./a//b/./c/", 11, out, &n, &why), 0);
	assert_string_equal(out, "a/b/c");
	assert_int_equal(rs_path_clean("./", 2, out, &n, &why), 0);
	assert_int_equal(n, 0);
	assert_int_equal(rs_path_clean("a/..b/c..", 9, out, &n, &why), 0);
	assert_string_equal(out, "a/..b/c..");
	assert_int_not_equal(rs_path_clean("a/../b", 6, out, &n, &why), 0);
	assert_int_not_equal(rs_path_clean("/a", 2, out, &n, &why), 0);
}

static void test_rfc3339(void **state)
{
	(void)state;
	int64_t s;
	uint32_t ns;
	assert_int_equal(rs_rfc3339_parse("1970-01-01T00:00:00Z", 20, &s, &ns), 0);
	assert_int_equal(s, 0);
	assert_int_equal(rs_rfc3339_parse("2020-02-29T12:34:56.5+01:00", 27, &s, &ns), 0);
	assert_int_equal(s, 1582976096); /* 11:34:56Z */
	assert_int_equal(ns, 500000000);
	assert_int_equal(rs_rfc3339_parse("0001-01-01T00:00:00Z", 20, &s, &ns), 0);
	assert_int_equal(s, -62135596800LL);
	char buf[32];
	rs_rfc3339_format(1582976096, buf);
	assert_string_equal(buf, "2020-02-29T11:34:56Z");
	assert_int_not_equal(rs_rfc3339_parse("2020-13-01T00:00:00Z", 20, &s, &ns), 0);
}

static void test_base64(void **state)
{
	(void)state;
	uint8_t out[16];
	assert_int_equal(rs_base64_decode("aGVsbG8=", 8, out, sizeof(out)), 5);
	assert_memory_equal(out, "hello", 5);
	assert_int_equal(rs_base64_decode("", 0, out, sizeof(out)), 0);
	assert_true(rs_base64_decode("aGVsbG8", 7, out, sizeof(out)) < 0);
	assert_true(rs_base64_decode("a=Vs", 4, out, sizeof(out)) < 0);
	char enc[16];
	rs_base64_encode((const uint8_t *)"hello", 5, enc);
	assert_string_equal(enc, "aGVsbG8=");
}

/* A blob known only from its TOC's member on opens like the whole blob, and
 * a read before the known bytes fails instead of reading garbage. */
static void test_reader_tail(void **state)
{
	(void)state;
	struct opened o;
	open_toc(&o, "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\"}]}", NULL);
	assert_int_equal(o.rc, 0);
	int64_t from = o.b->footer.toc_offset;
	size_t len = o.k.blob.len - (size_t)from;
	struct esgz_reader t;
	esgz_reader_init_tail(&t, o.k.blob.data + from, len, (int64_t)o.k.blob.len);
	assert_int_equal(t.size, (int64_t)o.k.blob.len);
	struct esgz_open_opts oo = {.tail_read = len};
	struct esgz_blob *b = NULL;
	struct rs_error err = {0};
	assert_int_equal(esgz_open(&t, &oo, &b, &err), 0);
	assert_memory_equal(b->toc_digest, o.b->toc_digest, RS_SHA256_LEN);
	assert_int_equal(b->size, o.b->size);
	esgz_blob_free(b);
	uint8_t x[4];
	assert_int_equal(esgz_read_at(&t, x, sizeof(x), from - 1, &err), -ERANGE);
	assert_int_equal(esgz_read_at(&t, x, sizeof(x), from, &err), 0);
	assert_int_not_equal(esgz_read_at(&t, x, sizeof(x), t.size - 2, &err), 0);
	/* a tail read longer than what is known reaches before it */
	oo.tail_read = len + 100;
	assert_int_equal(esgz_open(&t, &oo, &b, &err), -ERANGE);
	esgz_reader_close(&t);
	close_opened(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_footer_roundtrip),
	    cmocka_unit_test(test_footer_zstd),
	    cmocka_unit_test(test_footer_bad),
	    cmocka_unit_test(test_index_sample),
	    cmocka_unit_test(test_verify_corrupt_chunk),
	    cmocka_unit_test(test_verify_wrong_file_digest),
	    cmocka_unit_test(test_toc_digest_and_second_read),
	    cmocka_unit_test(test_legacy_footer_blob),
	    cmocka_unit_test(test_toc_not_json),
	    cmocka_unit_test(test_toc_bad_entries),
	    cmocka_unit_test(test_toc_paths),
	    cmocka_unit_test(test_toc_duplicates),
	    cmocka_unit_test(test_toc_chunks),
	    cmocka_unit_test(test_toc_entry_limit),
	    cmocka_unit_test(test_toc_landmarks),
	    cmocka_unit_test(test_toc_no_prefetch),
	    cmocka_unit_test(test_path_clean),
	    cmocka_unit_test(test_rfc3339),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_reader_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
