// SPDX-License-Identifier: Apache-2.0
/* fdstore: the API; picks the back end and holds the lock around it. */
#include <errno.h>
#include <string.h>

#include "fdstore_internal.h"

int fdstore_check_name(const char *name)
{
	size_t i = 0;
	for (; name[i]; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '+' || c == '-';
		if (!ok || i >= FDSTORE_NAME_MAX)
			return -EINVAL;
	}
	return i > 0 ? 0 : -EINVAL;
}

static void store_free(struct fdstore *s)
{
	fdt_clear(&s->table);
	free(s->h.socket_path);
	free(s->h.program);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int fdstore_open(const struct fdstore_opts *o, struct fdstore **out,
		 struct fdstore_entry **restored, size_t *n_restored, struct rs_error *err)
{
	*out = NULL;
	*restored = NULL;
	*n_restored = 0;
	struct fdstore *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "fd store: out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->sd.sock = -1;
	s->h.conn = -1;
	s->h.epfd = -1;
	const char *notify = getenv("NOTIFY_SOCKET");
	int rc;
	if (notify && *notify) {
		s->kind = FDSTORE_SYSTEMD;
		rc = sd_store_open(s, notify, restored, n_restored, err);
		if (rc < 0)
			sd_store_close(s);
	} else {
		s->kind = FDSTORE_HOLDER;
		rc = hc_open(s, o, restored, n_restored, err);
		if (rc < 0)
			hc_close(s);
	}
	if (rc < 0) {
		store_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

const char *fdstore_kind(const struct fdstore *s)
{
	return s->kind == FDSTORE_SYSTEMD ? "systemd" : "holder";
}

int fdstore_add(struct fdstore *s, const char *name, int fd, struct rs_error *err)
{
	if (fdstore_check_name(name) < 0)
		return rs_err(err, -EINVAL,
			      "fd store: name '%.64s': not 1..%d characters of [A-Za-z0-9._+-]",
			      name, FDSTORE_NAME_MAX);
	if (fd < 0)
		return rs_err(err, -EBADF, "fd store: %s: no fd", name);
	pthread_mutex_lock(&s->lock);
	int rc =
	    s->kind == FDSTORE_SYSTEMD ? sd_store_add(s, name, fd, err) : hc_add(s, name, fd, err);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int fdstore_remove(struct fdstore *s, const char *name, struct rs_error *err)
{
	if (fdstore_check_name(name) < 0)
		return rs_err(err, -EINVAL, "fd store: name '%.64s': not a valid name", name);
	pthread_mutex_lock(&s->lock);
	int rc =
	    s->kind == FDSTORE_SYSTEMD ? sd_store_remove(s, name, err) : hc_remove(s, name, err);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int fdstore_poll_fd(const struct fdstore *s)
{
	/* epfd is set once at open and never changes: no lock needed. */
	return s->kind == FDSTORE_HOLDER ? s->h.epfd : -1;
}

int fdstore_check(struct fdstore *s, struct rs_error *err)
{
	if (s->kind == FDSTORE_SYSTEMD)
		return 0;
	pthread_mutex_lock(&s->lock);
	int rc = hc_check(s, err);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void fdstore_notify_ready(struct fdstore *s)
{
	if (s->kind != FDSTORE_SYSTEMD)
		return;
	pthread_mutex_lock(&s->lock);
	sd_store_notify(s, "READY=1");
	pthread_mutex_unlock(&s->lock);
}

void fdstore_notify_stopping(struct fdstore *s)
{
	if (s->kind != FDSTORE_SYSTEMD)
		return;
	pthread_mutex_lock(&s->lock);
	sd_store_notify(s, "STOPPING=1");
	pthread_mutex_unlock(&s->lock);
}

void fdstore_close(struct fdstore *s)
{
	if (!s)
		return;
	if (s->kind == FDSTORE_SYSTEMD)
		sd_store_close(s);
	else
		hc_close(s);
	store_free(s);
}

void fdstore_stop(struct fdstore *s)
{
	if (!s)
		return;
	if (s->kind == FDSTORE_SYSTEMD)
		sd_store_stop(s);
	else
		hc_stop(s);
	store_free(s);
}

pid_t fdstore_holder_pid(struct fdstore *s)
{
	pthread_mutex_lock(&s->lock);
	pid_t pid = s->kind == FDSTORE_HOLDER ? s->h.pid : 0;
	pthread_mutex_unlock(&s->lock);
	return pid;
}
