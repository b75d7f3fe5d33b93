// SPDX-License-Identifier: Apache-2.0
/* Listing a layer's TOC entries like `tar -tv`, or as JSON lines. Every TOC
 * entry but chunk entries is listed once, in TOC order, replaced ones too. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "estargz.h"

static const char *type_str(uint8_t t)
{
	static const char *names[] = {"dir",  "reg",   "symlink", "hardlink",
				      "char", "block", "fifo",    "chunk"};
	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

/* GNU tar's mode column: type letter then rwx triplets with s/S and t/T. */
static void mode_string(const struct esgz_node *n, char out[11])
{
	static const char types[] = {'d', '-', 'l', 'h', 'c', 'b', 'p', '-'};
	uint32_t m = n->mode;
	out[0] = n->type < sizeof(types) ? types[n->type] : '?';
	const char *rwx = "rwxrwxrwx";
	for (int i = 0; i < 9; i++)
		out[1 + i] = (m & (0400u >> i)) ? rwx[i] : '-';
	if (m & 04000)
		out[3] = (m & 0100) ? 's' : 'S';
	if (m & 02000)
		out[6] = (m & 0010) ? 's' : 'S';
	if (m & 01000)
		out[9] = (m & 0001) ? 't' : 'T';
	out[10] = '\0';
}

/* tar's default "escape" quoting: backslash escapes for control bytes. */
static void put_name(FILE *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(out, "\\%03o", c);
			else
				fputc(c, out);
		}
	}
}

static void put_json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static const char *link_name(const struct esgz_index *idx, const struct esgz_node *n)
{
	if (n->type == ESGZ_SYMLINK)
		return esgz_index_str(idx, n->link);
	if (n->type == ESGZ_HARDLINK && n->link < esgz_index_node_count(idx))
		return esgz_node_name(idx, esgz_index_node(idx, n->link));
	return "";
}

static void list_tar(const struct esgz_index *idx, const struct esgz_node *n, FILE *out,
		     int *ugswidth)
{
	char mode[11];
	mode_string(n, mode);
	char user[16], group[16];
	const char *u = esgz_index_str(idx, n->uname);
	const char *g = esgz_index_str(idx, n->gname);
	if (!*u) {
		snprintf(user, sizeof(user), "%u", n->uid);
		u = user;
	}
	if (!*g) {
		snprintf(group, sizeof(group), "%u", n->gid);
		g = group;
	}
	char size[48];
	if (n->type == ESGZ_CHAR || n->type == ESGZ_BLOCK)
		snprintf(size, sizeof(size), "%u,%u", n->devmajor, n->devminor);
	else if (n->type == ESGZ_REG)
		snprintf(size, sizeof(size), "%lld", (long long)n->size);
	else
		snprintf(size, sizeof(size), "0");
	/* GNU tar pads owner and size to a column that only ever widens. */
	int sizelen = (int)strlen(size);
	int pad = (int)(strlen(u) + 1 + strlen(g) + 1) + sizelen;
	if (pad > *ugswidth)
		*ugswidth = pad;
	char date[32];
	struct tm tm;
	time_t t = (time_t)n->mtime;
	if (gmtime_r(&t, &tm))
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M", &tm);
	else
		snprintf(date, sizeof(date), "%lld", (long long)n->mtime);
	fprintf(out, "%s %s/%s %*s %s ", mode, u, g, *ugswidth - pad + sizelen, size, date);
	const char *name = esgz_node_name(idx, n);
	if (*name == '\0')
		fputs("./", out);
	else
		put_name(out, name);
	if (n->type == ESGZ_DIR && *name)
		fputc('/', out);
	if (n->type == ESGZ_SYMLINK) {
		fputs(" -> ", out);
		put_name(out, link_name(idx, n));
	} else if (n->type == ESGZ_HARDLINK) {
		fputs(" link to ", out);
		put_name(out, link_name(idx, n));
	}
	fputc('\n', out);
}

static void list_json(const struct esgz_index *idx, uint32_t id, FILE *out)
{
	const struct esgz_node *n = esgz_index_node(idx, id);
	char when[32], digest[RS_DIGEST_STR_LEN] = "";
	rs_rfc3339_format(n->mtime, when);
	if (n->has_digest)
		rs_digest_format(n->digest, digest);
	const char *name = esgz_node_name(idx, n);
	fputs("{\"name\":", out);
	put_json_str(out, *name ? name : "./");
	fprintf(out, ",\"type\":\"%s\",\"size\":%lld,\"mode\":%u,\"uid\":%u,\"gid\":%u",
		type_str(n->type), (long long)n->size, n->mode, n->uid, n->gid);
	fputs(",\"userName\":", out);
	put_json_str(out, esgz_index_str(idx, n->uname));
	fputs(",\"groupName\":", out);
	put_json_str(out, esgz_index_str(idx, n->gname));
	fprintf(out, ",\"modtime\":\"%s\",\"linkName\":", when);
	put_json_str(out, link_name(idx, n));
	fprintf(out, ",\"devMajor\":%u,\"devMinor\":%u,\"digest\":\"%s\",\"chunks\":%u",
		n->devmajor, n->devminor, digest, n->type == ESGZ_REG ? n->nchunks : 0);
	/* Only where stargz optimize marked some: other listings stay as they were. */
	uint32_t nc = 0, skipped = 0;
	const struct esgz_chunk *c = n->type == ESGZ_REG ? esgz_index_chunks(idx, id, &nc) : NULL;
	for (uint32_t i = 0; i < nc; i++)
		skipped += c[i].no_prefetch;
	if (skipped)
		fprintf(out, ",\"noPrefetchChunks\":%u", skipped);
	fputs("}\n", out);
}

struct order {
	uint32_t toc_index;
	uint32_t id;
};

static int cmp_order(const void *a, const void *b)
{
	const struct order *x = a, *y = b;
	return x->toc_index < y->toc_index ? -1 : x->toc_index > y->toc_index;
}

int esgz_list(const struct esgz_blob *b, FILE *out, bool json, struct rs_error *err)
{
	if (!b || !b->index)
		return rs_err(err, -EINVAL, "no layer index to list");
	const struct esgz_index *idx = b->index;
	uint32_t count = esgz_index_node_count(idx);
	uint64_t entries = esgz_index_toc_entries(idx);
	struct order *ord = malloc(((size_t)count + 1) * sizeof(*ord));
	if (!ord)
		return rs_err(err, -ENOMEM, "out of memory for %u entries", count);
	size_t n = 0;
	for (uint32_t id = 0; id < count; id++) {
		const struct esgz_node *node = esgz_index_node(idx, id);
		/* Directories the index made up for missing parents have no entry. */
		if (node->toc_index == ESGZ_NONE || node->toc_index >= entries ||
		    node->type == ESGZ_CHUNK)
			continue;
		ord[n].toc_index = node->toc_index;
		ord[n].id = id;
		n++;
	}
	qsort(ord, n, sizeof(*ord), cmp_order);
	int ugswidth = 19;
	for (size_t i = 0; i < n; i++) {
		const struct esgz_node *node = esgz_index_node(idx, ord[i].id);
		if (json)
			list_json(idx, ord[i].id, out);
		else
			list_tar(idx, node, out, &ugswidth);
	}
	free(ord);
	errno = 0;
	if (fflush(out) != 0 || ferror(out)) {
		int e = errno ? errno : EIO;
		return rs_err(err, -e, "write: %s", strerror(e));
	}
	return 0;
}
