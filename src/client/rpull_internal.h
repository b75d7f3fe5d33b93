/* SPDX-License-Identifier: Apache-2.0 */
/* What rpull.c and labels.c share: label sets and the labels containerd's
 * pull and the stargz snapshotter protocol put on content and snapshots. */
#ifndef CTRD_RPULL_INTERNAL_H
#define CTRD_RPULL_INTERNAL_H

#include <jansson.h>

#include "client/client_internal.h"

/* An owned label set; set() replaces a key already there. */
struct ctrd_labels {
	struct ctrd_kv *v;
	size_t n, cap;
};
void ctrd_labels_free(struct ctrd_labels *l);
int ctrd_labels_set(struct ctrd_labels *l, const char *key, const char *value);
/* containerd's labels.Validate: key and value together within CTRD_LABEL_MAX. */
bool ctrd_label_fits(const char *key, size_t value_len);

/* "containerd.io/distribution.source.<host>" for a reference's domain (the
 * host as Go's url.Hostname() gives it: no port, no IPv6 brackets). */
char *ctrd_dist_source_key(const char *domain);
/* containerd's appendDistributionSourceLabel: existing's repositories plus
 * repo, sorted, without duplicates, comma-separated. */
char *ctrd_merge_sources(const char *existing, const char *repo);

/* Bytes from the TOC's start to the end of the blob d describes, from the
 * annotation our converter writes (toc-offset) or zstd:chunked's
 * manifest-position; 0 when neither is there or the value does not fit d. */
int64_t ctrd_layer_toc_tail(const struct reg_descriptor *d);

/* Adds the labels containerd's unpacker gives Prepare for layer i of m: the
 * layer's annotations under containerd.io/snapshot/ and
 * containerd.io/snapshot.ref = chain_id, plus what stargz-snapshotter's
 * AppendDefaultLabelsHandlerWrapper adds (stargz.reference = name,
 * stargz.digest, stargz.layers, urls), plus our toc-tails. manifest_json is
 * m's raw JSON parsed (for the layers' urls). -ENOMEM. */
int ctrd_layer_labels(const struct reg_manifest *m, json_t *manifest_json, size_t i,
		      const char *chain_id, const char *name, struct ctrd_labels *l);

#endif
