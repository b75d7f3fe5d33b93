// SPDX-License-Identifier: Apache-2.0
/* The TOC index: entries validated and laid out in flat arrays, a path hash
 * table, sorted child lists and per-file chunk runs. Built once, then read-only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "index_internal.h"

#define MAX_NAMES_INTERNED 256
#define MAX_STRS UINT32_MAX

static const char *type_name(int t)
{
	static const char *names[] = {"dir",  "reg",   "symlink", "hardlink",
				      "char", "block", "fifo",    "chunk"};
	return t >= 0 && t < 8 ? names[t] : "?";
}

/* Eight bytes a step: every entry's path is hashed twice (insert, parent). */
static uint64_t hash_path(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
	}
	w = 0;
	for (size_t k = 0; i + k < n; k++)
		w |= (uint64_t)(unsigned char)s[i + k] << (8 * k);
	h = (h ^ w) * 0x94d049bb133111ebull;
	h ^= h >> 32;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 29);
}

/* Name interning for userName/groupName, which repeat: (key, offset) pairs. */
struct name_cache {
	uint64_t key;
	uint32_t off;
};

struct builder_extra {
	struct name_cache unames[MAX_NAMES_INTERNED];
	uint32_t n_unames;
	struct name_cache gnames[MAX_NAMES_INTERNED];
	uint32_t n_gnames;
	char *clean; /* scratch for cleaned names */
	size_t clean_cap;
};

/* The builder's scratch lives right after the index while building. */
struct index_builder {
	struct esgz_index idx;
	struct builder_extra x;
};

static struct builder_extra *extra(struct esgz_index *idx)
{
	return &((struct index_builder *)idx)->x;
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint64_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	if (c > UINT32_MAX)
		c = UINT32_MAX;
	if (c < need)
		return -E2BIG;
	void *n = realloc(*p, (size_t)c * elem);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = (uint32_t)c;
	return 0;
}

static int str_add(struct esgz_index *idx, const void *s, size_t n, uint32_t *off)
{
	if (n >= MAX_STRS || (uint64_t)idx->strs_len + n + 1 > MAX_STRS)
		return -E2BIG;
	int r = grow((void **)&idx->strs, &idx->strs_cap, idx->strs_len + (uint32_t)n + 1, 1);
	if (r < 0)
		return r;
	*off = idx->strs_len;
	memcpy(idx->strs + idx->strs_len, s, n);
	idx->strs[idx->strs_len + n] = '\0';
	idx->strs_len += (uint32_t)n + 1;
	return 0;
}

#define SLOT_EMPTY UINT64_MAX
#define SLOT_ID(v) ((uint32_t)(v))
#define SLOT_HASH(v) ((uint32_t)((v) >> 32))

static int table_rehash(struct esgz_index *idx, uint32_t size)
{
	uint64_t *t = esgz_alloc_huge((size_t)size * sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t, 0xff, (size_t)size * sizeof(*t));
	uint32_t mask = size - 1;
	if (idx->table) {
		for (uint32_t i = 0; i <= idx->table_mask; i++) {
			uint64_t v = idx->table[i];
			if (v == SLOT_EMPTY)
				continue;
			uint32_t j = SLOT_HASH(v) & mask;
			while (t[j] != SLOT_EMPTY)
				j = (j + 1) & mask;
			t[j] = v;
		}
		free(idx->table);
	}
	idx->table = t;
	idx->table_mask = mask;
	return 0;
}

/* Returns the slot for path: holding its id, or empty where it would go. */
static uint32_t table_slot(const struct esgz_index *idx, const char *path, size_t len,
			   uint32_t hash)
{
	uint32_t j = hash & idx->table_mask;
	for (;;) {
		uint64_t v = idx->table[j];
		if (v == SLOT_EMPTY)
			return j;
		if (SLOT_HASH(v) == hash) {
			const char *name = idx->strs + idx->nodes[SLOT_ID(v)].name;
			if (memcmp(name, path, len) == 0 && name[len] == '\0')
				return j;
		}
		j = (j + 1) & idx->table_mask;
	}
}

