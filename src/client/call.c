// SPDX-License-Identifier: Apache-2.0
/* The channel to containerd and calls over it: unary calls as one batch,
 * bidirectional streams one message at a time, all on a pluck completion
 * queue so each batch is waited for where it starts. */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "client/client_internal.h"

#define CTRD_MAX_REPLY (16 << 20)

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

/* gRPC's own log lines would break the one-line errors of the CLI: they go
 * to our log at debug level, the failures reach the user through statuses. */
static void grpc_log_to_rs(gpr_log_func_args *a)
{
	rs_log(RS_LOG_DEBUG, "grpc: %s:%d: %s", a->file, a->line, a->message);
}

static void setup_logging(void)
{
	gpr_set_log_function(grpc_log_to_rs);
}

int ctrd_status_errno(grpc_status_code code)
{
	switch (code) {
	case GRPC_STATUS_OK:
		return 0;
	case GRPC_STATUS_CANCELLED:
		return -ECANCELED;
	case GRPC_STATUS_INVALID_ARGUMENT:
		return -EINVAL;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case GRPC_STATUS_NOT_FOUND:
		return -ENOENT;
	case GRPC_STATUS_ALREADY_EXISTS:
		return -EEXIST;
	case GRPC_STATUS_PERMISSION_DENIED:
	case GRPC_STATUS_UNAUTHENTICATED:
		return -EACCES;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return -ENOSPC;
	case GRPC_STATUS_FAILED_PRECONDITION:
		return -EBUSY;
	case GRPC_STATUS_ABORTED:
		return -ECONNABORTED;
	case GRPC_STATUS_OUT_OF_RANGE:
		return -ERANGE;
	case GRPC_STATUS_UNIMPLEMENTED:
		return -ENOSYS;
	case GRPC_STATUS_UNAVAILABLE:
		return -EAGAIN;
	case GRPC_STATUS_INTERNAL:
	case GRPC_STATUS_DATA_LOSS:
	case GRPC_STATUS_UNKNOWN:
	default:
		return -EIO;
	}
}

