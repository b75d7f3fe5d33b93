// SPDX-License-Identifier: Apache-2.0
/* Reading blobs: size by HEAD, byte ranges (coalesced, several per request
 * as multipart/byteranges where the registry can, one per request where it
 * cannot), and whole blobs streamed to a file with their digest checked. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops_internal.h"
#include "registry_internal.h"

/* A server that ignores Range may still be used when the blob is this small. */
#define SMALL_BLOB_MAX (1 << 20)
/* Ranges per multi-range request, and a bound on one reply's framing. */
#define RANGES_PER_REQUEST 64
#define PART_OVERHEAD 512

/* ---- hosts known not to answer several ranges at once ------------------- */

/* Guards no_multi: (client, host) pairs that answered a multi-range request
 * with one range or an error. A small ring: forgetting costs one request. */
static pthread_mutex_t no_multi_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const struct reg_client *c;
	char host[256];
} no_multi[32];
static size_t no_multi_next;

static bool multi_unsupported(const struct reg_client *c, const char *host)
{
	bool found = false;
	pthread_mutex_lock(&no_multi_lock);
	for (size_t i = 0; i < sizeof(no_multi) / sizeof(no_multi[0]) && !found; i++)
		found = no_multi[i].c == c && strcmp(no_multi[i].host, host) == 0;
	pthread_mutex_unlock(&no_multi_lock);
	return found;
}

static void multi_mark_unsupported(const struct reg_client *c, const char *host)
{
	if (multi_unsupported(c, host))
		return;
	rs_log(RS_LOG_INFO,
	       "registry %s does not answer multi-range requests; using one range "
	       "per request",
	       host);
	pthread_mutex_lock(&no_multi_lock);
	size_t i = no_multi_next++ % (sizeof(no_multi) / sizeof(no_multi[0]));
	no_multi[i].c = c;
	snprintf(no_multi[i].host, sizeof(no_multi[i].host), "%s", host);
	pthread_mutex_unlock(&no_multi_lock);
}

/* ---- helpers --------------------------------------------------------------- */

static int blob_path(const char *digest, char *out, size_t size, struct rs_error *err)
{
	if (!reg_digest_valid(digest))
		return rs_err(err, -EINVAL, "bad blob digest '%.80s'", digest ? digest : "");
	snprintf(out, size, "blobs/%s", digest);
	return 0;
}

/* Copies the bytes [off, off+len) of the blob into every range they overlap. */
static void scatter(struct reg_range *ranges, size_t n, int64_t off, const uint8_t *data,
		    size_t len)
{
	int64_t end = off + (int64_t)len;
	for (size_t i = 0; i < n; i++) {
		int64_t a = ranges[i].off, b = ranges[i].off + (int64_t)ranges[i].len;
		int64_t lo = a > off ? a : off, hi = b < end ? b : end;
		if (lo < hi)
			memcpy((uint8_t *)ranges[i].buf + (lo - a), data + (lo - off),
			       (size_t)(hi - lo));
	}
}

bool reg_spans_fill(const struct reg_span *s, const struct reg_part *parts, size_t np,
		    struct reg_range *ranges, size_t n)
{
	int64_t pos = s->off;
	while (pos < s->end) {
		const struct reg_part *p = NULL;
		for (size_t i = 0; i < np && !p; i++)
			if (parts[i].first <= pos && pos <= parts[i].last)
				p = &parts[i];
		if (!p)
			return false;
		int64_t hi = p->last + 1 < s->end ? p->last + 1 : s->end;
		scatter(ranges, n, pos, p->data + (pos - p->first), (size_t)(hi - pos));
		pos = hi;
	}
	return true;
}

static int ignores_range(const struct reg_ref *ref, const char *digest, struct rs_error *err)
{
	return rs_err(err, -EPROTO,
		      "registry %s ignores Range requests: it sent more than the bytes asked for "
		      "of blob %s (a whole blob is used only up to %d bytes)",
		      ref->domain, digest, SMALL_BLOB_MAX);
}

/* A 200 reply: the whole blob, which fit under the reply bound (the bytes
 * asked for, or SMALL_BLOB_MAX for a few small ranges). */
static int from_whole(const struct reg_ref *ref, const char *digest,
		      const struct reg_http_resp *resp, const struct reg_span *spans, size_t ns,
		      struct reg_range *ranges, size_t n, struct rs_error *err)
{
	struct reg_part whole = {0, (int64_t)resp->body.len - 1, resp->body.data, resp->body.len};
	for (size_t i = 0; i < ns; i++)
		if (!reg_spans_fill(&spans[i], &whole, 1, ranges, n))
			return rs_err(err, -ERANGE,
				      "registry %s: blob %s: bytes %lld-%lld are beyond its end "
				      "(%zu)",
				      ref->domain, digest, (long long)spans[i].off,
				      (long long)spans[i].end - 1, resp->body.len);
	return 0;
}

