// SPDX-License-Identifier: Apache-2.0
/* remote-snapshotter: the daemon containerd talks to as a proxy snapshotter.
 * Flags override the TOML file (--config), which overrides the defaults. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"

#ifndef RS_VERSION
#define RS_VERSION "0.1.0"
#endif

static const char usage[] =
    "Usage: remote-snapshotter [OPTION...]\n"
    "\n"
    "Serve containerd's snapshots API on a unix socket; mount eStargz layers lazily.\n"
    "\n"
    "  --config FILE          TOML configuration (see docs/daemon.md)\n"
    "  --root DIR             metadata, snapshots and cache (default " DAEMON_DEFAULT_ROOT ")\n"
    "  --address SOCK         the socket (default " DAEMON_DEFAULT_ADDRESS ")\n"
    "  --log-level LEVEL      debug, info, warn or error (default info)\n"
    "  --log-format FORMAT    text or json (default text)\n"
    "  --plain-http           talk plain HTTP to every registry\n"
    "  --hosts-dir DIR        registry hosts (certs.d layout)\n"
    "  --no-prefetch          do not prefetch landmarked files\n"
    "  --no-background-fetch  do not fetch whole layers in the background\n"
    "  --allow-unverified     mount layers lazily without a TOC digest, from every registry\n"
    "  --takeover             replace the daemon serving the same root; its mounts and\n"
    "                         running containers carry on (see docs/daemon.md, Restarts)\n"
    "  --unmount-on-exit      a stop (SIGTERM, SIGINT) unmounts every layer instead of\n"
    "                         leaving them to the next start\n"
    "  --version              print the version\n"
    "  -h, --help             show this help\n";

enum {
	O_CONFIG = 256,
	O_ROOT,
	O_ADDR,
	O_LEVEL,
	O_FORMAT,
	O_PLAIN,
	O_HOSTS,
	O_NOPF,
	O_NOBG,
	O_UNVER,
	O_TAKEOVER,
	O_UNMOUNT,
	O_VER
};

static int replace(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, O_CONFIG},
	    {"root", required_argument, NULL, O_ROOT},
	    {"address", required_argument, NULL, O_ADDR},
	    {"log-level", required_argument, NULL, O_LEVEL},
	    {"log-format", required_argument, NULL, O_FORMAT},
	    {"plain-http", no_argument, NULL, O_PLAIN},
	    {"hosts-dir", required_argument, NULL, O_HOSTS},
	    {"no-prefetch", no_argument, NULL, O_NOPF},
	    {"no-background-fetch", no_argument, NULL, O_NOBG},
	    {"allow-unverified", no_argument, NULL, O_UNVER},
	    {"takeover", no_argument, NULL, O_TAKEOVER},
	    {"unmount-on-exit", no_argument, NULL, O_UNMOUNT},
	    {"version", no_argument, NULL, O_VER},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	/* Two passes: the file first, then the flags over it. */
	const char *config_file = NULL;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == O_CONFIG)
			config_file = optarg;
		else if (c == 'h') {
			fputs(usage, stdout);
			return 0;
		} else if (c == O_VER) {
			printf("remote-snapshotter %s\n", RS_VERSION);
			return 0;
		} else if (c == '?') {
			fprintf(stderr, "remote-snapshotter: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "remote-snapshotter: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	struct daemon_config cfg;
	struct rs_error err = {0};
	daemon_config_defaults(&cfg);
	if (config_file && daemon_config_load(&cfg, config_file, &err) < 0) {
		fprintf(stderr, "remote-snapshotter: %s\n", err.msg);
		daemon_config_free(&cfg);
		return 2;
	}
	optind = 0;
	int bad = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_ROOT:
			bad |= replace(&cfg.root, optarg);
			break;
		case O_ADDR:
			bad |= replace(&cfg.address, optarg);
			break;
		case O_LEVEL:
			bad |= replace(&cfg.log_level, optarg);
			break;
		case O_FORMAT:
			bad |= replace(&cfg.log_format, optarg);
			break;
		case O_HOSTS:
			bad |= replace(&cfg.hosts_dir, optarg);
			break;
		case O_PLAIN:
			cfg.plain_http = true;
			break;
		case O_NOPF:
			cfg.prefetch = false;
			break;
		case O_NOBG:
			cfg.background_fetch = false;
			break;
		case O_TAKEOVER:
			cfg.takeover = true;
			break;
		case O_UNMOUNT:
			cfg.unmount_on_exit = true;
			break;
		case O_UNVER:
			/* Every host: the flag is over the file's host tables too. */
			cfg.allow_unverified = true;
			for (size_t i = 0; i < cfg.n_verify_hosts; i++)
				cfg.verify_hosts[i].allow_unverified = true;
			break;
		}
	}
	int ret = 0;
	if (bad) {
		fprintf(stderr, "remote-snapshotter: out of memory\n");
		ret = 1;
	} else if (daemon_config_finish(&cfg, &err) < 0) {
		fprintf(stderr, "remote-snapshotter: %s\n", err.msg);
		ret = 2;
	} else {
		/* Every thread inherits this mask; daemon_run takes the signals. */
		sigset_t sigs;
		sigemptyset(&sigs);
		sigaddset(&sigs, SIGINT);
		sigaddset(&sigs, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &sigs, NULL);
		signal(SIGPIPE, SIG_IGN);
		if (daemon_run(&cfg, STDOUT_FILENO, &err) < 0) {
			fprintf(stderr, "remote-snapshotter: %s\n", err.msg);
			ret = 1;
		}
	}
	daemon_config_free(&cfg);
	return ret;
}
