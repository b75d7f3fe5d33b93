// SPDX-License-Identifier: Apache-2.0
/* esgz_build(): tar in, eStargz (or zstd:chunked) out.
 *
 * The input is read whole first (payloads spooled), because the order of the
 * output depends on all of it: prioritised files move to the front and a later
 * entry of a name replaces an earlier one (as the reference's sortEntries does).
 * Then entries are laid out in members exactly as the reference's Writer does:
 * a member starts at each chunk of each non-empty regular file; headers and
 * padding ride in the member that is open. Members are batched into jobs,
 * compressed in parallel and written in order, so the bytes never depend on the
 * thread count. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "build_internal.h"

/* Uncompressed bytes per job: enough work to amortise a thread hand-off. */
#define JOB_TARGET (512u << 10)
#define MAX_MOVE_DEPTH 4096

/* libdeflate level for each --level 1..9 (gzip). libdeflate is faster and
 * denser than zlib at equal levels, and the reference (Go compress/flate,
 * BestCompression at 9) is a little worse than zlib -9. Measured with
 * bench/convert on a 245 MB Debian bookworm minbase rootfs tar, 2 cores, size
 * relative to ctr-remote 0.12 `images convert --estargz` at level 9 and CPU
 * seconds: libdeflate 1: 1.054 (2.4 s), 2: 1.019 (3.2 s), 3: 1.009 (3.5 s),
 * 4: 1.003 (3.5 s), 5: 0.984 (3.7 s), 6: 0.979 (4.3 s), 7: 0.975 (5.4 s),
 * 8: 0.971 (8.7 s), 9: 0.971 (11.5 s); the reference took 68 s wall.
 * --level 9 takes 4, the fastest that stays within 3% of the reference with
 * room to spare for other content; lower levels step down from there. */
static const int gzip_level_map[10] = {0, 1, 1, 2, 2, 3, 3, 3, 4, 4};

/* zstd level for --level 1..9; 0 (unset) is 3, the reference's SpeedDefault.
 * 1-2 fastest, 3-6 default, 7-8 "better", 9 "best", like klauspost's four
 * encoder levels that the reference chooses between. */
static const int zstd_level_map[10] = {3, 1, 1, 3, 3, 3, 3, 7, 7, 11};

static const uint8_t landmark_byte[1] = {ESGZ_LANDMARK_BYTE};

/* ---- name index: clean name -> entry ---------------------------------- */

