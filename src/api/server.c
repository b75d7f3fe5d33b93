// SPDX-License-Identifier: Apache-2.0
/* The gRPC server: one thread polls the completion queue and moves calls
 * along; a fixed pool of handler threads runs the (blocking) snapshot calls.
 *
 * A call's life: request_call completes (NEW) -> RECV_MESSAGE (RECV) -> a
 * handler decodes it, runs the method and starts sending (SEND, one batch per
 * reply message, the status with the last) -> done. A RECV_CLOSE_ON_SERVER
 * batch (CLOSE) runs beside it and tells whether the client went away. The
 * call is freed when both the main flow and CLOSE have finished.
 *
 * Connections: a thread of ours accepts them from the listening socket (see
 * listen.c) and hands each to gRPC (grpc_server_add_channel_from_fd, which
 * gives it the server's channel args). Each connection is closed gracefully
 * at an age limit: that GOAWAY is how a stop moves clients off without a
 * failed call (see api_server_stop). */
#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "util/tsan.h"

/* How long api_server_stop lets calls in progress finish before it cancels them. */
#define API_STOP_GRACE_S 10
/* Calls accepted at once per connection. */
#define API_MAX_STREAMS 1024
/* A connection's age limit: then gRPC sends it a GOAWAY (with +-10% jitter)
 * and closes it once its calls are done; the client moves to a new one with
 * no call failing (streams it sent before it saw the GOAWAY are still
 * served). A stop that leaves the socket to a successor waits up to this
 * long for its connections to go, rather than shut the server down under
 * them: gRPC core fails (CANCELLED) every call that arrives after its
 * shutdown began, and a busy client always has one on its way. */
#define API_CONN_AGE_MS 2000
/* Beyond the age limit's jitter: time for the GOAWAY to reach the client. */
#define API_DRAIN_MARGIN_MS 500

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

/* A connection handed to gRPC, known by its socket's inode: gRPC closes the
 * fd when it is done with it, and the number may then be reused. */
struct api_conn {
	int fd;
	ino_t ino;
};

struct api_server {
	struct snapshotter *snap;
	char *socket;
	int listen_fd; /* borrowed */
	grpc_completion_queue *cq;
	grpc_server *server;
	grpc_server_credentials *creds; /* for every connection accepted */
	pthread_t acceptor;
	bool acceptor_started;
	int wake_fd; /* eventfd: the acceptor stops */
	/* Owned by the acceptor while it runs, by api_server_stop after. */
	struct api_conn *conns;
	size_t n_conns, cap_conns;
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

/* Whether a connection handed to gRPC is still open. */
static bool conn_open(const struct api_conn *c)
{
	struct stat st;
	return fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == c->ino;
}

/* Forgets the connections gRPC has closed; returns how many are left. */
static size_t prune_conns(struct api_server *srv)
{
	size_t k = 0;
	for (size_t i = 0; i < srv->n_conns; i++)
		if (conn_open(&srv->conns[i]))
			srv->conns[k++] = srv->conns[i];
	srv->n_conns = k;
	return k;
}

static void track_conn(struct api_server *srv, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return;
	prune_conns(srv);
	if (srv->n_conns == srv->cap_conns) {
		size_t cap = srv->cap_conns ? 2 * srv->cap_conns : 16;
		struct api_conn *v = reallocarray(srv->conns, cap, sizeof(*v));
		if (!v)
			return; /* not waited for at a stop: only a drain cut short */
		srv->conns = v;
		srv->cap_conns = cap;
	}
	srv->conns[srv->n_conns++] = (struct api_conn){fd, st.st_ino};
}

/* Waits up to ms on the wake fd: true when woken. */
static bool wait_wake(struct api_server *srv, int ms)
{
	struct pollfd p = {.fd = srv->wake_fd, .events = POLLIN};
	return poll(&p, 1, ms) > 0;
}

static void *accept_main(void *arg)
{
	struct api_server *srv = arg;
	int64_t last_warn = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = srv->listen_fd, .events = POLLIN},
				      {.fd = srv->wake_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			break;
		/* Non-blocking: another daemon may accept the same connection
		 * first (a successor shares the socket). */
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED)
				continue;
			/* Out of fds or memory: the connection waits in the
			 * backlog; try again soon, not in a busy loop. */
			if (rs_monotonic_ms() - last_warn > 10000) {
				rs_log(RS_LOG_WARN, "api: accept on %s: %s", srv->socket,
				       strerror(e));
				last_warn = rs_monotonic_ms();
			}
			if (wait_wake(srv, 100))
				break;
			continue;
		}
		track_conn(srv, fd);
		rs_log(RS_LOG_DEBUG, "api: connection accepted (fd %d)", fd);
		grpc_server_add_channel_from_fd(srv->server, fd, srv->creds);
	}
	return NULL;
}

