// SPDX-License-Identifier: Apache-2.0
/* An OCI image layout directory (oci-layout, index.json, blobs/sha256/...) as
 * an image source or destination. Blobs are read back verified and written
 * atomically (temp file, digest check, rename); index.json is rewritten
 * atomically with the tag's entry replaced. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "convert_internal.h"

struct conv_layout {
	char *dir;
	char *tag; /* NULL: the only image */
	int dirfd;
};

static const char layout_file[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

static bool tag_ok(const char *t)
{
	if (!*t || strlen(t) > 512)
		return false;
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return false;
	return true;
}

int conv_layout_spec(const char *spec, char **dir, char **tag, struct rs_error *err)
{
	if (strncmp(spec, "oci:", 4) != 0)
		return 0;
	const char *rest = spec + 4;
	const char *colon = strchr(rest, ':');
	size_t dlen = colon ? (size_t)(colon - rest) : strlen(rest);
	if (dlen == 0)
		return rs_err(err, -EINVAL, "'%.200s': oci: needs a directory (oci:DIR[:TAG])",
			      spec);
	if (colon && !tag_ok(colon + 1))
		return rs_err(err, -EINVAL,
			      "'%.200s': the tag after DIR: must be printable ASCII without spaces",
			      spec);
	cleanup_free char *d = strndup(rest, dlen);
	cleanup_free char *t = colon ? strdup(colon + 1) : NULL;
	if (!d || (colon && !t))
		return rs_err(err, -ENOMEM, "out of memory");
	*dir = steal_pointer(&d);
	*tag = steal_pointer(&t);
	return 1;
}

static int read_small(int dirfd, const char *dir, const char *name, size_t max, struct rs_buf *out,
		      struct rs_error *err)
{
	cleanup_fd int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "%s/%s: %s", dir, name, strerror(errno));
	int rc = conv_fd_read_all(fd, max, out, err);
	if (rc < 0) {
		rs_error_prefix(err, "%s/%s", dir, name);
		return rc;
	}
	return 0;
}

/* Writes data to name through a temp file and a rename. */
static int write_atomic(struct conv_layout *l, const char *name, const void *data, size_t len,
			struct rs_error *err)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", l->dir, name) >= sizeof(tmp))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", l->dir);
	cleanup_fd int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", tmp, strerror(errno));
	int rc = conv_write_all(fd, data, len, err);
	if (rc == 0 && fchmod(fd, 0644) < 0)
		rc = rs_err(err, -errno, "chmod: %s", strerror(errno));
	if (rc == 0 && renameat(AT_FDCWD, tmp, l->dirfd, name) < 0)
		rc = rs_err(err, -errno, "rename: %s", strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		rs_error_prefix(err, "%s/%s", l->dir, name);
		return rc;
	}
	return 0;
}

static int make_dir(int dirfd, const char *name, const char *shown, struct rs_error *err)
{
	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "%s: %s", shown, strerror(errno));
	return 0;
}

static int check_layout(struct conv_layout *l, bool create, struct rs_error *err)
{
	struct rs_buf b = {0};
	int rc = read_small(l->dirfd, l->dir, "oci-layout", 4096, &b, err);
	if (rc == -ENOENT && create) {
		rc = write_atomic(l, "oci-layout", layout_file, sizeof(layout_file) - 1, err);
	} else if (rc == -ENOENT) {
		rc = rs_err(err, -ENOENT, "%s: not an OCI image layout (no oci-layout file)",
			    l->dir);
	} else if (rc == 0) {
		json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
		const char *v = json_string_value(json_object_get(j, "imageLayoutVersion"));
		if (!v)
			rc =
			    rs_err(err, -EINVAL,
				   "%s/oci-layout: no imageLayoutVersion (not an OCI image layout)",
				   l->dir);
		else if (strncmp(v, "1.", 2) != 0)
			rc = rs_err(err, -ENOTSUP, "%s: OCI layout version '%.20s' not supported",
				    l->dir, v);
		json_decref(j);
	}
	rs_buf_free(&b);
	if (rc == 0 && create) {
		char shown[PATH_MAX];
		snprintf(shown, sizeof(shown), "%s/blobs", l->dir);
		rc = make_dir(l->dirfd, "blobs", shown, err);
		if (rc == 0) {
			snprintf(shown, sizeof(shown), "%s/blobs/sha256", l->dir);
			rc = make_dir(l->dirfd, "blobs/sha256", shown, err);
		}
	}
	return rc;
}

