/* SPDX-License-Identifier: Apache-2.0 */
/* Fetching chunks: a fixed pool of threads takes jobs from four queues, the
 * highest priority first; the background fetch runs only when every queue is
 * empty, one job at a time, so on-demand reads always find a free fetcher. A
 * chunk is in at most one job (LFS_CHUNK_INFLIGHT); readers of a chunk in
 * flight wait for that job. A job reads its runs with one request (several
 * ranges in one multi-range request), checks every chunk against its
 * chunkDigest while decoding, and caches only what passed. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "layerfs_internal.h"

/* A missing chunk brings along following chunks this small, up to this much. */
#define NEIGHBOUR_MAX ((int64_t)64 << 10)
#define NEIGHBOURS_MAX_BYTES ((int64_t)512 << 10)
#define BACKGROUND_JOB_BYTES ((int64_t)4 << 20)
#define PREFETCH_JOB_BYTES ((int64_t)4 << 20)
/* Chunks marked noPrefetch between two wanted ones come along when they add
 * this little: fewer ranges in the request. */
#define PREFETCH_GAP_FILL ((int64_t)8 << 10)
/* A run of wanted chunks this long is fetched (streamed) on its own. */
#define PREFETCH_STREAM_MIN ((int64_t)256 << 10)
/* Shorter runs share multi-range requests of at most this much; the first
 * request of a layer less: the files a container opens first (passwd, the
 * loader, libc) are at the front, and such a request lands whole. */
#define PREFETCH_MULTI_BYTES ((int64_t)512 << 10)
#define PREFETCH_FIRST_MULTI_BYTES ((int64_t)128 << 10)
#define BACKGROUND_RETRY_MS 2000
/* The background fetch waits this long after the last on-demand job: a
 * starting container reads one file after another, each read waiting for the
 * one before, so the queue is empty between them, yet a background job taken
 * then would share the link with the next read. A mount counts as such a
 * job: the container that wants the layer is about to start. */
#define BACKGROUND_QUIET_MS 2000
/* Attempts of one read at one chunk that was fetched but left the cache
 * before the reader got it (a tiny memory budget and no disk). */
#define MAX_REFETCH 3

static int64_t comp_len(const struct esgz_chunk *c)
{
	return c->comp_end - c->offset;
}

int64_t lfs_chunk_bytes(const struct lfs_layer *l, uint32_t i)
{
	/* Chunks sharing a member count once in byte totals. */
	if (i > 0 && l->chunks[i - 1].offset == l->chunks[i].offset)
		return 0;
	return comp_len(&l->chunks[i]);
}

/* Chunk i+1's bytes follow chunk i's, so both come in one range. */
static bool follows(const struct lfs_layer *l, uint32_t i)
{
	const struct esgz_chunk *a = &l->chunks[i], *b = &l->chunks[i + 1];
	return b->offset == a->offset || b->offset == a->comp_end;
}

static bool busy_or_done(const struct lfs_layer *l, uint32_t i)
{
	return l->chunk_state[i] & (LFS_CHUNK_INFLIGHT | LFS_CHUNK_FETCHED);
}

void lfs_chunk_key(const struct lfs_layer *l, uint32_t i, uint8_t key[RS_SHA256_LEN])
{
	const struct esgz_chunk *c = &l->chunks[i];
	if (c->has_digest) {
		memcpy(key, c->digest, RS_SHA256_LEN);
		return;
	}
	/* No chunkDigest (legacy stargz): a key of this layer and place. */
	uint8_t seed[RS_SHA256_LEN + 2 * sizeof(int64_t)];
	memcpy(seed, l->layer_key, RS_SHA256_LEN);
	memcpy(seed + RS_SHA256_LEN, &c->offset, sizeof(int64_t));
	memcpy(seed + RS_SHA256_LEN + sizeof(int64_t), &c->inner_offset, sizeof(int64_t));
	rs_sha256(seed, sizeof(seed), key);
}

/* ---- queues (under rt->lock) ------------------------------------------------ */

/* Prefetch and background jobs leave one fetcher to on-demand reads: a
 * read must not queue behind megabytes it did not ask for. */
static bool low_prio_allowed(const struct lfs_runtime *rt)
{
	return rt->fetch_pool < 2 || rt->low_running < rt->fetch_pool - 1;
}

static void jobs_free(struct lfs_job *j);

void lfs_fetch_enqueue(struct lfs_runtime *rt, struct lfs_job *jobs)
{
	if (!jobs)
		return;
	struct lfs_job *dropped = NULL;
	pthread_mutex_lock(&rt->lock);
	while (jobs) {
		struct lfs_job *next = jobs->next;
		/* A reader or readahead racing lfs_layer_close: nothing more
		 * is fetched for a closed layer. */
		if (jobs->layer->closed) {
			jobs->next = dropped;
			dropped = jobs;
		} else {
			lfs_queue_push(rt->queue_head, rt->queue_tail, jobs, false);
		}
		jobs = next;
	}
	pthread_cond_broadcast(&rt->queue_cond);
	pthread_mutex_unlock(&rt->lock);
	jobs_free(dropped);
}

