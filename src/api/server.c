// SPDX-License-Identifier: Apache-2.0
/* The gRPC server: one thread polls the completion queue and moves calls
 * along; a fixed pool of handler threads runs the (blocking) snapshot calls.
 *
 * A call's life: request_call completes (NEW) -> RECV_MESSAGE (RECV) -> a
 * handler decodes it, runs the method and starts sending (SEND, one batch per
 * reply message, the status with the last) -> done. A RECV_CLOSE_ON_SERVER
 * batch (CLOSE) runs beside it and tells whether the client went away. The
 * call is freed when both the main flow and CLOSE have finished. */
#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "api/api_internal.h"
#include "util/tsan.h"

/* How long api_server_stop lets calls in progress finish before it cancels them. */
#define API_STOP_GRACE_S 10
/* Calls accepted at once per connection. */
#define API_MAX_STREAMS 1024

enum tag_kind { TAG_NEW, TAG_RECV, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN };

struct api_tag {
	enum tag_kind kind;
	struct api_call *call;
};

struct api_call {
	struct api_server *srv;
	struct api_tag t_new, t_recv, t_send, t_close;
	/* Two owners once accepted: the main flow (poller -> handler -> poller)
	 * and the CLOSE batch. The last one frees the call. */
	atomic_int refs;
	atomic_bool cancelled;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	int close_cancelled;
	const struct api_method *m;
	char method[96]; /* for logs */
	grpc_byte_buffer *req;
	struct api_reply reply;
	grpc_status_code status;
	grpc_slice status_msg;
	bool md_sent, status_sent;
	size_t sent;
	struct timespec t0;
	struct api_call *next; /* handler queue */
};

struct api_server {
	struct snapshotter *snap;
	char *socket;
	bool socket_bound;
	grpc_completion_queue *cq;
	grpc_server *server;
	int nrequests;          /* request_call kept outstanding */
	atomic_int outstanding; /* request_call not yet completed */
	pthread_t poller;
	bool poller_started;
	pthread_t *workers;
	int nworkers;
	struct api_tag t_shutdown;

	/* lock guards the handler queue, the flags below it and live. */
	pthread_mutex_t lock;
	pthread_cond_t work; /* queue not empty, or closing */
	pthread_cond_t done; /* shutdown_done or live changed */
	struct api_call *qhead, *qtail;
	bool closing;       /* handler threads exit once the queue is empty */
	bool stopping;      /* no new request_call */
	bool shutdown_done; /* the server's shutdown tag came back */
	size_t live;        /* api_call objects in existence */
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void call_free(struct api_call *c)
{
	struct api_server *srv = c->srv;
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->req)
		grpc_byte_buffer_destroy(c->req);
	api_reply_free(&c->reply);
	grpc_slice_unref(c->status_msg);
	free(c);
	pthread_mutex_lock(&srv->lock);
	srv->live--;
	pthread_cond_broadcast(&srv->done);
	pthread_mutex_unlock(&srv->lock);
}

static void call_unref(struct api_call *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1)
		call_free(c);
}

static void request_one(struct api_server *srv)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (!c) {
		rs_log(RS_LOG_ERROR, "api: out of memory waiting for calls");
		return;
	}
	c->srv = srv;
	c->t_new = (struct api_tag){TAG_NEW, c};
	c->t_recv = (struct api_tag){TAG_RECV, c};
	c->t_send = (struct api_tag){TAG_SEND, c};
	c->t_close = (struct api_tag){TAG_CLOSE, c};
	c->status_msg = grpc_empty_slice();
	atomic_init(&c->refs, 1);
	atomic_init(&c->cancelled, false);
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	pthread_mutex_lock(&srv->lock);
	srv->live++;
	pthread_mutex_unlock(&srv->lock);
	atomic_fetch_add(&srv->outstanding, 1);
	rs_hb_release(&c->t_new);
	grpc_call_error e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md,
						     srv->cq, srv->cq, &c->t_new);
	if (e != GRPC_CALL_OK) {
		atomic_fetch_sub(&srv->outstanding, 1);
		rs_log(RS_LOG_ERROR, "api: cannot wait for calls: %s",
		       grpc_call_error_to_string(e));
		call_free(c);
	}
}

/* Starts the next send batch: initial metadata with the first, one reply
 * message per batch, the status with the last message (or alone). */
