// SPDX-License-Identifier: Apache-2.0
/* A direct client of containerd's snapshots gRPC service, for tests: one call,
 * the answer as one JSON line on stdout:
 *   {"code": 0, "message": "", "messages": N, "response": {...}}
 * ("response" for unary methods, "infos" for List). Exit 0 when the status
 * is OK, 1 for another status, 2 for a usage or transport problem.
 *
 *   api-test-client [options] SOCKET METHOD ARGS...
 *     prepare KEY | view KEY | mounts KEY | commit NAME KEY | remove KEY |
 *     stat KEY | update NAME | list | usage KEY | cleanup
 *     raw METHOD-PATH HEX        send these bytes to any method path
 *     garbage METHOD-PATH BYTES  send BYTES bytes of 0xff
 *     nomsg METHOD-PATH          close the call without sending a message
 *   options: -P PARENT, -l KEY=VALUE (labels, repeatable), -p PATH (update
 *   mask, repeatable), -f FILTER (list, repeatable), -s SNAPSHOTTER,
 *   -c MS (cancel the call after MS ms), -T SECONDS (deadline, default 60),
 *   -B BYTES (a label "big" with a value of this size), -n N (N such labels:
 *   big, big-1, ...), -r N (the call N times on KEY-1 .. KEY-N, printing the
 *   last answer; stops at the first failure)
 *
 *   api-test-client [-T SECONDS] SOCKET hammer KEY DIR
 *     Prepare KEY-i then Remove KEY-i, i = 1, 2, ..., on one channel (as
 *     containerd keeps one), until DIR/stop exists (at most 1000000 pairs).
 *     DIR/count holds the pairs done so far; each failed call is a JSON line
 *     on stderr; at the end {"pairs": N, "calls": N, "failed": N, "codes":
 *     {...}} on stdout. A Remove after a failed Prepare may find nothing
 *     (NOT_FOUND): not counted as failed. Exit 0 when no call failed. */
#include <errno.h>
#include <getopt.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <grpc/support/alloc.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "google_protobuf_empty.pb-c.h"
#include "services_snapshots_v1_snapshots.pb-c.h"

#define SVC "/containerd.services.snapshots.v1.Snapshots/"
#define NS(x) Containerd__Services__Snapshots__V1__##x
#define D(x) &containerd__services__snapshots__v1__##x##__descriptor

struct map_entry {
	ProtobufCMessage base;
	char *key;
	char *value;
};

static struct {
	const char *parent, *snapshotter;
	char *lk[64], *lv[64];
	size_t nl;
	char *paths[64];
	size_t np;
	char *filters[64];
	size_t nf;
	int cancel_ms;
	int timeout_s;
	long big;
	int nbig;
} opt = {.parent = "", .snapshotter = "stargz", .timeout_s = 60, .nbig = 1};

static void usage(void)
{
	fprintf(stderr,
		"usage: api-test-client [-P PARENT] [-l K=V]... [-p PATH]... [-f FILTER]... "
		"[-s SNAPSHOTTER] [-c MS] [-T S] [-B BYTES [-n N]] [-r N] SOCKET METHOD ARGS...\n");
	exit(2);
}

/* Builds the map entries of opt's labels with descriptor d. */
static struct map_entry **labels_msg(const ProtobufCMessageDescriptor *d, size_t *n)
{
	size_t nbig = opt.big > 0 ? (size_t)opt.nbig : 0;
	size_t total = opt.nl + nbig;
	struct map_entry **v = calloc(total + 1, sizeof(*v));
	for (size_t k = 0; k < total; k++) {
		v[k] = calloc(1, sizeof(**v));
		protobuf_c_message_init(d, v[k]);
		if (k < opt.nl) {
			v[k]->key = opt.lk[k];
			v[k]->value = opt.lv[k];
			continue;
		}
		v[k]->key = malloc(32);
		snprintf(v[k]->key, 32, k == opt.nl ? "big" : "big-%zu", k - opt.nl);
		v[k]->value = malloc((size_t)opt.big + 1);
		memset(v[k]->value, 'x', (size_t)opt.big);
		v[k]->value[opt.big] = '\0';
	}
	*n = total;
	return v;
}

static void labels_free(struct map_entry **v, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (k >= opt.nl) {
			free(v[k]->key);
			free(v[k]->value);
		}
		free(v[k]);
	}
	free(v);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return b;
}