uint32_t esgz_index_lookup(const struct esgz_index *idx, const char *path, size_t len)
{
	if (!idx->table)
		return ESGZ_NONE;
	uint64_t v = idx->table[table_slot(idx, path, len, (uint32_t)hash_path(path, len))];
	return v == SLOT_EMPTY ? ESGZ_NONE : SLOT_ID(v);
}

static bool is_live(const struct esgz_index *idx, uint32_t id)
{
	return !idx->nodes[id].replaced;
}

static int node_new(struct esgz_index *idx, const char *path, size_t len, uint32_t *out)
{
	int r = grow((void **)&idx->nodes, &idx->nodes_cap, idx->nnodes + 1, sizeof(*idx->nodes));
	if (r < 0)
		return r;
	if ((uint64_t)(idx->nnodes + 1) * 2 > (uint64_t)idx->table_mask + 1) {
		r = table_rehash(idx, (idx->table_mask + 1) * 2);
		if (r < 0)
			return r;
	}
	/* The table is large and probed at random: start loading the slot now. */
	uint32_t h = (uint32_t)hash_path(path, len);
	__builtin_prefetch(&idx->table[h & idx->table_mask]);
	uint32_t name;
	r = str_add(idx, path, len, &name);
	if (r < 0)
		return r;
	uint32_t id = idx->nnodes++;
	struct esgz_node *n = &idx->nodes[id];
	memset(n, 0, sizeof(*n));
	n->name = name;
	const char *slash = memrchr(path, '/', len);
	n->base = slash ? name + (uint32_t)(slash - path) + 1 : name;
	n->parent = ESGZ_NONE;
	n->link = ESGZ_NONE;
	n->nlink = 1;
	uint32_t slot = table_slot(idx, path, len, h);
	if (idx->table[slot] != SLOT_EMPTY)
		idx->nodes[SLOT_ID(idx->table[slot])].replaced = 1;
	idx->table[slot] = (uint64_t)h << 32 | id;
	*out = id;
	return 0;
}

/* Moves an array to a fresh block of cap elements, on huge pages. */
static void reserve_array(void **p, uint32_t *cap, uint32_t used, uint32_t want, size_t elem)
{
	if (want <= *cap)
		return;
	void *n = esgz_alloc_huge((size_t)want * elem);
	if (!n)
		return; /* growing on demand still works */
	if (used)
		memcpy(n, *p, (size_t)used * elem);
	free(*p);
	*p = n;
	*cap = want;
}

/* Sizes the arrays once from the TOC's size (reference TOCs spend about 300
 * bytes of JSON per entry), so building does not keep copying them. Unused
 * capacity is never touched, hence never resident, and is trimmed at the end. */
static void reserve(struct esgz_index *idx, uint64_t json_size)
{
	uint64_t entries = json_size / 200 + 64;
	if (entries > idx->max_entries)
		entries = idx->max_entries;
	if (entries > UINT32_MAX / 4)
		return;
	uint32_t n = (uint32_t)entries;
	reserve_array((void **)&idx->nodes, &idx->nodes_cap, idx->nnodes, n, sizeof(*idx->nodes));
	reserve_array((void **)&idx->chunks, &idx->chunks_cap, idx->nchunks, n,
		      sizeof(*idx->chunks));
	uint64_t strs = entries * 64;
	if (strs < UINT32_MAX / 2)
		reserve_array((void **)&idx->strs, &idx->strs_cap, idx->strs_len, (uint32_t)strs,
			      1);
	/* The table is touched whole, so size it for the typical entry instead;
	 * it still doubles when a TOC of small entries fills it. */
	uint64_t typical = json_size / 300 + 64;
	uint32_t size = idx->table_mask + 1;
	while ((uint64_t)size < typical * 2 && size < (1u << 30))
		size *= 2;
	if (size > idx->table_mask + 1)
		table_rehash(idx, size);
}

