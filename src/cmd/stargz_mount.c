// SPDX-License-Identifier: Apache-2.0
/* stargz mount: one layer, or every layer of an image, mounted lazily in the
 * foreground until SIGINT or SIGTERM. For debugging and tests; the daemon
 * mounts layers through the same library. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "estargz/estargz.h"
#include "layerfs/layerfs.h"

static const char usage_mount[] =
    "Usage: stargz mount [OPTION...] REF LAYER_DIGEST MOUNTPOINT\n"
    "       stargz mount --all [OPTION...] REF DIR\n"
    "\n"
    "Mount an eStargz layer of the image REF read-only at MOUNTPOINT with FUSE; its\n"
    "files are fetched from the registry when first read. With --all, every layer of\n"
    "the image is mounted at DIR/0 (the bottom layer), DIR/1, ... Runs in the\n"
    "foreground: prints `mounted DIGEST at PATH` per layer, then `ready`; unmounts\n"
    "and exits on SIGINT or SIGTERM. MOUNTPOINT/.remote-snapshotter/status.json\n"
    "tells how much of the layer is fetched.\n"
    "\n"
    "A layer is mounted only when it can be verified: its TOC against a TOC digest\n"
    "(--toc-digest, or with --all the layer's annotation\n"
    "containerd.io/snapshot/stargz/toc.digest) and every chunk of file data against\n"
    "its chunkDigest. Otherwise stargz mount exits with status 1, unless\n"
    "--allow-unverified.\n"
    "\n"
    "The whole layer is checked too, once it is all in: its uncompressed tar must\n"
    "have the diffID the image config's rootfs.diff_ids gives it (with --all; a\n"
    "config that is not valid or lists another number of layers refuses the mount,\n"
    "status 1) or --diff-id (single layer). The background fetch makes the check:\n"
    "it then reads the blob as one stream that lands the chunks still missing and\n"
    "hashes everything. A layer that fails is marked failed in status.json (state\n"
    "\"failed\", diff_id_check \"mismatch\") and every read of it gets EIO. No check\n"
    "with --no-background-fetch, nor for one layer without --diff-id.\n"
    "\n"
    "  --plain-http          talk plain HTTP to registries\n"
    "  --hosts-dir DIR       registry host configuration (certs.d layout)\n"
    "  --no-prefetch         do not prefetch the files before .prefetch.landmark\n"
    "  --no-background-fetch do not fetch the rest of the layer in the background\n"
    "  --cache-dir DIR       keep fetched chunks on disk in DIR (default: memory only)\n"
    "  --passthrough MODE    auto, on or off: complete files read by the kernel from\n"
    "                        backing files in the cache dir (FUSE passthrough; default auto)\n"
    "  --cache-max-mib N     size bound of the disk cache (default 65536)\n"
    "  --mem-cache MIB       memory for decompressed chunks (default 512)\n"
    "  --timeout SECONDS     a read not served by then fails with EIO (default 30)\n"
    "  --toc-digest DIGEST   expected sha256 of the layer's TOC (single layer)\n"
    "  --diff-id DIGEST      expected diffID of the layer, checked once it is\n"
    "                        complete (single layer; needs the background fetch)\n"
    "  --allow-unverified    mount layers without a TOC digest or chunk digests\n"
    "  --workers N           FUSE worker threads (default 16)\n"
    "  --fetchers N          fetch threads (default 4)\n"
    "  --verbose             log what happens (fetch errors are always logged)\n"
    "  -h, --help            show this help\n";

enum {
	M_PLAIN_HTTP = 256,
	M_HOSTS_DIR,
	M_NO_PREFETCH,
	M_NO_BG,
	M_CACHE_DIR,
	M_PASSTHROUGH,
	M_CACHE_MAX,
	M_MEM,
	M_TIMEOUT,
	M_TOC_DIGEST,
	M_ALL,
	M_WORKERS,
	M_FETCHERS,
	M_ALLOW_UNVERIFIED,
	M_DIFF_ID,
};

struct mount_args {
	struct reg_options reg;
	struct lfs_runtime_opts rt;
	struct lfs_layer_opts layer;
	bool all;
	const char *diff_id; /* single layer; with --all, the config's */
	long long timeout_s;
};