static grpc_byte_buffer *bytes_buf(const void *p, size_t len)
{
	grpc_slice s = grpc_slice_from_copied_buffer(p, len);
	grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return b;
}

static json_t *ts_json(const Google__Protobuf__Timestamp *t)
{
	if (!t)
		return json_null();
	return json_pack("{sI sI}", "seconds", (json_int_t)t->seconds, "nanos",
			 (json_int_t)t->nanos);
}

static const char *kind_name(int k)
{
	static const char *names[] = {"unknown", "view", "active", "committed"};
	return k >= 0 && k <= 3 ? names[k] : "invalid";
}

static json_t *info_json(const NS(Info) * i)
{
	if (!i)
		return json_null();
	json_t *l = json_object();
	for (size_t k = 0; k < i->n_labels; k++)
		json_object_set_new(l, i->labels[k]->key, json_string(i->labels[k]->value));
	return json_pack("{ss ss ss si so so so}", "name", i->name, "parent", i->parent, "kind",
			 kind_name(i->kind), "kind_value", (int)i->kind, "created_at",
			 ts_json(i->created_at), "updated_at", ts_json(i->updated_at), "labels", l);
}

static json_t *mounts_json(size_t n, Containerd__Types__Mount **m)
{
	json_t *a = json_array();
	for (size_t k = 0; k < n; k++) {
		json_t *o = json_array();
		for (size_t j = 0; j < m[k]->n_options; j++)
			json_array_append_new(o, json_string(m[k]->options[j]));
		json_array_append_new(a, json_pack("{ss ss so}", "type", m[k]->type, "source",
						   m[k]->source, "options", o));
	}
	return a;
}

/* The JSON of one response message of method name, or NULL if it does not parse. */
static json_t *response_json(const char *name, const uint8_t *p, size_t len)
{
	if (!strcmp(name, "Prepare") || !strcmp(name, "View") || !strcmp(name, "Mounts")) {
		NS(MountsResponse) *r = (NS(MountsResponse) *)protobuf_c_message_unpack(
		    D(mounts_response), NULL, len, p);
		if (!r)
			return NULL;
		json_t *j = json_pack("{so}", "mounts", mounts_json(r->n_mounts, r->mounts));
		protobuf_c_message_free_unpacked(&r->base, NULL);
		return j;
	}
	if (!strcmp(name, "Stat") || !strcmp(name, "Update")) {
		NS(StatSnapshotResponse) *r = (NS(StatSnapshotResponse) *)protobuf_c_message_unpack(
		    D(stat_snapshot_response), NULL, len, p);
		if (!r)
			return NULL;
		json_t *j = json_pack("{so}", "info", info_json(r->info));
		protobuf_c_message_free_unpacked(&r->base, NULL);
		return j;
	}
	if (!strcmp(name, "List")) {
		NS(ListSnapshotsResponse) *r =
		    (NS(ListSnapshotsResponse) *)protobuf_c_message_unpack(
			D(list_snapshots_response), NULL, len, p);
		if (!r)
			return NULL;
		json_t *a = json_array();
		for (size_t k = 0; k < r->n_info; k++)
			json_array_append_new(a, info_json(r->info[k]));
		protobuf_c_message_free_unpacked(&r->base, NULL);
		return a;
	}
	if (!strcmp(name, "Usage")) {
		NS(UsageResponse) *r =
		    (NS(UsageResponse) *)protobuf_c_message_unpack(D(usage_response), NULL, len, p);
		if (!r)
			return NULL;
		json_t *j = json_pack("{sI sI}", "size", (json_int_t)r->size, "inodes",
				      (json_int_t)r->inodes);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		return j;
	}
	return json_pack("{si}", "bytes", (int)len);
}

