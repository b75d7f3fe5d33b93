// SPDX-License-Identifier: Apache-2.0
/* Tar headers of the output stream, laid out as the reference's Go
 * archive/tar writer lays them out (so the uncompressed stream, and with it the
 * diff ID, matches): USTAR when everything fits, else a PAX 'x' header with the
 * records sorted by key; entries that came in GNU format go out in GNU format
 * with ././@LongLink names and base-256 numbers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "build_internal.h"

#define BLOCK 512
#define NAME_SIZE 100
#define PREFIX_SIZE 155

enum { F_USTAR, F_PAX, F_GNU };

static bool fits_octal(size_t width, int64_t v)
{
	/* width-1 octal digits and a NUL */
	int bits = (int)(width - 1) * 3;
	return v >= 0 && (bits >= 63 || v < ((int64_t)1 << bits));
}

static bool fmt_octal(uint8_t *f, size_t width, int64_t v)
{
	bool ok = fits_octal(width, v);
	if (!ok)
		v = 0;
	for (size_t i = width - 1; i-- > 0;) {
		f[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
	f[width - 1] = 0;
	return ok;
}

/* GNU: octal when it fits, else base-256 with the high bit set. */
static void fmt_numeric(uint8_t *f, size_t width, int64_t v)
{
	if (fits_octal(width, v)) {
		fmt_octal(f, width, v);
		return;
	}
	uint64_t u = (uint64_t)v;
	for (size_t i = width; i-- > 0;) {
		f[i] = (uint8_t)u;
		u >>= 8;
	}
	f[0] |= 0x80;
}

static void fmt_string(uint8_t *f, size_t width, const char *s, bool ascii_only)
{
	size_t o = 0;
	for (const char *p = s; *p && o < width; p++) {
		if (ascii_only && (unsigned char)*p >= 0x80)
			continue;
		f[o++] = (uint8_t)*p;
	}
	if (o < width)
		f[o] = 0;
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void set_format_and_checksum(uint8_t *b, int fmt)
{
	if (fmt == F_GNU)
		memcpy(b + 257, "ustar  \0", 8);
	else
		memcpy(b + 257,
		       "ustar\0"
		       "00",
		       8);
	unsigned sum = 0;
	memset(b + 148, ' ', 8);
	for (int i = 0; i < BLOCK; i++)
		sum += b[i];
	fmt_octal(b + 148, 7, sum);
	b[155] = ' ';
}

struct fields {
	const char *name, *link, *uname, *gname;
	int64_t mode, uid, gid, size, mtime;
	uint32_t devmajor, devminor;
	char type;
};

/* templateV7Plus: the fields shared by all formats. */
static void template_v7plus(uint8_t *b, const struct fields *f, int fmt)
{
	memset(b, 0, BLOCK);
	bool ascii = fmt == F_PAX;
	void (*num)(uint8_t *, size_t, int64_t) = fmt == F_GNU ? fmt_numeric : NULL;
	b[156] = (uint8_t)f->type;
	fmt_string(b, 100, f->name, ascii);
	fmt_string(b + 157, 100, f->link, ascii);
	if (num) {
		num(b + 100, 8, f->mode);
		num(b + 108, 8, f->uid);
		num(b + 116, 8, f->gid);
		num(b + 124, 12, f->size);
		num(b + 136, 12, f->mtime);
		num(b + 329, 8, f->devmajor);
		num(b + 337, 8, f->devminor);
	} else {
		fmt_octal(b + 100, 8, f->mode);
		fmt_octal(b + 108, 8, f->uid);
		fmt_octal(b + 116, 8, f->gid);
		fmt_octal(b + 124, 12, f->size);
		fmt_octal(b + 136, 12, f->mtime);
		fmt_octal(b + 329, 8, f->devmajor);
		fmt_octal(b + 337, 8, f->devminor);
	}
	fmt_string(b + 265, 32, f->uname, ascii);
	fmt_string(b + 297, 32, f->gname, ascii);
}

/* Go's splitUSTARPath. */
static bool split_ustar(const char *name, size_t *prefix_len)
{
	size_t len = strlen(name);
	if (len <= NAME_SIZE || !is_ascii(name))
		return false;
	size_t l = len;
	if (l > PREFIX_SIZE + 1)
		l = PREFIX_SIZE + 1;
	else if (name[l - 1] == '/')
		l--;
	ssize_t i = -1;
	for (size_t k = 0; k < l; k++)
		if (name[k] == '/')
			i = (ssize_t)k;
	if (i <= 0)
		return false;
	size_t nlen = len - (size_t)i - 1, plen = (size_t)i;
	if (nlen > NAME_SIZE || nlen == 0 || plen > PREFIX_SIZE)
		return false;
	*prefix_len = plen;
	return true;
}

/* Go's path.Clean. out has strlen(in)+2 bytes. */
static void go_clean(const char *in, char *out)
{
	bool rooted = in[0] == '/';
	size_t o = 0, dotdot = 0;
	if (rooted)
		out[o++] = '/', dotdot = 1;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - s);
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (o > dotdot) {
				o--;
				while (o > dotdot && out[o] != '/')
					o--;
			} else if (!rooted) {
				if (o > 0)
					out[o++] = '/';
				out[o++] = '.';
				out[o++] = '.';
				dotdot = o;
			}
			continue;
		}
		if ((rooted && o != 1) || (!rooted && o != 0))
			out[o++] = '/';
		memcpy(out + o, s, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = 0;
}

struct rec {
	const char *key;
	const uint8_t *val;
	size_t vlen;
	char *owned_key;
	char numbuf[48];
};

static int cmp_rec(const void *a, const void *b)
{
	return strcmp((*(const struct rec *const *)a)->key, (*(const struct rec *const *)b)->key);
}

static size_t ndigits(size_t v)
{
	size_t n = 1;
	while (v >= 10)
		v /= 10, n++;
	return n;
}

static int append_record(struct rs_buf *d, const struct rec *r)
{
	size_t base = strlen(r->key) + r->vlen + 3;
	size_t size = base + ndigits(base);
	if (ndigits(size) != ndigits(base))
		size = base + ndigits(size);
	int rc = rs_buf_printf(d, "%zu %s=", size, r->key);
	if (rc == 0)
		rc = rs_buf_append(d, r->val, r->vlen);
	if (rc == 0)
		rc = rs_buf_append(d, "\n", 1);
	return rc;
}

static void rec_str(struct rec *r, const char *key, const char *v)
{
	r->key = key;
	r->val = (const uint8_t *)v;
	r->vlen = strlen(v);
}

static void rec_num(struct rec *r, const char *key, int64_t v)
{
	snprintf(r->numbuf, sizeof(r->numbuf), "%lld", (long long)v);
	rec_str(r, key, r->numbuf);
}

/* Go's formatPAXTime: seconds, then the fraction without trailing zeros. */
static void rec_time(struct rec *r, const char *key, int64_t sec, int32_t nsec)
{
	if (nsec == 0) {
		rec_num(r, key, sec);
		return;
	}
	char frac[16];
	snprintf(frac, sizeof(frac), "%09d", (int)nsec);
	size_t n = strlen(frac);
	while (n > 0 && frac[n - 1] == '0')
		frac[--n] = 0;
	if (sec < 0) /* Go writes e.g. -1.5 for sec=-2,nsec=5e8 */
		snprintf(r->numbuf, sizeof(r->numbuf), "-%lld.%s", (long long)(-(sec + 1)), frac);
	else
		snprintf(r->numbuf, sizeof(r->numbuf), "%lld.%s", (long long)sec, frac);
	rec_str(r, key, r->numbuf);
}

/* writeRawFile: a minimal header (all numbers zero) followed by data. */
static int raw_file(struct rs_buf *out, const char *name, const void *data, size_t len, char flag,
		    int fmt)
{
	uint8_t b[BLOCK];
	memset(b, 0, sizeof(b));
	char nm[NAME_SIZE + 1];
	size_t o = 0;
	for (const char *p = name; *p && o < NAME_SIZE; p++)
		if ((unsigned char)*p < 0x80)
			nm[o++] = *p;
	while (o > 0 && nm[o - 1] == '/')
		o--;
	nm[o] = 0;
	b[156] = (uint8_t)flag;
	fmt_string(b, 100, nm, false);
	fmt_octal(b + 100, 8, 0);
	fmt_octal(b + 108, 8, 0);
	fmt_octal(b + 116, 8, 0);
	fmt_octal(b + 124, 12, (int64_t)len);
	fmt_octal(b + 136, 12, 0);
	set_format_and_checksum(b, fmt);
	static const uint8_t zeros[BLOCK];
	int r = rs_buf_append(out, b, BLOCK);
	if (r == 0)
		r = rs_buf_append(out, data, len);
	if (r == 0)
		r = rs_buf_append(out, zeros, esgz_b_tar_pad((int64_t)len));
	return r;
}

static char type_flag(uint8_t t)
{
	switch (t) {
	case ESGZ_HARDLINK:
		return '1';
	case ESGZ_SYMLINK:
		return '2';
	case ESGZ_CHAR:
		return '3';
	case ESGZ_BLOCK:
		return '4';
	case ESGZ_DIR:
		return '5';
	case ESGZ_FIFO:
		return '6';
	default:
		return '0';
	}
}

static int gnu_header(const struct esgz_b_entry *e, const struct fields *f, struct rs_buf *out)
{
	int r = 0;
	if (strlen(f->name) > NAME_SIZE)
		r = raw_file(out, "././@LongLink", f->name, strlen(f->name) + 1, 'L', F_GNU);
	if (r == 0 && strlen(f->link) > NAME_SIZE)
		r = raw_file(out, "././@LongLink", f->link, strlen(f->link) + 1, 'K', F_GNU);
	if (r < 0)
		return r;
	uint8_t b[BLOCK];
	template_v7plus(b, f, F_GNU);
	set_format_and_checksum(b, F_GNU);
	return rs_buf_append(out, b, BLOCK);
}

int esgz_b_tar_header(const struct esgz_b_entry *e, struct rs_buf *out, struct rs_error *err)
{
	struct fields f = {
	    .name = e->name,
	    .link = e->link ? e->link : "",
	    .uname = e->uname ? e->uname : "",
	    .gname = e->gname ? e->gname : "",
	    .mode = e->mode,
	    .uid = e->uid,
	    .gid = e->gid,
	    .size = e->type == ESGZ_REG ? e->size : 0,
	    .mtime = e->mtime,
	    .devmajor = e->devmajor,
	    .devminor = e->devminor,
	    .type = type_flag(e->type),
	};
	if (e->flavor == ESGZ_BF_GNU && e->nxattrs == 0) {
		if (gnu_header(e, &f, out) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
		return 0;
	}

	size_t nrec_max = 10 + e->nxattrs;
	cleanup_free struct rec *recs = calloc(nrec_max, sizeof(*recs));
	if (!recs)
		return rs_err(err, -ENOMEM, "out of memory");
	size_t nrec = 0;
	bool ustar_ok = e->flavor != ESGZ_BF_PAX && e->nxattrs == 0;
	size_t prefix_len = 0;
	bool split = false;

	if (!is_ascii(f.name) || strlen(f.name) > NAME_SIZE) {
		split = split_ustar(f.name, &prefix_len);
		if (!split)
			ustar_ok = false;
		rec_str(&recs[nrec++], "path", f.name);
	}
	if (!is_ascii(f.link) || strlen(f.link) > NAME_SIZE) {
		ustar_ok = false;
		rec_str(&recs[nrec++], "linkpath", f.link);
	}
	if (!is_ascii(f.uname) || strlen(f.uname) > 32) {
		ustar_ok = false;
		rec_str(&recs[nrec++], "uname", f.uname);
	}
	if (!is_ascii(f.gname) || strlen(f.gname) > 32) {
		ustar_ok = false;
		rec_str(&recs[nrec++], "gname", f.gname);
	}
	if (!fits_octal(8, f.uid)) {
		ustar_ok = false;
		rec_num(&recs[nrec++], "uid", f.uid);
	}
	if (!fits_octal(8, f.gid)) {
		ustar_ok = false;
		rec_num(&recs[nrec++], "gid", f.gid);
	}
	if (!fits_octal(12, f.size)) {
		ustar_ok = false;
		rec_num(&recs[nrec++], "size", f.size);
	}
	if (!fits_octal(12, f.mtime) || e->mtime_nsec != 0) {
		ustar_ok = false;
		rec_time(&recs[nrec++], "mtime", e->mtime, e->mtime_nsec);
	}
	if (e->has_atime) {
		ustar_ok = false;
		rec_time(&recs[nrec++], "atime", e->atime, e->atime_nsec);
	}
	if (e->has_ctime) {
		ustar_ok = false;
		rec_time(&recs[nrec++], "ctime", e->ctime, e->ctime_nsec);
	}
	if (!fits_octal(8, f.devmajor) || !fits_octal(8, f.devminor))
		return rs_err(err, -EOVERFLOW, "entry '%s': device number too large for tar",
			      e->name);
	for (size_t i = 0; i < e->nxattrs; i++) {
		struct rec *r = &recs[nrec++];
		size_t kl = strlen(e->xattrs[i].name) + sizeof("SCHILY.xattr.");
		if (!(r->owned_key = malloc(kl)))
			goto oom;
		snprintf(r->owned_key, kl, "SCHILY.xattr.%s", e->xattrs[i].name);
		r->key = r->owned_key;
		r->val = e->xattrs[i].value;
		r->vlen = e->xattrs[i].len;
	}

	uint8_t b[BLOCK];
	if (ustar_ok) {
		struct fields g = f;
		if (split)
			g.name = f.name + prefix_len + 1;
		template_v7plus(b, &g, F_USTAR);
		if (split)
			memcpy(b + 345, f.name, prefix_len);
		set_format_and_checksum(b, F_USTAR);
		if (rs_buf_append(out, b, BLOCK) < 0)
			goto oom;
		goto done;
	}
	if (nrec > 0) {
		/* sort pointers: a record's value may point into its own numbuf */
		cleanup_free struct rec **sorted = calloc(nrec, sizeof(*sorted));
		if (!sorted)
			goto oom;
		for (size_t i = 0; i < nrec; i++)
			sorted[i] = &recs[i];
		qsort(sorted, nrec, sizeof(*sorted), cmp_rec);
		struct rs_buf data = {0};
		for (size_t i = 0; i < nrec; i++)
			if (append_record(&data, sorted[i]) < 0) {
				rs_buf_free(&data);
				goto oom;
			}
		/* path.Join(dir, "PaxHeaders.0", file) */
		size_t nl = strlen(f.name);
		const char *slash = strrchr(f.name, '/');
		size_t dl = slash ? (size_t)(slash - f.name) + 1 : 0;
		cleanup_free char *joined = malloc(nl + 32);
		cleanup_free char *hname = malloc(nl + 34);
		if (!joined || !hname) {
			rs_buf_free(&data);
			goto oom;
		}
		size_t o = 0;
		memcpy(joined, f.name, dl);
		o = dl;
		if (o > 0 && joined[o - 1] != '/')
			joined[o++] = '/';
		memcpy(joined + o, "PaxHeaders.0", 12);
		o += 12;
		if (f.name[dl]) {
			joined[o++] = '/';
			memcpy(joined + o, f.name + dl, nl - dl);
			o += nl - dl;
		}
		joined[o] = 0;
		go_clean(joined, hname);
		int r = raw_file(out, hname, data.data, data.len, 'x', F_PAX);
		rs_buf_free(&data);
		if (r < 0)
			goto oom;
	}
	template_v7plus(b, &f, F_PAX);
	set_format_and_checksum(b, F_PAX);
	if (rs_buf_append(out, b, BLOCK) < 0)
		goto oom;
done:
	for (size_t i = 0; i < nrec; i++)
		free(recs[i].owned_key);
	return 0;
oom:
	for (size_t i = 0; i < nrec; i++)
		free(recs[i].owned_key);
	return rs_err(err, -ENOMEM, "out of memory");
}
