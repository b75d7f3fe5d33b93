/* SPDX-License-Identifier: Apache-2.0 */
/* Raw FUSE requests, as the kernel would hand them over /dev/fuse, through
 * the decoder of a session past INIT. The first byte picks whether INIT is
 * done first (so the pre-INIT path is fuzzed too); callbacks answer with
 * replies built from the request's own numbers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/rfuse.h"

static int sink(void *ctx, const struct iovec *iov, int n)
{
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	/* Touch every byte, so a reply pointing past its data shows up. */
	volatile unsigned char x = 0;
	for (int i = 0; i < n; i++)
		for (size_t j = 0; j < iov[i].iov_len; j++)
			x ^= ((const unsigned char *)iov[i].iov_base)[j];
	(void)x;
	return total ? 0 : -1;
}

static void cb_lookup(struct rfuse_req *r, uint64_t parent, const char *name)
{
	struct fuse_entry_out e = {.nodeid = parent + strlen(name)};
	rfuse_reply_entry(r, &e);
}

static void cb_getattr(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, bool has_fh)
{
	struct fuse_attr_out a = {.attr = {.ino = nodeid}};
	rfuse_reply_attr(r, &a);
}

static void cb_read(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off, uint32_t size)
{
	static const char data[4096];
	struct iovec v = {.iov_base = (void *)data, .iov_len = size < sizeof(data) ? size : 0};
	rfuse_reply_data(r, &v, 1);
}

static void cb_readdir(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
		       uint32_t size)
{
	char mem[512];
	struct rfuse_dirbuf d;
	rfuse_dirbuf_init(&d, mem, size < sizeof(mem) ? size : sizeof(mem));
	for (uint64_t i = off; i < off + 40; i++)
		if (!rfuse_dirbuf_add(&d, "entry", 1 + i % 5, i + 2, S_IFREG, i + 1))
			break;
	rfuse_reply_buf(r, d.buf, d.len);
}

static void cb_readdirplus(struct rfuse_req *r, uint64_t nodeid, uint64_t fh, uint64_t off,
			   uint32_t size)
{
	char mem[1024];
	struct rfuse_dirbuf d;
	struct fuse_entry_out e = {.nodeid = 2, .attr = {.ino = 2, .mode = S_IFDIR}};
	rfuse_dirbuf_init(&d, mem, size < sizeof(mem) ? size : sizeof(mem));
	while (rfuse_dirbuf_add_plus(&d, "dir", 3, &e, ++off))
		;
	rfuse_reply_buf(r, d.buf, d.len);
}

static void cb_getxattr(struct rfuse_req *r, uint64_t nodeid, const char *name, uint32_t size)
{
	if (size == 0)
		rfuse_reply_xattr_size(r, (uint32_t)strlen(name));
	else
		rfuse_reply_buf(r, name, strlen(name) < size ? strlen(name) : size);
}

static const struct rfuse_ops ops = {
    .lookup = cb_lookup,
    .getattr = cb_getattr,
    .read = cb_read,
    .readdir = cb_readdir,
    .readdirplus = cb_readdirplus,
    .getxattr = cb_getxattr,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct rfuse_session *s;
	if (rfuse_session_new(-1, &ops, NULL, NULL, &s, NULL) < 0)
		return 0;
	rfuse_session_set_send(s, sink, NULL);
	if (data[0] & 1) {
		struct {
			struct fuse_in_header h;
			struct fuse_init_in in;
		} init = {
		    .h = {.len = sizeof(init), .opcode = FUSE_INIT, .unique = 1},
		    .in = {.major = 7, .minor = 44, .flags = 0xffffffffu, .flags2 = 0xffffffffu}};
		rfuse_session_process(s, &init, sizeof(init));
	}
	/* A copy of exactly the request's bytes, so reading past it is caught. */
	size_t len = size - 1;
	unsigned char *buf = malloc(len ? len : 1);
	if (buf) {
		memcpy(buf, data + 1, len);
		rfuse_session_process(s, buf, len);
		free(buf);
	}
	rfuse_session_free(s);
	return 0;
}
