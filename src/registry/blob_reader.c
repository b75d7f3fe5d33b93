// SPDX-License-Identifier: Apache-2.0
/* struct esgz_reader over a registry blob: each read is one range request,
 * except what falls in the blob's tail when the reader was opened with one
 * (reg_blob_reader_tail): that is served from memory. */
#include <errno.h>
#include <string.h>

#include "estargz/estargz.h"
#include "ops_internal.h"

struct blob_reader {
	struct reg_client *c;
	struct reg_ref ref; /* owned copies */
	char *digest;
	int64_t size;
	uint8_t *tail; /* the blob's last tail_len bytes, or NULL */
	size_t tail_len;
};

static void blob_reader_close(void *ctx)
{
	struct blob_reader *br = ctx;
	if (!br)
		return;
	free(br->ref.domain);
	free(br->ref.path);
	free(br->ref.tag);
	free(br->ref.digest);
	free(br->digest);
	free(br->tail);
	free(br);
}

static int blob_reader_read_at(void *ctx, void *buf, size_t len, int64_t off, struct rs_error *err)
{
	struct blob_reader *br = ctx;
	if (off < 0 || off > br->size || (uint64_t)len > (uint64_t)(br->size - off))
		return rs_err(err, -ERANGE,
			      "blob %s: read of %zu bytes at %lld is past its end (%lld)",
			      br->digest, len, (long long)off, (long long)br->size);
	int64_t tail_off = br->size - (int64_t)br->tail_len;
	if (br->tail && off + (int64_t)len > tail_off) {
		/* The part in the tail comes from memory, the rest from the registry. */
		int64_t from = off > tail_off ? off : tail_off;
		memcpy((uint8_t *)buf + (from - off), br->tail + (from - tail_off),
		       (size_t)(off + (int64_t)len - from));
		len = (size_t)(from - off);
		if (len == 0)
			return 0;
	}
	struct reg_range r = {off, len, buf};
	return reg_blob_read(br->c, &br->ref, br->digest, &r, 1, err);
}

static int dup_str(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

int reg_blob_reader_tail(struct reg_client *c, const struct reg_ref *ref, const char *digest,
			 size_t tail_len, struct esgz_reader *out, struct rs_error *err)
{
	struct rs_buf tail = {0};
	int64_t size;
	int r = reg_blob_read_tail(c, ref, digest, tail_len, &tail, &size, err);
	if (r == -EFBIG || r == -EBADMSG || r == -ERANGE) {
		/* No suffix ranges here (a whole blob came, or a bad answer):
		 * fall back to its size by HEAD and plain range reads. */
		rs_log(RS_LOG_DEBUG, "registry %s: tail read of %s failed (%s); using HEAD",
		       ref->domain, digest, err ? err->msg : "");
		return reg_blob_reader(c, ref, digest, -1, out, err);
	}
	if (r < 0)
		return r;
	r = reg_blob_reader(c, ref, digest, size, out, err);
	if (r < 0) {
		rs_buf_free(&tail);
		return r;
	}
	struct blob_reader *br = out->ctx;
	br->tail = tail.data;
	br->tail_len = tail.len;
	return 0;
}

int reg_blob_reader(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		    int64_t size, struct esgz_reader *out, struct rs_error *err)
{
	if (!reg_digest_valid(digest))
		return rs_err(err, -EINVAL, "bad blob digest '%.80s'", digest ? digest : "");
	if (size < 0) {
		int r = reg_blob_size(c, ref, digest, &size, err);
		if (r < 0)
			return r;
	}
	struct blob_reader *br = calloc(1, sizeof(*br));
	if (!br)
		return rs_err(err, -ENOMEM, "out of memory");
	br->c = c;
	br->size = size;
	if (dup_str(ref->domain, &br->ref.domain) < 0 || dup_str(ref->path, &br->ref.path) < 0 ||
	    dup_str(ref->tag, &br->ref.tag) < 0 || dup_str(ref->digest, &br->ref.digest) < 0 ||
	    dup_str(digest, &br->digest) < 0) {
		blob_reader_close(br);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	*out = (struct esgz_reader){
	    .ctx = br, .size = size, .read_at = blob_reader_read_at, .close = blob_reader_close};
	return 0;
}