struct nameidx {
	char **keys; /* borrowed */
	size_t *vals;
	size_t cap;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static int nameidx_init(struct nameidx *m, size_t n)
{
	size_t cap = 64;
	while (cap < n * 2 + 2)
		cap *= 2;
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	m->cap = cap;
	return m->keys && m->vals ? 0 : -ENOMEM;
}

static size_t *nameidx_slot(struct nameidx *m, char *key, bool insert)
{
	size_t h = hash_str(key) & (m->cap - 1);
	while (m->keys[h] && strcmp(m->keys[h], key) != 0)
		h = (h + 1) & (m->cap - 1);
	if (!m->keys[h]) {
		if (!insert)
			return NULL;
		m->keys[h] = key;
	}
	return &m->vals[h];
}

static void nameidx_free(struct nameidx *m)
{
	free(m->keys);
	free(m->vals);
}

/* ---- ordering ---------------------------------------------------------- */

struct sorter {
	struct esgz_b_tar *t;
	char **clean; /* clean name of each entry */
	struct nameidx idx;
	uint8_t *state; /* 0: not picked, 1: in progress, 2: picked */
	uint8_t *named; /* the prioritized list names the entry itself */
	const struct esgz_b_entry **order;
	size_t norder;
	bool skip_missing;
};

/* The reference's moveRec: a name, its parent directories first, and the
 * target of a hardlink, each once. */
static int move_rec(struct sorter *s, const char *name, int depth, struct rs_error *err)
{
	if (depth > MAX_MOVE_DEPTH)
		return rs_err(err, -ELOOP, "prioritized file '%s': too deeply nested", name);
	size_t len = strlen(name);
	cleanup_free char *c = malloc(len + 1);
	if (!c)
		return rs_err(err, -ENOMEM, "out of memory");
	esgz_clean_name(name, c);
	size_t *slot = nameidx_slot(&s->idx, c, false);
	if (!slot) {
		if (c[0] == 0 || s->skip_missing)
			return 0;
		return rs_err(err, -ENOENT, "prioritized file '%s' not found in the layer", name);
	}
	size_t i = *slot;
	if (depth == 0)
		s->named[i] = 1;
	if (c[0] != 0) {
		char *slash = strrchr(c, '/');
		char saved = 0;
		if (slash) {
			saved = *slash;
			*slash = 0;
		}
		int r = move_rec(s, slash ? c : "", depth + 1, err);
		if (slash)
			*slash = saved;
		if (r < 0)
			return r;
		const struct esgz_b_entry *e = &s->t->v[i];
		if (e->type == ESGZ_HARDLINK && s->state[i] == 0) {
			s->state[i] = 1;
			r = move_rec(s, e->link, depth + 1, err);
			s->state[i] = 0;
			if (r < 0)
				return r;
		}
	}
	if (s->state[i] == 2)
		return 0;
	s->state[i] = 2;
	s->order[s->norder++] = &s->t->v[i];
	return 0;
}

static bool is_landmark_name(const char *name)
{
	size_t len = strlen(name);
	if (len > 4096)
		return false;
	char c[4097];
	esgz_clean_name(name, c);
	return strcmp(c, ESGZ_PREFETCH_LANDMARK) == 0;
}

/* The live entry of a name (any spelling): 1 and *i, 0 when absent. */
static int find_entry(struct sorter *s, const char *name, size_t *i)
{
	cleanup_free char *c = malloc(strlen(name) + 1);
	if (!c)
		return -ENOMEM;
	esgz_clean_name(name, c);
	size_t *slot = nameidx_slot(&s->idx, c, false);
	if (!slot)
		return 0;
	*i = *slot;
	return 1;
}

/* The entry holding the data of each touched file (through hardlinks), or
 * SIZE_MAX when the layer has no data under that name or the prioritized list
 * does not name it: a file the workload read in part but that is not
 * prioritized is prefetched with the rest of the layer, whole. */
static int resolve_touched(struct sorter *s, const struct esgz_build_opts *o, size_t **out,
			   struct rs_error *err)
{
	if (o->n_touched == 0)
		return 0;
	size_t *v = malloc(o->n_touched * sizeof(*v));
	if (!v)
		return rs_err(err, -ENOMEM, "out of memory");
	for (size_t k = 0; k < o->n_touched; k++) {
		v[k] = SIZE_MAX;
		size_t i;
		int r = o->touched[k].name ? find_entry(s, o->touched[k].name, &i) : 0;
		if (r == 1 && !s->named[i])
			r = 0;
		for (int hops = 0; r == 1 && s->t->v[i].type == ESGZ_HARDLINK; hops++)
			r = hops < MAX_MOVE_DEPTH && s->t->v[i].link
				? find_entry(s, s->t->v[i].link, &i)
				: 0;
		if (r < 0) {
			free(v);
			return rs_err(err, -ENOMEM, "out of memory");
		}
		if (r == 1 && s->t->v[i].type == ESGZ_REG && s->t->v[i].size > 0)
			v[k] = i;
	}
	*out = v;
	return 0;
}

static int sort_entries(struct esgz_b_tar *t, const struct esgz_build_opts *o,
			struct esgz_b_entry *landmark, const struct esgz_b_entry ***out,
			size_t *nout, size_t **touched, struct rs_error *err)
{
	struct sorter s = {.t = t, .skip_missing = o->prioritized_skip_missing};
	int r = 0;
	s.clean = calloc(t->n + 1, sizeof(*s.clean));
	s.state = calloc(t->n + 1, 1);
	s.named = calloc(t->n + 1, 1);
	s.order = calloc(t->n + 1, sizeof(*s.order));
	if (!s.clean || !s.state || !s.named || !s.order || nameidx_init(&s.idx, t->n) < 0) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < t->n; i++) {
		s.clean[i] = malloc(strlen(t->v[i].name) + 1);
		if (!s.clean[i]) {
			r = rs_err(err, -ENOMEM, "out of memory");
			goto out;
		}
		esgz_clean_name(t->v[i].name, s.clean[i]);
		size_t *slot = nameidx_slot(&s.idx, s.clean[i], false);
		if (slot)
			t->v[*slot].dead = true; /* a later entry of a name replaces it */
		else
			slot = nameidx_slot(&s.idx, s.clean[i], true);
		*slot = i;
	}
	bool placed = false;
	for (size_t p = 0; p <= o->n_prioritized; p++) {
		const char *name = p < o->n_prioritized ? o->prioritized[p] : NULL;
		if (p < o->n_prioritized && !name)
			continue;
		/* The landmark goes where the list names it, else after the list. */
		if (!placed && (!name || is_landmark_name(name))) {
			/* An image-wide list may name nothing of this layer before
			 * it: then nothing here is worth prefetching. */
			if (s.norder == 0 && o->prioritized_skip_missing)
				landmark->name = (char *)ESGZ_NO_PREFETCH_LANDMARK;
			s.order[s.norder++] = landmark;
			placed = true;
			continue;
		}
		if (!name || is_landmark_name(name))
			continue;
		r = move_rec(&s, name, 0, err);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < t->n; i++)
		if (!t->v[i].dead && s.state[i] != 2)
			s.order[s.norder++] = &t->v[i];
	if ((r = resolve_touched(&s, o, touched, err)) < 0)
		goto out;
	*out = steal_pointer(&s.order);
	*nout = s.norder;
out:
	if (s.clean)
		for (size_t i = 0; i < t->n; i++)
			free(s.clean[i]);
	free(s.clean);
	free(s.state);
	free(s.named);
	free(s.order);
	nameidx_free(&s.idx);
	return r;
}

