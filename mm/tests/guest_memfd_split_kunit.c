// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the split/merge engine of hugetlb-backed guest_memfd
 * (mm/guest_memfd_split.c): the folios a split and a merge leave in the page
 * cache, by order, with their references; HVO undone and redone; failures
 * that change nothing; and exact hugetlb pool counts. The engine only uses
 * the page cache, so a kernel shmem file's stands in for guest_memfd's (its
 * own paths never run on it: the test empties it before it goes).
 */
#include <kunit/test.h>
#include <linux/file.h>
#include <linux/guest_memfd.h>
#include <linux/hugetlb.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>

#include "../guest_memfd_internal.h"

struct split_test {
	struct file *file;
	struct address_space *mapping;
	struct gmem_hugetlb *gh;
	struct hstate *h;
	unsigned long nr;		/* pages per huge page */
	unsigned long free, resv;	/* the pool before the test */
};

static void pool_counts(struct hstate *h, unsigned long *free,
			unsigned long *resv)
{
	spin_lock_irq(&hugetlb_lock);
	*free = h->free_huge_pages;
	*resv = h->resv_huge_pages;
	spin_unlock_irq(&hugetlb_lock);
}

static void expect_pool(struct kunit *test, struct split_test *t, long dfree,
			long dresv)
{
	unsigned long free, resv;

	pool_counts(t->h, &free, &resv);
	KUNIT_EXPECT_EQ(test, free, t->free + dfree);
	KUNIT_EXPECT_EQ(test, resv, t->resv + dresv);
}

static const unsigned int huge_sizes_log2[] = { 21, 30 };

static void huge_size_desc(const unsigned int *log2, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s", *log2 == 30 ? "1G" : "2M");
}

KUNIT_ARRAY_PARAM(huge_size, huge_sizes_log2, huge_size_desc);

