// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for guest_memfd's shareability ranges ("Shareability" in
 * guest_memfd.c): the ranges an update leaves, checked against a bitmap of
 * the attributes every page must have, and the uniform order KVM may map an
 * index at.  Included by guest_memfd.c, whose helpers are static.
 *
 * After every update the ranges must cover the file exactly, in order, with
 * no two neighbours holding the same attributes, and their count must be the
 * one the fdinfo reports.
 */
#include <kunit/test.h>
#include <linux/bitmap.h>
#include <linux/prandom.h>

#define SHARED	0UL
#define PRIVATE	KVM_MEMORY_ATTRIBUTE_PRIVATE

struct range_test {
	struct gmem_inode *gi;
	struct inode *inode;
	pgoff_t nr;
	unsigned long *private;	/* the model: a set bit is a private page */
};

static void range_test_init(struct kunit *test, struct range_test *t,
			    pgoff_t nr, u64 flags)
{
	t->gi = kunit_kzalloc(test, sizeof(*t->gi), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, t->gi);
	t->private = kunit_kcalloc(test, BITS_TO_LONGS(nr), sizeof(long),
				   GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, t->private);

	rwlock_init(&t->gi->shareability.lock);
	t->gi->shareability.ranges = RB_ROOT;
	t->inode = &t->gi->vfs_inode;
	t->inode->i_size = (loff_t)nr << PAGE_SHIFT;
	/* Updates assert the invalidate lock, as conversions hold it. */
	address_space_init_once(&t->inode->i_data);
	init_rwsem(&t->inode->i_data.invalidate_lock);
	t->inode->i_mapping = &t->inode->i_data;
	t->nr = nr;

	KUNIT_ASSERT_EQ(test, kvm_gmem_init_shareability(t->inode, flags), 0);
	if (!(flags & GUEST_MEMFD_FLAG_INIT_SHARED))
		bitmap_set(t->private, 0, nr);
}

static void range_test_exit(struct range_test *t)
{
	kvm_gmem_destroy_shareability(&t->gi->shareability);
}

static unsigned long model_attrs(struct range_test *t, pgoff_t index)
{
	return test_bit(index, t->private) ? PRIVATE : SHARED;
}

/* The order kvm_gmem_uniform_order() must find, from the model. */
static int model_uniform_order(struct range_test *t, pgoff_t index, int order)
{
	for (; order > 0; order--) {
		pgoff_t base = round_down(index, 1UL << order), i;
		bool uniform = base + (1UL << order) <= t->nr;

		for (i = base; uniform && i < base + (1UL << order); i++)
			uniform = model_attrs(t, i) == model_attrs(t, index);
		if (uniform)
			break;
	}
	return order;
}

/* The ranges match the model, and are as few as the model allows. */
static void expect_ranges(struct kunit *test, struct range_test *t)
{
	struct gmem_shareability *sh = &t->gi->shareability;
	unsigned long count = 0, runs = 0;
	struct gmem_range *r, *prev = NULL;
	pgoff_t i;

	for (r = rb_entry_safe(rb_first(&sh->ranges), struct gmem_range, node); r;
	     r = rb_entry_safe(rb_next(&r->node), struct gmem_range, node)) {
		KUNIT_EXPECT_LE(test, r->first, r->last);
		KUNIT_EXPECT_EQ(test, r->first, prev ? prev->last + 1 : 0);
		if (prev)
			KUNIT_EXPECT_NE(test, r->attrs, prev->attrs);
		for (i = r->first; i <= r->last && i < t->nr; i++) {
			if (model_attrs(t, i) != r->attrs) {
				KUNIT_FAIL(test, "page %lu: [%lu, %lu] has %#lx, not %#lx",
					   i, r->first, r->last, r->attrs,
					   model_attrs(t, i));
				break;
			}
		}
		prev = r;
		count++;
	}
	KUNIT_EXPECT_NOT_NULL(test, prev);
	if (prev)
		KUNIT_EXPECT_EQ(test, prev->last, t->nr - 1);
	KUNIT_EXPECT_EQ(test, sh->nr_ranges, count);

	for (i = 0; i < t->nr; i++)
		runs += !i || model_attrs(t, i) != model_attrs(t, i - 1);
	KUNIT_EXPECT_EQ(test, count, runs);
}

