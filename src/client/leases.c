// SPDX-License-Identifier: Apache-2.0
/* containerd's leases service: Create (with the gc.expire label) and Delete. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "client/client_internal.h"
#include "services_leases_v1_leases.pb-c.h"

#define LEASES "/containerd.services.leases.v1.Leases/"

void ctrd_unique_part(char out[CTRD_UNIQUE_LEN])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint8_t b[3] = {0};
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		uint64_t x = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)getpid();
		memcpy(b, &x, sizeof(b));
	}
	char enc[8];
	size_t n = rs_base64_encode(b, sizeof(b), enc);
	for (size_t i = 0; i < n; i++) {
		if (enc[i] == '+')
			enc[i] = '-';
		else if (enc[i] == '/')
			enc[i] = '_';
	}
	snprintf(out, CTRD_UNIQUE_LEN, "%ld-%.*s", (long)ts.tv_nsec, (int)n, enc);
}

int ctrd_lease_create(struct ctrd_client *c, const char *id, long expire_s,
		      const struct ctrd_kv *labels, size_t n, char **id_out, struct rs_error *err)
{
	char gen[CTRD_UNIQUE_LEN];
	if (!id) {
		ctrd_unique_part(gen);
		id = gen;
	}
	size_t total = n + (expire_s > 0);
	cleanup_free struct ctrd_kv *all = calloc(total ? total : 1, sizeof(*all));
	if (!all)
		return rs_err(err, -ENOMEM, "out of memory");
	if (n)
		memcpy(all, labels, n * sizeof(*labels));
	char expire[32];
	if (expire_s > 0) {
		rs_rfc3339_format((int64_t)time(NULL) + expire_s, expire);
		all[n].key = (char *)CTRD_LABEL_GC_EXPIRE;
		all[n].value = expire;
	}
	Containerd__Services__Leases__V1__CreateRequest req =
	    CONTAINERD__SERVICES__LEASES__V1__CREATE_REQUEST__INIT;
	req.id = (char *)id;
	cleanup_free void *entries = ctrd_pb_kv_new(
	    &containerd__services__leases__v1__create_request__labels_entry__descriptor, all,
	    total);
	if (total && !entries)
		return rs_err(err, -ENOMEM, "out of memory");
	req.n_labels = total;
	req.labels = entries;
	ProtobufCMessage *resp = NULL;
	int rc = ctrd_call(c, LEASES "Create", &req.base,
			   &containerd__services__leases__v1__create_response__descriptor, &resp, 0,
			   err);
	if (rc < 0)
		return rc;
	Containerd__Services__Leases__V1__CreateResponse *r = (void *)resp;
	const char *got = r->lease && r->lease->id && *r->lease->id ? r->lease->id : id;
	if (id_out && !(*id_out = strdup(got)))
		rc = rs_err(err, -ENOMEM, "out of memory");
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int ctrd_lease_delete(struct ctrd_client *c, const char *id, bool sync, struct rs_error *err)
{
	Containerd__Services__Leases__V1__DeleteRequest req =
	    CONTAINERD__SERVICES__LEASES__V1__DELETE_REQUEST__INIT;
	req.id = (char *)id;
	req.sync = sync;
	return ctrd_call(c, LEASES "Delete", &req.base, NULL, NULL, 0, err);
}
