// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for hugetlb-backed guest_memfd (mm/guest_memfd_hugetlb.c): the
 * page sizes, and the reservation and allocation cycle with exact hugetlb
 * pool counts. The test kernel boots with 2M and 1G pools.
 */
#include <kunit/test.h>
#include <linux/guest_memfd.h>
#include <linux/highmem.h>
#include <linux/hugetlb.h>

#include "../guest_memfd_internal.h"

MODULE_IMPORT_NS("EXPORTED_FOR_KUNIT_TESTING");

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

struct pool_counts {
	unsigned long total, free, resv, surplus;
};

static struct pool_counts read_pool(struct hstate *h)
{
	struct pool_counts c;

	spin_lock_irq(&hugetlb_lock);
	c.total = h->nr_huge_pages;
	c.free = h->free_huge_pages;
	c.resv = h->resv_huge_pages;
	c.surplus = h->surplus_huge_pages;
	spin_unlock_irq(&hugetlb_lock);
	return c;
}

/* The pool is as in @c, but for free and reserved pages moved by @dfree, @dresv. */
static void expect_pool(struct kunit *test, struct hstate *h,
			struct pool_counts c, long dfree, long dresv)
{
	struct pool_counts now = read_pool(h);

	KUNIT_EXPECT_EQ(test, now.total, c.total);
	KUNIT_EXPECT_EQ(test, now.surplus, c.surplus);
	KUNIT_EXPECT_EQ(test, now.free, c.free + dfree);
	KUNIT_EXPECT_EQ(test, now.resv, c.resv + dresv);
}

static const unsigned int huge_sizes_log2[] = { 21, 30 };

static void huge_size_desc(const unsigned int *log2, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s", *log2 == 30 ? "1G" : "2M");
}

KUNIT_ARRAY_PARAM(huge_size, huge_sizes_log2, huge_size_desc);

/* The pool of the size under test, or skip if this kernel has none. */
static struct hstate *param_hstate(struct kunit *test, unsigned int *log2)
{
	struct hstate *h;

	*log2 = *(const unsigned int *)test->param_value;
	h = gmem_hugetlb_hstate(*log2);
	if (!h || read_pool(h).free < 2)
		kunit_skip(test, "no pool of 2^%u with 2 free pages", *log2);
	return h;
}

/*
 * A file of two huge pages of the size under test; @h and @c are set to its
 * pool and the pool's counts before the file was created.
 */
static struct gmem_hugetlb *create_two_page_file(struct kunit *test, struct hstate **h,
						 struct pool_counts *c)
{
	struct gmem_hugetlb *gh;
	unsigned int log2;

	*h = param_hstate(test, &log2);
	*c = read_pool(*h);

	gh = gmem_hugetlb_create(log2, 2 * huge_page_size(*h));
	KUNIT_ASSERT_FALSE(test, IS_ERR(gh));
	return gh;
}

/* Creating reserves the whole file; destroying gives it all back. */
static void gmem_hugetlb_create_reserves_file(struct kunit *test)
{
	struct gmem_hugetlb *gh;
	struct pool_counts c;
	struct hstate *h;

	gh = create_two_page_file(test, &h, &c);
	KUNIT_EXPECT_EQ(test, gmem_hugetlb_order(gh), huge_page_order(h));
	expect_pool(test, h, c, 0, 2);

	gmem_hugetlb_destroy(gh);
	expect_pool(test, h, c, 0, 0);
}

/* A file larger than what is free fails with -ENOMEM and takes nothing. */
static void gmem_hugetlb_create_exhausts_pool(struct kunit *test)
{
	struct gmem_hugetlb *gh;
	struct pool_counts c;
	unsigned int log2;
	struct hstate *h;

	h = param_hstate(test, &log2);
	c = read_pool(h);

	gh = gmem_hugetlb_create(log2, (c.free - c.resv + 1) * huge_page_size(h));
	KUNIT_EXPECT_EQ(test, PTR_ERR(gh), -ENOMEM);
	expect_pool(test, h, c, 0, 0);
}

/* Sizes that are not whole huge pages, and sizes with no pool: -EINVAL. */
static void gmem_hugetlb_create_rejects_bad_sizes(struct kunit *test)
{
	struct pool_counts c;
	unsigned int log2;
	struct hstate *h;
	unsigned long sz;

	h = param_hstate(test, &log2);
	c = read_pool(h);
	sz = huge_page_size(h);

	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2, 0)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2, -sz)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2, PAGE_SIZE)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2, sz + PAGE_SIZE)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2, sz - PAGE_SIZE)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(log2 + 1, sz)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(gmem_hugetlb_create(PAGE_SHIFT, sz)), -EINVAL);
	expect_pool(test, h, c, 0, 0);
}

static bool folio_page_is_zero(struct folio *folio, unsigned long i)
{
	void *addr = kmap_local_folio(folio, i * PAGE_SIZE);
	bool zero = !memchr_inv(addr, 0, PAGE_SIZE);

	kunmap_local(addr);
	return zero;
}

