// SPDX-License-Identifier: Apache-2.0
/* containerd's diff service: Apply a layer from the content store onto mounts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/client_internal.h"
#include "services_diff_v1_diff.pb-c.h"

#define DIFF "/containerd.services.diff.v1.Diff/"

int ctrd_descriptor_to_pb(const struct ctrd_descriptor *d, Containerd__Types__Descriptor *out,
			  void **entries)
{
	containerd__types__descriptor__init(out);
	out->media_type = (char *)(d->media_type ? d->media_type : "");
	out->digest = (char *)d->digest;
	out->size = d->size;
	*entries = NULL;
	if (d->n_annotations) {
		*entries =
		    ctrd_pb_kv_new(&containerd__types__descriptor__annotations_entry__descriptor,
				   d->annotations, d->n_annotations);
		if (!*entries)
			return -ENOMEM;
		out->n_annotations = d->n_annotations;
		out->annotations = *entries;
	}
	return 0;
}

int ctrd_diff_apply(struct ctrd_client *c, const struct ctrd_descriptor *desc,
		    const struct ctrd_mounts *mounts, char *applied, struct rs_error *err)
{
	Containerd__Types__Descriptor d;
	cleanup_free void *ann = NULL;
	if (ctrd_descriptor_to_pb(desc, &d, &ann) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	cleanup_free void *pm = ctrd_mounts_to_pb(mounts);
	if (mounts->n && !pm)
		return rs_err(err, -ENOMEM, "out of memory");
	Containerd__Services__Diff__V1__ApplyRequest req =
	    CONTAINERD__SERVICES__DIFF__V1__APPLY_REQUEST__INIT;
	req.diff = &d;
	req.n_mounts = mounts->n;
	req.mounts = pm;
	ProtobufCMessage *resp = NULL;
	int rc = ctrd_call(c, DIFF "Apply", &req.base,
			   &containerd__services__diff__v1__apply_response__descriptor, &resp,
			   c->long_timeout_ms, err);
	if (rc < 0)
		return rc;
	Containerd__Services__Diff__V1__ApplyResponse *r = (void *)resp;
	if (!r->applied || !r->applied->digest)
		rc = rs_err(err, -EPROTO, "containerd Diff.Apply %s: no applied descriptor",
			    desc->digest);
	else if (applied)
		snprintf(applied, RS_DIGEST_STR_LEN, "%s", r->applied->digest);
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}
