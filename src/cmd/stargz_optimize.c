// SPDX-License-Identifier: Apache-2.0
/* stargz optimize: run an image's workload once, record the files it opens,
 * convert with them first; the work is conv_optimize's (src/convert). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "convert/convert.h"

static const char usage_optimize[] =
    "Usage: stargz optimize [OPTION...] SRC DST\n"
    "\n"
    "Runs the image SRC's workload once in a sandbox (runc, the image unpacked on\n"
    "overlayfs, no network; the config's user, env, working dir and\n"
    "entrypoint/cmd unless overridden), records with fanotify the files it opens,\n"
    "in order of first open, until it exits or --period ends, then converts SRC\n"
    "into DST as `stargz convert` does, every layer rebuilt with those files first\n"
    "and .prefetch.landmark after them; of a big file the workload read only in\n"
    "part (measured at 64 KiB readahead on a loop-mounted ext4), only those parts\n"
    "are prefetched by a lazy mount. SRC and DST are registry references or\n"
    "oci:DIR[:TAG]. A workload that fails still yields its list (with a warning).\n"
    "Prints {\"digest\",\"mediaType\",\"images\",\"converted\",\"kept\",\"recorded\",\n"
    "\"readInPart\"} as JSON on stdout. Needs root, runc, overlayfs and fanotify.\n"
    "\n"
    "  --entrypoint CMD    replace the config's Entrypoint (and drop its Cmd); a JSON\n"
    "                      array of strings when it starts with '[', else words\n"
    "  --args ARGS         replace the config's Cmd (same forms)\n"
    "  --env K=V           set an environment variable (repeatable)\n"
    "  --cwd DIR           working directory (default: the config's, else /)\n"
    "  --period SECONDS    how long the workload may run (default 10)\n"
    "  --record-out FILE   save the list (one absolute path a line; a file read in\n"
    "                      part: a tab and its ranges, OFFSET+LENGTH,...)\n"
    "  --record-in FILE    convert with a saved list; nothing runs (--entrypoint,\n"
    "                      --args, --env, --cwd, --period and --runc are refused)\n"
    "  --runc PATH         the runc binary (default: runc from PATH)\n"
    "  --platform P        os/arch[/variant] of an index (default: this "
    "host's)\n" CLI_CONVERT_OPTIONS_HELP "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 converted, 2 usage error, 3 any other error.\n";

enum {
	/* the options of the run, which --record-in leaves out: P_ENTRYPOINT..P_RUNC */
	P_ENTRYPOINT = 256,
	P_ARGS,
	P_ENV,
	P_CWD,
	P_PERIOD,
	P_RUNC,
	P_RECORD_OUT,
	P_RECORD_IN,
	P_PLATFORM,
	P_CHUNK,
	P_LEVEL,
	P_ZSTD,
	P_OCI,
	P_THREADS,
	P_PLAIN_HTTP,
	P_HOSTS_DIR,
};

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: optimize: warning: %s\n", prog, msg);
}

static void block_signals(bool block)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL);
}

/* Recorded files, not counting a landmark line put in a list by hand. */
static size_t files_in(const struct conv_record_result *r)
{
	size_t n = r->n_paths;
	for (size_t i = 0; i < r->n_paths; i++)
		n -= strcmp(r->paths[i], CONV_RECORD_LANDMARK) == 0;
	return n;
}

/* Says how the workload ended; from here on a signal just stops us. */
static void on_recorded(void *ctx, const struct conv_record_result *r)
{
	bool ran = *(bool *)ctx;
	if (ran) {
		size_t n = files_in(r), part = r->n_touched;
		fprintf(stderr, "%s: optimize: recorded %zu file%s in %.1fs", prog, n,
			n == 1 ? "" : "s", r->seconds);
		if (part)
			fprintf(stderr, " (%zu read in part: only those parts prefetched)", part);
		fputc('\n', stderr);
		if (r->timed_out)
			warn("the workload was still running when the period ended and was "
			     "killed; converting with the files it opened until then");
		else if (r->exit_status > 128)
			warn("the workload was killed by signal %d; converting with the files it "
			     "opened",
			     r->exit_status - 128);
		else if (r->exit_status != 0)
			warn("the workload exited with status %d; converting with the files it "
			     "opened",
			     r->exit_status);
		if (r->incomplete)
			warn("some opens were not recorded (event queue overflow, or more than %d "
			     "files)",
			     CONV_RECORD_MAX_PATHS);
		fflush(stderr);
	}
	block_signals(false);
}

static int split(const char *opt, const char *val, char ***v, size_t *n)
{
	struct rs_error err = {0};
	conv_strv_free(*v, *n);
	*v = NULL;
	*n = 0;
	if (conv_record_split_args(val, v, n, &err) < 0)
		return usage_error("optimize", "%s: %s", opt, err.msg);
	return 0;
}

struct opts {
	struct reg_options ro;
	struct conv_optimize_options oo;
	char **ep, **args;
	size_t n_ep, n_args;
	const char **env;
	size_t n_env;
};

