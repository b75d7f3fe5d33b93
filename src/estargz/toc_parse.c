// SPDX-License-Identifier: Apache-2.0
/* TOC JSON to index: a state machine over the events of the JSON walk
 * (toc_parse_simd.cpp), each entry going straight into the index, so a TOC of
 * any size never exists as a document tree in memory. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "index_internal.h"
#include "json_walk.h"

enum pstate {
	P_START,       /* before the top-level value */
	P_TOP,         /* in the top-level object, expecting a key */
	P_TOP_VALUE,   /* after a top-level key */
	P_ENTRIES,     /* in the entries array, expecting an entry object */
	P_ENTRY,       /* in an entry object, expecting a key */
	P_ENTRY_VALUE, /* after an entry key */
	P_XATTRS,      /* in an entry's xattrs object, expecting a key */
	P_XATTR_VALUE,
	P_SKIP, /* skipping an unknown nested value */
	P_DONE,
};

enum field {
	F_UNKNOWN,
	F_NAME,
	F_TYPE,
	F_SIZE,
	F_MODTIME,
	F_LINKNAME,
	F_MODE,
	F_UID,
	F_GID,
	F_USERNAME,
	F_GROUPNAME,
	F_OFFSET,
	F_INNEROFFSET,
	F_DEVMAJOR,
	F_DEVMINOR,
	F_XATTRS,
	F_DIGEST,
	F_CHUNKOFFSET,
	F_CHUNKSIZE,
	F_CHUNKDIGEST,
	F_ENDOFFSET,
	F_NOPREFETCH,
};

/* Where a string of the current entry sits in scratch (scratch may move). */
struct sref {
	uint32_t off, len;
	bool set;
};

struct xref {
	uint32_t name_off, val_off, val_len;
};

struct esgz_toc_parser {
	enum pstate state;
	enum pstate skip_return;
	int skip_depth;
	enum field field;
	int top_key; /* 1 version, 2 entries, 0 other */
	struct esgz_index *idx;
	struct rs_error *err; /* valid during feed/finish */
	int failed;           /* our own error code, set from a callback */
	bool saw_entries;
	uint64_t entry_no;
	/* current entry */
	struct esgz_raw_entry e;
	struct sref name, link, uname, gname, type;
	struct rs_buf scratch;
	struct xref *xr;
	uint32_t nxr, xr_cap;
	uint32_t pending_xattr_name;
};

