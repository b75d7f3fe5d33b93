// SPDX-License-Identifier: Apache-2.0
/* src/convert without a registry: oci: specs, platforms, manifest parsing,
 * uncompressed sizes, and whole conversions between OCI layouts made here. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cmocka.h>

#include "convert/convert_internal.h"

/* Fails with the error's message. */
#define assert_ok(expr, err)                                                                       \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != 0)                                                                      \
			fail_msg("%s: %d: %s", #expr, rc_, (err)->msg);                            \
	} while (0)

/* ---- specs and platforms -------------------------------------------------- */

static void test_layout_spec(void **state)
{
	(void)state;
	struct rs_error err = {0};
	char *dir = NULL, *tag = NULL;
	assert_int_equal(conv_layout_spec("oci:/a/b:v1", &dir, &tag, &err), 1);
	assert_string_equal(dir, "/a/b");
	assert_string_equal(tag, "v1");
	free(dir);
	free(tag);
	assert_int_equal(conv_layout_spec("oci:rel/dir", &dir, &tag, &err), 1);
	assert_string_equal(dir, "rel/dir");
	assert_null(tag);
	free(dir);
	assert_int_equal(conv_layout_spec("oci:d:example.com/img:1", &dir, &tag, &err), 1);
	assert_string_equal(tag, "example.com/img:1");
	free(dir);
	free(tag);
	assert_int_equal(conv_layout_spec("docker.io/library/x:1", &dir, &tag, &err), 0);
	assert_true(conv_layout_spec("oci:", &dir, &tag, &err) < 0);
	assert_non_null(strstr(err.msg, "needs a directory"));
	assert_true(conv_layout_spec("oci:d:", &dir, &tag, &err) < 0);
	assert_true(conv_layout_spec("oci:d:a b", &dir, &tag, &err) < 0);
}

static void test_platform(void **state)
{
	(void)state;
	json_t *arm7 =
	    json_pack("{s:s,s:s,s:s}", "os", "linux", "architecture", "arm", "variant", "v7");
	json_t *amd = json_pack("{s:s,s:s}", "os", "linux", "architecture", "amd64");
	char s[64];
	conv_platform_format(arm7, s, sizeof(s));
	assert_string_equal(s, "linux/arm/v7");
	conv_platform_format(NULL, s, sizeof(s));
	assert_string_equal(s, "");
	conv_platform_format(amd, s, sizeof(s));
	assert_string_equal(s, "linux/amd64");
	json_decref(arm7);
	json_decref(amd);
}

/* conv_index_select picks by the registry's matcher: the best fit, not the
 * first that fits. */
static const char *select_digest(struct conv_doc *d, const char *platform, struct rs_error *err)
{
	struct reg_platform p = {0};
	char *st = NULL;
	assert_int_equal(reg_platform_parse(platform, &p, &st, err), 0);
	json_t *sel = NULL;
	int rc = conv_index_select("idx", d, &p, &sel, err);
	free(st);
	if (rc < 0)
		return NULL;
	assert_int_equal(json_array_size(sel), 1);
	static char dg[80];
	snprintf(dg, sizeof(dg), "%s",
		 json_string_value(json_object_get(json_array_get(sel, 0), "digest")));
	json_decref(sel);
	return dg;
}

static json_t *index_entry(char digit, const char *os, const char *arch, const char *variant)
{
	char dg[80] = "sha256:";
	memset(dg + 7, digit, 64);
	dg[71] = 0;
	json_t *p = json_pack("{s:s,s:s}", "os", os, "architecture", arch);
	if (variant)
		json_object_set_new(p, "variant", json_string(variant));
	return json_pack("{s:s,s:i,s:s,s:o}", "mediaType",
			 "application/vnd.oci.image.manifest.v1+json", "size", 1, "digest", dg,
			 "platform", p);
}

