// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for guest_memfd's shareability ranges
 * (guest_memfd_shareability.c): the ranges an update leaves, checked against
 * a bitmap of the attributes every page must have, and the uniform order KVM
 * may map an index at.
 *
 * After every update the ranges must cover the file exactly, in order, with
 * no two neighbours holding the same attributes, and their count must be the
 * one the fdinfo reports.
 */
#include <kunit/test.h>
#include <linux/bitmap.h>
#include <linux/kvm.h>
#include <linux/prandom.h>
#include <linux/rwsem.h>

#include "guest_memfd_shareability.h"

#define SHARED	0UL
#define PRIVATE	KVM_MEMORY_ATTRIBUTE_PRIVATE

struct range_test {
	struct gmem_shareability sh;
	struct rw_semaphore update_lock;	/* as a file's invalidate lock */
	pgoff_t nr;
	unsigned long *private;	/* the model: a set bit is a private page */
};

static void range_test_init(struct kunit *test, struct range_test *t,
			    pgoff_t nr, unsigned long attrs)
{
	t->private = kunit_kcalloc(test, BITS_TO_LONGS(nr), sizeof(long),
				   GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, t->private);
	init_rwsem(&t->update_lock);
	t->nr = nr;

	KUNIT_ASSERT_EQ(test, gmem_shareability_init(&t->sh, nr, attrs,
						     &t->update_lock), 0);
	if (attrs == PRIVATE)
		bitmap_set(t->private, 0, nr);
}

static void range_test_exit(struct range_test *t)
{
	gmem_shareability_destroy(&t->sh);
}

static unsigned long model_attrs(struct range_test *t, pgoff_t index)
{
	return test_bit(index, t->private) ? PRIVATE : SHARED;
}

/* The order gmem_shareability_uniform_order() must find, from the model. */
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
	struct gmem_shareability *sh = &t->sh;
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
	KUNIT_EXPECT_EQ(test, gmem_shareability_get(&t->sh, index),
			model_attrs(t, index));
	KUNIT_EXPECT_EQ(test, gmem_shareability_uniform_order(&t->sh, index, 9),
			model_uniform_order(t, index, 9));
}

/* Set @attrs on [@start, @end), as a conversion does. */
static void set_attrs(struct kunit *test, struct range_test *t, pgoff_t start,
		      pgoff_t end, unsigned long attrs)
{
	struct gmem_range_update u;
	bool has;
	int r;

	down_write(&t->update_lock);
	r = gmem_shareability_prepare(&t->sh, &u, start, end, attrs);
	if (!r)
		gmem_shareability_apply(&t->sh, &u);
	has = !r && gmem_shareability_range_has(&t->sh, start, end, attrs);
	up_write(&t->update_lock);
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

	range_test_init(test, &t, 1024, PRIVATE);
	expect_ranges(test, &t);
	set_attrs(test, &t, 0, 1024, SHARED);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 1);
	set_attrs(test, &t, 0, 1024, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 1);
	expect_lookups(test, &t, 0);
	expect_lookups(test, &t, 1023);
	range_test_exit(&t);

	/* A file created shared starts as one shared range. */
	range_test_init(test, &t, 1024, SHARED);
	expect_ranges(test, &t);
	KUNIT_EXPECT_EQ(test, gmem_shareability_get(&t.sh, 512), 0);
	range_test_exit(&t);
}