/* A file of one huge page of the size under test, allocated. */
static void split_test_init(struct kunit *test, struct split_test *t)
{
	unsigned int log2 = *(const unsigned int *)test->param_value;
	struct folio *folio;

	t->h = gmem_hugetlb_hstate(log2);
	if (!t->h)
		kunit_skip(test, "no pool of 2^%u", log2);
	pool_counts(t->h, &t->free, &t->resv);
	if (t->free - t->resv < 1)
		kunit_skip(test, "no free page of 2^%u", log2);
	t->nr = pages_per_huge_page(t->h);

	t->file = shmem_kernel_file_setup("gmem-split-kunit", huge_page_size(t->h),
					  EMPTY_VMA_FLAGS);
	KUNIT_ASSERT_FALSE(test, IS_ERR(t->file));
	t->mapping = t->file->f_mapping;
	t->gh = gmem_hugetlb_create(log2, huge_page_size(t->h));
	KUNIT_ASSERT_FALSE(test, IS_ERR(t->gh));

	folio = gmem_hugetlb_get_folio(t->gh, t->mapping, 0, NULL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	folio_unlock(folio);
	folio_put(folio);
	expect_pool(test, t, -1, 0);
}

/* Split and merge hold the invalidate lock, as guest_memfd does. */
static int merge_at(struct split_test *t, pgoff_t index, unsigned int order)
{
	int r;

	filemap_invalidate_lock(t->mapping);
	r = gmem_hugetlb_merge(t->gh, t->mapping, index, order);
	filemap_invalidate_unlock(t->mapping);
	return r;
}

/* What a page-sized host fault does before it maps a page with a PTE. */
static int restore_vmemmap_at(struct split_test *t, pgoff_t index)
{
	struct folio *folio = filemap_lock_folio(t->mapping, index);
	int r;

	if (IS_ERR(folio))
		return PTR_ERR(folio);
	r = gmem_hugetlb_restore_vmemmap(folio);
	folio_unlock(folio);
	folio_put(folio);
	return r;
}

/* Merge whatever is left, take the huge page out, and close the file. */
static void split_test_exit(struct kunit *test, struct split_test *t)
{
	struct folio *folio;

	KUNIT_EXPECT_EQ(test, merge_at(t, 0, huge_page_order(t->h)), 0);
	folio = filemap_lock_folio(t->mapping, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_TRUE(test, folio_test_hugetlb(folio));
	filemap_remove_folio(folio);
	folio_unlock(folio);
	folio_put(folio);

	gmem_hugetlb_destroy(t->gh);
	fput(t->file);
	expect_pool(test, t, 0, 0);
}

/*
 * The folios of the huge page, by order ("9:511 0:512 "), each holding
 * exactly the page cache's references and up to date.
 */
static void folio_orders(struct kunit *test, struct split_test *t, char *buf,
			 size_t len)
{
	unsigned long count[MAX_FOLIO_ORDER + 1] = {};
	struct folio *folio;
	pgoff_t index = 0;
	int order, n = 0;

	while (index < t->nr) {
		folio = filemap_get_folio(t->mapping, index);
		KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
		KUNIT_EXPECT_EQ(test, folio->index, index);
		KUNIT_EXPECT_EQ(test, folio_ref_count(folio),
				folio_nr_pages(folio) + 1);
		KUNIT_EXPECT_TRUE(test, folio_test_uptodate(folio));
		count[folio_order(folio)]++;
		index = folio_next_index(folio);
		folio_put(folio);
	}
	buf[0] = '\0';
	for (order = MAX_FOLIO_ORDER; order >= 0; order--) {
		if (count[order])
			n += scnprintf(buf + n, len - n, "%d:%lu ", order,
				       count[order]);
	}
}

static void expect_orders(struct kunit *test, struct split_test *t,
			  const char *expected)
{
	char buf[64];

	folio_orders(test, t, buf, sizeof(buf));
	KUNIT_EXPECT_STREQ(test, buf, expected);
}

static int split_at(struct split_test *t, pgoff_t index, unsigned int order,
		    const unsigned long *mixed_blocks)
{
	struct folio *folio;
	int r;

	filemap_invalidate_lock(t->mapping);
	folio = filemap_lock_folio(t->mapping, index);
	if (IS_ERR(folio)) {
		filemap_invalidate_unlock(t->mapping);
		return PTR_ERR(folio);
	}
	r = gmem_hugetlb_split(t->gh, folio, order, mixed_blocks);
	if (r) {
		folio_unlock(folio);
		folio_put(folio);
	}
	filemap_invalidate_unlock(t->mapping);
	return r;
}

static bool whole_and_optimized(struct split_test *t)
{
	struct folio *folio = filemap_get_folio(t->mapping, 0);
	bool ok = !IS_ERR(folio) && folio_test_hugetlb(folio) &&
		  folio_order(folio) == huge_page_order(t->h) &&
		  (!IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON) ||
		   folio_test_hugetlb_vmemmap_optimized(folio));

	if (!IS_ERR(folio))
		folio_put(folio);
	return ok;
}

/*
 * The struct pages that splitting a huge page into 2M pieces, one of them
 * into 4K ones, gives it (with HVO on): a 1G page's 2M pieces keep HVO, a
 * vmemmap page each, and the mixed one gets all 8 (guest_memfd_split's
 * keep_hvo_on_split); otherwise all its struct pages but the one page HVO
 * keeps.
 */
static unsigned long split_vmemmap_bytes(struct split_test *t)
{
	if (huge_page_order(t->h) > 9 && READ_ONCE(gmem_keep_hvo_on_split))
		return ((t->nr >> 9) - 1) * PAGE_SIZE + SZ_32K - PAGE_SIZE;
	return t->nr * sizeof(struct page) - PAGE_SIZE;
}

/*
 * Into 2M pieces with one of them into 4K ones in the same step (for a 2M
 * page: into 4K ones), then every way back: the orders are exact at each
 * step, the pool never moves, and the merged huge page has HVO again.
 */
static void gmem_split_every_granularity(struct kunit *test)
{
	DECLARE_BITMAP(mixed_blocks, 512) = {};
	struct split_test t;
	unsigned long vmemmap_bytes;
	char expected[64];
	bool one_g;

	split_test_init(test, &t);
	one_g = huge_page_order(t.h) > 9;
	snprintf(expected, sizeof(expected), "%u:1 ", huge_page_order(t.h));
	expect_orders(test, &t, expected);
	KUNIT_EXPECT_TRUE(test, whole_and_optimized(&t));

	/* The block holding page 1000 of a 1G page; the only one of a 2M. */
	__set_bit(one_g ? 1000 >> 9 : 0, mixed_blocks);
	KUNIT_ASSERT_EQ(test, split_at(&t, 0, 9, mixed_blocks), 0);
	expect_orders(test, &t, one_g ? "9:511 0:512 " : "0:512 ");
	KUNIT_EXPECT_TRUE(test, gmem_hugetlb_is_split(t.gh, 0));
	KUNIT_EXPECT_EQ(test, gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes), 1);
	if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
		KUNIT_EXPECT_EQ(test, vmemmap_bytes, split_vmemmap_bytes(&t));
	expect_pool(test, &t, -1, 0);

	if (one_g) {
		/* What a 2M piece that kept HVO gets back when restored. */
		unsigned long piece_restored = READ_ONCE(gmem_keep_hvo_on_split) ?
					       SZ_32K - PAGE_SIZE : 0;

		/*
		 * A 2M piece further, on its own, which restores its struct
		 * pages if it kept HVO; and its block back, which frees them.
		 */
		KUNIT_ASSERT_EQ(test, split_at(&t, 5 << 9, 0, NULL), 0);
		expect_orders(test, &t, "9:510 0:1024 ");
		gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes);
		if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
			KUNIT_EXPECT_EQ(test, vmemmap_bytes,
					split_vmemmap_bytes(&t) + piece_restored);
		KUNIT_EXPECT_EQ(test, merge_at(&t, 5 << 9, 9), 0);
		expect_orders(test, &t, "9:511 0:512 ");
		gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes);
		if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
			KUNIT_EXPECT_EQ(test, vmemmap_bytes, split_vmemmap_bytes(&t));
		/* A restore for a PTE mapping of another piece, kept. */
		KUNIT_EXPECT_EQ(test, restore_vmemmap_at(&t, 7 << 9), 0);
		gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes);
		if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
			KUNIT_EXPECT_EQ(test, vmemmap_bytes,
					split_vmemmap_bytes(&t) + piece_restored);
		KUNIT_EXPECT_EQ(test, merge_at(&t, 1000 & ~511UL, 9), 0);
		expect_orders(test, &t, "9:512 ");
	}

	/* The whole huge page: one hugetlb folio again, HVO and all. */
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h)), 0);
	expect_orders(test, &t, expected);
	KUNIT_EXPECT_FALSE(test, gmem_hugetlb_is_split(t.gh, 0));
	KUNIT_EXPECT_TRUE(test, whole_and_optimized(&t));
	expect_pool(test, &t, -1, 0);

	/* A merge of what is whole already does nothing. */
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h)), 0);

	/*
	 * An ordinary folio of the huge page's order (all shared) keeps HVO;
	 * a restore for a PTE mapping undoes it, and the merge redoes it.
	 */
	KUNIT_ASSERT_EQ(test, split_at(&t, 0, huge_page_order(t.h), NULL), 0);
	expect_orders(test, &t, expected);
	KUNIT_EXPECT_TRUE(test, gmem_hugetlb_is_split(t.gh, 0));
	KUNIT_EXPECT_EQ(test, gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes), 1);
	KUNIT_EXPECT_EQ(test, vmemmap_bytes, 0);
	KUNIT_EXPECT_EQ(test, restore_vmemmap_at(&t, 0), 0);
	KUNIT_EXPECT_EQ(test, gmem_hugetlb_split_stats(t.gh, &vmemmap_bytes), 1);
	if (IS_ENABLED(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON))
		KUNIT_EXPECT_EQ(test, vmemmap_bytes, t.nr * sizeof(struct page) - PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h)), 0);
	KUNIT_EXPECT_TRUE(test, whole_and_optimized(&t));

	/* Merged while it kept HVO: nothing to redo. */
	KUNIT_ASSERT_EQ(test, split_at(&t, 0, huge_page_order(t.h), NULL), 0);
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h)), 0);
	KUNIT_EXPECT_TRUE(test, whole_and_optimized(&t));
	expect_pool(test, &t, -1, 0);
	split_test_exit(test, &t);
}