/* A reader waits for chunk: if its job still sits in a lower queue, it moves
 * to the front of the on-demand queue. */
static void promote(struct lfs_runtime *rt, struct lfs_layer *l, uint32_t chunk)
{
	pthread_mutex_lock(&rt->lock);
	lfs_queue_promote(rt->queue_head, rt->queue_tail, l, chunk);
	pthread_mutex_unlock(&rt->lock);
}

/* ---- building jobs (under l->lock) ----------------------------------------- */

static struct lfs_job *job_new(struct lfs_layer *l, enum lfs_prio prio)
{
	struct lfs_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	lfs_layer_ref(l);
	j->layer = l;
	j->prio = prio;
	return j;
}

static void job_append(struct lfs_job **head, struct lfs_job **tail, struct lfs_job *j)
{
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* The compressed bytes a job's request reads. */
static int64_t job_bytes(const struct lfs_layer *l, const struct lfs_job *j)
{
	int64_t sum = 0;
	for (uint32_t k = 0; k < j->nruns; k++) {
		const struct lfs_run *r = &j->runs[k];
		sum += l->chunks[r->first + r->count - 1].comp_end - l->chunks[r->first].offset;
	}
	return sum;
}

/* Appends chunk i (already marked in flight) to the job list, merging it
 * into the last run when its bytes follow; a job past max_bytes takes no
 * more runs. */
static int job_add(struct lfs_layer *l, struct lfs_job **head, struct lfs_job **tail, uint32_t i,
		   enum lfs_prio prio, int64_t max_bytes)
{
	struct lfs_job *j = *tail;
	if (j) {
		struct lfs_run *r = &j->runs[j->nruns - 1];
		uint32_t last = r->first + r->count - 1;
		int64_t bytes = l->chunks[i].comp_end - l->chunks[r->first].offset;
		if (last + 1 == i && follows(l, last) && bytes <= max_bytes) {
			r->count++;
			return 0;
		}
		if (j->nruns < LFS_JOB_MAX_RUNS && prio != LFS_PRIO_PREFETCH &&
		    job_bytes(l, j) + comp_len(&l->chunks[i]) <= max_bytes) {
			j->runs[j->nruns++] = (struct lfs_run){i, 1};
			return 0;
		}
	}
	j = job_new(l, prio);
	if (!j)
		return -ENOMEM;
	j->runs[j->nruns++] = (struct lfs_run){i, 1};
	job_append(head, tail, j);
	return 0;
}

static void jobs_free(struct lfs_job *j)
{
	while (j) {
		struct lfs_job *next = j->next;
		lfs_layer_unref(j->layer);
		free(j);
		j = next;
	}
}

void lfs_fetch_queue_range(struct lfs_layer *l, uint32_t first, uint32_t last, enum lfs_prio prio)
{
	struct lfs_job *head = NULL, *tail = NULL;
	int64_t max = prio == LFS_PRIO_PREFETCH ? PREFETCH_JOB_BYTES : LFS_JOB_MAX_BYTES;
	pthread_mutex_lock(&l->lock);
	for (uint32_t i = first; i <= last && i < l->nchunks; i++) {
		if (busy_or_done(l, i))
			continue;
		if (job_add(l, &head, &tail, i, prio, max) < 0)
			break;
		l->chunk_state[i] |= LFS_CHUNK_INFLIGHT;
	}
	if (prio == LFS_PRIO_PREFETCH)
		for (struct lfs_job *j = head; j; j = j->next) {
			j->prefetch = true;
			l->prefetch_pending++;
		}
	pthread_mutex_unlock(&l->lock);
	lfs_fetch_enqueue(l->rt, head);
}

/* Whether chunk i is for the prefetch of a layer with noPrefetch chunks.
 * Under l->lock. */
static bool prefetch_wanted(const struct lfs_layer *l, uint32_t i)
{
	return !l->chunks[i].no_prefetch && !busy_or_done(l, i);
}

/* Whether the chunks between wanted chunks a and b are a gap worth fetching
 * along: contiguous, free and small. Under l->lock. */
static bool gap_fillable(const struct lfs_layer *l, uint32_t a, uint32_t b)
{
	if (l->chunks[b].offset - l->chunks[a].comp_end > PREFETCH_GAP_FILL)
		return false;
	for (uint32_t k = a; k < b; k++)
		if (!follows(l, k) || (k > a && busy_or_done(l, k)))
			return false;
	return true;
}

/* Appends a prefetch job of the runs and marks their chunks in flight. */
static int push_prefetch_job(struct lfs_layer *l, struct lfs_job **head, struct lfs_job **tail,
			     const struct lfs_run *runs, uint32_t n)
{
	if (n == 0)
		return 0;
	struct lfs_job *j = job_new(l, LFS_PRIO_PREFETCH);
	if (!j)
		return -ENOMEM;
	j->prefetch = true;
	l->prefetch_pending++;
	for (uint32_t k = 0; k < n; k++) {
		j->runs[j->nruns++] = runs[k];
		for (uint32_t i = runs[k].first; i < runs[k].first + runs[k].count; i++)
			l->chunk_state[i] |= LFS_CHUNK_INFLIGHT;
	}
	job_append(head, tail, j);
	return 0;
}

/* The prefetch set of a layer with chunks marked noPrefetch: the other
 * chunks before the landmark (end), in blob order. A long run is a job of
 * its own, streamed, so that a reader waiting for its first chunks gets them
 * as they arrive; short runs share multi-range jobs of at most
 * PREFETCH_MULTI_BYTES, which land whole. */
static void queue_partial_prefetch(struct lfs_layer *l, uint32_t end)
{
	struct lfs_job *head = NULL, *tail = NULL;
	struct lfs_run pend[LFS_JOB_MAX_RUNS];
	uint32_t npend = 0;
	int64_t pend_bytes = 0;
	int rc = 0;
	pthread_mutex_lock(&l->lock);
	for (uint32_t i = 0; i < end && rc == 0;) {
		if (!prefetch_wanted(l, i)) {
			i++;
			continue;
		}
		uint32_t last = i;
		for (uint32_t k = i + 1; k < end; k++) {
			if (!prefetch_wanted(l, k))
				continue;
			if (!gap_fillable(l, last, k))
				break;
			last = k;
		}
		int64_t bytes = l->chunks[last].comp_end - l->chunks[i].offset;
		if (bytes >= PREFETCH_STREAM_MIN) {
			rc = push_prefetch_job(l, &head, &tail, pend, npend);
			npend = 0;
			pend_bytes = 0;
			/* in pieces of at most PREFETCH_JOB_BYTES */
			for (uint32_t f = i; f <= last && rc == 0;) {
				uint32_t t = f;
				while (t < last &&
				       l->chunks[t + 1].comp_end - l->chunks[f].offset <=
					   PREFETCH_JOB_BYTES)
					t++;
				struct lfs_run r = {f, t - f + 1};
				rc = push_prefetch_job(l, &head, &tail, &r, 1);
				f = t + 1;
			}
		} else {
			int64_t cap = head ? PREFETCH_MULTI_BYTES : PREFETCH_FIRST_MULTI_BYTES;
			if (npend == LFS_JOB_MAX_RUNS || (npend > 0 && pend_bytes + bytes > cap)) {
				rc = push_prefetch_job(l, &head, &tail, pend, npend);
				npend = 0;
				pend_bytes = 0;
			}
			pend[npend++] = (struct lfs_run){i, last - i + 1};
			pend_bytes += bytes;
		}
		i = last + 1;
	}
	if (rc == 0)
		push_prefetch_job(l, &head, &tail, pend, npend);
	pthread_mutex_unlock(&l->lock);
	lfs_fetch_enqueue(l->rt, head);
}

void lfs_fetch_layer_start(struct lfs_layer *l)
{
	if (!l->no_prefetch && l->partial)
		queue_partial_prefetch(l, l->prefetch_chunks);
	else if (!l->no_prefetch && l->prefetch_chunks > 0)
		lfs_fetch_queue_range(l, 0, l->prefetch_chunks - 1, LFS_PRIO_PREFETCH);
	if (!l->no_background && l->nchunks > 0) {
		atomic_store(&l->bg_active, true);
		pthread_mutex_lock(&l->rt->lock);
		l->rt->last_demand_ms = lfs_now_ms();
		pthread_cond_broadcast(&l->rt->queue_cond);
		pthread_mutex_unlock(&l->rt->lock);
	}
}

/* The next background job of l, or NULL (none now, or none left). */
static struct lfs_job *background_job(struct lfs_layer *l)
{
	struct lfs_job *head = NULL, *tail = NULL;
	bool complete = false;
	pthread_mutex_lock(&l->lock);
	if (l->prefetch_pending > 0 || lfs_now_ms() < l->bg_retry_at)
		goto out;
	if (!atomic_load(&l->diffid_stream_off)) {
		/* One stream for the rest of the chunks and the diffID check. */
		pthread_mutex_unlock(&l->lock);
		if (lfs_diffid_stream(l))
			return NULL;
		pthread_mutex_lock(&l->lock);
	}
	uint32_t i = l->bg_cursor;
	while (i < l->nchunks && busy_or_done(l, i))
		i++;
	if (i == l->nchunks) {
		bool all = true;
		for (uint32_t k = 0; k < l->nchunks && all; k++)
			all = l->chunk_state[k] & LFS_CHUNK_FETCHED;
		complete = all;
		if (all)
			atomic_store(&l->bg_active, false);
		else /* some in flight or failed: look again later */
			l->bg_retry_at = lfs_now_ms() + BACKGROUND_RETRY_MS;
		l->bg_cursor = 0;
		goto out;
	}
	int64_t start = l->chunks[i].offset;
	for (; i < l->nchunks && !busy_or_done(l, i); i++) {
		if (head &&
		    (!follows(l, i - 1) || l->chunks[i].comp_end - start > BACKGROUND_JOB_BYTES))
			break;
		if (job_add(l, &head, &tail, i, LFS_PRIO_BACKGROUND, BACKGROUND_JOB_BYTES) < 0)
			break;
		l->chunk_state[i] |= LFS_CHUNK_INFLIGHT;
	}
	l->bg_cursor = i;
out:
	pthread_mutex_unlock(&l->lock);
	if (complete)
		lfs_layer_complete(l);
	return head;
}

/* Under rt->lock: a background job from the next layer that has one. */
static struct lfs_job *pick_background_locked(struct lfs_runtime *rt)
{
	if (rt->bg_busy || lfs_now_ms() - rt->last_demand_ms < BACKGROUND_QUIET_MS)
		return NULL;
	uint32_t n = 0;
	for (struct lfs_layer *l = rt->layers; l; l = l->next)
		n++;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t want = (rt->bg_turn + k) % n, at = 0;
		struct lfs_layer *l = rt->layers;
		while (at < want) {
			l = l->next;
			at++;
		}
		if (!atomic_load(&l->bg_active) || !l->mounted)
			continue;
		/* background_job takes l->lock: never both locks at once. */
		lfs_layer_ref(l);
		rt->bg_busy = true;
		pthread_mutex_unlock(&rt->lock);
		struct lfs_job *j = background_job(l);
		lfs_layer_unref(l);
		pthread_mutex_lock(&rt->lock);
		if (j) {
			rt->bg_turn = want + 1;
			return j;
		}
		rt->bg_busy = false;
		n = 0;
		for (struct lfs_layer *m = rt->layers; m; m = m->next)
			n++;
		if (k >= n)
			break;
	}
	return NULL;
}