static void gmem_range_first_and_last_page(struct kunit *test)
{
	unsigned long private, shared, ranges, attrs;
	struct range_test t;
	pgoff_t last;
	bool found;

	range_test_init(test, &t, 1024, PRIVATE);
	set_attrs(test, &t, 0, 1, SHARED);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 2);
	set_attrs(test, &t, 1023, 1024, SHARED);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	expect_lookups(test, &t, 0);
	expect_lookups(test, &t, 1);
	expect_lookups(test, &t, 511);
	expect_lookups(test, &t, 512);
	expect_lookups(test, &t, 1022);
	expect_lookups(test, &t, 1023);
	/* The 2M block holding page 0 is mixed; the next one is uniform. */
	KUNIT_EXPECT_EQ(test, gmem_shareability_uniform_order(&t.sh, 1, 9), 0);
	KUNIT_EXPECT_EQ(test, gmem_shareability_uniform_order(&t.sh, 2, 9), 1);
	KUNIT_EXPECT_EQ(test, gmem_shareability_uniform_order(&t.sh, 600, 9), 8);

	/* What fdinfo shows, and the range around a page. */
	gmem_shareability_count(&t.sh, PRIVATE, &private, &shared, &ranges);
	KUNIT_EXPECT_EQ(test, private, 1022);
	KUNIT_EXPECT_EQ(test, shared, 2);
	KUNIT_EXPECT_EQ(test, ranges, 3);
	found = gmem_shareability_range_around(&t.sh, 1, &last, &attrs);
	KUNIT_EXPECT_TRUE(test, found);
	KUNIT_EXPECT_EQ(test, last, 1022);
	KUNIT_EXPECT_EQ(test, attrs, PRIVATE);
	found = gmem_shareability_range_around(&t.sh, 0, &last, &attrs);
	KUNIT_EXPECT_TRUE(test, found);
	KUNIT_EXPECT_EQ(test, last, 0);
	KUNIT_EXPECT_EQ(test, attrs, SHARED);
	found = gmem_shareability_range_around(&t.sh, 1024, &last, &attrs);
	KUNIT_EXPECT_FALSE(test, found);
	KUNIT_EXPECT_EQ(test, gmem_shareability_get(&t.sh, 1024), SHARED);

	set_attrs(test, &t, 0, 1, PRIVATE);
	set_attrs(test, &t, 1023, 1024, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 1);
	KUNIT_EXPECT_EQ(test, gmem_shareability_uniform_order(&t.sh, 1, 9), 9);
	range_test_exit(&t);
}

static void gmem_range_adjacent(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, PRIVATE);
	set_attrs(test, &t, 8, 16, SHARED);
	set_attrs(test, &t, 16, 24, SHARED);		/* after: merges */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	set_attrs(test, &t, 4, 8, SHARED);		/* before: merges */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	set_attrs(test, &t, 30, 40, SHARED);		/* apart: does not */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 5);
	set_attrs(test, &t, 24, 30, SHARED);		/* the gap: all three merge */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	set_attrs(test, &t, 4, 40, PRIVATE);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 1);
	range_test_exit(&t);
}

static void gmem_range_overlapping(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, PRIVATE);
	set_attrs(test, &t, 4, 12, SHARED);
	set_attrs(test, &t, 8, 16, SHARED);		/* overlaps the end */
	set_attrs(test, &t, 2, 6, SHARED);		/* overlaps the start */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	set_attrs(test, &t, 6, 10, PRIVATE);		/* inside: splits it in two */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 5);
	set_attrs(test, &t, 20, 30, SHARED);
	set_attrs(test, &t, 1, 25, PRIVATE);		/* covers several, ends inside one */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);
	set_attrs(test, &t, 0, 64, SHARED);		/* covers all */
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 1);
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

	down_write(&t->update_lock);
	r = gmem_shareability_prepare(&t->sh, &u, start, end, attrs);
	if (!r)
		gmem_shareability_abort(&u);
	up_write(&t->update_lock);
	KUNIT_ASSERT_EQ(test, r, 0);
	KUNIT_EXPECT_EQ(test, u.first, first);
	KUNIT_EXPECT_EQ(test, u.last, last);
	expect_ranges(test, t);
}

/* A repeat, and an update prepared then aborted, change nothing. */
static void gmem_range_repeat_and_abort(struct kunit *test)
{
	struct range_test t;

	range_test_init(test, &t, 64, PRIVATE);
	set_attrs(test, &t, 10, 20, SHARED);
	set_attrs(test, &t, 10, 20, SHARED);
	set_attrs(test, &t, 12, 14, SHARED);
	KUNIT_EXPECT_EQ(test, t.sh.nr_ranges, 3);

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
	range_test_init(test, &t, nr, PRIVATE);
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
