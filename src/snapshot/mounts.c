// SPDX-License-Identifier: Apache-2.0
/* The mounts of a snapshot, as containerd 1.6's overlayfs snapshotter returns
 * them (snapshots/overlay/overlay.go, mounts()):
 *   no parent:             bind ROOT/snapshots/<id>/fs, "rw"|"ro" (view), "rbind"
 *   view of one parent:    bind <parent>/fs, "ro", "rbind"
 *   active with parents:   overlay [index=off] workdir= upperdir= lowerdir=p1:p2:..
 *   view of many parents:  overlay [index=off] lowerdir=p1:p2:..
 * lowerdir lists the parents' fs dirs nearest first. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/snap_internal.h"

void snap_mounts_free(struct snap_mounts *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		struct snap_mount *x = &m->v[i];
		free(x->type);
		free(x->source);
		for (size_t j = 0; j < x->noptions; j++)
			free(x->options[j]);
		free(x->options);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static int add_opt(struct snap_mount *m, char *opt)
{
	if (!opt)
		return -ENOMEM;
	char **nv = realloc(m->options, (m->noptions + 1) * sizeof(*nv));
	if (!nv) {
		free(opt);
		return -ENOMEM;
	}
	m->options = nv;
	m->options[m->noptions++] = opt;
	return 0;
}

static char *fmt(const char *f, const char *a)
{
	char *p = NULL;
	return asprintf(&p, f, a) < 0 ? NULL : p;
}

static int bind_mount(struct snap_mount *m, char *source, bool ro)
{
	m->type = strdup("bind");
	m->source = source;
	if (!m->type || !m->source)
		return -ENOMEM;
	int r = add_opt(m, strdup(ro ? "ro" : "rw"));
	return r < 0 ? r : add_opt(m, strdup("rbind"));
}

static char *lowerdir(const struct snapshotter *s, const int64_t *parents, size_t np)
{
	struct rs_buf b = {0};
	int r = rs_buf_printf(&b, "lowerdir=");
	for (size_t i = 0; i < np && r == 0; i++)
		r = rs_buf_printf(&b, "%s%s/%lld/fs", i ? ":" : "", s->snap_dir,
				  (long long)parents[i]);
	if (r < 0) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

static int overlay_mount(const struct snapshotter *s, struct snap_mount *m, int64_t id,
			 enum snap_kind kind, const int64_t *parents, size_t np)
{
	m->type = strdup("overlay");
	m->source = strdup("overlay");
	if (!m->type || !m->source)
		return -ENOMEM;
	int r = 0;
	if (s->index_off)
		r = add_opt(m, strdup("index=off"));
	if (r == 0 && kind == SNAP_KIND_ACTIVE) {
		cleanup_free char *work = snap_work_dir(s, id);
		cleanup_free char *upper = snap_fs_dir(s, id);
		if (!work || !upper)
			return -ENOMEM;
		r = add_opt(m, fmt("workdir=%s", work));
		if (r == 0)
			r = add_opt(m, fmt("upperdir=%s", upper));
	}
	return r < 0 ? r : add_opt(m, lowerdir(s, parents, np));
}

int snap_build_mounts(const struct snapshotter *s, int64_t id, enum snap_kind kind,
		      const int64_t *parents, size_t np, struct snap_mounts *out,
		      struct rs_error *err)
{
	struct snap_mounts m = {.v = calloc(1, sizeof(struct snap_mount)), .n = 1};
	int r;
	if (!m.v)
		return rs_err(err, -ENOMEM, "out of memory");
	if (np == 0)
		r = bind_mount(&m.v[0], snap_fs_dir(s, id), kind == SNAP_KIND_VIEW);
	else if (kind != SNAP_KIND_ACTIVE && np == 1)
		r = bind_mount(&m.v[0], snap_fs_dir(s, parents[0]), true);
	else
		r = overlay_mount(s, &m.v[0], id, kind, parents, np);
	if (r < 0) {
		snap_mounts_free(&m);
		return rs_err(err, r, "out of memory");
	}
	*out = m;
	return 0;
}