static void test_index_select(void **state)
{
	(void)state;
	struct rs_error err = {0};
	json_t *m = json_array();
	json_array_append_new(m, index_entry('1', "unknown", "unknown", NULL));
	json_array_append_new(m, index_entry('2', "linux", "arm", "v6"));
	json_array_append_new(m, index_entry('3', "linux", "arm", "v7"));
	json_array_append_new(m, index_entry('4', "linux", "amd64", "v3"));
	json_array_append_new(m, index_entry('5', "linux", "amd64", NULL));
	json_array_append_new(m, index_entry('6', "linux", "arm64", "v8"));
	struct conv_doc d = {0};
	d.json = json_pack("{s:s,s:o}", "mediaType", "application/vnd.oci.image.index.v1+json",
			   "manifests", m);
	assert_non_null(d.json);
	snprintf(d.media_type, sizeof(d.media_type), "application/vnd.oci.image.index.v1+json");
	const struct {
		const char *want;
		char digit; /* 0: none fits */
	} cases[] = {
	    {"linux/arm", '3'},        {"linux/arm/v7", '3'},   {"linux/arm/v6", '2'},
	    {"linux/arm/v8", '3'},     {"linux/amd64", '5'}, /* the plain one, though v3 is first */
	    {"linux/x86_64/v3", '4'},  {"linux/amd64/v2", '5'}, {"linux/arm64", '6'},
	    {"linux/aarch64/v8", '6'}, {"linux/arm/v5", 0},     {"windows/amd64", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = select_digest(&d, cases[i].want, &err);
		if (!cases[i].digit) {
			if (got)
				fail_msg("%s: picked %s, want none", cases[i].want, got);
			continue;
		}
		if (!got || got[7] != cases[i].digit)
			fail_msg("%s: picked %s, want entry %c (%s)", cases[i].want,
				 got ? got : "none", cases[i].digit, err.msg);
	}
	assert_null(select_digest(&d, "linux/arm/v5", &err));
	assert_non_null(strstr(err.msg, "linux/arm/v5"));
	assert_non_null(strstr(err.msg, "linux/arm/v6, linux/arm/v7"));
	json_decref(d.json);
}

/* ---- documents --------------------------------------------------------------- */

static int parse(const char *text, const char *hint, struct conv_doc *d, struct rs_error *err)
{
	memset(d, 0, sizeof(*d));
	rs_buf_append(&d->raw, text, strlen(text));
	return conv_doc_parse(d, hint, "m", err);
}

static void test_doc_parse(void **state)
{
	(void)state;
	struct rs_error err = {0};
	struct conv_doc d;
	assert_int_equal(parse("{\"schemaVersion\":2,\"manifests\":[]}", NULL, &d, &err), 0);
	assert_string_equal(d.media_type, REG_MT_OCI_INDEX);
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":2,\"config\":{},\"layers\":[]}", NULL, &d, &err),
			 0);
	assert_string_equal(d.media_type, REG_MT_OCI_MANIFEST);
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":2,\"config\":{},\"layers\":[]}",
			       REG_MT_DOCKER_MANIFEST, &d, &err),
			 0);
	assert_string_equal(d.media_type, REG_MT_DOCKER_MANIFEST);
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":1,\"config\":{},\"layers\":[]}", NULL, &d, &err),
			 -ENOTSUP);
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":2,\"mediaType\":\"text/html\"}", NULL, &d, &err),
			 -ENOTSUP);
	assert_non_null(strstr(err.msg, "text/html"));
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":2,\"layers\":{},\"config\":{}}", NULL, &d, &err),
			 -EINVAL);
	conv_doc_free(&d);
	assert_int_equal(parse("{\"schemaVersion\":2,\"layers\":[]}", NULL, &d, &err), -EINVAL);
	conv_doc_free(&d);
	assert_int_equal(
	    parse("{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}", NULL, &d, &err),
	    -EINVAL);
	conv_doc_free(&d);
	assert_int_equal(parse("<html>", NULL, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not valid JSON"));
	conv_doc_free(&d);

	json_t *desc = json_pack("{s:s,s:s,s:I}", "mediaType", REG_MT_OCI_LAYER, "digest",
				 "sha256:../../etc/passwd", "size", (json_int_t)1);
	assert_int_equal(conv_desc_get(desc, NULL, NULL, NULL, "l", &err), -EINVAL);
	json_object_set_new(
	    desc, "digest",
	    json_string("sha256:"
			"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	json_object_set_new(desc, "size", json_integer(-1));
	assert_int_equal(conv_desc_get(desc, NULL, NULL, NULL, "l", &err), -EINVAL);
	json_object_set_new(desc, "size", json_integer(5));
	int64_t size;
	assert_int_equal(conv_desc_get(desc, NULL, NULL, &size, "l", &err), 0);
	assert_int_equal(size, 5);
	assert_null(conv_desc_annotation(desc, "k"));
	assert_int_equal(conv_desc_set_annotation(desc, "k", "v"), 0);
	assert_string_equal(conv_desc_annotation(desc, "k"), "v");
	conv_desc_del_annotation(desc, "k");
	assert_null(conv_desc_annotation(desc, "k"));
	json_decref(desc);
}

/* ---- uncompressed sizes -------------------------------------------------------- */

static int tmp_with(const void *data, size_t len)
{
	int fd;
	struct rs_error err = {0};
	assert_int_equal(conv_tmpfile(&fd, &err), 0);
	assert_int_equal(conv_write_all(fd, data, len, &err), 0);
	return fd;
}

static size_t gz(const void *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z = {0};
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	return n;
}

static void test_uncompressed(void **state)
{
	(void)state;
	enum { N = 3 << 20 };
	uint8_t *plain = malloc(N);
	uint8_t *comp = malloc(2 * N);
	assert_non_null(plain);
	assert_non_null(comp);
	for (size_t i = 0; i < N; i++)
		plain[i] = (uint8_t)(i * 7 + i / 4096);
	uint8_t sum[RS_SHA256_LEN];
	char want[RS_DIGEST_STR_LEN], got[RS_DIGEST_STR_LEN];
	rs_sha256(plain, N, sum);
	rs_digest_format(sum, want);
	struct rs_error err = {0};
	int64_t size;

	/* two gzip members */
	size_t a = gz(plain, N / 3, comp, 2 * N);
	size_t b = gz(plain + N / 3, N - N / 3, comp + a, 2 * N - a);
	int fd = tmp_with(comp, a + b);
	assert_ok(conv_uncompressed(fd, &size, got, &err), &err);
	assert_int_equal(size, N);
	assert_string_equal(got, want);
	close(fd);
	/* truncated */
	fd = tmp_with(comp, a + b / 2);
	assert_true(conv_uncompressed(fd, &size, got, &err) < 0);
	assert_non_null(strstr(err.msg, "gzip"));
	close(fd);

	/* gzip padded with zeros (libarchive pads its last block) */
	memset(comp + a + b, 0, 10000);
	fd = tmp_with(comp, a + b + 10000);
	assert_ok(conv_uncompressed(fd, &size, got, &err), &err);
	assert_int_equal(size, N);
	close(fd);
	comp[a + b + 5000] = 1;
	fd = tmp_with(comp, a + b + 10000);
	assert_true(conv_uncompressed(fd, &size, got, &err) < 0);
	assert_non_null(strstr(err.msg, "trailing garbage"));
	close(fd);

	/* two zstd frames, ending on output buffer boundaries */
	size_t za = ZSTD_compress(comp, 2 * N, plain, N / 3, 3);
	assert_false(ZSTD_isError(za));
	size_t zb = ZSTD_compress(comp + za, 2 * N - za, plain + N / 3, N - N / 3, 3);
	assert_false(ZSTD_isError(zb));
	fd = tmp_with(comp, za + zb);
	assert_ok(conv_uncompressed(fd, &size, got, &err), &err);
	assert_int_equal(size, N);
	assert_string_equal(got, want);
	close(fd);
	fd = tmp_with(comp, za + zb - 10);
	assert_true(conv_uncompressed(fd, &size, got, &err) < 0);
	close(fd);

	/* plain */
	fd = tmp_with(plain, N);
	assert_ok(conv_uncompressed(fd, &size, got, &err), &err);
	assert_int_equal(size, N);
	assert_string_equal(got, want);
	close(fd);
	free(plain);
	free(comp);
}

/* ---- layouts made here ------------------------------------------------------------ */

static char tmpdir[64];

static la_ssize_t buf_write(struct archive *a, void *ctx, const void *p, size_t n)
{
	(void)a;
	return rs_buf_append(ctx, p, n) == 0 ? (la_ssize_t)n : -1;
}

/* A gzip tar with a directory and a file of len bytes. */
static void make_tar(struct rs_buf *out, const char *name, size_t len)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	assert_int_equal(archive_write_open(a, out, NULL, buf_write, NULL), ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "d");
	archive_entry_set_filetype(e, AE_IFDIR);
	archive_entry_set_perm(e, 0755);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)len);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	char *data = malloc(len + 1);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + i % 23);
	assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
	free(data);
	archive_entry_free(e);
	archive_write_close(a);
	archive_write_free(a);
}

