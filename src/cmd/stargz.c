// SPDX-License-Identifier: Apache-2.0
/* stargz: the command-line tool. Argument parsing and printing only; the work
 * is done by src/estargz, src/convert and src/layerfs. Exit codes: 0 ok, 1 a digest did not match,
 * 2 usage, 3 I/O or format error. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "convert/convert.h"
#include "estargz/estargz.h"

#ifndef RS_VERSION
#define RS_VERSION "0.1.0"
#endif

const char *prog = "stargz";

static const char usage_main[] =
    "Usage: stargz COMMAND [OPTION...] ARG...\n"
    "\n"
    "Build, inspect, verify and extract eStargz and zstd:chunked layers.\n"
    "\n"
    "Commands:\n"
    "  build    convert a tar (plain, gzip or zstd) into an eStargz layer\n"
    "  verify   check a layer's TOC digest and every chunk and file digest\n"
    "  ls       list a layer's entries like `tar -tv`\n"
    "  toc      print a layer's TOC JSON\n"
    "  extract  write a layer's files into a directory\n"
    "  convert  convert an image (registry or oci:DIR[:TAG]) to eStargz\n"
    "  optimize run an image's workload, then convert with the files it opened first\n"
    "  inspect  show an image's manifest, config and each layer's format\n"
    "  mount    mount a layer (or every layer) of an image lazily with FUSE\n"
    "  rpull    pull an image into containerd, its layers mounted lazily by the snapshotter\n"
    "  store    serve an additional layer store for podman (containers/storage)\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help (or `stargz COMMAND --help`)\n"
    "      --version  show the version\n"
    "\n"
    "Environment: STARGZ_LOG_LEVEL=debug logs every level on stderr.\n"
    "\n"
    "Exit status: 0 ok, 1 a digest did not match, 2 usage error, 3 I/O or format error.\n";

static const char usage_build[] =
    "Usage: stargz build [OPTION...] IN OUT\n"
    "\n"
    "Converts the tar IN (plain, gzip or zstd; `-` for stdin) into an eStargz\n"
    "blob OUT (`-` for stdout). Prints {\"tocDigest\",\"diffID\",\"digest\",\"size\",\n"
    "\"uncompressedSize\"} as JSON on stdout, or on stderr when OUT is `-`.\n"
    "\n"
    "  --chunk-size N          bytes per chunk of large files (default 4194304)\n"
    "  --level N               compression level 1-9 (default 9)\n"
    "  --prioritized-files F   F lists files in access order, one path a line\n"
    "  --zstdchunked           write zstd:chunked instead of eStargz\n"
    "  --threads N             compression threads (default: every core)\n"
    "  -h, --help              show this help\n";

static const char usage_verify[] =
    "Usage: stargz verify [--toc-digest DIGEST] BLOB\n"
    "\n"
    "Checks the TOC digest (against DIGEST when given) and every chunk and file\n"
    "digest of BLOB. Exits 1 when a digest does not match.\n"
    "\n"
    "  --toc-digest DIGEST     expected sha256 of the TOC JSON (sha256:...)\n"
    "  -h, --help              show this help\n";

static const char usage_ls[] = "Usage: stargz ls [--json] BLOB\n"
			       "\n"
			       "Lists the entries of BLOB's TOC like `tar -tv` (dates in UTC).\n"
			       "\n"
			       "  --json      one JSON object a line instead\n"
			       "  -h, --help  show this help\n";

static const char usage_toc[] = "Usage: stargz toc BLOB\n"
				"\n"
				"Prints BLOB's TOC JSON as stored.\n"
				"\n"
				"  -h, --help  show this help\n";

static const char usage_extract[] =
    "Usage: stargz extract [OPTION...] BLOB DIR\n"
    "\n"
    "Writes the layer's files into DIR (created when missing) as GNU tar would,\n"
    "checking every digest on the way. Owners are kept when run as root.\n"
    "\n"
    "  --no-same-owner  don't restore owners\n"
    "  --no-xattrs      don't restore extended attributes\n"
    "  -h, --help       show this help\n";

static const char usage_convert[] =
    "Usage: stargz convert [OPTION...] SRC DST\n"
    "\n"
    "Converts the image SRC into DST, each a registry reference (host/repo:tag)\n"
    "or an OCI image layout oci:DIR[:TAG]. Every layer becomes eStargz (layers\n"
    "that already are stay as they are), the config's diff_ids are rewritten,\n"
    "and layers, config, manifest (and an index for several platforms) are\n"
    "written, the tag last. Prints {\"digest\",\"mediaType\",\"images\",\n"
    "\"converted\",\"kept\"} as JSON on stdout.\n"
    "\n"
    "  --platform P        os/arch[/variant] to convert (default: this host's)\n"
    "  --all-platforms     every platform of an index\n" CLI_CONVERT_OPTIONS_HELP
    "  -h, --help          show this help\n";

static const char usage_inspect[] =
    "Usage: stargz inspect [OPTION...] REF\n"
    "\n"
    "Prints, as JSON, the image REF's index (if any), manifest and config, and\n"
    "for each layer whether its footer and TOC make it eStargz, zstd:chunked or\n"
    "neither, its TOC digest (annotated and computed) and its sizes. REF is a\n"
    "registry reference or oci:DIR[:TAG].\n"
    "\n"
    "  --platform P        os/arch[/variant] of an index (default: this host's)\n"
    "  --plain-http        talk plain HTTP to registries\n"
    "  --hosts-dir DIR     registry host configuration (certs.d layout)\n"
    "  -h, --help          show this help\n";

int usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (*cmd)
		fprintf(stderr, "%s: %s: %s (see '%s %s --help')\n", prog, cmd, msg, prog, cmd);
	else
		fprintf(stderr, "%s: %s (see '%s --help')\n", prog, msg, prog);
	return EXIT_USAGE;
}

/* One line: "stargz: FILE: problem", without repeating FILE when the library
 * message already starts with it. */
