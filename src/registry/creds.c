// SPDX-License-Identifier: Apache-2.0
/* Registry credentials from docker's config.json: auths, credHelpers,
 * credsStore (docker-credential-<name> get, per docker-credential-helpers).
 * No secret is ever copied into an error message or a log line. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "transport.h"

#define HELPER_TIMEOUT_MS 10000
#define HELPER_OUT_MAX (64 * 1024)
#define HUB_SERVER "https://index.docker.io/v1/"

extern char **environ;

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void reg_creds_free(struct reg_creds *c)
{
	wipe_free(c->user);
	wipe_free(c->secret);
	wipe_free(c->identity_token);
	memset(c, 0, sizeof(*c));
}

static bool is_hub(const char *host)
{
	return strcmp(host, "docker.io") == 0 || strcmp(host, "index.docker.io") == 0 ||
	       strcmp(host, "registry-1.docker.io") == 0;
}

/* Whether a config key ("https://host/v1/", "host", "host:5000") names host. */
static bool key_matches(const char *key, const char *host)
{
	const char *k = key;
	if (strncmp(k, "https://", 8) == 0)
		k += 8;
	else if (strncmp(k, "http://", 7) == 0)
		k += 7;
	size_t kl = strcspn(k, "/");
	char name[512];
	if (kl >= sizeof(name))
		return false;
	memcpy(name, k, kl);
	name[kl] = '\0';
	if (is_hub(host))
		return is_hub(name);
	return strcmp(name, host) == 0;
}

static const char *server_url(const char *host)
{
	return is_hub(host) ? HUB_SERVER : host;
}

static int from_auth_entry(json_t *e, struct reg_creds *out, const char *file, const char *host,
			   struct rs_error *err)
{
	const char *auth = json_string_value(json_object_get(e, "auth"));
	const char *user = json_string_value(json_object_get(e, "username"));
	const char *pass = json_string_value(json_object_get(e, "password"));
	const char *itok = json_string_value(json_object_get(e, "identitytoken"));
	if (auth && *auth) {
		size_t n = strlen(auth);
		uint8_t *dec = malloc(n + 1);
		if (!dec)
			return rs_err(err, -ENOMEM, "out of memory");
		ssize_t dl = rs_base64_decode(auth, n, dec, n);
		char *colon = dl > 0 ? memchr(dec, ':', (size_t)dl) : NULL;
		if (!colon) {
			explicit_bzero(dec, n);
			free(dec);
			return rs_err(
			    err, -EINVAL,
			    "%s: the \"auth\" entry for %s is not base64 of user:password", file,
			    host);
		}
		dec[dl] = '\0';
		*colon = '\0';
		out->user = strdup((char *)dec);
		out->secret = strdup(colon + 1);
		explicit_bzero(dec, n);
		free(dec);
	} else if (user && pass) {
		out->user = strdup(user);
		out->secret = strdup(pass);
	}
	if (itok && *itok)
		out->identity_token = strdup(itok);
	if ((auth && *auth && (!out->user || !out->secret)) ||
	    (itok && *itok && !out->identity_token))
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
}