/* The transport's error for a reply past max_body means a server that sent
 * the whole blob. */
static int http_error(int r, const struct reg_ref *ref, const char *digest, struct rs_error *err)
{
	if (r == -EFBIG || r == -EMSGSIZE)
		return ignores_range(ref, digest, err);
	return r;
}

/* ---- one range per request ------------------------------------------------- */

static int read_single(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		       const struct reg_span *s, struct reg_range *ranges, size_t n,
		       struct rs_error *err)
{
	char path[128], range[96];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	snprintf(range, sizeof(range), "Range: bytes=%lld-%lld", (long long)s->off,
		 (long long)s->end - 1);
	const char *headers[] = {range, NULL};
	int64_t want = s->end - s->off;
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body_fd = -1,
				   .max_body = want > SMALL_BLOB_MAX ? want : SMALL_BLOB_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	/* The body's size is known. A span that is exactly one caller's range
	 * lands in its buffer (no copy, no fresh memory); others get one
	 * allocation that never grows. */
	struct reg_range *own = NULL;
	size_t inside = 0; /* ranges the span holds (merged ones overlap it) */
	for (size_t i = 0; i < n && want >= SMALL_BLOB_MAX; i++) {
		int64_t end = ranges[i].off + (int64_t)ranges[i].len;
		if (ranges[i].len && ranges[i].off < s->end && end > s->off)
			inside++;
		if (ranges[i].off == s->off && (int64_t)ranges[i].len == want)
			own = &ranges[i];
	}
	if (inside != 1)
		own = NULL;
	if (own) {
		resp.body = (struct rs_buf){.data = own->buf, .cap = own->len};
		resp.body_borrowed = true;
	} else if (rs_buf_reserve(&resp.body, (size_t)want) < 0) {
		return rs_err(err, -ENOMEM, "out of memory");
	}
	r = reg_http_do(c, &req, &resp, err);
	if (own && r == 0 && resp.status == 200) {
		/* A whole blob in the range's buffer: copy it out before filling. */
		struct rs_buf whole = {0};
		if (rs_buf_append(&whole, resp.body.data, resp.body.len) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
		resp.body_borrowed = false;
		resp.body = whole;
	}
	if (r < 0)
		return http_error(r, ref, digest, err);
	int64_t first, last, total;
	if (resp.status == 206) {
		if (reg_content_range_parse(resp.content_range, &first, &last, &total) < 0) {
			r = rs_err(
			    err, -EBADMSG, "registry %s: bad Content-Range '%.80s' for blob %s",
			    ref->domain, resp.content_range ? resp.content_range : "", digest);
		} else if ((int64_t)resp.body.len != last - first + 1) {
			r = rs_err(err, -EBADMSG,
				   "registry %s: blob %s bytes %lld-%lld truncated (%zu of %lld "
				   "bytes)",
				   ref->domain, digest, (long long)first, (long long)last,
				   resp.body.len, (long long)(last - first + 1));
		} else {
			struct reg_part p = {first, last, resp.body.data, resp.body.len};
			if (own && first == s->off && resp.body.len == own->len)
				; /* already in place */
			else if (!reg_spans_fill(s, &p, 1, ranges, n))
				r = rs_err(err, -EBADMSG,
					   "registry %s: asked for bytes %lld-%lld of blob %s, got "
					   "%lld-%lld",
					   ref->domain, (long long)s->off, (long long)s->end - 1,
					   digest, (long long)first, (long long)last);
		}
	} else if (resp.status == 200) {
		r = from_whole(ref, digest, &resp, s, 1, ranges, n, err);
	} else if (resp.status == 416) {
		r = rs_err(err, -ERANGE, "blob %s: bytes %lld-%lld are beyond its end", digest,
			   (long long)s->off, (long long)s->end - 1);
	} else {
		r = reg_http_status_error(&req, &resp, "reading blob", err);
	}
	return r;
}

/* ---- several ranges per request -------------------------------------------- */

/* One request for spans; the ones the reply does not cover are flagged in
 * missing[] for single-range requests. */
static int read_multi(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		      const struct reg_span *spans, size_t ns, bool *missing,
		      struct reg_range *ranges, size_t n, struct rs_error *err)
{
	char path[128];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	struct rs_buf hdr = {0};
	int64_t want = 0;
	r = rs_buf_printf(&hdr, "Range: bytes=");
	for (size_t i = 0; i < ns && r >= 0; i++) {
		r = rs_buf_printf(&hdr, "%s%lld-%lld", i ? "," : "", (long long)spans[i].off,
				  (long long)spans[i].end - 1);
		want += spans[i].end - spans[i].off + PART_OVERHEAD;
	}
	if (r < 0 || rs_buf_append(&hdr, "", 1) < 0) {
		rs_buf_free(&hdr);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	const char *headers[] = {(const char *)hdr.data, NULL};
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body_fd = -1,
				   .max_body = want > SMALL_BLOB_MAX ? want : SMALL_BLOB_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	if (rs_buf_reserve(&resp.body, (size_t)want) < 0) {
		rs_buf_free(&hdr);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	struct reg_part *parts = NULL, one;
	size_t np = 0;
	r = reg_http_do(c, &req, &resp, err);
	rs_buf_free(&hdr);
	if (r < 0)
		return http_error(r, ref, digest, err);
	for (size_t i = 0; i < ns; i++)
		missing[i] = true;
	if (resp.status == 206 && resp.content_type &&
	    strncasecmp(resp.content_type, "multipart/", 10) == 0) {
		r = reg_multipart_parse(resp.content_type, resp.body.data, resp.body.len, &parts,
					&np, err);
		if (r < 0)
			rs_error_prefix(err, "registry %s, blob %s", ref->domain, digest);
	} else if (resp.status == 206) {
		int64_t total;
		if (reg_content_range_parse(resp.content_range, &one.first, &one.last, &total) <
			0 ||
		    (int64_t)resp.body.len != one.last - one.first + 1) {
			r = rs_err(err, -EBADMSG,
				   "registry %s: blob %s: bad or truncated range reply "
				   "(Content-Range '%.80s', %zu bytes)",
				   ref->domain, digest,
				   resp.content_range ? resp.content_range : "", resp.body.len);
		} else {
			one.data = resp.body.data;
			one.len = resp.body.len;
			parts = &one;
			np = 1;
		}
	} else if (resp.status == 200) {
		r = from_whole(ref, digest, &resp, spans, ns, ranges, n, err);
		for (size_t i = 0; i < ns && r == 0; i++)
			missing[i] = false;
	} else if (resp.status == 416 || resp.status == 400) {
		multi_mark_unsupported(c, ref->domain);
	} else {
		r = reg_http_status_error(&req, &resp, "reading blob", err);
	}
	bool all = true;
	for (size_t i = 0; i < ns && np; i++) {
		missing[i] = !reg_spans_fill(&spans[i], parts, np, ranges, n);
		all = all && !missing[i];
	}
	if (r == 0 && np && !all && parts == &one)
		multi_mark_unsupported(c, ref->domain);
	if (parts != &one)
		free(parts);
	return r;
}

static int cmp_span(const void *a, const void *b)
{
	const struct reg_span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int reg_spans_make(const struct reg_range *ranges, size_t n, struct reg_span **out, size_t *ns,
		   struct rs_error *err)
{
	struct reg_span *s = calloc(n ? n : 1, sizeof(*s));
	size_t k = 0;
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int64_t end;
		if (ranges[i].len == 0)
			continue;
		if (ranges[i].off < 0 || ranges[i].len > INT64_MAX ||
		    rs_add_overflow(ranges[i].off, (int64_t)ranges[i].len, &end)) {
			free(s);
			return rs_err(err, -EINVAL, "bad byte range %lld+%zu",
				      (long long)ranges[i].off, ranges[i].len);
		}
		s[k++] = (struct reg_span){ranges[i].off, end};
	}
	qsort(s, k, sizeof(*s), cmp_span);
	size_t m = 0;
	for (size_t i = 0; i < k; i++) {
		if (m && s[i].off <= s[m - 1].end) {
			if (s[i].end > s[m - 1].end)
				s[m - 1].end = s[i].end;
		} else {
			s[m++] = s[i];
		}
	}
	*out = s;
	*ns = m;
	return 0;
}

int reg_blob_read(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		  struct reg_range *ranges, size_t n, struct rs_error *err)
{
	cleanup_free struct reg_span *spans = NULL;
	cleanup_free bool *missing = NULL;
	size_t ns = 0;
	int r = reg_spans_make(ranges, n, &spans, &ns, err);
	if (r < 0)
		return r;
	missing = calloc(ns ? ns : 1, sizeof(*missing));
	if (!missing)
		return rs_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < ns; i++)
		missing[i] = true;
	for (size_t i = 0; i + 1 < ns; i += RANGES_PER_REQUEST) {
		size_t k = ns - i < RANGES_PER_REQUEST ? ns - i : RANGES_PER_REQUEST;
		if (k < 2 || multi_unsupported(c, ref->domain))
			break;
		if ((r = read_multi(c, ref, digest, spans + i, k, missing + i, ranges, n, err)) < 0)
			return r;
	}
	for (size_t i = 0; i < ns; i++)
		if (missing[i] && (r = read_single(c, ref, digest, &spans[i], ranges, n, err)) < 0)
			return r;
	return 0;
}

/* ---- one range, streamed ------------------------------------------------------------ */

struct stream_sink {
	const struct reg_http_resp *resp; /* headers filled in before the body */
	int64_t off;
	size_t len, got;
	bool checked, bad_range;
	int (*fn)(void *ctx, const void *data, size_t n);
	void *ctx;
};

static int stream_write(void *ctx, const void *data, size_t n)
{
	struct stream_sink *s = ctx;
	if (!s->checked) {
		int64_t first, last, total;
		/* Called for 2xx replies only, before the status is recorded: the
		 * Content-Range tells a 206 of this range from a whole blob. */
		if (!s->resp->content_range ||
		    reg_content_range_parse(s->resp->content_range, &first, &last, &total) < 0 ||
		    first != s->off || last != s->off + (int64_t)s->len - 1) {
			s->bad_range = true;
			return -EPROTO;
		}
		s->checked = true;
	}
	if (n > s->len - s->got)
		return -EFBIG;
	s->got += n;
	return s->fn(s->ctx, data, n);
}

int reg_blob_read_stream(struct reg_client *c, const struct reg_ref *ref, const char *digest,
			 int64_t off, size_t len, int (*fn)(void *ctx, const void *data, size_t n),
			 void *ctx, struct rs_error *err)
{
	char path[128], range[96];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	if (off < 0 || len == 0 || (int64_t)len > INT64_MAX - off)
		return rs_err(err, -EINVAL, "blob %s: bad range %lld+%zu", digest, (long long)off,
			      len);
	snprintf(range, sizeof(range), "Range: bytes=%lld-%lld", (long long)off,
		 (long long)(off + (int64_t)len - 1));
	const char *headers[] = {range, NULL};
	cleanup_resp struct reg_http_resp resp = {0};
	struct stream_sink s = {.resp = &resp, .off = off, .len = len, .fn = fn, .ctx = ctx};
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body_fd = -1,
				   .sink = stream_write,
				   .sink_ctx = &s};
	r = reg_http_do(c, &req, &resp, err);
	/* A refused reply (a mirror's whole blob) may have been followed by a
	 * good one from the next host: only a failed transfer tells. */
	if (s.bad_range && r < 0)
		return rs_err(err, -EPROTO,
			      "registry %s: blob %s: no 206 reply for bytes %lld-%lld (status %ld, "
			      "Content-Range '%.80s')",
			      ref->domain, digest, (long long)off,
			      (long long)(off + (int64_t)len - 1), resp.status,
			      resp.content_range ? resp.content_range : "");
	if (r < 0)
		return r;
	if (resp.status != 206)
		return reg_http_status_error(&req, &resp, "reading blob", err);
	if (s.got != len)
		return rs_err(err, -EBADMSG,
			      "registry %s: blob %s bytes %lld-%lld truncated (%zu of %zu bytes)",
			      ref->domain, digest, (long long)off,
			      (long long)(off + (int64_t)len - 1), s.got, len);
	return 0;
}

/* ---- the tail of a blob of unknown size ------------------------------------------ */

int reg_blob_read_tail(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		       size_t len, struct rs_buf *out, int64_t *size, struct rs_error *err)
{
	char path[128], range[64];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	if (len == 0 || len > (size_t)SMALL_BLOB_MAX * 64)
		return rs_err(err, -EINVAL, "blob tail of %zu bytes", len);
	snprintf(range, sizeof(range), "Range: bytes=-%zu", len);
	const char *headers[] = {range, NULL};
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body_fd = -1,
				   .max_body = (int64_t)len};
	cleanup_resp struct reg_http_resp resp = {0};
	if (rs_buf_reserve(&resp.body, len) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	if ((r = reg_http_do(c, &req, &resp, err)) < 0)
		return http_error(r, ref, digest, err);
	int64_t first, last, total;
	if (resp.status == 206) {
		if (reg_content_range_parse(resp.content_range, &first, &last, &total) < 0 ||
		    total <= 0 || last != total - 1 || first < 0 || first > last ||
		    (int64_t)resp.body.len != last - first + 1 ||
		    (last - first + 1 != (int64_t)len && first != 0))
			return rs_err(err, -EBADMSG,
				      "registry %s: bad reply to a tail read of blob %s "
				      "(Content-Range '%.80s', %zu bytes)",
				      ref->domain, digest,
				      resp.content_range ? resp.content_range : "", resp.body.len);
	} else if (resp.status == 200) {
		/* Range ignored: the whole blob came, and it fit in len. */
		if (resp.content_length >= 0 && resp.content_length != (int64_t)resp.body.len)
			return rs_err(err, -EBADMSG, "registry %s: blob %s truncated", ref->domain,
				      digest);
		total = (int64_t)resp.body.len;
	} else if (resp.status == 416) {
		return rs_err(err, -ERANGE, "blob %s is empty", digest);
	} else {
		return reg_http_status_error(&req, &resp, "reading blob", err);
	}
	*size = total;
	*out = resp.body;
	resp.body = (struct rs_buf){0};
	return 0;
}

/* ---- size and whole blobs ---------------------------------------------------- */

int reg_blob_size(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		  int64_t *size, struct rs_error *err)
{
	char path[128];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	struct reg_http_req req = {.method = "HEAD", .ref = ref, .path = path, .body_fd = -1};
	cleanup_resp struct reg_http_resp resp = {0};
	if ((r = reg_http_do(c, &req, &resp, err)) < 0)
		return r;
	if (resp.status != 200)
		r = reg_http_status_error(&req, &resp, "blob size", err);
	else if (resp.content_length < 0)
		r = rs_err(err, -EBADMSG, "registry %s: no Content-Length for blob %s", ref->domain,
			   digest);
	else
		*size = resp.content_length;
	return r;
}

struct fetch_sink {
	int fd;
	struct rs_sha256 sha;
	int64_t got, size;
	int write_errno;
};

static int fetch_write(void *ctx, const void *data, size_t len)
{
	struct fetch_sink *s = ctx;
	if ((int64_t)len > s->size - s->got) {
		s->got = s->size + 1;
		return -EFBIG;
	}
	rs_sha256_update(&s->sha, data, len);
	s->got += (int64_t)len;
	for (const uint8_t *p = data; len;) {
		ssize_t w = write(s->fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->write_errno = w < 0 ? errno : EIO;
			return -s->write_errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int reg_blob_fetch(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		   int64_t size, int fd, struct rs_error *err)
{
	char path[128];
	int r = blob_path(digest, path, sizeof(path), err);
	if (r < 0)
		return r;
	if (size < 0 && (r = reg_blob_size(c, ref, digest, &size, err)) < 0)
		return r;
	struct fetch_sink s = {.fd = fd, .size = size};
	if (rs_sha256_init(&s.sha) < 0)
		return rs_err(err, -ENOMEM, "sha256 init failed");
	struct reg_http_req req = {.method = "GET",
				   .ref = ref,
				   .path = path,
				   .body_fd = -1,
				   .sink = fetch_write,
				   .sink_ctx = &s};
	cleanup_resp struct reg_http_resp resp = {0};
	r = reg_http_do(c, &req, &resp, err);
	if (s.write_errno)
		r = rs_err(err, -s.write_errno, "blob %s: writing: %s", digest,
			   strerror(s.write_errno));
	else if (s.got > size)
		r = rs_err(err, -EBADMSG, "registry %s: blob %s is larger than its %lld bytes",
			   ref->domain, digest, (long long)size);
	else if (r < 0)
		;
	else if (resp.status != 200)
		r = reg_http_status_error(&req, &resp, "fetching blob", err);
	else if (s.got != size)
		r = rs_err(err, -EBADMSG, "registry %s: blob %s truncated (%lld of %lld bytes)",
			   ref->domain, digest, (long long)s.got, (long long)size);
	if (r == 0) {
		uint8_t sum[RS_SHA256_LEN];
		char dg[RS_DIGEST_STR_LEN];
		rs_sha256_final(&s.sha, sum);
		rs_digest_format(sum, dg);
		if (strcmp(dg, digest) != 0)
			r = rs_err(err, -EBADMSG, "blob digest mismatch: %s from %s hashes to %s",
				   digest, ref->domain, dg);
	}
	rs_sha256_free(&s.sha);
	return r;
}