/* The request for a named method from the positional args. */
static grpc_byte_buffer *build(const char *m, char **a, int n)
{
#define NEED(k)                                                                                    \
	do {                                                                                       \
		if (n < (k))                                                                       \
			usage();                                                                   \
	} while (0)
	grpc_byte_buffer *b = NULL;
	size_t nl;
	if (!strcmp(m, "prepare") || !strcmp(m, "view")) {
		NEED(1);
		NS(PrepareSnapshotRequest)
		r = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
		if (!strcmp(m, "view"))
			r.base.descriptor = D(view_snapshot_request);
		r.snapshotter = (char *)opt.snapshotter;
		r.key = a[0];
		r.parent = (char *)opt.parent;
		r.labels = (void *)labels_msg(D(prepare_snapshot_request__labels_entry), &nl);
		r.n_labels = nl;
		b = pack(&r.base);
		labels_free((void *)r.labels, nl);
	} else if (!strcmp(m, "mounts") || !strcmp(m, "remove") || !strcmp(m, "stat") ||
		   !strcmp(m, "usage")) {
		NEED(1);
		NS(MountsRequest) r = CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_REQUEST__INIT;
		r.snapshotter = (char *)opt.snapshotter;
		r.key = a[0];
		b = pack(&r.base); /* the four requests share this layout and wire format */
	} else if (!strcmp(m, "commit")) {
		NEED(2);
		NS(CommitSnapshotRequest)
		r = CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
		r.snapshotter = (char *)opt.snapshotter;
		r.name = a[0];
		r.key = a[1];
		r.labels = (void *)labels_msg(D(commit_snapshot_request__labels_entry), &nl);
		r.n_labels = nl;
		b = pack(&r.base);
		labels_free((void *)r.labels, nl);
	} else if (!strcmp(m, "update")) {
		NEED(1);
		NS(Info) info = CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__INIT;
		info.name = a[0];
		info.labels = (void *)labels_msg(D(info__labels_entry), &nl);
		info.n_labels = nl;
		Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
		mask.paths = opt.paths;
		mask.n_paths = opt.np;
		NS(UpdateSnapshotRequest)
		r = CONTAINERD__SERVICES__SNAPSHOTS__V1__UPDATE_SNAPSHOT_REQUEST__INIT;
		r.snapshotter = (char *)opt.snapshotter;
		r.info = &info;
		r.update_mask = &mask;
		b = pack(&r.base);
		labels_free((void *)info.labels, nl);
	} else if (!strcmp(m, "list")) {
		NS(ListSnapshotsRequest)
		r = CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
		r.snapshotter = (char *)opt.snapshotter;
		r.filters = opt.filters;
		r.n_filters = opt.nf;
		b = pack(&r.base);
	} else if (!strcmp(m, "cleanup")) {
		NS(CleanupRequest) r = CONTAINERD__SERVICES__SNAPSHOTS__V1__CLEANUP_REQUEST__INIT;
		r.snapshotter = (char *)opt.snapshotter;
		b = pack(&r.base);
	} else {
		usage();
	}
	return b;
#undef NEED
}