/* ---- running a job ------------------------------------------------------------ */

/* Inflates chunk i from its compressed bytes, checks it and caches it:
 * 1 ok, -1 bad data, 0 out of memory. */
static int8_t land_chunk(struct lfs_runtime *rt, struct lfs_layer *l, uint32_t i,
			 const uint8_t *comp, enum lfs_prio prio)
{
	const struct esgz_chunk *c = &l->chunks[i];
	struct cache_buf *b = NULL;
	struct rs_error derr = {0};
	if (cache_buf_new((size_t)c->size, &b) < 0)
		return 0;
	int d = esgz_chunk_decode(l->blob->footer.format, c, comp, (size_t)comp_len(c),
				  cache_buf_wdata(b), &derr);
	if (d < 0) {
		rs_log(RS_LOG_ERROR, "layerfs: %s: chunk at %lld: %s", l->digest,
		       (long long)c->offset, derr.msg);
		cache_buf_unref(b);
		return -1;
	}
	uint8_t key[RS_SHA256_LEN];
	lfs_chunk_key(l, i, key);
	struct rs_error cerr = {0};
	unsigned put = prio >= LFS_PRIO_PREFETCH    ? CACHE_PUT_WRITEBACK
		       : prio == LFS_PRIO_READAHEAD ? CACHE_PUT_ONCE
						    : 0;
	/* A legacy chunk's key is of its place: the disk tier keeps its sha256. */
	int pr = c->has_digest ? cache_put(rt->cache, key, b, put, &cerr)
			       : cache_put_unkeyed(rt->cache, key, b, put, &cerr);
	if (pr < 0)
		rs_log(RS_LOG_WARN, "layerfs: disk cache: %s", cerr.msg);
	cache_buf_unref(b);
	return 1;
}

