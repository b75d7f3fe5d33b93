// SPDX-License-Identifier: Apache-2.0
/* Serving a connection another process opened and initialised: the INIT
 * outcome written down as a line of text (kept beside the mount, read back
 * by the next process), a session that starts serving with it, and the
 * notification that makes the kernel send again the requests the old
 * process had read but not answered. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rfuse_internal.h"

#define GRANTED_VERSION "rfuse-granted-1"

enum {
	B_ASYNC_READ = 1 << 0,
	B_PASSTHROUGH = 1 << 1,
	B_READDIRPLUS = 1 << 2,
	B_READDIR_CACHE = 1 << 3,
	B_KEEP_CACHE = 1 << 4,
	B_PARALLEL_DIROPS = 1 << 5,
	B_CACHE_SYMLINKS = 1 << 6,
	B_NO_OPENDIR = 1 << 7,
	B_HAS_RESEND = 1 << 8,
	B_ALL = (1 << 9) - 1,
};

int rfuse_granted_format(const struct rfuse_granted *g, char *buf, size_t cap)
{
	unsigned bits =
	    (g->async_read ? B_ASYNC_READ : 0) | (g->passthrough ? B_PASSTHROUGH : 0) |
	    (g->readdirplus ? B_READDIRPLUS : 0) | (g->readdir_cache ? B_READDIR_CACHE : 0) |
	    (g->keep_cache ? B_KEEP_CACHE : 0) | (g->parallel_dirops ? B_PARALLEL_DIROPS : 0) |
	    (g->cache_symlinks ? B_CACHE_SYMLINKS : 0) | (g->no_opendir ? B_NO_OPENDIR : 0) |
	    (g->has_resend ? B_HAS_RESEND : 0);
	int n = snprintf(buf, cap,
			 GRANTED_VERSION " %" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32
					 " %" PRIu32 " %u %" PRIu64 " %" PRIu64 "\n",
			 g->major, g->minor, g->max_readahead, g->max_write, g->max_pages,
			 g->max_stack_depth, bits, g->kernel_flags, g->reply_flags);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int rfuse_granted_parse(const char *text, struct rfuse_granted *g, struct rs_error *err)
{
	char tag[32];
	unsigned bits;
	int end = -1;
	struct rfuse_granted v = {0};
	if (sscanf(text,
		   "%31s %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32
		   " %u %" SCNu64 " %" SCNu64 "%n",
		   tag, &v.major, &v.minor, &v.max_readahead, &v.max_write, &v.max_pages,
		   &v.max_stack_depth, &bits, &v.kernel_flags, &v.reply_flags, &end) != 10 ||
	    end < 0 || strcmp(tag, GRANTED_VERSION) != 0)
		return rs_err(err, -EINVAL, "fuse: not a saved INIT outcome");
	const char *rest = text + end;
	rest += strspn(rest, " \n");
	if (*rest)
		return rs_err(err, -EINVAL, "fuse: saved INIT outcome: trailing bytes");
	/* The sizes steer our buffers: only what an INIT of ours could give. */
	if (v.major != FUSE_KERNEL_VERSION || v.minor < 12 || v.max_write < 4096 ||
	    v.max_write > (16u << 20) || v.max_pages > 65535 ||
	    v.max_stack_depth > RFUSE_MAX_STACK_DEPTH || (bits & ~(unsigned)B_ALL))
		return rs_err(err, -EINVAL, "fuse: saved INIT outcome out of range");
	v.async_read = bits & B_ASYNC_READ;
	v.passthrough = bits & B_PASSTHROUGH;
	v.readdirplus = bits & B_READDIRPLUS;
	v.readdir_cache = bits & B_READDIR_CACHE;
	v.keep_cache = bits & B_KEEP_CACHE;
	v.parallel_dirops = bits & B_PARALLEL_DIROPS;
	v.cache_symlinks = bits & B_CACHE_SYMLINKS;
	v.no_opendir = bits & B_NO_OPENDIR;
	v.has_resend = bits & B_HAS_RESEND;
	*g = v;
	return 0;
}

int rfuse_session_adopt(int fd, const struct rfuse_ops *ops, void *ud, const struct rfuse_wishes *w,
			const struct rfuse_granted *g, struct rfuse_session **out,
			struct rs_error *err)
{
	struct rfuse_session *s;
	int r = rfuse_session_new(fd, ops, ud, w, &s, err);
	if (r < 0)
		return r;
	s->granted = *g;
	/* The kernel sizes its requests by what was granted, not by our wishes. */
	if (g->max_write > s->wishes.max_write)
		s->wishes.max_write = g->max_write;
	if (ops->init)
		ops->init(ud, &s->granted);
	atomic_store_explicit(&s->state, RFUSE_SERVING, memory_order_release);
	*out = s;
	return 0;
}
