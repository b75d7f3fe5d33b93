// SPDX-License-Identifier: Apache-2.0
/* Platforms: parsing "os/arch[/variant]", the host's default, and the one
 * matcher (for registry indexes here and OCI layouts in convert), ranking
 * index entries the way containerd's default matcher orders them. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "ops_internal.h"

static const struct {
	const char *from, *to;
} arch_alias[] = {
    {"x86_64", "amd64"},      {"x86-64", "amd64"},
    {"aarch64", "arm64"},     {"armhf", "arm"},
    {"armel", "arm"},         {"armv7l", "arm"},
    {"armv6l", "arm"},        {"armv5tel", "arm"},
    {"i386", "386"},          {"i486", "386"},
    {"i586", "386"},          {"i686", "386"},
    {"x86", "386"},           {"loongarch64", "loong64"},
    {"mips64el", "mips64le"},
};

const char *reg_arch_normalize(const char *arch)
{
	for (size_t i = 0; i < sizeof(arch_alias) / sizeof(arch_alias[0]); i++)
		if (strcmp(arch, arch_alias[i].from) == 0)
			return arch_alias[i].to;
	return arch;
}

static char host_arch[65], host_variant[8];

static void host_arch_init(void)
{
	struct utsname u;
	const char *a = uname(&u) == 0 ? reg_arch_normalize(u.machine) : "amd64";
	snprintf(host_arch, sizeof(host_arch), "%s", a);
	/* A 32-bit arm machine runs its own variant and older ones only. */
	if (strcmp(a, "arm") == 0 && strncmp(u.machine, "armv", 4) == 0 && u.machine[4] >= '5' &&
	    u.machine[4] <= '8')
		snprintf(host_variant, sizeof(host_variant), "v%c", u.machine[4]);
}

static void host_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, host_arch_init);
}

const char *reg_host_arch(void)
{
	host_init();
	return host_arch;
}

int reg_platform_parse(const char *s, struct reg_platform *p, char **storage, struct rs_error *err)
{
	memset(p, 0, sizeof(*p));
	*storage = NULL;
	char *dup = strdup(s);
	if (!dup)
		return rs_err(err, -ENOMEM, "out of memory");
	char *part[4] = {0};
	size_t n = 0;
	for (char *tok = dup, *next; tok; tok = next) {
		next = strchr(tok, '/');
		if (next)
			*next++ = '\0';
		bool odd = strlen(tok) > 64;
		for (const char *q = tok; *q && !odd; q++)
			odd = !isalnum((unsigned char)*q) && !strchr("_.-", *q);
		if (n == 3 || !*tok || odd) {
			free(dup);
			return rs_err(err, -EINVAL,
				      "bad platform '%.100s': want os/arch or os/arch/variant", s);
		}
		part[n++] = tok;
	}
	if (n < 2) {
		free(dup);
		return rs_err(err, -EINVAL,
			      "bad platform '%.100s': want os/arch or os/arch/variant", s);
	}
	p->os = part[0];
	p->arch = reg_arch_normalize(part[1]);
	p->variant = part[2];
	*storage = dup;
	return 0;
}

/* A variant as containerd normalises it: arm64 "v8" and amd64 "v1" are the
 * default (none), arm's default is "v7". */
static const char *variant_norm(const char *arch, const char *v)
{
	if (v && !*v)
		v = NULL;
	if (strcmp(arch, "arm64") == 0 && v && strcmp(v, "v8") == 0)
		return NULL;
	if (strcmp(arch, "amd64") == 0 && v && strcmp(v, "v1") == 0)
		return NULL;
	if (strcmp(arch, "arm") == 0 && !v)
		return "v7";
	return v;
}

/* The level of "vN" (amd64: none is 1), 0 when it is not one. */
static int variant_level(const char *arch, const char *v)
{
	if (!v)
		return strcmp(arch, "amd64") == 0 ? 1 : 0;
	if (v[0] != 'v' || v[1] < '1' || v[1] > '9' || v[2])
		return 0;
	return v[1] - '0';
}

