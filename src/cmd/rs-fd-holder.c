// SPDX-License-Identifier: Apache-2.0
/* rs-fd-holder [--ready-fd N] SOCKET: holds fds for remote-snapshotter across
 * its restarts (see docs/fdstore.md). Started by the daemon; nothing to
 * configure. */
#include <stdio.h>
#include <string.h>

#include "fdstore/fdstore_internal.h"

static int usage(int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: rs-fd-holder [--ready-fd N] SOCKET\n"
		"Holds the fds remote-snapshotter stores there; started by it.\n"
		"  --ready-fd N  closed once SOCKET listens; the error is written there if not\n");
	return rc;
}

int main(int argc, char **argv)
{
	int ready_fd = -1;
	int i = 1;
	if (argc == 2 && strcmp(argv[1], "--help") == 0)
		return usage(0);
	if (argc == 4 && strcmp(argv[1], "--ready-fd") == 0) {
		int64_t n = rs_parse_decimal(argv[2], strlen(argv[2]));
		if (n < 0 || n > 65535)
			return usage(2);
		ready_fd = (int)n;
		i = 3;
	}
	if (argc != i + 1 || argv[i][0] == '-')
		return usage(2);
	struct rs_error err = {0};
	if (fdstore_holder_run(argv[i], ready_fd, &err) < 0) {
		fprintf(stderr, "rs-fd-holder: %s\n", err.msg);
		return 1;
	}
	return 0;
}
