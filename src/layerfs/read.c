/* SPDX-License-Identifier: Apache-2.0 */
/* The read path: (file, offset, length) -> the chunks that cover it -> the
 * cache, or a fetch of what is missing -> one reply gathered from the cached
 * buffers (no copy in between). For a sequential reader the next chunks of
 * the file are queued for readahead, so that it finds them fetched. */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "layerfs_internal.h"

#define READAHEAD_CHUNKS 4
#define STACK_CHUNKS 16

/* The chunks after next of a file read sequentially. Not those marked
 * noPrefetch while the mount keeps the recorded readahead: the recorded
 * workload read them not, and the kernel's 64 KiB windows walking through
 * a mapped file look sequential. */
static void queue_readahead(struct lfs_layer *l, const struct esgz_chunk *fc, uint32_t nc,
			    uint32_t next)
{
	if (next >= nc)
		return;
	uint32_t last = next + READAHEAD_CHUNKS - 1;
	if (last >= nc)
		last = nc - 1;
	if (atomic_load(&l->readahead_low)) {
		uint32_t k = next;
		while (k <= last && !fc[k].no_prefetch)
			k++;
		if (k == next)
			return;
		last = k - 1;
	}
	lfs_fetch_queue_range(l, (uint32_t)(&fc[next] - l->chunks),
			      (uint32_t)(&fc[last] - l->chunks), LFS_PRIO_READAHEAD);
}

/* Whether a read continues one that ended at off (the kernel's readahead
 * issues such reads), and remembers where this one ends. Scattered reads (a
 * program faulting in pages of a big mapped file here and there) get no
 * chunk readahead: it would fetch megabytes nobody reads. */
static bool sequential(struct lfs_layer *l, uint32_t node, int64_t off, int64_t end)
{
	pthread_mutex_lock(&l->lock);
	struct lfs_stream *slot = NULL, *victim = NULL;
	for (uint32_t i = 0; i < LFS_STREAMS && !slot; i++) {
		struct lfs_stream *st = &l->streams[i];
		if (st->node == node + 1 && st->next == off) {
			slot = st;
			break;
		}
		/* Scattered reads replace one another, not the streams that
		 * proved sequential. */
		if (!victim || (st->matched ? 1 : 0) < (victim->matched ? 1 : 0) ||
		    (st->matched == victim->matched && st->used < victim->used))
			victim = st;
	}
	bool seq = slot != NULL;
	if (!slot) {
		slot = victim;
		slot->node = node + 1;
		slot->matched = false;
	} else {
		slot->matched = true;
	}
	slot->next = end;
	slot->used = ++l->stream_clock;
	pthread_mutex_unlock(&l->lock);
	return seq;
}

uint32_t lfs_read_span(const struct esgz_index *idx, uint32_t node, int64_t off, size_t size,
		       uint32_t *first, int64_t *end)
{
	const struct esgz_node *n = esgz_index_node(idx, node);
	*first = 0;
	*end = off;
	if (n->type != ESGZ_REG || off < 0 || off >= n->size || size == 0)
		return 0;
	/* size comes from the kernel and off is below n->size: no overflow. */
	*end = size >= (uint64_t)(n->size - off) ? n->size : off + (int64_t)size;
	uint32_t nc;
	const struct esgz_chunk *fc = esgz_index_chunks(idx, node, &nc);
	const struct esgz_chunk *c = esgz_index_chunk_at(idx, node, off);
	uint32_t f = c ? (uint32_t)(c - fc) : nc;
	uint32_t last = f;
	while (last < nc && fc[last].file_offset < *end)
		last++;
	*first = f;
	return last - f;
}

int lfs_read_pieces(const struct esgz_chunk *fc, uint32_t count, struct cache_buf *const *bufs,
		    int64_t off, int64_t end, struct iovec *iov, size_t *np)
{
	static const char zeros[LFS_HOLE_PIECE];
	size_t n = 0;
	int64_t pos = off;
	*np = 0;
	for (uint32_t k = 0; k < count && pos < end; k++) {
		const struct esgz_chunk *c = &fc[k];
		if (c->size < 0 || c->file_offset < 0 || c->file_offset > INT64_MAX - c->size)
			return -EIO;
		if (c->file_offset > pos) { /* a hole: zeros (bounded by the static page) */
			size_t z = (size_t)(c->file_offset - pos);
			if (z > sizeof(zeros))
				z = sizeof(zeros);
			iov[n++] = (struct iovec){.iov_base = (void *)zeros, .iov_len = z};
			pos += (int64_t)z;
			if (pos < c->file_offset)
				break;
		}
		int64_t cend = c->file_offset + c->size;
		if (cend > end)
			cend = end;
		if (cend <= pos)
			continue;
		/* The only bytes a reply may carry are the chunk's own. */
		if (!bufs[k] || (uint64_t)cache_buf_len(bufs[k]) != (uint64_t)c->size)
			return -EIO;
		iov[n++] = (struct iovec){
		    .iov_base = (void *)(cache_buf_data(bufs[k]) + (pos - c->file_offset)),
		    .iov_len = (size_t)(cend - pos),
		};
		pos = cend;
	}
	*np = n;
	return 0;
}

