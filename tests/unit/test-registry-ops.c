// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the registry operations' pure parts: manifests and indexes,
 * image configs' diff_ids, platform choice, multipart/byteranges replies, upload URLs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "registry/ops_internal.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static int parse(const char *json, const char *hint, struct reg_manifest *m, struct rs_error *err)
{
	return reg_manifest_parse(json, strlen(json), hint, m, err);
}

static void expect_parse_error(const char *json, const char *hint, const char *needle)
{
	struct reg_manifest m;
	struct rs_error err = {0};
	int r = parse(json, hint, &m, &err);
	if (r >= 0 || !strstr(err.msg, needle))
		fail_msg("%s: expected error with '%s', got %d '%s'", json, needle, r, err.msg);
	reg_manifest_free(&m);
}

/* ---- manifests ------------------------------------------------------------- */

static void test_oci_manifest(void **state)
{
	(void)state;
	const char *j =
	    "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_MANIFEST "\","
	    "\"config\":{\"mediaType\":\"" REG_MT_OCI_CONFIG "\",\"digest\":\"" D1 "\","
	    "\"size\":123},"
	    "\"layers\":[{\"mediaType\":\"" REG_MT_OCI_LAYER_GZIP "\",\"digest\":\"" D2
	    "\",\"size\":4567,\"annotations\":{\"containerd.io/snapshot/stargz/"
	    "toc.digest\":\"" D3 "\"}},"
	    "{\"mediaType\":\"" REG_MT_OCI_LAYER_GZIP "\",\"digest\":\"" D3 "\",\"size\":0}],"
	    "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}";
	struct reg_manifest m;
	struct rs_error err = {0};
	assert_int_equal(parse(j, NULL, &m, &err), 0);
	assert_string_equal(m.media_type, REG_MT_OCI_MANIFEST);
	assert_string_equal(m.config.digest, D1);
	assert_int_equal(m.config.size, 123);
	assert_int_equal(m.n_layers, 2);
	assert_string_equal(m.layers[0].digest, D2);
	assert_int_equal(m.layers[0].size, 4567);
	assert_string_equal(
	    reg_descriptor_annotation(&m.layers[0], "containerd.io/snapshot/stargz/toc.digest"),
	    D3);
	assert_null(reg_descriptor_annotation(&m.layers[1], "x"));
	assert_int_equal(m.n_annotations, 1);
	assert_string_equal(m.annotations[0].value, "v1");
	assert_int_equal(m.raw.len, strlen(j));
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN];
	rs_sha256(j, strlen(j), sum);
	rs_digest_format(sum, dg);
	assert_string_equal(m.digest, dg);
	assert_int_equal(m.n_manifests, 0);
	reg_manifest_free(&m);
}

static void test_docker_manifest_hint(void **state)
{
	(void)state;
	/* No mediaType in the body: the Content-Type (with parameters) decides. */
	const char *j = "{\"schemaVersion\":2,"
			"\"config\":{\"mediaType\":\"" REG_MT_DOCKER_CONFIG "\",\"digest\":\"" D1
			"\",\"size\":1},"
			"\"layers\":[{\"mediaType\":\"" REG_MT_DOCKER_LAYER_GZIP
			"\",\"digest\":\"" D2 "\",\"size\":2}]}";
	struct reg_manifest m;
	struct rs_error err = {0};
	assert_int_equal(parse(j, REG_MT_DOCKER_MANIFEST "; charset=utf-8", &m, &err), 0);
	assert_string_equal(m.media_type, REG_MT_DOCKER_MANIFEST);
	assert_int_equal(m.n_layers, 1);
	reg_manifest_free(&m);
	/* Neither: shape decides (OCI). */
	assert_int_equal(parse(j, "application/json", &m, &err), 0);
	assert_string_equal(m.media_type, REG_MT_OCI_MANIFEST);
	reg_manifest_free(&m);
}

static const char *index_json =
    "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":10,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":11,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":12,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":13,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":14,"
    "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]}";

