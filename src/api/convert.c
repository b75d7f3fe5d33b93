// SPDX-License-Identifier: Apache-2.0
/* Between protobuf-c messages and src/snapshot's structs: labels, mounts,
 * infos, timestamps. Outgoing messages point into the snapshot structs'
 * strings; only the message scaffolding is allocated here. */
#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <string.h>

#include "api/api_internal.h"
#include "types_mount.pb-c.h"

void api_reply_free(struct api_reply *r)
{
	for (size_t i = 0; i < r->n; i++)
		grpc_byte_buffer_destroy(r->msgs[i]);
	free(r->msgs);
	r->msgs = NULL;
	r->n = r->cap = 0;
}

static int reply_grow(struct api_reply *r, struct rs_error *err)
{
	if (r->n < r->cap)
		return 0;
	size_t cap = r->cap ? r->cap * 2 : 4;
	grpc_byte_buffer **v = realloc(r->msgs, cap * sizeof(*v));
	if (!v)
		return rs_err(err, -ENOMEM, "out of memory");
	r->msgs = v;
	r->cap = cap;
	return 0;
}

int api_reply_add(struct api_reply *r, const ProtobufCMessage *m, struct rs_error *err)
{
	if (reply_grow(r, err) < 0)
		return err->code;
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	size_t got = protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	if (got != len) {
		grpc_slice_unref(s);
		return rs_err(err, -EIO, "packing the reply: %zu bytes, expected %zu", got, len);
	}
	r->msgs[r->n++] = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return 0;
}

int api_reply_add_bytes(struct api_reply *r, const void *p, size_t len, struct rs_error *err)
{
	if (reply_grow(r, err) < 0)
		return err->code;
	grpc_slice s = grpc_slice_from_copied_buffer(p, len);
	r->msgs[r->n++] = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return 0;
}

struct label_ref {
	const struct api_map_entry *e;
	size_t pos;
};

static int label_ref_cmp(const void *a, const void *b)
{
	const struct label_ref *x = a, *y = b;
	int c = strcmp(x->e->key, y->e->key);
	if (c)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int api_labels_in(struct api_map_entry *const *in, size_t n, struct snap_label **out, size_t *nout,
		  struct rs_error *err)
{
	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(in[i]->key), vl = strlen(in[i]->value);
		if (kl + vl > API_LABEL_MAX)
			return rs_err(err, -EINVAL,
				      "label key and value greater than maximum size (%d bytes), "
				      "key: %.64s",
				      API_LABEL_MAX, in[i]->key);
	}
	cleanup_free struct label_ref *refs = calloc(n, sizeof(*refs));
	cleanup_free struct snap_label *l = calloc(n, sizeof(*l));
	if (!refs || !l)
		return rs_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		refs[i] = (struct label_ref){in[i], i};
	qsort(refs, n, sizeof(*refs), label_ref_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		/* Of equal keys the last sent sorts last: keep that one. */
		if (i + 1 < n && strcmp(refs[i].e->key, refs[i + 1].e->key) == 0)
			continue;
		l[k].key = refs[i].e->key;
		l[k].value = refs[i].e->value;
		k++;
	}
	*out = steal_pointer(&l);
	*nout = k;
	return 0;
}

/* The three mounts responses share this layout. */
struct mounts_msg {
	ProtobufCMessage base;
	size_t n_mounts;
	Containerd__Types__Mount **mounts;
};

int api_reply_mounts(struct api_reply *r, const ProtobufCMessageDescriptor *d,
		     const struct snap_mounts *m, struct rs_error *err)
{
	struct mounts_msg msg = {.base = PROTOBUF_C_MESSAGE_INIT(d)};
	cleanup_free Containerd__Types__Mount *v = NULL;
	cleanup_free Containerd__Types__Mount **pv = NULL;
	if (m->n) {
		v = calloc(m->n, sizeof(*v));
		pv = calloc(m->n, sizeof(*pv));
		if (!v || !pv)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < m->n; i++) {
		containerd__types__mount__init(&v[i]);
		const struct snap_mount *sm = &m->v[i];
		if (sm->type)
			v[i].type = sm->type;
		if (sm->source)
			v[i].source = sm->source;
		v[i].n_options = sm->noptions;
		v[i].options = sm->options;
		pv[i] = &v[i];
	}
	msg.n_mounts = m->n;
	msg.mounts = pv;
	return api_reply_add(r, &msg.base, err);
}

void api_timestamp_of(int64_t ns, int64_t *sec, int32_t *nsec)
{
	int64_t s = ns / 1000000000, n = ns % 1000000000;
	if (n < 0) {
		s--;
		n += 1000000000;
	}
	*sec = s;
	*nsec = (int32_t)n;
}

/* One allocation holds the Info, its timestamps and its label entries. */
struct info_block {
	Containerd__Services__Snapshots__V1__Info info;
	Google__Protobuf__Timestamp created, updated;
	Containerd__Services__Snapshots__V1__Info__LabelsEntry *entries;
	Containerd__Services__Snapshots__V1__Info__LabelsEntry **pentries;
};

Containerd__Services__Snapshots__V1__Info *api_info_new(const struct snap_info *i)
{
	struct info_block *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	if (i->nlabels) {
		b->entries = calloc(i->nlabels, sizeof(*b->entries));
		b->pentries = calloc(i->nlabels, sizeof(*b->pentries));
		if (!b->entries || !b->pentries) {
			free(b->entries);
			free(b->pentries);
			free(b);
			return NULL;
		}
	}
	Containerd__Services__Snapshots__V1__Info *m = &b->info;
	containerd__services__snapshots__v1__info__init(m);
	if (i->name)
		m->name = i->name;
	if (i->parent)
		m->parent = i->parent;
	switch (i->kind) {
	case SNAP_KIND_VIEW:
	case SNAP_KIND_ACTIVE:
	case SNAP_KIND_COMMITTED:
		m->kind = (Containerd__Services__Snapshots__V1__Kind)i->kind;
		break;
	default:
		m->kind = CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__UNKNOWN;
	}
	google__protobuf__timestamp__init(&b->created);
	google__protobuf__timestamp__init(&b->updated);
	api_timestamp_of(i->created_ns, &b->created.seconds, &b->created.nanos);
	api_timestamp_of(i->updated_ns, &b->updated.seconds, &b->updated.nanos);
	m->created_at = &b->created;
	m->updated_at = &b->updated;
	for (size_t k = 0; k < i->nlabels; k++) {
		containerd__services__snapshots__v1__info__labels_entry__init(&b->entries[k]);
		if (i->labels[k].key)
			b->entries[k].key = i->labels[k].key;
		if (i->labels[k].value)
			b->entries[k].value = i->labels[k].value;
		b->pentries[k] = &b->entries[k];
	}
	m->n_labels = i->nlabels;
	m->labels = b->pentries;
	return m;
}

void api_info_free(Containerd__Services__Snapshots__V1__Info *m)
{
	if (!m)
		return;
	struct info_block *b = (struct info_block *)m;
	free(b->entries);
	free(b->pentries);
	free(b);
}

size_t api_info_size(const Containerd__Services__Snapshots__V1__Info *m)
{
	return protobuf_c_message_get_packed_size(&m->base);
}

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < len; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	return len;
}

void api_utf8_sanitize(char *s, size_t n)
{
	unsigned char *p = (unsigned char *)s;
	while (n) {
		size_t l = utf8_seq(p, n);
		if (!l) {
			*p = '?';
			l = 1;
		}
		p += l;
		n -= l;
	}
}
