// SPDX-License-Identifier: Apache-2.0
/* bench/toc: time and resident memory of opening a blob (footer, TOC inflate,
 * parse, index), next to a baseline measured in the same run: inflating the
 * same TOC with zlib and nothing else. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "estargz/estargz.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * 4096;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Baseline: inflate the TOC member with zlib into a scratch buffer. */
static double inflate_only(struct esgz_reader *r, const struct esgz_footer *f)
{
	uint8_t *comp = malloc((size_t)f->toc_size);
	struct rs_error err;
	if (!comp || esgz_read_at(r, comp, (size_t)f->toc_size, f->toc_offset, &err) < 0)
		exit(3);
	double t0 = now();
	z_stream zs = {0};
	inflateInit2(&zs, 16 + MAX_WBITS);
	static uint8_t out[1 << 20];
	zs.next_in = comp;
	zs.avail_in = (uInt)f->toc_size;
	int z;
	do {
		zs.next_out = out;
		zs.avail_out = sizeof(out);
		z = inflate(&zs, Z_NO_FLUSH);
	} while (z == Z_OK);
	inflateEnd(&zs);
	double t = now() - t0;
	free(comp);
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: toc-bench BLOB [RUNS]\n");
		return 2;
	}
	int runs = argc > 2 ? atoi(argv[2]) : 5;
	if (runs < 1)
		runs = 1;
	struct rs_error err;
	struct esgz_reader r;
	if (esgz_reader_open_file(&r, argv[1], &err) < 0) {
		fprintf(stderr, "toc-bench: %s\n", err.msg);
		return 3;
	}
	double t_open[64], t_base[64];
	if (runs > 64)
		runs = 64;
	long mem = 0;
	uint64_t entries = 0;
	for (int i = 0; i < runs; i++) {
		malloc_trim(0);
		long before = resident_bytes();
		double t0 = now();
		struct esgz_blob *b;
		if (esgz_open(&r, NULL, &b, &err) < 0) {
			fprintf(stderr, "toc-bench: %s\n", err.msg);
			return 3;
		}
		t_open[i] = now() - t0;
		/* What the index holds: free heap pages left by parsing go back first. */
		malloc_trim(0);
		mem = resident_bytes() - before;
		entries = esgz_index_toc_entries(b->index);
		t_base[i] = inflate_only(&r, &b->footer);
		esgz_blob_free(b);
	}
	qsort(t_open, (size_t)runs, sizeof(double), cmp_double);
	qsort(t_base, (size_t)runs, sizeof(double), cmp_double);
	double open_s = t_open[runs / 2], base_s = t_base[runs / 2];
	printf("{\"entries\":%llu,\"runs\":%d,\"openSeconds\":%.3f,\"inflateOnlySeconds\":%.3f,"
	       "\"openVsInflate\":%.2f,\"residentBytesPerEntry\":%.1f}\n",
	       (unsigned long long)entries, runs, open_s, base_s, open_s / base_s,
	       (double)mem / (double)entries);
	esgz_reader_close(&r);
	return 0;
}