static void folio_page_fill(struct folio *folio, unsigned long i)
{
	void *addr = kmap_local_folio(folio, i * PAGE_SIZE);

	memset(addr, 0xa5, PAGE_SIZE);
	kunmap_local(addr);
}

/*
 * Allocation takes a page from the file's reservation (free and reserved both
 * drop by one), hands out a zeroed folio of the pool's order even if its last
 * user dirtied it, with its vmemmap still optimized (HVO), stops at the
 * file's size, and freeing restores the reservation.
 */
static void gmem_hugetlb_alloc_free_cycle(struct kunit *test)
{
	struct folio *f1, *f2, *f3;
	struct gmem_hugetlb *gh;
	struct pool_counts c;
	unsigned long last;
	struct hstate *h;

	gh = create_two_page_file(test, &h, &c);
	last = pages_per_huge_page(h) - 1;

	f1 = gmem_hugetlb_alloc_folio(gh, numa_node_id(), NULL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(f1));
	KUNIT_EXPECT_TRUE(test, folio_test_hugetlb(f1));
	KUNIT_EXPECT_EQ(test, folio_order(f1), huge_page_order(h));
	KUNIT_EXPECT_EQ(test, folio_ref_count(f1), 1);
	KUNIT_EXPECT_TRUE(test, folio_test_uptodate(f1));
	KUNIT_EXPECT_TRUE(test, folio_page_is_zero(f1, 0));
	KUNIT_EXPECT_TRUE(test, folio_page_is_zero(f1, last / 2));
	KUNIT_EXPECT_TRUE(test, folio_page_is_zero(f1, last));
	expect_pool(test, h, c, -1, 1);

	/* HVO stays in effect: the tail pages' vmemmap is still freed. */
	if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
		KUNIT_EXPECT_TRUE(test, folio_test_hugetlb_vmemmap_optimized(f1));

	/* Dirty it and give it back: the reservation is the file's again. */
	folio_page_fill(f1, 0);
	folio_page_fill(f1, last);
	folio_put(f1);
	expect_pool(test, h, c, 0, 2);

	/* Whatever page comes next, it is zeroed. */
	f1 = gmem_hugetlb_alloc_folio(gh, numa_node_id(), NULL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(f1));
	KUNIT_EXPECT_TRUE(test, folio_page_is_zero(f1, 0));
	KUNIT_EXPECT_TRUE(test, folio_page_is_zero(f1, last));

	f2 = gmem_hugetlb_alloc_folio(gh, numa_node_id(), NULL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(f2));
	KUNIT_EXPECT_PTR_NE(test, f1, f2);
	expect_pool(test, h, c, -2, 0);

	/* The file is 2 pages: a third is beyond its reservation. */
	f3 = gmem_hugetlb_alloc_folio(gh, numa_node_id(), NULL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(f3), -ENOMEM);
	expect_pool(test, h, c, -2, 0);

	folio_put(f1);
	folio_put(f2);
	expect_pool(test, h, c, 0, 2);

	gmem_hugetlb_destroy(gh);
	expect_pool(test, h, c, 0, 0);
}

/* A folio outliving its file keeps its page until it is freed. */
static void gmem_hugetlb_folio_outlives_file(struct kunit *test)
{
	struct gmem_hugetlb *gh;
	struct pool_counts c;
	struct folio *folio;
	struct hstate *h;

	gh = create_two_page_file(test, &h, &c);
	folio = gmem_hugetlb_alloc_folio(gh, numa_node_id(), NULL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));

	gmem_hugetlb_destroy(gh);
	expect_pool(test, h, c, -1, 1);

	folio_put(folio);
	expect_pool(test, h, c, 0, 0);
}

static struct kunit_case gmem_hugetlb_test_cases[] = {
	KUNIT_CASE(gmem_hugetlb_sizes_match_hstates),
	KUNIT_CASE(gmem_hugetlb_default_size_supported),
	KUNIT_CASE(gmem_hugetlb_rejects_non_huge_sizes),
	KUNIT_CASE_PARAM(gmem_hugetlb_create_reserves_file, huge_size_gen_params),
	KUNIT_CASE_PARAM(gmem_hugetlb_create_exhausts_pool, huge_size_gen_params),
	KUNIT_CASE_PARAM(gmem_hugetlb_create_rejects_bad_sizes, huge_size_gen_params),
	KUNIT_CASE_PARAM(gmem_hugetlb_alloc_free_cycle, huge_size_gen_params),
	KUNIT_CASE_PARAM(gmem_hugetlb_folio_outlives_file, huge_size_gen_params),
	{}
};

static struct kunit_suite gmem_hugetlb_test_suite = {
	.name = "guest_memfd_hugetlb",
	.test_cases = gmem_hugetlb_test_cases,
};

kunit_test_suite(gmem_hugetlb_test_suite);

MODULE_DESCRIPTION("KUnit tests for hugetlb-backed guest_memfd");
MODULE_LICENSE("GPL");
