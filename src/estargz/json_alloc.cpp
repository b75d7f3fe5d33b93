// SPDX-License-Identifier: Apache-2.0
/* Huge pages for simdjson's parser buffers, without replacing the program's
 * operator new[].
 *
 * For a TOC of N bytes the On-Demand parser allocates a structural index of
 * 4N bytes and a string buffer of 5N/3 with new[] (simdjson takes no
 * allocator) and writes them front to back; on a VM every 4 KiB page of that
 * is a page fault costing microseconds, which made the walk of a
 * 200,000-entry TOC (70 MB of JSON) 2.5 times slower. This file used to
 * replace the global operator new[] to align big blocks to huge pages: that
 * changed every array allocation of the process (toml++, gRPC's C++ parts,
 * any library) to serve one parser. Instead the parser allocates as it
 * likes, ahead of the parse (esgz_json_parser_prepare), and the untouched
 * interior of its two big buffers is advised for huge pages before the first
 * write. The buffers are private members of simdjson's parser; they are
 * reached by the one standard way that names a private member (an explicit
 * template instantiation, where access is not checked), for this simdjson
 * version's layout (3.x). */
#include <cstdint>
#include <memory>

#include <sys/mman.h>

#include "json_alloc.h"

namespace
{

namespace od = simdjson::ondemand;

constexpr std::uintptr_t HUGE_PAGE = std::uintptr_t(2) << 20;

template <typename Tag, typename Tag::type M> struct member_of {
	friend typename Tag::type get(Tag)
	{
		return M;
	}
};

struct impl_tag {
	using type = std::unique_ptr<simdjson::internal::dom_parser_implementation> od::parser::*;
	friend type get(impl_tag);
};
struct string_buf_tag {
	using type = std::unique_ptr<uint8_t[]> od::parser::*;
	friend type get(string_buf_tag);
};
template struct member_of<impl_tag, &od::parser::implementation>;
template struct member_of<string_buf_tag, &od::parser::string_buf>;

/* Advises the 2 MiB-aligned pages inside [p, p + len) for huge pages: the
 * ends stay small pages, so nothing outside the buffer is touched. */
void advise(const void *p, std::size_t len)
{
	auto start = (reinterpret_cast<std::uintptr_t>(p) + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	auto end = (reinterpret_cast<std::uintptr_t>(p) + len) & ~(HUGE_PAGE - 1);
	if (p && end > start)
		(void)madvise(reinterpret_cast<void *>(start), end - start, MADV_HUGEPAGE);
}

} // namespace

simdjson::error_code esgz_json_parser_prepare(od::parser &parser, std::size_t len) noexcept
{
	if (parser.capacity() >= len)
		return simdjson::SUCCESS;
	simdjson::error_code e = parser.allocate(len);
	if (e != simdjson::SUCCESS || len < 2 * HUGE_PAGE)
		return e;
	/* Lower bounds of what simdjson allocated: 4 bytes of index per input
	 * byte, a string buffer of at least the input's size. */
	auto &impl = parser.*get(impl_tag{});
	if (impl)
		advise(impl->structural_indexes.get(), 4 * len);
	advise((parser.*get(string_buf_tag{})).get(), len);
	return simdjson::SUCCESS;
}