static void send_next(struct api_call *c)
{
	grpc_op ops[3];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	if (c->sent < c->reply.n) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply.msgs[c->sent++];
	}
	if (c->sent == c->reply.n) {
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = c->status;
		if (!GRPC_SLICE_IS_EMPTY(c->status_msg))
			ops[n].data.send_status_from_server.status_details = &c->status_msg;
		n++;
		c->status_sent = true;
	}
	rs_hb_release(&c->t_send);
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL);
	if (e != GRPC_CALL_OK) {
		rs_log(RS_LOG_WARN, "api: %s: cannot send the reply: %s", c->method,
		       grpc_call_error_to_string(e));
		call_unref(c);
	}
}

/* Answers with a status and no message. */
static void fail_call(struct api_call *c, grpc_status_code code, const char *msg)
{
	api_reply_free(&c->reply);
	c->status = code;
	grpc_slice_unref(c->status_msg);
	c->status_msg = grpc_slice_from_copied_string(msg);
	api_utf8_sanitize((char *)GRPC_SLICE_START_PTR(c->status_msg),
			  GRPC_SLICE_LENGTH(c->status_msg));
	send_next(c);
}

static void handle(struct api_server *srv, struct api_call *c)
{
	if (atomic_load(&c->cancelled)) {
		rs_log(RS_LOG_DEBUG, "api: %s: cancelled by the client before it ran", c->method);
		call_unref(c);
		return;
	}
	grpc_byte_buffer_reader rd;
	if (!grpc_byte_buffer_reader_init(&rd, c->req)) {
		fail_call(c, GRPC_STATUS_INVALID_ARGUMENT, "cannot read the request message");
		return;
	}
	grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	ProtobufCMessage *req = protobuf_c_message_unpack(c->m->req, NULL, GRPC_SLICE_LENGTH(s),
							  GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	if (!req) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%s: the request is not a valid %s message", c->m->name,
			 c->m->req->name);
		rs_log(RS_LOG_WARN, "api: %s", msg);
		fail_call(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
		return;
	}
	struct rs_error err = {0};
	int rc = c->m->fn(srv->snap, req, &c->reply, &err);
	protobuf_c_message_free_unpacked(req, NULL);
	if (rc < 0) {
		int code = api_status_of(rc);
		if (!err.msg[0])
			snprintf(err.msg, sizeof(err.msg), "%s: %s", c->m->name, strerror(-rc));
		rs_log(code == GRPC_STATUS_UNKNOWN ? RS_LOG_WARN : RS_LOG_DEBUG,
		       "api: %s: %s (status %d, %.1f ms)", c->m->name, err.msg, code,
		       ms_since(&c->t0));
		fail_call(c, (grpc_status_code)code, err.msg);
		return;
	}
	rs_log(RS_LOG_DEBUG, "api: %s: ok, %zu message(s) (%.1f ms)", c->m->name, c->reply.n,
	       ms_since(&c->t0));
	c->status = GRPC_STATUS_OK;
	send_next(c);
}