static void expect_lookups(struct kunit *test, struct range_test *t,
			   pgoff_t index)
{
	KUNIT_EXPECT_EQ(test, kvm_gmem_get_attributes(t->inode, index),
			model_attrs(t, index));
	KUNIT_EXPECT_EQ(test, kvm_gmem_uniform_order(t->inode, index, 9),
			model_uniform_order(t, index, 9));
}

/* Set @attrs on [@start, @end), as a conversion does. */
static void set_attrs(struct kunit *test, struct range_test *t, pgoff_t start,
		      pgoff_t end, unsigned long attrs)
{
	struct gmem_range_update u;
	bool has;
	int r;

	filemap_invalidate_lock(t->inode->i_mapping);
	r = kvm_gmem_prepare_attributes(t->inode, &u, start, end, attrs);
	if (!r)
		kvm_gmem_apply_attributes(t->inode, &u);
	has = !r && kvm_gmem_range_has_attributes(t->inode, start, end, attrs);
	filemap_invalidate_unlock(t->inode->i_mapping);
	KUNIT_ASSERT_EQ(test, r, 0);

	if (attrs == PRIVATE)
		bitmap_set(t->private, start, end - start);
	else
		bitmap_clear(t->private, start, end - start);

	KUNIT_EXPECT_TRUE(test, has);
	expect_ranges(test, t);
}

static void gmem_range_whole_file(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 1024, 0);
	expect_ranges(test, &t);
	set_attrs(test, &t, 0, 1024, SHARED);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 1);
	set_attrs(test, &t, 0, 1024, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 1);
	expect_lookups(test, &t, 0);
	expect_lookups(test, &t, 1023);
	range_test_exit(&t);

	/* A file created shared starts as one shared range. */
	range_test_init(test, &t, 1024, GUEST_MEMFD_FLAG_INIT_SHARED);
	expect_ranges(test, &t);
	KUNIT_EXPECT_EQ(test, kvm_gmem_get_attributes(t.inode, 512), 0);
	range_test_exit(&t);
}

static void gmem_range_first_and_last_page(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 1024, 0);
	set_attrs(test, &t, 0, 1, SHARED);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 2);
	set_attrs(test, &t, 1023, 1024, SHARED);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	expect_lookups(test, &t, 0);
	expect_lookups(test, &t, 1);
	expect_lookups(test, &t, 511);
	expect_lookups(test, &t, 512);
	expect_lookups(test, &t, 1022);
	expect_lookups(test, &t, 1023);
	/* The 2M block holding page 0 is mixed; the next one is uniform. */
	KUNIT_EXPECT_EQ(test, kvm_gmem_uniform_order(t.inode, 1, 9), 0);
	KUNIT_EXPECT_EQ(test, kvm_gmem_uniform_order(t.inode, 2, 9), 1);
	KUNIT_EXPECT_EQ(test, kvm_gmem_uniform_order(t.inode, 600, 9), 8);

	set_attrs(test, &t, 0, 1, PRIVATE);
	set_attrs(test, &t, 1023, 1024, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 1);
	KUNIT_EXPECT_EQ(test, kvm_gmem_uniform_order(t.inode, 1, 9), 9);
	range_test_exit(&t);
}

static void gmem_range_adjacent(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, 0);
	set_attrs(test, &t, 8, 16, SHARED);
	set_attrs(test, &t, 16, 24, SHARED);		/* after: merges */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	set_attrs(test, &t, 4, 8, SHARED);		/* before: merges */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	set_attrs(test, &t, 30, 40, SHARED);		/* apart: does not */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 5);
	set_attrs(test, &t, 24, 30, SHARED);		/* the gap: all three merge */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	set_attrs(test, &t, 4, 40, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 1);
	range_test_exit(&t);
}