int reg_platform_rank(const struct reg_platform *p, const char *os, const char *arch,
		      const char *variant)
{
	host_init();
	bool host = !p || !p->arch;
	const char *want_os = p && p->os ? p->os : "linux";
	const char *want_arch = host ? host_arch : reg_arch_normalize(p->arch);
	const char *want_v = p && p->variant && *p->variant ? p->variant
			     : host && host_variant[0]      ? host_variant
							    : NULL;
	if (!os || !arch || strcmp(os, want_os) != 0 ||
	    strcmp(reg_arch_normalize(arch), want_arch) != 0)
		return 0;
	const char *have = variant_norm(want_arch, variant);
	bool want_any = !want_v && strcmp(want_arch, "arm") != 0;
	if (want_any)
		return have ? 500 : 1000;
	const char *want = variant_norm(want_arch, want_v);
	if ((!want && !have) || (want && have && strcmp(want, have) == 0))
		return 1000;
	/* arm v7 runs v6 and v5 images, amd64 v3 runs v2 and v1: the closest
	 * older one is best. arm64 variants are taken as they are. */
	if (strcmp(want_arch, "arm") == 0 || strcmp(want_arch, "amd64") == 0) {
		int w = variant_level(want_arch, want), h = variant_level(want_arch, have);
		if (w && h && h < w)
			return 500 - (w - h);
	}
	return 0;
}

bool reg_platform_match(const struct reg_platform *p, const struct reg_descriptor *d)
{
	return reg_platform_rank(p, d->os, d->arch, d->variant) > 0;
}

void reg_platform_format(const struct reg_platform *p, char *out, size_t n)
{
	host_init();
	bool host = !p || !p->arch;
	const char *v = p && p->variant && *p->variant ? p->variant
			: host && host_variant[0]      ? host_variant
						       : NULL;
	snprintf(out, n, "%.40s/%.40s%s%.40s", p && p->os ? p->os : "linux",
		 host ? host_arch : reg_arch_normalize(p->arch), v ? "/" : "", v ? v : "");
}

static bool is_manifest_type(const char *mt)
{
	return mt &&
	       (strcmp(mt, REG_MT_OCI_MANIFEST) == 0 || strcmp(mt, REG_MT_DOCKER_MANIFEST) == 0);
}

int reg_platform_pick(const struct reg_manifest *index, const struct reg_platform *p, size_t *idx,
		      struct rs_error *err)
{
	int best = 0;
	size_t any = SIZE_MAX; /* the first entry that names no platform */
	for (size_t i = 0; i < index->n_manifests; i++) {
		const struct reg_descriptor *d = &index->manifests[i];
		if (!is_manifest_type(d->media_type))
			continue;
		if (!d->os && !d->arch && any == SIZE_MAX)
			any = i;
		int r = reg_platform_rank(p, d->os, d->arch, d->variant);
		if (r > best) {
			best = r;
			*idx = i;
		}
	}
	if (best > 0)
		return 0;
	/* containerd takes an entry without a platform as fitting any, after
	 * the ones that name the platform. */
	if (any != SIZE_MAX) {
		*idx = any;
		return 0;
	}
	char offer[512] = "";
	size_t off = 0;
	for (size_t i = 0; i < index->n_manifests && off < sizeof(offer) - 1; i++) {
		const struct reg_descriptor *d = &index->manifests[i];
		if (!d->os || !d->arch)
			continue;
		int w =
		    snprintf(offer + off, sizeof(offer) - off, "%s%s/%s%s%s", off ? ", " : "",
			     d->os, d->arch, d->variant ? "/" : "", d->variant ? d->variant : "");
		if (w < 0)
			break;
		off += (size_t)w;
	}
	char want[128];
	reg_platform_format(p, want, sizeof(want));
	return rs_err(err, -ENOENT, "no manifest for platform %s (offered: %s)", want,
		      off ? offer : "none");
}
