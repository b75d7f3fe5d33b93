// SPDX-License-Identifier: Apache-2.0
/* Files a workload read only in part (stargz optimize, esgz_build_opts.touched):
 * their chunks are cut at the edges of the parts read, and the chunks outside
 * them are marked ESGZ_TOC_NO_PREFETCH, so that a lazy mount's prefetch leaves
 * them for when they are read. The file's digest stays; chunk digests are
 * recomputed for the new boundaries from the spool. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "build_internal.h"

/* Spool bytes hashed per read when recomputing chunk digests. */
#define HASH_BUF (1u << 20)

struct range {
	int64_t off, end;
};

int esgz_b_touched_check(const struct esgz_build_opts *o, struct rs_error *err)
{
	if (o->n_touched && !o->touched)
		return rs_err(err, -EINVAL, "%zu touched files given without their list",
			      o->n_touched);
	for (size_t k = 0; k < o->n_touched; k++) {
		const struct esgz_touched *t = &o->touched[k];
		if (!t->name)
			continue;
		if (t->nranges && (!t->ranges || t->nranges > SIZE_MAX / (2 * sizeof(int64_t))))
			return rs_err(err, -EINVAL, "touched file '%s': %zu ranges without data",
				      t->name, t->nranges);
		for (size_t i = 0; i < t->nranges; i++) {
			int64_t off = t->ranges[2 * i], len = t->ranges[2 * i + 1];
			if (off < 0 || len < 0)
				return rs_err(err, -EINVAL,
					      "touched file '%s': range %zu (offset %lld, length "
					      "%lld) is negative",
					      t->name, i, (long long)off, (long long)len);
		}
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return (x->end > y->end) - (x->end < y->end);
}

/* Sorts and merges ranges already clamped to the file, closing gaps shorter
 * than ESGZ_TOUCHED_MIN_GAP between them (readahead would read those anyway).
 * Returns how many remain. */
static size_t normalise(struct range *r, size_t n)
{
	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), cmp_range);
	size_t m = 0;
	for (size_t i = 1; i < n; i++) {
		if (r[i].off - r[m].end < ESGZ_TOUCHED_MIN_GAP) {
			if (r[i].end > r[m].end)
				r[m].end = r[i].end;
		} else {
			r[++m] = r[i];
		}
	}
	return m + 1;
}

/* Cuts [off, end) every chunk_size bytes from off; fills offs and flags from
 * at when given. Returns the chunk count. */
static uint64_t cut_piece(int64_t off, int64_t end, int64_t chunk_size, bool untouched,
			  int64_t *offs, uint8_t *flags, uint64_t at)
{
	if (end <= off)
		return 0;
	uint64_t k = (uint64_t)((end - off - 1) / chunk_size) + 1;
	for (uint64_t i = 0; offs && i < k; i++) {
		offs[at + i] = off + (int64_t)i * chunk_size;
		flags[at + i] = untouched;
	}
	return k;
}

/* The chunks of a file of size bytes touched in r[0, m): counts them, and
 * fills offs and flags when given. */
static uint64_t cut_file(const struct range *r, size_t m, int64_t size, int64_t chunk_size,
			 int64_t *offs, uint8_t *flags)
{
	uint64_t n = 0;
	int64_t pos = 0;
	for (size_t i = 0; i < m; i++) {
		n += cut_piece(pos, r[i].off, chunk_size, true, offs, flags, n);
		n += cut_piece(r[i].off, r[i].end, chunk_size, false, offs, flags, n);
		pos = r[i].end;
	}
	n += cut_piece(pos, size, chunk_size, true, offs, flags, n);
	return n;
}

static int hash_chunks(const struct esgz_b_tar *t, const struct esgz_b_entry *e,
		       const int64_t *offs, uint32_t n, uint8_t (*digests)[RS_SHA256_LEN],
		       struct rs_error *err)
{
	cleanup_free uint8_t *buf = malloc(HASH_BUF);
	if (!buf)
		return rs_err(err, -ENOMEM, "out of memory");
	for (uint32_t c = 0; c < n; c++) {
		int64_t end = c + 1 < n ? offs[c + 1] : e->size;
		struct rs_sha256 h;
		if (rs_sha256_init(&h) < 0)
			return rs_err(err, -ENOMEM, "sha256 init failed");
		for (int64_t off = offs[c]; off < end;) {
			size_t len = end - off < HASH_BUF ? (size_t)(end - off) : HASH_BUF;
			int r = esgz_b_spool_read(&t->spool, buf, len, e->data_off + off, err);
			if (r < 0) {
				rs_sha256_free(&h);
				rs_error_prefix(err, "entry '%s'", e->name);
				return r;
			}
			rs_sha256_update(&h, buf, len);
			off += (int64_t)len;
		}
		rs_sha256_final(&h, digests[c]);
		rs_sha256_free(&h);
	}
	return 0;
}