static void stop_accepting(struct api_server *srv)
{
	if (!srv->acceptor_started)
		return;
	uint64_t one = 1;
	ssize_t w = write(srv->wake_fd, &one, sizeof(one));
	(void)w;
	pthread_join(srv->acceptor, NULL);
	srv->acceptor_started = false;
}

/* After stop_accepting: waits until every connection accepted has closed,
 * or until each must have had its GOAWAY. */
static void drain_conns(struct api_server *srv)
{
	int64_t t0 = rs_monotonic_ms();
	int64_t deadline = t0 + API_CONN_AGE_MS * 11 / 10 + API_DRAIN_MARGIN_MS;
	size_t left;
	while ((left = prune_conns(srv)) > 0 && rs_monotonic_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (left > 0)
		rs_log(RS_LOG_INFO,
		       "api: %zu connection(s) still open after %lld ms (calls in progress): "
		       "stopping",
		       left, (long long)(rs_monotonic_ms() - t0));
	else
		rs_log(RS_LOG_DEBUG, "api: connections closed in %lld ms",
		       (long long)(rs_monotonic_ms() - t0));
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
	if (srv->creds)
		grpc_server_credentials_release(srv->creds);
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	free(srv->conns);
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
	if (!o || !o->socket || !*o->socket || o->listen_fd < 0)
		return rs_err(err, -EINVAL, "api: no listening socket");

	struct api_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return rs_err(err, -ENOMEM, "api: out of memory");
	srv->wake_fd = -1;
	srv->snap = s;
	srv->socket = strdup(o->socket);
	srv->listen_fd = o->listen_fd;
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
	srv->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (srv->wake_fd < 0)
		return start_failed(srv, rs_err(err, -errno, "api: eventfd: %s", strerror(errno)));

	int rc;
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

	/* Every connection gets these (grpc_server_add_channel_from_fd builds
	 * its channel from the server's args): the message size limit is its
	 * message_size filter, the streams limit its SETTINGS, the age limit
	 * its max_age filter. No grace after the age: a long Prepare finishes
	 * on the old connection. */
	grpc_arg args[] = {
	    {.type = GRPC_ARG_INTEGER,
	     .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	     .value.integer = API_MAX_RECV},
	    {.type = GRPC_ARG_INTEGER,
	     .key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS,
	     .value.integer = API_MAX_STREAMS},
	    {.type = GRPC_ARG_INTEGER,
	     .key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_MS,
	     .value.integer = API_CONN_AGE_MS},
	};
	grpc_channel_args cargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
	srv->server = grpc_server_create(&cargs, NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	srv->creds = grpc_insecure_server_credentials_create();
	grpc_server_start(srv->server);
	for (int k = 0; k < srv->nrequests; k++)
		request_one(srv);
	rc = pthread_create(&srv->acceptor, NULL, accept_main, srv);
	if (rc) {
		api_server_stop(srv, false);
		return rs_err(err, -rc, "api: starting the accept thread: %s", strerror(rc));
	}
	srv->acceptor_started = true;
	rs_log(RS_LOG_INFO, "api: serving containerd's snapshots API on %s (%d handler threads)",
	       srv->socket, nthreads);
	*out = srv;
	return 0;
}

void api_server_stop(struct api_server *srv, bool drain)
{
	if (!srv)
		return;
	stop_accepting(srv);
	if (drain)
		drain_conns(srv);
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