int esgz_index_new(const struct esgz_index_limits *lim, struct esgz_index **out)
{
	struct index_builder *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	struct esgz_index *idx = &b->idx;
	idx->max_entries = lim && lim->max_entries ? lim->max_entries : ESGZ_DEFAULT_MAX_ENTRIES;
	idx->prefetch_end = -1;
	idx->last_reg = ESGZ_NONE;
	uint32_t zero, root;
	if (table_rehash(idx, 1024) < 0 || str_add(idx, "", 0, &zero) < 0 ||
	    node_new(idx, "", 0, &root) < 0) {
		esgz_index_free(idx);
		return -ENOMEM;
	}
	idx->nodes[root].type = ESGZ_DIR;
	idx->nodes[root].mode = 0755;
	idx->nodes[root].parent = root;
	idx->nodes[root].toc_index = UINT32_MAX;
	if (lim && lim->json_size_hint)
		reserve(idx, lim->json_size_hint);
	*out = idx;
	return 0;
}

static int intern(struct esgz_index *idx, struct name_cache *cache, uint32_t *n, uint64_t key,
		  const char *s, size_t len, uint32_t *off)
{
	/* A name given: remember it for this id. Absent: inherit the last one. */
	for (uint32_t i = 0; i < *n; i++) {
		if (cache[i].key != key)
			continue;
		if (!s) {
			*off = cache[i].off;
			return 0;
		}
		const char *have = idx->strs + cache[i].off;
		if (strlen(have) == len && memcmp(have, s, len) == 0) {
			*off = cache[i].off;
			return 0;
		}
		int r = str_add(idx, s, len, &cache[i].off);
		*off = cache[i].off;
		return r;
	}
	if (!s || len == 0) {
		*off = 0;
		return 0;
	}
	int r = str_add(idx, s, len, off);
	if (r == 0 && *n < MAX_NAMES_INTERNED) {
		cache[*n].key = key;
		cache[*n].off = *off;
		(*n)++;
	}
	return r;
}

static int clean_name(struct esgz_index *idx, const char *in, size_t len, const char **out,
		      size_t *out_len, const char **why)
{
	struct builder_extra *x = extra(idx);
	if (x->clean_cap < len + 1) {
		char *c = realloc(x->clean, len + 1);
		if (!c)
			return -ENOMEM;
		x->clean = c;
		x->clean_cap = len + 1;
	}
	int r = rs_path_clean(in, len, x->clean, out_len, why);
	*out = x->clean;
	return r;
}

static int entry_err(struct rs_error *err, int code, uint64_t no, const char *name, const char *fmt,
		     ...) __attribute__((format(printf, 5, 6)));