static int parse_mount_args(int argc, char **argv, struct mount_args *a, int *status)
{
	static const struct option longopts[] = {
	    {"plain-http", no_argument, NULL, M_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, M_HOSTS_DIR},
	    {"no-prefetch", no_argument, NULL, M_NO_PREFETCH},
	    {"no-background-fetch", no_argument, NULL, M_NO_BG},
	    {"cache-dir", required_argument, NULL, M_CACHE_DIR},
	    {"passthrough", required_argument, NULL, M_PASSTHROUGH},
	    {"cache-max-mib", required_argument, NULL, M_CACHE_MAX},
	    {"mem-cache", required_argument, NULL, M_MEM},
	    {"timeout", required_argument, NULL, M_TIMEOUT},
	    {"toc-digest", required_argument, NULL, M_TOC_DIGEST},
	    {"diff-id", required_argument, NULL, M_DIFF_ID},
	    {"allow-unverified", no_argument, NULL, M_ALLOW_UNVERIFIED},
	    {"all", no_argument, NULL, M_ALL},
	    {"workers", required_argument, NULL, M_WORKERS},
	    {"fetchers", required_argument, NULL, M_FETCHERS},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	long long v;
	int c;
	a->timeout_s = 30;
	while ((c = next_opt(argc, argv, "mount", longopts, status)) != -1) {
		switch (c) {
		case -2:
			return -1;
		case 'h':
			fputs(usage_mount, stdout);
			*status = 0;
			return -1;
		case 'v':
			rs_log_set_level(RS_LOG_INFO);
			break;
		case M_PLAIN_HTTP:
			a->reg.plain_http = true;
			break;
		case M_HOSTS_DIR:
			a->reg.hosts_dir = optarg;
			break;
		case M_NO_PREFETCH:
			a->layer.no_prefetch = true;
			break;
		case M_NO_BG:
			a->layer.no_background = true;
			break;
		case M_CACHE_DIR:
			a->rt.cache_dir = optarg;
			break;
		case M_PASSTHROUGH:
			if (lfs_passthrough_parse(optarg, &a->rt.passthrough) < 0)
				goto bad;
			break;
		case M_CACHE_MAX:
			if (!parse_int(optarg, 1, 1ll << 30, &v))
				goto bad;
			a->rt.disk_max_bytes = (uint64_t)v << 20;
			break;
		case M_MEM:
			if (!parse_int(optarg, 1, 1ll << 20, &v))
				goto bad;
			a->rt.mem_budget = (size_t)v << 20;
			break;
		case M_TIMEOUT:
			if (!parse_int(optarg, 1, 86400, &v))
				goto bad;
			a->timeout_s = v;
			break;
		case M_TOC_DIGEST:
			a->layer.toc_digest = optarg;
			break;
		case M_DIFF_ID:
			a->diff_id = optarg;
			break;
		case M_ALL:
			a->all = true;
			break;
		case M_ALLOW_UNVERIFIED:
			a->layer.allow_unverified = true;
			break;
		case M_WORKERS:
		case M_FETCHERS:
			if (!parse_int(optarg, 1, 256, &v))
				goto bad;
			*(c == M_WORKERS ? &a->rt.workers : &a->rt.fetchers) = (int)v;
			break;
		}
		continue;
	bad:
		*status = usage_error("mount", "%s: '%s' is not a number in range",
				      argv[optind - 1], optarg);
		return -1;
	}
	int want = a->all ? 2 : 3;
	if (argc - optind != want) {
		*status =
		    usage_error("mount", argc - optind < want
					     ? (a->all ? "needs REF and DIR"
						       : "needs REF, LAYER_DIGEST and MOUNTPOINT")
					     : "too many arguments");
		return -1;
	}
	uint8_t sum[RS_SHA256_LEN];
	if (!a->all && rs_digest_parse(argv[optind + 1], strlen(argv[optind + 1]), sum) < 0) {
		*status = usage_error("mount", "LAYER_DIGEST '%s' is not sha256:<64 hex digits>",
				      argv[optind + 1]);
		return -1;
	}
	if (a->all && a->layer.toc_digest) {
		*status = usage_error("mount", "--toc-digest names one layer; with --all each "
					       "layer's annotation is used");
		return -1;
	}
	if (a->diff_id && rs_digest_parse(a->diff_id, strlen(a->diff_id), sum) < 0) {
		*status = usage_error("mount", "--diff-id '%s' is not sha256:<64 hex digits>",
				      a->diff_id);
		return -1;
	}
	if (a->all && a->diff_id) {
		*status = usage_error("mount", "--diff-id names one layer; with --all the image "
					       "config's rootfs.diff_ids are used");
		return -1;
	}
	if (a->diff_id && a->layer.no_background) {
		*status = usage_error("mount", "--diff-id is checked by the background fetch; "
					       "it cannot go with --no-background-fetch");
		return -1;
	}
	a->layer.read_timeout_ms = (long)a->timeout_s * 1000;
	a->reg.timeout_ms = (long)a->timeout_s * 1000;
	a->reg.retries = 1;
	return 0;
}

/* Opens and mounts every layer of the image at DIR/<index>, each to be
 * checked against the config's diffID unless there is no background fetch
 * to check it (then the config is not fetched at all). */
static int mount_all(struct lfs_runtime *rt, struct mount_args *a, const char *ref, const char *dir,
		     struct rs_error *err)
{
	struct reg_ref r;
	int rc = reg_ref_parse(ref, &r, err);
	if (rc < 0)
		return rc;
	struct reg_manifest m = {0};
	rc = reg_resolve(a->layer.client, &r, NULL, NULL, &m, err);
	cleanup_free struct reg_diff_id *diff_ids = NULL;
	if (rc == 0 && !a->layer.no_background)
		rc = reg_config_diff_ids(a->layer.client, &r, &m, &diff_ids, err);
	reg_ref_free(&r);
	if (rc < 0)
		goto out;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = rs_err(err, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < m.n_layers && rc == 0; i++) {
		const struct reg_descriptor *d = &m.layers[i];
		char mp[PATH_MAX];
		snprintf(mp, sizeof(mp), "%s/%zu", dir, i);
		if (mkdir(mp, 0755) < 0 && errno != EEXIST) {
			rc = rs_err(err, -errno, "%s: %s", mp, strerror(errno));
			break;
		}
		struct lfs_layer_opts lo = a->layer;
		lo.digest = d->digest;
		lo.size = d->size;
		lo.toc_digest = reg_descriptor_annotation(d, ESGZ_ANNOTATION_TOC_DIGEST);
		struct lfs_layer *l;
		rc = lfs_layer_open(rt, &lo, &l, err);
		if (rc < 0) {
			rs_error_prefix(err, "layer %zu", i);
			break;
		}
		if (diff_ids)
			rc = lfs_layer_expect_diff_id(l, diff_ids[i].s, NULL, NULL, err);
		if (rc == 0)
			rc = lfs_layer_mount(l, mp, err);
		if (rc < 0) {
			lfs_layer_close(l);
			break;
		}
		printf("mounted %s at %s\n", d->digest, mp);
		fflush(stdout);
	}
out:
	reg_manifest_free(&m);
	return rc;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a = {0};
	int status = 0;
	if (parse_mount_args(argc, argv, &a, &status) < 0)
		return status;
	const char *ref = argv[optind];

	/* Signals are taken by sigtimedwait below, in this thread only. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct rs_error err = {0};
	struct reg_client *client = NULL;
	struct lfs_runtime *rt = NULL;
	int rc = reg_client_new(&a.reg, &client, &err);
	if (rc == 0)
		rc = lfs_runtime_new(&a.rt, &rt, &err);
	a.layer.client = client;
	a.layer.ref = ref;
	if (rc == 0 && a.all) {
		rc = mount_all(rt, &a, ref, argv[optind + 1], &err);
	} else if (rc == 0) {
		struct lfs_layer *l;
		a.layer.digest = argv[optind + 1];
		rc = lfs_layer_open(rt, &a.layer, &l, &err);
		if (rc == 0 && a.diff_id)
			rc = lfs_layer_expect_diff_id(l, a.diff_id, NULL, NULL, &err);
		if (rc == 0) {
			rc = lfs_layer_mount(l, argv[optind + 2], &err);
			if (rc < 0)
				lfs_layer_close(l);
			else
				printf("mounted %s at %s\n", a.layer.digest, argv[optind + 2]);
		}
	}
	int ret = 0;
	if (rc < 0) {
		ret = fail("mount", &err);
		/* Refused as unverifiable: a verification failure like a digest's. */
		if (rc == LFS_EUNVERIFIED)
			ret = EXIT_DIGEST;
	} else {
		printf("ready\n");
		fflush(stdout);
		struct timespec tick = {.tv_sec = 1};
		for (;;) {
			int sig = sigtimedwait(&sigs, NULL, &tick);
			if (sig > 0)
				break;
		}
	}
	/* Requests stuck on a dead registry end now, not at their timeout. */
	reg_client_cancel(client);
	lfs_runtime_free(rt);
	reg_client_free(client);
	return ret;
}
