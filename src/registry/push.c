// SPDX-License-Identifier: Apache-2.0
/* Pushing: blob existence, cross-repository mounts, monolithic and chunked
 * uploads, manifest PUT. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops_internal.h"
#include "registry_internal.h"

#define MONOLITHIC_MAX (32 << 20)
#define CHUNK_SIZE (16 << 20)
#define UPLOAD_REPLY_MAX (1 << 20)

char *reg_upload_url(const char *repo, const char *location)
{
	if (location[0] == '/' || strncasecmp(location, "http://", 7) == 0 ||
	    strncasecmp(location, "https://", 8) == 0)
		return strdup(location);
	char *u = NULL;
	if (asprintf(&u, "/v2/%s/blobs/uploads/%s", repo, location) < 0)
		return NULL;
	return u;
}

char *reg_url_add_query(const char *url, const char *key, const char *value)
{
	size_t frag = strcspn(url, "#");
	const char *q = memchr(url, '?', frag);
	const char *sep = !q ? "?" : (url[frag - 1] == '?' || url[frag - 1] == '&') ? "" : "&";
	char *u = NULL;
	if (asprintf(&u, "%.*s%s%s=%s%s", (int)frag, url, sep, key, value, url + frag) < 0)
		return NULL;
	return u;
}

static int head_blob(struct reg_client *c, const struct reg_ref *ref, const char *digest, bool push,
		     bool *exists, struct rs_error *err)
{
	char path[128];
	if (!reg_digest_valid(digest))
		return rs_err(err, -EINVAL, "bad blob digest '%.80s'", digest);
	snprintf(path, sizeof(path), "blobs/%s", digest);
	struct reg_http_req req = {
	    .method = "HEAD", .ref = ref, .path = path, .body_fd = -1, .push = push};
	cleanup_resp struct reg_http_resp resp = {0};
	int r = reg_http_do(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (resp.status == 200) {
		*exists = true;
		return 0;
	}
	if (resp.status == 404) {
		*exists = false;
		return 0;
	}
	return reg_http_status_error(&req, &resp, "checking blob", err);
}

int reg_blob_exists(struct reg_client *c, const struct reg_ref *ref, const char *digest,
		    bool *exists, struct rs_error *err)
{
	return head_blob(c, ref, digest, false, exists, err);
}

/* Starts an upload session (or mounts the blob: *done). *location receives
 * the session URL. */
