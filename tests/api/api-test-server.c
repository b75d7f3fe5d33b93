// SPDX-License-Identifier: Apache-2.0
/* Test daemon: a snapshotter in ROOT (no remote layers) served by src/api on
 * SOCKET until SIGTERM or SIGINT. Built twice: against src/snapshot
 * (api-test-server) and against tests/api/mock-snapshot.c (api-mock-server).
 *
 *   api-test-server [-d] [-t THREADS] ROOT SOCKET
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api/api.h"
#include "snapshot/snapshot.h"

static void usage(void)
{
	fprintf(stderr, "usage: api-test-server [-d] [-t THREADS] ROOT SOCKET\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = 0, c;
	while ((c = getopt(argc, argv, "dt:")) != -1) {
		switch (c) {
		case 'd':
			rs_log_set_level(RS_LOG_DEBUG);
			break;
		case 't':
			threads = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();

	/* Every thread (gRPC's included) inherits this mask; only sigwait sees them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct rs_error err = {0};
	struct snap_opts so = {.root = argv[optind]};
	struct snapshotter *s = NULL;
	if (snap_open(&so, &s, &err) < 0) {
		fprintf(stderr, "api-test-server: %s\n", err.msg);
		return 1;
	}
	const char *path = argv[optind + 1];
	int listen_fd = -1;
	bool reused;
	if (api_listen_open(path, -1, &listen_fd, &reused, &err) < 0) {
		fprintf(stderr, "api-test-server: %s\n", err.msg);
		snap_close(s);
		return 1;
	}
	struct api_opts ao = {.socket = path, .listen_fd = listen_fd, .threads = threads};
	struct api_server *srv = NULL;
	if (api_server_start(&ao, s, &srv, &err) < 0) {
		fprintf(stderr, "api-test-server: %s\n", err.msg);
		close(listen_fd);
		unlink(path);
		snap_close(s);
		return 1;
	}
	fprintf(stderr, "api-test-server: serving %s on %s\n", argv[optind], argv[optind + 1]);
	int sig = 0;
	sigwait(&set, &sig);
	fprintf(stderr, "api-test-server: signal %d, stopping\n", sig);
	api_server_stop(srv, false);
	close(listen_fd);
	unlink(path);
	snap_close(s);
	fprintf(stderr, "api-test-server: stopped\n");
	return 0;
}