static int entry_err(struct rs_error *err, int code, uint64_t no, const char *name, const char *fmt,
		     ...)
{
	char msg[RS_ERROR_MSG_MAX - 300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return rs_err(err, code, "TOC entry %llu '%.200s': %s", (unsigned long long)no, name, msg);
}

static int add_chunk(struct esgz_index *idx, const struct esgz_raw_entry *e, uint32_t node,
		     struct rs_error *err)
{
	int r =
	    grow((void **)&idx->chunks, &idx->chunks_cap, idx->nchunks + 1, sizeof(*idx->chunks));
	if (r < 0)
		return rs_err(err, r, "TOC: too many chunks");
	struct esgz_node *n = &idx->nodes[node];
	if (n->nchunks == 0)
		n->chunks = idx->nchunks;
	else if (n->chunks + n->nchunks != idx->nchunks)
		return entry_err(err, -EINVAL, idx->toc_entries, e->name,
				 "chunk entries of one file must be consecutive");
	struct esgz_chunk *c = &idx->chunks[idx->nchunks++];
	c->offset = e->offset;
	c->comp_end = e->end_offset;
	c->inner_offset = e->inner_offset;
	c->file_offset = e->chunk_offset;
	c->size = e->chunk_size;
	c->node = node;
	c->has_digest = e->has_chunk_digest;
	c->no_prefetch = e->no_prefetch;
	if (e->has_chunk_digest)
		memcpy(c->digest, e->chunk_digest, RS_SHA256_LEN);
	n->nchunks++;
	return 0;
}

int esgz_index_add(struct esgz_index *idx, const struct esgz_raw_entry *e, struct rs_error *err)
{
	uint64_t no = ++idx->toc_entries;
	const char *name;
	size_t nlen;
	const char *why = NULL;
	int r = clean_name(idx, e->name, e->name_len, &name, &nlen, &why);
	if (r == -ENOMEM)
		return rs_err(err, r, "out of memory");
	if (r < 0)
		return entry_err(err, -EINVAL, no, e->name, "%s", why);

	if (e->type == ESGZ_CHUNK) {
		if (idx->last_reg == ESGZ_NONE)
			return entry_err(err, -EINVAL, no, e->name,
					 "chunk entry without a preceding reg entry");
		const char *reg = idx->strs + idx->nodes[idx->last_reg].name;
		if (strlen(reg) != nlen || memcmp(reg, name, nlen) != 0)
			return entry_err(
			    err, -EINVAL, no, e->name,
			    "chunk entry does not follow its file (last file is '%.200s')", reg);
		return add_chunk(idx, e, idx->last_reg, err);
	}

	if (e->uid > UINT32_MAX || e->gid > UINT32_MAX || e->devmajor > UINT32_MAX ||
	    e->devminor > UINT32_MAX)
		return entry_err(err, -EINVAL, no, e->name, "uid, gid or device number too large");
	if (e->size > INT64_MAX / 4)
		return entry_err(err, -EINVAL, no, e->name, "absurd size %lld", (long long)e->size);

	uint32_t id;
	if (nlen == 0) {
		if (e->type != ESGZ_DIR)
			return entry_err(err, -EINVAL, no, e->name,
					 "the layer root must be a directory, not %s",
					 type_name(e->type));
		id = ESGZ_ROOT;
		idx->nodes[id].nxattrs = 0;
	} else {
		/* A later entry of the same name wins, as with tar extraction. */
		r = node_new(idx, name, nlen, &id);
		if (r < 0)
			return rs_err(err, r, "TOC: index too large");
		if (nlen == sizeof(ESGZ_PREFETCH_LANDMARK) - 1 &&
		    memcmp(name, ESGZ_PREFETCH_LANDMARK, nlen) == 0)
			idx->prefetch_end = e->offset;
		if (nlen == sizeof(ESGZ_NO_PREFETCH_LANDMARK) - 1 &&
		    memcmp(name, ESGZ_NO_PREFETCH_LANDMARK, nlen) == 0)
			idx->no_prefetch = true;
	}
	if (no > UINT32_MAX)
		return entry_err(err, -E2BIG, no, e->name, "too many entries");

	struct builder_extra *x = extra(idx);
	uint32_t uname, gname;
	r = intern(idx, x->unames, &x->n_unames, (uint64_t)e->uid, e->uname, e->uname_len, &uname);
	if (r == 0)
		r = intern(idx, x->gnames, &x->n_gnames, (uint64_t)e->gid, e->gname, e->gname_len,
			   &gname);
	if (r < 0)
		return rs_err(err, r, "TOC: index too large");

	struct esgz_node *n = &idx->nodes[id];
	n->type = (uint8_t)e->type;
	n->mode = (uint32_t)(e->mode & 07777);
	n->uid = (uint32_t)e->uid;
	n->gid = (uint32_t)e->gid;
	n->uname = uname;
	n->gname = gname;
	n->mtime = e->has_mtime ? e->mtime : 0;
	n->devmajor = (uint32_t)e->devmajor;
	n->devminor = (uint32_t)e->devminor;
	n->toc_index = (uint32_t)(no - 1);

	if (e->nxattrs) {
		r = grow((void **)&idx->xattrs, &idx->xattrs_cap, idx->nxattrs + e->nxattrs,
			 sizeof(*idx->xattrs));
		if (r < 0)
			return rs_err(err, r, "TOC: too many xattrs");
		n = &idx->nodes[id];
		n->xattrs = idx->nxattrs;
		n->nxattrs = e->nxattrs;
		for (uint32_t i = 0; i < e->nxattrs; i++) {
			struct esgz_xattr *xa = &idx->xattrs[idx->nxattrs++];
			if (e->xattr_names[i][0] == '\0')
				return entry_err(err, -EINVAL, no, e->name, "empty xattr name");
			r = str_add(idx, e->xattr_names[i], strlen(e->xattr_names[i]), &xa->name);
			if (r == 0)
				r = str_add(idx, e->xattr_values[i], e->xattr_lens[i], &xa->value);
			if (r < 0)
				return rs_err(err, r, "TOC: index too large");
			xa->value_len = (uint32_t)e->xattr_lens[i];
		}
	}
	n = &idx->nodes[id];

	switch (e->type) {
	case ESGZ_REG:
		n->size = e->size;
		idx->last_reg = id;
		if (e->has_digest) {
			n->has_digest = 1;
			memcpy(n->digest, e->digest, RS_SHA256_LEN);
		}
		if (e->size > 0) {
			if (e->chunk_offset != 0)
				return entry_err(err, -EINVAL, no, e->name,
						 "first chunk must start at offset 0, not %lld",
						 (long long)e->chunk_offset);
			return add_chunk(idx, e, id, err);
		}
		return 0;
	case ESGZ_SYMLINK:
		if (!e->link || e->link_len == 0)
			return entry_err(err, -EINVAL, no, e->name, "symlink without linkName");
		r = str_add(idx, e->link, e->link_len, &n->link);
		if (r < 0)
			return rs_err(err, r, "TOC: index too large");
		idx->nodes[id].size = (int64_t)e->link_len;
		return 0;
	case ESGZ_HARDLINK: {
		if (!e->link || e->link_len == 0)
			return entry_err(err, -EINVAL, no, e->name, "hardlink without linkName");
		/* Copy: clean_name's scratch is reused. */
		char *target = strndup(e->link, e->link_len);
		if (!target)
			return rs_err(err, -ENOMEM, "out of memory");
		const char *tn;
		size_t tlen;
		r = clean_name(idx, target, e->link_len, &tn, &tlen, &why);
		if (r < 0) {
			r = entry_err(err, -EINVAL, no, e->name, "hardlink target '%.200s': %s",
				      target, r == -ENOMEM ? "out of memory" : why);
			free(target);
			return r;
		}
		uint32_t t = esgz_index_lookup(idx, tn, tlen);
		if (t == id || t == ESGZ_NONE) {
			r = entry_err(err, -EINVAL, no, e->name,
				      "hardlink target '%.200s' is not an earlier entry", target);
			free(target);
			return r;
		}
		if (idx->nodes[t].type == ESGZ_HARDLINK)
			t = idx->nodes[t].link;
		if (idx->nodes[t].type == ESGZ_DIR) {
			r = entry_err(err, -EINVAL, no, e->name,
				      "hardlink target '%.200s' is a directory", target);
			free(target);
			return r;
		}
		free(target);
		idx->nodes[id].link = t;
		return 0;
	}
	case ESGZ_DIR:
	case ESGZ_CHAR:
	case ESGZ_BLOCK:
	case ESGZ_FIFO:
		return 0;
	default:
		return entry_err(err, -EINVAL, no, e->name, "unknown type");
	}
}

/* qsort_r comparators */
static int cmp_child(const void *a, const void *b, void *ctx)
{
	const struct esgz_index *idx = ctx;
	const struct esgz_node *na = &idx->nodes[*(const uint32_t *)a];
	const struct esgz_node *nb = &idx->nodes[*(const uint32_t *)b];
	return strcmp(idx->strs + na->base, idx->strs + nb->base);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int link_parents(struct esgz_index *idx, struct rs_error *err)
{
	/* Entries come directory by directory: the last parent is usually the
	 * next one's too, which saves hashing and probing for it. */
	uint32_t last_name = 0, last_parent = ESGZ_NONE;
	size_t last_plen = 0;
	/* Nodes appended here (implicit directories) are visited too. */
	for (uint32_t i = 1; i < idx->nnodes; i++) {
		if (!is_live(idx, i))
			continue;
		const char *name = idx->strs + idx->nodes[i].name;
		const char *base = idx->strs + idx->nodes[i].base;
		size_t plen = base > name ? (size_t)(base - name) - 1 : 0;
		uint32_t p;
		if (last_parent != ESGZ_NONE && plen == last_plen &&
		    memcmp(name, idx->strs + last_name, plen) == 0)
			p = last_parent;
		else
			p = esgz_index_lookup(idx, name, plen);
		if (p == ESGZ_NONE) {
			/* The name table may move: copy the parent path first. */
			char *ppath = strndup(name, plen);
			if (!ppath)
				return rs_err(err, -ENOMEM, "out of memory");
			int r = node_new(idx, ppath, plen, &p);
			free(ppath);
			if (r < 0)
				return rs_err(err, r, "TOC: index too large");
			struct esgz_node *d = &idx->nodes[p];
			d->type = ESGZ_DIR;
			d->mode = 0755;
			d->toc_index = UINT32_MAX;
		}
		struct esgz_node *pn = &idx->nodes[p];
		if (pn->type != ESGZ_DIR) {
			const char *nm = idx->strs + idx->nodes[i].name;
			return rs_err(err, -EINVAL,
				      "TOC entry '%.200s': parent '%.*s' is a %s, not a directory",
				      nm, (int)(plen > 200 ? 200 : plen), nm, type_name(pn->type));
		}
		idx->nodes[i].parent = p;
		last_name = idx->nodes[i].name;
		last_parent = p;
		last_plen = plen;
	}
	return 0;
}

static int build_children(struct esgz_index *idx, struct rs_error *err)
{
	uint32_t total = 0;
	for (uint32_t i = 0; i < idx->nnodes; i++)
		idx->nodes[i].nchildren = 0;
	for (uint32_t i = 1; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		if (n->parent == ESGZ_NONE)
			continue; /* replaced by a later entry */
		idx->nodes[n->parent].nchildren++;
		total++;
	}
	idx->children = malloc(((size_t)total + 1) * sizeof(uint32_t));
	if (!idx->children)
		return rs_err(err, -ENOMEM, "out of memory");
	uint32_t pos = 0;
	for (uint32_t i = 0; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		n->children = pos;
		pos += n->nchildren;
		n->nchildren = 0;
	}
	for (uint32_t i = 1; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		if (n->parent == ESGZ_NONE)
			continue;
		struct esgz_node *p = &idx->nodes[n->parent];
		idx->children[p->children + p->nchildren++] = i;
	}
	for (uint32_t i = 0; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		if (n->nchildren > 1)
			qsort_r(idx->children + n->children, n->nchildren, sizeof(uint32_t),
				cmp_child, idx);
		if (n->type == ESGZ_DIR) {
			uint32_t subdirs = 0;
			for (uint32_t k = 0; k < n->nchildren; k++)
				if (idx->nodes[idx->children[n->children + k]].type == ESGZ_DIR)
					subdirs++;
			n->nlink = 2 + subdirs;
		}
	}
	/* Hardlinks count towards their target's links. */
	for (uint32_t i = 1; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		if (n->type == ESGZ_HARDLINK && n->parent != ESGZ_NONE)
			idx->nodes[n->link].nlink++;
	}
	return 0;
}

static int check_chunks(struct esgz_index *idx, int64_t payload_end, struct rs_error *err)
{
	for (uint32_t i = 0; i < idx->nnodes; i++) {
		struct esgz_node *n = &idx->nodes[i];
		if (n->type != ESGZ_REG)
			continue;
		const char *nm = idx->strs + n->name;
		int64_t expect = 0;
		for (uint32_t k = 0; k < n->nchunks; k++) {
			struct esgz_chunk *c = &idx->chunks[n->chunks + k];
			if (c->file_offset != expect)
				return rs_err(err, -EINVAL,
					      "TOC entry '%.200s': chunk at file offset %lld does "
					      "not continue the previous one (expected %lld)",
					      nm, (long long)c->file_offset, (long long)expect);
			int64_t left = n->size - expect;
			if (c->size == 0) {
				if (k + 1 != n->nchunks)
					return rs_err(err, -EINVAL,
						      "TOC entry '%.200s': only the last chunk may "
						      "omit chunkSize",
						      nm);
				c->size = left;
			}
			if (c->size > left)
				return rs_err(err, -EINVAL,
					      "TOC entry '%.200s': chunks run past the file size "
					      "%lld",
					      nm, (long long)n->size);
			if (c->offset >= payload_end)
				return rs_err(err, -EINVAL,
					      "TOC entry '%.200s': data offset %lld lies outside "
					      "the blob's data (%lld bytes)",
					      nm, (long long)c->offset, (long long)payload_end);
			expect += c->size;
		}
		if (expect != n->size)
			return rs_err(err, -EINVAL,
				      "TOC entry '%.200s': chunks cover %lld of the file's %lld "
				      "bytes",
				      nm, (long long)expect, (long long)n->size);
	}
	return 0;
}

/* Chunks are cached by chunkDigest (or, without one, by blob offset and
 * inner offset): two chunks under one key with different sizes would let a
 * cached value of one length be read as the other. */
static bool same_chunk_key(const struct esgz_chunk *a, const struct esgz_chunk *b)
{
	if (a->has_digest != b->has_digest)
		return false;
	if (a->has_digest)
		return memcmp(a->digest, b->digest, RS_SHA256_LEN) == 0;
	return a->offset == b->offset && a->inner_offset == b->inner_offset;
}

/* Seeded per call: the keys are the TOC author's choice, and a fixed hash
 * would let them make every key collide. */
static uint64_t chunk_key_hash(const struct esgz_chunk *c, uint64_t seed)
{
	uint64_t w[4] = {0};
	if (c->has_digest) {
		memcpy(w, c->digest, sizeof(w));
	} else {
		w[0] = (uint64_t)c->offset;
		w[1] = (uint64_t)c->inner_offset;
		w[2] = 1;
	}
	uint64_t h = seed;
	for (int i = 0; i < 4; i++) {
		h = (h ^ w[i]) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 32);
}

static int chunk_size_conflict(const struct esgz_index *idx, const struct esgz_chunk *a,
			       const struct esgz_chunk *b, struct rs_error *err)
{
	const char *na = idx->strs + idx->nodes[a->node].name;
	const char *nb = idx->strs + idx->nodes[b->node].name;
	if (a->has_digest) {
		char d[RS_DIGEST_STR_LEN];
		rs_digest_format(a->digest, d);
		return rs_err(err, -EINVAL,
			      "TOC entries '%.150s' and '%.150s': chunk %s has sizes %lld and %lld",
			      na, nb, d, (long long)a->size, (long long)b->size);
	}
	return rs_err(err, -EINVAL,
		      "TOC entries '%.150s' and '%.150s': chunks at blob offset %lld (inner offset "
		      "%lld) have sizes %lld and %lld",
		      na, nb, (long long)a->offset, (long long)a->inner_offset, (long long)a->size,
		      (long long)b->size);
}

/* One size per cache key (see same_chunk_key): a hash set of chunk ids,
 * linear in the chunks, freed before the index is done. */
static int check_chunk_keys(struct esgz_index *idx, struct rs_error *err)
{
	if (idx->nchunks < 2)
		return 0;
	uint64_t size = 4;
	while (size < (uint64_t)idx->nchunks * 2)
		size *= 2;
	uint32_t *set = malloc((size_t)size * sizeof(*set));
	if (!set)
		return rs_err(err, -ENOMEM, "out of memory");
	memset(set, 0xff, (size_t)size * sizeof(*set));
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)set;
	}
	uint64_t mask = size - 1;
	int r = 0;
	for (uint32_t i = 0; i < idx->nchunks && r == 0; i++) {
		const struct esgz_chunk *c = &idx->chunks[i];
		for (uint64_t j = chunk_key_hash(c, seed) & mask;; j = (j + 1) & mask) {
			if (set[j] == UINT32_MAX) {
				set[j] = i;
				break;
			}
			const struct esgz_chunk *o = &idx->chunks[set[j]];
			if (!same_chunk_key(o, c))
				continue;
			if (o->size != c->size)
				r = chunk_size_conflict(idx, o, c, err);
			break;
		}
	}
	free(set);
	return r;
}

