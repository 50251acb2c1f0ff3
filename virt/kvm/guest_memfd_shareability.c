// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd's shareability ranges.
 *
 * Whether a page of the file is private to the guest or shared with the host
 * is kept per range of indices: a red-black tree of ranges that cover the
 * file, each with its KVM_MEMORY_ATTRIBUTE_* bits, two adjacent ranges never
 * holding the same bits.  A uniform file costs one range however large it
 * is, and the range that holds an index is the largest uniform range around
 * it, which is what bounds the level KVM may map the index at.
 *
 * KVM looks shareability up with its MMU lock held, so readers take a
 * rwlock; writers hold it and the update lock the owner names (guest_memfd:
 * the invalidate lock), which also lets readers that hold it skip the
 * rwlock.  A change is prepared (its nodes allocated) before anything else,
 * so that applying it cannot fail: it needs at most two nodes beyond those it
 * replaces.  (A maple tree in RCU mode was tried first; converting a large
 * fragmented range made its spanning store free a node twice, KASAN said.)
 *
 * Nothing here is KVM's but the meaning of the bits: another user of
 * guest_memfd-like memory could keep its shareability the same way.
 */
#include <linux/lockdep.h>
#include <linux/slab.h>

#include "guest_memfd_shareability.h"

static struct gmem_range *gmem_range_find(struct gmem_shareability *sh,
					  pgoff_t index)
{
	struct rb_node *node = sh->ranges.rb_node;

	while (node) {
		struct gmem_range *r = rb_entry(node, struct gmem_range, node);

		if (index < r->first)
			node = node->rb_left;
		else if (index > r->last)
			node = node->rb_right;
		else
			return r;
	}
	return NULL;
}

static void gmem_range_insert(struct gmem_shareability *sh, struct gmem_range *r)
{
	struct rb_node **link = &sh->ranges.rb_node, *parent = NULL;

	while (*link) {
		parent = *link;
		if (r->first < rb_entry(parent, struct gmem_range, node)->first)
			link = &parent->rb_left;
		else
			link = &parent->rb_right;
	}
	rb_link_node(&r->node, parent, link);
	rb_insert_color(&r->node, &sh->ranges);
	sh->nr_ranges++;
}

static void gmem_range_erase(struct gmem_shareability *sh, struct gmem_range *r,
			     struct list_head *free)
{
	rb_erase(&r->node, &sh->ranges);
	sh->nr_ranges--;
	list_add(&r->free, free);
}

/*
 * Insert [@first, @last] with @attrs, with a node of @free: an update erases at
 * least one range and adds at most three, and @free starts with the two
 * spare nodes, so it always has one.
 */
static void gmem_range_add(struct gmem_shareability *sh, struct list_head *free,
			   pgoff_t first, pgoff_t last, unsigned long attrs)
{
	struct gmem_range *r = list_first_entry(free, struct gmem_range, free);

	list_del(&r->free);

	r->first = first;
	r->last = last;
	r->attrs = attrs;
	gmem_range_insert(sh, r);
}

/**
 * gmem_shareability_init() - Give a file of @nr_pages pages one range.
 * @sh: the file's shareability, not in use yet.
 * @nr_pages: the size of the file, in pages; at least one.
 * @attrs: what every page has.
 * @update_lock: the lock that writers hold (and readers may hold instead of
 *		 the rwlock), for lockdep to check.
 *
 * Return: 0, or -ENOMEM.
 */
int gmem_shareability_init(struct gmem_shareability *sh, pgoff_t nr_pages,
			   unsigned long attrs, struct rw_semaphore *update_lock)
{
	struct gmem_range *r;

	rwlock_init(&sh->lock);
	sh->ranges = RB_ROOT;
	sh->nr_ranges = 0;
	sh->update_lock = update_lock;

	r = kzalloc_obj(*r, GFP_KERNEL_ACCOUNT);
	if (!r)
		return -ENOMEM;
	r->last = nr_pages - 1;
	r->attrs = attrs;

	write_lock(&sh->lock);
	gmem_range_insert(sh, r);
	write_unlock(&sh->lock);
	return 0;
}