static int upload_start(struct reg_client *c, const struct reg_ref *ref, const char *digest,
			const char *mount_from, char **location, bool *done, struct rs_error *err)
{
	cleanup_free char *path = NULL;
	*done = false;
	bool mount = mount_from && strcmp(mount_from, ref->path) != 0;
	if (mount && asprintf(&path, "blobs/uploads/?mount=%s&from=%s", digest, mount_from) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	struct reg_http_req req = {.method = "POST",
				   .ref = ref,
				   .path = mount ? path : "blobs/uploads/",
				   .body_fd = -1,
				   .push = true,
				   .max_body = UPLOAD_REPLY_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	int r = reg_http_do(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (mount && resp.status == 201) {
		*done = true;
		return 0;
	}
	if (mount && resp.status != 202) {
		/* A refused mount is only a missed shortcut: upload instead. */
		rs_log(RS_LOG_DEBUG, "registry %s: mounting %s from %s: HTTP %ld; uploading",
		       ref->domain, digest, mount_from, resp.status);
		return upload_start(c, ref, digest, NULL, location, done, err);
	}
	if (resp.status != 202)
		return reg_http_status_error(&req, &resp, "starting blob upload", err);
	if (!resp.location || !*resp.location)
		return rs_err(err, -EBADMSG, "registry %s: upload started without a Location",
			      ref->domain);
	*location = reg_upload_url(ref->path, resp.location);
	return *location ? 0 : rs_err(err, -ENOMEM, "out of memory");
}

/* PATCHes the blob in chunks; *location follows the session. */
static int upload_chunks(struct reg_client *c, const struct reg_ref *ref, int fd, int64_t size,
			 char **location, struct rs_error *err)
{
	for (int64_t off = 0; off < size; off += CHUNK_SIZE) {
		int64_t n = size - off < CHUNK_SIZE ? size - off : CHUNK_SIZE;
		char range[96];
		snprintf(range, sizeof(range), "Content-Range: %lld-%lld", (long long)off,
			 (long long)(off + n - 1));
		const char *headers[] = {"Content-Type: application/octet-stream", range, NULL};
		struct reg_http_req req = {.method = "PATCH",
					   .ref = ref,
					   .path = *location,
					   .headers = headers,
					   .body_fd = fd,
					   .body_off = off,
					   .body_len = (size_t)n,
					   .push = true,
					   .max_body = UPLOAD_REPLY_MAX};
		cleanup_resp struct reg_http_resp resp = {0};
		int r = reg_http_do(c, &req, &resp, err);
		if (r < 0)
			return r;
		if (resp.status != 202)
			return reg_http_status_error(&req, &resp, "uploading a blob chunk", err);
		if (resp.location && *resp.location) {
			char *next = reg_upload_url(ref->path, resp.location);
			if (!next)
				return rs_err(err, -ENOMEM, "out of memory");
			free(*location);
			*location = next;
		}
	}
	return 0;
}

int reg_blob_push(struct reg_client *c, const struct reg_ref *ref, const char *digest, int fd,
		  int64_t size, const char *mount_from, struct rs_error *err)
{
	bool exists = false, done = false;
	if (size < 0)
		return rs_err(err, -EINVAL, "blob %s: negative size", digest);
	int r = head_blob(c, ref, digest, true, &exists, err);
	if (r < 0 || exists)
		return r;
	cleanup_free char *location = NULL;
	if ((r = upload_start(c, ref, digest, mount_from, &location, &done, err)) < 0 || done)
		return r;
	bool chunked = size > MONOLITHIC_MAX;
	if (chunked && (r = upload_chunks(c, ref, fd, size, &location, err)) < 0) {
		rs_error_prefix(err, "pushing blob %s", digest);
		return r;
	}
	cleanup_free char *url = reg_url_add_query(location, "digest", digest);
	if (!url)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *headers[] = {"Content-Type: application/octet-stream", NULL};
	struct reg_http_req req = {.method = "PUT",
				   .ref = ref,
				   .path = url,
				   .headers = headers,
				   .body_fd = chunked ? -1 : fd,
				   .body_len = chunked ? 0 : (size_t)size,
				   .push = true,
				   .max_body = UPLOAD_REPLY_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	if ((r = reg_http_do(c, &req, &resp, err)) < 0) {
		rs_error_prefix(err, "pushing blob %s", digest);
		return r;
	}
	if (resp.status != 201)
		return reg_http_status_error(&req, &resp, "finishing blob upload", err);
	if (resp.docker_content_digest && strcmp(resp.docker_content_digest, digest) != 0)
		return rs_err(err, -EBADMSG, "registry %s stored blob %s as %.80s", ref->domain,
			      digest, resp.docker_content_digest);
	return 0;
}

int reg_manifest_put(struct reg_client *c, const struct reg_ref *ref, const char *reference,
		     const char *media_type, const void *data, size_t len, struct rs_error *err)
{
	uint8_t sum[RS_SHA256_LEN];
	char dg[RS_DIGEST_STR_LEN];
	rs_sha256(data, len, sum);
	rs_digest_format(sum, dg);
	if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, dg) != 0)
		return rs_err(err, -EINVAL, "manifest is %s, not the %.80s it is pushed as", dg,
			      reference);
	cleanup_free char *path = NULL;
	cleanup_free char *ct = NULL;
	if (asprintf(&path, "manifests/%s", reference) < 0 ||
	    asprintf(&ct, "Content-Type: %s", media_type) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	const char *headers[] = {ct, NULL};
	struct reg_http_req req = {.method = "PUT",
				   .ref = ref,
				   .path = path,
				   .headers = headers,
				   .body = data,
				   .body_len = len,
				   .body_fd = -1,
				   .push = true,
				   .max_body = UPLOAD_REPLY_MAX};
	cleanup_resp struct reg_http_resp resp = {0};
	int r = reg_http_do(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (resp.status != 201 && resp.status != 200)
		return reg_http_status_error(&req, &resp, "pushing manifest", err);
	return 0;
}
