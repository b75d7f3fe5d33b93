// SPDX-License-Identifier: Apache-2.0
/* A stand-in for src/snapshot, in memory, for testing src/api alone: the
 * same calls and error codes, no directories, no database. Labels starting
 * with "test." steer it:
 *   test.sleep-ms=N       the call sleeps N ms (concurrency, cancellation),
 *                         between "mock: sleep start" and "... end" on stderr
 *   test.fail=CODE        the call fails: enoent eexist einval precondition
 *                         unavailable eio nomsg (eio without a message)
 *   test.fail-msg=TEXT    the call fails (EIO) with TEXT as the message
 * Filters for snap_walk: "name==X", "kind==K", "labels.X" (present),
 * "bad(" fails to parse; anything else matches everything. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "snapshot/snapshot.h"

struct mock_snap {
	struct mock_snap *next;
	struct snap_info info;
};

struct snapshotter {
	/* lock guards list. */
	pthread_mutex_t lock;
	struct mock_snap *list;
};

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int snap_open(const struct snap_opts *o, struct snapshotter **out, struct rs_error *err)
{
	struct snapshotter *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

static void labels_free(struct snap_label *l, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		free(l[k].key);
		free(l[k].value);
	}
	free(l);
}

void snap_info_free(struct snap_info *i)
{
	if (!i)
		return;
	free(i->name);
	free(i->parent);
	labels_free(i->labels, i->nlabels);
	memset(i, 0, sizeof(*i));
}