int conv_layout_open(const char *dir, const char *tag, bool create, struct conv_layout **out,
		     struct rs_error *err)
{
	if (create && mkdir(dir, 0755) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "%s: %s", dir, strerror(errno));
	cleanup_fd int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", dir, strerror(errno));
	struct conv_layout *l = calloc(1, sizeof(*l));
	if (!l)
		return rs_err(err, -ENOMEM, "out of memory");
	l->dirfd = rs_steal_fd(&fd);
	l->dir = strdup(dir);
	l->tag = tag ? strdup(tag) : NULL;
	int rc = 0;
	if (!l->dir || (tag && !l->tag))
		rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = check_layout(l, create, err);
	if (rc < 0) {
		conv_layout_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void conv_layout_free(struct conv_layout *l)
{
	if (!l)
		return;
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l->dir);
	free(l->tag);
	free(l);
}

static int blob_name(const char *digest, char out[96], struct rs_error *err)
{
	uint8_t sum[RS_SHA256_LEN];
	if (!digest || rs_digest_parse(digest, strlen(digest), sum) < 0)
		return rs_err(err, -EINVAL, "digest '%.80s' is not sha256:<64 hex>",
			      digest ? digest : "");
	snprintf(out, 96, "blobs/sha256/%s", digest + 7);
	return 0;
}

static int open_blob(struct conv_layout *l, const char *digest, int64_t size, int *fd,
		     struct rs_error *err)
{
	char name[96];
	int rc = blob_name(digest, name, err);
	if (rc < 0)
		return rc;
	cleanup_fd int f = openat(l->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return rs_err(err, -errno, "%s/%s: %s", l->dir, name, strerror(errno));
	struct stat st;
	if (fstat(f, &st) < 0)
		return rs_err(err, -errno, "%s/%s: %s", l->dir, name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return rs_err(err, -EINVAL, "%s/%s: not a regular file", l->dir, name);
	if (size >= 0 && st.st_size != size)
		return rs_err(err, -EINVAL, "%s/%s: %lld bytes, its descriptor says %lld", l->dir,
			      name, (long long)st.st_size, (long long)size);
	*fd = rs_steal_fd(&f);
	return 0;
}

int conv_layout_blob_open(struct conv_layout *l, const char *digest, int64_t size, int *fd,
			  struct rs_error *err)
{
	cleanup_fd int f = -1;
	int rc = open_blob(l, digest, size, &f, err);
	if (rc < 0)
		return rc;
	char got[RS_DIGEST_STR_LEN];
	int64_t n;
	if ((rc = conv_fd_digest(f, got, &n, err)) < 0) {
		rs_error_prefix(err, "%s/blobs/sha256/%s", l->dir, digest + 7);
		return rc;
	}
	if (strcmp(got, digest) != 0)
		return rs_err(err, ESGZ_EDIGEST, "%s: blob %s: content has digest %s", l->dir,
			      digest, got);
	*fd = rs_steal_fd(&f);
	return 0;
}

int conv_layout_blob_reader(struct conv_layout *l, const char *digest, int64_t size,
			    struct esgz_reader *r, struct rs_error *err)
{
	cleanup_fd int f = -1;
	int rc = open_blob(l, digest, size, &f, err);
	if (rc < 0)
		return rc;
	return conv_fd_reader(f, r, err);
}

int conv_layout_blob_exists(struct conv_layout *l, const char *digest, int64_t size, bool *exists,
			    struct rs_error *err)
{
	char name[96];
	int rc = blob_name(digest, name, err);
	if (rc < 0)
		return rc;
	struct stat st;
	if (fstatat(l->dirfd, name, &st, 0) < 0) {
		if (errno != ENOENT)
			return rs_err(err, -errno, "%s/%s: %s", l->dir, name, strerror(errno));
		*exists = false;
		return 0;
	}
	*exists = S_ISREG(st.st_mode) && (size < 0 || st.st_size == size);
	return 0;
}

static int copy_hashed(int in, int out, int64_t size, char digest[RS_DIGEST_STR_LEN],
		       struct rs_error *err)
{
	enum { BUF = 1 << 20 };
	cleanup_free uint8_t *buf = malloc(BUF);
	struct rs_sha256 h;
	if (!buf || rs_sha256_init(&h) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	int64_t off = 0;
	int rc = 0;
	while (off < size) {
		size_t want = size - off < BUF ? (size_t)(size - off) : BUF;
		ssize_t n = pread(in, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? rs_err(err, -errno, "read: %s", strerror(errno))
				   : rs_err(err, -EIO, "source ended at %lld of %lld bytes",
					    (long long)off, (long long)size);
			break;
		}
		rs_sha256_update(&h, buf, (size_t)n);
		if ((rc = conv_write_all(out, buf, (size_t)n, err)) < 0)
			break;
		off += n;
	}
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256_final(&h, sum);
	rs_sha256_free(&h);
	rs_digest_format(sum, digest);
	return rc;
}

int conv_layout_blob_put(struct conv_layout *l, const char *digest, int fd, int64_t size,
			 struct rs_error *err)
{
	char name[96];
	int rc = blob_name(digest, name, err);
	if (rc < 0)
		return rc;
	bool exists;
	if ((rc = conv_layout_blob_exists(l, digest, size, &exists, err)) < 0 || exists)
		return rc;
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/blobs/sha256/.tmp-XXXXXX", l->dir) >=
	    sizeof(tmp))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", l->dir);
	cleanup_fd int out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0)
		return rs_err(err, -errno, "%s: %s", tmp, strerror(errno));
	char got[RS_DIGEST_STR_LEN];
	rc = copy_hashed(fd, out, size, got, err);
	if (rc == 0 && strcmp(got, digest) != 0)
		rc = rs_err(err, ESGZ_EDIGEST, "blob %s: content has digest %s", digest, got);
	if (rc == 0 && fchmod(out, 0644) < 0)
		rc = rs_err(err, -errno, "chmod: %s", strerror(errno));
	if (rc == 0 && renameat(AT_FDCWD, tmp, l->dirfd, name) < 0)
		rc = rs_err(err, -errno, "rename: %s", strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		rs_error_prefix(err, "%s/%s", l->dir, name);
		return rc;
	}
	return 0;
}

static int load_index(struct conv_layout *l, bool may_be_missing, json_t **out,
		      struct rs_error *err)
{
	struct rs_buf b = {0};
	int rc = read_small(l->dirfd, l->dir, "index.json", CONV_MAX_INDEX_JSON, &b, err);
	if (rc == -ENOENT && may_be_missing) {
		*out = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType",
				 REG_MT_OCI_INDEX, "manifests");
		return *out ? 0 : rs_err(err, -ENOMEM, "out of memory");
	}
	if (rc < 0)
		return rc;
	json_error_t je;
	json_t *j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &je);
	rs_buf_free(&b);
	if (!j || !json_is_array(json_object_get(j, "manifests"))) {
		json_decref(j);
		return rs_err(err, -EINVAL, "%s/index.json: not an image index%s%s", l->dir,
			      j ? "" : ": ", j ? "" : je.text);
	}
	if (json_array_size(json_object_get(j, "manifests")) > CONV_MAX_MANIFESTS) {
		json_decref(j);
		return rs_err(err, -EINVAL, "%s/index.json: more than %d entries", l->dir,
			      CONV_MAX_MANIFESTS);
	}
	*out = j;
	return 0;
}

