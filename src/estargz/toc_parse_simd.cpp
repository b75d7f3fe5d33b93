// SPDX-License-Identifier: Apache-2.0
/* The TOC's JSON through simdjson's On-Demand API, delivered as the events of
 * a streaming parser: every value is visited in document order, so the state
 * machine in toc_parse.c sees the sequence a streaming parser would give, and
 * the whole document is validated, not only the fields the index uses.
 * On-Demand trusts what it is not asked to parse (it stops at a string's
 * closing quote, reads atoms by their first letter), so tokens are checked
 * here as strictly as a validating parser would. */
#include <cstdio>
#include <cstring>

#include <simdjson.h>

#include "json_alloc.h"
#include "json_walk.h"

namespace od = simdjson::ondemand;

namespace
{

/* Deeper than any TOC; bounds our recursion. */
constexpr int MAX_DEPTH = 1024;

struct walker {
	const esgz_json_events *ev;
	void *ctx;
	const char *base, *end; /* the JSON */
	esgz_json_error *jerr;
	od::document *doc;
	int depth;
};

int invalid(walker &w, const char *why, const char *at)
{
	snprintf(w.jerr->msg, sizeof(w.jerr->msg), "%s", why);
	w.jerr->offset = at && at >= w.base && at <= w.end ? (size_t)(at - w.base) : 0;
	return -1;
}

int invalid(walker &w, simdjson::error_code e)
{
	const char *at = nullptr;
	if (w.doc && w.doc->current_location().get(at) != simdjson::SUCCESS)
		at = w.end;
	return invalid(w, simdjson::error_message(e), at);
}

bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view t)
{
	while (!t.empty() && is_ws(t.back()))
		t.remove_suffix(1);
	return t;
}

/* True when any of the n bytes at s needs a closer look: a quote, a
 * backslash or a control character (which JSON forbids raw in strings).
 * Eight bytes at a time: most strings have none. */
bool needs_care(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t hit = 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, s + i, 8);
		uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
		/* a zero byte in q or b, or a byte below 0x20 in x */
		hit |= ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x);
	}
	if (hit & highs)
		return true;
	for (; i < n; i++)
		if (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20)
			return true;
	return false;
}

/* Finds the closing quote of the string whose body starts at s, checking
 * escapes and control characters byte by byte. */
bool string_end_slow(const char *s, const char *end, const char **close, bool *escaped)
{
	*escaped = false;
	for (const char *p = s; p < end; p++) {
		if ((unsigned char)*p < 0x20)
			return false;
		if (*p == '\\') {
			*escaped = true;
			p++;
		} else if (*p == '"') {
			*close = p;
			return true;
		}
	}
	return false;
}

/* As string_end_slow(), quicker when the string has no escapes. */
bool string_end(const char *s, const char *end, const char **close, bool *escaped)
{
	const char *q = static_cast<const char *>(memchr(s, '"', (size_t)(end - s)));
	if (q && !needs_care(s, (size_t)(q - s))) {
		*close = q;
		*escaped = false;
		return true;
	}
	return string_end_slow(s, end, close, escaped);
}

bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The JSON number grammar, which On-Demand checks only when asked for a value. */
bool number_ok(std::string_view t)
{
	size_t i = 0, n = t.size();
	if (i < n && t[i] == '-')
		i++;
	if (i < n && t[i] == '0')
		i++;
	else if (i < n && t[i] >= '1' && t[i] <= '9')
		while (i < n && is_digit(t[i]))
			i++;
	else
		return false;
	if (i < n && t[i] == '.') {
		size_t s = ++i;
		while (i < n && is_digit(t[i]))
			i++;
		if (i == s)
			return false;
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		if (i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		size_t s = i;
		while (i < n && is_digit(t[i]))
			i++;
		if (i == s)
			return false;
	}
	return i == n;
}

int go_on(int keep_going)
{
	return keep_going ? 0 : 1;
}

/* A scalar's text, trailing whitespace included. */
simdjson::error_code token_of(od::value &v, std::string_view &tok)
{
	tok = v.raw_json_token();
	return simdjson::SUCCESS;
}

simdjson::error_code token_of(od::document &doc, std::string_view &tok)
{
	return doc.raw_json_token().get(tok);
}

/* A string, number, boolean or null: V is a value or, at the root, the document. */
template <typename V> int walk_scalar(walker &w, od::json_type t, V &v)
{
	std::string_view tok;
	if (auto e = token_of(v, tok))
		return invalid(w, e);
	tok = trim(tok);
	switch (t) {
	case od::json_type::string: {
		/* The token runs to the next structural character, so a good string
		 * ends with its closing quote. */
		const char *close = nullptr;
		bool escaped = false;
		if (tok.size() < 2 || tok[0] != '"' || tok.back() != '"')
			return invalid(w, "invalid string", tok.data());
		if (needs_care(tok.data() + 1, tok.size() - 2) &&
		    (!string_end_slow(tok.data() + 1, tok.data() + tok.size(), &close, &escaped) ||
		     close != tok.data() + tok.size() - 1))
			return invalid(w, "invalid string", tok.data());
		std::string_view body(tok.data() + 1, tok.size() - 2);
		if (escaped)
			if (auto e = v.get_string().get(body))
				return invalid(w, e);
		return go_on(w.ev->string(w.ctx, (const unsigned char *)body.data(), body.size()));
	}
	case od::json_type::number:
		if (!number_ok(tok))
			return invalid(w, "invalid number", tok.data());
		return go_on(w.ev->number(w.ctx, tok.data(), tok.size()));
	case od::json_type::boolean:
		if (tok != "true" && tok != "false")
			return invalid(w, "invalid literal", tok.data());
		return go_on(w.ev->boolean(w.ctx, tok == "true"));
	case od::json_type::null:
		if (tok != "null")
			return invalid(w, "invalid literal", tok.data());
		return go_on(w.ev->null(w.ctx));
	default:
		return invalid(w, "unexpected value", tok.data());
	}
}

int walk_value(walker &w, od::value v);

int walk_object(walker &w, od::object obj)
{
	if (++w.depth > MAX_DEPTH)
		return invalid(w, "nested too deeply", nullptr);
	if (!w.ev->start_map(w.ctx))
		return 1;
	for (auto res : obj) {
		od::field f;
		if (auto e = std::move(res).get(f))
			return invalid(w, e);
		const char *k = f.key().raw(), *close;
		bool escaped;
		if (!string_end(k, w.end, &close, &escaped))
			return invalid(w, "invalid key", k);
		std::string_view key(k, (size_t)(close - k));
		if (escaped)
			if (auto e = f.unescaped_key().get(key))
				return invalid(w, e);
		if (!w.ev->map_key(w.ctx, (const unsigned char *)key.data(), key.size()))
			return 1;
		if (int r = walk_value(w, f.value()))
			return r;
	}
	w.depth--;
	return go_on(w.ev->end_map(w.ctx));
}

int walk_array(walker &w, od::array arr)
{
	if (++w.depth > MAX_DEPTH)
		return invalid(w, "nested too deeply", nullptr);
	if (!w.ev->start_array(w.ctx))
		return 1;
	for (auto res : arr) {
		od::value v;
		if (auto e = std::move(res).get(v))
			return invalid(w, e);
		if (int r = walk_value(w, v))
			return r;
	}
	w.depth--;
	return go_on(w.ev->end_array(w.ctx));
}

int walk_value(walker &w, od::value v)
{
	od::json_type t;
	if (auto e = v.type().get(t))
		return invalid(w, e);
	if (t == od::json_type::object) {
		od::object o;
		if (auto e = v.get_object().get(o))
			return invalid(w, e);
		return walk_object(w, o);
	}
	if (t == od::json_type::array) {
		od::array a;
		if (auto e = v.get_array().get(a))
			return invalid(w, e);
		return walk_array(w, a);
	}
	return walk_scalar(w, t, v);
}

int walk_document(walker &w, od::document &doc)
{
	od::json_type t;
	if (auto e = doc.type().get(t))
		return invalid(w, e);
	int r;
	if (t == od::json_type::object) {
		od::object o;
		if (auto e = doc.get_object().get(o))
			return invalid(w, e);
		r = walk_object(w, o);
	} else if (t == od::json_type::array) {
		od::array a;
		if (auto e = doc.get_array().get(a))
			return invalid(w, e);
		r = walk_array(w, a);
	} else {
		r = walk_scalar(w, t, doc);
	}
	if (r)
		return r;
	/* On-Demand stops after the first value; anything after it is an error. */
	const char *rest;
	if (doc.current_location().get(rest) == simdjson::SUCCESS)
		return invalid(w, "trailing content after the document", rest);
	return 0;
}

} // namespace

extern "C" int esgz_json_walk(const uint8_t *json, size_t len, const esgz_json_events *ev,
			      void *ctx, esgz_json_error *jerr)
{
	const char *s = reinterpret_cast<const char *>(json);
	walker w{ev, ctx, s, s + len, jerr, nullptr, 0};
	/* simdjson reports errors by value; nothing may unwind into C regardless. */
	try {
		od::parser parser;
		od::document doc;
		auto e = esgz_json_parser_prepare(parser, len);
		if (e == simdjson::SUCCESS)
			e = parser
				.iterate(
				    simdjson::padded_string_view(s, len, len + ESGZ_JSON_PADDING))
				.get(doc);
		if (e == simdjson::MEMALLOC)
			return -2;
		if (e)
			return invalid(w, e);
		w.doc = &doc;
		return walk_document(w, doc);
	} catch (...) {
		return -2;
	}
}