static int parse(int argc, char **argv, struct opts *p)
{
	static const struct option longopts[] = {
	    {"entrypoint", required_argument, NULL, P_ENTRYPOINT},
	    {"args", required_argument, NULL, P_ARGS},
	    {"env", required_argument, NULL, P_ENV},
	    {"cwd", required_argument, NULL, P_CWD},
	    {"period", required_argument, NULL, P_PERIOD},
	    {"record-out", required_argument, NULL, P_RECORD_OUT},
	    {"record-in", required_argument, NULL, P_RECORD_IN},
	    {"runc", required_argument, NULL, P_RUNC},
	    {"platform", required_argument, NULL, P_PLATFORM},
	    {"chunk-size", required_argument, NULL, P_CHUNK},
	    {"level", required_argument, NULL, P_LEVEL},
	    {"zstdchunked", no_argument, NULL, P_ZSTD},
	    {"oci", no_argument, NULL, P_OCI},
	    {"threads", required_argument, NULL, P_THREADS},
	    {"plain-http", no_argument, NULL, P_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, P_HOSTS_DIR},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct conv_record_options *r = &p->oo.record;
	struct conv_options *c = &p->oo.convert;
	long long v;
	char *end;
	int ch, status = 0, run_opt = 0;
	while ((ch = next_opt(argc, argv, "optimize", longopts, &status)) != -1) {
		if (ch >= P_ENTRYPOINT && ch <= P_RUNC && !run_opt)
			run_opt = ch;
		switch (ch) {
		case -2:
			return status;
		case 'h':
			fputs(usage_optimize, stdout);
			return -1;
		case P_ENTRYPOINT:
			if ((status = split("--entrypoint", optarg, &p->ep, &p->n_ep)))
				return status;
			r->set_entrypoint = true;
			break;
		case P_ARGS:
			if ((status = split("--args", optarg, &p->args, &p->n_args)))
				return status;
			r->set_args = true;
			break;
		case P_ENV: {
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return usage_error("optimize", "--env wants K=V, not '%s'", optarg);
			const char **ne = realloc(p->env, (p->n_env + 1) * sizeof(*ne));
			if (!ne)
				return EXIT_IO;
			p->env = ne;
			p->env[p->n_env++] = optarg;
			break;
		}
		case P_CWD:
			r->cwd = optarg;
			break;
		case P_PERIOD:
			errno = 0;
			r->period = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(r->period > 0) || r->period > 86400)
				return usage_error(
				    "optimize", "--period wants seconds (0 < s <= 86400), not '%s'",
				    optarg);
			break;
		case P_RECORD_OUT:
			p->oo.record_out = optarg;
			break;
		case P_RECORD_IN:
			p->oo.record_in = optarg;
			break;
		case P_RUNC:
			r->runc = optarg;
			break;
		case P_PLATFORM:
			r->platform = c->platform = optarg;
			break;
		case P_CHUNK:
			if (!parse_int(optarg, 1, 1ll << 30, &v))
				return usage_error("optimize",
						   "--chunk-size wants 1 to %lld bytes, not '%s'",
						   1ll << 30, optarg);
			c->chunk_size = v;
			break;
		case P_LEVEL:
			if (!parse_int(optarg, 1, 9, &v))
				return usage_error("optimize", "--level wants 1 to 9, not '%s'",
						   optarg);
			c->level = (int)v;
			break;
		case P_ZSTD:
			c->zstd_chunked = true;
			break;
		case P_OCI:
			c->oci = true;
			break;
		case P_THREADS:
			if (!parse_int(optarg, 0, 4096, &v))
				return usage_error("optimize",
						   "--threads wants 0 to 4096, not '%s'", optarg);
			c->threads = (int)v;
			break;
		case P_PLAIN_HTTP:
			p->ro.plain_http = true;
			break;
		case P_HOSTS_DIR:
			p->ro.hosts_dir = optarg;
			break;
		}
	}
	if (p->oo.record_in && run_opt) {
		const struct option *o = longopts;
		while (o->val != run_opt)
			o++;
		return usage_error("optimize",
				   "--%s does not apply with --record-in (nothing runs)", o->name);
	}
	if (argc - optind != 2)
		return usage_error("optimize",
				   argc - optind < 2 ? "needs SRC and DST" : "too many arguments");
	r->entrypoint = (const char *const *)p->ep;
	r->n_entrypoint = p->n_ep;
	r->args = (const char *const *)p->args;
	r->n_args = p->n_args;
	r->env = p->env;
	r->n_env = p->n_env;
	r->reg = c->reg = &p->ro;
	return 0;
}

int cmd_optimize(int argc, char **argv)
{
	struct opts p = {0};
	int rc = parse(argc, argv, &p);
	if (rc != 0) {
		rc = rc < 0 ? 0 : rc;
		goto out;
	}
	bool ran = !p.oo.record_in;
	p.oo.on_recorded = on_recorded;
	p.oo.ctx = &ran;
	/* until the workload is over, SIGINT/SIGTERM/SIGHUP reach conv_record,
	 * which cleans up (container, mount, temp dir) and fails with -EINTR */
	if (ran)
		block_signals(true);
	struct conv_optimize_result res;
	struct rs_error err = {0};
	const char *src = argv[optind], *dst = argv[optind + 1];
	if (conv_optimize(src, dst, &p.oo, NULL, &res, &err) < 0) {
		rc = fail("optimize", &err);
		block_signals(false);
		if (err.code == -EINTR)
			rc = 130;
	} else {
		size_t n = files_in(&res.record);
		printf("{\"digest\":\"%s\",\"mediaType\":\"%s\",\"images\":%zu,\"converted\":%zu,"
		       "\"kept\":%zu,\"recorded\":%zu,\"readInPart\":%zu}\n",
		       res.convert.digest, res.convert.media_type, res.convert.images,
		       res.convert.converted, res.convert.kept, n, res.record.n_touched);
		rc = fflush(stdout) == 0 ? 0 : EXIT_IO;
	}
	conv_record_result_free(&res.record);
out:
	conv_strv_free(p.ep, p.n_ep);
	conv_strv_free(p.args, p.n_args);
	free(p.env);
	return rc;
}
