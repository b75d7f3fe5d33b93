// SPDX-License-Identifier: Apache-2.0
/* The daemon's TOML file read with toml++ into struct daemon_config. Every
 * key is known: a misspelt key is an error, not a silently ignored line. */
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <toml++/toml.h>

extern "C" {
#include "daemon.h"
}

namespace
{

struct config_error {
	std::string msg;
};

[[noreturn]] void fail(const char *file, const toml::node &n, const std::string &what)
{
	throw config_error{std::string(file) + ":" + std::to_string(n.source().begin.line) + ": " +
			   what};
}

void set_string(char **dst, const char *file, const toml::node &n, const std::string &key)
{
	auto v = n.value<std::string>();
	if (!v)
		fail(file, n, "\"" + key + "\" must be a string");
	char *p = strdup(v->c_str());
	if (!p)
		throw std::bad_alloc();
	free(*dst);
	*dst = p;
}

void set_bool(bool *dst, const char *file, const toml::node &n, const std::string &key)
{
	auto v = n.value<bool>();
	if (!v)
		fail(file, n, "\"" + key + "\" must be true or false");
	*dst = *v;
}

template <typename T>
void set_int(T *dst, const char *file, const toml::node &n, const std::string &key, int64_t min,
	     int64_t max)
{
	auto v = n.value<int64_t>();
	if (!v || *v < min || *v > max)
		fail(file, n,
		     "\"" + key + "\" must be an integer from " + std::to_string(min) + " to " +
			 std::to_string(max));
	*dst = static_cast<T>(*v);
}

void load_top(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "root")
			set_string(&c->root, file, v, key);
		else if (key == "address")
			set_string(&c->address, file, v, key);
		else if (key == "log_level")
			set_string(&c->log_level, file, v, key);
		else if (key == "log_format")
			set_string(&c->log_format, file, v, key);
		else if (key == "api_threads")
			set_int(&c->api_threads, file, v, key, 1, 256);
		else if (key == "cache" || key == "fetch" || key == "registry" || key == "verify" ||
			 key == "fuse" || key == "restart") {
			if (!v.is_table())
				fail(file, v, "\"" + key + "\" must be a table");
		} else
			fail(file, v, "unknown key \"" + key + "\"");
	}
}

void load_cache(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "dir")
			set_string(&c->cache_dir, file, v, key);
		else if (key == "max_mib")
			set_int(&c->cache_max_mib, file, v, key, 1, int64_t(1) << 40);
		else if (key == "memory_mib")
			set_int(&c->mem_cache_mib, file, v, key, 1, int64_t(1) << 20);
		else
			fail(file, v, "unknown key \"cache." + key + "\"");
	}
}

void load_fetch(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "prefetch")
			set_bool(&c->prefetch, file, v, key);
		else if (key == "background_fetch")
			set_bool(&c->background_fetch, file, v, key);
		else if (key == "read_timeout_sec")
			set_int(&c->read_timeout_sec, file, v, key, 1, 86400);
		else if (key == "fuse_workers")
			set_int(&c->fuse_workers, file, v, key, 1, 256);
		else if (key == "fetchers")
			set_int(&c->fetchers, file, v, key, 1, 256);
		else
			fail(file, v, "unknown key \"fetch." + key + "\"");
	}
}

void load_fuse(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key != "passthrough")
			fail(file, v, "unknown key \"fuse." + key + "\"");
		set_string(&c->passthrough, file, v, key);
		std::string m(c->passthrough);
		if (m != "off" && m != "auto" && m != "on")
			fail(file, v,
			     "fuse.passthrough must be \"off\", \"auto\" or \"on\", not \"" + m +
				 "\"");
	}
}

void load_restart(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "fd_store") {
			set_string(&c->fd_store, file, v, key);
			std::string m(c->fd_store);
			if (m != "auto" && m != "off")
				fail(file, v,
				     "restart.fd_store must be \"auto\" or \"off\", not \"" + m +
					 "\"");
		} else if (key == "unmount_on_exit")
			set_bool(&c->unmount_on_exit, file, v, key);
		else if (key == "holder_program")
			set_string(&c->holder_program, file, v, key);
		else
			fail(file, v, "unknown key \"restart." + key + "\"");
	}
}