static int unhex(const char *h, uint8_t **out, size_t *len)
{
	size_t n = strlen(h);
	if (n % 2)
		return -1;
	*out = malloc(n / 2 + 1);
	for (size_t k = 0; k < n / 2; k++) {
		unsigned v;
		if (sscanf(h + 2 * k, "%2x", &v) != 1)
			return -1;
		(*out)[k] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

/* The status of do_call's last call (-1 when it could not run). */
static int last_code;
static char last_msg[256];

/* One call on ch; prints the JSON answer unless quiet. 0: OK status, 1:
 * another status, 2: the call could not run. */
static int do_call(grpc_channel *ch, const char *path, const char *name, grpc_byte_buffer *req,
		   bool quiet)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice method = grpc_slice_from_copied_string(path);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
					     gpr_time_from_seconds(opt.timeout_s, GPR_TIMESPAN));
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
						   NULL, deadline, NULL);
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	size_t nops = 0;
	ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (req) {
		ops[nops].op = GRPC_OP_SEND_MESSAGE;
		ops[nops++].data.send_message.send_message = req;
	}
	ops[nops++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[nops].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[nops++].data.recv_initial_metadata.recv_initial_metadata = &initial;
	int rc = 2;
	last_code = -1;
	snprintf(last_msg, sizeof(last_msg), "the call could not start");
	json_t *msgs = json_array();
	bool bad_reply = false;
	if (grpc_call_start_batch(call, ops, nops, (void *)1, NULL) != GRPC_CALL_OK) {
		fprintf(stderr, "api-test-client: cannot start the call\n");
		goto out;
	}
	if (opt.cancel_ms > 0) {
		gpr_sleep_until(gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
					     gpr_time_from_millis(opt.cancel_ms, GPR_TIMESPAN)));
		grpc_call_cancel(call, NULL);
	}
	grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

	for (;;) {
		grpc_byte_buffer *got = NULL;
		grpc_op op;
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &got;
		if (grpc_call_start_batch(call, &op, 1, (void *)2, NULL) != GRPC_CALL_OK)
			break;
		grpc_event ev = grpc_completion_queue_pluck(
		    cq, (void *)2, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (!ev.success || !got)
			break;
		grpc_byte_buffer_reader rd;
		grpc_byte_buffer_reader_init(&rd, got);
		grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
		grpc_byte_buffer_reader_destroy(&rd);
		json_t *j = response_json(name, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
		grpc_slice_unref(s);
		grpc_byte_buffer_destroy(got);
		if (!j) {
			bad_reply = true;
			j = json_null();
		}
		json_array_append_new(msgs, j);
	}

	grpc_status_code status;
	grpc_slice details;
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[0].data.recv_status_on_client.status = &status;
	ops[0].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 1, (void *)3, NULL) != GRPC_CALL_OK)
		goto out;
	grpc_completion_queue_pluck(cq, (void *)3, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	char *msg = grpc_slice_to_c_string(details);
	last_code = (int)status;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
	json_t *jmsg = json_string(msg);
	if (!jmsg) /* not UTF-8: say so rather than lose the answer */
		jmsg = json_pack("{ss}", "invalid_utf8", "yes");
	json_t *res = json_pack("{si so si}", "code", (int)status, "message", jmsg, "messages",
				(int)json_array_size(msgs));
	if (!strcmp(name, "List")) {
		json_t *all = json_array();
		size_t k;
		json_t *v;
		json_array_foreach(msgs, k, v)
		{
			if (json_is_array(v))
				json_array_extend(all, v);
		}
		json_object_set_new(res, "infos", all);
	} else if (json_array_size(msgs) > 0) {
		json_object_set(res, "response", json_array_get(msgs, 0));
	}
	if (bad_reply)
		json_object_set_new(res, "bad_reply", json_true());
	if (!quiet) {
		char *txt = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
		printf("%s\n", txt);
		free(txt);
	}
	json_decref(res);
	gpr_free(msg);
	grpc_slice_unref(details);
	rc = status == GRPC_STATUS_OK && !bad_reply ? 0 : 1;
out:
	json_decref(msgs);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_call_unref(call);
	grpc_slice_unref(method);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_destroy(cq);
	return rc;
}

static void write_count(const char *dir, long n)
{
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof(tmp), "%s/count.tmp", dir);
	snprintf(path, sizeof(path), "%s/count", dir);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%ld\n", n);
	fclose(f);
	rename(tmp, path);
}

