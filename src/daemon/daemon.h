/* SPDX-License-Identifier: Apache-2.0 */
/* daemon: the remote-snapshotter process wired together. The configuration
 * (flags over a TOML file over defaults) and the run loop that serves
 * containerd's snapshots API until SIGINT or SIGTERM; the remote-layer hook
 * is in daemon_internal.h. */
#ifndef DAEMON_DAEMON_H
#define DAEMON_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"

#define DAEMON_DEFAULT_ROOT "/var/lib/remote-snapshotter"
#define DAEMON_DEFAULT_ADDRESS "/run/remote-snapshotter/remote-snapshotter.sock"

/* Every setting of the daemon; docs/daemon.md lists each TOML key. Strings
 * are owned (daemon_config_free). */
struct daemon_config {
	char *root;       /* root = "...": metadata, snapshots, cache */
	char *address;    /* address = "...": the unix socket containerd dials */
	char *log_level;  /* log_level: debug, info, warn, error */
	char *log_format; /* log_format: text, json */
	int api_threads;  /* api_threads */

	/* [cache] */
	char *cache_dir;        /* dir; default ROOT/cache */
	uint64_t cache_max_mib; /* max_mib: disk bound */
	uint64_t mem_cache_mib; /* memory_mib */

	/* [fetch] */
	bool prefetch;         /* prefetch */
	bool background_fetch; /* background_fetch */
	long read_timeout_sec; /* read_timeout_sec: a FUSE read not served by then gets EIO */
	int fuse_workers;      /* fuse_workers */
	int fetchers;          /* fetchers */

	/* [fuse] */
	char *passthrough; /* passthrough: "off" (default), "auto", "on" */

	/* [restart] */
	char *fd_store;       /* fd_store: "auto" (default: systemd's or our holder), "off" */
	bool unmount_on_exit; /* unmount_on_exit: a stop ends every mount */
	char *holder_program; /* holder_program: rs-fd-holder; default beside the daemon */
	bool takeover;        /* --takeover: replace the daemon serving the same root */

	/* [registry] */
	char *hosts_dir;          /* hosts_dir: certs.d layout */
	bool plain_http;          /* plain_http */
	char *docker_config;      /* docker_config: credentials file */
	long request_timeout_sec; /* request_timeout_sec */

	/* [verify] */
	bool allow_unverified; /* allow_unverified: mount layers with no TOC digest */
	/* [verify.hosts."HOST"] allow_unverified: per registry host, over the above */
	struct daemon_verify_host *verify_hosts;
	size_t n_verify_hosts;
};

/* One [verify.hosts."HOST"] table. */
struct daemon_verify_host {
	char *host; /* a reference's domain: "127.0.0.1:5000", "docker.io" */
	bool allow_unverified;
};

/* Whether layers from the registry at host (a reference's domain) may be
 * mounted lazily without verification. */
bool daemon_config_allow_unverified(const struct daemon_config *c, const char *host);

void daemon_config_defaults(struct daemon_config *c);
/* Reads a TOML file over c; unknown keys and wrong types are errors naming
 * the key and line. */
int daemon_config_load(struct daemon_config *c, const char *path, struct rs_error *err);
/* Fills what still has no value from root (cache dir). */
int daemon_config_finish(struct daemon_config *c, struct rs_error *err);
void daemon_config_free(struct daemon_config *c);

/* ---- running ---------------------------------------------------------------- */

/* Serves until SIGINT/SIGTERM (blocked in the caller's threads beforehand),
 * then shuts down cleanly. ready_fd >= 0: "ready\n" is written there once the
 * socket accepts calls. */
int daemon_run(const struct daemon_config *c, int ready_fd, struct rs_error *err);

#endif