static void gmem_range_overlapping(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, 0);
	set_attrs(test, &t, 4, 12, SHARED);
	set_attrs(test, &t, 8, 16, SHARED);		/* overlaps the end */
	set_attrs(test, &t, 2, 6, SHARED);		/* overlaps the start */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	set_attrs(test, &t, 6, 10, PRIVATE);		/* inside: splits it in two */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 5);
	set_attrs(test, &t, 20, 30, SHARED);
	set_attrs(test, &t, 1, 25, PRIVATE);		/* covers several, ends inside one */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);
	set_attrs(test, &t, 0, 64, SHARED);		/* covers all */
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 1);
	range_test_exit(&t);
}

/*
 * Prepare the update of [@start, @end) to @attrs, expect it to span the pages
 * [@first, @last] once merged with its neighbours, and abort it: nothing
 * changes.
 */
static void expect_aborted_update(struct kunit *test, struct range_test *t,
				  pgoff_t start, pgoff_t end, unsigned long attrs,
				  pgoff_t first, pgoff_t last)
{
	struct gmem_range_update u;
	int r;

	filemap_invalidate_lock(t->inode->i_mapping);
	r = kvm_gmem_prepare_attributes(t->inode, &u, start, end, attrs);
	if (!r)
		kvm_gmem_abort_attributes(&u);
	filemap_invalidate_unlock(t->inode->i_mapping);
	KUNIT_ASSERT_EQ(test, r, 0);
	KUNIT_EXPECT_EQ(test, u.first, first);
	KUNIT_EXPECT_EQ(test, u.last, last);
	expect_ranges(test, t);
}

/* A repeat, and an update prepared then aborted, change nothing. */
static void gmem_range_repeat_and_abort(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, 0);
	set_attrs(test, &t, 10, 20, SHARED);
	set_attrs(test, &t, 10, 20, SHARED);
	set_attrs(test, &t, 12, 14, SHARED);
	KUNIT_EXPECT_EQ(test, t.gi->shareability.nr_ranges, 3);

	expect_aborted_update(test, &t, 0, 64, SHARED, 0, 63);
	expect_aborted_update(test, &t, 20, 30, SHARED, 10, 29);
	range_test_exit(&t);
}

/*
 * Random updates of a 4M file (two 2M blocks and a partial third), seeded;
 * the seed is in the log if it fails.
 */
static void gmem_range_random(struct kunit *test)
{
	const pgoff_t nr = 1024 + 256;
	struct rnd_state rnd;
	struct range_test t;
	unsigned int i;
	u64 seed = 0x6d656d6664;

	prandom_seed_state(&rnd, seed);
	range_test_init(test, &t, nr, 0);
	for (i = 0; i < 2000 && !test->status; i++) {
		pgoff_t start = prandom_u32_state(&rnd) % nr;
		pgoff_t len = 1 + prandom_u32_state(&rnd) %
			      (prandom_u32_state(&rnd) & 1 ? 4 : nr - start);
		unsigned long attrs = prandom_u32_state(&rnd) & 1 ? PRIVATE : SHARED;

		len = min(len, nr - start);
		set_attrs(test, &t, start, start + len, attrs);
		expect_lookups(test, &t, prandom_u32_state(&rnd) % nr);
		if (test->status)
			kunit_info(test, "seed %#llx, update %u: [%lu, %lu) to %#lx",
				   seed, i, start, start + len, attrs);
	}
	range_test_exit(&t);
}

static struct kunit_case gmem_range_cases[] = {
	KUNIT_CASE(gmem_range_whole_file),
	KUNIT_CASE(gmem_range_first_and_last_page),
	KUNIT_CASE(gmem_range_adjacent),
	KUNIT_CASE(gmem_range_overlapping),
	KUNIT_CASE(gmem_range_repeat_and_abort),
	KUNIT_CASE(gmem_range_random),
	{}
};

static struct kunit_suite gmem_range_suite = {
	.name = "guest_memfd_shareability",
	.test_cases = gmem_range_cases,
};

kunit_test_suite(gmem_range_suite);
