// SPDX-License-Identifier: Apache-2.0
/* stargz mount: one layer, or every layer of an image, mounted lazily in the
 * foreground until SIGINT or SIGTERM. For debugging and tests; the daemon
 * mounts layers through the same library. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "estargz/estargz.h"
#include "fdstore/fdstore.h"
#include "layerfs/layerfs.h"

/* Layers of one stargz mount --state-dir. */
#define MAX_LAYERS 256

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
    "  --state-dir DIR       keep the mounts restartable: their FUSE connections go\n"
    "                        to an fd store (systemd's, or rs-fd-holder at\n"
    "                        DIR/fd-holder.sock) and what a successor needs to DIR;\n"
    "                        a stop or a crash leaves them mounted, and the same\n"
    "                        command run again serves them on (open files included)\n"
    "  --takeover            with --state-dir: replace a stargz mount serving it\n"
    "  --unmount-on-exit     with --state-dir: a stop unmounts (a crash still keeps)\n"
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
	M_STATE_DIR,
	M_TAKEOVER,
	M_UNMOUNT,
};

struct mount_args {
	struct reg_options reg;
	struct lfs_runtime_opts rt;
	struct lfs_layer_opts layer;
	bool all;
	const char *diff_id;   /* single layer; with --all, the config's */
	const char *state_dir; /* NULL: mounts end with the process */
	bool takeover, unmount_on_exit;
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
	    {"state-dir", required_argument, NULL, M_STATE_DIR},
	    {"takeover", no_argument, NULL, M_TAKEOVER},
	    {"unmount-on-exit", no_argument, NULL, M_UNMOUNT},
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
		case M_STATE_DIR:
			a->state_dir = optarg;
			break;
		case M_TAKEOVER:
			a->takeover = true;
			break;
		case M_UNMOUNT:
			a->unmount_on_exit = true;
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
	if ((a->takeover || a->unmount_on_exit) && !a->state_dir) {
		*status = usage_error("mount", "--takeover and --unmount-on-exit need --state-dir");
		return -1;
	}
	a->layer.read_timeout_ms = (long)a->timeout_s * 1000;
	a->reg.timeout_ms = (long)a->timeout_s * 1000;
	a->reg.retries = 1;
	return 0;
}

/* What keeps the mounts of a --state-dir alive across runs. */
struct mount_keep {
	const char *state_dir;
	struct fdstore *store;
	struct fdstore_entry *restored; /* what an earlier run kept; fd -1 once taken */
	size_t n_restored;
	struct lfs_layer *layers[MAX_LAYERS];
	struct lfs_dead *dead[MAX_LAYERS];
	char *dead_mp[MAX_LAYERS]; /* where each is mounted: a stop that unmounts detaches it */
	size_t n_layers, n_dead;
};

static int take_restored(struct mount_keep *k, const char *name)
{
	for (size_t i = 0; k && i < k->n_restored; i++)
		if (k->restored[i].fd >= 0 && strcmp(k->restored[i].name, name) == 0) {
			int fd = k->restored[i].fd;
			k->restored[i].fd = -1;
			return fd;
		}
	return -1;
}

/* Opens and mounts one layer, or takes over the connection an earlier run
 * kept under name: 0 mounted, 1 taken over (a connection whose layer cannot
 * be opened again is answered with EIO and the run goes on), < 0 error. */