/* gmem_shareability_destroy() - Free @sh's ranges: the file is going. */
void gmem_shareability_destroy(struct gmem_shareability *sh)
{
	struct gmem_range *r, *next;

	rbtree_postorder_for_each_entry_safe(r, next, &sh->ranges, node)
		kfree(r);
	sh->ranges = RB_ROOT;
	sh->nr_ranges = 0;
}

/**
 * gmem_shareability_get() - The attributes of the page at @index.
 * @sh: the file's shareability.
 * @index: a page of the file.
 *
 * Takes the rwlock: any context that may sleep or hold a spinlock (KVM's MMU
 * lock) may ask.
 *
 * Return: the KVM_MEMORY_ATTRIBUTE_* bits of the page, 0 past the file's end.
 */
unsigned long gmem_shareability_get(struct gmem_shareability *sh,
				    pgoff_t index)
{
	unsigned long attrs = 0;

	gmem_shareability_range_around(sh, index, NULL, &attrs);
	return attrs;
}

/**
 * gmem_shareability_range_around() - The uniform range that holds @index.
 * @sh: the file's shareability.
 * @index: a page of the file.
 * @last: if not NULL, set to the range's last page.
 * @attrs: if not NULL, set to the range's attributes.
 *
 * Takes the rwlock, as gmem_shareability_get() does.
 *
 * Return: false, and nothing set, if @index is past the file's end.
 */
bool gmem_shareability_range_around(struct gmem_shareability *sh,
				    pgoff_t index, pgoff_t *last,
				    unsigned long *attrs)
{
	struct gmem_range *r;

	read_lock(&sh->lock);
	r = gmem_range_find(sh, index);
	if (r) {
		if (last)
			*last = r->last;
		if (attrs)
			*attrs = r->attrs;
	}
	read_unlock(&sh->lock);
	return !!r;
}

/*
 * The largest order, up to @order, of the naturally aligned block of indices
 * that holds @index and lies inside [@first, @last].
 */
static int gmem_block_order(pgoff_t index, int order, pgoff_t first,
			    pgoff_t last)
{
	for (; order > 0; order--) {
		pgoff_t base = round_down(index, 1UL << order);

		if (base >= first && base + (1UL << order) - 1 <= last)
			break;
	}
	return order;
}

/**
 * gmem_shareability_uniform_order() - How large a block around @index is
 *				       uniform.
 * @sh: the file's shareability.
 * @index: a page of the file.
 * @order: the largest order the caller can use.
 *
 * Return: the largest order, up to @order, of the naturally aligned block that
 * holds @index and whose pages all have the same attributes (0 past the end).
 */
int gmem_shareability_uniform_order(struct gmem_shareability *sh,
				    pgoff_t index, int order)
{
	struct gmem_range *r;

	if (!order)
		return 0;

	read_lock(&sh->lock);
	r = gmem_range_find(sh, index);
	order = r ? gmem_block_order(index, order, r->first, r->last) : 0;
	read_unlock(&sh->lock);

	return order;
}

/**
 * gmem_shareability_count() - Count pages and ranges, for fdinfo.
 * @sh: the file's shareability.
 * @attrs: the attributes to count the pages of.
 * @pages: set to the number of pages that have all of @attrs.
 * @other_pages: set to the number of the others.
 * @ranges: set to the number of uniform ranges.
 */
void gmem_shareability_count(struct gmem_shareability *sh,
			     unsigned long attrs, unsigned long *pages,
			     unsigned long *other_pages, unsigned long *ranges)
{
	struct gmem_range *r;

	*pages = 0;
	*other_pages = 0;
	read_lock(&sh->lock);
	for (r = rb_entry_safe(rb_first(&sh->ranges), struct gmem_range, node); r;
	     r = rb_entry_safe(rb_next(&r->node), struct gmem_range, node)) {
		if ((r->attrs & attrs) == attrs)
			*pages += r->last - r->first + 1;
		else
			*other_pages += r->last - r->first + 1;
	}
	*ranges = sh->nr_ranges;
	read_unlock(&sh->lock);
}