static int fail(struct esgz_toc_parser *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct esgz_toc_parser *p, int code, const char *fmt, ...)
{
	if (!p->failed) {
		char msg[RS_ERROR_MSG_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		rs_err(p->err, code, "%s", msg);
		p->failed = code;
	}
	return 0; /* stop the walk */
}

static void entry_reset(struct esgz_toc_parser *p)
{
	memset(&p->e, 0, sizeof(p->e));
	p->e.type = -1;
	p->name.set = p->link.set = p->uname.set = p->gname.set = p->type.set = false;
	p->nxr = 0;
	rs_buf_reset(&p->scratch);
}

/* Copies a string into scratch (NUL-terminated). */
static int scratch_put(struct esgz_toc_parser *p, const unsigned char *s, size_t len,
		       struct sref *out)
{
	if (len > UINT32_MAX / 2 || p->scratch.len > UINT32_MAX / 2)
		return -E2BIG;
	if (rs_buf_reserve(&p->scratch, len + 1) < 0)
		return -ENOMEM;
	out->off = (uint32_t)p->scratch.len;
	out->len = (uint32_t)len;
	out->set = true;
	memcpy(p->scratch.data + p->scratch.len, s, len);
	p->scratch.data[p->scratch.len + len] = '\0';
	p->scratch.len += len + 1;
	return 0;
}

static enum field field_of(const unsigned char *k, size_t n)
{
#define F(str, f)                                                                                  \
	if (n == sizeof(str) - 1 && memcmp(k, str, n) == 0)                                        \
		return f;
	switch (k[0]) {
	case 'n':
		F("name", F_NAME);
		break;
	case 't':
		F("type", F_TYPE);
		break;
	case 's':
		F("size", F_SIZE);
		break;
	case 'm':
		F("modtime", F_MODTIME);
		F("mode", F_MODE);
		break;
	case 'l':
		F("linkName", F_LINKNAME);
		break;
	case 'u':
		F("uid", F_UID);
		F("userName", F_USERNAME);
		break;
	case 'g':
		F("gid", F_GID);
		F("groupName", F_GROUPNAME);
		break;
	case 'o':
		F("offset", F_OFFSET);
		break;
	case 'i':
		F("innerOffset", F_INNEROFFSET);
		F(ESGZ_TOC_NO_PREFETCH, F_NOPREFETCH);
		break;
	case 'd':
		F("devMajor", F_DEVMAJOR);
		F("devMinor", F_DEVMINOR);
		F("digest", F_DIGEST);
		break;
	case 'x':
		F("xattrs", F_XATTRS);
		break;
	case 'c':
		F("chunkOffset", F_CHUNKOFFSET);
		F("chunkSize", F_CHUNKSIZE);
		F("chunkDigest", F_CHUNKDIGEST);
		break;
	case 'e':
		F("endOffset", F_ENDOFFSET);
		break;
	}
#undef F
	return F_UNKNOWN;
}

static const char *field_name(enum field f)
{
	static const char *names[] = {
	    "?",           "name",        "type",      "size",     "modtime",   "linkName",
	    "mode",        "uid",         "gid",       "userName", "groupName", "offset",
	    "innerOffset", "devMajor",    "devMinor",  "xattrs",   "digest",    "chunkOffset",
	    "chunkSize",   "chunkDigest", "endOffset",
	};
	if (f == F_NOPREFETCH)
		return ESGZ_TOC_NO_PREFETCH;
	return names[f];
}

/* What the value of a known field must be. */
static const char *field_kind(enum field f)
{
	switch (f) {
	case F_NAME:
	case F_TYPE:
	case F_MODTIME:
	case F_LINKNAME:
	case F_USERNAME:
	case F_GROUPNAME:
	case F_DIGEST:
	case F_CHUNKDIGEST:
		return "a string";
	case F_XATTRS:
		return "an object";
	case F_NOPREFETCH:
		return "a boolean";
	default:
		return "an integer";
	}
}

/* Names the current entry in errors: by its name if already seen, else by number. */
static void entry_label(struct esgz_toc_parser *p, char *buf, size_t n)
{
	if (p->name.set)
		snprintf(buf, n, "TOC entry %llu '%.200s'", (unsigned long long)p->entry_no,
			 (const char *)p->scratch.data + p->name.off);
	else
		snprintf(buf, n, "TOC entry %llu", (unsigned long long)p->entry_no);
}

static int wrong_type(struct esgz_toc_parser *p, const char *what)
{
	char label[300];
	entry_label(p, label, sizeof(label));
	return fail(p, -EINVAL, "%s: field '%s' must be %s", label, field_name(p->field), what);
}

/* A value that is not the one we expect ends the entry with an error, except
 * inside skipped subtrees. Returns true when the caller should just return. */
static bool value_in_skip(struct esgz_toc_parser *p)
{
	if (p->state == P_SKIP) {
		if (p->skip_depth == 0)
			p->state = p->skip_return;
		return true;
	}
	if (p->state == P_TOP_VALUE && p->top_key != 2) {
		p->state = P_TOP;
		return true;
	}
	return false;
}

static void begin_skip(struct esgz_toc_parser *p, enum pstate ret)
{
	p->state = P_SKIP;
	p->skip_return = ret;
	p->skip_depth = 1;
}

static int not_an_entry(struct esgz_toc_parser *p)
{
	return fail(p, -EINVAL, "TOC entry %llu is not a JSON object",
		    (unsigned long long)p->entry_no);
}

static int cb_scalar(struct esgz_toc_parser *p, const char *kind)
{
	if (value_in_skip(p))
		return 1;
	switch (p->state) {
	case P_START:
		return fail(p, -EINVAL, "TOC is not a JSON object (found %s)", kind);
	case P_TOP_VALUE:
		return fail(p, -EINVAL, "TOC: 'entries' must be an array, not %s", kind);
	case P_ENTRIES:
		return not_an_entry(p);
	case P_ENTRY_VALUE:
		if (p->field == F_UNKNOWN || !strcmp(kind, "null")) {
			p->state = P_ENTRY;
			return 1;
		}
		return wrong_type(p, field_kind(p->field));
	case P_XATTR_VALUE: {
		char label[300];
		entry_label(p, label, sizeof(label));
		return fail(p, -EINVAL, "%s: xattr values must be base64 strings", label);
	}
	default:
		return fail(p, -EINVAL, "TOC: unexpected %s", kind);
	}
}

static int cb_null(void *ctx)
{
	return cb_scalar(ctx, "null");
}

static int cb_boolean(void *ctx, int b)
{
	struct esgz_toc_parser *p = ctx;
	if (p->state == P_ENTRY_VALUE && p->field == F_NOPREFETCH) {
		p->e.no_prefetch = b != 0;
		p->state = P_ENTRY;
		return 1;
	}
	return cb_scalar(ctx, "a boolean");
}

static int parse_int(const char *s, size_t n, int64_t *out)
{
	if (n == 0 || n > 20)
		return -EINVAL;
	size_t i = 0;
	bool neg = false;
	if (s[0] == '-') {
		neg = true;
		i = 1;
		if (n == 1)
			return -EINVAL;
	}
	uint64_t v = 0;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (v > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

static int cb_number(void *ctx, const char *s, size_t n)
{
	struct esgz_toc_parser *p = ctx;
	if (p->state == P_TOP_VALUE && p->top_key == 1) {
		int64_t v;
		/* A later version may mean other things by the same fields. */
		if (parse_int(s, n, &v) < 0 || v != 1)
			return fail(p, -EINVAL, "TOC: unsupported version %.*s (only 1 is known)",
				    (int)(n > 20 ? 20 : n), s);
		p->state = P_TOP;
		return 1;
	}
	if (p->state != P_ENTRY_VALUE || p->field == F_UNKNOWN || p->field == F_NOPREFETCH)
		return cb_scalar(p, "a number");
	int64_t v;
	if (parse_int(s, n, &v) < 0 || v < 0) {
		char label[300];
		entry_label(p, label, sizeof(label));
		return fail(p, -EINVAL, "%s: field '%s' is not a non-negative integer: %.*s", label,
			    field_name(p->field), (int)(n > 40 ? 40 : n), s);
	}
	struct esgz_raw_entry *e = &p->e;
	switch (p->field) {
	case F_SIZE:
		e->size = v;
		break;
	case F_MODE:
		e->mode = v;
		break;
	case F_UID:
		e->uid = v;
		break;
	case F_GID:
		e->gid = v;
		break;
	case F_OFFSET:
		e->offset = v;
		break;
	case F_INNEROFFSET:
		e->inner_offset = v;
		break;
	case F_DEVMAJOR:
		e->devmajor = v;
		break;
	case F_DEVMINOR:
		e->devminor = v;
		break;
	case F_CHUNKOFFSET:
		e->chunk_offset = v;
		break;
	case F_CHUNKSIZE:
		e->chunk_size = v;
		break;
	case F_ENDOFFSET:
		e->end_offset = v;
		break;
	default:
		return wrong_type(p, field_kind(p->field));
	}
	p->state = P_ENTRY;
	return 1;
}

static int type_of(const unsigned char *s, size_t n)
{
	static const char *types[] = {"dir",  "reg",   "symlink", "hardlink",
				      "char", "block", "fifo",    "chunk"};
	for (int i = 0; i < 8; i++)
		if (strlen(types[i]) == n && memcmp(types[i], s, n) == 0)
			return i;
	return -1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
	struct esgz_toc_parser *p = ctx;
	if (p->state == P_XATTR_VALUE) {
		if (n > (1u << 24)) {
			char label[300];
			entry_label(p, label, sizeof(label));
			return fail(p, -E2BIG, "%s: xattr value too large", label);
		}
		if (rs_buf_reserve(&p->scratch, n / 4 * 3 + 4) < 0)
			return fail(p, -ENOMEM, "out of memory");
		ssize_t got = rs_base64_decode((const char *)s, n, p->scratch.data + p->scratch.len,
					       n / 4 * 3 + 3);
		if (got < 0) {
			char label[300];
			entry_label(p, label, sizeof(label));
			return fail(p, -EINVAL, "%s: xattr '%s' is not valid base64", label,
				    (const char *)p->scratch.data + p->pending_xattr_name);
		}
		p->xr[p->nxr - 1].val_off = (uint32_t)p->scratch.len;
		p->xr[p->nxr - 1].val_len = (uint32_t)got;
		p->scratch.len += (size_t)got;
		p->state = P_XATTRS;
		return 1;
	}
	if (p->state != P_ENTRY_VALUE || p->field == F_UNKNOWN)
		return cb_scalar(p, "a string");
	struct esgz_raw_entry *e = &p->e;
	int r = 0;
	switch (p->field) {
	case F_NAME:
		r = scratch_put(p, s, n, &p->name);
		break;
	case F_LINKNAME:
		r = scratch_put(p, s, n, &p->link);
		break;
	case F_USERNAME:
		r = scratch_put(p, s, n, &p->uname);
		break;
	case F_GROUPNAME:
		r = scratch_put(p, s, n, &p->gname);
		break;
	case F_TYPE:
		e->type = type_of(s, n);
		r = scratch_put(p, s, n > 32 ? 32 : n, &p->type);
		break;
	case F_MODTIME:
		if (n == 0)
			break;
		if (rs_rfc3339_parse((const char *)s, n, &e->mtime, NULL) < 0) {
			char label[300];
			entry_label(p, label, sizeof(label));
			return fail(p, -EINVAL, "%s: modtime '%.*s' is not RFC 3339", label,
				    (int)(n > 40 ? 40 : n), s);
		}
		e->has_mtime = true;
		break;
	case F_DIGEST:
	case F_CHUNKDIGEST: {
		if (n == 0)
			break;
		bool chunk = p->field == F_CHUNKDIGEST;
		if (rs_digest_parse((const char *)s, n, chunk ? e->chunk_digest : e->digest) < 0) {
			char label[300];
			entry_label(p, label, sizeof(label));
			return fail(p, -EINVAL, "%s: %s '%.*s' is not a sha256 digest", label,
				    field_name(p->field), (int)(n > 80 ? 80 : n), s);
		}
		if (chunk)
			e->has_chunk_digest = true;
		else
			e->has_digest = true;
		break;
	}
	default:
		return wrong_type(p, field_kind(p->field));
	}
	if (r < 0)
		return fail(p, r, "TOC entry %llu: string too large",
			    (unsigned long long)p->entry_no);
	p->state = P_ENTRY;
	return 1;
}

static int cb_start_map(void *ctx)
{
	struct esgz_toc_parser *p = ctx;
	switch (p->state) {
	case P_START:
		p->state = P_TOP;
		return 1;
	case P_SKIP:
		p->skip_depth++;
		return 1;
	case P_TOP_VALUE:
		if (p->top_key == 2)
			return fail(p, -EINVAL, "TOC: 'entries' must be an array");
		begin_skip(p, P_TOP);
		return 1;
	case P_ENTRIES:
		if (p->idx->toc_entries >= p->idx->max_entries)
			return fail(p, -E2BIG,
				    "TOC has more than %llu entries (the limit; raise max_entries "
				    "to open it)",
				    (unsigned long long)p->idx->max_entries);
		p->entry_no++;
		entry_reset(p);
		p->state = P_ENTRY;
		return 1;
	case P_ENTRY_VALUE:
		if (p->field == F_XATTRS) {
			p->state = P_XATTRS;
			return 1;
		}
		if (p->field != F_UNKNOWN)
			return wrong_type(p, p->field == F_NOPREFETCH ? "a boolean" : "a scalar");
		begin_skip(p, P_ENTRY);
		return 1;
	default:
		return fail(p, -EINVAL, "TOC: unexpected object");
	}
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t n)
{
	struct esgz_toc_parser *p = ctx;
	switch (p->state) {
	case P_SKIP:
		return 1;
	case P_TOP:
		p->top_key = 0;
		if (n == 7 && memcmp(k, "version", 7) == 0)
			p->top_key = 1;
		else if (n == 7 && memcmp(k, "entries", 7) == 0)
			p->top_key = 2;
		p->state = P_TOP_VALUE;
		return 1;
	case P_ENTRY:
		p->field = n ? field_of(k, n) : F_UNKNOWN;
		p->state = P_ENTRY_VALUE;
		return 1;
	case P_XATTRS: {
		if (p->nxr == p->xr_cap) {
			uint32_t cap = p->xr_cap ? p->xr_cap * 2 : 8;
			if (cap > 65536) {
				char label[300];
				entry_label(p, label, sizeof(label));
				return fail(p, -E2BIG, "%s: too many xattrs", label);
			}
			struct xref *x = realloc(p->xr, cap * sizeof(*x));
			if (!x)
				return fail(p, -ENOMEM, "out of memory");
			p->xr = x;
			p->xr_cap = cap;
		}
		struct sref ref;
		if (scratch_put(p, k, n, &ref) < 0)
			return fail(p, -E2BIG, "TOC entry %llu: xattr name too large",
				    (unsigned long long)p->entry_no);
		p->xr[p->nxr].name_off = ref.off;
		p->xr[p->nxr].val_off = 0;
		p->xr[p->nxr].val_len = 0;
		p->nxr++;
		p->pending_xattr_name = ref.off;
		p->state = P_XATTR_VALUE;
		return 1;
	}
	default:
		return fail(p, -EINVAL, "TOC: unexpected key");
	}
}

static int commit_entry(struct esgz_toc_parser *p)
{
	struct esgz_raw_entry *e = &p->e;
	const char *base = (const char *)p->scratch.data;
	if (!p->name.set) {
		return fail(p, -EINVAL, "TOC entry %llu has no name",
			    (unsigned long long)p->entry_no);
	}
	e->name = base + p->name.off;
	e->name_len = p->name.len;
	if (e->type < 0) {
		return fail(p, -EINVAL, "TOC entry %llu '%.200s': %s type '%s'",
			    (unsigned long long)p->entry_no, e->name,
			    p->type.set ? "unknown" : "missing",
			    p->type.set ? base + p->type.off : "");
	}
	e->type_str = p->type.set ? base + p->type.off : "";
	e->link = p->link.set ? base + p->link.off : NULL;
	e->link_len = p->link.set ? p->link.len : 0;
	e->uname = p->uname.set ? base + p->uname.off : NULL;
	e->uname_len = p->uname.set ? p->uname.len : 0;
	e->gname = p->gname.set ? base + p->gname.off : NULL;
	e->gname_len = p->gname.set ? p->gname.len : 0;
	const char *names[p->nxr ? p->nxr : 1];
	const uint8_t *vals[p->nxr ? p->nxr : 1];
	size_t lens[p->nxr ? p->nxr : 1];
	for (uint32_t i = 0; i < p->nxr; i++) {
		names[i] = base + p->xr[i].name_off;
		vals[i] = p->scratch.data + p->xr[i].val_off;
		lens[i] = p->xr[i].val_len;
	}
	e->nxattrs = p->nxr;
	e->xattr_names = names;
	e->xattr_values = vals;
	e->xattr_lens = lens;
	int r = esgz_index_add(p->idx, e, p->err);
	if (r < 0) {
		p->failed = r;
		return 0;
	}
	return 1;
}

static int cb_end_map(void *ctx)
{
	struct esgz_toc_parser *p = ctx;
	switch (p->state) {
	case P_SKIP:
		if (--p->skip_depth == 0)
			p->state = p->skip_return;
		return 1;
	case P_XATTRS:
		p->state = P_ENTRY;
		return 1;
	case P_ENTRY:
		p->state = P_ENTRIES;
		return commit_entry(p);
	case P_TOP:
		p->state = P_DONE;
		return 1;
	default:
		return fail(p, -EINVAL, "TOC: unexpected end of object");
	}
}

static int cb_start_array(void *ctx)
{
	struct esgz_toc_parser *p = ctx;
	switch (p->state) {
	case P_START:
		return fail(p, -EINVAL, "TOC is not a JSON object (found an array)");
	case P_SKIP:
		p->skip_depth++;
		return 1;
	case P_TOP_VALUE:
		if (p->top_key == 2) {
			if (p->saw_entries)
				return fail(p, -EINVAL, "TOC: 'entries' given twice");
			p->saw_entries = true;
			p->state = P_ENTRIES;
			return 1;
		}
		begin_skip(p, P_TOP);
		return 1;
	case P_ENTRIES:
		return not_an_entry(p);
	case P_ENTRY_VALUE:
		if (p->field != F_UNKNOWN)
			return wrong_type(p, p->field == F_NOPREFETCH ? "a boolean" : "a scalar");
		begin_skip(p, P_ENTRY);
		return 1;
	default:
		return fail(p, -EINVAL, "TOC: unexpected array");
	}
}

static int cb_end_array(void *ctx)
{
	struct esgz_toc_parser *p = ctx;
	switch (p->state) {
	case P_SKIP:
		if (--p->skip_depth == 0)
			p->state = p->skip_return;
		return 1;
	case P_ENTRIES:
		p->state = P_TOP;
		return 1;
	default:
		return fail(p, -EINVAL, "TOC: unexpected end of array");
	}
}

static const struct esgz_json_events events = {
    .null = cb_null,
    .boolean = cb_boolean,
    .number = cb_number,
    .string = cb_string,
    .start_map = cb_start_map,
    .map_key = cb_map_key,
    .end_map = cb_end_map,
    .start_array = cb_start_array,
    .end_array = cb_end_array,
};

int esgz_toc_parser_new(const struct esgz_index_limits *lim, struct esgz_toc_parser **out,
			struct rs_error *err)
{
	struct esgz_toc_parser *p = calloc(1, sizeof(*p));
	if (!p)
		return rs_err(err, -ENOMEM, "out of memory");
	if (esgz_index_new(lim, &p->idx) < 0) {
		free(p);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	*out = p;
	return 0;
}

int esgz_toc_parser_parse(struct esgz_toc_parser *p, const uint8_t *json, size_t len,
			  struct rs_error *err)
{
	p->err = err;
	if (p->failed)
		return p->failed;
	struct esgz_json_error jerr;
	int r = esgz_json_walk(json, len, &events, p, &jerr);
	if (r == -2)
		return rs_err(err, -ENOMEM, "out of memory");
	if (r < 0)
		return rs_err(err, -EINVAL, "TOC is not valid JSON: %s (near byte %zu)", jerr.msg,
			      jerr.offset);
	return p->failed;
}

int esgz_toc_parser_finish(struct esgz_toc_parser *p, int64_t payload_end, struct esgz_index **out,
			   struct rs_error *err)
{
	p->err = err;
	if (p->failed)
		return p->failed;
	if (p->state != P_DONE)
		return rs_err(err, -EINVAL, "TOC is not a JSON object");
	if (!p->saw_entries)
		return rs_err(err, -EINVAL, "TOC has no 'entries' array");
	int r = esgz_index_finish(p->idx, payload_end, err);
	if (r < 0)
		return r;
	*out = steal_pointer(&p->idx);
	return 0;
}

void esgz_toc_parser_free(struct esgz_toc_parser *p)
{
	if (!p)
		return;
	esgz_index_free(p->idx);
	rs_buf_free(&p->scratch);
	free(p->xr);
	free(p);
}

int esgz_index_parse(const uint8_t *json, size_t len, const struct esgz_index_limits *lim,
		     int64_t payload_end, struct esgz_index **out, struct rs_error *err)
{
	struct esgz_toc_parser *p;
	int r = esgz_toc_parser_new(lim, &p, err);
	if (r < 0)
		return r;
	/* The walk reads a little past the end: copy into a padded buffer. */
	uint8_t *padded = malloc(len + ESGZ_JSON_PADDING);
	if (!padded) {
		esgz_toc_parser_free(p);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	memcpy(padded, json, len);
	memset(padded + len, 0, ESGZ_JSON_PADDING);
	r = esgz_toc_parser_parse(p, padded, len, err);
	free(padded);
	if (r == 0)
		r = esgz_toc_parser_finish(p, payload_end, out, err);
	esgz_toc_parser_free(p);
	return r;
}
