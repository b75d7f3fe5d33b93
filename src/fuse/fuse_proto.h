/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE kernel ABI: Debian 12's <linux/fuse.h> (kernel 6.1, protocol 7.38)
 * plus what newer kernels added that we use, each defined once here with the
 * kernel that added it, so the build does not depend on new system headers. */
#ifndef RS_FUSE_PROTO_H
#define RS_FUSE_PROTO_H

#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* The newest protocol minor we speak: 7.40, kernel 6.9 (passthrough, resend). */
#define RFUSE_MINOR_MAX 40

/* Protocol 7.40, kernel 6.9: INIT flags2 bits (as 64-bit flags; bits 32..63
 * travel in flags2). */
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)
#endif
#ifndef FUSE_NO_EXPORT_SUPPORT
#define FUSE_NO_EXPORT_SUPPORT (1ULL << 38)
#endif
#ifndef FUSE_HAS_RESEND
#define FUSE_HAS_RESEND (1ULL << 39)
#endif

/* Protocol 7.40, kernel 6.9: an open served by a backing file. */
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)
#endif

/* Protocol 7.40, kernel 6.9: the kernel resends the requests it had handed
 * out; resent requests carry this bit in their unique id. */
#define RFUSE_NOTIFY_RESEND 7
#define RFUSE_UNIQUE_RESEND (1ULL << 63)

/* Protocol 7.39, kernel 6.6: STATX, which we answer with ENOSYS. */
#define RFUSE_OP_STATX 52

/* The kernel's passthrough stacks at most this deep (FILESYSTEM_MAX_STACK_DEPTH). */
#define RFUSE_MAX_STACK_DEPTH 2

/* fuse_init_out as of 7.40 (kernel 6.9): max_stack_depth took an unused word.
 * Same size as the 7.36 struct in the system header. */
struct rfuse_init_out {
	uint32_t major;
	uint32_t minor;
	uint32_t max_readahead;
	uint32_t flags;
	uint16_t max_background;
	uint16_t congestion_threshold;
	uint32_t max_write;
	uint32_t time_gran;
	uint16_t max_pages;
	uint16_t map_alignment;
	uint32_t flags2;
	uint32_t max_stack_depth;
	uint32_t unused[6];
};
_Static_assert(sizeof(struct rfuse_init_out) == sizeof(struct fuse_init_out),
	       "fuse_init_out size is fixed by the kernel ABI");

/* fuse_open_out as of 7.40 (kernel 6.9): backing_id replaced padding. */
struct rfuse_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};
_Static_assert(sizeof(struct rfuse_open_out) == sizeof(struct fuse_open_out),
	       "fuse_open_out size is fixed by the kernel ABI");

/* Kernel 6.9: registers an fd as a backing file; the ioctl returns its id. */
struct rfuse_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define RFUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct rfuse_backing_map)
#define RFUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)

/* Reply sizes older protocol minors expect. */
#define RFUSE_COMPAT_INIT_OUT_SIZE FUSE_COMPAT_INIT_OUT_SIZE       /* < 7.5 */
#define RFUSE_COMPAT_22_INIT_OUT_SIZE FUSE_COMPAT_22_INIT_OUT_SIZE /* < 7.23 */

#endif