/* Gives e the chunks of the touched ranges r[0, n) (clamped to the file). */
static int touch_entry(const struct esgz_b_tar *t, struct esgz_b_entry *e, struct range *r,
		       size_t n, int64_t chunk_size, struct rs_error *err)
{
	size_t m = normalise(r, n);
	if (m == 1 && r[0].off == 0 && r[0].end == e->size)
		return 0; /* read whole: chunked as any other file */
	uint64_t count = cut_file(r, m, e->size, chunk_size, NULL, NULL);
	if (count > UINT32_MAX / 2)
		return rs_err(err, -E2BIG, "entry '%s': too many chunks", e->name);
	cleanup_free int64_t *offs = malloc((size_t)count * sizeof(*offs));
	cleanup_free uint8_t *flags = malloc((size_t)count);
	cleanup_free uint8_t(*digests)[RS_SHA256_LEN] = malloc((size_t)count * RS_SHA256_LEN);
	if (!offs || !flags || !digests)
		return rs_err(err, -ENOMEM, "out of memory");
	cut_file(r, m, e->size, chunk_size, offs, flags);
	int rc = hash_chunks(t, e, offs, (uint32_t)count, digests, err);
	if (rc < 0)
		return rc;
	free(e->chunk_digests);
	free(e->chunk_offs);
	free(e->no_prefetch);
	e->chunk_digests = steal_pointer(&digests);
	e->chunk_offs = steal_pointer(&offs);
	e->no_prefetch = steal_pointer(&flags);
	e->nchunks = (uint32_t)count;
	return 0;
}

struct pick {
	size_t entry, item;
};

static int cmp_pick(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;
	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return (x->item > y->item) - (x->item < y->item);
}

int esgz_b_touched_apply(struct esgz_b_tar *t, const struct esgz_build_opts *o, const size_t *entry,
			 int64_t chunk_size, struct rs_error *err)
{
	size_t n = 0;
	for (size_t k = 0; k < o->n_touched; k++)
		n += entry[k] != SIZE_MAX;
	if (n == 0)
		return 0;
	cleanup_free struct pick *p = malloc(n * sizeof(*p));
	if (!p)
		return rs_err(err, -ENOMEM, "out of memory");
	n = 0;
	for (size_t k = 0; k < o->n_touched; k++)
		if (entry[k] != SIZE_MAX)
			p[n++] = (struct pick){entry[k], k};
	qsort(p, n, sizeof(*p), cmp_pick);
	for (size_t i = 0, j; i < n; i = j) {
		struct esgz_b_entry *e = &t->v[p[i].entry];
		size_t total = 0;
		for (j = i; j < n && p[j].entry == p[i].entry; j++) {
			size_t nr = o->touched[p[j].item].nranges;
			if (nr > SIZE_MAX / sizeof(struct range) - total)
				return rs_err(err, -E2BIG, "touched file '%s': too many ranges",
					      e->name);
			total += nr;
		}
		cleanup_free struct range *r = malloc((total ? total : 1) * sizeof(*r));
		if (!r)
			return rs_err(err, -ENOMEM, "out of memory");
		size_t nr = 0;
		for (size_t k = i; k < j; k++) {
			const struct esgz_touched *tt = &o->touched[p[k].item];
			for (size_t q = 0; q < tt->nranges; q++) {
				int64_t off = tt->ranges[2 * q], len = tt->ranges[2 * q + 1];
				if (len == 0 || off >= e->size)
					continue;
				r[nr].off = off;
				r[nr].end = len > e->size - off ? e->size : off + len;
				nr++;
			}
		}
		int rc = touch_entry(t, e, r, nr, chunk_size, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}
