// SPDX-License-Identifier: Apache-2.0
/* The ten methods of containerd.services.snapshots.v1.Snapshots: check the
 * request, call src/snapshot, build the reply. They run on handler threads
 * and may block. */
#include <errno.h>
#include <grpc/status.h>
#include <string.h>

#include "api/api_internal.h"
#include "google_protobuf_empty.pb-c.h"

int api_status_of(int err)
{
	switch (err) {
	case 0:
		return GRPC_STATUS_OK;
	case -ENOENT:
		return GRPC_STATUS_NOT_FOUND;
	case -EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	case -EINVAL:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case SNAP_EPRECONDITION:
		return GRPC_STATUS_FAILED_PRECONDITION;
	case SNAP_EUNAVAILABLE:
		return GRPC_STATUS_UNAVAILABLE;
	case -ENOSYS:
		return GRPC_STATUS_UNIMPLEMENTED;
	default:
		return GRPC_STATUS_UNKNOWN;
	}
}

static int need(const char *v, const char *method, const char *field, struct rs_error *err)
{
	if (!v || !*v)
		return rs_err(err, -EINVAL, "%s: %s is required", method, field);
	return 0;
}

static void mounts_cleanup(struct snap_mounts *m)
{
	snap_mounts_free(m);
}

static int reply_empty(struct api_reply *out, struct rs_error *err)
{
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	return api_reply_add(out, &e.base, err);
}

/* Prepare and View share a request layout. */
static int create(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		  struct rs_error *err, bool view)
{
	const Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *r = (const void *)req;
	const char *what = view ? "view" : "prepare";
	int rc = need(r->key, what, "key", err);
	if (rc < 0)
		return rc;
	cleanup_free struct snap_label *l = NULL;
	size_t nl;
	rc = api_labels_in((struct api_map_entry *const *)r->labels, r->n_labels, &l, &nl, err);
	if (rc < 0)
		return rc;
	rs_cleanup(mounts_cleanup) struct snap_mounts m = {0};
	rc = view ? snap_view(s, r->key, r->parent, l, nl, &m, err)
		  : snap_prepare(s, r->key, r->parent, l, nl, &m, err);
	if (rc < 0)
		return rc;
	return api_reply_mounts(
	    out,
	    view ? &containerd__services__snapshots__v1__view_snapshot_response__descriptor
		 : &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor,
	    &m, err);
}

static int m_prepare(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		     struct rs_error *err)
{
	return create(s, req, out, err, false);
}

static int m_view(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		  struct rs_error *err)
{
	return create(s, req, out, err, true);
}

static int m_mounts(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		    struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__MountsRequest *r = (const void *)req;
	int rc = need(r->key, "mounts", "key", err);
	if (rc < 0)
		return rc;
	rs_cleanup(mounts_cleanup) struct snap_mounts m = {0};
	rc = snap_mounts(s, r->key, &m, err);
	if (rc < 0)
		return rc;
	return api_reply_mounts(
	    out, &containerd__services__snapshots__v1__mounts_response__descriptor, &m, err);
}

static int m_commit(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		    struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__CommitSnapshotRequest *r = (const void *)req;
	int rc = need(r->name, "commit", "name", err);
	if (rc == 0)
		rc = need(r->key, "commit", "key", err);
	if (rc < 0)
		return rc;
	cleanup_free struct snap_label *l = NULL;
	size_t nl;
	rc = api_labels_in((struct api_map_entry *const *)r->labels, r->n_labels, &l, &nl, err);
	if (rc < 0)
		return rc;
	rc = snap_commit(s, r->name, r->key, l, nl, err);
	if (rc < 0)
		return rc;
	return reply_empty(out, err);
}

static int m_remove(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		    struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *r = (const void *)req;
	int rc = need(r->key, "remove", "key", err);
	if (rc < 0)
		return rc;
	rc = snap_remove(s, r->key, err);
	if (rc < 0)
		return rc;
	return reply_empty(out, err);
}

static void info_cleanup(struct snap_info *i)
{
	snap_info_free(i);
}

static void info_msg_cleanup(Containerd__Services__Snapshots__V1__Info **m)
{
	api_info_free(*m);
}

/* StatSnapshotResponse and UpdateSnapshotResponse share a layout. */
struct info_reply {
	ProtobufCMessage base;
	Containerd__Services__Snapshots__V1__Info *info;
};

static int reply_info(struct api_reply *out, const ProtobufCMessageDescriptor *d,
		      const struct snap_info *i, struct rs_error *err)
{
	rs_cleanup(info_msg_cleanup) Containerd__Services__Snapshots__V1__Info *m = api_info_new(i);
	if (!m)
		return rs_err(err, -ENOMEM, "out of memory");
	struct info_reply rep = {.base = PROTOBUF_C_MESSAGE_INIT(d), .info = m};
	return api_reply_add(out, &rep.base, err);
}

static int m_stat(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		  struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__StatSnapshotRequest *r = (const void *)req;
	int rc = need(r->key, "stat", "key", err);
	if (rc < 0)
		return rc;
	rs_cleanup(info_cleanup) struct snap_info i = {0};
	rc = snap_stat(s, r->key, &i, err);
	if (rc < 0)
		return rc;
	return reply_info(
	    out, &containerd__services__snapshots__v1__stat_snapshot_response__descriptor, &i, err);
}

/* containerd lets Update touch the labels only. */
static int check_path(const char *p, struct rs_error *err)
{
	if (strcmp(p, "labels") == 0)
		return 0;
	if (strncmp(p, "labels.", 7) == 0 && p[7])
		return 0;
	return rs_err(err, -EINVAL,
		      "update: cannot update field \"%.128s\": only labels can change", p);
}