void snap_close(struct snapshotter *s)
{
	struct mock_snap *m = s->list;
	while (m) {
		struct mock_snap *n = m->next;
		snap_info_free(&m->info);
		free(m);
		m = n;
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *snap_label_get(const struct snap_label *l, size_t n, const char *key)
{
	for (size_t k = 0; k < n; k++)
		if (strcmp(l[k].key, key) == 0)
			return l[k].value;
	return NULL;
}

void snap_mounts_free(struct snap_mounts *m)
{
	for (size_t k = 0; k < m->n; k++) {
		free(m->v[k].type);
		free(m->v[k].source);
		for (size_t j = 0; j < m->v[k].noptions; j++)
			free(m->v[k].options[j]);
		free(m->v[k].options);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static struct snap_label *labels_dup(const struct snap_label *l, size_t n)
{
	struct snap_label *d = calloc(n ? n : 1, sizeof(*d));
	for (size_t k = 0; d && k < n; k++) {
		d[k].key = strdup(l[k].key);
		d[k].value = strdup(l[k].value);
	}
	return d;
}

static int info_dup(const struct snap_info *i, struct snap_info *o)
{
	*o = *i;
	o->name = strdup(i->name);
	o->parent = i->parent ? strdup(i->parent) : NULL;
	o->labels = labels_dup(i->labels, i->nlabels);
	return o->name && o->labels ? 0 : -ENOMEM;
}

/* Steering labels; 0 or the error to fail with. */
static int steer(const struct snap_label *l, size_t n, struct rs_error *err)
{
	const char *ms = snap_label_get(l, n, "test.sleep-ms");
	if (ms) {
		long v = strtol(ms, NULL, 10);
		struct timespec t = {v / 1000, (v % 1000) * 1000000};
		fprintf(stderr, "mock: sleep start\n");
		nanosleep(&t, NULL);
		fprintf(stderr, "mock: sleep end\n");
	}
	const char *fm = snap_label_get(l, n, "test.fail-msg");
	if (fm)
		return rs_err(err, -EIO, "%s", fm);
	const char *f = snap_label_get(l, n, "test.fail");
	if (!f)
		return 0;
	static const struct {
		const char *name;
		int code;
	} codes[] = {
	    {"enoent", -ENOENT},
	    {"eexist", -EEXIST},
	    {"einval", -EINVAL},
	    {"precondition", SNAP_EPRECONDITION},
	    {"unavailable", SNAP_EUNAVAILABLE},
	    {"eio", -EIO},
	};
	if (strcmp(f, "nomsg") == 0)
		return -EIO;
	for (size_t k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
		if (strcmp(f, codes[k].name) == 0)
			return rs_err(err, codes[k].code, "mock failure %s as asked", f);
	return 0;
}

static struct mock_snap *find(struct snapshotter *s, const char *key)
{
	for (struct mock_snap *m = s->list; m; m = m->next)
		if (strcmp(m->info.name, key) == 0)
			return m;
	return NULL;
}

static int mounts_of(const struct mock_snap *m, struct snap_mounts *out)
{
	out->v = calloc(1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = 1;
	struct snap_mount *v = out->v;
	char buf[512];
	if (!m->info.parent || !*m->info.parent) {
		v->type = strdup("bind");
		snprintf(buf, sizeof(buf), "/mock/%s/fs", m->info.name);
		v->source = strdup(buf);
		v->options = calloc(2, sizeof(char *));
		v->options[0] = strdup(m->info.kind == SNAP_KIND_VIEW ? "ro" : "rw");
		v->options[1] = strdup("rbind");
		v->noptions = 2;
	} else {
		v->type = strdup("overlay");
		v->source = strdup("overlay");
		v->options = calloc(1, sizeof(char *));
		snprintf(buf, sizeof(buf), "lowerdir=/mock/%s/fs", m->info.parent);
		v->options[0] = strdup(buf);
		v->noptions = 1;
	}
	return 0;
}

static int create(struct snapshotter *s, const char *key, const char *parent,
		  const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
		  struct rs_error *err, enum snap_kind kind)
{
	int rc = steer(labels, nlabels, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->lock);
	if (find(s, key)) {
		rc = rs_err(err, -EEXIST, "snapshot %s", key);
		goto out;
	}
	if (parent && *parent) {
		struct mock_snap *p = find(s, parent);
		if (!p) {
			rc = rs_err(err, -ENOENT, "parent snapshot %s does not exist", parent);
			goto out;
		}
		if (p->info.kind != SNAP_KIND_COMMITTED) {
			rc = rs_err(err, -EINVAL, "parent %s is not committed", parent);
			goto out;
		}
	}
	struct mock_snap *m = calloc(1, sizeof(*m));
	m->info.name = strdup(key);
	m->info.parent = parent && *parent ? strdup(parent) : NULL;
	m->info.kind = kind;
	m->info.labels = labels_dup(labels, nlabels);
	m->info.nlabels = nlabels;
	m->info.created_ns = m->info.updated_ns = now_ns();
	m->next = s->list;
	s->list = m;
	rc = mounts_of(m, out);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_prepare(struct snapshotter *s, const char *key, const char *parent,
		 const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
		 struct rs_error *err)
{
	return create(s, key, parent, labels, nlabels, out, err, SNAP_KIND_ACTIVE);
}

int snap_view(struct snapshotter *s, const char *key, const char *parent,
	      const struct snap_label *labels, size_t nlabels, struct snap_mounts *out,
	      struct rs_error *err)
{
	return create(s, key, parent, labels, nlabels, out, err, SNAP_KIND_VIEW);
}

int snap_mounts(struct snapshotter *s, const char *key, struct snap_mounts *out,
		struct rs_error *err)
{
	pthread_mutex_lock(&s->lock);
	struct mock_snap *m = find(s, key);
	int rc = m ? mounts_of(m, out) : rs_err(err, -ENOENT, "snapshot %s does not exist", key);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_commit(struct snapshotter *s, const char *name, const char *key,
		const struct snap_label *labels, size_t nlabels, struct rs_error *err)
{
	int rc = steer(labels, nlabels, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->lock);
	struct mock_snap *m = find(s, key);
	if (!m)
		rc = rs_err(err, -ENOENT, "snapshot %s does not exist", key);
	else if (m->info.kind != SNAP_KIND_ACTIVE)
		rc = rs_err(err, SNAP_EPRECONDITION, "snapshot %s is not active", key);
	else if (find(s, name))
		rc = rs_err(err, -EEXIST, "snapshot %s", name);
	if (rc == 0) {
		char *n = strdup(name);
		free(m->info.name);
		m->info.name = n;
		m->info.kind = SNAP_KIND_COMMITTED;
		labels_free(m->info.labels, m->info.nlabels);
		m->info.labels = labels_dup(labels, nlabels);
		m->info.nlabels = nlabels;
		m->info.updated_ns = now_ns();
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_remove(struct snapshotter *s, const char *key, struct rs_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&s->lock);
	struct mock_snap **pp = &s->list;
	while (*pp && strcmp((*pp)->info.name, key) != 0)
		pp = &(*pp)->next;
	if (!*pp) {
		rc = rs_err(err, -ENOENT, "snapshot %s does not exist", key);
		goto out;
	}
	for (struct mock_snap *c = s->list; c; c = c->next)
		if (c->info.parent && strcmp(c->info.parent, key) == 0) {
			rc = rs_err(err, SNAP_EPRECONDITION, "cannot remove snapshot with child");
			goto out;
		}
	struct mock_snap *m = *pp;
	*pp = m->next;
	snap_info_free(&m->info);
	free(m);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_stat(struct snapshotter *s, const char *key, struct snap_info *out, struct rs_error *err)
{
	pthread_mutex_lock(&s->lock);
	struct mock_snap *m = find(s, key);
	int rc =
	    m ? info_dup(&m->info, out) : rs_err(err, -ENOENT, "snapshot %s does not exist", key);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void label_set(struct snap_info *i, const char *key, const char *value)
{
	for (size_t k = 0; k < i->nlabels; k++)
		if (strcmp(i->labels[k].key, key) == 0) {
			free(i->labels[k].value);
			if (value) {
				i->labels[k].value = strdup(value);
			} else {
				free(i->labels[k].key);
				i->labels[k] = i->labels[--i->nlabels];
			}
			return;
		}
	if (!value)
		return;
	i->labels = realloc(i->labels, (i->nlabels + 1) * sizeof(*i->labels));
	i->labels[i->nlabels].key = strdup(key);
	i->labels[i->nlabels++].value = strdup(value);
}

int snap_update(struct snapshotter *s, const struct snap_info *in, const char *const *paths,
		size_t npaths, struct snap_info *out, struct rs_error *err)
{
	pthread_mutex_lock(&s->lock);
	struct mock_snap *m = find(s, in->name);
	int rc = 0;
	if (!m) {
		rc = rs_err(err, -ENOENT, "snapshot %s does not exist", in->name);
		goto out;
	}
	bool all = npaths == 0;
	for (size_t k = 0; k < npaths; k++) {
		if (strcmp(paths[k], "labels") == 0)
			all = true;
		else if (strncmp(paths[k], "labels.", 7) == 0)
			label_set(&m->info, paths[k] + 7,
				  snap_label_get(in->labels, in->nlabels, paths[k] + 7));
		else {
			rc = rs_err(err, -EINVAL, "cannot update %s", paths[k]);
			goto out;
		}
	}
	if (all) {
		labels_free(m->info.labels, m->info.nlabels);
		m->info.labels = labels_dup(in->labels, in->nlabels);
		m->info.nlabels = in->nlabels;
	}
	m->info.updated_ns = now_ns();
	rc = info_dup(&m->info, out);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_usage(struct snapshotter *s, const char *key, int64_t *size, int64_t *inodes,
	       struct rs_error *err)
{
	pthread_mutex_lock(&s->lock);
	struct mock_snap *m = find(s, key);
	int rc = 0;
	if (m) {
		*size = 4096 * (int64_t)strlen(key);
		*inodes = 1;
	} else {
		rc = rs_err(err, -ENOENT, "snapshot %s does not exist", key);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static const char *kind_name(enum snap_kind k)
{
	switch (k) {
	case SNAP_KIND_VIEW:
		return "view";
	case SNAP_KIND_ACTIVE:
		return "active";
	case SNAP_KIND_COMMITTED:
		return "committed";
	default:
		return "unknown";
	}
}

static bool match(const struct snap_info *i, const char *f)
{
	if (strncmp(f, "name==", 6) == 0)
		return strcmp(i->name, f + 6) == 0;
	if (strncmp(f, "kind==", 6) == 0)
		return strcmp(kind_name(i->kind), f + 6) == 0;
	if (strncmp(f, "labels.", 7) == 0)
		return snap_label_get(i->labels, i->nlabels, f + 7) != NULL;
	return true;
}

int snap_walk(struct snapshotter *s, const char *const *filters, size_t nfilters, snap_walk_fn fn,
	      void *ctx, struct rs_error *err)
{
	for (size_t k = 0; k < nfilters; k++)
		if (strchr(filters[k], '('))
			return rs_err(err, -EINVAL, "filter %s: parse error", filters[k]);
	pthread_mutex_lock(&s->lock);
	int rc = 0;
	for (struct mock_snap *m = s->list; m && rc == 0; m = m->next) {
		bool ok = nfilters == 0;
		for (size_t k = 0; k < nfilters && !ok; k++)
			ok = match(&m->info, filters[k]);
		if (!ok)
			continue;
		/* As src/snapshot does: fn sees a copy that dies after the call. */
		struct snap_info copy;
		rc = info_dup(&m->info, &copy);
		if (rc == 0)
			rc = fn(ctx, &copy);
		snap_info_free(&copy);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snap_cleanup(struct snapshotter *s, struct rs_error *err)
{
	return 0;
}
