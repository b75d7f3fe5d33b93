// SPDX-License-Identifier: Apache-2.0
/* The labels of a pull: label sets, chainIDs, the distribution source label,
 * and the Prepare labels of a layer (containerd's unpacker plus
 * stargz-snapshotter's AppendDefaultLabelsHandlerWrapper, fs/source/source.go). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/rpull_internal.h"
#include "estargz/estargz.h"

void ctrd_labels_free(struct ctrd_labels *l)
{
	ctrd_kv_free(l->v, l->n);
	memset(l, 0, sizeof(*l));
}

int ctrd_labels_set(struct ctrd_labels *l, const char *key, const char *value)
{
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].key, key) == 0) {
			free(l->v[i].value);
			l->v[i].value = v;
			return 0;
		}
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		struct ctrd_kv *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		l->v = nv;
		l->cap = nc;
	}
	char *k = strdup(key);
	if (!k) {
		free(v);
		return -ENOMEM;
	}
	l->v[l->n].key = k;
	l->v[l->n].value = v;
	l->n++;
	return 0;
}

bool ctrd_label_fits(const char *key, size_t value_len)
{
	return strlen(key) + value_len <= CTRD_LABEL_MAX;
}

void ctrd_chain_id(const char *parent_chain, const char *diff_id, char out[RS_DIGEST_STR_LEN])
{
	if (!parent_chain || !*parent_chain) {
		snprintf(out, RS_DIGEST_STR_LEN, "%s", diff_id);
		return;
	}
	char buf[2 * RS_DIGEST_STR_LEN + 2];
	int n = snprintf(buf, sizeof(buf), "%s %s", parent_chain, diff_id);
	uint8_t sum[RS_SHA256_LEN];
	rs_sha256(buf, (size_t)n, sum);
	rs_digest_format(sum, out);
}

/* Go's url.Hostname() of "dummy://" + domain: the port and IPv6 brackets go. */
static char *domain_hostname(const char *domain)
{
	if (domain[0] == '[') {
		const char *end = strchr(domain, ']');
		if (end)
			return strndup(domain + 1, (size_t)(end - domain - 1));
	}
	const char *colon = strrchr(domain, ':');
	if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
		return strndup(domain, (size_t)(colon - domain));
	return strdup(domain);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *ctrd_merge_sources(const char *existing, const char *repo)
{
	size_t n = 1;
	for (const char *s = existing; s && *s; s++)
		n += *s == ',';
	cleanup_free char *copy = strdup(existing ? existing : "");
	cleanup_free char **v = calloc(n + 1, sizeof(char *));
	if (!copy || !v)
		return NULL;
	size_t k = 0;
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && k < n;
	     t = strtok_r(NULL, ",", &save))
		v[k++] = t;
	v[k++] = (char *)repo;
	qsort(v, k, sizeof(char *), cmp_str);
	struct rs_buf b = {0};
	for (size_t i = 0; i < k; i++) {
		if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
			continue;
		if (rs_buf_printf(&b, "%s%s", b.len ? "," : "", v[i]) < 0) {
			rs_buf_free(&b);
			return NULL;
		}
	}
	if (rs_buf_append(&b, "", 1) < 0) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

char *ctrd_dist_source_key(const char *domain)
{
	cleanup_free char *host = domain_hostname(domain);
	if (!host)
		return NULL;
	size_t n = strlen(CTRD_LABEL_DIST_SOURCE_PREFIX) + strlen(host) + 1;
	char *key = malloc(n);
	if (key)
		snprintf(key, n, "%s%s", CTRD_LABEL_DIST_SOURCE_PREFIX, host);
	return key;
}

/* stargz-snapshotter checks a list it builds as "a,b," + "c," against the
 * label limit, trailing comma included: that length, for b holding "a,b". */
static size_t go_joined_len(size_t joined, size_t add)
{
	return joined + (joined ? 1 : 0) + add + 1;
}

/* The urls of manifest layer i, comma-joined while containerd's label limit
 * allows (stargz-snapshotter's appendWithValidation); "" when none. */
static char *layer_urls(json_t *manifest_json, size_t i, const char *key)
{
	json_t *layers = json_object_get(manifest_json, "layers");
	json_t *urls = json_object_get(json_array_get(layers, i), "urls");
	struct rs_buf b = {0};
	size_t k;
	json_t *u;
	json_array_foreach(urls, k, u)
	{
		const char *s = json_string_value(u);
		if (!s)
			continue;
		if (!ctrd_label_fits(key, go_joined_len(b.len, strlen(s))))
			break;
		if (rs_buf_printf(&b, "%s%s", b.len ? "," : "", s) < 0) {
			rs_buf_free(&b);
			return NULL;
		}
	}
	if (rs_buf_append(&b, "", 1) < 0) {
		rs_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

int64_t ctrd_layer_toc_tail(const struct reg_descriptor *d)
{
	int64_t off = -1;
	for (size_t k = 0; k < d->n_annotations && off < 0; k++) {
		const struct reg_kv *a = &d->annotations[k];
		if (strcmp(a->key, ESGZ_ANNOTATION_TOC_OFFSET) == 0)
			off = rs_parse_decimal(a->value, strlen(a->value));
		else if (strcmp(a->key, ESGZ_ANNOTATION_ZSTD_MANIFEST_POSITION) == 0)
			/* offset:length:size:type */
			off = rs_parse_decimal(a->value, strcspn(a->value, ":"));
	}
	return off > 0 && off < d->size ? d->size - off : 0;
}

int ctrd_layer_labels(const struct reg_manifest *m, json_t *manifest_json, size_t i,
		      const char *chain_id, const char *name, struct ctrd_labels *l)
{
	const struct reg_descriptor *d = &m->layers[i];
	size_t plen = strlen(CTRD_LABEL_INHERITED_PREFIX);
	for (size_t k = 0; k < d->n_annotations; k++) {
		const struct reg_kv *a = &d->annotations[k];
		if (strncmp(a->key, CTRD_LABEL_INHERITED_PREFIX, plen) != 0 ||
		    !ctrd_label_fits(a->key, strlen(a->value)))
			continue;
		if (ctrd_labels_set(l, a->key, a->value) < 0)
			return -ENOMEM;
	}
	if (ctrd_labels_set(l, CTRD_LABEL_SNAPSHOT_REF, chain_id) < 0 ||
	    ctrd_labels_set(l, CTRD_LABEL_STARGZ_REF, name) < 0 ||
	    ctrd_labels_set(l, CTRD_LABEL_STARGZ_DIGEST, d->digest) < 0)
		return -ENOMEM;

	/* This layer and the ones above it, as many as fit in one label. */
	struct rs_buf b = {0}, tails = {0};
	for (size_t j = i; j < m->n_layers; j++) {
		const char *dg = m->layers[j].digest;
		if (!ctrd_label_fits(CTRD_LABEL_STARGZ_LAYERS, go_joined_len(b.len, strlen(dg))))
			break;
		if (rs_buf_printf(&b, "%s%s", b.len ? "," : "", dg) < 0) {
			rs_buf_free(&b);
			rs_buf_free(&tails);
			return -ENOMEM;
		}
		char tail[RS_DIGEST_STR_LEN + 24];
		int64_t t = ctrd_layer_toc_tail(&m->layers[j]);
		int tn = snprintf(tail, sizeof(tail), "%s=%lld", dg, (long long)t);
		if (t > 0 &&
		    ctrd_label_fits(CTRD_LABEL_TOC_TAILS, go_joined_len(tails.len, (size_t)tn)) &&
		    rs_buf_printf(&tails, "%s%s", tails.len ? "," : "", tail) < 0) {
			rs_buf_free(&b);
			rs_buf_free(&tails);
			return -ENOMEM;
		}
		char key[sizeof(CTRD_LABEL_REMOTE_URLS) + 24];
		snprintf(key, sizeof(key), "%s.%zu", CTRD_LABEL_REMOTE_URLS, j - i);
		cleanup_free char *urls = layer_urls(manifest_json, j, key);
		if (!urls || (*urls && ctrd_labels_set(l, key, urls) < 0)) {
			rs_buf_free(&b);
			rs_buf_free(&tails);
			return -ENOMEM;
		}
	}
	int rc = rs_buf_append(&b, "", 1) < 0
		     ? -ENOMEM
		     : ctrd_labels_set(l, CTRD_LABEL_STARGZ_LAYERS, (const char *)b.data);
	if (rc == 0 && tails.len > 0)
		rc = rs_buf_append(&tails, "", 1) < 0
			 ? -ENOMEM
			 : ctrd_labels_set(l, CTRD_LABEL_TOC_TAILS, (const char *)tails.data);
	rs_buf_free(&b);
	rs_buf_free(&tails);
	if (rc < 0)
		return rc;
	cleanup_free char *urls = layer_urls(manifest_json, i, CTRD_LABEL_REMOTE_URLS);
	if (!urls || (*urls && ctrd_labels_set(l, CTRD_LABEL_REMOTE_URLS, urls) < 0))
		return -ENOMEM;
	return 0;
}
