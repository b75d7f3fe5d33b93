/* SPDX-License-Identifier: Apache-2.0 */
/* What the client's files share: calls over the channel, protobuf-c map
 * entries, status mapping. */
#ifndef CTRD_CLIENT_INTERNAL_H
#define CTRD_CLIENT_INTERNAL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "client/client.h"

struct ctrd_client {
	char *address;
	char *ns;
	char *lease; /* NULL: none */
	long timeout_ms;
	long long_timeout_ms;
	grpc_channel *ch;
	grpc_completion_queue *cq; /* pluck: every batch is waited for in place */
};

/* One request, one reply. method is the full path
 * ("/containerd.services.leases.v1.Leases/Create"); resp_desc NULL: the reply
 * is not decoded (google.protobuf.Empty). *resp is freed with
 * protobuf_c_message_free_unpacked(*resp, NULL). */
int ctrd_call(struct ctrd_client *c, const char *method, const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, long timeout_ms,
	      struct rs_error *err);

/* A bidirectional stream driven one message at a time. */
struct ctrd_stream;
int ctrd_stream_open(struct ctrd_client *c, const char *method, long timeout_ms,
		     struct ctrd_stream **out, struct rs_error *err);
/* Sends req and waits for one reply. When the server ends the call instead,
 * its status is the error. */
int ctrd_stream_exchange(struct ctrd_stream *s, const ProtobufCMessage *req,
			 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
			 struct rs_error *err);
/* Half-closes and waits for the status. */
int ctrd_stream_finish(struct ctrd_stream *s, struct rs_error *err);
/* Cancels the call if it has not finished. */
void ctrd_stream_free(struct ctrd_stream *s);

/* Every map<string,string> entry message has this layout. */
struct ctrd_pb_kv {
	ProtobufCMessage base;
	char *key;
	char *value;
};
/* n entries of the entry type desc pointing at kv's strings (not copied);
 * returns the pointer array for the message's field, NULL on ENOMEM (or
 * when n is 0). Free with free(). */
void *ctrd_pb_kv_new(const ProtobufCMessageDescriptor *desc, const struct ctrd_kv *kv, size_t n);
/* Copies decoded map entries into an owned array. */
int ctrd_pb_kv_copy(void *entries, size_t n, struct ctrd_kv **out, size_t *n_out);

/* Decoded mounts (Containerd__Types__Mount **) to owned ones, and owned ones
 * to messages that borrow their strings (free the result with free()). */
int ctrd_mounts_from_pb(void *mounts, size_t n, struct ctrd_mounts *out);
void *ctrd_mounts_to_pb(const struct ctrd_mounts *m);

/* A descriptor message borrowing d's strings; *entries (free()) holds the
 * annotations. -ENOMEM. */
struct Containerd__Types__Descriptor;
int ctrd_descriptor_to_pb(const struct ctrd_descriptor *d,
			  struct Containerd__Types__Descriptor *out, void **entries);

int ctrd_status_errno(grpc_status_code code);
const char *ctrd_status_name(grpc_status_code code);

/* "<nanoseconds>-<4 base64url chars>", the unique part containerd puts in
 * lease ids and extraction keys. */
#define CTRD_UNIQUE_LEN 24
void ctrd_unique_part(char out[CTRD_UNIQUE_LEN]);

#endif