static int m_update(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		    struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__UpdateSnapshotRequest *r = (const void *)req;
	if (!r->info)
		return rs_err(err, -EINVAL, "update: info is required");
	int rc = need(r->info->name, "update", "info.name", err);
	if (rc < 0)
		return rc;
	size_t np = r->update_mask ? r->update_mask->n_paths : 0;
	const char *const *paths =
	    r->update_mask ? (const char *const *)r->update_mask->paths : NULL;
	for (size_t k = 0; k < np; k++) {
		rc = check_path(paths[k], err);
		if (rc < 0)
			return rc;
	}
	cleanup_free struct snap_label *l = NULL;
	size_t nl;
	rc = api_labels_in((struct api_map_entry *const *)r->info->labels, r->info->n_labels, &l,
			   &nl, err);
	if (rc < 0)
		return rc;
	struct snap_info in = {
	    .name = r->info->name,
	    .parent = r->info->parent,
	    .kind = SNAP_KIND_UNKNOWN,
	    .labels = l,
	    .nlabels = nl,
	};
	rs_cleanup(info_cleanup) struct snap_info got = {0};
	rc = snap_update(s, &in, paths, np, &got, err);
	if (rc < 0)
		return rc;
	return reply_info(
	    out, &containerd__services__snapshots__v1__update_snapshot_response__descriptor, &got,
	    err);
}

/* List: each info is encoded while the walk holds it (its strings live only
 * for the callback) and appended, as a field of ListSnapshotsResponse, to
 * the message being filled: a repeated message field on the wire is just the
 * concatenation of its elements. */
struct list_ctx {
	struct api_reply *out;
	struct rs_error *err;
	uint32_t field; /* ListSnapshotsResponse.info's number */
	struct rs_buf msg;
	size_t n;
};

static int list_flush(struct list_ctx *c)
{
	if (c->n == 0)
		return 0;
	int rc = api_reply_add_bytes(c->out, c->msg.data, c->msg.len, c->err);
	rs_buf_reset(&c->msg);
	c->n = 0;
	return rc;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

static int list_one(void *ctx, const struct snap_info *info)
{
	struct list_ctx *c = ctx;
	Containerd__Services__Snapshots__V1__Info *m = api_info_new(info);
	if (!m)
		return rs_err(c->err, -ENOMEM, "list: out of memory");
	size_t sz = api_info_size(m);
	uint8_t head[20];
	size_t hl = put_varint(head, (uint64_t)c->field << 3 | 2);
	hl += put_varint(head + hl, sz);
	int rc = 0;
	if (c->n > 0 && c->msg.len + hl + sz > API_LIST_BATCH_BYTES)
		rc = list_flush(c);
	if (rc == 0 &&
	    (rs_buf_reserve(&c->msg, hl + sz) < 0 || rs_buf_append(&c->msg, head, hl) < 0))
		rc = rs_err(c->err, -ENOMEM, "list: out of memory");
	if (rc == 0) {
		c->msg.len += protobuf_c_message_pack(&m->base, c->msg.data + c->msg.len);
		if (++c->n == API_LIST_BATCH)
			rc = list_flush(c);
	}
	api_info_free(m);
	return rc;
}

static int m_list(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		  struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__ListSnapshotsRequest *r = (const void *)req;
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
	    &containerd__services__snapshots__v1__list_snapshots_response__descriptor, "info");
	struct list_ctx c = {.out = out, .err = err, .field = f->id};
	int rc = snap_walk(s, (const char *const *)r->filters, r->n_filters, list_one, &c, err);
	if (rc == 0)
		rc = list_flush(&c);
	rs_buf_free(&c.msg);
	if (rc > 0) /* list_one stops the walk with negative errors only */
		rc = rs_err(err, -EIO, "list: walk stopped with %d", rc);
	return rc;
}

static int m_usage(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		   struct rs_error *err)
{
	const Containerd__Services__Snapshots__V1__UsageRequest *r = (const void *)req;
	int rc = need(r->key, "usage", "key", err);
	if (rc < 0)
		return rc;
	int64_t size = 0, inodes = 0;
	rc = snap_usage(s, r->key, &size, &inodes, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Snapshots__V1__UsageResponse m =
	    CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
	m.size = size;
	m.inodes = inodes;
	return api_reply_add(out, &m.base, err);
}

static int m_cleanup(struct snapshotter *s, const ProtobufCMessage *req, struct api_reply *out,
		     struct rs_error *err)
{
	int rc = snap_cleanup(s, err);
	if (rc < 0)
		return rc;
	return reply_empty(out, err);
}

#define D(x) &containerd__services__snapshots__v1__##x##__descriptor
static const struct api_method methods[] = {
    {"Prepare", D(prepare_snapshot_request), m_prepare},
    {"View", D(view_snapshot_request), m_view},
    {"Mounts", D(mounts_request), m_mounts},
    {"Commit", D(commit_snapshot_request), m_commit},
    {"Remove", D(remove_snapshot_request), m_remove},
    {"Stat", D(stat_snapshot_request), m_stat},
    {"Update", D(update_snapshot_request), m_update},
    {"List", D(list_snapshots_request), m_list},
    {"Usage", D(usage_request), m_usage},
    {"Cleanup", D(cleanup_request), m_cleanup},
};
#undef D

const struct api_method *api_method_find(const char *path, size_t len)
{
	size_t pl = strlen(API_SERVICE);
	if (len <= pl || memcmp(path, API_SERVICE, pl) != 0)
		return NULL;
	const char *name = path + pl;
	size_t nl = len - pl;
	for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++)
		if (strlen(methods[k].name) == nl && memcmp(methods[k].name, name, nl) == 0)
			return &methods[k];
	return NULL;
}
