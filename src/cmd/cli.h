/* SPDX-License-Identifier: Apache-2.0 */
/* What the stargz subcommands share: exit codes, usage errors, option parsing. */
#ifndef RS_CMD_CLI_H
#define RS_CMD_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "util/util.h"

enum { EXIT_DIGEST = 1, EXIT_USAGE = 2, EXIT_IO = 3 };

extern const char *prog;

/* Prints "stargz: CMD: message (see ...)" and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the error on one line; returns EXIT_DIGEST or EXIT_IO. */
int fail(const char *file, const struct rs_error *err);
bool parse_int(const char *s, long long min, long long max, long long *out);
/* getopt_long over argv[0..argc); -1 at the end, -2 after a usage error. */
int next_opt(int argc, char **argv, const char *cmd, const struct option *longopts, int *status);
void reset_getopt(void);

int cmd_mount(int argc, char **argv);
int cmd_rpull(int argc, char **argv);
int cmd_optimize(int argc, char **argv);
int cmd_store(int argc, char **argv);

/* The conversion options `convert` and `optimize` share, for their --help. */
#define CLI_CONVERT_OPTIONS_HELP                                                                   \
	"  --chunk-size N      bytes per chunk of large files (default 4194304)\n"                 \
	"  --level N           compression level 1-9 (default 9)\n"                                \
	"  --zstdchunked       write zstd:chunked layers (OCI media types)\n"                      \
	"  --oci               OCI media types even for a docker image\n"                          \
	"  --threads N         compression threads (default: every core)\n"                        \
	"  --plain-http        talk plain HTTP to registries\n"                                    \
	"  --hosts-dir DIR     registry host configuration (certs.d layout;\n"                     \
	"                      default /etc/containerd/certs.d)\n"

#endif