/* Sorts non-negative offsets, 11 bits a pass and only as many passes as the
 * largest needs: qsort's comparator calls cost more than the whole sort. */
static int radix_sort(int64_t *v, uint32_t n)
{
	uint64_t max = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (v[i] < 0)
			return -EINVAL;
		if ((uint64_t)v[i] > max)
			max = (uint64_t)v[i];
	}
	int64_t *tmp = malloc((size_t)n * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	int64_t *src = v, *dst = tmp;
	for (unsigned shift = 0; shift < 64 && (max >> shift) != 0; shift += 11) {
		uint32_t count[2048] = {0};
		for (uint32_t i = 0; i < n; i++)
			count[((uint64_t)src[i] >> shift) & 2047]++;
		uint32_t pos = 0;
		for (uint32_t d = 0; d < 2048; d++) {
			uint32_t c = count[d];
			count[d] = pos;
			pos += c;
		}
		for (uint32_t i = 0; i < n; i++)
			dst[count[((uint64_t)src[i] >> shift) & 2047]++] = src[i];
		int64_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, (size_t)n * sizeof(*v));
	free(tmp);
	return 0;
}

/* Each chunk's compressed extent ends where the next data member starts. */
static int set_extents(struct esgz_index *idx, int64_t payload_end, struct rs_error *err)
{
	if (idx->nchunks == 0)
		return 0;
	int64_t *offs = malloc((size_t)idx->nchunks * sizeof(*offs));
	if (!offs)
		return rs_err(err, -ENOMEM, "out of memory");
	bool sorted = true;
	for (uint32_t i = 0; i < idx->nchunks; i++) {
		offs[i] = idx->chunks[i].offset;
		if (i && offs[i] < offs[i - 1])
			sorted = false;
	}
	if (!sorted && radix_sort(offs, idx->nchunks) < 0)
		qsort(offs, idx->nchunks, sizeof(*offs), cmp_i64);
	uint32_t n = 0;
	for (uint32_t i = 0; i < idx->nchunks; i++)
		if (n == 0 || offs[n - 1] != offs[i])
			offs[n++] = offs[i];
	for (uint32_t i = 0; i < idx->nchunks; i++) {
		struct esgz_chunk *c = &idx->chunks[i];
		uint32_t lo = 0, hi = n;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (offs[mid] <= c->offset)
				lo = mid + 1;
			else
				hi = mid;
		}
		int64_t end = lo < n ? offs[lo] : payload_end;
		if (c->comp_end > c->offset && c->comp_end <= payload_end)
			end = c->comp_end; /* an explicit endOffset */
		c->comp_end = end;
	}
	free(offs);
	return 0;
}

