// SPDX-License-Identifier: Apache-2.0
/* TOC JSON of a built blob, byte for byte as the reference writes it: Go's
 * json.MarshalIndent(toc, "", "\t") of JTOC, with its omitempty fields, HTML-safe
 * string escaping, sorted xattr keys and userName/groupName only when they
 * change for a uid/gid (nameIfChanged). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "build_internal.h"

/* uid/gid -> last name written; open addressing. */
struct namemap {
	int64_t *keys;
	const char **vals;
	size_t cap, n;
};

static const char **namemap_slot(struct namemap *m, int64_t key)
{
	if (m->n * 2 >= m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		int64_t *k = malloc(cap * sizeof(*k));
		const char **v = calloc(cap, sizeof(*v));
		if (!k || !v) {
			free(k);
			free(v);
			return NULL;
		}
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->vals[i])
				continue;
			size_t h = ((uint64_t)m->keys[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
			while (v[h])
				h = (h + 1) & (cap - 1);
			k[h] = m->keys[i];
			v[h] = m->vals[i];
		}
		free(m->keys);
		free(m->vals);
		m->keys = k;
		m->vals = v;
		m->cap = cap;
	}
	size_t h = ((uint64_t)key * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
	while (m->vals[h] && m->keys[h] != key)
		h = (h + 1) & (m->cap - 1);
	m->keys[h] = key;
	return &m->vals[h];
}

static void namemap_free(struct namemap *m)
{
	free(m->keys);
	free(m->vals);
}

/* Returns name, or NULL when it is empty or was already the name of id. *oom on failure. */
static const char *name_if_changed(struct namemap *m, int64_t id, const char *name, bool *oom)
{
	if (!name || !*name)
		return NULL;
	const char **slot = namemap_slot(m, id);
	if (!slot) {
		*oom = true;
		return NULL;
	}
	if (*slot && strcmp(*slot, name) == 0)
		return NULL;
	if (!*slot)
		m->n++;
	*slot = name;
	return name;
}

/* One UTF-8 sequence as Go's utf8.DecodeRuneInString: returns its length, or 0
 * for an invalid byte. */
static size_t utf8_len(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t c = s[0];
	size_t len;
	uint32_t v, min;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, v = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, v = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, v = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

static int json_str(struct rs_buf *b, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *s = (const uint8_t *)str;
	size_t n = strlen(str), start = 0, i = 0;
	int r = rs_buf_append(b, "\"", 1);
	while (r == 0 && i < n) {
		uint8_t c = s[i];
		char esc[8];
		size_t elen = 0, adv = 1;
		if (c < 0x80) {
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
			    c != '&') {
				i++;
				continue;
			}
			esc[0] = '\\';
			elen = 2;
			switch (c) {
			case '"':
			case '\\':
				esc[1] = (char)c;
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			default:
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				elen = 6;
			}
		} else {
			uint32_t cp = 0;
			size_t l = utf8_len(s + i, n - i, &cp);
			if (l == 0) {
				memcpy(esc, "\\ufffd", 6);
				elen = 6;
			} else if (cp == 0x2028 || cp == 0x2029) {
				memcpy(esc, "\\u202", 5);
				esc[5] = hex[cp & 15];
				elen = 6;
				adv = l;
			} else {
				i += l;
				continue;
			}
		}
		r = rs_buf_append(b, s + start, i - start);
		if (r == 0)
			r = rs_buf_append(b, esc, elen);
		i += adv;
		start = i;
	}
	if (r == 0)
		r = rs_buf_append(b, s + start, n - start);
	if (r == 0)
		r = rs_buf_append(b, "\"", 1);
	return r;
}

/* Appends ",\n\t\t\t" before every field but the first of an entry. */
struct obj {
	struct rs_buf *b;
	int r;
	bool first;
};

static void field_key(struct obj *o, const char *key)
{
	if (o->r)
		return;
	o->r = rs_buf_append(o->b, o->first ? "\n\t\t\t\"" : ",\n\t\t\t\"", o->first ? 5 : 6);
	o->first = false;
	if (!o->r)
		o->r = rs_buf_printf(o->b, "%s\": ", key);
}

static void field_str(struct obj *o, const char *key, const char *v)
{
	if (!v || !*v)
		return;
	field_key(o, key);
	if (!o->r)
		o->r = json_str(o->b, v);
}

static void field_int(struct obj *o, const char *key, int64_t v)
{
	if (v == 0)
		return;
	field_key(o, key);
	if (!o->r)
		o->r = rs_buf_printf(o->b, "%lld", (long long)v);
}

static void field_digest(struct obj *o, const char *key, const uint8_t d[RS_SHA256_LEN])
{
	char s[RS_DIGEST_STR_LEN];
	rs_digest_format(d, s);
	field_str(o, key, s);
}

static void field_true(struct obj *o, const char *key, bool v)
{
	if (!v)
		return;
	field_key(o, key);
	if (!o->r)
		o->r = rs_buf_append(o->b, "true", 4);
}

/* chunkSize, chunkDigest and our noPrefetch of chunk c. As the reference,
 * chunkSize is left out only on a last chunk shorter than the chunk size. */
static void chunk_fields(struct obj *o, const struct esgz_b_entry *e, uint32_t c,
			 int64_t chunk_size)
{
	int64_t len = esgz_b_chunk_len(e, c, chunk_size);
	if (c + 1 < e->nchunks || len >= chunk_size)
		field_int(o, "chunkSize", len);
	field_digest(o, "chunkDigest", e->chunk_digests[c]);
	field_true(o, ESGZ_TOC_NO_PREFETCH, e->no_prefetch && e->no_prefetch[c]);
}

static void field_xattrs(struct obj *o, const struct esgz_b_entry *e)
{
	if (e->nxattrs == 0)
		return;
	field_key(o, "xattrs");
	if (!o->r)
		o->r = rs_buf_append(o->b, "{", 1);
	for (size_t i = 0; i < e->nxattrs && !o->r; i++) {
		const struct esgz_b_xattr *x = &e->xattrs[i];
		o->r = rs_buf_append(o->b, i ? ",\n\t\t\t\t" : "\n\t\t\t\t", i ? 6 : 5);
		if (!o->r)
			o->r = json_str(o->b, x->name);
		if (!o->r)
			o->r = rs_buf_append(o->b, ": \"", 3);
		if (!o->r)
			o->r = rs_buf_reserve(o->b, 4 * ((x->len + 2) / 3) + 1);
		if (!o->r) {
			o->b->len +=
			    rs_base64_encode(x->value, x->len, (char *)o->b->data + o->b->len);
			o->r = rs_buf_append(o->b, "\"", 1);
		}
	}
	if (!o->r)
		o->r = rs_buf_append(o->b, "\n\t\t\t}", 5);
}

static const char *type_name(uint8_t t)
{
	static const char *const names[] = {
	    [ESGZ_DIR] = "dir",           [ESGZ_REG] = "reg",     [ESGZ_SYMLINK] = "symlink",
	    [ESGZ_HARDLINK] = "hardlink", [ESGZ_CHAR] = "char",   [ESGZ_BLOCK] = "block",
	    [ESGZ_FIFO] = "fifo",         [ESGZ_CHUNK] = "chunk",
	};
	return t <= ESGZ_CHUNK ? names[t] : "reg";
}

static int begin_entry(struct rs_buf *b, bool first, struct obj *o)
{
	o->b = b;
	o->first = true;
	o->r = rs_buf_append(b, first ? "\n\t\t{" : ",\n\t\t{", first ? 4 : 5);
	return o->r;
}

static int end_entry(struct obj *o)
{
	if (!o->r)
		o->r = rs_buf_append(o->b, "\n\t\t}", 4);
	return o->r;
}

int esgz_b_toc_json(const struct esgz_b_toc_in *in, struct rs_buf *out, struct rs_error *err)
{
	struct namemap users = {0}, groups = {0};
	bool oom = false;
	int r = rs_buf_printf(out, "{\n\t\"version\": 1,\n\t\"entries\": [");
	bool first = true;
	for (size_t i = 0; i < in->n && r == 0; i++) {
		const struct esgz_b_entry *e = in->order[i];
		struct obj o;
		begin_entry(out, first, &o);
		first = false;
		field_str(&o, "name", e->name);
		field_str(&o, "type", type_name(e->type));
		if (e->type == ESGZ_REG)
			field_int(&o, "size", e->size);
		if (e->mtime != 0) {
			char ts[32];
			int64_t sec = e->mtime + (e->mtime_nsec >= 500000000 ? 1 : 0);
			rs_rfc3339_format(sec, ts);
			field_str(&o, "modtime", ts);
		}
		if (e->type == ESGZ_SYMLINK || e->type == ESGZ_HARDLINK)
			field_str(&o, "linkName", e->link);
		field_int(&o, "mode", e->mode);
		field_int(&o, "uid", e->uid);
		field_int(&o, "gid", e->gid);
		field_str(&o, "userName", name_if_changed(&users, e->uid, e->uname, &oom));
		field_str(&o, "groupName", name_if_changed(&groups, e->gid, e->gname, &oom));
		bool chunked = e->type == ESGZ_REG && e->size > 0;
		if (chunked)
			field_int(&o, "offset", in->member_offset[e->first_member]);
		if (e->type == ESGZ_CHAR || e->type == ESGZ_BLOCK) {
			field_int(&o, "devMajor", e->devmajor);
			field_int(&o, "devMinor", e->devminor);
		}
		field_xattrs(&o, e);
		if (e->type == ESGZ_REG)
			field_digest(&o, "digest", e->digest);
		if (chunked)
			chunk_fields(&o, e, 0, in->chunk_size);
		r = end_entry(&o);
		for (uint32_t c = 1; chunked && c < e->nchunks && r == 0; c++) {
			begin_entry(out, false, &o);
			field_str(&o, "name", e->name);
			field_str(&o, "type", "chunk");
			field_int(&o, "offset", in->member_offset[e->first_member + c]);
			field_int(&o, "chunkOffset", esgz_b_chunk_off(e, c, in->chunk_size));
			chunk_fields(&o, e, c, in->chunk_size);
			r = end_entry(&o);
		}
	}
	if (r == 0)
		r = rs_buf_append(out, first ? "]\n}" : "\n\t]\n}", first ? 3 : 5);
	namemap_free(&users);
	namemap_free(&groups);
	if (r < 0 || oom)
		return rs_err(err, -ENOMEM, "out of memory writing the TOC");
	return 0;
}
