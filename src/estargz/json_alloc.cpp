// SPDX-License-Identifier: Apache-2.0
/* The program's array new and delete, replaced so that simdjson's parser
 * buffers land on huge pages. For a TOC of N bytes the On-Demand parser
 * allocates a structural index of 4N bytes with new[] (simdjson takes no
 * allocator) and writes it front to back; on a VM every 4 KiB page of that
 * is a page fault costing microseconds, which made the walk of a
 * 200,000-entry TOC (70 MB of JSON) 2.5 times slower. So blocks of 4 MiB and
 * more are aligned to and advised for huge pages, as esgz_alloc_huge() does
 * for our own buffers; smaller ones are plain malloc(), as before. The
 * replacement is process-wide (replaceable allocation functions have no
 * narrower scope) but only changes alignment and paging. Every form of array
 * new and delete is replaced together so that allocation and release always
 * match (sanitizers check that). */
#include <cstdlib>
#include <new>

#include <stdlib.h>
#include <sys/mman.h>

namespace
{

constexpr std::size_t HUGE_PAGE = std::size_t(2) << 20;

void *alloc_array(std::size_t n) noexcept
{
	if (n < 2 * HUGE_PAGE)
		return std::malloc(n ? n : 1);
	std::size_t rounded = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	if (rounded < n)
		return nullptr;
	void *p;
	if (posix_memalign(&p, HUGE_PAGE, rounded) != 0)
		return nullptr;
	(void)madvise(p, rounded, MADV_HUGEPAGE);
	return p;
}

} // namespace

void *operator new[](std::size_t n)
{
	void *p = alloc_array(n);
	if (!p)
		throw std::bad_alloc();
	return p;
}

void *operator new[](std::size_t n, const std::nothrow_t &) noexcept
{
	return alloc_array(n);
}

void operator delete[](void *p) noexcept
{
	std::free(p);
}

void operator delete[](void *p, std::size_t) noexcept
{
	std::free(p);
}

void operator delete[](void *p, const std::nothrow_t &) noexcept
{
	std::free(p);
}
