/* SPDX-License-Identifier: Apache-2.0 */
/* INIT negotiation: a pure function of the kernel's offer and our wishes, so
 * every kernel (old minor, no flags2, no passthrough) can be tested without
 * one. A flag the kernel does not offer means the feature is off. */
#include <errno.h>
#include <string.h>

#include "rfuse.h"

#define PAGE 4096u

static uint32_t clamp_u32(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

int rfuse_negotiate(const void *in, size_t in_len, const struct rfuse_wishes *w,
		    struct rfuse_init_out *out, size_t *out_len, struct rfuse_granted *g,
		    struct rs_error *err)
{
	const unsigned char *p = in;
	memset(out, 0, sizeof(*out));
	memset(g, 0, sizeof(*g));
	*out_len = 0;
	if (in_len < 8)
		return rs_err(err, -EINVAL, "FUSE INIT: %zu bytes, too short for a version",
			      in_len);
	uint32_t major = get_u32(p), kminor = get_u32(p + 4);
	if (major < FUSE_KERNEL_VERSION)
		return rs_err(err, -EPROTO, "FUSE INIT: kernel protocol %u.%u is too old", major,
			      kminor);
	if (major > FUSE_KERNEL_VERSION) {
		/* The kernel retries with our major after this short answer. */
		out->major = FUSE_KERNEL_VERSION;
		out->minor = RFUSE_MINOR_MAX;
		*out_len = RFUSE_COMPAT_INIT_OUT_SIZE;
		return 1;
	}
	if (in_len < offsetof(struct fuse_init_in, flags2))
		return rs_err(err, -EINVAL, "FUSE INIT: %zu bytes, too short for 7.%u", in_len,
			      kminor);
	uint32_t minor = kminor < RFUSE_MINOR_MAX ? kminor : RFUSE_MINOR_MAX;
	uint32_t kreadahead = get_u32(p + offsetof(struct fuse_init_in, max_readahead));
	uint64_t kflags = get_u32(p + offsetof(struct fuse_init_in, flags));
	/* flags2 exists only from 7.36 and only when the kernel says so. */
	if ((kflags & FUSE_INIT_EXT) && minor >= 36 &&
	    in_len >= offsetof(struct fuse_init_in, flags2) + sizeof(uint32_t))
		kflags |= (uint64_t)get_u32(p + offsetof(struct fuse_init_in, flags2)) << 32;
	else
		kflags &= 0xffffffffu;

	uint64_t want = 0;
	if (w->async_read && (kflags & FUSE_ASYNC_READ))
		want |= FUSE_ASYNC_READ;
	if (w->parallel_dirops && (kflags & FUSE_PARALLEL_DIROPS))
		want |= FUSE_PARALLEL_DIROPS;
	if (w->cache_symlinks && (kflags & FUSE_CACHE_SYMLINKS))
		want |= FUSE_CACHE_SYMLINKS;
	if (w->readdirplus && (kflags & FUSE_DO_READDIRPLUS))
		want |= FUSE_DO_READDIRPLUS;
	if (w->no_opendir && (kflags & FUSE_NO_OPENDIR_SUPPORT))
		want |= FUSE_NO_OPENDIR_SUPPORT;
	uint32_t max_request = w->max_request ? w->max_request : (1u << 20);
	if (kflags & FUSE_MAX_PAGES) {
		want |= FUSE_MAX_PAGES;
		out->max_pages = (uint16_t)clamp_u32(max_request / PAGE, 1, UINT16_MAX);
	}
	if (w->passthrough && (kflags & FUSE_PASSTHROUGH)) {
		want |= FUSE_PASSTHROUGH;
		out->max_stack_depth = clamp_u32(w->max_stack_depth, 1, RFUSE_MAX_STACK_DEPTH);
	}
	if (want >> 32) {
		want |= FUSE_INIT_EXT;
		out->flags2 = (uint32_t)(want >> 32);
	}

	out->major = FUSE_KERNEL_VERSION;
	out->minor = minor;
	uint32_t ra = w->max_readahead ? w->max_readahead : kreadahead;
	out->max_readahead = ra < kreadahead ? ra : kreadahead;
	out->flags = (uint32_t)want;
	out->max_write = w->max_write ? clamp_u32(w->max_write, PAGE, 1u << 24) : (128u << 10);
	out->time_gran = 1;
	*out_len = minor < 5    ? RFUSE_COMPAT_INIT_OUT_SIZE
		   : minor < 23 ? RFUSE_COMPAT_22_INIT_OUT_SIZE
				: sizeof(*out);

	g->major = FUSE_KERNEL_VERSION;
	g->minor = minor;
	g->max_readahead = out->max_readahead;
	g->max_write = out->max_write;
	g->max_pages = out->max_pages;
	g->max_stack_depth = out->max_stack_depth;
	g->async_read = want & FUSE_ASYNC_READ;
	g->passthrough = want & FUSE_PASSTHROUGH;
	g->readdirplus = want & FUSE_DO_READDIRPLUS;
	g->readdir_cache = minor >= 28;
	g->keep_cache = true;
	g->parallel_dirops = want & FUSE_PARALLEL_DIROPS;
	g->cache_symlinks = want & FUSE_CACHE_SYMLINKS;
	g->no_opendir = want & FUSE_NO_OPENDIR_SUPPORT;
	g->has_resend = kflags & FUSE_HAS_RESEND;
	g->kernel_flags = kflags;
	g->reply_flags = want;
	return 0;
}

void rfuse_log_granted(const struct rfuse_granted *g)
{
	rs_log(RS_LOG_DEBUG,
	       "fuse: protocol %u.%u, max_pages %u (%u KiB reads), max_write %u, readahead %u, "
	       "async_read %s, passthrough %s (stack depth %u), readdirplus %s, readdir cache %s, "
	       "keep_cache %s, parallel dirops %s, cache symlinks %s, no_opendir %s, has_resend %s "
	       "(kernel offered 0x%llx, we took 0x%llx)",
	       g->major, g->minor, g->max_pages, g->max_pages * 4, g->max_write, g->max_readahead,
	       g->async_read ? "on" : "off", g->passthrough ? "on" : "off", g->max_stack_depth,
	       g->readdirplus ? "on" : "off", g->readdir_cache ? "on" : "off",
	       g->keep_cache ? "on" : "off", g->parallel_dirops ? "on" : "off",
	       g->cache_symlinks ? "on" : "off", g->no_opendir ? "on" : "off",
	       g->has_resend ? "yes" : "no", (unsigned long long)g->kernel_flags,
	       (unsigned long long)g->reply_flags);
}
