// SPDX-License-Identifier: Apache-2.0
/* hosts.toml read with toml++ into plain C structs: each [host."URL"] table
 * in the order the file lists them (toml++ keeps tables sorted by key, so
 * order comes from source positions), then the root table as the server. */
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "transport.h"

namespace
{

struct shim_error {
	std::string msg;
};

[[noreturn]] void fail(const char *file, const toml::node &n, const std::string &what)
{
	throw shim_error{std::string(file) + ":" + std::to_string(n.source().begin.line) + ": " +
			 what};
}

char *dup(const std::string &s)
{
	char *p = strdup(s.c_str());
	if (!p)
		throw std::bad_alloc();
	return p;
}

/* A string or an array of strings. */
std::vector<std::string> strings(const char *file, const toml::node &n, const char *key)
{
	std::vector<std::string> out;
	if (auto s = n.value<std::string>()) {
		out.push_back(*s);
		return out;
	}
	const toml::array *a = n.as_array();
	if (!a)
		fail(file, n,
		     std::string("\"") + key + "\" must be a string or an array of strings");
	for (auto &&e : *a) {
		auto s = e.value<std::string>();
		if (!s)
			fail(file, e, std::string("\"") + key + "\" must hold strings only");
		out.push_back(*s);
	}
	return out;
}

char **string_array(const std::vector<std::string> &v, size_t *n)
{
	char **a = static_cast<char **>(calloc(v.size() + 1, sizeof(char *)));
	if (!a)
		throw std::bad_alloc();
	*n = 0;
	for (auto &s : v) {
		a[*n] = strdup(s.c_str());
		if (!a[*n])
			throw std::bad_alloc();
		(*n)++;
	}
	return a;
}

void fill(const char *file, const toml::table &t, reg_host *h)
{
	h->skip_verify = -1;
	h->caps = REG_CAP_PULL | REG_CAP_RESOLVE | REG_CAP_PUSH;
	if (const toml::node *n = t.get("capabilities")) {
		std::vector<std::string> caps = strings(file, *n, "capabilities");
		if (!caps.empty())
			h->caps = 0;
		for (auto &c : caps) {
			std::string l = c;
			std::transform(l.begin(), l.end(), l.begin(), ::tolower);
			if (l == "pull")
				h->caps |= REG_CAP_PULL;
			else if (l == "resolve")
				h->caps |= REG_CAP_RESOLVE;
			else if (l == "push")
				h->caps |= REG_CAP_PUSH;
			else if (l != "referrers")
				fail(file, *n, "unknown capability \"" + c + "\"");
		}
	}
	if (const toml::node *n = t.get("ca"))
		h->ca = string_array(strings(file, *n, "ca"), &h->n_ca);
	if (const toml::node *n = t.get("client")) {
		std::vector<std::pair<std::string, std::string>> pairs;
		if (auto s = n->value<std::string>()) {
			pairs.emplace_back(*s, "");
		} else if (const toml::array *a = n->as_array()) {
			for (auto &&e : *a) {
				if (auto s = e.value<std::string>()) {
					pairs.emplace_back(*s, "");
					continue;
				}
				const toml::array *p = e.as_array();
				if (!p || p->size() != 2 || !(*p)[0].is_string() ||
				    !(*p)[1].is_string())
					fail(file, e,
					     "\"client\" pairs must be [cert, key] strings");
				pairs.emplace_back(*(*p)[0].value<std::string>(),
						   *(*p)[1].value<std::string>());
			}
		} else {
			fail(file, *n, "\"client\" must be a path, a list of paths or of pairs");
		}
		h->clients = static_cast<reg_client_cert *>(
		    calloc(pairs.size() + 1, sizeof(reg_client_cert)));
		if (!h->clients)
			throw std::bad_alloc();
		for (auto &p : pairs) {
			reg_client_cert *cc = &h->clients[h->n_clients++];
			cc->cert = dup(p.first);
			cc->key = p.second.empty() ? nullptr : dup(p.second);
		}
	}
	if (const toml::node *n = t.get("skip_verify")) {
		auto b = n->value<bool>();
		if (!b || !n->is_boolean())
			fail(file, *n, "\"skip_verify\" must be true or false");
		h->skip_verify = *b ? 1 : 0;
	}
	if (const toml::node *n = t.get("override_path")) {
		if (!n->is_boolean())
			fail(file, *n, "\"override_path\" must be true or false");
		h->override_path = *n->value<bool>();
	}
	if (const toml::node *n = t.get("dial_timeout")) {
		auto s = n->value<std::string>();
		if (!s)
			fail(file, *n, "\"dial_timeout\" must be a duration string like \"2s\"");
		char *end = nullptr;
		double v = strtod(s->c_str(), &end);
		std::string unit = end ? end : "";
		double ms = unit == "ms"  ? v
			    : unit == "s" ? v * 1000
			    : unit == "m" ? v * 60000
					  : -1;
		if (!(ms > 0) || ms > 3600000)
			fail(file, *n,
			     "\"dial_timeout\" \"" + *s + "\" is not a duration (ms, s, m)");
		h->dial_timeout_ms = static_cast<long>(ms);
	}
	if (const toml::node *n = t.get("header")) {
		const toml::table *ht = n->as_table();
		if (!ht)
			fail(file, *n, "\"header\" must be a table");
		std::vector<std::string> lines;
		for (auto &&[k, v] : *ht) {
			std::string name(k.str());
			if (name.empty() || name.find_first_of(":\r\n ") != std::string::npos)
				fail(file, v, "invalid header name \"" + name + "\"");
			for (auto &val : strings(file, v, "header")) {
				if (val.find_first_of("\r\n") != std::string::npos)
					fail(file, v, "header \"" + name + "\" holds a line break");
				lines.push_back(name + ": " + val);
			}
		}
		h->headers = string_array(lines, &h->n_headers);
	}
}

} // namespace