/* One call of the hammer: counts it, reports a failure (not ignore_code). */
static bool hammer_call(grpc_channel *ch, const char *method, const char *key, long i,
			int ignore_code, long *calls, long *failed, json_t *codes)
{
	char path[128], *args[1] = {(char *)key};
	snprintf(path, sizeof(path), SVC "%s", method);
	grpc_byte_buffer *r = build(!strcmp(method, "Prepare") ? "prepare" : "remove", args, 1);
	int rc = do_call(ch, path, method, r, true);
	grpc_byte_buffer_destroy(r);
	(*calls)++;
	if (rc == 0 || last_code == ignore_code)
		return rc == 0;
	(*failed)++;
	char code[16];
	snprintf(code, sizeof(code), "%d", last_code);
	json_object_set_new(codes, code,
			    json_integer(json_integer_value(json_object_get(codes, code)) + 1));
	gpr_timespec now = gpr_now(GPR_CLOCK_REALTIME);
	json_t *j = json_pack("{ss ss sI si ss sI}", "call", method, "key", key, "i", (json_int_t)i,
			      "code", last_code, "message", last_msg, "unix_ms",
			      (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
	char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	fprintf(stderr, "%s\n", txt);
	free(txt);
	json_decref(j);
	return false;
}

static int hammer(grpc_channel *ch, const char *key, const char *dir)
{
	char stop[4096], k[512];
	snprintf(stop, sizeof(stop), "%s/stop", dir);
	long pairs = 0, calls = 0, failed = 0;
	json_t *codes = json_object();
	while (pairs < 1000000 && access(stop, F_OK) != 0) {
		pairs++;
		snprintf(k, sizeof(k), "%s-%ld", key, pairs);
		bool prepared = hammer_call(ch, "Prepare", k, pairs, -2, &calls, &failed, codes);
		hammer_call(ch, "Remove", k, pairs, prepared ? -2 : GRPC_STATUS_NOT_FOUND, &calls,
			    &failed, codes);
		write_count(dir, pairs);
	}
	json_t *res = json_pack("{sI sI sI so}", "pairs", (json_int_t)pairs, "calls",
				(json_int_t)calls, "failed", (json_int_t)failed, "codes", codes);
	char *txt = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
	printf("%s\n", txt);
	free(txt);
	json_decref(res);
	return failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	int c, repeat = 0;
	while ((c = getopt(argc, argv, "P:l:p:f:s:c:T:B:n:r:")) != -1) {
		switch (c) {
		case 'r':
			repeat = atoi(optarg);
			break;
		case 'P':
			opt.parent = optarg;
			break;
		case 'l': {
			char *eq = strchr(optarg, '=');
			if (!eq || opt.nl == 64)
				usage();
			*eq = '\0';
			opt.lk[opt.nl] = optarg;
			opt.lv[opt.nl++] = eq + 1;
			break;
		}
		case 'p':
			if (opt.np == 64)
				usage();
			opt.paths[opt.np++] = optarg;
			break;
		case 'f':
			if (opt.nf == 64)
				usage();
			opt.filters[opt.nf++] = optarg;
			break;
		case 's':
			opt.snapshotter = optarg;
			break;
		case 'c':
			opt.cancel_ms = atoi(optarg);
			break;
		case 'T':
			opt.timeout_s = atoi(optarg);
			break;
		case 'B':
			opt.big = atol(optarg);
			break;
		case 'n':
			opt.nbig = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2)
		usage();
	const char *sock = argv[optind], *m = argv[optind + 1];
	char **a = argv + optind + 2;
	int n = argc - optind - 2;

	char path[512], mname[64];
	grpc_byte_buffer *req = NULL;
	bool built = false;
	bool is_hammer = !strcmp(m, "hammer");
	if (is_hammer) {
		if (n != 2)
			usage();
		snprintf(path, sizeof(path), "hammer");
	} else if (!strcmp(m, "raw") || !strcmp(m, "garbage") || !strcmp(m, "nomsg")) {
		if (n < 1 || (strcmp(m, "nomsg") && n < 2))
			usage();
		snprintf(path, sizeof(path), "%s", a[0]);
		if (!strcmp(m, "raw")) {
			uint8_t *bytes;
			size_t len;
			if (unhex(a[1], &bytes, &len) < 0)
				usage();
			req = bytes_buf(bytes, len);
			free(bytes);
		} else if (!strcmp(m, "garbage")) {
			size_t len = (size_t)atol(a[1]);
			uint8_t *bytes = malloc(len + 1);
			memset(bytes, 0xff, len);
			req = bytes_buf(bytes, len);
			free(bytes);
		}
	} else {
		req = build(m, a, n);
		built = true;
		snprintf(mname, sizeof(mname), "%s", m);
		mname[0] = (char)(mname[0] - 'a' + 'A');
		snprintf(path, sizeof(path), SVC "%s", mname);
	}
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;

	grpc_init();
	char target[512];
	snprintf(target, sizeof(target), "unix:%s", sock);
	grpc_arg arg = {.type = GRPC_ARG_INTEGER,
			.key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
			.value.integer = 64 << 20};
	grpc_channel_args cargs = {.num_args = 1, .args = &arg};
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
	grpc_channel_credentials_release(creds);
	int rc;
	if (is_hammer) {
		rc = hammer(ch, a[0], a[1]);
	} else if (repeat > 0 && built && n >= 1) {
		/* The call N times, KEY-1 .. KEY-N; the last answer is printed. */
		grpc_byte_buffer_destroy(req);
		req = NULL;
		char *key = a[0], kbuf[512];
		a[0] = kbuf;
		rc = 0;
		for (int k = 1; k <= repeat && rc == 0; k++) {
			snprintf(kbuf, sizeof(kbuf), "%s-%d", key, k);
			grpc_byte_buffer *r = build(m, a, n);
			rc = do_call(ch, path, name, r, k < repeat);
			grpc_byte_buffer_destroy(r);
		}
	} else {
		rc = do_call(ch, path, name, req, false);
	}
	if (req)
		grpc_byte_buffer_destroy(req);
	grpc_channel_destroy(ch);
	grpc_shutdown();
	return rc;
}