static void list_tags(json_t *manifests, char *out, size_t n)
{
	size_t i, used = 0;
	json_t *e;
	out[0] = '\0';
	json_array_foreach(manifests, i, e)
	{
		const char *t = conv_desc_annotation(e, CONV_ANNOTATION_REF_NAME);
		if (!t || used >= n)
			continue;
		int w = snprintf(out + used, n - used, "%s%.60s", used ? ", " : "", t);
		if (w > 0)
			used += (size_t)w;
	}
	if (!out[0])
		snprintf(out, n, "none");
}

/* Reads the document a single index.json entry points at. */
static int read_entry(struct conv_layout *l, json_t *e, struct conv_doc *out, struct rs_error *err)
{
	const char *mt, *dg;
	int64_t size;
	int rc = conv_desc_get(e, &mt, &dg, &size, "index.json entry", err);
	if (rc < 0) {
		rs_error_prefix(err, "%s", l->dir);
		return rc;
	}
	if (size > CONV_MAX_MANIFEST)
		return rs_err(err, -EFBIG, "%s: manifest %s: %lld bytes is too large", l->dir, dg,
			      (long long)size);
	cleanup_fd int fd = -1;
	if ((rc = conv_layout_blob_open(l, dg, size, &fd, err)) < 0)
		return rc;
	if ((rc = conv_fd_read_all(fd, CONV_MAX_MANIFEST, &out->raw, err)) < 0) {
		rs_error_prefix(err, "%s: manifest %s", l->dir, dg);
		return rc;
	}
	snprintf(out->digest, sizeof(out->digest), "%s", dg);
	char what[128];
	snprintf(what, sizeof(what), "manifest %s", dg);
	if ((rc = conv_doc_parse(out, mt, what, err)) < 0) {
		rs_error_prefix(err, "%s", l->dir);
		return rc;
	}
	return 0;
}

