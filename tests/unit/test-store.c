// SPDX-License-Identifier: Apache-2.0
/* The store's parsers of untrusted names and its info file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "store/store.h"

static void test_ref_decode(void **state)
{
	(void)state;
	char out[64];
	/* base64 of "127.0.0.1:5000/rs/busybox:esgz" */
	assert_int_equal(
	    store_ref_decode("MTI3LjAuMC4xOjUwMDAvcnMvYnVzeWJveDplc2d6", out, sizeof(out)), 0);
	assert_string_equal(out, "127.0.0.1:5000/rs/busybox:esgz");
	assert_int_equal(store_ref_decode("YQ==", out, sizeof(out)), 0);
	assert_string_equal(out, "a");
	static const char *const bad[] = {
	    "",         /* empty */
	    "YQ",       /* unpadded */
	    "YQ=",      /* short */
	    "Y===",     /* too much padding */
	    "YQ==YQ==", /* padding inside */
	    "Y!Q=",     /* not the alphabet */
	    "YS1i-w==", /* the URL alphabet is not containers/storage's */
	    "AA==",     /* a NUL */
	    "YSBi",     /* "a b": a space */
	    "Cg==",     /* a newline */
	    "/w==",     /* a byte past ASCII */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(store_ref_decode(bad[i], out, sizeof(out)), -ENOENT);
	/* What does not fit the buffer is refused, not cut. */
	char small[3];
	assert_int_equal(store_ref_decode("YWJj", small, sizeof(small)), -ENOENT);
	assert_int_equal(store_ref_decode("YWI=", small, sizeof(small)), -ENOENT);
	char fits[4];
	assert_int_equal(store_ref_decode("YWJj", fits, sizeof(fits)), 0);
	assert_string_equal(fits, "abc");
}

static void test_info_json(void **state)
{
	(void)state;
	const char *d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	const char *u = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
	struct rs_buf b = {0};
	struct store_layer_info i = {
	    .digest = d, .size = 1043339, .diff_id = u, .uncompressed_size = 1991680};
	assert_int_equal(store_info_json(&i, &b), 0);
	assert_true(rs_buf_append(&b, "", 1) == 0);
	assert_string_equal(
	    (char *)b.data,
	    "{\"compressed-diff-digest\":\"sha256:1111111111111111111111111111111111111111"
	    "111111111111111111111111\",\"compressed-size\":1043339,\"diff-digest\":"
	    "\"sha256:2222222222222222222222222222222222222222222222222222222222222222\","
	    "\"diff-size\":1991680,\"compression\":2}\n");
	rs_buf_free(&b);
	i.uncompressed_size = -1;
	i.zstd = true;
	assert_int_equal(store_info_json(&i, &b), 0);
	assert_null(memmem(b.data, b.len, "diff-size", 9));
	assert_non_null(memmem(b.data, b.len, "\"compression\":4}", 16));
	rs_buf_free(&b);
	/* Nothing that would need escaping gets in. */
	i.digest = "sha256:\"}";
	assert_int_equal(store_info_json(&i, &b), -EINVAL);
	i.digest = d;
	i.diff_id = "sha256:abc";
	assert_int_equal(store_info_json(&i, &b), -EINVAL);
	i.diff_id = u;
	i.size = -1;
	assert_int_equal(store_info_json(&i, &b), -EINVAL);
	rs_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ref_decode),
	    cmocka_unit_test(test_info_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
