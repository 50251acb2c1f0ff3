// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for hugetlb-backed guest_memfd (mm/guest_memfd_hugetlb.c).
 */
#include <kunit/test.h>
#include <linux/guest_memfd.h>
#include <linux/hugetlb.h>

/* Every bit of the supported mask names a pool of exactly that size. */
static void gmem_hugetlb_sizes_match_hstates(struct kunit *test)
{
	u64 sizes = gmem_hugetlb_supported_sizes();
	unsigned int k;

	KUNIT_EXPECT_NE(test, sizes, 0);
	for (k = 0; k < 64; k++) {
		struct hstate *h = gmem_hugetlb_hstate(k);

		if (sizes & BIT_ULL(k)) {
			KUNIT_ASSERT_NOT_NULL_MSG(test, h, "size 2^%u", k);
			KUNIT_EXPECT_EQ_MSG(test, huge_page_shift(h), k,
					    "size 2^%u", k);
		} else {
			KUNIT_EXPECT_NULL_MSG(test, h, "size 2^%u", k);
		}
	}
}

/* The architecture's default huge page size is always a pool. */
static void gmem_hugetlb_default_size_supported(struct kunit *test)
{
	KUNIT_EXPECT_TRUE(test, gmem_hugetlb_supported_sizes() & BIT_ULL(HPAGE_SHIFT));
	KUNIT_EXPECT_PTR_EQ(test, gmem_hugetlb_hstate(HPAGE_SHIFT),
			    size_to_hstate(HPAGE_SIZE));
}

/* Sizes that are not huge page sizes, or not shiftable, have no pool. */
static void gmem_hugetlb_rejects_non_huge_sizes(struct kunit *test)
{
	static const unsigned int bad[] = {
		0, 1, PAGE_SHIFT - 1, PAGE_SHIFT, PAGE_SHIFT + 1,
		HPAGE_SHIFT - 1, HPAGE_SHIFT + 1, 63, 64, 65, 255, UINT_MAX,
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		KUNIT_EXPECT_NULL_MSG(test, gmem_hugetlb_hstate(bad[i]),
				      "size_log2 %u", bad[i]);
}

static struct kunit_case gmem_hugetlb_test_cases[] = {
	KUNIT_CASE(gmem_hugetlb_sizes_match_hstates),
	KUNIT_CASE(gmem_hugetlb_default_size_supported),
	KUNIT_CASE(gmem_hugetlb_rejects_non_huge_sizes),
	{}
};

static struct kunit_suite gmem_hugetlb_test_suite = {
	.name = "guest_memfd_hugetlb",
	.test_cases = gmem_hugetlb_test_cases,
};

kunit_test_suite(gmem_hugetlb_test_suite);

MODULE_DESCRIPTION("KUnit tests for hugetlb-backed guest_memfd");
MODULE_LICENSE("GPL");
