// SPDX-License-Identifier: Apache-2.0
/* stargz store: the additional layer store for podman and CRI-O
 * (containers/storage), in the foreground until SIGINT or SIGTERM. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "store/store.h"

static const char usage_store[] =
    "Usage: stargz store [OPTION...] MOUNTPOINT\n"
    "\n"
    "Serve an additional layer store for containers/storage (podman, CRI-O) at\n"
    "MOUNTPOINT: list it in storage.conf as\n"
    "  [storage.options]\n"
    "  additionallayerstores = [\"MOUNTPOINT:ref\"]\n"
    "and a pull of an eStargz image mounts its layers lazily instead of\n"
    "downloading them. A layer that is not eStargz, or whose TOC does not match its\n"
    "TOC digest annotation, is not offered, and is pulled the ordinary way.\n"
    "Runs in the foreground: prints `ready` once mounted, unmounts the store and\n"
    "its layers and exits on SIGINT or SIGTERM.\n"
    "\n"
    "  --root DIR            the store's directory: the chunk cache (DIR/cache) and\n"
    "                        the layer mounts (DIR/mnt) (default /var/lib/stargz-store)\n"
    "  --plain-http          talk plain HTTP to registries\n"
    "  --hosts-dir DIR       registry host configuration (certs.d layout)\n"
    "  --auth-file FILE      registry credentials, as podman's auth.json (default:\n"
    "                        $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/\n"
    "                        auth.json or /run/containers/UID/auth.json, then\n"
    "                        ~/.config/containers/auth.json); then the docker config\n"
    "  --log-level LEVEL     debug, info, warn or error (default warn)\n"
    "  --no-prefetch         do not prefetch the files before .prefetch.landmark\n"
    "  --no-background-fetch do not fetch the rest of each layer in the background\n"
    "  --cache-max-mib N     size bound of the disk cache (default 65536)\n"
    "  --timeout SECONDS     a read not served by then fails with EIO (default 30)\n"
    "  -h, --help            show this help\n";

enum {
	S_ROOT = 256,
	S_PLAIN_HTTP,
	S_HOSTS_DIR,
	S_LOG_LEVEL,
	S_NO_PREFETCH,
	S_NO_BG,
	S_CACHE_MAX,
	S_TIMEOUT,
	S_AUTH_FILE,
};

int cmd_store(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"root", required_argument, NULL, S_ROOT},
	    {"plain-http", no_argument, NULL, S_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, S_HOSTS_DIR},
	    {"log-level", required_argument, NULL, S_LOG_LEVEL},
	    {"no-prefetch", no_argument, NULL, S_NO_PREFETCH},
	    {"no-background-fetch", no_argument, NULL, S_NO_BG},
	    {"cache-max-mib", required_argument, NULL, S_CACHE_MAX},
	    {"timeout", required_argument, NULL, S_TIMEOUT},
	    {"auth-file", required_argument, NULL, S_AUTH_FILE},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct reg_options ro = {0};
	struct lfs_runtime_opts rto = {0};
	struct store_opts so = {0};
	const char *root = "/var/lib/stargz-store";
	const char *auth_file = NULL;
	long long v, timeout_s = 30;
	enum rs_log_level lvl;
	int c, status = 0;
	while ((c = next_opt(argc, argv, "store", longopts, &status)) != -1) {
		switch (c) {
		case -2:
			return status;
		case 'h':
			fputs(usage_store, stdout);
			return 0;
		case S_ROOT:
			root = optarg;
			break;
		case S_PLAIN_HTTP:
			ro.plain_http = true;
			break;
		case S_HOSTS_DIR:
			ro.hosts_dir = optarg;
			break;
		case S_AUTH_FILE:
			auth_file = optarg;
			break;
		case S_LOG_LEVEL:
			if (rs_log_level_parse(optarg, &lvl) < 0)
				return usage_error("store",
						   "--log-level '%s': debug, info, warn or error",
						   optarg);
			rs_log_set_level(lvl);
			break;
		case S_NO_PREFETCH:
			so.no_prefetch = true;
			break;
		case S_NO_BG:
			so.no_background = true;
			break;
		case S_CACHE_MAX:
			if (!parse_int(optarg, 1, 1ll << 30, &v))
				return usage_error("store",
						   "--cache-max-mib '%s' is not a number in range",
						   optarg);
			rto.disk_max_bytes = (uint64_t)v << 20;
			break;
		case S_TIMEOUT:
			if (!parse_int(optarg, 1, 86400, &v))
				return usage_error(
				    "store", "--timeout '%s' is not a number in range", optarg);
			timeout_s = v;
			break;
		}
	}
	if (argc - optind != 1)
		return usage_error("store",
				   argc - optind < 1 ? "needs MOUNTPOINT" : "too many arguments");
	char cache_dir[PATH_MAX];
	if (snprintf(cache_dir, sizeof(cache_dir), "%s/cache", root) >= (int)sizeof(cache_dir))
		return usage_error("store", "--root '%s' is too long", root);
	ro.timeout_ms = (long)timeout_s * 1000;
	ro.retries = 1;
	rto.cache_dir = cache_dir;
	so.mountpoint = argv[optind];
	so.root = root;
	so.read_timeout_ms = (long)timeout_s * 1000;

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct rs_error err = {0};
	struct reg_client *client = NULL;
	struct lfs_runtime *rt = NULL;
	struct store *st = NULL;
	char **auth_files = NULL;
	size_t n_auth = 0;
	int rc = 0;
	if (auth_file) {
		ro.auth_files = &auth_file;
		ro.n_auth_files = 1;
	} else if ((rc = reg_containers_auth_files(&auth_files, &n_auth)) < 0) {
		rs_err(&err, rc, "out of memory");
	} else {
		ro.auth_files = (const char *const *)auth_files;
		ro.n_auth_files = n_auth;
	}
	if (rc == 0 && mkdir(root, 0700) < 0 && errno != EEXIST)
		rc = rs_err(&err, -errno, "%s: %s", root, strerror(errno));
	if (rc == 0)
		rc = reg_client_new(&ro, &client, &err);
	if (rc == 0)
		rc = lfs_runtime_new(&rto, &rt, &err);
	so.client = client;
	so.rt = rt;
	if (rc == 0)
		rc = store_start(&so, &st, &err);
	int ret = 0;
	if (rc < 0) {
		ret = fail("store", &err);
	} else {
		printf("ready\n");
		fflush(stdout);
		int sig;
		sigwait(&sigs, &sig);
	}
	reg_client_cancel(client);
	store_stop(st);
	lfs_runtime_free(rt);
	reg_client_free(client);
	reg_auth_files_free(auth_files, n_auth);
	return ret;
}
