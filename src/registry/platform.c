// SPDX-License-Identifier: Apache-2.0
/* Platforms: parsing "os/arch[/variant]", the host's default, and picking
 * an index entry the way containerd's default matcher does. */
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

static char host_arch[65];

static void host_arch_init(void)
{
	struct utsname u;
	const char *a = uname(&u) == 0 ? reg_arch_normalize(u.machine) : "amd64";
	snprintf(host_arch, sizeof(host_arch), "%s", a);
}

const char *reg_host_arch(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, host_arch_init);
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
		if (n == 3 || !*tok) {
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

/* arm64's only variant is v8, so "v8" and no variant are the same. */
static bool variant_equal(const char *arch, const char *want, const char *have)
{
	if (have && *have == '\0')
		have = NULL;
	if (!have)
		return strcmp(arch, "arm64") == 0 && strcmp(want, "v8") == 0;
	return strcmp(want, have) == 0;
}

bool reg_platform_match(const struct reg_platform *p, const struct reg_descriptor *d)
{
	const char *os = p && p->os ? p->os : "linux";
	const char *arch = p && p->arch ? reg_arch_normalize(p->arch) : reg_host_arch();
	const char *variant = p && p->variant && *p->variant ? p->variant : NULL;
	if (!d->os || !d->arch || strcmp(d->os, os) != 0 ||
	    strcmp(reg_arch_normalize(d->arch), arch) != 0)
		return false;
	return !variant || variant_equal(arch, variant, d->variant);
}

static bool is_manifest_type(const char *mt)
{
	return mt &&
	       (strcmp(mt, REG_MT_OCI_MANIFEST) == 0 || strcmp(mt, REG_MT_DOCKER_MANIFEST) == 0);
}

int reg_platform_pick(const struct reg_manifest *index, const struct reg_platform *p, size_t *idx,
		      struct rs_error *err)
{
	const char *want_arch = p && p->arch ? reg_arch_normalize(p->arch) : reg_host_arch();
	bool found = false;
	size_t any = SIZE_MAX; /* the first entry that names no platform */
	for (size_t i = 0; i < index->n_manifests; i++) {
		const struct reg_descriptor *d = &index->manifests[i];
		if (!is_manifest_type(d->media_type))
			continue;
		if (!d->os && !d->arch && any == SIZE_MAX)
			any = i;
		if (!reg_platform_match(p, d))
			continue;
		/* Without a wanted variant, prefer the plain or default one (arm64: v8). */
		bool plain = !d->variant || !*d->variant ||
			     (strcmp(want_arch, "arm64") == 0 && strcmp(d->variant, "v8") == 0);
		if (!found || plain) {
			*idx = i;
			found = true;
			if (plain)
				break;
		}
	}
	if (found)
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
	return rs_err(err, -ENOENT, "no manifest for platform %s/%s%s%s (offered: %s)",
		      p && p->os ? p->os : "linux", want_arch, p && p->variant ? "/" : "",
		      p && p->variant ? p->variant : "", off ? offer : "none");
}