/* Under l->lock: chunk i is no longer in flight; res as land_chunk's. True
 * when it was the last chunk its file's digest check waited for: the caller
 * runs lfs_file_check once it has let go of the lock. */
static bool settle_chunk_locked(struct lfs_layer *l, uint32_t i, int8_t res)
{
	uint8_t *st = &l->chunk_state[i];
	*st &= (uint8_t) ~(LFS_CHUNK_INFLIGHT | LFS_CHUNK_FAILED | LFS_CHUNK_BADDATA);
	if (res > 0) {
		bool first = !(*st & LFS_CHUNK_FETCHED);
		if (first)
			l->fetched_bytes += lfs_chunk_bytes(l, i);
		*st |= LFS_CHUNK_FETCHED;
		return first && lfs_file_chunk_in_locked(l, i);
	}
	*st |= LFS_CHUNK_FAILED;
	if (res < 0) {
		*st |= LFS_CHUNK_BADDATA;
		l->verify_errors++;
	}
	return false;
}

void lfs_chunk_land_settle(struct lfs_runtime *rt, struct lfs_layer *l, uint32_t i,
			   const uint8_t *comp, enum lfs_prio prio)
{
	int8_t res = land_chunk(rt, l, i, comp, prio);
	pthread_mutex_lock(&l->lock);
	bool check = settle_chunk_locked(l, i, res);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (check)
		lfs_file_check(l, i);
}