static int mount_one(struct lfs_runtime *rt, const struct lfs_layer_opts *lo, const char *diff_id,
		     struct mount_keep *k, const char *name, const char *mp, struct rs_error *err)
{
	char sd[PATH_MAX];
	struct lfs_mount_opts mo = {.adopt_fd = -1};
	if (k && k->n_layers + k->n_dead >= MAX_LAYERS)
		return rs_err(err, -E2BIG, "more than %d layers", MAX_LAYERS);
	if (k) {
		if (snprintf(sd, sizeof(sd), "%s/%s", k->state_dir, name) >= (int)sizeof(sd))
			return rs_err(err, -ENAMETOOLONG, "%s: path too long", k->state_dir);
		if (mkdir(sd, 0700) < 0 && errno != EEXIST)
			return rs_err(err, -errno, "%s: %s", sd, strerror(errno));
		mo.state_dir = sd;
		mo.adopt_fd = take_restored(k, name);
	}
	struct lfs_layer *l = NULL;
	int rc = lfs_layer_open(rt, lo, &l, err);
	if (rc == 0 && diff_id)
		rc = lfs_layer_expect_diff_id(l, diff_id, NULL, NULL, err);
	if (rc == 0)
		rc = lfs_layer_mount_with(l, mp, &mo, err);
	if (rc < 0 && l)
		lfs_layer_close(l);
	if (rc < 0 && mo.adopt_fd >= 0) {
		struct lfs_dead *d = NULL;
		struct rs_error de = {0};
		if (lfs_dead_adopt(mo.adopt_fd, sd, err->msg, &d, &de) < 0) {
			close(mo.adopt_fd);
			return rc;
		}
		rs_log(RS_LOG_ERROR,
		       "stargz mount: %s cannot be served again: %s; its reads get EIO", mp,
		       err->msg);
		fprintf(stderr, "stargz mount: %s: %s; its reads get EIO\n", mp, err->msg);
		rs_error_clear(err);
		(void)fdstore_add(k->store, name, mo.adopt_fd, NULL);
		k->dead_mp[k->n_dead] = strdup(mp);
		k->dead[k->n_dead++] = d;
		return 1;
	}
	if (rc < 0)
		return rc;
	if (k) {
		struct rs_error se = {0};
		if (fdstore_add(k->store, name, lfs_layer_fuse_fd(l), &se) < 0)
			fprintf(stderr, "stargz mount: %s will not survive a restart: %s\n", mp,
				se.msg);
		k->layers[k->n_layers++] = l;
	}
	return mo.adopt_fd >= 0 ? 1 : 0;
}

/* Opens and mounts every layer of the image at DIR/<index>, each to be
 * checked against the config's diffID unless there is no background fetch
 * to check it (then the config is not fetched at all). */
static int mount_all(struct lfs_runtime *rt, struct mount_args *a, struct mount_keep *k,
		     const char *ref, const char *dir, struct rs_error *err)
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
		char name[32];
		snprintf(name, sizeof(name), "layer-%zu", i);
		rc = mount_one(rt, &lo, diff_ids ? diff_ids[i].s : NULL, k, name, mp, err);
		if (rc < 0) {
			rs_error_prefix(err, "layer %zu", i);
			break;
		}
		printf("%s %s at %s\n", rc == 1 ? "taken over" : "mounted", d->digest, mp);
		rc = 0;
		fflush(stdout);
	}
out:
	reg_manifest_free(&m);
	return rc;
}

/* The state dir's lock: one stargz mount serves it at a time; a takeover
 * waits for the old one to let go. */
static int lock_state_dir(const char *dir, bool wait, int *out, struct rs_error *err)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/lock", dir) >= (int)sizeof(path))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	for (int i = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; i++) {
		if (errno != EWOULDBLOCK || !wait || i > 3000) {
			close(fd);
			return rs_err(err, -EBUSY,
				      wait
					  ? "the stargz mount serving %s did not let go within 60 s"
					  : "another stargz mount serves %s (--takeover replaces "
					    "it)",
				      dir);
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	*out = fd;
	return 0;
}

static int keep_open(struct mount_args *a, struct mount_keep *k, int *lock_fd, struct rs_error *err)
{
	if (mkdir(a->state_dir, 0700) < 0 && errno != EEXIST)
		return rs_err(err, -errno, "%s: %s", a->state_dir, strerror(errno));
	k->state_dir = a->state_dir;
	char sock[PATH_MAX];
	if (snprintf(sock, sizeof(sock), "%s/fd-holder.sock", a->state_dir) >= (int)sizeof(sock))
		return rs_err(err, -ENAMETOOLONG, "%s: path too long", a->state_dir);
	struct fdstore_opts fo = {.holder_socket = sock};
	int rc = 0;
	if (!a->takeover)
		rc = lock_state_dir(a->state_dir, false, lock_fd, err);
	if (rc == 0)
		rc = fdstore_open(&fo, &k->store, &k->restored, &k->n_restored, err);
	if (rc == 0 && a->takeover)
		rc = lock_state_dir(a->state_dir, true, lock_fd, err);
	return rc;
}

