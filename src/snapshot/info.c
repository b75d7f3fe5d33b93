// SPDX-License-Identifier: Apache-2.0
/* Labels and snapshot info: validation (containerd's labels.Validate), copies,
 * lookups, and the info handed to callers. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "snapshot/snap_internal.h"

/* How much of an oversized key the error message shows, as containerd does. */
#define KEY_MSG_MAX 64

const char *snap_label_get(const struct snap_label *l, size_t n, const char *key)
{
	const char *v = NULL;
	for (size_t i = 0; i < n; i++)
		if (l[i].key && strcmp(l[i].key, key) == 0)
			v = l[i].value ? l[i].value : "";
	return v;
}

int snap_labels_validate(const struct snap_label *l, size_t n, struct rs_error *err)
{
	if (n && !l)
		return rs_err(err, -EINVAL, "labels: NULL array of %zu labels", n);
	for (size_t i = 0; i < n; i++) {
		if (!l[i].key)
			return rs_err(err, -EINVAL, "labels: label %zu has no key", i);
		size_t total = strlen(l[i].key) + (l[i].value ? strlen(l[i].value) : 0);
		if (total > SNAP_LABEL_MAX)
			return rs_err(err, -EINVAL,
				      "label key and value length (%zu bytes) greater than maximum "
				      "size (%d bytes), key: %.*s",
				      total, SNAP_LABEL_MAX, KEY_MSG_MAX, l[i].key);
	}
	return 0;
}

void snap_labels_free(struct snap_label *l, size_t n)
{
	if (!l)
		return;
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

int snap_labels_dup(const struct snap_label *l, size_t n, struct snap_label **out)
{
	*out = NULL;
	if (!n)
		return 0;
	struct snap_label *v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].key = strdup(l[i].key);
		v[i].value = strdup(l[i].value ? l[i].value : "");
		if (!v[i].key || !v[i].value) {
			snap_labels_free(v, n);
			return -ENOMEM;
		}
	}
	*out = v;
	return 0;
}

int snap_info_from_row(const struct snap_row *r, struct snap_label *labels, size_t nl,
		       struct snap_info *info)
{
	memset(info, 0, sizeof(*info));
	info->name = strdup(r->key);
	if (r->parent)
		info->parent = strdup(r->parent);
	if (!info->name || (r->parent && !info->parent)) {
		free(info->name);
		free(info->parent);
		memset(info, 0, sizeof(*info));
		snap_labels_free(labels, nl);
		return -ENOMEM;
	}
	info->kind = r->kind;
	info->labels = labels;
	info->nlabels = nl;
	info->created_ns = r->created;
	info->updated_ns = r->updated;
	return 0;
}

void snap_info_free(struct snap_info *i)
{
	if (!i)
		return;
	free(i->name);
	free(i->parent);
	snap_labels_free(i->labels, i->nlabels);
	memset(i, 0, sizeof(*i));
}

int64_t snap_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