static void digest_of(const void *p, size_t n, char out[RS_DIGEST_STR_LEN])
{
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(p, n, sum);
	rs_digest_format(sum, out);
}

static void put_blob(const char *dir, const void *p, size_t n, char digest[RS_DIGEST_STR_LEN])
{
	digest_of(p, n, digest);
	char path[512];
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest + 7);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void put_json(const char *dir, json_t *j, char digest[RS_DIGEST_STR_LEN], size_t *len)
{
	char *s = json_dumps(j, JSON_COMPACT);
	*len = strlen(s);
	put_blob(dir, s, *len, digest);
	free(s);
}

/* An OCI layout at dir with one image tagged tag: two gzip layers. */
static void make_layout(const char *dir, const char *tag)
{
	char path[512];
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/blobs", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/blobs/sha256", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/oci-layout", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"imageLayoutVersion\":\"1.0.0\"}", f);
	fclose(f);

	json_t *layers = json_array(), *ids = json_array();
	for (int i = 0; i < 2; i++) {
		struct rs_buf t = {0};
		make_tar(&t, i ? "d/b.txt" : "d/a.txt", i ? 200000 : 10);
		char dg[RS_DIGEST_STR_LEN], id[RS_DIGEST_STR_LEN];
		put_blob(dir, t.data, t.len, dg);
		json_array_append_new(layers,
				      json_pack("{s:s,s:s,s:I}", "mediaType", REG_MT_OCI_LAYER_GZIP,
						"digest", dg, "size", (json_int_t)t.len));
		/* diffID: the tar inside */
		int fd = tmp_with(t.data, t.len);
		int64_t usize;
		struct rs_error err = {0};
		assert_ok(conv_uncompressed(fd, &usize, id, &err), &err);
		close(fd);
		json_array_append_new(ids, json_string(id));
		rs_buf_free(&t);
	}
	json_t *cfg =
	    json_pack("{s:s,s:s,s:{s:[s]},s:{s:s,s:o}}", "architecture", "amd64", "os", "linux",
		      "config", "Cmd", "/bin/sh", "rootfs", "type", "layers", "diff_ids", ids);
	char cdg[RS_DIGEST_STR_LEN], mdg[RS_DIGEST_STR_LEN];
	size_t clen, mlen;
	put_json(dir, cfg, cdg, &clen);
	json_t *man =
	    json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o,s:{s:s}}", "schemaVersion", 2, "mediaType",
		      REG_MT_OCI_MANIFEST, "config", "mediaType", REG_MT_OCI_CONFIG, "digest", cdg,
		      "size", (json_int_t)clen, "layers", layers, "annotations", "keep", "me");
	put_json(dir, man, mdg, &mlen);
	json_t *idx = json_pack("{s:i,s:[{s:s,s:s,s:I,s:{s:s}}]}", "schemaVersion", 2, "manifests",
				"mediaType", REG_MT_OCI_MANIFEST, "digest", mdg, "size",
				(json_int_t)mlen, "annotations", CONV_ANNOTATION_REF_NAME, tag);
	snprintf(path, sizeof(path), "%s/index.json", dir);
	assert_int_equal(json_dump_file(idx, path, JSON_COMPACT), 0);
	json_decref(cfg);
	json_decref(man);
	json_decref(idx);
}