/* A run of several chunks streamed: each goes to the decode pool, and so to
 * its readers, as soon as its bytes are in, not when the whole run is. */
struct stream_run {
	struct lfs_runtime *rt;
	struct lfs_layer *l;
	uint8_t *buf;
	int64_t base;
	size_t got;
	uint32_t next, end; /* chunks [next, end) are still in flight */
	enum lfs_prio prio;
	struct lfs_decode_batch batch;
};

static int on_run_bytes(void *ctx, const void *data, size_t n)
{
	struct stream_run *s = ctx;
	memcpy(s->buf + s->got, data, n);
	s->got += n;
	while (s->next < s->end && s->l->chunks[s->next].comp_end - s->base <= (int64_t)s->got) {
		uint32_t i = s->next++;
		lfs_decode_submit(s->rt, &s->batch, s->l, i,
				  s->buf + (s->l->chunks[i].offset - s->base), s->prio);
	}
	return 0;
}

/* Streams the job's single run; returns the chunk where streaming stopped
 * (every chunk before it is settled) and the request's result in *r. A
 * registry that will not stream the range settles nothing. */
static uint32_t stream_job(struct lfs_runtime *rt, struct lfs_job *j, const struct reg_range *rg,
			   int *r, struct rs_error *err)
{
	struct lfs_layer *l = j->layer;
	struct stream_run s = {.rt = rt,
			       .l = l,
			       .buf = rg->buf,
			       .base = rg->off,
			       .next = j->runs[0].first,
			       .end = j->runs[0].first + j->runs[0].count,
			       .prio = j->prio};
	lfs_decode_batch_init(&s.batch);
	*r = reg_blob_read_stream(l->client, &l->ref, l->digest, rg->off, rg->len, on_run_bytes, &s,
				  err);
	lfs_decode_batch_finish(&s.batch); /* rg->buf is freed next */
	return s.next;
}

/* A job whose chunks the cache holds already (after a restart every chunk
 * starts unfetched) is settled from it, with no request: true when so. All
 * or nothing: a job with one chunk missing is fetched as it is. On-demand
 * jobs too: a readahead job a waiting reader promoted holds cached chunks
 * (an on-demand miss costs one index lookup here). */
static bool settle_cached(struct lfs_layer *l, struct lfs_job *j)
{
	for (uint32_t k = 0; k < j->nruns; k++) {
		const struct lfs_run *run = &j->runs[k];
		for (uint32_t i = run->first; i < run->first + run->count; i++) {
			uint8_t key[RS_SHA256_LEN];
			lfs_chunk_key(l, i, key);
			/* Presence only: reading each chunk here would read a whole
			 * layer from disk (through the memory tier) after every
			 * restart; the reader's get checks the bytes. */
			if (!cache_has(l->rt->cache, key, (uint64_t)l->chunks[i].size))
				return false;
		}
	}
	uint32_t total = 0, nchecks = 0;
	for (uint32_t k = 0; k < j->nruns; k++)
		total += j->runs[k].count;
	cleanup_free uint32_t *checks = malloc((total ? total : 1) * sizeof(*checks));
	if (!checks)
		return false;
	pthread_mutex_lock(&l->lock);
	for (uint32_t k = 0; k < j->nruns; k++) {
		const struct lfs_run *run = &j->runs[k];
		for (uint32_t i = run->first; i < run->first + run->count; i++)
			if (settle_chunk_locked(l, i, 1))
				checks[nchecks++] = i;
	}
	if (j->prefetch && l->prefetch_pending > 0)
		l->prefetch_pending--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	for (uint32_t c = 0; c < nchecks; c++)
		lfs_file_check(l, checks[c]);
	return true;
}