static bool helper_name_ok(const char *h)
{
	if (!*h || strlen(h) > 64)
		return false;
	for (const char *p = h; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Writes all of s to fd with SIGPIPE held off (the helper may exit early). */
static void write_quietly(int fd, const char *s)
{
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t w = write(fd, s + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	sigset_t pending;
	sigpending(&pending);
	if (sigismember(&pending, SIGPIPE)) {
		struct timespec zero = {0, 0};
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Runs the helper; collects stdout; *status is its exit status. */
static int run_helper(const char *prog, const char *input, struct rs_buf *outb, int *status,
		      struct rs_error *err)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return rs_err(err, -errno, "credential helper %s: pipe: %s", prog, strerror(errno));
	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		return rs_err(err, -e, "credential helper %s: pipe: %s", prog, strerror(e));
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	char *argv[] = {(char *)prog, (char *)"get", NULL};
	pid_t pid;
	int r = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (r != 0) {
		close(in[1]);
		close(out[0]);
		return rs_err(err, -r, "credential helper %s: cannot run it: %s", prog,
			      strerror(r));
	}
	write_quietly(in[1], input);
	close(in[1]);

	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = 0;
	for (;;) {
		long left = HELPER_TIMEOUT_MS - ms_since(&t0);
		if (left <= 0) {
			rc = rs_err(err, -ETIMEDOUT, "credential helper %s: no answer within %d s",
				    prog, HELPER_TIMEOUT_MS / 1000);
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		int pr = poll(&p, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		if (rs_buf_reserve(outb, 4096) < 0) {
			rc = rs_err(err, -ENOMEM, "out of memory");
			kill(pid, SIGKILL);
			break;
		}
		ssize_t n = read(out[0], outb->data + outb->len, outb->cap - outb->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		outb->len += (size_t)n;
		if (outb->len > HELPER_OUT_MAX) {
			rc = rs_err(err, -EFBIG, "credential helper %s: answer too large", prog);
			kill(pid, SIGKILL);
			break;
		}
	}
	close(out[0]);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	return rc;
}

int reg_creds_helper(const char *helper, const char *server, struct reg_creds *out,
		     struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!helper_name_ok(helper))
		return rs_err(err, -EINVAL, "invalid credential helper name '%s'", helper);
	char prog[128];
	snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
	struct rs_buf ob = {0};
	int status = 0;
	int r = run_helper(prog, server, &ob, &status, err);
	if (r < 0 || rs_buf_append(&ob, "", 1) < 0) {
		if (ob.data)
			explicit_bzero(ob.data, ob.len);
		rs_buf_free(&ob);
		return r < 0 ? r : rs_err(err, -ENOMEM, "out of memory");
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		bool not_found = strstr((char *)ob.data, "credentials not found") != NULL;
		explicit_bzero(ob.data, ob.len);
		rs_buf_free(&ob);
		if (not_found)
			return 0;
		return rs_err(err, -EACCES, "credential helper %s failed for %s (exit status %d)",
			      prog, server, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	json_error_t je;
	json_t *j = json_loadb((char *)ob.data, ob.len - 1, 0, &je);
	explicit_bzero(ob.data, ob.len);
	rs_buf_free(&ob);
	const char *user = json_string_value(json_object_get(j, "Username"));
	const char *secret = json_string_value(json_object_get(j, "Secret"));
	if (!j || !user || !secret) {
		json_decref(j);
		return rs_err(err, -EINVAL,
			      "credential helper %s answered without Username and Secret for %s",
			      prog, server);
	}
	if (strcmp(user, "<token>") == 0) {
		out->identity_token = strdup(secret);
	} else {
		out->user = strdup(user);
		out->secret = strdup(secret);
	}
	json_decref(j);
	if (!out->identity_token && !(out->user && out->secret)) {
		reg_creds_free(out);
		return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static char *default_config_path(void)
{
	const char *dc = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME");
	char buf[4096];
	if (dc && *dc)
		snprintf(buf, sizeof(buf), "%s/config.json", dc);
	else if (home && *home)
		snprintf(buf, sizeof(buf), "%s/.docker/config.json", home);
	else
		return NULL;
	return strdup(buf);
}

int reg_creds_load(const char *config_path, const char *host, struct reg_creds *out,
		   struct rs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_free char *path = config_path ? strdup(config_path) : default_config_path();
	if (!path)
		return 0;
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		if (access(path, F_OK) != 0)
			return 0;
		/* jansson's text may quote the file: keep secrets out of it. */
		return rs_err(err, -EINVAL, "%s: not valid JSON (line %d)", path, je.line);
	}
	int r = 0;
	const char *key;
	json_t *v;
	const char *helper = NULL;
	json_object_foreach(json_object_get(root, "credHelpers"), key, v)
	{
		if (key_matches(key, host) && json_is_string(v))
			helper = json_string_value(v);
	}
	if (helper) {
		r = reg_creds_helper(helper, server_url(host), out, err);
		goto done;
	}
	json_object_foreach(json_object_get(root, "auths"), key, v)
	{
		if (!key_matches(key, host) || !json_is_object(v))
			continue;
		r = from_auth_entry(v, out, path, host, err);
		if (r < 0 || out->user || out->identity_token)
			goto done;
	}
	helper = json_string_value(json_object_get(root, "credsStore"));
	if (helper && *helper)
		r = reg_creds_helper(helper, server_url(host), out, err);
done:
	json_decref(root);
	if (r < 0)
		reg_creds_free(out);
	return r;
}

int reg_creds_find(const struct reg_client *c, const char *host, struct reg_creds *out,
		   struct rs_error *err)
{
	for (size_t i = 0; i < c->n_auth_files; i++) {
		int r = reg_creds_load(c->auth_files[i], host, out, err);
		if (r < 0 || out->user || out->identity_token)
			return r;
	}
	return reg_creds_load(c->docker_config, host, out, err);
}

static int add_path(char **paths, size_t *n, const char *a, const char *b)
{
	if (asprintf(&paths[*n], "%s%s", a, b) < 0)
		return -ENOMEM;
	(*n)++;
	return 0;
}

int reg_containers_auth_files(char ***paths, size_t *n)
{
	char **p = calloc(2, sizeof(*p));
	size_t k = 0;
	if (!p)
		return -ENOMEM;
	const char *file = getenv("REGISTRY_AUTH_FILE");
	const char *run = getenv("XDG_RUNTIME_DIR");
	const char *cfg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char uid_dir[64];
	snprintf(uid_dir, sizeof(uid_dir), "/run/containers/%u", (unsigned)getuid());
	int r;
	if (file && *file)
		r = add_path(p, &k, file, "");
	else
		r = add_path(p, &k, run && *run ? run : uid_dir,
			     run && *run ? "/containers/auth.json" : "/auth.json");
	if (r == 0 && cfg && *cfg)
		r = add_path(p, &k, cfg, "/containers/auth.json");
	else if (r == 0 && home && *home)
		r = add_path(p, &k, home, "/.config/containers/auth.json");
	if (r < 0) {
		reg_auth_files_free(p, k);
		return r;
	}
	*paths = p;
	*n = k;
	return 0;
}

void reg_auth_files_free(char **paths, size_t n)
{
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
}
