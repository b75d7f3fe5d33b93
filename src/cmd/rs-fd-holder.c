// SPDX-License-Identifier: Apache-2.0
/* rs-fd-holder SOCKET: holds fds for remote-snapshotter across its restarts
 * (see docs/fdstore.md). Started by the daemon; nothing to configure. */
#include <stdio.h>
#include <string.h>

#include "fdstore/fdstore_internal.h"

int main(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: rs-fd-holder SOCKET\n"
				"Holds the fds remote-snapshotter stores there; started by it.\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	struct rs_error err = {0};
	if (fdstore_holder_run(argv[1], &err) < 0) {
		fprintf(stderr, "rs-fd-holder: %s\n", err.msg);
		return 1;
	}
	return 0;
}
