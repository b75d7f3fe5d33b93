/* SPDX-License-Identifier: Apache-2.0 */
/* What the parts of src/fuse share and callers do not see. */
#ifndef RS_RFUSE_INTERNAL_H
#define RS_RFUSE_INTERNAL_H

#include <stdatomic.h>

#include "rfuse.h"

enum rfuse_state { RFUSE_WAIT_INIT, RFUSE_SERVING, RFUSE_EXITED };

/* granted is written once, by the INIT handler, before state turns
 * RFUSE_SERVING (a release store); readers load state first. Nothing else
 * changes after rfuse_session_new except state. */
struct rfuse_session {
	int fd;
	const struct rfuse_ops *ops;
	void *ud;
	struct rfuse_wishes wishes;
	rfuse_send_fn send;
	void *send_ctx;
	struct rfuse_granted granted;
	_Atomic int state;
};

/* Sends header + iov[0..n) as the answer to unique with error (<= 0). */
int rfuse_send(struct rfuse_session *s, uint64_t unique, int error, const struct iovec *iov, int n);

#endif