static json_t *load_blob(const char *dir, const char *digest)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest + 7);
	json_t *j = json_load_file(path, 0, NULL);
	assert_non_null(j);
	return j;
}

static const char *tagged(json_t *idx, const char *tag)
{
	size_t i;
	json_t *e;
	const char *found = NULL;
	json_array_foreach(json_object_get(idx, "manifests"), i, e)
	{
		const char *t = conv_desc_annotation(e, CONV_ANNOTATION_REF_NAME);
		if (t && strcmp(t, tag) == 0) {
			assert_null(found);
			found = json_string_value(json_object_get(e, "digest"));
		}
	}
	return found;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-convert.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int events;
static void on_event(void *ctx, const struct conv_event *ev)
{
	(void)ctx;
	if (ev->kind == CONV_EV_LAYER_DONE)
		events++;
}

static void test_convert_layouts(void **state)
{
	(void)state;
	char src[128], dst[128], spec_src[160], spec_dst[160], spec_dst2[160], path[256];
	snprintf(src, sizeof(src), "%s/src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/dst", tmpdir);
	make_layout(src, "v1");
	snprintf(spec_src, sizeof(spec_src), "oci:%s:v1", src);
	snprintf(spec_dst, sizeof(spec_dst), "oci:%s:v1", dst);
	snprintf(spec_dst2, sizeof(spec_dst2), "oci:%s:v2", dst);

	struct conv_options o = {.chunk_size = 65536};
	struct conv_progress pr = {.fn = on_event};
	struct conv_result res;
	struct rs_error err = {0};
	assert_ok(conv_convert(spec_src, spec_dst, &o, &pr, &res, &err), &err);
	assert_int_equal(res.converted, 2);
	assert_int_equal(res.kept, 0);
	assert_int_equal(res.images, 1);
	assert_int_equal(events, 2);

	snprintf(path, sizeof(path), "%s/index.json", dst);
	json_t *idx = json_load_file(path, 0, NULL);
	assert_non_null(idx);
	assert_string_equal(tagged(idx, "v1"), res.digest);
	json_t *man = load_blob(dst, res.digest);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(man, "annotations"), "keep")), "me");
	json_t *cfg = load_blob(
	    dst, json_string_value(json_object_get(json_object_get(man, "config"), "digest")));
	json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	assert_int_equal(json_array_size(ids), 2);
	assert_string_equal(json_string_value(json_object_get(cfg, "architecture")), "amd64");
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(man, "layers"), i, l)
	{
		const char *dg = json_string_value(json_object_get(l, "digest"));
		const char *toc = conv_desc_annotation(l, ESGZ_ANNOTATION_TOC_DIGEST);
		assert_non_null(toc);
		assert_non_null(conv_desc_annotation(l, ESGZ_ANNOTATION_UNCOMPRESSED_SIZE));
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dst, dg + 7);
		struct esgz_reader r;
		struct esgz_blob *b = NULL;
		struct esgz_open_opts oo = {.expected_toc_digest = toc};
		assert_int_equal(esgz_reader_open_file(&r, path, &err), 0);
		assert_int_equal(esgz_open(&r, &oo, &b, &err), 0);
		/* the TOC position annotation is the footer's */
		const char *off = conv_desc_annotation(l, ESGZ_ANNOTATION_TOC_OFFSET);
		assert_non_null(off);
		assert_int_equal(strtoll(off, NULL, 10), b->footer.toc_offset);
		struct esgz_verify_stats st;
		assert_int_equal(esgz_verify(b, &r, &st, &err), 0);
		esgz_blob_free(b);
		esgz_reader_close(&r);
		/* diff_id is the uncompressed blob's sha256 */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		int64_t usize;
		char id[RS_DIGEST_STR_LEN];
		assert_ok(conv_uncompressed(fd, &usize, id, &err), &err);
		close(fd);
		assert_string_equal(id, json_string_value(json_array_get(ids, i)));
	}
	char first[RS_DIGEST_STR_LEN];
	snprintf(first, sizeof(first), "%s", res.digest);
	json_decref(cfg);
	json_decref(man);
	json_decref(idx);

	/* again, from the result: every layer kept, the same manifest */
	assert_ok(conv_convert(spec_dst, spec_dst2, &o, NULL, &res, &err), &err);
	assert_int_equal(res.converted, 0);
	assert_int_equal(res.kept, 2);
	assert_string_equal(res.digest, first);
	snprintf(path, sizeof(path), "%s/index.json", dst);
	idx = json_load_file(path, 0, NULL);
	assert_string_equal(tagged(idx, "v1"), first);
	assert_string_equal(tagged(idx, "v2"), first);
	json_decref(idx);

	/* inspect */
	char *text = NULL;
	size_t tlen = 0;
	FILE *mf = open_memstream(&text, &tlen);
	struct conv_inspect_options io = {0};
	assert_ok(conv_inspect(spec_dst, &io, mf, &err), &err);
	fclose(mf);
	json_t *rep = json_loads(text, 0, NULL);
	assert_non_null(rep);
	json_array_foreach(json_object_get(rep, "layers"), i, l)
	{
		assert_string_equal(json_string_value(json_object_get(l, "format")), "estargz");
		assert_true(json_is_true(json_object_get(l, "tocDigestMatches")));
	}
	assert_int_equal(json_array_size(json_object_get(rep, "layers")), 2);
	json_decref(rep);
	free(text);
}

