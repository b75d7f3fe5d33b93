// SPDX-License-Identifier: Apache-2.0
/* Between our structs and protobuf-c messages: map entries, mounts. */
#include <errno.h>
#include <string.h>

#include "client/client_internal.h"
#include "types_mount.pb-c.h"

void ctrd_kv_free(struct ctrd_kv *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

const char *ctrd_kv_get(const struct ctrd_kv *v, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].key, key) == 0)
			return v[i].value;
	return NULL;
}

void *ctrd_pb_kv_new(const ProtobufCMessageDescriptor *desc, const struct ctrd_kv *kv, size_t n)
{
	if (n == 0)
		return NULL;
	size_t bytes;
	if (rs_mul_overflow(n, sizeof(struct ctrd_pb_kv) + sizeof(void *), &bytes))
		return NULL;
	void **ptrs = malloc(bytes);
	if (!ptrs)
		return NULL;
	struct ctrd_pb_kv *e = (struct ctrd_pb_kv *)(ptrs + n);
	for (size_t i = 0; i < n; i++) {
		protobuf_c_message_init(desc, &e[i]);
		e[i].key = kv[i].key;
		e[i].value = kv[i].value ? kv[i].value : (char *)"";
		ptrs[i] = &e[i];
	}
	return ptrs;
}

int ctrd_pb_kv_copy(void *entries, size_t n, struct ctrd_kv **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	struct ctrd_pb_kv **e = entries;
	struct ctrd_kv *v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].key = strdup(e[i]->key ? e[i]->key : "");
		v[i].value = strdup(e[i]->value ? e[i]->value : "");
		if (!v[i].key || !v[i].value) {
			ctrd_kv_free(v, i + 1);
			return -ENOMEM;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

void ctrd_mounts_free(struct ctrd_mounts *m)
{
	if (!m || !m->v)
		return;
	for (size_t i = 0; i < m->n; i++) {
		struct ctrd_mount *x = &m->v[i];
		free(x->type);
		free(x->source);
		free(x->target);
		for (size_t j = 0; j < x->n_options; j++)
			free(x->options[j]);
		free(x->options);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

int ctrd_mounts_from_pb(void *mounts, size_t n, struct ctrd_mounts *out)
{
	Containerd__Types__Mount **pm = mounts;
	out->v = NULL;
	out->n = 0;
	if (n == 0)
		return 0;
	out->v = calloc(n, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = n;
	for (size_t i = 0; i < n; i++) {
		struct ctrd_mount *x = &out->v[i];
		x->type = strdup(pm[i]->type ? pm[i]->type : "");
		x->source = strdup(pm[i]->source ? pm[i]->source : "");
		x->target = strdup(pm[i]->target ? pm[i]->target : "");
		if (!x->type || !x->source || !x->target)
			goto oom;
		if (pm[i]->n_options) {
			x->options = calloc(pm[i]->n_options, sizeof(char *));
			if (!x->options)
				goto oom;
			for (size_t j = 0; j < pm[i]->n_options; j++) {
				x->options[j] = strdup(pm[i]->options[j]);
				if (!x->options[j])
					goto oom;
				x->n_options = j + 1;
			}
		}
	}
	return 0;
oom:
	ctrd_mounts_free(out);
	return -ENOMEM;
}

void *ctrd_mounts_to_pb(const struct ctrd_mounts *m)
{
	if (m->n == 0)
		return NULL;
	size_t bytes;
	if (rs_mul_overflow(m->n, sizeof(Containerd__Types__Mount) + sizeof(void *), &bytes))
		return NULL;
	void **ptrs = malloc(bytes);
	if (!ptrs)
		return NULL;
	Containerd__Types__Mount *pm = (Containerd__Types__Mount *)(ptrs + m->n);
	for (size_t i = 0; i < m->n; i++) {
		containerd__types__mount__init(&pm[i]);
		pm[i].type = m->v[i].type;
		pm[i].source = m->v[i].source;
		pm[i].target = m->v[i].target ? m->v[i].target : (char *)"";
		pm[i].n_options = m->v[i].n_options;
		pm[i].options = m->v[i].options;
		ptrs[i] = &pm[i];
	}
	return ptrs;
}
