// SPDX-License-Identifier: Apache-2.0
/* The labels stargz rpull gives Prepare: the TOC tail each layer's
 * annotations imply (ours or zstd:chunked's), and the toc-tails label listing
 * them for the layer and those above it. Annotations are untrusted: anything
 * that is not a plain offset inside the blob gives no hint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/rpull_internal.h"
#include "estargz/estargz.h"

static int64_t tail_of(const char *key, const char *value, int64_t size)
{
	struct reg_kv a = {.key = (char *)key, .value = (char *)value};
	struct reg_descriptor d = {.size = size, .annotations = &a, .n_annotations = 1};
	return ctrd_layer_toc_tail(&d);
}

static void test_toc_tail(void **state)
{
	(void)state;
	assert_int_equal(tail_of(ESGZ_ANNOTATION_TOC_OFFSET, "1000", 1300), 300);
	/* zstd:chunked: offset:length:uncompressed:type */
	assert_int_equal(tail_of(ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION, "900:300:5000:1", 1300),
			 400);
	/* no hint: not a number, signed, trailing junk, outside the blob, huge */
	const char *bad[] = {"",
			     "x",
			     "-5",
			     "+5",
			     "10x",
			     "1e3",
			     " 10",
			     "0",
			     "1300",
			     "1301",
			     "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tail_of(ESGZ_ANNOTATION_TOC_OFFSET, bad[i], 1300), 0);
	assert_int_equal(tail_of(ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION, "900", 1300), 400);
	assert_int_equal(tail_of(ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION, "900;300", 1300), 0);
	assert_int_equal(tail_of("some.other", "1000", 1300), 0);
	struct reg_descriptor none = {.size = 1300};
	assert_int_equal(ctrd_layer_toc_tail(&none), 0);
}

static const char *label(const struct ctrd_labels *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, key) == 0)
			return l->v[i].value;
	return NULL;
}

static void test_tails_label(void **state)
{
	(void)state;
	static char digests[3][RS_DIGEST_STR_LEN];
	struct reg_kv ann[3] = {
	    {ESGZ_ANNOTATION_TOC_OFFSET, "4000"},
	    {ESGZ_ANNOTATION_UNCOMPRESSED_SIZE, "9"}, /* no position: not listed */
	    {ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION, "7000:100:300:1"},
	};
	struct reg_descriptor layers[3];
	for (int i = 0; i < 3; i++) {
		snprintf(digests[i], sizeof(digests[i]), "sha256:%064d", i + 1);
		layers[i] = (struct reg_descriptor){.digest = digests[i],
						    .size = 10000,
						    .annotations = &ann[i],
						    .n_annotations = 1};
	}
	struct reg_manifest m = {.layers = layers, .n_layers = 3};
	json_t *mj = json_pack("{s:[{},{},{}]}", "layers");
	assert_non_null(mj);

	struct ctrd_labels l = {0};
	assert_int_equal(ctrd_layer_labels(&m, mj, 0, "sha256:chain", "reg/img:tag", &l), 0);
	char want[512];
	snprintf(want, sizeof(want), "%s=6000,%s=3000", digests[0], digests[2]);
	assert_string_equal(label(&l, CTRD_LABEL_TOC_TAILS), want);
	ctrd_labels_free(&l);

	/* the layer itself and those above: from the top layer, just its own */
	assert_int_equal(ctrd_layer_labels(&m, mj, 2, "sha256:chain", "reg/img:tag", &l), 0);
	snprintf(want, sizeof(want), "%s=3000", digests[2]);
	assert_string_equal(label(&l, CTRD_LABEL_TOC_TAILS), want);
	ctrd_labels_free(&l);

	/* the middle one has no position, the label is left out when none has */
	layers[2].n_annotations = 0;
	assert_int_equal(ctrd_layer_labels(&m, mj, 1, "sha256:chain", "reg/img:tag", &l), 0);
	assert_null(label(&l, CTRD_LABEL_TOC_TAILS));
	assert_non_null(label(&l, CTRD_LABEL_STARGZ_LAYERS));
	ctrd_labels_free(&l);
	json_decref(mj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_toc_tail),
	    cmocka_unit_test(test_tails_label),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
