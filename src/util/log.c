// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

static enum rs_log_level log_level = RS_LOG_INFO;
static bool log_json;

int rs_log_level_parse(const char *s, enum rs_log_level *out)
{
	static const char *const names[] = {[RS_LOG_DEBUG] = "debug",
					    [RS_LOG_INFO] = "info",
					    [RS_LOG_WARN] = "warn",
					    [RS_LOG_ERROR] = "error"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum rs_log_level)i;
			return 0;
		}
	return -EINVAL;
}

void rs_log_set_level(enum rs_log_level lvl)
{
	log_level = lvl;
}

void rs_log_set_json(bool json)
{
	log_json = json;
}

static void json_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

void rs_log(enum rs_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (lvl < log_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	flockfile(stderr);
	if (log_json) {
		fprintf(stderr, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"", when,
			ts.tv_nsec / 1000000, names[lvl]);
		json_escape(stderr, msg);
		fputs("\"}\n", stderr);
	} else {
		fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000, names[lvl], msg);
	}
	funlockfile(stderr);
}