/**
 * gmem_shareability_range_has() - Whether [@start, @end) has exactly @attrs.
 * @sh: the file's shareability.
 * @start: the first page.
 * @end: the page after the last; greater than @start.
 * @attrs: the attributes every page must have.
 *
 * The caller holds the update lock: no writer runs.
 *
 * Return: true if every page of the range has @attrs.
 */
bool gmem_shareability_range_has(struct gmem_shareability *sh, pgoff_t start,
				 pgoff_t end, unsigned long attrs)
{
	struct gmem_range *r;

	lockdep_assert_held(sh->update_lock);
	r = gmem_range_find(sh, start);
	return r && r->attrs == attrs && r->last >= end - 1;
}

/**
 * gmem_shareability_prepare() - Prepare to set @attrs on [@start, @end).
 * @sh: the file's shareability.
 * @u: the update to prepare.
 * @start: the first page.
 * @end: the page after the last; greater than @start, at most the file's end.
 * @attrs: the attributes to set.
 *
 * Allocates the nodes the update may need and finds the uniform range it
 * creates (merged with neighbours that already hold @attrs).  The caller
 * holds the update lock for writing until it applies or aborts @u.
 *
 * Return: 0, or -ENOMEM and nothing to abort.
 */
int gmem_shareability_prepare(struct gmem_shareability *sh,
			      struct gmem_range_update *u, pgoff_t start,
			      pgoff_t end, unsigned long attrs)
{
	struct gmem_range *r;
	int i;

	lockdep_assert_held_write(sh->update_lock);
	*u = (struct gmem_range_update) {
		.attrs = attrs, .first = start, .last = end - 1,
	};
	for (i = 0; i < ARRAY_SIZE(u->spare); i++) {
		u->spare[i] = kzalloc_obj(*u->spare[i], GFP_KERNEL_ACCOUNT);
		if (!u->spare[i])
			goto nomem;
	}

	r = start ? gmem_range_find(sh, start - 1) : NULL;
	if (r && r->attrs == attrs)
		u->first = r->first;
	r = gmem_range_find(sh, end);
	if (r && r->attrs == attrs)
		u->last = r->last;
	return 0;

nomem:
	while (i--)
		kfree(u->spare[i]);
	return -ENOMEM;
}

/* gmem_shareability_abort() - Drop @u, prepared and not applied. */
void gmem_shareability_abort(struct gmem_range_update *u)
{
	kfree(u->spare[0]);
	kfree(u->spare[1]);
}

/**
 * gmem_shareability_apply() - Apply @u, which cannot fail.
 * @sh: the file's shareability.
 * @u: an update that gmem_shareability_prepare() prepared, under the update
 *     lock, held for writing since.
 *
 * Replaces the ranges that [u->first, u->last] touches with the pieces of
 * them outside it and the new uniform range.
 */
void gmem_shareability_apply(struct gmem_shareability *sh,
			     struct gmem_range_update *u)
{
	struct gmem_range *head, *tail, *r, *next;
	pgoff_t head_first, tail_last;
	unsigned long head_attrs, tail_attrs;
	LIST_HEAD(free);

	lockdep_assert_held_write(sh->update_lock);
	write_lock(&sh->lock);

	list_add(&u->spare[0]->free, &free);
	list_add(&u->spare[1]->free, &free);

	head = gmem_range_find(sh, u->first);
	tail = gmem_range_find(sh, u->last);
	head_first = head->first;
	head_attrs = head->attrs;
	tail_last = tail->last;
	tail_attrs = tail->attrs;

	/* Every range from head to tail goes... */
	for (r = head; r; r = next) {
		next = r == tail ? NULL :
		       rb_entry_safe(rb_next(&r->node), struct gmem_range, node);
		gmem_range_erase(sh, r, &free);
	}

	/* ...and the parts of head and tail outside the new range come back. */
	if (head_first < u->first)
		gmem_range_add(sh, &free, head_first, u->first - 1, head_attrs);
	gmem_range_add(sh, &free, u->first, u->last, u->attrs);
	if (tail_last > u->last)
		gmem_range_add(sh, &free, u->last + 1, tail_last, tail_attrs);

	write_unlock(&sh->lock);

	/* What was erased and not reused, and the spares left. */
	list_for_each_entry_safe(r, next, &free, free)
		kfree(r);
}
