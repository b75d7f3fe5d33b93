// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the snapshot List filter parser (containerd's filter syntax, from
 * an untrusted gRPC request): each input line is one filter; a filter that
 * parses is matched against a snapshot with labels. */
#include <string.h>

#include "snapshot/snap_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	const char *filters[16];
	size_t n = 0;
	for (char *p = text; p && n < 16;) {
		filters[n++] = p;
		char *nl = strchr(p, '\n');
		if (nl)
			*nl++ = '\0';
		p = nl;
	}
	struct snap_filter *f = NULL;
	struct rs_error err;
	if (snap_filter_parse(filters, n, &f, &err) == 0) {
		struct snap_label labels[] = {
		    {(char *)"containerd.io/gc.root", (char *)"2021"},
		    {(char *)"a.b", (char *)"c"},
		};
		struct snap_info info = {
		    .name = (char *)"sha256:abc",
		    .parent = (char *)"p",
		    .kind = SNAP_KIND_COMMITTED,
		    .labels = labels,
		    .nlabels = 2,
		};
		(void)snap_filter_match(f, &info);
		snap_filter_free(f);
	}
	free(text);
	return 0;
}
