// SPDX-License-Identifier: Apache-2.0
/* runc's lifecycle for a recording: `runc run` in the foreground (in its own
 * process group, stdin /dev/null, output where the caller says), watched
 * through a pidfd; at the end `runc kill ID KILL`, a bounded wait, and
 * `runc delete -f ID`, all with a private --root so that nothing else's
 * containers are in sight. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "record_internal.h"

extern char **environ;

/* How long `runc run` gets to exit after its container was killed. */
#define STOP_WAIT_MS 5000

static int spawn(const char *const *argv, int out_fd, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	sigemptyset(&none);
	conv_rec_stop_signals(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (out_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
		posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
	} else {
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	}
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					  POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setpgroup(&at, 0);
	int e = posix_spawnp(pid, argv[0], &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return -e;
}

static int decode(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* runc ARGS (quiet), waited for. */
static void runc_sync(struct conv_rec_runc *r, const char *a1, const char *a2, const char *a3)
{
	const char *argv[] = {r->runc, "--root", r->state, a1, a2, a3, NULL};
	pid_t pid;
	if (spawn(argv, -1, &pid) < 0)
		return;
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int conv_rec_runc_start(struct conv_rec_runc *r, const char *bundle, int out_fd,
			struct rs_error *err)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(r->id, sizeof(r->id), "stargz-optimize-%d-%lx", (int)getpid(),
		 (unsigned long)ts.tv_nsec ^ (unsigned long)ts.tv_sec);
	const char *argv[] = {r->runc, "--root", r->state, "run", "--bundle", bundle, r->id, NULL};
	int rc = spawn(argv, out_fd, &r->pid);
	if (rc < 0) {
		r->pid = 0;
		return rs_err(err, rc, "%s: %s", r->runc,
			      rc == -ENOENT ? "not found (install runc or give --runc)"
					    : strerror(-rc));
	}
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	if (r->pidfd < 0) {
		int e = errno;
		int st;
		conv_rec_runc_stop(r, &st);
		return rs_err(err, -e, "pidfd_open: %s", strerror(e));
	}
	return 0;
}

int conv_rec_runc_reap(struct conv_rec_runc *r, int *status)
{
	if (r->pid <= 0)
		return 0;
	int st;
	pid_t p = waitpid(r->pid, &st, WNOHANG);
	if (p != r->pid)
		return 0;
	*status = decode(st);
	r->pid = 0;
	return 1;
}

static bool wait_exit(struct conv_rec_runc *r, int ms)
{
	if (r->pidfd < 0)
		return false;
	struct pollfd p = {.fd = r->pidfd, .events = POLLIN};
	int n;
	while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return n > 0;
}

void conv_rec_runc_stop(struct conv_rec_runc *r, int *status)
{
	if (r->pid > 0) {
		/* the container may not exist yet: keep asking while runc run lives */
		for (int waited = 0; waited < STOP_WAIT_MS; waited += 200) {
			runc_sync(r, "kill", r->id, "KILL");
			if (wait_exit(r, 200) || r->pidfd < 0)
				break;
		}
		if (!wait_exit(r, 0))
			kill(r->pid, SIGKILL);
		int st = 0;
		pid_t w;
		while ((w = waitpid(r->pid, &st, 0)) < 0 && errno == EINTR)
			;
		*status = w == r->pid ? decode(st) : -1;
		r->pid = 0;
	}
	if (r->id[0])
		runc_sync(r, "delete", "-f", r->id);
	if (r->pidfd >= 0)
		close(r->pidfd);
	r->pidfd = -1;
}
