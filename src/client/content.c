// SPDX-License-Identifier: Apache-2.0
/* containerd's content service: Info, Update (labels), Abort, and the
 * bidirectional Write stream. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/client_internal.h"
#include "services_content_v1_content.pb-c.h"

#define CONTENT "/containerd.services.content.v1.Content/"
/* containerd takes messages up to 16 MiB; 1 MiB is what its own client sends. */
#define WRITE_CHUNK (1 << 20)

void ctrd_content_info_free(struct ctrd_content_info *i)
{
	if (!i)
		return;
	ctrd_kv_free(i->labels, i->n_labels);
	i->labels = NULL;
	i->n_labels = 0;
}

int ctrd_content_info(struct ctrd_client *c, const char *digest, struct ctrd_content_info *out,
		      struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	Containerd__Services__Content__V1__InfoRequest req =
	    CONTAINERD__SERVICES__CONTENT__V1__INFO_REQUEST__INIT;
	req.digest = (char *)digest;
	ProtobufCMessage *resp = NULL;
	int rc =
	    ctrd_call(c, CONTENT "Info", &req.base,
		      &containerd__services__content__v1__info_response__descriptor, &resp, 0, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Content__V1__InfoResponse *r = (void *)resp;
	if (!r->info) {
		rc = rs_err(err, -EPROTO, "containerd Content.Info %s: empty reply", digest);
	} else {
		snprintf(out->digest, sizeof(out->digest), "%s", r->info->digest);
		out->size = r->info->size;
		if (ctrd_pb_kv_copy(r->info->labels, r->info->n_labels, &out->labels,
				    &out->n_labels) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int ctrd_content_update_labels(struct ctrd_client *c, const char *digest,
			       const struct ctrd_kv *labels, size_t n, struct rs_error *err)
{
	if (n == 0)
		return 0;
	Containerd__Services__Content__V1__Info info =
	    CONTAINERD__SERVICES__CONTENT__V1__INFO__INIT;
	info.digest = (char *)digest;
	cleanup_free void *entries = ctrd_pb_kv_new(
	    &containerd__services__content__v1__info__labels_entry__descriptor, labels, n);
	cleanup_free char **paths = calloc(n, sizeof(char *));
	if (!entries || !paths)
		return rs_err(err, -ENOMEM, "out of memory");
	info.n_labels = n;
	info.labels = entries;
	int rc = 0;
	size_t np = 0;
	for (; np < n; np++) {
		size_t len = strlen(labels[np].key) + 8;
		paths[np] = malloc(len);
		if (!paths[np]) {
			rc = rs_err(err, -ENOMEM, "out of memory");
			break;
		}
		snprintf(paths[np], len, "labels.%s", labels[np].key);
	}
	if (rc == 0) {
		Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
		mask.n_paths = n;
		mask.paths = paths;
		Containerd__Services__Content__V1__UpdateRequest req =
		    CONTAINERD__SERVICES__CONTENT__V1__UPDATE_REQUEST__INIT;
		req.info = &info;
		req.update_mask = &mask;
		rc = ctrd_call(c, CONTENT "Update", &req.base, NULL, NULL, 0, err);
	}
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
	return rc;
}

int ctrd_content_abort(struct ctrd_client *c, const char *ref, struct rs_error *err)
{
	Containerd__Services__Content__V1__AbortRequest req =
	    CONTAINERD__SERVICES__CONTENT__V1__ABORT_REQUEST__INIT;
	req.ref = (char *)ref;
	return ctrd_call(c, CONTENT "Abort", &req.base, NULL, NULL, 0, err);
}

struct ctrd_writer {
	struct ctrd_client *c;
	struct ctrd_stream *s;
	char *ref;
	char *expected;
	int64_t total;
	int64_t offset;
	bool first_sent; /* ref, expected and total went with the first message */
	bool committed;
};

/* One message, one reply; the reply's offset must follow what was sent. */
static int writer_send(struct ctrd_writer *w, Containerd__Services__Content__V1__WriteAction a,
		       const void *data, size_t len, const struct ctrd_kv *labels, size_t n,
		       struct rs_error *err)
{
	Containerd__Services__Content__V1__WriteContentRequest req =
	    CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__INIT;
	req.action = a;
	req.ref = w->ref;
	/* containerd truncates the ingest at a WRITE to offset 0: every later
	 * message names the offset it continues at. */
	req.offset = w->offset;
	if (!w->first_sent || a == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT) {
		req.expected = w->expected;
		req.total = w->total;
	}
	req.data.data = (uint8_t *)data;
	req.data.len = len;
	cleanup_free void *entries = NULL;
	if (n) {
		entries = ctrd_pb_kv_new(
		    &containerd__services__content__v1__write_content_request__labels_entry__descriptor,
		    labels, n);
		if (!entries)
			return rs_err(err, -ENOMEM, "out of memory");
		req.n_labels = n;
		req.labels = entries;
	}
	w->first_sent = true;
	ProtobufCMessage *resp = NULL;
	int rc = ctrd_stream_exchange(
	    w->s, &req.base, &containerd__services__content__v1__write_content_response__descriptor,
	    &resp, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Content__V1__WriteContentResponse *r = (void *)resp;
	int64_t want = w->offset + (int64_t)len;
	if (a != CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__STAT && r->offset != want)
		rc = rs_err(err, -EPROTO,
			    "containerd Content.Write %s: offset %lld after a write, "
			    "want %lld",
			    w->ref, (long long)r->offset, (long long)want);
	else if (a != CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__STAT)
		w->offset = want;
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

static int writer_start(struct ctrd_client *c, const char *ref, const char *expected, int64_t total,
			struct ctrd_writer **out, struct rs_error *err)
{
	struct ctrd_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return rs_err(err, -ENOMEM, "out of memory");
	w->c = c;
	w->total = total;
	w->ref = strdup(ref);
	w->expected = strdup(expected ? expected : "");
	if (!w->ref || !w->expected) {
		ctrd_writer_free(w);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	int rc = ctrd_stream_open(c, CONTENT "Write", 0, &w->s, err);
	if (rc < 0) {
		ctrd_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int ctrd_writer_open(struct ctrd_client *c, const char *ref, const char *expected, int64_t total,
		     struct ctrd_writer **out, struct rs_error *err)
{
	struct ctrd_writer *w;
	int rc = writer_start(c, ref, expected, total, &w, err);
	if (rc < 0)
		return rc;
	rc = writer_send(w, CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__STAT, NULL, 0, NULL, 0,
			 err);
	if (rc < 0) {
		ctrd_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int ctrd_writer_write(struct ctrd_writer *w, const void *data, size_t len, struct rs_error *err)
{
	const uint8_t *p = data;
	while (len) {
		size_t k = len < WRITE_CHUNK ? len : WRITE_CHUNK;
		int rc = writer_send(w, CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE, p,
				     k, NULL, 0, err);
		if (rc < 0)
			return rc;
		p += k;
		len -= k;
	}
	return 0;
}

int ctrd_writer_commit(struct ctrd_writer *w, const struct ctrd_kv *labels, size_t n,
		       struct rs_error *err)
{
	int rc = writer_send(w, CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT, NULL, 0,
			     labels, n, err);
	if (rc < 0)
		return rc;
	rc = ctrd_stream_finish(w->s, err);
	if (rc == 0)
		w->committed = true;
	return rc;
}

int64_t ctrd_writer_offset(const struct ctrd_writer *w)
{
	return w->offset;
}

void ctrd_writer_free(struct ctrd_writer *w)
{
	if (!w)
		return;
	ctrd_stream_free(w->s);
	free(w->ref);
	free(w->expected);
	free(w);
}

int ctrd_content_write(struct ctrd_client *c, const char *ref, const char *expected,
		       const void *data, size_t len, const struct ctrd_kv *labels, size_t n,
		       struct rs_error *err)
{
	struct ctrd_writer *w;
	int rc = writer_start(c, ref, expected, (int64_t)len, &w, err);
	if (rc < 0)
		return rc;
	rc = ctrd_writer_write(w, data, len, err);
	if (rc == 0)
		rc = ctrd_writer_commit(w, labels, n, err);
	ctrd_writer_free(w);
	return rc;
}