void load_registry(daemon_config *c, const char *file, const toml::table &t)
{
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "hosts_dir")
			set_string(&c->hosts_dir, file, v, key);
		else if (key == "plain_http")
			set_bool(&c->plain_http, file, v, key);
		else if (key == "docker_config")
			set_string(&c->docker_config, file, v, key);
		else if (key == "request_timeout_sec")
			set_int(&c->request_timeout_sec, file, v, key, 1, 86400);
		else
			fail(file, v, "unknown key \"registry." + key + "\"");
	}
}

void add_verify_host(daemon_config *c, const char *file, const std::string &host,
		     const toml::table &t)
{
	if (host.empty())
		fail(file, t, "verify.hosts: a host must not be empty");
	for (size_t i = 0; i < c->n_verify_hosts; i++)
		if (host == c->verify_hosts[i].host)
			fail(file, t, "verify.hosts.\"" + host + "\" given twice");
	bool allow = c->allow_unverified;
	bool seen = false;
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key != "allow_unverified")
			fail(file, v, "unknown key \"verify.hosts.\"" + host + "\"." + key + "\"");
		set_bool(&allow, file, v, key);
		seen = true;
	}
	if (!seen)
		fail(file, t, "verify.hosts.\"" + host + "\": allow_unverified is missing");
	auto *nv = static_cast<daemon_verify_host *>(
	    realloc(c->verify_hosts, (c->n_verify_hosts + 1) * sizeof(*c->verify_hosts)));
	if (!nv)
		throw std::bad_alloc();
	c->verify_hosts = nv;
	char *h = strdup(host.c_str());
	if (!h)
		throw std::bad_alloc();
	c->verify_hosts[c->n_verify_hosts++] = {h, allow};
}

void load_verify(daemon_config *c, const char *file, const toml::table &t)
{
	/* allow_unverified first: it is the default of every host table. */
	if (auto v = t.get("allow_unverified"))
		set_bool(&c->allow_unverified, file, *v, "allow_unverified");
	for (auto &&[k, v] : t) {
		std::string key(k.str());
		if (key == "allow_unverified")
			continue;
		if (key != "hosts")
			fail(file, v, "unknown key \"verify." + key + "\"");
		auto hosts = v.as_table();
		if (!hosts)
			fail(file, v, "\"verify.hosts\" must be a table");
		for (auto &&[hk, hv] : *hosts) {
			auto ht = hv.as_table();
			if (!ht)
				fail(file, hv,
				     "\"verify.hosts." + std::string(hk.str()) +
					 "\" must be a table");
			add_verify_host(c, file, std::string(hk.str()), *ht);
		}
	}
}

} // namespace

extern "C" int daemon_config_load(struct daemon_config *c, const char *path, struct rs_error *err)
{
	try {
		toml::table t = toml::parse_file(path);
		load_top(c, path, t);
		if (auto s = t["cache"].as_table())
			load_cache(c, path, *s);
		if (auto s = t["fetch"].as_table())
			load_fetch(c, path, *s);
		if (auto s = t["registry"].as_table())
			load_registry(c, path, *s);
		if (auto s = t["fuse"].as_table())
			load_fuse(c, path, *s);
		if (auto s = t["verify"].as_table())
			load_verify(c, path, *s);
		if (auto s = t["restart"].as_table())
			load_restart(c, path, *s);
	} catch (const toml::parse_error &e) {
		return rs_err(err, -EINVAL, "%s:%u: %s", path, (unsigned)e.source().begin.line,
			      std::string(e.description()).c_str());
	} catch (const config_error &e) {
		return rs_err(err, -EINVAL, "%s", e.msg.c_str());
	} catch (const std::bad_alloc &) {
		return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}
