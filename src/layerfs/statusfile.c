// SPDX-License-Identifier: Apache-2.0
/* Open handles of the status file: the status as it was at open, so that a
 * reader reading in pieces sees one consistent document. A handle is an id,
 * never a pointer: the kernel hands back whatever it was given, and after a
 * takeover it hands back the handles of a process that is gone. An id this
 * process did not give finds nothing and is served a fresh snapshot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "layerfs_internal.h"

struct lfs_status_handle {
	struct lfs_status_handle *next;
	uint64_t id;
	struct rs_buf json;
};

void lfs_status_handles_init(struct lfs_layer *l)
{
	pthread_mutex_init(&l->status_lock, NULL);
	uint64_t base = 0;
	if (getrandom(&base, sizeof(base), GRND_NONBLOCK) != sizeof(base))
		base = (uint64_t)lfs_now_ms() * 2654435761u;
	/* Far from the small handles of regular files. */
	l->status_next_id = base | (1ull << 62);
}

void lfs_status_handles_free(struct lfs_layer *l)
{
	while (l->status_handles) {
		struct lfs_status_handle *h = l->status_handles;
		l->status_handles = h->next;
		rs_buf_free(&h->json);
		free(h);
	}
	pthread_mutex_destroy(&l->status_lock);
}

static int snapshot(struct lfs_layer *l, struct rs_buf *out)
{
	struct lfs_status s;
	lfs_layer_status(l, &s);
	return lfs_status_json(&s, out);
}

int lfs_status_open(struct lfs_layer *l, uint64_t *fh)
{
	struct lfs_status_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (snapshot(l, &h->json) < 0) {
		rs_buf_free(&h->json);
		free(h);
		return -ENOMEM;
	}
	pthread_mutex_lock(&l->status_lock);
	h->id = l->status_next_id++;
	h->next = l->status_handles;
	l->status_handles = h;
	pthread_mutex_unlock(&l->status_lock);
	*fh = h->id;
	return 0;
}

/* A copy of json[off, off + size): once the reply is out the reader may
 * close, and the release may free the snapshot while this one returns. */
static char *slice(const struct rs_buf *json, uint64_t off, uint32_t size, size_t *n)
{
	*n = 0;
	if (off < json->len) {
		*n = json->len - (size_t)off;
		if (*n > size)
			*n = size;
	}
	char *copy = malloc(*n ? *n : 1);
	if (copy && *n)
		memcpy(copy, json->data + off, *n);
	return copy;
}

void lfs_status_read(struct lfs_layer *l, struct rfuse_req *req, uint64_t fh, uint64_t off,
		     uint32_t size)
{
	size_t n = 0;
	char *copy = NULL;
	bool found = false;
	pthread_mutex_lock(&l->status_lock);
	for (struct lfs_status_handle *h = l->status_handles; h; h = h->next)
		if (h->id == fh) {
			copy = slice(&h->json, off, size, &n);
			found = true;
			break;
		}
	pthread_mutex_unlock(&l->status_lock);
	if (!found) {
		struct rs_buf fresh = {0};
		if (snapshot(l, &fresh) == 0)
			copy = slice(&fresh, off, size, &n);
		rs_buf_free(&fresh);
	}
	if (!copy)
		rfuse_reply_err(req, ENOMEM);
	else
		rfuse_reply_buf(req, copy, n);
	free(copy);
}

void lfs_status_release(struct lfs_layer *l, uint64_t fh)
{
	pthread_mutex_lock(&l->status_lock);
	for (struct lfs_status_handle **pp = &l->status_handles; *pp; pp = &(*pp)->next)
		if ((*pp)->id == fh) {
			struct lfs_status_handle *h = *pp;
			*pp = h->next;
			rs_buf_free(&h->json);
			free(h);
			break;
		}
	pthread_mutex_unlock(&l->status_lock);
}