extern "C" int reg_hosts_toml_parse(const char *file, const char *text, size_t len,
				    struct reg_host **hosts, size_t *n, struct rs_error *err)
{
	*hosts = nullptr;
	*n = 0;
	reg_host *v = nullptr;
	size_t count = 0;
	try {
		toml::table root = toml::parse(std::string_view(text, len), std::string_view(file));
		std::vector<std::pair<toml::source_position, std::string>> order;
		const toml::table *ht = nullptr;
		if (const toml::node *hn = root.get("host")) {
			ht = hn->as_table();
			if (!ht)
				fail(file, *hn,
				     "\"host\" must hold tables like [host.\"https://...\"]");
			for (auto &&[k, val] : *ht) {
				if (!val.is_table())
					fail(file, val,
					     "host \"" + std::string(k.str()) +
						 "\" must be a table");
				order.emplace_back(val.source().begin, std::string(k.str()));
			}
			std::stable_sort(order.begin(), order.end(), [](auto &a, auto &b) {
				return a.first.line != b.first.line
					   ? a.first.line < b.first.line
					   : a.first.column < b.first.column;
			});
		}
		v = static_cast<reg_host *>(calloc(order.size() + 1, sizeof(reg_host)));
		if (!v)
			throw std::bad_alloc();
		for (auto &o : order) {
			reg_host *h = &v[count++];
			h->skip_verify = -1;
			h->url = dup(o.second);
			fill(file, *(*ht)[o.second].as_table(), h);
		}
		reg_host *srv = &v[count++];
		srv->skip_verify = -1;
		if (const toml::node *s = root.get("server")) {
			auto str = s->value<std::string>();
			if (!str || !s->is_string())
				fail(file, *s, "\"server\" must be a URL string");
			srv->url = dup(*str);
		}
		fill(file, root, srv);
	} catch (const toml::parse_error &e) {
		for (size_t i = 0; i < count; i++)
			reg_host_free(&v[i]);
		free(v);
		std::string d(e.description());
		return rs_err(err, -EINVAL, "%s:%u:%u: %s", file, (unsigned)e.source().begin.line,
			      (unsigned)e.source().begin.column, d.c_str());
	} catch (const shim_error &e) {
		for (size_t i = 0; i < count; i++)
			reg_host_free(&v[i]);
		free(v);
		return rs_err(err, -EINVAL, "%s", e.msg.c_str());
	} catch (...) {
		for (size_t i = 0; i < count; i++)
			reg_host_free(&v[i]);
		free(v);
		return rs_err(err, -ENOMEM, "%s: out of memory", file);
	}
	*hosts = v;
	*n = count;
	return 0;
}
