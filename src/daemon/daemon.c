/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's life: registry client, layerfs runtime, remote-layer hook,
 * snapshotter (which remounts stored remote layers), the gRPC service; then
 * wait for SIGINT or SIGTERM and take it all down in reverse order. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "daemon_internal.h"

static int mkdir_p(const char *path, mode_t mode, struct rs_error *err)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", path);
	for (char *p = buf + 1;; p++) {
		bool end = *p == '\0';
		if (*p == '/' || end) {
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return rs_err(err, -errno, "%s: %s", buf, strerror(errno));
			if (end)
				break;
			*p = '/';
		}
	}
	return 0;
}

static enum rs_log_level level_of(const char *s)
{
	if (strcmp(s, "debug") == 0)
		return RS_LOG_DEBUG;
	if (strcmp(s, "warn") == 0)
		return RS_LOG_WARN;
	if (strcmp(s, "error") == 0)
		return RS_LOG_ERROR;
	return RS_LOG_INFO;
}

int daemon_run(const struct daemon_config *c, int ready_fd, struct rs_error *err)
{
	rs_log_set_level(level_of(c->log_level));
	rs_log_set_json(strcmp(c->log_format, "json") == 0);
	int rc = mkdir_p(c->root, 0700, err);
	if (rc == 0)
		rc = mkdir_p(c->cache_dir, 0700, err);
	if (rc < 0)
		return rc;

	struct reg_client *client = NULL;
	struct lfs_runtime *rt = NULL;
	struct daemon_remote *remote = NULL;
	struct snapshotter *snap = NULL;
	struct api_server *api = NULL;
	struct reg_options ro = {
	    .hosts_dir = c->hosts_dir,
	    .plain_http = c->plain_http,
	    .docker_config = c->docker_config && *c->docker_config ? c->docker_config : NULL,
	    .timeout_ms = c->request_timeout_sec * 1000,
	    .retries = 2,
	};
	rc = reg_client_new(&ro, &client, err);
	if (rc < 0)
		goto out;
	struct lfs_runtime_opts lo = {
	    .workers = c->fuse_workers,
	    .fetchers = c->fetchers,
	    .mem_budget = (size_t)c->mem_cache_mib << 20,
	    .cache_dir = c->cache_dir,
	    .disk_max_bytes = c->cache_max_mib << 20,
	};
	if (c->passthrough && lfs_passthrough_parse(c->passthrough, &lo.passthrough) < 0) {
		rc = rs_err(err, -EINVAL, "fuse.passthrough: \"%s\" is not off, auto or on",
			    c->passthrough);
		goto out;
	}
	rc = lfs_runtime_new(&lo, &rt, err);
	if (rc < 0)
		goto out;
	struct daemon_remote_opts dro = {
	    .rt = rt,
	    .client = client,
	    .no_prefetch = !c->prefetch,
	    .no_background = !c->background_fetch,
	    .read_timeout_ms = c->read_timeout_sec * 1000,
	    .cfg = c,
	};
	rc = daemon_remote_new(&dro, &remote, err);
	if (rc < 0)
		goto out;
	struct snap_opts so = {
	    .root = c->root,
	    .remote = daemon_remote_ops(remote),
	    .restore = true,
	};
	rc = snap_open(&so, &snap, err);
	if (rc < 0) {
		rs_error_prefix(err, "snapshots in %s", c->root);
		goto out;
	}
	struct api_opts ao = {.socket = c->address, .threads = c->api_threads};
	rc = api_server_start(&ao, snap, &api, err);
	if (rc < 0)
		goto out;
	rs_log(RS_LOG_INFO, "remote-snapshotter serving on %s (root %s)", c->address, c->root);
	if (ready_fd >= 0) {
		ssize_t w = write(ready_fd, "ready\n", 6);
		(void)w;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;
	rs_log(RS_LOG_INFO, "remote-snapshotter: %s, shutting down", strsignal(sig));
out:
	/* First, so that calls in progress (a Prepare reading a TOC from a dead
	 * registry) end now, not at their timeouts, and the server's stop does
	 * not wait for them. */
	reg_client_cancel(client);
	api_server_stop(api);
	snap_close(snap);
	daemon_remote_free(remote);
	lfs_runtime_free(rt);
	reg_client_free(client);
	return rc;
}
