// SPDX-License-Identifier: Apache-2.0
/* stargz rpull: pull an image into containerd so that a remote snapshotter
 * mounts its layers lazily; the work is ctrd_rpull's (src/client). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client/client.h"

static const char usage_rpull[] =
    "Usage: stargz rpull [OPTION...] REF\n"
    "\n"
    "Pulls the image REF into containerd as `ctr-remote images rpull` does: the\n"
    "index, manifest and config go into containerd's content store and each layer is\n"
    "prepared on the snapshotter with the labels that let a remote snapshotter mount\n"
    "it lazily (nothing downloaded). A layer the snapshotter does not take is\n"
    "downloaded, applied and committed as `ctr images pull` would. Prints one line\n"
    "per layer (`DIGEST lazy`, `DIGEST downloaded N bytes`, `DIGEST exists`, or\n"
    "`DIGEST applied` when its blob was stored already), then the total time.\n"
    "Afterwards `ctr run --snapshotter NAME REF ...` runs the image.\n"
    "\n"
    "  --address SOCK      containerd's socket (default /run/containerd/containerd.sock)\n"
    "  --namespace NS      containerd namespace (default \"default\")\n"
    "  --snapshotter NAME  snapshotter to unpack on (default \"stargz\")\n"
    "  --platform P        os/arch[/variant] of an index (default: this host's)\n"
    "  --plain-http        talk plain HTTP to registries\n"
    "  --hosts-dir DIR     registry host configuration (certs.d layout;\n"
    "                      default /etc/containerd/certs.d)\n"
    "  --timeout SECONDS   each containerd call and registry request (default 60)\n"
    "  --debug             log each step with its time on stderr\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 pulled, 2 usage error, 3 any other error.\n";

enum {
	R_ADDRESS = 256,
	R_NAMESPACE,
	R_SNAPSHOTTER,
	R_PLATFORM,
	R_PLAIN_HTTP,
	R_HOSTS_DIR,
	R_TIMEOUT,
	R_DEBUG,
};

static void print_layer(void *ctx, size_t i, size_t n, const struct ctrd_rpull_layer *l)
{
	(void)ctx;
	(void)i;
	(void)n;
	switch (l->action) {
	case CTRD_LAYER_DOWNLOADED:
		printf("%s downloaded %" PRId64 " bytes (%.2fs)\n", l->digest, l->fetched,
		       l->seconds);
		break;
	case CTRD_LAYER_APPLIED:
		printf("%s applied (blob already stored, %.2fs)\n", l->digest, l->seconds);
		break;
	default:
		printf("%s %s\n", l->digest, ctrd_layer_action_name(l->action));
		break;
	}
	fflush(stdout);
}

int cmd_rpull(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"address", required_argument, NULL, R_ADDRESS},
	    {"namespace", required_argument, NULL, R_NAMESPACE},
	    {"snapshotter", required_argument, NULL, R_SNAPSHOTTER},
	    {"platform", required_argument, NULL, R_PLATFORM},
	    {"plain-http", no_argument, NULL, R_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, R_HOSTS_DIR},
	    {"timeout", required_argument, NULL, R_TIMEOUT},
	    {"debug", no_argument, NULL, R_DEBUG},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct reg_options ro = {0};
	struct ctrd_rpull_opts o = {.reg = &ro, .on_layer = print_layer};
	const char *platform = NULL;
	long long v;
	int c, status = 0;
	while ((c = next_opt(argc, argv, "rpull", longopts, &status)) != -1) {
		switch (c) {
		case -2:
			return status;
		case 'h':
			fputs(usage_rpull, stdout);
			return 0;
		case R_ADDRESS:
			o.address = optarg;
			break;
		case R_NAMESPACE:
			o.namespace = optarg;
			break;
		case R_SNAPSHOTTER:
			o.snapshotter = optarg;
			break;
		case R_PLATFORM:
			platform = optarg;
			break;
		case R_PLAIN_HTTP:
			ro.plain_http = true;
			break;
		case R_HOSTS_DIR:
			ro.hosts_dir = optarg;
			break;
		case R_TIMEOUT:
			if (!parse_int(optarg, 1, 86400, &v))
				return usage_error("rpull",
						   "--timeout wants 1 to 86400 seconds, not '%s'",
						   optarg);
			o.timeout_ms = (long)v * 1000;
			ro.timeout_ms = (long)v * 1000;
			break;
		case R_DEBUG:
			rs_log_set_level(RS_LOG_DEBUG);
			break;
		}
	}
	if (argc - optind != 1)
		return usage_error("rpull", argc - optind < 1 ? "needs REF" : "too many arguments");
	if (o.address && !*o.address)
		return usage_error("rpull", "--address is empty");
	if (o.namespace && !*o.namespace)
		return usage_error("rpull", "--namespace is empty");
	if (o.snapshotter && !*o.snapshotter)
		return usage_error("rpull", "--snapshotter is empty");
	o.ref = argv[optind];

	struct rs_error err = {0};
	struct reg_platform plat = {0};
	char *plat_storage = NULL;
	if (platform) {
		if (reg_platform_parse(platform, &plat, &plat_storage, &err) < 0)
			return usage_error("rpull", "--platform: %s", err.msg);
		o.platform = &plat;
	}
	struct ctrd_rpull_result res;
	int rc = ctrd_rpull(&o, &res, &err);
	free(plat_storage);
	if (rc < 0) {
		fflush(stdout);
		fail(o.ref, &err);
		return EXIT_IO;
	}
	printf("%s %s: %zu layer%s in %.2fs\n", res.image_created ? "pulled" : "updated", res.name,
	       res.n_layers, res.n_layers == 1 ? "" : "s", res.seconds);
	ctrd_rpull_result_free(&res);
	return fflush(stdout) == 0 ? 0 : EXIT_IO;
}