static void shrink(void **p, uint32_t n, size_t elem)
{
	if (n == 0)
		return;
	void *s = realloc(*p, (size_t)n * elem);
	if (s)
		*p = s;
}

int esgz_index_finish(struct esgz_index *idx, int64_t payload_end, struct rs_error *err)
{
	int r = link_parents(idx, err);
	if (r == 0)
		r = build_children(idx, err);
	if (r == 0)
		r = check_chunks(idx, payload_end, err);
	if (r == 0)
		r = check_chunk_keys(idx, err);
	if (r == 0)
		r = set_extents(idx, payload_end, err);
	if (r < 0)
		return r;
	struct builder_extra *x = extra(idx);
	free(x->clean);
	x->clean = NULL;
	x->clean_cap = 0;
	shrink((void **)&idx->nodes, idx->nnodes, sizeof(*idx->nodes));
	idx->nodes_cap = idx->nnodes;
	shrink((void **)&idx->chunks, idx->nchunks, sizeof(*idx->chunks));
	idx->chunks_cap = idx->nchunks;
	shrink((void **)&idx->strs, idx->strs_len, 1);
	idx->strs_cap = idx->strs_len;
	return 0;
}

void esgz_index_free(struct esgz_index *idx)
{
	if (!idx)
		return;
	free(idx->nodes);
	free(idx->chunks);
	free(idx->xattrs);
	free(idx->children);
	free(idx->strs);
	free(idx->table);
	free(extra(idx)->clean);
	free(idx);
}