/* false when the registry failed it */
static bool run_job(struct lfs_runtime *rt, struct lfs_job *j)
{
	if (settle_cached(j->layer, j))
		return true;
	struct lfs_layer *l = j->layer;
	struct reg_range ranges[LFS_JOB_MAX_RUNS];
	/* From the cache's buffer pool: a fresh multi-MiB malloc per job cost
	 * page faults and clearing for every compressed byte. */
	struct cache_buf *bufs[LFS_JOB_MAX_RUNS] = {0};
	struct rs_error err = {0};
	int r = 0;
	memset(ranges, 0, sizeof(ranges));
	for (uint32_t k = 0; k < j->nruns && r == 0; k++) {
		const struct lfs_run *run = &j->runs[k];
		int64_t off = l->chunks[run->first].offset, end = off;
		for (uint32_t i = run->first; i < run->first + run->count; i++)
			if (l->chunks[i].comp_end > end)
				end = l->chunks[i].comp_end;
		ranges[k].off = off;
		ranges[k].len = (size_t)(end - off);
		if (cache_buf_new(ranges[k].len ? ranges[k].len : 1, &bufs[k]) < 0)
			r = rs_err(&err, -ENOMEM, "out of memory");
		else
			ranges[k].buf = cache_buf_wdata(bufs[k]);
	}
	/* Chunks before `from` were settled while streaming. */
	uint32_t from = j->runs[0].first;
	bool streamed = false;
	if (r == 0 && j->nruns == 1 && j->runs[0].count > 1 && ranges[0].len > 0) {
		from = stream_job(rt, j, &ranges[0], &r, &err);
		streamed = !(r == -EPROTO && from == j->runs[0].first);
		if (!streamed) {
			rs_log(RS_LOG_DEBUG, "layerfs: %s: %s; reading the range whole", l->digest,
			       err.msg);
			r = 0;
		}
	}
	if (r == 0 && !streamed)
		r = reg_blob_read(l->client, &l->ref, l->digest, ranges, j->nruns, &err);
	if (r < 0)
		rs_log(RS_LOG_WARN, "layerfs: %s: fetch failed: %s", l->digest, err.msg);

	uint32_t total = 0;
	for (uint32_t k = 0; k < j->nruns; k++)
		total += j->runs[k].count;
	int8_t *result = calloc(total ? total : 1, 1); /* 0 where the fetch failed */
	uint32_t at = 0;
	for (uint32_t k = 0; k < j->nruns; k++) {
		const struct lfs_run *run = &j->runs[k];
		for (uint32_t i = run->first; i < run->first + run->count; i++, at++) {
			if (r < 0 || !result || (streamed && i < from))
				continue;
			const uint8_t *comp =
			    (const uint8_t *)ranges[k].buf + (l->chunks[i].offset - ranges[k].off);
			result[at] = land_chunk(rt, l, i, comp, j->prio);
		}
	}
	for (uint32_t k = 0; k < j->nruns; k++)
		cache_buf_unref(bufs[k]);

	pthread_mutex_lock(&l->lock);
	at = 0;
	for (uint32_t k = 0; k < j->nruns; k++) {
		const struct lfs_run *run = &j->runs[k];
		for (uint32_t i = run->first; i < run->first + run->count; i++, at++)
			if (!(streamed && i < from) &&
			    settle_chunk_locked(l, i, result ? result[at] : 0))
				result[at] = 2; /* the file's last chunk: check it below */
	}
	if (r < 0) {
		l->fetch_errors++;
		if (j->prio == LFS_PRIO_BACKGROUND)
			l->bg_retry_at = lfs_now_ms() + BACKGROUND_RETRY_MS;
	}
	l->registry_ok = r == 0;
	if (j->prefetch && l->prefetch_pending > 0)
		l->prefetch_pending--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	at = 0;
	for (uint32_t k = 0; k < j->nruns && result; k++) {
		const struct lfs_run *run = &j->runs[k];
		for (uint32_t i = run->first; i < run->first + run->count; i++, at++)
			if (result[at] == 2)
				lfs_file_check(l, i);
	}
	free(result);
	return r == 0;
}

static void *fetcher_main(void *arg)
{
	struct lfs_runtime *rt = arg;
	pthread_mutex_lock(&rt->lock);
	while (!rt->stopping) {
		struct lfs_job *j =
		    lfs_queue_pop(rt->queue_head, rt->queue_tail, low_prio_allowed(rt));
		bool bg = false;
		/* Counted before the pick drops the lock: another fetcher must not
		 * take the last free slot meanwhile. */
		bool counted = false;
		if (!j && low_prio_allowed(rt)) {
			rt->low_running++;
			j = pick_background_locked(rt);
			bg = counted = j != NULL;
			if (!j)
				rt->low_running--;
		}
		if (!j) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&rt->queue_cond, &rt->lock, &ts);
			continue;
		}
		if (j->layer->closed) { /* a background job built while it closed */
			if (bg)
				rt->bg_busy = false;
			if (counted)
				rt->low_running--;
			pthread_mutex_unlock(&rt->lock);
			jobs_free(j);
			pthread_mutex_lock(&rt->lock);
			continue;
		}
		enum lfs_prio prio = j->prio;
		bool low = prio >= LFS_PRIO_PREFETCH;
		if (low && !counted)
			rt->low_running++;
		pthread_mutex_unlock(&rt->lock);
		bool fetched = run_job(rt, j);
		jobs_free(j);
		pthread_mutex_lock(&rt->lock);
		rt->low_running -= low;
		if (low)
			pthread_cond_broadcast(&rt->queue_cond);
		if (bg) {
			rt->bg_busy = false;
			pthread_cond_broadcast(&rt->queue_cond);
		}
		/* A read the registry failed holds no link to share: with the
		 * registry gone, failing reads must not keep the background
		 * fetch (which may settle whole layers from the disk cache)
		 * waiting for ever. */
		if (prio <= LFS_PRIO_READAHEAD && fetched)
			rt->last_demand_ms = lfs_now_ms();
	}
	pthread_mutex_unlock(&rt->lock);
	return NULL;
}

