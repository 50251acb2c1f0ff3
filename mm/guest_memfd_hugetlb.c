// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd backed by hugetlb pages.
 *
 * A guest_memfd file created with a huge page size takes its folios from the
 * hugetlb pool of that size, the same pools hugetlbfs uses, so the sizes a
 * VMM may ask for are exactly the registered hstates (hugepagesz= on the
 * kernel command line, or the architecture's defaults).
 */
#include <linux/bits.h>
#include <linux/export.h>
#include <linux/guest_memfd.h>
#include <linux/hugetlb.h>

/**
 * gmem_hugetlb_hstate() - The hugetlb pool backing a guest_memfd page size.
 * @size_log2: log2 of the page size in bytes, as passed by userspace.
 *
 * Unlike hstate_sizelog(), 0 does not mean "the default size": a VMM names
 * the size it wants, so that the same request means the same thing on every
 * host whatever default_hugepagesz= says.
 *
 * Return: the hstate whose pages are 2^@size_log2 bytes, or NULL if there is
 * none (including sizes that are not huge, and values too large to shift).
 */
struct hstate *gmem_hugetlb_hstate(unsigned int size_log2)
{
	if (size_log2 <= PAGE_SHIFT || size_log2 >= BITS_PER_LONG)
		return NULL;
	return hstate_sizelog(size_log2);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_hstate);

/**
 * gmem_hugetlb_supported_sizes() - The page sizes a guest_memfd can use.
 *
 * Return: a bitmask in which bit k is set if guest_memfd can be backed by
 * pages of 2^k bytes, i.e. if gmem_hugetlb_hstate(k) finds a pool.
 */
u64 gmem_hugetlb_supported_sizes(void)
{
	struct hstate *h;
	u64 sizes = 0;

	for_each_hstate(h)
		sizes |= BIT_ULL(huge_page_shift(h));
	return sizes;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_supported_sizes);