static void test_convert_errors(void **state)
{
	(void)state;
	char src[128], spec[192], dst[192];
	snprintf(src, sizeof(src), "%s/bad", tmpdir);
	make_layout(src, "v1");
	snprintf(dst, sizeof(dst), "oci:%s/bad-dst:v1", tmpdir);
	struct rs_error err = {0};

	snprintf(spec, sizeof(spec), "oci:%s:v9", src);
	assert_int_equal(conv_convert(spec, dst, NULL, NULL, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "tags: v1"));

	snprintf(spec, sizeof(spec), "oci:%s/none:v1", tmpdir);
	assert_true(conv_convert(spec, dst, NULL, NULL, NULL, &err) < 0);

	struct conv_options o = {.platform = "linux"};
	snprintf(spec, sizeof(spec), "oci:%s:v1", src);
	assert_int_equal(conv_convert(spec, dst, &o, NULL, NULL, &err), -EINVAL);

	/* a layer whose bytes do not match its digest */
	char path[512];
	snprintf(path, sizeof(path), "%s/index.json", src);
	json_t *idx = json_load_file(path, 0, NULL);
	json_t *man = load_blob(src, tagged(idx, "v1"));
	const char *l0 = json_string_value(
	    json_object_get(json_array_get(json_object_get(man, "layers"), 1), "digest"));
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", src, l0 + 7);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_int_equal(pwrite(fd, "x", 1, 40), 1);
	close(fd);
	assert_int_equal(conv_convert(spec, dst, NULL, NULL, NULL, &err), ESGZ_EDIGEST);
	assert_non_null(strstr(err.msg, l0));
	json_decref(man);
	json_decref(idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_spec),
	    cmocka_unit_test(test_platform),
	    cmocka_unit_test(test_index_select),
	    cmocka_unit_test(test_doc_parse),
	    cmocka_unit_test(test_uncompressed),
	    cmocka_unit_test_setup_teardown(test_convert_layouts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_convert_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
