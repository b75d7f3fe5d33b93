// SPDX-License-Identifier: Apache-2.0
/* An OCI index's image manifests for a platform, by the registry's matcher. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "convert_internal.h"

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

int conv_index_select(const char *name, struct conv_doc *idx, const struct reg_platform *want,
		      json_t **out, struct rs_error *err)
{
	json_t *all = json_object_get(idx->json, "manifests");
	json_t *sel = json_array();
	if (!sel)
		return rs_err(err, -ENOMEM, "out of memory");
	char have[512] = "";
	size_t used = 0, i;
	json_t *e, *best = NULL;
	int best_rank = 0;
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
		if (!want) {
			json_array_append(sel, e);
			continue;
		}
		int rank = reg_platform_rank(want, json_string_value(json_object_get(p, "os")),
					     json_string_value(json_object_get(p, "architecture")),
					     json_string_value(json_object_get(p, "variant")));
		if (rank > best_rank) {
			best_rank = rank;
			best = e;
		}
	}
	if (best)
		json_array_append(sel, best);
	if (json_array_size(sel) == 0) {
		json_decref(sel);
		if (!want)
			return rs_err(err, -ENOENT, "%s: the index lists no image manifests", name);
		char ws[128];
		reg_platform_format(want, ws, sizeof(ws));
		return rs_err(err, -ENOENT, "%s: no image for platform %s (has: %s)", name, ws,
			      used ? have : "none");
	}
	*out = sel;
	return 0;
}