static void *worker_main(void *arg)
{
	struct api_server *srv = arg;
	pthread_mutex_lock(&srv->lock);
	for (;;) {
		while (!srv->qhead && !srv->closing)
			pthread_cond_wait(&srv->work, &srv->lock);
		struct api_call *c = srv->qhead;
		if (!c)
			break;
		srv->qhead = c->next;
		if (!srv->qhead)
			srv->qtail = NULL;
		pthread_mutex_unlock(&srv->lock);
		handle(srv, c);
		pthread_mutex_lock(&srv->lock);
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

static void enqueue(struct api_server *srv, struct api_call *c)
{
	c->next = NULL;
	pthread_mutex_lock(&srv->lock);
	if (srv->qtail)
		srv->qtail->next = c;
	else
		srv->qhead = c;
	srv->qtail = c;
	pthread_cond_signal(&srv->work);
	pthread_mutex_unlock(&srv->lock);
}

static void on_new(struct api_server *srv, struct api_call *c, bool ok)
{
	atomic_fetch_sub(&srv->outstanding, 1);
	if (!ok) { /* the server is shutting down */
		call_free(c);
		return;
	}
	pthread_mutex_lock(&srv->lock);
	bool stopping = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	/* Tops up (also after an earlier request_one failed). */
	for (int k = atomic_load(&srv->outstanding); !stopping && k < srv->nrequests; k++)
		request_one(srv);

	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	const char *path = (const char *)GRPC_SLICE_START_PTR(c->details.method);
	size_t plen = GRPC_SLICE_LENGTH(c->details.method);
	snprintf(c->method, sizeof(c->method), "%.*s", (int)(plen < 95 ? plen : 95), path);
	c->m = api_method_find(path, plen);
	atomic_store(&c->refs, 2);

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->close_cancelled;
	rs_hb_release(&c->t_close);
	if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
		call_unref(c);

	if (!c->m) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown method %s", c->method);
		rs_log(RS_LOG_DEBUG, "api: %s", msg);
		fail_call(c, GRPC_STATUS_UNIMPLEMENTED, msg);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->req;
	rs_hb_release(&c->t_recv);
	if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK)
		call_unref(c);
}

static void on_recv(struct api_server *srv, struct api_call *c, bool ok)
{
	if (!ok) { /* the call broke (cancelled, too large, connection lost) */
		call_unref(c);
		return;
	}
	if (!c->req) {
		fail_call(c, GRPC_STATUS_INVALID_ARGUMENT,
			  "the client sent no request message (unary method)");
		return;
	}
	enqueue(srv, c);
}

static void on_send(struct api_call *c, bool ok)
{
	if (!ok || c->status_sent) {
		call_unref(c);
		return;
	}
	send_next(c);
}

static void *poll_main(void *arg)
{
	struct api_server *srv = arg;
	for (;;) {
		grpc_event ev =
		    grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct api_tag *t = ev.tag;
		rs_hb_acquire(t);
		switch (t->kind) {
		case TAG_NEW:
			on_new(srv, t->call, ev.success);
			break;
		case TAG_RECV:
			on_recv(srv, t->call, ev.success);
			break;
		case TAG_SEND:
			on_send(t->call, ev.success);
			break;
		case TAG_CLOSE:
			if (t->call->close_cancelled)
				atomic_store(&t->call->cancelled, true);
			call_unref(t->call);
			break;
		case TAG_SHUTDOWN:
			pthread_mutex_lock(&srv->lock);
			srv->shutdown_done = true;
			pthread_cond_broadcast(&srv->done);
			pthread_mutex_unlock(&srv->lock);
			break;
		}
	}
	return NULL;
}

/* mkdir -p for the socket's directory (new directories are 0700). */
static int make_parent_dirs(const char *path, struct rs_error *err)
{
	cleanup_free char *p = strdup(path);
	if (!p)
		return rs_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(p, '/');
	if (!slash || slash == p)
		return 0;
	*slash = '\0';
	for (char *q = p + 1;; q++) {
		if (*q != '/' && *q != '\0')
			continue;
		char c = *q;
		*q = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return rs_err(err, -errno, "socket directory %s: %s", p, strerror(errno));
		*q = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
		return rs_err(err, -ENOTDIR, "socket directory %s: not a directory", p);
	return 0;
}

/* Removes a socket file nobody listens on; refuses to take over a live one
 * (gRPC itself would unlink it and bind over it). */
static int clear_stale_socket(const char *path, struct rs_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return rs_err(err, -errno, "socket %s: %s", path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return rs_err(err, -EEXIST, "socket %s: a file that is not a socket is in the way",
			      path);
	cleanup_fd int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rs_err(err, -errno, "socket: %s", strerror(errno));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return rs_err(err, -EADDRINUSE, "socket %s: another server is listening on it",
			      path);
	if (errno != ECONNREFUSED)
		return rs_err(err, -errno, "socket %s: %s", path, strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return rs_err(err, -errno, "removing stale socket %s: %s", path, strerror(errno));
	rs_log(RS_LOG_INFO, "api: removed stale socket %s", path);
	return 0;
}

static void stop_workers(struct api_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->closing = true;
	pthread_cond_broadcast(&srv->work);
	pthread_mutex_unlock(&srv->lock);
	for (int k = 0; k < srv->nworkers; k++)
		pthread_join(srv->workers[k], NULL);
	srv->nworkers = 0;
}

/* Shuts the completion queue down and waits until it is drained. */
static void stop_queue(struct api_server *srv)
{
	grpc_completion_queue_shutdown(srv->cq);
	if (srv->poller_started) {
		pthread_join(srv->poller, NULL);
		srv->poller_started = false;
	} else {
		grpc_event ev;
		do
			ev = grpc_completion_queue_next(srv->cq,
							gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		while (ev.type != GRPC_QUEUE_SHUTDOWN);
	}
}

static void server_free(struct api_server *srv)
{
	if (srv->cq)
		grpc_completion_queue_destroy(srv->cq);
	if (srv->socket_bound && unlink(srv->socket) < 0 && errno != ENOENT)
		rs_log(RS_LOG_WARN, "api: removing socket %s: %s", srv->socket, strerror(errno));
	free(srv->workers);
	free(srv->socket);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->work);
	pthread_cond_destroy(&srv->done);
	free(srv);
	grpc_shutdown();
}

/* Teardown of a start that failed before grpc_server_start. */
static int start_failed(struct api_server *srv, int rc)
{
	stop_workers(srv);
	if (srv->server)
		grpc_server_destroy(srv->server);
	stop_queue(srv);
	server_free(srv);
	return rc;
}

int api_server_start(const struct api_opts *o, struct snapshotter *s, struct api_server **out,
		     struct rs_error *err)
{
	*out = NULL;
	if (!o || !o->socket || !*o->socket)
		return rs_err(err, -EINVAL, "api: no socket path");
	if (strlen(o->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return rs_err(err, -ENAMETOOLONG, "api: socket path %s is too long (max %zu bytes)",
			      o->socket, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	int rc = make_parent_dirs(o->socket, err);
	if (rc == 0)
		rc = clear_stale_socket(o->socket, err);
	if (rc < 0) {
		rs_error_prefix(err, "api");
		return rc;
	}

	struct api_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return rs_err(err, -ENOMEM, "api: out of memory");
	srv->snap = s;
	srv->socket = strdup(o->socket);
	int nthreads = o->threads > 0 ? o->threads : 8;
	srv->workers = calloc((size_t)nthreads, sizeof(*srv->workers));
	srv->t_shutdown = (struct api_tag){TAG_SHUTDOWN, NULL};
	srv->nrequests = nthreads * 2 < 16 ? 16 : nthreads * 2;
	atomic_init(&srv->outstanding, 0);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->work, NULL);
	pthread_cond_init(&srv->done, NULL);
	grpc_init();
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	if (!srv->socket || !srv->workers)
		return start_failed(srv, rs_err(err, -ENOMEM, "api: out of memory"));

	for (int k = 0; k < nthreads; k++) {
		rc = pthread_create(&srv->workers[k], NULL, worker_main, srv);
		if (rc)
			return start_failed(
			    srv,
			    rs_err(err, -rc, "api: starting handler threads: %s", strerror(rc)));
		srv->nworkers++;
	}
	rc = pthread_create(&srv->poller, NULL, poll_main, srv);
	if (rc)
		return start_failed(
		    srv, rs_err(err, -rc, "api: starting the gRPC thread: %s", strerror(rc)));
	srv->poller_started = true;

	grpc_arg args[] = {
	    {.type = GRPC_ARG_INTEGER,
	     .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	     .value.integer = API_MAX_RECV},
	    {.type = GRPC_ARG_INTEGER,
	     .key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS,
	     .value.integer = API_MAX_STREAMS},
	};
	grpc_channel_args cargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
	srv->server = grpc_server_create(&cargs, NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	char addr[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	snprintf(addr, sizeof(addr), "unix:%s", srv->socket);
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	/* gRPC binds here: with the umask set first the socket is born 0660, so
	 * there is no moment in which another user may connect (a chmod after
	 * the bind left one). Nothing else creates files while the daemon starts
	 * its server, and what does passes its own stricter mode. */
	mode_t old_mask = umask(0117);
	int port = grpc_server_add_http2_port(srv->server, addr, creds);
	umask(old_mask);
	grpc_server_credentials_release(creds);
	if (port == 0)
		return start_failed(srv, rs_err(err, -EADDRNOTAVAIL,
						"api: cannot listen on %s (see gRPC's log above)",
						srv->socket));
	srv->socket_bound = true;

	grpc_server_start(srv->server);
	for (int k = 0; k < srv->nrequests; k++)
		request_one(srv);
	rs_log(RS_LOG_INFO, "api: serving containerd's snapshots API on %s (%d handler threads)",
	       srv->socket, nthreads);
	*out = srv;
	return 0;
}

void api_server_stop(struct api_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	rs_hb_release(&srv->t_shutdown);
	grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);

	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += API_STOP_GRACE_S;
	bool cancelled = false;
	pthread_mutex_lock(&srv->lock);
	while (!srv->shutdown_done || srv->live > 0) {
		if (cancelled) {
			pthread_cond_wait(&srv->done, &srv->lock);
			continue;
		}
		if (pthread_cond_timedwait(&srv->done, &srv->lock, &deadline) == ETIMEDOUT) {
			rs_log(RS_LOG_WARN, "api: %zu call(s) still running after %d s: cancelling",
			       srv->live, API_STOP_GRACE_S);
			pthread_mutex_unlock(&srv->lock);
			grpc_server_cancel_all_calls(srv->server);
			pthread_mutex_lock(&srv->lock);
			cancelled = true;
		}
	}
	pthread_mutex_unlock(&srv->lock);

	grpc_server_destroy(srv->server);
	stop_queue(srv);
	stop_workers(srv);
	rs_log(RS_LOG_INFO, "api: stopped serving on %s", srv->socket);
	server_free(srv);
}