int conv_layout_root(struct conv_layout *l, struct conv_doc *out, struct rs_error *err)
{
	json_t *idx = NULL;
	int rc = load_index(l, false, &idx, err);
	if (rc < 0)
		return rc;
	json_t *all = json_object_get(idx, "manifests");
	json_t *hits = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(all, i, e)
	{
		const char *t = conv_desc_annotation(e, CONV_ANNOTATION_REF_NAME);
		if (!l->tag || (t && strcmp(t, l->tag) == 0))
			json_array_append(hits, e);
	}
	char tags[512];
	size_t n = json_array_size(hits);
	if (n == 0 && l->tag) {
		list_tags(all, tags, sizeof(tags));
		rc = rs_err(err, -ENOENT, "%s: no image tagged '%s' (tags: %s)", l->dir, l->tag,
			    tags);
	} else if (n == 0) {
		rc = rs_err(err, -ENOENT, "%s: the layout holds no image", l->dir);
	} else if (n > 1 && !l->tag) {
		list_tags(all, tags, sizeof(tags));
		rc =
		    rs_err(err, -EINVAL, "%s holds %zu images; name one with oci:%s:TAG (tags: %s)",
			   l->dir, n, l->dir, tags);
	} else if (n == 1) {
		rc = read_entry(l, json_array_get(hits, 0), out, err);
	} else {
		/* One tag on several entries (one per platform): an index of them. */
		json_t *syn = json_pack("{s:i,s:s,s:O}", "schemaVersion", 2, "mediaType",
					REG_MT_OCI_INDEX, "manifests", hits);
		rc = syn ? conv_json_dump(syn, &out->raw, out->digest, err)
			 : rs_err(err, -ENOMEM, "out of memory");
		json_decref(syn);
		if (rc == 0)
			rc = conv_doc_parse(out, REG_MT_OCI_INDEX, "index.json", err);
	}
	json_decref(hits);
	json_decref(idx);
	return rc;
}

int conv_layout_tag(struct conv_layout *l, const char *media_type, const char *digest, int64_t size,
		    struct rs_error *err)
{
	const char *tag = l->tag ? l->tag : "latest";
	json_t *idx = NULL;
	int rc = load_index(l, true, &idx, err);
	if (rc < 0)
		return rc;
	json_t *all = json_object_get(idx, "manifests");
	for (size_t i = json_array_size(all); i-- > 0;) {
		const char *t =
		    conv_desc_annotation(json_array_get(all, i), CONV_ANNOTATION_REF_NAME);
		if (t && strcmp(t, tag) == 0)
			json_array_remove(all, i);
	}
	json_t *e =
	    json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType", media_type, "digest", digest, "size",
		      (json_int_t)size, "annotations", CONV_ANNOTATION_REF_NAME, tag);
	if (!json_object_get(idx, "mediaType"))
		json_object_set_new(idx, "mediaType", json_string(REG_MT_OCI_INDEX));
	struct rs_buf b = {0};
	char dg[RS_DIGEST_STR_LEN];
	if (!e || json_array_append_new(all, e) < 0)
		rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = conv_json_dump(idx, &b, dg, err);
	if (rc == 0)
		rc = write_atomic(l, "index.json", b.data, b.len, err);
	rs_buf_free(&b);
	json_decref(idx);
	return rc;
}