int fail(const char *file, const struct rs_error *err)
{
	const char *msg = err->msg[0] ? err->msg : strerror(-err->code);
	size_t flen = strlen(file);
	bool named = strncmp(msg, file, flen) == 0 && msg[flen] == ':';
	char line[RS_ERROR_MSG_MAX + PATH_MAX + 16];
	if (named)
		snprintf(line, sizeof(line), "%s: %s", prog, msg);
	else
		snprintf(line, sizeof(line), "%s: %s: %s", prog, file, msg);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s\n", line);
	return err->code == ESGZ_EDIGEST ? EXIT_DIGEST : EXIT_IO;
}

static int fail_errno(const char *file, int e, const char *what)
{
	struct rs_error err;
	rs_err(&err, -e, "%s%s%s", what ? what : "", what ? ": " : "", strerror(e));
	return fail(file, &err);
}

bool parse_int(const char *s, long long min, long long max, long long *out)
{
	if (!s || !*s || *s == '+' || *s == ' ')
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* getopt over argv[0..argc) where argv[0] is the command name. Returns the
 * option, -1 at the end, or -2 after printing a usage error. */
int next_opt(int argc, char **argv, const char *cmd, const struct option *longopts, int *status)
{
	int c = getopt_long(argc, argv, ":h", longopts, NULL);
	if (c == '?') {
		if (optopt)
			*status = usage_error(cmd, "unknown option '-%c'", optopt);
		else
			*status = usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		return -2;
	}
	if (c == ':') {
		*status = usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
		return -2;
	}
	return c;
}

void reset_getopt(void)
{
	optind = 0; /* glibc: full reinitialisation */
	opterr = 0;
}

/* Reads one path a line; blank lines are skipped. */
static int read_list(const char *path, char ***out, size_t *n, struct rs_error *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return rs_err(err, -errno, "%s: %s", path, strerror(errno));
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	int rc = 0;
	while ((len = getline(&line, &lcap, f)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				rc = rs_err(err, -ENOMEM, "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		v[cnt] = strdup(line);
		if (!v[cnt]) {
			rc = rs_err(err, -ENOMEM, "out of memory");
			break;
		}
		cnt++;
	}
	if (rc == 0 && ferror(f))
		rc = rs_err(err, -EIO, "%s: read error", path);
	free(line);
	fclose(f);
	if (rc < 0) {
		for (size_t i = 0; i < cnt; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmd_build(int argc, char **argv)
{
	enum { O_CHUNK = 256, O_LEVEL, O_PRIO, O_ZSTD, O_THREADS };
	static const struct option longopts[] = {
	    {"chunk-size", required_argument, NULL, O_CHUNK},
	    {"level", required_argument, NULL, O_LEVEL},
	    {"prioritized-files", required_argument, NULL, O_PRIO},
	    {"zstdchunked", no_argument, NULL, O_ZSTD},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct esgz_build_opts opts = {0};
	const char *prio_path = NULL;
	long long v;
	int c, status = 0;
	while ((c = next_opt(argc, argv, "build", longopts, &status)) != -1) {
		switch (c) {
		case -2:
			return status;
		case 'h':
			fputs(usage_build, stdout);
			return 0;
		case O_CHUNK:
			if (!parse_int(optarg, 1, 1ll << 30, &v))
				return usage_error("build",
						   "--chunk-size wants 1 to %lld bytes, not '%s'",
						   1ll << 30, optarg);
			opts.chunk_size = v;
			break;
		case O_LEVEL:
			if (!parse_int(optarg, 1, 9, &v))
				return usage_error("build", "--level wants 1 to 9, not '%s'",
						   optarg);
			opts.level = (int)v;
			break;
		case O_PRIO:
			prio_path = optarg;
			break;
		case O_ZSTD:
			opts.zstd_chunked = true;
			break;
		case O_THREADS:
			if (!parse_int(optarg, 0, 4096, &v))
				return usage_error("build", "--threads wants 0 to 4096, not '%s'",
						   optarg);
			opts.threads = (int)v;
			break;
		}
	}
	if (argc - optind != 2)
		return usage_error("build",
				   argc - optind < 2 ? "needs IN and OUT" : "too many arguments");
	const char *in = argv[optind], *outp = argv[optind + 1];
	bool to_stdout = strcmp(outp, "-") == 0;
	if (to_stdout && isatty(STDOUT_FILENO))
		return usage_error("build", "refusing to write a blob to a terminal");

	struct rs_error err = {0};
	char **prio = NULL;
	size_t nprio = 0;
	if (prio_path && read_list(prio_path, &prio, &nprio, &err) < 0)
		return fail(prio_path, &err);
	opts.prioritized = (const char *const *)prio;
	opts.n_prioritized = nprio;

	int rc = EXIT_IO;
	int in_fd = STDIN_FILENO, out_fd = STDOUT_FILENO;
	if (strcmp(in, "-") != 0) {
		in_fd = open(in, O_RDONLY | O_CLOEXEC);
		if (in_fd < 0) {
			rc = fail_errno(in, errno, NULL);
			goto out;
		}
	}
	if (!to_stdout) {
		out_fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			rc = fail_errno(outp, errno, NULL);
			goto out;
		}
	}
	struct esgz_build_result res = {0};
	if (esgz_build(in_fd, out_fd, &opts, &res, &err) < 0) {
		rc = fail(strcmp(in, "-") ? in : "<stdin>", &err);
		if (!to_stdout)
			unlink(outp);
		goto out;
	}
	if (!to_stdout && close(rs_steal_fd(&out_fd)) < 0) {
		rc = fail_errno(outp, errno, "close");
		unlink(outp);
		goto out;
	}
	FILE *report = to_stdout ? stderr : stdout;
	fprintf(report,
		"{\"tocDigest\":\"%s\",\"diffID\":\"%s\",\"digest\":\"%s\",\"size\":%" PRId64
		",\"uncompressedSize\":%" PRId64 "}\n",
		res.toc_digest, res.diff_id, res.digest, res.size, res.uncompressed_size);
	rc = fflush(report) == 0 ? 0 : EXIT_IO;
out:
	if (in_fd > STDERR_FILENO)
		close(in_fd);
	if (out_fd > STDERR_FILENO)
		close(out_fd);
	free_list(prio, nprio);
	return rc;
}

/* Opens BLOB and its TOC; on failure prints the error and returns the exit code. */
static int open_blob(const char *path, const struct esgz_open_opts *opts, struct esgz_reader *r,
		     struct esgz_blob **b)
{
	struct rs_error err = {0};
	if (esgz_reader_open_file(r, path, &err) < 0)
		return fail(path, &err);
	if (esgz_open(r, opts, b, &err) < 0) {
		esgz_reader_close(r);
		return fail(path, &err);
	}
	return 0;
}

/* Commands that take options without values plus positional arguments. */
static int simple_opts(int argc, char **argv, const char *cmd, const char *usage,
		       const struct option *longopts, int nargs, const char *argdesc, int *flags,
		       int *status)
{
	int c;
	while ((c = next_opt(argc, argv, cmd, longopts, status)) != -1) {
		if (c == -2)
			return -1;
		if (c == 'h') {
			fputs(usage, stdout);
			*status = 0;
			return -1;
		}
		if (c >= 256)
			*flags |= 1 << (c - 256);
	}
	if (argc - optind != nargs) {
		*status = usage_error(
		    cmd, argc - optind < nargs ? "needs %s" : "too many arguments", argdesc);
		return -1;
	}
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"toc-digest", required_argument, NULL, 256},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *want = NULL;
	int c, status = 0;
	while ((c = next_opt(argc, argv, "verify", longopts, &status)) != -1) {
		if (c == -2)
			return status;
		if (c == 'h') {
			fputs(usage_verify, stdout);
			return 0;
		}
		if (c == 256) {
			uint8_t sum[RS_SHA256_LEN];
			if (rs_digest_parse(optarg, strlen(optarg), sum) < 0)
				return usage_error(
				    "verify", "--toc-digest wants sha256:<64 hex digits>, not '%s'",
				    optarg);
			want = optarg;
		}
	}
	if (argc - optind != 1)
		return usage_error("verify",
				   argc - optind < 1 ? "needs BLOB" : "too many arguments");
	const char *path = argv[optind];
	struct esgz_open_opts oo = {.expected_toc_digest = want};
	struct esgz_reader r = {0};
	struct esgz_blob *b = NULL;
	int rc = open_blob(path, &oo, &r, &b);
	if (rc)
		return rc;
	struct rs_error err = {0};
	struct esgz_verify_stats st = {0};
	if (esgz_verify(b, &r, &st, &err) < 0) {
		rc = fail(path, &err);
	} else {
		char toc[RS_DIGEST_STR_LEN];
		rs_digest_format(b->toc_digest, toc);
		printf("%s: ok: %s, %" PRIu64 " entries, %" PRIu64 " chunks, %" PRIu64
		       " files verified, %" PRIu64 " bytes, TOC %s\n",
		       path, esgz_format_name(b->footer.format), esgz_index_toc_entries(b->index),
		       st.chunks, st.files, st.bytes, toc);
		rc = fflush(stdout) == 0 ? 0 : EXIT_IO;
	}
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return rc;
}

static int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 256},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int flags = 0, status = 0;
	if (simple_opts(argc, argv, "ls", usage_ls, longopts, 1, "BLOB", &flags, &status) < 0)
		return status;
	const char *path = argv[optind];
	struct esgz_open_opts oo = {0};
	struct esgz_reader r = {0};
	struct esgz_blob *b = NULL;
	int rc = open_blob(path, &oo, &r, &b);
	if (rc)
		return rc;
	struct rs_error err = {0};
	if (esgz_list(b, stdout, flags & 1, &err) < 0)
		rc = fail("<stdout>", &err);
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return rc;
}

static int cmd_toc(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int flags = 0, status = 0;
	if (simple_opts(argc, argv, "toc", usage_toc, longopts, 1, "BLOB", &flags, &status) < 0)
		return status;
	const char *path = argv[optind];
	struct esgz_open_opts oo = {.keep_toc_json = true};
	struct esgz_reader r = {0};
	struct esgz_blob *b = NULL;
	int rc = open_blob(path, &oo, &r, &b);
	if (rc)
		return rc;
	if (b->toc_json.len &&
	    fwrite(b->toc_json.data, 1, b->toc_json.len, stdout) != b->toc_json.len)
		rc = fail_errno("<stdout>", errno ? errno : EIO, "write");
	else if (fflush(stdout) != 0)
		rc = fail_errno("<stdout>", errno ? errno : EIO, "write");
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return rc;
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
	size_t len = strlen(dir);
	cleanup_free char *p = strdup(dir);
	if (!p)
		return -ENOMEM;
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char saved = p[i];
		p[i] = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		p[i] = saved;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int cmd_extract(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"no-same-owner", no_argument, NULL, 256},
	    {"no-xattrs", no_argument, NULL, 257},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int flags = 0, status = 0;
	if (simple_opts(argc, argv, "extract", usage_extract, longopts, 2, "BLOB and DIR", &flags,
			&status) < 0)
		return status;
	const char *path = argv[optind], *dir = argv[optind + 1];
	struct esgz_open_opts oo = {0};
	struct esgz_reader r = {0};
	struct esgz_blob *b = NULL;
	int rc = open_blob(path, &oo, &r, &b);
	if (rc)
		return rc;
	int e = make_dirs(dir);
	if (e < 0) {
		rc = fail_errno(dir, -e, NULL);
	} else {
		struct esgz_extract_opts xo = {
		    .no_same_owner = (flags & 1) || geteuid() != 0,
		    .no_xattrs = flags & 2,
		};
		struct rs_error err = {0};
		if (esgz_extract(b, &r, dir, &xo, &err) < 0)
			rc = fail(path, &err);
	}
	esgz_blob_free(b);
	esgz_reader_close(&r);
	return rc;
}

/* One line per layer on a terminal: rewritten in place while it runs. */
static void progress_line(void *ctx, const struct conv_event *ev)
{
	(void)ctx;
	switch (ev->kind) {
	case CONV_EV_IMAGE:
		fprintf(stderr, "%s: %zu layer%s\n", ev->platform, ev->n_layers,
			ev->n_layers == 1 ? "" : "s");
		break;
	case CONV_EV_LAYER_START:
		fprintf(stderr, "  [%zu/%zu] %.19s %10.1f MB ...", ev->layer + 1, ev->n_layers,
			ev->digest, (double)ev->size / 1e6);
		break;
	case CONV_EV_LAYER_DONE:
		fprintf(stderr, "\r\033[K  [%zu/%zu] %.19s %10.1f MB %s %.19s %10.1f MB %6.1fs\n",
			ev->layer + 1, ev->n_layers, ev->digest, (double)ev->size / 1e6,
			ev->action == CONV_LAYER_KEPT ? "kept     " : "converted", ev->new_digest,
			(double)ev->new_size / 1e6, ev->seconds);
		break;
	case CONV_EV_PUSHED:
		fprintf(stderr, "wrote %s\n", ev->digest);
		break;
	}
	fflush(stderr);
}

/* Options shared by convert and inspect for reaching registries. */
enum {
	O_PLAIN_HTTP = 256,
	O_HOSTS_DIR,
	O_PLATFORM,
	O_ALL,
	O_CCHUNK,
	O_CLEVEL,
	O_CZSTD,
	O_OCI,
	O_CTHREADS
};

static int cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"plain-http", no_argument, NULL, O_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, O_HOSTS_DIR},
	    {"platform", required_argument, NULL, O_PLATFORM},
	    {"all-platforms", no_argument, NULL, O_ALL},
	    {"chunk-size", required_argument, NULL, O_CCHUNK},
	    {"level", required_argument, NULL, O_CLEVEL},
	    {"zstdchunked", no_argument, NULL, O_CZSTD},
	    {"oci", no_argument, NULL, O_OCI},
	    {"threads", required_argument, NULL, O_CTHREADS},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct reg_options ro = {0};
	struct conv_options co = {.reg = &ro};
	long long v;
	int c, status = 0;
	while ((c = next_opt(argc, argv, "convert", longopts, &status)) != -1) {
		switch (c) {
		case -2:
			return status;
		case 'h':
			fputs(usage_convert, stdout);
			return 0;
		case O_PLAIN_HTTP:
			ro.plain_http = true;
			break;
		case O_HOSTS_DIR:
			ro.hosts_dir = optarg;
			break;
		case O_PLATFORM:
			co.platform = optarg;
			break;
		case O_ALL:
			co.all_platforms = true;
			break;
		case O_CCHUNK:
			if (!parse_int(optarg, 1, 1ll << 30, &v))
				return usage_error("convert",
						   "--chunk-size wants 1 to %lld bytes, not '%s'",
						   1ll << 30, optarg);
			co.chunk_size = v;
			break;
		case O_CLEVEL:
			if (!parse_int(optarg, 1, 9, &v))
				return usage_error("convert", "--level wants 1 to 9, not '%s'",
						   optarg);
			co.level = (int)v;
			break;
		case O_CZSTD:
			co.zstd_chunked = true;
			break;
		case O_OCI:
			co.oci = true;
			break;
		case O_CTHREADS:
			if (!parse_int(optarg, 0, 4096, &v))
				return usage_error("convert", "--threads wants 0 to 4096, not '%s'",
						   optarg);
			co.threads = (int)v;
			break;
		}
	}
	if (co.platform && co.all_platforms)
		return usage_error("convert", "--platform and --all-platforms exclude each other");
	if (argc - optind != 2)
		return usage_error("convert",
				   argc - optind < 2 ? "needs SRC and DST" : "too many arguments");
	struct conv_progress pr = {.fn = progress_line};
	struct conv_result res;
	struct rs_error err = {0};
	if (conv_convert(argv[optind], argv[optind + 1], &co, isatty(STDERR_FILENO) ? &pr : NULL,
			 &res, &err) < 0)
		return fail("convert", &err);
	printf("{\"digest\":\"%s\",\"mediaType\":\"%s\",\"images\":%zu,\"converted\":%zu,"
	       "\"kept\":%zu}\n",
	       res.digest, res.media_type, res.images, res.converted, res.kept);
	return fflush(stdout) == 0 ? 0 : EXIT_IO;
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"plain-http", no_argument, NULL, O_PLAIN_HTTP},
	    {"hosts-dir", required_argument, NULL, O_HOSTS_DIR},
	    {"platform", required_argument, NULL, O_PLATFORM},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct reg_options ro = {0};
	struct conv_inspect_options io = {.reg = &ro};
	int c, status = 0;
	while ((c = next_opt(argc, argv, "inspect", longopts, &status)) != -1) {
		switch (c) {
		case -2:
			return status;
		case 'h':
			fputs(usage_inspect, stdout);
			return 0;
		case O_PLAIN_HTTP:
			ro.plain_http = true;
			break;
		case O_HOSTS_DIR:
			ro.hosts_dir = optarg;
			break;
		case O_PLATFORM:
			io.platform = optarg;
			break;
		}
	}
	if (argc - optind != 1)
		return usage_error("inspect",
				   argc - optind < 1 ? "needs REF" : "too many arguments");
	struct rs_error err = {0};
	if (conv_inspect(argv[optind], &io, stdout, &err) < 0)
		return fail("inspect", &err);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"build", cmd_build},       {"verify", cmd_verify},   {"ls", cmd_ls},
	    {"toc", cmd_toc},           {"extract", cmd_extract}, {"convert", cmd_convert},
	    {"inspect", cmd_inspect},   {"mount", cmd_mount},     {"rpull", cmd_rpull},
	    {"optimize", cmd_optimize}, {"store", cmd_store},
	};
	if (argc < 2)
		return usage_error("", "missing command");
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("stargz %s\n", RS_VERSION);
		return 0;
	}
	rs_log_set_level(RS_LOG_WARN);
	/* Every level, for tests that check what even debug lines may hold. */
	const char *lvl = getenv("STARGZ_LOG_LEVEL");
	if (lvl && strcmp(lvl, "debug") == 0)
		rs_log_set_level(RS_LOG_DEBUG);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmd, cmds[i].name) == 0) {
			reset_getopt();
			return cmds[i].fn(argc - 1, argv + 1);
		}
	}
	if (cmd[0] == '-')
		return usage_error("", "unknown option '%s'", cmd);
	return usage_error("", "unknown command '%s'", cmd);
}
