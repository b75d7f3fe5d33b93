// SPDX-License-Identifier: Apache-2.0
/* Health of remote ancestors: Mounts, View and Prepare ask the hook whether
 * every remote layer under the snapshot can serve reads, as
 * stargz-snapshotter's checkAvailability does, and answer UNAVAILABLE
 * naming the layer when one cannot. */
#include <errno.h>
#include <string.h>

#include "snapshot/snap_internal.h"

/* Labels that name a remote layer's digest (default and CRI label sets). */
static const char *const digest_labels[] = {
    "containerd.io/snapshot/remote/stargz.digest",
    "containerd.io/snapshot/cri.layer-digest",
};

void snap_remote_refs_free(struct snap_remote_refs *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].fs_dir);
		free(r->v[i].layer);
	}
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

static int add_ref(struct snapshotter *s, int64_t id, struct snap_remote_refs *out,
		   struct rs_error *err)
{
	struct snap_row row;
	struct snap_label *l = NULL;
	size_t nl = 0;
	int r = snap_db_get_id(s->db, id, &row, err);
	if (r < 0)
		return r;
	r = snap_db_labels(s->db, id, &l, &nl, err);
	if (r < 0) {
		snap_row_free(&row);
		return r;
	}
	const char *layer = row.key;
	for (size_t i = 0; i < sizeof(digest_labels) / sizeof(digest_labels[0]); i++) {
		const char *d = snap_label_get(l, nl, digest_labels[i]);
		if (d && *d) {
			layer = d;
			break;
		}
	}
	struct snap_remote_ref ref = {.fs_dir = snap_fs_dir(s, id), .layer = strdup(layer)};
	snap_labels_free(l, nl);
	snap_row_free(&row);
	struct snap_remote_ref *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
	if (!nv || !ref.fs_dir || !ref.layer) {
		free(ref.fs_dir);
		free(ref.layer);
		if (nv)
			out->v = nv;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	out->v = nv;
	out->v[out->n++] = ref;
	return 0;
}

int snap_remote_refs_collect(struct snapshotter *s, const int64_t *ids, size_t n,
			     struct snap_remote_refs *out, struct rs_error *err)
{
	if (!s->has_remote || !s->remote.check)
		return 0;
	for (size_t i = 0; i < n; i++) {
		bool remote = false;
		int r = snap_db_has_label(s->db, ids[i], SNAP_LABEL_REMOTE, &remote, err);
		if (r == 0 && remote)
			r = add_ref(s, ids[i], out, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_remote_refs_check(struct snapshotter *s, const struct snap_remote_refs *refs,
			   struct rs_error *err)
{
	for (size_t i = 0; i < refs->n; i++) {
		struct rs_error e = {0};
		int r = s->remote.check(s->remote.ctx, refs->v[i].fs_dir, &e);
		if (r < 0) {
			rs_log(RS_LOG_WARN, "snapshot: layer %s at %s is unavailable: %s",
			       refs->v[i].layer, refs->v[i].fs_dir,
			       e.msg[0] ? e.msg : strerror(-r));
			return rs_err(err, SNAP_EUNAVAILABLE, "layer %s unavailable: %s",
				      refs->v[i].layer, e.msg[0] ? e.msg : strerror(-r));
		}
	}
	return 0;
}