static void test_index(void **state)
{
	(void)state;
	struct reg_manifest m;
	struct rs_error err = {0};
	assert_int_equal(parse(index_json, NULL, &m, &err), 0);
	assert_string_equal(m.media_type, REG_MT_OCI_INDEX);
	assert_int_equal(m.n_manifests, 5);
	assert_string_equal(m.manifests[2].arch, "arm");
	assert_string_equal(m.manifests[2].variant, "v7");
	assert_null(m.manifests[0].variant);
	assert_int_equal(m.manifests[4].size, 14);
	reg_manifest_free(&m);

	const char *list = "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_DOCKER_LIST
			   "\",\"manifests\":[{\"mediaType\":\"" REG_MT_DOCKER_MANIFEST
			   "\",\"digest\":\"" D1 "\",\"size\":5,\"platform\":{\"os\":\"linux\","
			   "\"architecture\":\"s390x\"}}]}";
	assert_int_equal(parse(list, NULL, &m, &err), 0);
	assert_string_equal(m.media_type, REG_MT_DOCKER_LIST);
	assert_string_equal(m.manifests[0].arch, "s390x");
	reg_manifest_free(&m);
}

static void test_manifest_errors(void **state)
{
	(void)state;
	expect_parse_error("{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\"}", NULL,
			   "unsupported media type application/x-foo");
	expect_parse_error("{\"schemaVersion\":2,\"config\":{}}", "application/vnd.foo+json",
			   "unsupported media type application/vnd.foo+json");
	expect_parse_error("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", NULL,
			   "schema 1");
	expect_parse_error("{\"name\":\"x\"}",
			   "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1");
	expect_parse_error("{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
			   "\"a\",\"digest\":\"sha256:abc\",\"size\":1},\"layers\":[]}",
			   NULL, "bad digest");
	expect_parse_error("{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
			   "\"a\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{\"mediaType\":"
			   "\"b\",\"digest\":\"" D2 "\",\"size\":-5}]}",
			   NULL, "size missing or negative");
	expect_parse_error("{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
			   "\"a\",\"digest\":\"SHA256:" D1 "\",\"size\":1},\"layers\":[]}",
			   NULL, "bad digest");
	expect_parse_error("{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
			   "\"a\",\"digest\":\"" D1 "\",\"size\":1}}",
			   NULL, "\"layers\"");
	expect_parse_error("  <!DOCTYPE html><html><body>Login</body></html>", "text/html", "HTML");
	expect_parse_error("not json at all", NULL, "not valid JSON");
	expect_parse_error("[1,2]", NULL, "not a JSON object");
	expect_parse_error("{\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":[{\"mediaType\":"
			   "\"a\",\"digest\":\"" D1 "\",\"size\":1,\"annotations\":{\"k\":3}}]}",
			   NULL, "annotation \"k\" is not a string");
}

/* ---- platforms ------------------------------------------------------------- */

static int pick(const char *os, const char *arch, const char *variant, struct rs_error *err)
{
	struct reg_manifest m;
	struct reg_platform p = {os, arch, variant};
	size_t i = 99;
	assert_int_equal(parse(index_json, NULL, &m, err), 0);
	int r = reg_platform_pick(&m, &p, &i, err);
	reg_manifest_free(&m);
	return r < 0 ? r : (int)i;
}

static void test_platform_pick(void **state)
{
	(void)state;
	struct rs_error err = {0};
	assert_int_equal(pick(NULL, "amd64", NULL, &err), 0);
	assert_int_equal(pick("linux", "x86_64", NULL, &err), 0);
	assert_int_equal(pick("linux", "arm", "v7", &err), 2);
	assert_int_equal(pick("linux", "arm", "v6", &err), 1);
	/* arm with no variant is arm/v7, as containerd normalises it */
	assert_int_equal(pick("linux", "arm", NULL, &err), 2);
	assert_int_equal(pick("linux", "arm", "", &err), 2);
	assert_int_equal(pick("linux", "arm64", NULL, &err), 3);
	assert_int_equal(pick("linux", "arm64", "v8", &err), 3);
	assert_int_equal(pick("linux", "aarch64", "v8", &err), 3);
	assert_int_equal(pick("linux", "arm64", "v9", &err), -ENOENT);
	/* arm v8 runs v7 images (the closest older), arm v5 runs neither */
	assert_int_equal(pick("linux", "arm", "v8", &err), 2);
	assert_int_equal(pick("linux", "arm", "v5", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "linux/arm/v5"));
	/* amd64 v3 runs the plain (v1) image; amd64/v1 is the plain one */
	assert_int_equal(pick("linux", "amd64", "v3", &err), 0);
	assert_int_equal(pick("linux", "amd64", "v1", &err), 0);
	assert_int_equal(pick("linux", "ppc64le", NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "linux/ppc64le"));
	assert_non_null(strstr(err.msg, "linux/arm/v7"));
	assert_int_equal(pick("windows", "amd64", NULL, &err), -ENOENT);
	/* An entry without a platform fits any, after those that name it. */
	const char *j =
	    "{\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":["
	    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1},"
	    "{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"riscv64\"}}]}";
	struct reg_manifest m;
	struct reg_platform rv = {"linux", "riscv64", NULL}, s390 = {"linux", "s390x", NULL};
	size_t i;
	assert_int_equal(parse(j, NULL, &m, &err), 0);
	assert_int_equal(reg_platform_pick(&m, &rv, &i, &err), 0);
	assert_int_equal(i, 1);
	assert_int_equal(reg_platform_pick(&m, &s390, &i, &err), 0);
	assert_int_equal(i, 0);
	reg_manifest_free(&m);
	/* The host default is a GOARCH name. */
	const char *h = reg_host_arch();
	assert_true(strcmp(h, "x86_64") != 0 && strcmp(h, "aarch64") != 0);
}

static void test_platform_rank(void **state)
{
	(void)state;
	struct reg_platform arm64 = {"linux", "arm64", NULL}, arm64v8 = {"linux", "arm64", "v8"};
	struct reg_platform arm7 = {"linux", "arm", "v7"}, arm6 = {"linux", "arm", "v6"};
	struct reg_platform amd = {"linux", "amd64", NULL}, amd2 = {"linux", "amd64", "v2"};
	/* arm64: v8 and none are the same variant, both ways */
	assert_int_equal(reg_platform_rank(&arm64, "linux", "arm64", "v8"),
			 reg_platform_rank(&arm64, "linux", "arm64", NULL));
	assert_int_equal(reg_platform_rank(&arm64v8, "linux", "arm64", NULL),
			 reg_platform_rank(&arm64v8, "linux", "aarch64", "v8"));
	assert_true(reg_platform_rank(&arm64v8, "linux", "arm64", NULL) > 0);
	assert_int_equal(reg_platform_rank(&arm64v8, "linux", "arm64", "v9"), 0);
	/* no variant wanted: any, the default first */
	assert_true(reg_platform_rank(&arm64, "linux", "arm64", "v9") > 0);
	assert_true(reg_platform_rank(&arm64, "linux", "arm64", NULL) >
		    reg_platform_rank(&arm64, "linux", "arm64", "v9"));
	/* arm v7 runs v6 and v5 images, the closer first; v6 does not run v7 */
	assert_true(reg_platform_rank(&arm7, "linux", "arm", "v7") >
		    reg_platform_rank(&arm7, "linux", "arm", "v6"));
	assert_true(reg_platform_rank(&arm7, "linux", "arm", "v6") >
		    reg_platform_rank(&arm7, "linux", "arm", "v5"));
	assert_true(reg_platform_rank(&arm7, "linux", "arm", "v5") > 0);
	assert_int_equal(reg_platform_rank(&arm6, "linux", "arm", "v7"), 0);
	/* an arm entry without a variant is v7 */
	assert_true(reg_platform_rank(&arm7, "linux", "arm", NULL) ==
		    reg_platform_rank(&arm7, "linux", "arm", "v7"));
	assert_int_equal(reg_platform_rank(&arm6, "linux", "arm", NULL), 0);
	/* amd64 with no variant: every amd64 image, the plain one first */
	assert_true(reg_platform_rank(&amd, "linux", "amd64", NULL) >
		    reg_platform_rank(&amd, "linux", "amd64", "v3"));
	assert_true(reg_platform_rank(&amd, "linux", "x86_64", NULL) > 0);
	assert_true(reg_platform_rank(&amd2, "linux", "amd64", "v2") >
		    reg_platform_rank(&amd2, "linux", "amd64", NULL));
	assert_true(reg_platform_rank(&amd2, "linux", "amd64", "v1") > 0);
	assert_int_equal(reg_platform_rank(&amd2, "linux", "amd64", "v3"), 0);
	/* os and arch must both fit; an entry that names neither fits nothing here */
	assert_int_equal(reg_platform_rank(&amd, "windows", "amd64", NULL), 0);
	assert_int_equal(reg_platform_rank(&amd, "linux", "arm64", NULL), 0);
	assert_int_equal(reg_platform_rank(&amd, NULL, NULL, NULL), 0);
	/* the host default: linux and this machine's GOARCH name */
	assert_true(reg_platform_rank(NULL, "linux", reg_host_arch(), NULL) > 0);
	char s[64];
	reg_platform_format(&arm7, s, sizeof(s));
	assert_string_equal(s, "linux/arm/v7");
	struct reg_platform x86 = {"linux", "x86_64", NULL};
	reg_platform_format(&x86, s, sizeof(s));
	assert_string_equal(s, "linux/amd64");
}

static void test_platform_parse(void **state)
{
	(void)state;
	struct reg_platform p;
	char *st = NULL;
	struct rs_error err = {0};
	assert_int_equal(reg_platform_parse("linux/arm/v7", &p, &st, &err), 0);
	assert_string_equal(p.os, "linux");
	assert_string_equal(p.arch, "arm");
	assert_string_equal(p.variant, "v7");
	free(st);
	assert_int_equal(reg_platform_parse("linux/x86_64", &p, &st, &err), 0);
	assert_string_equal(p.arch, "amd64");
	assert_null(p.variant);
	free(st);
	assert_int_equal(reg_platform_parse("linux", &p, &st, &err), -EINVAL);
	assert_int_equal(reg_platform_parse("linux//v7", &p, &st, &err), -EINVAL);
	assert_int_equal(reg_platform_parse("a/b/c/d", &p, &st, &err), -EINVAL);
	assert_int_equal(reg_platform_parse("linux/am d64", &p, &st, &err), -EINVAL);
	assert_int_equal(reg_platform_parse("/amd64", &p, &st, &err), -EINVAL);
	assert_int_equal(reg_platform_parse("linux/", &p, &st, &err), -EINVAL);
	assert_null(st);
}

/* ---- ranges ------------------------------------------------------------------ */

static void test_content_range(void **state)
{
	(void)state;
	int64_t a, b, t;
	assert_int_equal(reg_content_range_parse("bytes 0-9/100", &a, &b, &t), 0);
	assert_true(a == 0 && b == 9 && t == 100);
	assert_int_equal(reg_content_range_parse(" bytes 5-5/*\r\n", &a, &b, &t), 0);
	assert_true(a == 5 && b == 5 && t == -1);
	assert_int_equal(reg_content_range_parse("bytes 9-5/100", &a, &b, &t), -EINVAL);
	assert_int_equal(reg_content_range_parse("bytes 0-100/100", &a, &b, &t), -EINVAL);
	assert_int_equal(reg_content_range_parse("bytes */100", &a, &b, &t), -EINVAL);
	assert_int_equal(reg_content_range_parse("0-9/100", &a, &b, &t), -EINVAL);
	assert_int_equal(reg_content_range_parse("bytes 0-99999999999999999999/*", &a, &b, &t),
			 -EINVAL);
}

static void test_boundary(void **state)
{
	(void)state;
	char b[256];
	assert_int_equal(
	    reg_multipart_boundary("multipart/byteranges; boundary=3d6b6a416f9b5", b, sizeof(b)),
	    0);
	assert_string_equal(b, "3d6b6a416f9b5");
	assert_int_equal(reg_multipart_boundary("Multipart/ByteRanges;charset=x; "
						"BOUNDARY=\"a b;c\"",
						b, sizeof(b)),
			 0);
	assert_string_equal(b, "a b;c");
	assert_int_equal(reg_multipart_boundary("multipart/byteranges", b, sizeof(b)), -EINVAL);
	assert_int_equal(reg_multipart_boundary("text/plain; boundary=x", b, sizeof(b)), -EINVAL);
	assert_int_equal(reg_multipart_boundary("multipart/byteranges; boundary=\"x", b, sizeof(b)),
			 -EINVAL);
}

#define CT "multipart/byteranges; boundary=BND"
static const char mp_body[] = "preamble\r\n"
			      "--BND\r\n"
			      "Content-Type: application/octet-stream\r\n"
			      "Content-Range: bytes 0-4/100\r\n"
			      "\r\n"
			      "hello\r\n"
			      "--BND\r\n"
			      "content-range: bytes 50-55/100\r\n"
			      "\r\n"
			      "\r\n--BN\r\n"
			      "--BND--\r\n";

static void test_multipart(void **state)
{
	(void)state;
	struct reg_part *parts;
	size_t n;
	struct rs_error err = {0};
	assert_int_equal(reg_multipart_parse(CT, mp_body, strlen(mp_body), &parts, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(parts[0].first, 0);
	assert_int_equal(parts[0].last, 4);
	assert_memory_equal(parts[0].data, "hello", 5);
	assert_int_equal(parts[1].first, 50);
	assert_int_equal(parts[1].len, 6);
	assert_memory_equal(parts[1].data, "\r\n--BN", 6);
	free(parts);

	/* LF-only line ends, no preamble, no trailing CRLF after the close. */
	const char *lf = "--BND\nContent-Range: bytes 1-3/*\n\nabc\n--BND--";
	assert_int_equal(reg_multipart_parse(CT, lf, strlen(lf), &parts, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(parts[0].data, "abc", 3);
	free(parts);
}

static void expect_mp_error(const char *ct, const char *body, size_t len, const char *needle)
{
	struct reg_part *parts = (void *)1;
	size_t n = 7;
	struct rs_error err = {0};
	if (len == SIZE_MAX)
		len = strlen(body);
	int r = reg_multipart_parse(ct, body, len, &parts, &n, &err);
	if (r != -EBADMSG || !strstr(err.msg, needle))
		fail_msg("expected '%s', got %d '%s'", needle, r, err.msg);
	assert_null(parts);
	assert_int_equal(n, 0);
}

static void test_multipart_errors(void **state)
{
	(void)state;
	size_t full = strlen(mp_body);
	/* Cut anywhere inside the parts: truncated, never a short part. */
	for (size_t cut = 12; cut < full - 9; cut++)
		expect_mp_error(CT, mp_body, cut, "multipart");
	expect_mp_error(CT, mp_body, full - 9, "no boundary after part 2");
	expect_mp_error("multipart/byteranges", mp_body, full, "boundary");
	expect_mp_error(CT, "no delimiter here", SIZE_MAX, "no boundary line");
	expect_mp_error(CT, "--BND\r\nContent-Type: x\r\n\r\nabc\r\n--BND--\r\n", SIZE_MAX,
			"without Content-Range");
	expect_mp_error(CT, "--BND\r\nContent-Range: bytes 5-1/9\r\n\r\n\r\n--BND--", SIZE_MAX,
			"bad Content-Range");
	expect_mp_error(CT, "--BND--\r\n", SIZE_MAX, "no parts");
	/* A part longer than it says. */
	expect_mp_error(CT, "--BND\r\nContent-Range: bytes 0-1/9\r\n\r\nabc\r\n--BND--", SIZE_MAX,
			"no boundary after part 1");
}

static void test_spans(void **state)
{
	(void)state;
	uint8_t b[5][32];
	memset(b, 0xee, sizeof(b));
	struct reg_range r[5] = {
	    {10, 20, b[0]}, {0, 10, b[1]}, {5, 3, b[2]}, {100, 5, b[3]}, {50, 0, b[4]},
	};
	struct reg_span *s;
	size_t ns;
	struct rs_error err = {0};
	assert_int_equal(reg_spans_make(r, 5, &s, &ns, &err), 0);
	assert_int_equal(ns, 2);
	assert_true(s[0].off == 0 && s[0].end == 30);
	assert_true(s[1].off == 100 && s[1].end == 105);
	/* The reply splits span 0 over two parts; span 1 sits inside a bigger part. */
	uint8_t blob[200];
	for (int i = 0; i < 200; i++)
		blob[i] = (uint8_t)i;
	struct reg_part parts[3] = {
	    {15, 29, blob + 15, 15}, {0, 14, blob, 15}, {90, 149, blob + 90, 60}};
	assert_true(reg_spans_fill(&s[0], parts, 3, r, 5));
	assert_true(reg_spans_fill(&s[1], parts, 3, r, 5));
	assert_memory_equal(b[0], blob + 10, 20);
	assert_memory_equal(b[1], blob, 10);
	assert_memory_equal(b[2], blob + 5, 3);
	assert_memory_equal(b[3], blob + 100, 5);
	assert_int_equal(b[4][0], 0xee);
	/* A missing byte is noticed. */
	assert_false(reg_spans_fill(&s[0], parts, 1, r, 5));
	assert_false(reg_spans_fill(&s[1], parts, 2, r, 5));
	free(s);

	struct reg_range bad[1] = {{INT64_MAX - 2, 10, b[0]}};
	assert_int_equal(reg_spans_make(bad, 1, &s, &ns, &err), -EINVAL);
	bad[0].off = -1;
	assert_int_equal(reg_spans_make(bad, 1, &s, &ns, &err), -EINVAL);
	assert_int_equal(reg_spans_make(bad, 0, &s, &ns, &err), 0);
	assert_int_equal(ns, 0);
	free(s);
}

/* ---- image configs ------------------------------------------------------------- */

static void expect_config_error(const char *json, size_t n_layers, int code, const char *needle)
{
	struct reg_diff_id *ids = (struct reg_diff_id *)1;
	struct rs_error err = {0};
	int r = reg_config_parse_diff_ids(json, strlen(json), n_layers, &ids, &err);
	if (r != code || !strstr(err.msg, needle) || ids)
		fail_msg("%s: expected %d with '%s', got %d '%s'", json, code, needle, r, err.msg);
}

static void test_config_diff_ids(void **state)
{
	(void)state;
	const char *j = "{\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\","
			"\"diff_ids\":[\"" D1 "\",\"" D2 "\"]},\"history\":[]}";
	struct reg_diff_id *ids = NULL;
	struct rs_error err = {0};
	assert_int_equal(reg_config_parse_diff_ids(j, strlen(j), 2, &ids, &err), 0);
	assert_string_equal(ids[0].s, D1);
	assert_string_equal(ids[1].s, D2);
	free(ids);
	const char *none = "{\"rootfs\":{\"diff_ids\":[]}}";
	assert_int_equal(reg_config_parse_diff_ids(none, strlen(none), 0, &ids, &err), 0);
	assert_null(ids);

	expect_config_error("not json", 1, -EBADMSG, "not valid JSON");
	expect_config_error("[\"" D1 "\"]", 1, -EBADMSG, "not a JSON object");
	expect_config_error("{\"architecture\":\"amd64\"}", 1, -EBADMSG, "no \"rootfs\"");
	expect_config_error("{\"rootfs\":[]}", 1, -EBADMSG, "no \"rootfs\"");
	expect_config_error("{\"rootfs\":{\"type\":\"layers\"}}", 1, -EBADMSG, "rootfs.diff_ids");
	expect_config_error("{\"rootfs\":{\"diff_ids\":\"" D1 "\"}}", 1, -EBADMSG,
			    "rootfs.diff_ids");
	expect_config_error(j, 3, -EBADMSG, "2 diff_ids for the manifest's 3 layers");
	expect_config_error(j, 1, -EBADMSG, "2 diff_ids for the manifest's 1 layers");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[\"" D1 "\",\"sha256:abc\"]}}", 2, -EBADMSG,
			    "diff_ids[1] 'sha256:abc' is not sha256");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[\"SHA256:" D1 "\"]}}", 1, -EBADMSG,
			    "diff_ids[0]");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[7]}}", 1, -EBADMSG,
			    "diff_ids[0] '(not a string)'");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[\"" D1 "\"]},\"rootfs\":{}}", 1, -EBADMSG,
			    "not valid JSON");

	/* Oversized: refused before it is parsed. */
	size_t big = (size_t)REG_CONFIG_MAX + 1;
	char *huge = malloc(big);
	assert_non_null(huge);
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	ids = NULL;
	assert_int_equal(reg_config_parse_diff_ids(huge, big, 1, &ids, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "larger than"));
	assert_null(ids);
	free(huge);
}

/* A manifest whose config descriptor is oversized or not a digest is refused
 * before any request: the client's registry (a closed loopback port) would
 * give a connection error instead. */
static void test_config_descriptor_checked(void **state)
{
	(void)state;
	struct reg_options o = {.plain_http = true, .retries = -1, .hosts_dir = "/nonexistent"};
	struct reg_client *c = NULL;
	struct rs_error err = {0};
	struct reg_ref ref;
	assert_int_equal(reg_client_new(&o, &c, &err), 0);
	assert_int_equal(reg_ref_parse("127.0.0.1:1/t/img:1", &ref, &err), 0);
	struct reg_manifest m = {.config = {.digest = D1, .size = (int64_t)REG_CONFIG_MAX + 1}};
	struct reg_diff_id *ids = NULL;
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "config " D1));
	assert_null(ids);
	m.config.size = -1;
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EFBIG);
	m.config = (struct reg_descriptor){.digest = "sha256:abc", .size = 10};
	assert_int_equal(reg_config_diff_ids(c, &ref, &m, &ids, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'sha256:abc' is not a digest"));
	/* A sane descriptor does reach the (absent) registry. */
	m.config = (struct reg_descriptor){.digest = D1, .size = 10};
	int r = reg_config_diff_ids(c, &ref, &m, &ids, &err);
	assert_true(r < 0 && r != -EFBIG && r != -EINVAL && r != -EBADMSG);
	reg_ref_free(&ref);
	reg_client_free(c);
}

/* ---- upload URLs --------------------------------------------------------------- */

static void check_str(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_upload_urls(void **state)
{
	(void)state;
	check_str(reg_url_add_query("/v2/a/blobs/uploads/u1", "digest", D1),
		  "/v2/a/blobs/uploads/u1?digest=" D1);
	check_str(reg_url_add_query("/v2/a/blobs/uploads/u1?_state=xyz", "digest", D1),
		  "/v2/a/blobs/uploads/u1?_state=xyz&digest=" D1);
	check_str(reg_url_add_query("https://h/up?", "digest", "d"), "https://h/up?digest=d");
	check_str(reg_url_add_query("https://h/up?a=1&", "digest", "d"),
		  "https://h/up?a=1&digest=d");
	check_str(reg_url_add_query("https://h/up#frag", "digest", "d"),
		  "https://h/up?digest=d#frag");
	check_str(reg_upload_url("lib/x", "/v2/lib/x/blobs/uploads/1?s=2"),
		  "/v2/lib/x/blobs/uploads/1?s=2");
	check_str(reg_upload_url("lib/x", "HTTPS://s3.example/b?sig=1"),
		  "HTTPS://s3.example/b?sig=1");
	check_str(reg_upload_url("lib/x", "abc-123?s=1"), "/v2/lib/x/blobs/uploads/abc-123?s=1");
	assert_true(reg_digest_valid(D1));
	assert_false(reg_digest_valid("sha256:"
				      "abc"));
	assert_false(reg_digest_valid("sha512:"
				      "1111111111111111111111111111111111111111111111111"
				      "111111111111111"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_oci_manifest),
	    cmocka_unit_test(test_docker_manifest_hint),
	    cmocka_unit_test(test_index),
	    cmocka_unit_test(test_manifest_errors),
	    cmocka_unit_test(test_platform_pick),
	    cmocka_unit_test(test_platform_rank),
	    cmocka_unit_test(test_platform_parse),
	    cmocka_unit_test(test_content_range),
	    cmocka_unit_test(test_boundary),
	    cmocka_unit_test(test_multipart),
	    cmocka_unit_test(test_multipart_errors),
	    cmocka_unit_test(test_spans),
	    cmocka_unit_test(test_config_diff_ids),
	    cmocka_unit_test(test_config_descriptor_checked),
	    cmocka_unit_test(test_upload_urls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