/* Many small chunks (a TOC may cut a file as fine as it likes): more pieces
 * than one writev takes are copied into one buffer. */
static void reply_gathered(struct rfuse_req *req, const struct iovec *iov, size_t np)
{
	size_t total = 0;
	for (size_t i = 0; i < np; i++)
		total += iov[i].iov_len;
	cleanup_free char *buf = malloc(total ? total : 1);
	if (!buf) {
		rfuse_reply_err(req, ENOMEM);
		return;
	}
	size_t pos = 0;
	for (size_t i = 0; i < np; i++) {
		memcpy(buf + pos, iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	rfuse_reply_buf(req, buf, total);
}

void lfs_do_read(struct lfs_layer *l, struct rfuse_req *req, uint32_t node, size_t size, off_t off)
{
	const struct esgz_node *n = esgz_index_node(l->idx, node);
	if (n->type != ESGZ_REG || lfs_is_whiteout(l, node)) {
		rfuse_reply_err(req, EINVAL);
		return;
	}
	if (lfs_file_bad(l, node)) {
		rs_log(RS_LOG_ERROR, "layerfs: %s: read of %s: the file failed its digest check",
		       l->digest, esgz_node_name(l->idx, n));
		rfuse_reply_err(req, EIO);
		return;
	}
	uint32_t first;
	int64_t end;
	uint32_t count = lfs_read_span(l->idx, node, off, size, &first, &end);
	if (count == 0 && end <= off) {
		rfuse_reply_buf(req, NULL, 0);
		return;
	}
	uint32_t nc;
	const struct esgz_chunk *fc = esgz_index_chunks(l->idx, node, &nc);
	uint32_t last = first + count;

	uint32_t ids_stack[STACK_CHUNKS];
	struct cache_buf *bufs_stack[STACK_CHUNKS];
	uint32_t *ids = ids_stack;
	struct cache_buf **bufs = bufs_stack;
	struct iovec *iov = NULL;
	if (count > STACK_CHUNKS) {
		ids = malloc(count * sizeof(*ids));
		bufs = malloc(count * sizeof(*bufs));
		if (!ids || !bufs) {
			rfuse_reply_err(req, ENOMEM);
			goto out_nobufs;
		}
	}
	for (uint32_t k = 0; k < count; k++)
		ids[k] = (uint32_t)(&fc[first + k] - l->chunks);
	struct rs_error err = {0};
	int r = lfs_chunks_get(l, ids, count, bufs, lfs_now_ms() + l->read_timeout_ms, &err);
	if (r < 0) {
		rs_log(RS_LOG_ERROR, "layerfs: %s: read of %s [%lld, +%zu): %s", l->digest,
		       esgz_node_name(l->idx, n), (long long)off, size, err.msg);
		rfuse_reply_err(req, EIO);
		goto out_nobufs;
	}
	if (sequential(l, node, off, end))
		queue_readahead(l, fc, nc, last);

	/* Written to the kernel straight from the cached buffers
	 * (one writev: no copy into a reply buffer). */
	iov = malloc((2 * (size_t)count + 1) * sizeof(*iov));
	if (!iov) {
		rfuse_reply_err(req, ENOMEM);
		goto out;
	}
	size_t np = 0;
	if (lfs_read_pieces(fc + first, count, bufs, off, end, iov, &np) < 0) {
		rs_log(RS_LOG_ERROR,
		       "layerfs: %s: read of %s [%lld, +%zu): a cached chunk does not fit the TOC",
		       l->digest, esgz_node_name(l->idx, n), (long long)off, size);
		rfuse_reply_err(req, EIO);
		goto out;
	}
	if (np == 0)
		rfuse_reply_buf(req, NULL, 0);
	else if (np <= LFS_REPLY_IOV_MAX)
		rfuse_reply_data(req, iov, (int)np);
	else
		reply_gathered(req, iov, np);
out:
	for (uint32_t k = 0; k < count; k++)
		cache_buf_unref(bufs[k]);
out_nobufs:
	free(iov);
	if (ids != ids_stack)
		free(ids);
	if (bufs != bufs_stack)
		free(bufs);
}