const char *ctrd_status_name(grpc_status_code code)
{
	static const char *const names[] = {
	    "OK",
	    "CANCELLED",
	    "UNKNOWN",
	    "INVALID_ARGUMENT",
	    "DEADLINE_EXCEEDED",
	    "NOT_FOUND",
	    "ALREADY_EXISTS",
	    "PERMISSION_DENIED",
	    "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION",
	    "ABORTED",
	    "OUT_OF_RANGE",
	    "UNIMPLEMENTED",
	    "INTERNAL",
	    "UNAVAILABLE",
	    "DATA_LOSS",
	    "UNAUTHENTICATED",
	};
	if ((unsigned)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "UNKNOWN";
}

/* "/containerd.services.snapshots.v1.Snapshots/Prepare" -> "Snapshots.Prepare" */
static void short_method(const char *method, char *out, size_t n)
{
	const char *slash = strrchr(method, '/');
	const char *svc_end = slash ? slash : method + strlen(method);
	const char *svc = svc_end;
	while (svc > method && svc[-1] != '.' && svc[-1] != '/')
		svc--;
	snprintf(out, n, "%.*s.%s", (int)(svc_end - svc), svc, slash ? slash + 1 : "");
}

static int status_error(struct ctrd_client *c, const char *method, grpc_status_code code,
			grpc_slice details, const char *error_string, struct rs_error *err)
{
	char name[96];
	short_method(method, name, sizeof(name));
	int len = (int)GRPC_SLICE_LENGTH(details);
	const char *msg = (const char *)GRPC_SLICE_START_PTR(details);
	if (len == 0 && error_string) {
		msg = error_string;
		len = (int)strlen(error_string);
	}
	if (len > 600)
		len = 600;
	if (code == GRPC_STATUS_UNAVAILABLE)
		return rs_err(err, ctrd_status_errno(code),
			      "cannot reach containerd at %s: %.*s (%s, %s)", c->address, len, msg,
			      ctrd_status_name(code), name);
	if (code == GRPC_STATUS_DEADLINE_EXCEEDED)
		return rs_err(err, ctrd_status_errno(code),
			      "containerd %s: no answer before the deadline (%s)", name,
			      ctrd_status_name(code));
	return rs_err(err, ctrd_status_errno(code), "containerd %s: %.*s (%s)", name, len, msg,
		      ctrd_status_name(code));
}

static gpr_timespec deadline_after(long ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static size_t call_metadata(struct ctrd_client *c, grpc_metadata md[2])
{
	memset(md, 0, 2 * sizeof(md[0]));
	md[0].key = grpc_slice_from_static_string("containerd-namespace");
	md[0].value = grpc_slice_from_static_string(c->ns);
	if (!c->lease)
		return 1;
	md[1].key = grpc_slice_from_static_string("containerd-lease");
	md[1].value = grpc_slice_from_static_string(c->lease);
	return 2;
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static int unpack_message(const char *method, grpc_byte_buffer *bb,
			  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
			  struct rs_error *err)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return rs_err(err, -EPROTO, "containerd %s: unreadable reply", method);
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	int rc = 0;
	if (GRPC_SLICE_LENGTH(s) > CTRD_MAX_REPLY) {
		rc = rs_err(err, -EMSGSIZE, "containerd %s: reply of %zu bytes is too large",
			    method, (size_t)GRPC_SLICE_LENGTH(s));
	} else {
		*out = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
						 GRPC_SLICE_START_PTR(s));
		if (!*out)
			rc = rs_err(err, -EPROTO, "containerd %s: reply does not decode as %s",
				    method, desc->name);
	}
	grpc_slice_unref(s);
	return rc;
}

/* Runs one batch and waits for it. false: the batch failed (the call ended). */
static bool run_batch(struct ctrd_client *c, grpc_call *call, const grpc_op *ops, size_t n)
{
	int tag;
	grpc_call_error e = grpc_call_start_batch(call, ops, n, &tag, NULL);
	if (e != GRPC_CALL_OK)
		return false;
	grpc_event ev =
	    grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

int ctrd_client_new(const struct ctrd_options *o, struct ctrd_client **out, struct rs_error *err)
{
	pthread_once(&log_once, setup_logging);
	struct ctrd_client *c = calloc(1, sizeof(*c));
	if (!c)
		return rs_err(err, -ENOMEM, "out of memory");
	c->address = strdup(o->address ? o->address : CTRD_DEFAULT_ADDRESS);
	c->ns = strdup(o->namespace ? o->namespace : CTRD_DEFAULT_NAMESPACE);
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
	c->long_timeout_ms = o->long_timeout_ms > 0 ? o->long_timeout_ms : 3600000;
	if (!c->address || !c->ns) {
		free(c->address);
		free(c->ns);
		free(c);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (!*c->ns) {
		free(c->address);
		free(c->ns);
		free(c);
		return rs_err(err, -EINVAL, "the containerd namespace is empty");
	}
	grpc_init();
	size_t tlen = strlen(c->address) + 8;
	cleanup_free char *target = malloc(tlen);
	if (!target) {
		ctrd_client_free(c);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	snprintf(target, tlen, "unix:%s", c->address);
	grpc_arg args[2] = {
	    {.type = GRPC_ARG_INTEGER,
	     .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	     .value.integer = CTRD_MAX_REPLY},
	    {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_HTTP_PROXY, .value.integer = 0},
	};
	grpc_channel_args ca = {.num_args = 2, .args = args};
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target, creds, &ca);
	grpc_channel_credentials_release(creds);
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	if (!c->ch || !c->cq) {
		ctrd_client_free(c);
		return rs_err(err, -EIO, "cannot set up a gRPC channel to %s", target);
	}
	*out = c;
	return 0;
}

void ctrd_client_free(struct ctrd_client *c)
{
	if (!c)
		return;
	if (c->ch)
		grpc_channel_destroy(c->ch);
	if (c->cq) {
		grpc_completion_queue_shutdown(c->cq);
		grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		grpc_completion_queue_destroy(c->cq);
	}
	if (c->ch || c->cq)
		grpc_shutdown_blocking();
	free(c->address);
	free(c->ns);
	free(c->lease);
	free(c);
}

int ctrd_client_set_lease(struct ctrd_client *c, const char *lease_id, struct rs_error *err)
{
	char *l = NULL;
	if (lease_id && !(l = strdup(lease_id)))
		return rs_err(err, -ENOMEM, "out of memory");
	free(c->lease);
	c->lease = l;
	return 0;
}

int ctrd_call(struct ctrd_client *c, const char *method, const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, long timeout_ms,
	      struct rs_error *err)
{
	if (resp)
		*resp = NULL;
	grpc_call *call = grpc_channel_create_call(
	    c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, grpc_slice_from_static_string(method),
	    NULL, deadline_after(timeout_ms > 0 ? timeout_ms : c->timeout_ms), NULL);
	if (!call)
		return rs_err(err, -EIO, "cannot start the gRPC call %s", method);
	grpc_metadata md[2];
	size_t nmd = call_metadata(c, md);
	grpc_byte_buffer *send = pack_message(req);
	grpc_byte_buffer *recv = NULL;
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	ops[5].data.recv_status_on_client.error_string = &error_string;
	int rc = 0;
	if (!run_batch(c, call, ops, 6))
		rc = rs_err(err, -EIO, "containerd %s: the gRPC call failed", method);
	else if (status != GRPC_STATUS_OK)
		rc = status_error(c, method, status, details, error_string, err);
	else if (resp_desc && !recv)
		rc = rs_err(err, -EPROTO, "containerd %s: no reply message", method);
	else if (resp_desc)
		rc = unpack_message(method, recv, resp_desc, resp, err);
	grpc_byte_buffer_destroy(send);
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_call_unref(call);
	return rc;
}

struct ctrd_stream {
	struct ctrd_client *c;
	const char *method;
	grpc_call *call;
	grpc_metadata md[2];
	grpc_metadata_array initial;
	bool initial_asked;
	bool finished;
};

int ctrd_stream_open(struct ctrd_client *c, const char *method, long timeout_ms,
		     struct ctrd_stream **out, struct rs_error *err)
{
	struct ctrd_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	s->c = c;
	s->method = method;
	grpc_metadata_array_init(&s->initial);
	s->call = grpc_channel_create_call(
	    c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, grpc_slice_from_static_string(method),
	    NULL, deadline_after(timeout_ms > 0 ? timeout_ms : c->long_timeout_ms), NULL);
	if (!s->call) {
		ctrd_stream_free(s);
		return rs_err(err, -EIO, "cannot start the gRPC call %s", method);
	}
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_INITIAL_METADATA;
	op.data.send_initial_metadata.count = call_metadata(c, s->md);
	op.data.send_initial_metadata.metadata = s->md;
	if (!run_batch(c, s->call, &op, 1)) {
		int rc = ctrd_stream_finish(s, err);
		ctrd_stream_free(s);
		return rc < 0 ? rc : rs_err(err, -EIO, "containerd %s: stream ended", method);
	}
	*out = s;
	return 0;
}

int ctrd_stream_finish(struct ctrd_stream *s, struct rs_error *err)
{
	if (s->finished)
		return rs_err(err, -EPIPE, "containerd %s: stream already ended", s->method);
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	run_batch(s->c, s->call, &op, 1); /* fails when the server ended first */
	/* The status comes only after every message is read, and containerd's
	 * Content.Write sends its last reply twice. */
	for (int i = 0; i < 1024; i++) {
		grpc_byte_buffer *extra = NULL;
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &extra;
		if (!run_batch(s->c, s->call, &op, 1) || !extra)
			break;
		grpc_byte_buffer_destroy(extra);
	}
	grpc_metadata_array trailing;
	grpc_metadata_array_init(&trailing);
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &trailing;
	op.data.recv_status_on_client.status = &status;
	op.data.recv_status_on_client.status_details = &details;
	op.data.recv_status_on_client.error_string = &error_string;
	int rc = 0;
	if (!run_batch(s->c, s->call, &op, 1))
		rc = rs_err(err, -EIO, "containerd %s: the gRPC call failed", s->method);
	else if (status != GRPC_STATUS_OK)
		rc = status_error(s->c, s->method, status, details, error_string, err);
	s->finished = true;
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	grpc_metadata_array_destroy(&trailing);
	return rc;
}

int ctrd_stream_exchange(struct ctrd_stream *s, const ProtobufCMessage *req,
			 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
			 struct rs_error *err)
{
	*resp = NULL;
	if (s->finished)
		return rs_err(err, -EPIPE, "containerd %s: stream already ended", s->method);
	grpc_byte_buffer *send = pack_message(req);
	grpc_byte_buffer *recv = NULL;
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = send;
	if (!s->initial_asked) {
		/* The first exchange also takes the server's initial metadata. */
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
		s->initial_asked = true;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &recv;
	bool ok = run_batch(s->c, s->call, ops, n);
	grpc_byte_buffer_destroy(send);
	int rc;
	if (!ok || !recv) {
		/* The server ended the call: its status tells why. */
		rc = ctrd_stream_finish(s, err);
		if (rc == 0)
			rc = rs_err(err, -EPIPE, "containerd %s: stream ended without a reply",
				    s->method);
	} else {
		rc = unpack_message(s->method, recv, resp_desc, resp, err);
	}
	if (recv)
		grpc_byte_buffer_destroy(recv);
	return rc;
}

void ctrd_stream_free(struct ctrd_stream *s)
{
	if (!s)
		return;
	if (s->call) {
		if (!s->finished)
			grpc_call_cancel(s->call, NULL);
		grpc_call_unref(s->call);
	}
	grpc_metadata_array_destroy(&s->initial);
	free(s);
}