/* ---- member layout and output ------------------------------------------ */

struct out_state {
	int fd;
	struct esgz_b_pool *pool;
	struct rs_sha256 diff, blob;
	int64_t blob_off;
	int64_t uncompressed;
	/* jobs submitted and not yet written, oldest first */
	struct esgz_b_job **inflight;
	size_t ninflight, max_inflight;
	struct esgz_b_job *cur;
	bool member_open;
	size_t member_start;
	uint32_t members; /* members closed so far */
	int64_t *member_offset;
	size_t member_offset_cap;
};

static int write_all(int fd, const void *buf, size_t len, struct rs_error *err)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rs_err(err, -errno, "writing the blob: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int emit(struct out_state *st, const void *p, size_t len, struct rs_error *err)
{
	rs_sha256_update(&st->blob, p, len);
	st->blob_off += (int64_t)len;
	return write_all(st->fd, p, len, err);
}

static void job_free(struct esgz_b_job *j)
{
	if (!j)
		return;
	rs_buf_free(&j->in);
	rs_buf_free(&j->out);
	free(j->member_len);
	free(j->member_out);
	free(j);
}

static int write_oldest(struct out_state *st, struct rs_error *err)
{
	struct esgz_b_job *j = st->inflight[0];
	esgz_b_pool_wait(st->pool, j);
	memmove(st->inflight, st->inflight + 1, (st->ninflight - 1) * sizeof(*st->inflight));
	st->ninflight--;
	int r = 0;
	if (j->rc < 0) {
		r = rs_err(err, j->rc, "%s", j->errmsg);
		goto out;
	}
	size_t need = (size_t)j->first_member + j->nmembers;
	if (need > st->member_offset_cap) {
		size_t cap = st->member_offset_cap ? st->member_offset_cap : 1024;
		while (cap < need)
			cap *= 2;
		int64_t *v = realloc(st->member_offset, cap * sizeof(*v));
		if (!v) {
			r = rs_err(err, -ENOMEM, "out of memory");
			goto out;
		}
		st->member_offset = v;
		st->member_offset_cap = cap;
	}
	int64_t off = st->blob_off;
	for (size_t i = 0; i < j->nmembers; i++) {
		st->member_offset[j->first_member + i] = off;
		off += (int64_t)j->member_out[i];
	}
	r = emit(st, j->out.data, j->out.len, err);
out:
	job_free(j);
	return r;
}

static int submit_cur(struct out_state *st, struct rs_error *err)
{
	struct esgz_b_job *j = st->cur;
	if (!j || j->nmembers == 0)
		return 0;
	st->cur = NULL;
	rs_sha256_update(&st->diff, j->in.data, j->in.len);
	st->uncompressed += (int64_t)j->in.len;
	esgz_b_pool_submit(st->pool, j);
	st->inflight[st->ninflight++] = j;
	if (st->ninflight >= st->max_inflight)
		return write_oldest(st, err);
	return 0;
}

static int close_member(struct out_state *st, struct rs_error *err)
{
	if (!st->member_open)
		return 0;
	struct esgz_b_job *j = st->cur;
	if (j->nmembers == j->members_cap) {
		size_t cap = j->members_cap ? j->members_cap * 2 : 16;
		size_t *a = realloc(j->member_len, cap * sizeof(*a));
		if (a)
			j->member_len = a;
		size_t *b = a ? realloc(j->member_out, cap * sizeof(*b)) : NULL;
		if (!b)
			return rs_err(err, -ENOMEM, "out of memory");
		j->member_out = b;
		j->members_cap = cap;
	}
	j->member_len[j->nmembers++] = j->in.len - st->member_start;
	st->members++;
	st->member_open = false;
	if (j->in.len >= JOB_TARGET)
		return submit_cur(st, err);
	return 0;
}

/* Makes room for len more bytes of the open member (opening one if needed). */
static uint8_t *member_space(struct out_state *st, size_t len, struct rs_error *err)
{
	if (!st->cur) {
		st->cur = calloc(1, sizeof(*st->cur));
		if (!st->cur) {
			rs_err(err, -ENOMEM, "out of memory");
			return NULL;
		}
		st->cur->first_member = st->members;
	}
	if (!st->member_open) {
		st->member_open = true;
		st->member_start = st->cur->in.len;
	}
	if (rs_buf_reserve(&st->cur->in, len) < 0) {
		rs_err(err, -ENOMEM, "out of memory");
		return NULL;
	}
	uint8_t *p = st->cur->in.data + st->cur->in.len;
	st->cur->in.len += len;
	return p;
}

static int member_append(struct out_state *st, const void *data, size_t len, struct rs_error *err)
{
	if (len == 0)
		return 0;
	uint8_t *p = member_space(st, len, err);
	if (!p)
		return err ? err->code : -ENOMEM;
	memcpy(p, data, len);
	return 0;
}

static int layout_entry(struct out_state *st, const struct esgz_b_tar *t, struct esgz_b_entry *e,
			bool is_landmark, int64_t chunk_size, struct rs_buf *hdr,
			struct rs_error *err)
{
	static const uint8_t zeros[512];
	rs_buf_reset(hdr);
	int r = esgz_b_tar_header(e, hdr, err);
	if (r < 0)
		return r;
	if ((r = member_append(st, hdr->data, hdr->len, err)) < 0)
		return r;
	if (e->type != ESGZ_REG || e->size == 0)
		return 0;
	for (uint32_t c = 0; c < e->nchunks; c++) {
		int64_t off = esgz_b_chunk_off(e, c, chunk_size);
		size_t n = (size_t)esgz_b_chunk_len(e, c, chunk_size);
		if ((r = close_member(st, err)) < 0)
			return r;
		if (c == 0)
			e->first_member = st->members;
		uint8_t *p = member_space(st, n, err);
		if (!p)
			return err->code;
		if (is_landmark)
			memcpy(p, landmark_byte, 1);
		else if ((r = esgz_b_spool_read(&t->spool, p, n, e->data_off + off, err)) < 0) {
			rs_error_prefix(err, "entry '%s'", e->name);
			return r;
		}
	}
	return member_append(st, zeros, esgz_b_tar_pad(e->size), err);
}

static int finish_toc(struct out_state *st, const struct esgz_build_opts *o, int level,
		      const struct esgz_b_entry **order, size_t norder, int64_t chunk_size,
		      struct esgz_build_result *res, struct rs_error *err)
{
	struct esgz_b_toc_in tin = {
	    .order = order,
	    .n = norder,
	    .member_offset = st->member_offset,
	    .chunk_size = chunk_size,
	};
	struct rs_buf json = {0}, raw = {0}, comp = {0};
	int r = esgz_b_toc_json(&tin, &json, err);
	if (r < 0)
		goto out;
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(json.data, json.len, sum);
	rs_digest_format(sum, res->toc_digest);
	int64_t toc_off = st->blob_off;
	res->toc_offset = o->zstd_chunked ? toc_off + 8 : toc_off;
	if (!o->zstd_chunked) {
		static const uint8_t zeros[1536];
		struct esgz_b_entry te = {
		    .name = (char *)ESGZ_TOC_TAR_NAME,
		    .type = ESGZ_REG,
		    .size = (int64_t)json.len,
		};
		if ((r = esgz_b_tar_header(&te, &raw, err)) < 0)
			goto out;
		if (rs_buf_append(&raw, json.data, json.len) < 0 ||
		    rs_buf_append(&raw, zeros, esgz_b_tar_pad((int64_t)json.len) + 1024) < 0) {
			r = rs_err(err, -ENOMEM, "out of memory");
			goto out;
		}
		rs_sha256_update(&st->diff, raw.data, raw.len);
		st->uncompressed += (int64_t)raw.len;
		if ((r = esgz_b_compress_one(false, level, raw.data, raw.len, &comp, err)) < 0 ||
		    (r = emit(st, comp.data, comp.len, err)) < 0)
			goto out;
		uint8_t footer[ESGZ_FOOTER_SIZE];
		esgz_footer_gzip(toc_off, footer);
		r = emit(st, footer, sizeof(footer), err);
	} else {
		if ((r = esgz_b_compress_one(true, level, json.data, json.len, &comp, err)) < 0)
			goto out;
		if (comp.len > UINT32_MAX) {
			r = rs_err(err, -EFBIG, "compressed TOC too large for a skippable frame");
			goto out;
		}
		uint8_t fh[8] = {0x50, 0x2a, 0x4d, 0x18};
		for (int i = 0; i < 4; i++)
			fh[4 + i] = (uint8_t)(comp.len >> (8 * i));
		if ((r = emit(st, fh, 8, err)) < 0 || (r = emit(st, comp.data, comp.len, err)) < 0)
			goto out;
		uint8_t footer[ESGZ_ZSTD_FOOTER_FRAME];
		esgz_footer_zstd(toc_off + 8, (int64_t)comp.len, (int64_t)json.len, footer);
		r = emit(st, footer, sizeof(footer), err);
	}
out:
	rs_buf_free(&json);
	rs_buf_free(&raw);
	rs_buf_free(&comp);
	return r;
}

int esgz_build(int in_fd, int out_fd, const struct esgz_build_opts *opts,
	       struct esgz_build_result *res, struct rs_error *err)
{
	struct esgz_build_opts o = {0};
	if (opts)
		o = *opts;
	int64_t chunk_size = o.chunk_size ? o.chunk_size : ESGZ_DEFAULT_CHUNK_SIZE;
	if (chunk_size < 1 || chunk_size > (1ll << 30))
		return rs_err(err, -EINVAL, "chunk size %lld out of range (1 B to 1 GiB)",
			      (long long)o.chunk_size);
	if (o.level < 0 || o.level > 9)
		return rs_err(err, -EINVAL, "compression level %d out of range (1-9)", o.level);
	int level = o.zstd_chunked ? zstd_level_map[o.level]
				   : gzip_level_map[o.level ? o.level : ESGZ_DEFAULT_LEVEL];
	int threads = o.threads > 0 ? o.threads : rs_cpu_count();
	if (threads > 256)
		threads = 256;

	struct esgz_b_tar t = {.spool = {.fd = -1}};
	const struct esgz_b_entry **order = NULL;
	size_t norder = 0;
	cleanup_free size_t *touched = NULL;
	struct out_state st = {.fd = out_fd};
	struct rs_buf hdr = {0};
	bool hashes = false;
	int r = esgz_b_touched_check(&o, err);
	if (r < 0 || (r = esgz_b_read_tar(in_fd, chunk_size, &t, err)) < 0)
		goto out;
	for (size_t i = 0; i < t.n; i++)
		if (t.v[i].type == ESGZ_REG && t.v[i].size == 0)
			rs_sha256("", 0, t.v[i].digest);

	uint8_t landmark_chunk[1][RS_SHA256_LEN];
	struct esgz_b_entry landmark = {
	    .name = (char *)(o.n_prioritized ? ESGZ_PREFETCH_LANDMARK : ESGZ_NO_PREFETCH_LANDMARK),
	    .type = ESGZ_REG,
	    .size = 1,
	    .chunk_digests = landmark_chunk,
	    .nchunks = 1,
	};
	rs_sha256(landmark_byte, 1, landmark.digest);
	rs_sha256(landmark_byte, 1, landmark_chunk[0]);
	if ((r = sort_entries(&t, &o, &landmark, &order, &norder, &touched, err)) < 0)
		goto out;
	if (touched && (r = esgz_b_touched_apply(&t, &o, touched, chunk_size, err)) < 0)
		goto out;

	if (rs_sha256_init(&st.diff) < 0 || rs_sha256_init(&st.blob) < 0) {
		r = rs_err(err, -ENOMEM, "sha256 init failed");
		goto out;
	}
	hashes = true;
	st.max_inflight = (size_t)threads * 2 + 1;
	st.inflight = calloc(st.max_inflight, sizeof(*st.inflight));
	if (!st.inflight) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = esgz_b_pool_new(threads, o.zstd_chunked, level, &st.pool, err)) < 0)
		goto out;
	for (size_t i = 0; i < norder; i++) {
		struct esgz_b_entry *e = (struct esgz_b_entry *)order[i];
		if ((r = layout_entry(&st, &t, e, e == &landmark, chunk_size, &hdr, err)) < 0)
			goto out;
	}
	if ((r = close_member(&st, err)) < 0 || (r = submit_cur(&st, err)) < 0)
		goto out;
	while (st.ninflight)
		if ((r = write_oldest(&st, err)) < 0)
			goto out;
	if ((r = finish_toc(&st, &o, level, order, norder, chunk_size, res, err)) < 0)
		goto out;

	uint8_t sum[RS_SHA256_LEN];
	rs_sha256_final(&st.diff, sum);
	rs_digest_format(sum, res->diff_id);
	rs_sha256_final(&st.blob, sum);
	rs_digest_format(sum, res->digest);
	res->size = st.blob_off;
	res->uncompressed_size = st.uncompressed;
out:
	if (st.pool) {
		/* wait for queued jobs so none is freed under a worker */
		for (size_t i = 0; i < st.ninflight; i++)
			esgz_b_pool_wait(st.pool, st.inflight[i]);
		esgz_b_pool_free(st.pool);
	}
	for (size_t i = 0; i < st.ninflight; i++)
		job_free(st.inflight[i]);
	free(st.inflight);
	job_free(st.cur);
	free(st.member_offset);
	if (hashes) {
		rs_sha256_free(&st.diff);
		rs_sha256_free(&st.blob);
	}
	rs_buf_free(&hdr);
	free(order);
	esgz_b_tar_free(&t);
	return r;
}
