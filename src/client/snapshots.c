// SPDX-License-Identifier: Apache-2.0
/* containerd's snapshots service, for one snapshotter by name. */
#include <errno.h>
#include <string.h>

#include "client/client_internal.h"
#include "services_snapshots_v1_snapshots.pb-c.h"

#define SNAPSHOTS "/containerd.services.snapshots.v1.Snapshots/"

void ctrd_snapshot_info_free(struct ctrd_snapshot_info *i)
{
	if (!i)
		return;
	free(i->name);
	free(i->parent);
	ctrd_kv_free(i->labels, i->n_labels);
	memset(i, 0, sizeof(*i));
}

static int take_mounts(void *mounts, size_t n, struct ctrd_mounts *out, struct rs_error *err)
{
	if (!out)
		return 0;
	if (ctrd_mounts_from_pb(mounts, n, out) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
}

int ctrd_snapshot_prepare(struct ctrd_client *c, const char *snapshotter, const char *key,
			  const char *parent, const struct ctrd_kv *labels, size_t n,
			  struct ctrd_mounts *out, struct rs_error *err)
{
	if (out)
		memset(out, 0, sizeof(*out));
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest req =
	    CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	req.snapshotter = (char *)snapshotter;
	req.key = (char *)key;
	req.parent = (char *)(parent ? parent : "");
	cleanup_free void *entries = ctrd_pb_kv_new(
	    &containerd__services__snapshots__v1__prepare_snapshot_request__labels_entry__descriptor,
	    labels, n);
	if (n && !entries)
		return rs_err(err, -ENOMEM, "out of memory");
	req.n_labels = n;
	req.labels = entries;
	ProtobufCMessage *resp = NULL;
	int rc =
	    ctrd_call(c, SNAPSHOTS "Prepare", &req.base,
		      &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor,
		      &resp, 0, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *r = (void *)resp;
	rc = take_mounts(r->mounts, r->n_mounts, out, err);
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int ctrd_snapshot_commit(struct ctrd_client *c, const char *snapshotter, const char *name,
			 const char *key, const struct ctrd_kv *labels, size_t n,
			 struct rs_error *err)
{
	Containerd__Services__Snapshots__V1__CommitSnapshotRequest req =
	    CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
	req.snapshotter = (char *)snapshotter;
	req.name = (char *)name;
	req.key = (char *)key;
	cleanup_free void *entries = ctrd_pb_kv_new(
	    &containerd__services__snapshots__v1__commit_snapshot_request__labels_entry__descriptor,
	    labels, n);
	if (n && !entries)
		return rs_err(err, -ENOMEM, "out of memory");
	req.n_labels = n;
	req.labels = entries;
	return ctrd_call(c, SNAPSHOTS "Commit", &req.base, NULL, NULL, 0, err);
}

int ctrd_snapshot_stat(struct ctrd_client *c, const char *snapshotter, const char *key,
		       struct ctrd_snapshot_info *out, struct rs_error *err)
{
	if (out)
		memset(out, 0, sizeof(*out));
	Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
	    CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
	req.snapshotter = (char *)snapshotter;
	req.key = (char *)key;
	ProtobufCMessage *resp = NULL;
	int rc = ctrd_call(c, SNAPSHOTS "Stat", &req.base,
			   &containerd__services__snapshots__v1__stat_snapshot_response__descriptor,
			   &resp, 0, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Snapshots__V1__StatSnapshotResponse *r = (void *)resp;
	if (!r->info) {
		rc = rs_err(err, -EPROTO, "containerd Snapshots.Stat %s: empty reply", key);
	} else if (out) {
		out->name = strdup(r->info->name ? r->info->name : "");
		out->parent = strdup(r->info->parent ? r->info->parent : "");
		out->kind = (enum ctrd_snapshot_kind)r->info->kind;
		if (!out->name || !out->parent ||
		    ctrd_pb_kv_copy(r->info->labels, r->info->n_labels, &out->labels,
				    &out->n_labels) < 0) {
			ctrd_snapshot_info_free(out);
			rc = rs_err(err, -ENOMEM, "out of memory");
		}
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int ctrd_snapshot_remove(struct ctrd_client *c, const char *snapshotter, const char *key,
			 struct rs_error *err)
{
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
	    CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
	req.snapshotter = (char *)snapshotter;
	req.key = (char *)key;
	return ctrd_call(c, SNAPSHOTS "Remove", &req.base, NULL, NULL, 0, err);
}