int lfs_fetch_start(struct lfs_runtime *rt, int nfetchers, struct rs_error *err)
{
	int dr = lfs_decode_start(rt, err);
	if (dr < 0)
		return dr;
	pthread_mutex_lock(&rt->lock);
	rt->fetch_pool = nfetchers;
	pthread_mutex_unlock(&rt->lock);
	rt->fetchers = calloc((size_t)nfetchers, sizeof(pthread_t));
	if (!rt->fetchers)
		return rs_err(err, -ENOMEM, "out of memory");
	for (; rt->nfetchers < nfetchers; rt->nfetchers++) {
		int r = pthread_create(&rt->fetchers[rt->nfetchers], NULL, fetcher_main, rt);
		if (r)
			return rs_err(err, -r, "starting fetch threads: %s", strerror(r));
	}
	return 0;
}

void lfs_fetch_stop(struct lfs_runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
	rt->stopping = true;
	pthread_cond_broadcast(&rt->queue_cond);
	pthread_mutex_unlock(&rt->lock);
	for (int i = 0; i < rt->nfetchers; i++)
		pthread_join(rt->fetchers[i], NULL);
	free(rt->fetchers);
	rt->fetchers = NULL;
	rt->nfetchers = 0;
	lfs_decode_stop(rt);
	pthread_mutex_lock(&rt->lock);
	for (int p = 0; p < LFS_NPRIO; p++) {
		jobs_free(rt->queue_head[p]);
		rt->queue_head[p] = rt->queue_tail[p] = NULL;
	}
	pthread_mutex_unlock(&rt->lock);
}

void lfs_fetch_cancel(struct lfs_runtime *rt, struct lfs_layer *l)
{
	pthread_mutex_lock(&rt->lock);
	l->closed = true;
	struct lfs_job *dropped = lfs_queue_take_layer(rt->queue_head, rt->queue_tail, l);
	pthread_mutex_unlock(&rt->lock);
	/* Their chunks stay marked in flight: the layer is going away. */
	jobs_free(dropped);
}

/* ---- readers ------------------------------------------------------------------ */

