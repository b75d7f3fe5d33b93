// SPDX-License-Identifier: Apache-2.0
/* Platforms in GOOS/GOARCH terms: parse, the host's, match an index entry. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "convert_internal.h"

static bool copy_part(char *dst, size_t cap, const char *s, size_t len)
{
	if (len == 0 || len >= cap)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

int conv_platform_parse(const char *s, struct conv_platform *p, struct rs_error *err)
{
	memset(p, 0, sizeof(*p));
	const char *a = strchr(s, '/');
	const char *v = a ? strchr(a + 1, '/') : NULL;
	if (!a || (v && strchr(v + 1, '/')) ||
	    !copy_part(p->os, sizeof(p->os), s, (size_t)(a - s)) ||
	    !copy_part(p->arch, sizeof(p->arch), a + 1, v ? (size_t)(v - a - 1) : strlen(a + 1)) ||
	    (v && !copy_part(p->variant, sizeof(p->variant), v + 1, strlen(v + 1))))
		return rs_err(err, -EINVAL, "platform '%.100s' is not os/arch[/variant]", s);
	return 0;
}

void conv_platform_host(struct conv_platform *p)
{
	static const struct {
		const char *machine, *arch, *variant;
	} map[] = {
	    {"x86_64", "amd64", ""},
	    {"aarch64", "arm64", ""},
	    {"armv7l", "arm", "v7"},
	    {"armv6l", "arm", "v6"},
	    {"i686", "386", ""},
	    {"i386", "386", ""},
	    {"ppc64le", "ppc64le", ""},
	    {"s390x", "s390x", ""},
	    {"riscv64", "riscv64", ""},
	    {"mips64", "mips64", ""},
	    {"loongarch64", "loong64", ""},
	};
	memset(p, 0, sizeof(*p));
	snprintf(p->os, sizeof(p->os), "linux");
	struct utsname u;
	if (uname(&u) < 0) {
		snprintf(p->arch, sizeof(p->arch), "amd64");
		return;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(u.machine, map[i].machine) == 0) {
			snprintf(p->arch, sizeof(p->arch), "%s", map[i].arch);
			snprintf(p->variant, sizeof(p->variant), "%s", map[i].variant);
			return;
		}
	}
	snprintf(p->arch, sizeof(p->arch), "%.31s", u.machine);
}

bool conv_platform_match(const struct conv_platform *want, json_t *platform)
{
	const char *os = json_string_value(json_object_get(platform, "os"));
	const char *arch = json_string_value(json_object_get(platform, "architecture"));
	const char *variant = json_string_value(json_object_get(platform, "variant"));
	if (!os || !arch || strcmp(os, want->os) != 0 || strcmp(arch, want->arch) != 0)
		return false;
	/* a variant left out on either side matches any */
	if (!want->variant[0] || !variant || !*variant)
		return true;
	return strcmp(variant, want->variant) == 0;
}

void conv_platform_format(json_t *platform, char *out, size_t n)
{
	const char *os = json_string_value(json_object_get(platform, "os"));
	const char *arch = json_string_value(json_object_get(platform, "architecture"));
	const char *variant = json_string_value(json_object_get(platform, "variant"));
	if (!os || !arch) {
		snprintf(out, n, "%s", "");
		return;
	}
	snprintf(out, n, "%.40s/%.40s%s%.40s", os, arch, variant && *variant ? "/" : "",
		 variant ? variant : "");
}

int conv_index_select(const char *name, struct conv_doc *idx, const struct conv_platform *want,
		      json_t **out, struct rs_error *err)
{
	json_t *all = json_object_get(idx->json, "manifests");
	json_t *sel = json_array();
	if (!sel)
		return rs_err(err, -ENOMEM, "out of memory");
	char have[512] = "";
	size_t used = 0, i;
	json_t *e;
	json_array_foreach(all, i, e)
	{
		const char *mt;
		int rc = conv_desc_get(e, &mt, NULL, NULL, "index entry", err);
		if (rc < 0) {
			json_decref(sel);
			rs_error_prefix(err, "%s", name);
			return rc;
		}
		json_t *p = json_object_get(e, "platform");
		char ps[128];
		conv_platform_format(p, ps, sizeof(ps));
		/* nested indexes and attestation manifests (os "unknown") are not images */
		if (!conv_mt_is_manifest(mt) || !*ps || strncmp(ps, "unknown/", 8) == 0)
			continue;
		if (used < sizeof(have)) {
			int w = snprintf(have + used, sizeof(have) - used, "%s%s", used ? ", " : "",
					 ps);
			used += w > 0 ? (size_t)w : 0;
		}
		if (want && !conv_platform_match(want, p))
			continue;
		json_array_append(sel, e);
		if (want)
			break;
	}
	if (json_array_size(sel) == 0) {
		json_decref(sel);
		if (!want)
			return rs_err(err, -ENOENT, "%s: the index lists no image manifests", name);
		return rs_err(err, -ENOENT, "%s: no image for platform %s/%s%s%s (has: %s)", name,
			      want->os, want->arch, want->variant[0] ? "/" : "", want->variant,
			      used ? have : "none");
	}
	*out = sel;
	return 0;
}
