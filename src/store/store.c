/* SPDX-License-Identifier: Apache-2.0 */
/* The store's FUSE connection and its node table: a few workers, each
 * polling the connection and a stop eventfd, so that a stop never waits on a
 * blocked read; nodes live as long as the store (a store holds a handful of
 * images, and containers/storage keeps looking the same paths up). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "store_internal.h"

struct store_node *store_node_get(struct store *s, uint64_t id)
{
	return id >= 1 && id <= s->nnodes ? &s->nodes[id - 1] : NULL;
}

uint64_t store_child(struct store *s, uint64_t parent, const char *name)
{
	for (uint32_t i = 0; i < s->nnodes; i++)
		if (s->nodes[i].parent == parent && s->nodes[i].name &&
		    strcmp(s->nodes[i].name, name) == 0)
			return (uint64_t)i + 1;
	return 0;
}

uint64_t store_node_add(struct store *s, enum store_kind kind, uint64_t parent, const char *name,
			struct store_ref *ref, struct store_layer *layer)
{
	if (s->nnodes >= STORE_MAX_NODES)
		return 0;
	if (s->nnodes == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 64;
		struct store_node *n = realloc(s->nodes, cap * sizeof(*n));
		if (!n)
			return 0;
		s->nodes = n;
		s->cap = cap;
	}
	char *copy = NULL;
	if (name && !(copy = strdup(name)))
		return 0;
	s->nodes[s->nnodes] = (struct store_node){
	    .kind = kind, .parent = parent, .name = copy, .ref = ref, .layer = layer};
	return ++s->nnodes;
}

int store_ref_decode(const char *name, char *out, size_t cap)
{
	size_t len = strlen(name);
	/* The decoded form is 3/4 of the name: anything longer cannot fit. */
	if (len == 0 || len % 4 != 0 || len / 4 * 3 >= cap)
		return -ENOENT;
	ssize_t n = rs_base64_decode(name, len, (uint8_t *)out, cap - 1);
	if (n <= 0)
		return -ENOENT;
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)out[i] <= ' ' || (unsigned char)out[i] >= 0x7f)
			return -ENOENT;
	out[n] = '\0';
	return 0;
}

int store_info_json(const struct store_layer_info *i, struct rs_buf *out)
{
	uint8_t sum[RS_SHA256_LEN];
	if (rs_digest_parse(i->digest, strlen(i->digest), sum) < 0 ||
	    rs_digest_parse(i->diff_id, strlen(i->diff_id), sum) < 0 || i->size < 0)
		return -EINVAL;
	/* Digests are checked and numbers are numbers: nothing to escape. */
	int r = rs_buf_printf(out,
			      "{\"compressed-diff-digest\":\"%s\",\"compressed-size\":%lld,"
			      "\"diff-digest\":\"%s\"",
			      i->digest, (long long)i->size, i->diff_id);
	if (r == 0 && i->uncompressed_size >= 0)
		r = rs_buf_printf(out, ",\"diff-size\":%lld", (long long)i->uncompressed_size);
	if (r == 0)
		r = rs_buf_printf(out, ",\"compression\":%d}\n", i->zstd ? 4 : 2);
	return r;
}

static void *worker_main(void *arg)
{
	struct store *s = arg;
	int r = rfuse_session_serve(s->se, s->stop_fd);
	if (r < 0)
		rs_log(RS_LOG_ERROR, "store: serving FUSE requests: %s", strerror(-r));
	return NULL;
}

static int make_dir(const char *path, struct rs_error *err)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

int store_start(const struct store_opts *o, struct store **out, struct rs_error *err)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	s->o = *o;
	s->fuse_fd = s->stop_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->resolve_lock, NULL);
	int r = -ENOMEM;
	s->mountpoint = strdup(o->mountpoint);
	s->root = strdup(o->root);
	if (!s->mountpoint || !s->root || asprintf(&s->mnt_dir, "%s/mnt", o->root) < 0) {
		s->mnt_dir = NULL;
		rs_err(err, r, "out of memory");
		goto fail;
	}
	if ((r = make_dir(s->root, err)) < 0 || (r = make_dir(s->mnt_dir, err)) < 0)
		goto fail;
	if (store_node_add(s, STORE_ROOT, 0, NULL, NULL, NULL) != FUSE_ROOT_ID) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto fail;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		r = rs_err(err, -errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	s->fuse_fd = rfuse_mount_with(s->mountpoint, "stargz-store", "stargz-store",
				      RFUSE_MOUNT_WRITABLE, err);
	if (s->fuse_fd < 0) {
		r = s->fuse_fd;
		goto fail;
	}
	int fl = fcntl(s->fuse_fd, F_GETFL);
	if (fl < 0 || fcntl(s->fuse_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = rs_err(err, -errno, "making the FUSE fd non-blocking: %s", strerror(errno));
		goto fail;
	}
	struct rfuse_wishes w = {.async_read = true, .parallel_dirops = true};
	r = rfuse_session_new(s->fuse_fd, &store_ops, s, &w, &s->se, err);
	if (r < 0)
		goto fail;
	int want = o->workers > 0 ? o->workers : 4;
	s->workers = calloc((size_t)want, sizeof(pthread_t));
	if (!s->workers) {
		r = rs_err(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (; s->nworkers < want; s->nworkers++) {
		r = -pthread_create(&s->workers[s->nworkers], NULL, worker_main, s);
		if (r < 0) {
			rs_err(err, r, "starting store workers: %s", strerror(-r));
			goto fail;
		}
	}
	rs_log(RS_LOG_INFO, "store: serving %s (layers under %s)", s->mountpoint, s->mnt_dir);
	*out = s;
	return 0;
fail:
	store_stop(s);
	return r;
}

void store_stop(struct store *s)
{
	if (!s)
		return;
	if (s->stop_fd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(s->stop_fd, &one, sizeof(one));
		(void)w;
	}
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	free(s->workers);
	if (s->fuse_fd >= 0) {
		struct rs_error e = {0};
		if (rfuse_unmount(s->mountpoint, &e) < 0)
			rs_log(RS_LOG_WARN, "store: %s", e.msg);
		close(s->fuse_fd);
	}
	rfuse_session_free(s->se);
	store_mounts_close(s);
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct store_node *n = &s->nodes[i];
		if (n->kind == STORE_REF)
			store_ref_free(n->ref);
		else if (n->kind == STORE_LAYER)
			store_layer_free(n->layer);
		free(n->name);
	}
	free(s->nodes);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s->mountpoint);
	free(s->root);
	free(s->mnt_dir);
	pthread_mutex_destroy(&s->resolve_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