/*
 * A reference beyond the page cache's makes a split fail with -EAGAIN, and a
 * merge too, changing nothing; once it is gone both go through.
 */
static void gmem_split_merge_blocked_by_references(struct kunit *test)
{
	struct folio *folio, *extra;
	struct split_test t;
	char expected[64];

	split_test_init(test, &t);
	snprintf(expected, sizeof(expected), "%u:1 ", huge_page_order(t.h));

	extra = filemap_get_folio(t.mapping, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(extra));
	KUNIT_EXPECT_EQ(test, split_at(&t, 0, 0, NULL), -EAGAIN);
	KUNIT_EXPECT_FALSE(test, gmem_hugetlb_is_split(t.gh, 0));
	folio_put(extra);
	expect_orders(test, &t, expected);

	KUNIT_ASSERT_EQ(test, split_at(&t, 0, 0, NULL), 0);
	extra = filemap_get_folio(t.mapping, 7);
	KUNIT_ASSERT_FALSE(test, IS_ERR(extra));
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h)), -EAGAIN);
	KUNIT_EXPECT_TRUE(test, gmem_hugetlb_is_split(t.gh, 0));
	folio = filemap_get_folio(t.mapping, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_EQ(test, folio_order(folio), 0);
	folio_put(folio);
	folio_put(extra);
	expect_pool(test, &t, -1, 0);

	/* Bad requests: an order above the huge page's, a misaligned index. */
	KUNIT_EXPECT_EQ(test, merge_at(&t, 0, huge_page_order(t.h) + 1), -EINVAL);
	KUNIT_EXPECT_EQ(test, merge_at(&t, 1, 9), -EINVAL);
	split_test_exit(test, &t);
}

static struct kunit_case gmem_split_test_cases[] = {
	KUNIT_CASE_PARAM(gmem_split_every_granularity, huge_size_gen_params),
	KUNIT_CASE_PARAM(gmem_split_merge_blocked_by_references, huge_size_gen_params),
	{}
};

static struct kunit_suite gmem_split_test_suite = {
	.name = "guest_memfd_split",
	.test_cases = gmem_split_test_cases,
};

kunit_test_suite(gmem_split_test_suite);

MODULE_DESCRIPTION("KUnit tests for the guest_memfd split/merge engine");
MODULE_LICENSE("GPL");
