// SPDX-License-Identifier: Apache-2.0
/* fdstore: starting rs-fd-holder so that it outlives us: a double fork (it is
 * nobody's child of ours), its own session, stdio on /dev/null, no fd of ours
 * (a stray /dev/fuse fd in it would keep a mount alive), default signals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "fdstore_internal.h"

/* After fork in a possibly threaded process: async-signal-safe calls only. */
static void __attribute__((noreturn))
exec_holder(const char *program, const char *socket_path, int status_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static const int reset[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
		signal(reset[i], SIG_DFL);
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
		goto fail;
	if (dup2(status_fd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
		goto fail;
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) {
		for (int fd = 4; fd < 65536; fd++)
			close(fd);
	}
	char *const argv[] = {(char *)program, (char *)socket_path, NULL};
	execv(program, argv);
fail:;
	int e = errno;
	ssize_t w = write(3, &e, sizeof(e));
	(void)w;
	_exit(127);
}

int hc_spawn(const char *program, const char *socket_path, struct rs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return rs_err(err, -errno, "fd holder: pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return rs_err(err, -e, "fd holder: fork: %s", strerror(e));
	}
	if (child == 0) {
		if (setsid() < 0)
			_exit(126);
		pid_t grandchild = fork();
		if (grandchild < 0)
			_exit(125);
		if (grandchild == 0)
			exec_holder(program, socket_path, p[1]);
		_exit(0);
	}
	close(p[1]);
	int status = 0;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	int e = 0;
	ssize_t n;
	do {
		n = read(p[0], &e, sizeof(e));
	} while (n < 0 && errno == EINTR);
	close(p[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return rs_err(err, -ECHILD, "fd holder: the starting child failed (status %d)",
			      status);
	if (n == (ssize_t)sizeof(e))
		return rs_err(err, -e, "fd holder: exec %s: %s", program, strerror(e));
	return 0;
}
