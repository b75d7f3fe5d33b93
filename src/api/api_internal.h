/* SPDX-License-Identifier: Apache-2.0 */
/* api internals: the method table (methods.c), message conversion
 * (convert.c) and the call machinery (server.c) meet here. */
#ifndef API_API_INTERNAL_H
#define API_API_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include "api/api.h"
#include "services_snapshots_v1_snapshots.pb-c.h"

#define API_SERVICE "/containerd.services.snapshots.v1.Snapshots/"
/* Requests bigger than this are refused by gRPC (RESOURCE_EXHAUSTED). */
#define API_MAX_RECV (16 * 1024 * 1024)
/* List sends its infos in messages of at most this many entries or bytes. */
#define API_LIST_BATCH 100
#define API_LIST_BATCH_BYTES (1024 * 1024)
/* containerd's limit on a label's key plus value (labels.Validate). */
#define API_LABEL_MAX 4096

/* The messages a call answers with, in order: one for a unary method, any
 * number (also none) for List. Owned by the call; sent after the handler. */
struct api_reply {
	grpc_byte_buffer **msgs;
	size_t n, cap;
};
void api_reply_free(struct api_reply *r);
/* Packs m into a new message appended to r. */
int api_reply_add(struct api_reply *r, const ProtobufCMessage *m, struct rs_error *err);
/* Appends an already encoded message. */
int api_reply_add_bytes(struct api_reply *r, const void *p, size_t len, struct rs_error *err);

typedef int (*api_method_fn)(struct snapshotter *s, const ProtobufCMessage *req,
			     struct api_reply *out, struct rs_error *err);

struct api_method {
	const char *name; /* "Prepare": the part after API_SERVICE */
	const ProtobufCMessageDescriptor *req;
	api_method_fn fn;
};
/* The method the full path names ("/containerd....Snapshots/Prepare"), or NULL. */
const struct api_method *api_method_find(const char *path, size_t len);

/* ---- conversion (convert.c) ---------------------------------------------- */

/* The map entries of a request (any of the LabelsEntry types: they share one
 * layout) as a snap_label array pointing into the request. A key given twice
 * keeps its last value, as protobuf maps do. -EINVAL for a pair over
 * API_LABEL_MAX. *out is NULL when n is 0; free it with free(). */
struct api_map_entry {
	ProtobufCMessage base;
	char *key;
	char *value;
};
int api_labels_in(struct api_map_entry *const *in, size_t n, struct snap_label **out, size_t *nout,
		  struct rs_error *err);

/* Mounts as a PrepareSnapshotResponse / ViewSnapshotResponse /
 * MountsResponse (one layout): packs and appends to r. */
int api_reply_mounts(struct api_reply *r, const ProtobufCMessageDescriptor *d,
		     const struct snap_mounts *m, struct rs_error *err);

/* An Info message built on the heap from i (pointing into i's strings: it
 * lives no longer than i). */
Containerd__Services__Snapshots__V1__Info *api_info_new(const struct snap_info *i);
void api_info_free(Containerd__Services__Snapshots__V1__Info *m);
size_t api_info_size(const Containerd__Services__Snapshots__V1__Info *m);

void api_timestamp_of(int64_t ns, int64_t *sec, int32_t *nsec);

/* Replaces each of s's n bytes that is not part of valid UTF-8 with '?' (a status
 * message must be UTF-8; it may quote the client's own bytes). */
void api_utf8_sanitize(char *s, size_t n);

#endif