/* Until a signal (0) or a successor took the store over (1). */
static int wait_stop(struct mount_keep *k)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	for (;;) {
		int pfd = k->store ? fdstore_poll_fd(k->store) : -1;
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
		if (poll(p, 2, 1000) < 0)
			continue;
		if (sfd >= 0 && (p[0].revents & POLLIN))
			break;
		if (pfd >= 0 && p[1].revents) {
			struct rs_error e = {0};
			int r = fdstore_check(k->store, &e);
			if (r == -ESTALE) {
				close(sfd);
				return 1;
			}
			if (r < 0) {
				fprintf(stderr, "stargz mount: fd store: %s\n", e.msg);
				sleep(1);
			}
		}
	}
	close(sfd);
	return 0;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a = {0};
	int status = 0;
	if (parse_mount_args(argc, argv, &a, &status) < 0)
		return status;
	const char *ref = argv[optind];
	/* Signals are taken by the signalfd below, in this thread only. */
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
	cleanup_free struct mount_keep *k = NULL;
	int lock_fd = -1, rc = 0;
	if (a.state_dir) {
		k = calloc(1, sizeof(*k));
		rc = k ? keep_open(&a, k, &lock_fd, &err) : rs_err(&err, -ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = reg_client_new(&a.reg, &client, &err);
	if (rc == 0)
		rc = lfs_runtime_new(&a.rt, &rt, &err);
	a.layer.client = client;
	a.layer.ref = ref;
	if (rc == 0 && a.all) {
		rc = mount_all(rt, &a, k, ref, argv[optind + 1], &err);
	} else if (rc == 0) {
		a.layer.digest = argv[optind + 1];
		rc = mount_one(rt, &a.layer, a.diff_id, k, "layer", argv[optind + 2], &err);
		if (rc >= 0)
			printf("%s %s at %s\n", rc == 1 ? "taken over" : "mounted", a.layer.digest,
			       argv[optind + 2]);
		if (rc > 0)
			rc = 0;
	}
	int ret = 0;
	bool keep = false;
	if (rc < 0) {
		ret = fail("mount", &err);
		/* Refused as unverifiable: a verification failure like a digest's. */
		if (rc == LFS_EUNVERIFIED)
			ret = EXIT_DIGEST;
	} else {
		printf("ready\n");
		fflush(stdout);
		if (k && k->store)
			fdstore_notify_ready(k->store);
		int why = wait_stop(k ? k : &(struct mount_keep){0});
		keep = k && (why == 1 || !a.unmount_on_exit);
	}
	if (k && k->store)
		fdstore_notify_stopping(k->store);
	/* Requests stuck on a dead registry end now, not at their timeout. */
	reg_client_cancel(client);
	for (size_t i = 0; k && i < k->n_layers; i++) {
		if (keep)
			lfs_layer_close_keep(k->layers[i]);
		else
			lfs_layer_close(k->layers[i]);
	}
	for (size_t i = 0; k && i < k->n_dead; i++) {
		lfs_dead_close(k->dead[i], keep ? NULL : k->dead_mp[i]);
		free(k->dead_mp[i]);
	}
	lfs_runtime_free(rt);
	reg_client_free(client);
	if (k) {
		for (size_t i = 0; i < k->n_restored; i++)
			if (k->restored[i].fd >= 0)
				close(k->restored[i].fd);
		free(k->restored);
		if (k->store && (keep || rc < 0))
			fdstore_close(k->store);
		else if (k->store)
			fdstore_stop(k->store);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	return ret;
}
