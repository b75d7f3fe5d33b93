/* SPDX-License-Identifier: Apache-2.0 */
/* Defaults of the daemon's configuration, and what follows from root. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

void daemon_config_defaults(struct daemon_config *c)
{
	memset(c, 0, sizeof(*c));
	c->api_threads = 8;
	c->cache_max_mib = 65536;
	c->mem_cache_mib = 512;
	c->prefetch = true;
	c->background_fetch = true;
	c->read_timeout_sec = 30;
	c->fuse_workers = 16;
	c->fetchers = 4;
	c->request_timeout_sec = 30;
}

static int set_default(char **dst, const char *value)
{
	if (*dst && **dst)
		return 0;
	free(*dst);
	*dst = strdup(value);
	return *dst ? 0 : -ENOMEM;
}

int daemon_config_finish(struct daemon_config *c, struct rs_error *err)
{
	if (set_default(&c->root, DAEMON_DEFAULT_ROOT) < 0 ||
	    set_default(&c->address, DAEMON_DEFAULT_ADDRESS) < 0 ||
	    set_default(&c->log_level, "info") < 0 || set_default(&c->log_format, "text") < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	if (!c->cache_dir || !*c->cache_dir) {
		char buf[4096];
		snprintf(buf, sizeof(buf), "%s/cache", c->root);
		if (set_default(&c->cache_dir, buf) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	bool ok = false;
	for (size_t i = 0; i < 4; i++)
		ok |= strcmp(c->log_level, levels[i]) == 0;
	if (!ok)
		return rs_err(err, -EINVAL, "log_level \"%s\": want debug, info, warn or error",
			      c->log_level);
	if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0)
		return rs_err(err, -EINVAL, "log_format \"%s\": want text or json", c->log_format);
	if (c->root[0] != '/' || c->address[0] != '/')
		return rs_err(err, -EINVAL, "root and address must be absolute paths");
	return 0;
}

bool daemon_config_allow_unverified(const struct daemon_config *c, const char *host)
{
	for (size_t i = 0; host && i < c->n_verify_hosts; i++)
		if (strcmp(c->verify_hosts[i].host, host) == 0)
			return c->verify_hosts[i].allow_unverified;
	return c->allow_unverified;
}

void daemon_config_free(struct daemon_config *c)
{
	free(c->root);
	free(c->address);
	free(c->log_level);
	free(c->log_format);
	free(c->cache_dir);
	free(c->hosts_dir);
	free(c->passthrough);
	free(c->fd_store);
	free(c->holder_program);
	free(c->docker_config);
	for (size_t i = 0; i < c->n_verify_hosts; i++)
		free(c->verify_hosts[i].host);
	free(c->verify_hosts);
	memset(c, 0, sizeof(*c));
}
