// SPDX-License-Identifier: Apache-2.0
/* fdstore: starting rs-fd-holder so that it outlives us: a double fork (it is
 * nobody's child of ours), its own session, stdio on /dev/null, no fd of ours
 * (a stray /dev/fuse fd in it would keep a mount alive), default signals.
 * A pipe at its fd 3 (--ready-fd 3) says how the start went: closed with
 * nothing written once it listens, else 'M', its error code and message;
 * 'E' and an errno when the exec itself failed. */
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
	if (status_fd != 3 && dup2(status_fd, 3) < 0)
		goto fail;
	if (fcntl(3, F_SETFD, 0) < 0)
		goto fail;
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) {
		for (int fd = 4; fd < 65536; fd++)
			close(fd);
	}
	char *const argv[] = {(char *)program, "--ready-fd", "3", (char *)socket_path, NULL};
	execv(program, argv);
fail:;
	char msg[1 + sizeof(int)] = {'E'};
	int e = errno;
	memcpy(msg + 1, &e, sizeof(e));
	ssize_t w = write(3, msg, sizeof(msg));
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
	char msg[RS_ERROR_MSG_MAX];
	size_t got = 0;
	ssize_t n;
	/* EOF once the holder listens (or died): its own end closes then. */
	int64_t deadline = rs_monotonic_ms() + FDSTORE_HOLDER_TIMEOUT_MS;
	int rc = 0;
	while (got < sizeof(msg) - 1) {
		int64_t left = deadline - rs_monotonic_ms();
		rc = fdh_wait(p[0], left > 0 ? (int)left : 0);
		if (rc < 0)
			break;
		n = read(p[0], msg + got, sizeof(msg) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	msg[got] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return rs_err(err, -ECHILD, "fd holder: the starting child failed (status %d)",
			      status);
	if (rc == -ETIMEDOUT)
		return rs_err(err, rc, "fd holder %s: not listening after %d ms", socket_path,
			      FDSTORE_HOLDER_TIMEOUT_MS);
	if (got == 1 + sizeof(int) && msg[0] == 'E') {
		int e;
		memcpy(&e, msg + 1, sizeof(e));
		return rs_err(err, e > 0 ? -e : -EIO, "fd holder: exec %s: %s", program,
			      strerror(e));
	}
	if (got > 1 + sizeof(int) && msg[0] == 'M') {
		int code;
		memcpy(&code, msg + 1, sizeof(code));
		if (code >= 0 || code < -4095)
			code = -EIO;
		return rs_err(err, code, "fd holder: %s", msg + 1 + sizeof(int));
	}
	return 0;
}