static int wait_deadline(struct lfs_layer *l, int64_t deadline_ms)
{
	int64_t now = lfs_now_ms();
	if (now >= deadline_ms)
		return -ETIMEDOUT;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + (deadline_ms - now) % 1000 * 1000000;
	ts.tv_sec += (deadline_ms - now) / 1000 + ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	int r = pthread_cond_timedwait(&l->cond, &l->lock, &ts);
	return r == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* Under l->lock: adds the small chunks that follow run ends to the job,
 * within LFS_JOB_MAX_BYTES for the whole job. */
static void add_neighbours(struct lfs_layer *l, struct lfs_job *head)
{
	for (struct lfs_job *j = head; j; j = j->next) {
		int64_t total = job_bytes(l, j);
		for (uint32_t k = 0; k < j->nruns; k++) {
			struct lfs_run *run = &j->runs[k];
			int64_t added = 0;
			for (;;) {
				uint32_t last = run->first + run->count - 1, next = last + 1;
				if (next >= l->nchunks || busy_or_done(l, next) ||
				    !follows(l, last))
					break;
				if (k + 1 < j->nruns && next >= j->runs[k + 1].first)
					break;
				int64_t len = comp_len(&l->chunks[next]);
				if (len > NEIGHBOUR_MAX || added + len > NEIGHBOURS_MAX_BYTES ||
				    total + len > LFS_JOB_MAX_BYTES)
					break;
				l->chunk_state[next] |= LFS_CHUNK_INFLIGHT;
				run->count++;
				added += len;
				total += len;
			}
		}
	}
}

/* The cached bytes of chunk i, or NULL. A key names content, not a size:
 * a value of another length (another layer's TOC gave the same chunkDigest
 * a different size, or a legacy key's place held other bytes) is a miss,
 * else a read would copy past it or serve bytes the chunk never had. */
struct cache_buf *lfs_chunk_cached(struct lfs_layer *l, uint32_t i)
{
	uint8_t key[RS_SHA256_LEN];
	struct cache_buf *b = NULL;
	lfs_chunk_key(l, i, key);
	if (cache_get(l->rt->cache, key, &b, NULL) < 0)
		return NULL;
	if ((uint64_t)cache_buf_len(b) == (uint64_t)l->chunks[i].size)
		return b;
	cache_buf_unref(b);
	pthread_mutex_lock(&l->lock);
	l->cache_size_mismatches++;
	pthread_mutex_unlock(&l->lock);
	rs_log(RS_LOG_WARN,
	       "layerfs: %s: cached chunk at blob offset %lld has another size than its %lld "
	       "bytes; fetching it again",
	       l->digest, (long long)l->chunks[i].offset, (long long)l->chunks[i].size);
	return NULL;
}

int lfs_chunks_get(struct lfs_layer *l, const uint32_t *ids, uint32_t n, struct cache_buf **out,
		   int64_t deadline_ms, struct rs_error *err)
{
	uint32_t missing = 0;
	for (uint32_t i = 0; i < n; i++)
		out[i] = NULL;
	if (lfs_layer_failed(l))
		return rs_err(err, -EIO, "the layer failed its diffID check");
	for (uint32_t i = 0; i < n; i++) {
		if (l->chunks[ids[i]].size == 0)
			continue;
		out[i] = lfs_chunk_cached(l, ids[i]);
		if (!out[i])
			missing++;
	}
	if (missing == 0)
		return 0;
	uint8_t *tries = calloc(n, 1); /* 0: not asked by us; k: asked k times */
	if (!tries) {
		for (uint32_t i = 0; i < n; i++)
			cache_buf_unref(out[i]);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	int r = 0;
	while (r == 0) {
		struct lfs_job *head = NULL, *tail = NULL;
		uint32_t waiting_for = UINT32_MAX;
		bool any_missing = false;
		pthread_mutex_lock(&l->lock);
		for (uint32_t i = 0; i < n && r == 0; i++) {
			if (out[i] || l->chunks[ids[i]].size == 0)
				continue;
			any_missing = true;
			uint8_t st = l->chunk_state[ids[i]];
			if (st & LFS_CHUNK_INFLIGHT) {
				if (waiting_for == UINT32_MAX)
					waiting_for = ids[i];
				continue;
			}
			if (tries[i] && (st & LFS_CHUNK_FAILED)) {
				r = rs_err(err, -EIO, "%s at blob offset %lld",
					   (st & LFS_CHUNK_BADDATA) ? "chunk failed verification"
								    : "chunk could not be fetched",
					   (long long)l->chunks[ids[i]].offset);
				break;
			}
			if (tries[i] >= MAX_REFETCH) {
				r = rs_err(err, -EIO,
					   "chunk at blob offset %lld keeps leaving the cache",
					   (long long)l->chunks[ids[i]].offset);
				break;
			}
			if (job_add(l, &head, &tail, ids[i], LFS_PRIO_ONDEMAND, LFS_JOB_MAX_BYTES) <
			    0) {
				r = rs_err(err, -ENOMEM, "out of memory");
				break;
			}
			l->chunk_state[ids[i]] |= LFS_CHUNK_INFLIGHT;
			tries[i]++;
		}
		if (r == 0 && head)
			add_neighbours(l, head);
		pthread_mutex_unlock(&l->lock);
		lfs_fetch_enqueue(l->rt, head);
		if (r < 0 || !any_missing)
			break;
		if (waiting_for != UINT32_MAX)
			promote(l->rt, l, waiting_for);

		/* Wait until one of ours is no longer in flight. */
		pthread_mutex_lock(&l->lock);
		for (;;) {
			bool all_inflight = true;
			for (uint32_t i = 0; i < n && all_inflight; i++)
				if (!out[i] && l->chunks[ids[i]].size &&
				    !(l->chunk_state[ids[i]] & LFS_CHUNK_INFLIGHT))
					all_inflight = false;
			if (!all_inflight)
				break;
			if (l->closing) {
				r = rs_err(err, -EIO, "the layer is being unmounted");
				break;
			}
			if (wait_deadline(l, deadline_ms) == -ETIMEDOUT) {
				r = rs_err(err, -EIO,
					   "timed out after %ld ms waiting for the registry",
					   l->read_timeout_ms);
				break;
			}
		}
		pthread_mutex_unlock(&l->lock);
		if (r < 0)
			break;
		for (uint32_t i = 0; i < n; i++)
			if (!out[i] && l->chunks[ids[i]].size != 0)
				out[i] = lfs_chunk_cached(l, ids[i]);
	}
	free(tries);
	if (r < 0)
		for (uint32_t i = 0; i < n; i++) {
			cache_buf_unref(out[i]);
			out[i] = NULL;
		}
	return r;
}
