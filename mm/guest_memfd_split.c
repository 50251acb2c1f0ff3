// SPDX-License-Identifier: GPL-2.0-only
/*
 * The split/merge engine of hugetlb-backed guest_memfd.
 *
 * A huge page of a guest_memfd file starts as one hugetlb folio, with its
 * vmemmap optimised (HVO): only the first page of its struct pages is real,
 * the tail struct pages are shared read-only. That is all a huge page needs
 * while the guest owns all of it, since KVM maps it by pfn. Once part of it is
 * shared with the host, the host maps, pins and references its pages one by
 * one, which takes struct pages of their own: the huge page is split into
 * ordinary page-cache folios ("pieces"), only as far as needed:
 *
 *   1G hugetlb folio -> 512 folios of 2M -> the 2M folio that is not uniform
 *                                           -> 512 folios of 4K
 *
 * and merged back (HVO re-applied) once it is private again. The 2M pieces of
 * a 1G page keep HVO themselves, but for those split further, so the split
 * costs the struct pages of the mixed 2M blocks (and a vmemmap page per 2M
 * piece), not those of the whole GiB. Nothing moves: a piece is the same
 * memory, in the same page cache slots, as the huge folio it came from, so the
 * guest's contents are untouched.
 *
 * A huge page that is all shared becomes one piece of its own order (a "whole
 * piece"), which the host maps with one PMD or PUD. That piece keeps HVO: to
 * map it whole, pin it or look it up, nobody writes a tail struct page beyond
 * the first vmemmap page, which HVO keeps. What does write them (a PTE
 * mapping's per-page mapcount, memory failure's poison flag, a further split)
 * restores the vmemmap first. So an all-shared file costs the struct pages
 * hugetlbfs costs.
 *
 * A split huge page is still in use as far as hugetlb is concerned (its pool
 * counts do not change); what the hugetlb folio held that pieces cannot (its
 * subpool, cgroup charges and flags) waits in a record until the merge. Pieces
 * are never freed: only this file takes them out of the page cache, when it
 * merges them. If truncation finds pieces still referenced (pinned for I/O,
 * say), they leave the page cache but keep their references as long as needed
 * ("orphans"), and are merged and freed to the pool once nothing else holds
 * them, so no page is ever lost to the pool. An orphan is not the file's any
 * more: it leaves the file's subpool, which reserves a page in its place. A
 * huge page with a poisoned page is merged only then, and goes back to the
 * pool marked, never to be used.
 *
 * Locking: the caller (guest_memfd) holds the file's invalidate lock, which
 * keeps its own lookups (KVM and host faults) out, so a folio's references
 * are frozen only against stray speculative lookups. A split takes the folio
 * locked, with one reference, from its caller; a merge freezes every piece,
 * and fails with -EAGAIN if any is referenced beyond the page cache.
 */
#include <linux/dax.h>		/* for mm/internal.h */
#include <linux/fault-inject.h>
#include <linux/guest_memfd.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>	/* for mm/internal.h */
#include <linux/slab.h>
#include <linux/srcu.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "guest_memfd_internal.h"
#include "hugetlb_vmemmap.h"
#include "internal.h"

/* A 1G page has 512 pieces of 2M. */
#define GMEM_HVO_MAX_PIECES	512

/* What a split huge page's hugetlb folio held, for the merge. */
struct gmem_split_record {
	unsigned long hugetlb_flags;	/* folio->private: HPG_* */
	void *subpool;
	void *cgroup;
	void *cgroup_rsvd;
#ifdef CONFIG_MEMCG
	unsigned long memcg_data;
#endif
	/*
	 * The pages of struct pages that the split, or a restore since, gave
	 * the huge page beyond what HVO left it: what the merge frees.
	 */
	unsigned long vmemmap_pages;
	/*
	 * The order of the pieces that keep HVO (the huge page's own for a
	 * whole piece, 2M for those of a split 1G page), and which of them do
	 * now: those of their pfns are listed in gmem_hvo_pieces.
	 */
	unsigned int hvo_order;
	DECLARE_BITMAP(hvo_pieces, GMEM_HVO_MAX_PIECES);
	/*
	 * The pieces of that order whose HVO a split undid: a join that puts
	 * one back together re-applies it, so that a conversion that fails
	 * leaves the struct pages as they were.
	 */
	DECLARE_BITMAP(hvo_undone, GMEM_HVO_MAX_PIECES);
	/* Memory failure poisoned a page of a piece. */
	bool hwpoisoned;
	/*
	 * When the split happened or its shareability last changed (jiffies),
	 * and how many changes came in a row, each within the caller's window
	 * of the one before (gmem_hugetlb_note_change()).
	 */
	unsigned long changed;
	unsigned int changes_in_row;
	/*
	 * Once truncation took the huge page out of the file with a piece
	 * still referenced (an orphan): its pages, until they are freed.
	 */
	struct list_head orphan;
	struct hstate *h;
	struct page *head;
};

/*
 * The pieces that keep HVO, by the pfns of their huge pages: their split
 * records. Memory failure marks a page without the folio lock (it holds
 * mf_mutex, which guest_memfd takes under the folio lock), so it finds them
 * here, and gmem_vmemmap_mutex orders it with whatever changes the struct
 * pages of a huge page's pieces: a split that keeps HVO, a restore, a merge.
 */
static DEFINE_XARRAY(gmem_hvo_pieces);
static DEFINE_MUTEX(gmem_vmemmap_mutex);

/*
 * A 1G page split into 2M pieces keeps HVO for each (one page of struct pages
 * each, 2 MiB in all), but those that are split further; off, the split
 * restores the struct pages of the whole GiB (16 MiB), as it once did.
 */
bool gmem_keep_hvo_on_split = true;
module_param_named(keep_hvo_on_split, gmem_keep_hvo_on_split, bool, 0644);
MODULE_PARM_DESC(keep_hvo_on_split,
		 "A 1G page split into 2M pieces keeps HVO for each (default: on)");

/*
 * Lookups that hold no invalidate lock (gmem_hugetlb_get_piece()) read a
 * piece's reference count under this; a merge that re-applies HVO waits for
 * them once the pieces are frozen (gmem_wait_for_lookups()), since HVO makes
 * the struct pages of all pieces but the first read-only.
 */
DEFINE_STATIC_SRCU(gmem_lookup_srcu);

static void gmem_save_hugetlb(struct folio *folio, struct gmem_split_record *rec)
{
	rec->hugetlb_flags = (unsigned long)folio->private;
	rec->subpool = folio->_hugetlb_subpool;
	rec->cgroup = folio->_hugetlb_cgroup;
	rec->cgroup_rsvd = folio->_hugetlb_cgroup_rsvd;
#ifdef CONFIG_MEMCG
	rec->memcg_data = folio->memcg_data;
#endif
}

static void gmem_restore_hugetlb(struct folio *folio,
				 const struct gmem_split_record *rec)
{
	folio->private = (void *)rec->hugetlb_flags;
	folio->_hugetlb_subpool = rec->subpool;
	folio->_hugetlb_cgroup = rec->cgroup;
	folio->_hugetlb_cgroup_rsvd = rec->cgroup_rsvd;
#ifdef CONFIG_MEMCG
	folio->memcg_data = rec->memcg_data;
#endif
}

/*
 * Make @page a page of its own, as if just initialised: no folio, no flags
 * but its node, zone and section (and hardware poison, which must stay), no
 * references.
 */
static void gmem_reset_page(struct page *page)
{
	unsigned long flags = READ_ONCE(page->flags.f), new;

	/*
	 * Memory failure sets PG_hwpoison without a reference, so the flags
	 * change atomically, and the rest of the struct page is zeroed apart.
	 */
	BUILD_BUG_ON(offsetof(struct page, flags) != 0);
	do {
		new = flags & ~(PAGE_FLAGS_CHECK_AT_PREP | PAGE_FLAGS_SECOND);
#ifndef LAST_CPUPID_NOT_IN_PAGE_FLAGS
		new |= LAST_CPUPID_MASK << LAST_CPUPID_PGSHIFT;
#endif
	} while (!try_cmpxchg(&page->flags.f, &flags, new));
	memset((char *)page + sizeof(page->flags), 0,
	       sizeof(*page) - sizeof(page->flags));
	atomic_set(&page->_mapcount, -1);
#ifdef LAST_CPUPID_NOT_IN_PAGE_FLAGS
	page_cpupid_reset_last(page);
#endif
	INIT_LIST_HEAD(&page->lru);
}

static void gmem_reset_pages(struct page *head, unsigned long nr)
{
	unsigned long i;

	/* No sleeping: references are frozen, lookups spin meanwhile. */
	for (i = 0; i < nr; i++)
		gmem_reset_page(head + i);
}

/* Whether a page of the 2^@order pages from @head is poisoned. */
static bool gmem_pages_hwpoisoned(struct page *head, unsigned int order)
{
	unsigned long i;

	for (i = 0; i < (1UL << order); i++) {
		if (PageHWPoison(head + i))
			return true;
	}
	return false;
}

/*
 * How many of the 2^@order struct pages of a huge page can be written: all of
 * them, or with HVO (@hvo) those in the first vmemmap page.
 */
static unsigned long gmem_writable_struct_pages(unsigned int order, bool hvo)
{
	return hvo ? HUGETLB_VMEMMAP_RESERVE_PAGES : 1UL << order;
}

/*
 * prep_compound_page() for a compound page of @order at @head whose vmemmap
 * may be optimized (@hvo): the tail struct pages that HVO shares are the
 * zone's tail struct pages for @order, which are right for any folio of that
 * order, and are not written.
 */
static void gmem_prep_compound(struct page *head, unsigned int order, bool hvo)
{
	unsigned long nr = gmem_writable_struct_pages(order, hvo), i;

	__folio_set_head((struct folio *)head);
	for (i = 1; i < nr; i++)
		prep_compound_tail(head + i, head, order);
	prep_compound_head(head, order);
}

/*
 * Set up @head as the head of a page-cache folio of @order at @index, with its
 * vmemmap optimized if @hvo.  A large folio with a poisoned page (@poisoned,
 * which the caller knows: a 1G page's struct pages take a while to look at)
 * is marked, so that no fault maps that page along with the others (see
 * finish_fault()).
 */
static struct folio *gmem_prep_folio(struct page *head, unsigned int order,
				     struct address_space *mapping, pgoff_t index,
				     bool hvo, bool poisoned)
{
	struct folio *folio = (struct folio *)head;

	if (order) {
		gmem_prep_compound(head, order, hvo);
		folio_set_large_rmappable(folio);
		if (poisoned)
			folio_set_has_hwpoisoned(folio);
	}
	folio->mapping = mapping;
	folio->index = index;
	__folio_mark_uptodate(folio);
	return folio;
}

/*
 * Store the folios just made of the 2^@nr_order pages at @head in the page
 * cache, over what the slots held, each with the page cache's references. The
 * slots were split beforehand to exactly these folios' orders, or to coarser
 * entries that they fill, so no xarray node is allocated.
 */
static void gmem_store_entries(struct address_space *mapping, struct page *head,
			       unsigned int nr_order, pgoff_t index)
{
	unsigned long nr = 1UL << nr_order, i, last = 0;
	unsigned int order, last_order = 0, node_shift;
	XA_STATE(xas, &mapping->i_pages, index);
	struct folio *folio;

	mapping_set_update(&xas, mapping);
	xas_lock_irq(&xas);
	for (i = 0; i < nr; i += folio_nr_pages(folio)) {
		folio = (struct folio *)(head + i);
		order = folio_order(folio);
		/*
		 * The next slot of the node the last store left the state at,
		 * if it holds this entry too: no walk from the root.
		 */
		node_shift = order - order % XA_CHUNK_SHIFT;
		if (i && order == last_order && xas_is_node(&xas) &&
		    xas.xa_node->shift == node_shift &&
		    (index + i) >> (node_shift + XA_CHUNK_SHIFT) ==
		    (index + last) >> (node_shift + XA_CHUNK_SHIFT))
			xas_advance(&xas, index + i);
		else
			xas_set_order(&xas, index + i, order);
		xas_store(&xas, folio);
		WARN_ON_ONCE(xas_error(&xas));
		last = i;
		last_order = order;
	}
	xas_unlock_irq(&xas);
}

static void gmem_unfreeze_pieces(struct page *head, unsigned int nr_order)
{
	unsigned long nr = 1UL << nr_order, i;
	struct folio *folio;

	for (i = 0; i < nr; i += folio_nr_pages(folio)) {
		folio = (struct folio *)(head + i);
		folio_ref_unfreeze(folio, folio_nr_pages(folio));
	}
}

/*
 * Store the (frozen) folios that cover 2^@nr_order pages from @head at @index,
 * then unfreeze them: only then, so that a lookup that found the first piece
 * in a slot that was still the whole folio's does not get hold of it.
 */
static void gmem_store_pieces(struct address_space *mapping, struct page *head,
			      unsigned int nr_order, pgoff_t index)
{
	gmem_store_entries(mapping, head, nr_order, index);
	gmem_unfreeze_pieces(head, nr_order);
}

/*
 * xas_split() splits an entry at most two xarray levels down: the order to
 * split an entry of @order to on the way to @new_order.
 */
static unsigned int gmem_xa_split_step(unsigned int order, unsigned int new_order)
{
	unsigned int shift = new_order - new_order % XA_CHUNK_SHIFT;

	if (shift + 2 * XA_CHUNK_SHIFT > order)
		return new_order;
	return order - XA_CHUNK_SHIFT;
}

/*
 * Split the page cache entries of @folio in [@index, @end) down to @new_order,
 * each still holding @folio. This is the only step of a split that allocates
 * xarray nodes, so it comes first; a split that fails after it undoes it
 * (gmem_xa_unsplit()), since page cache walks would see @folio once per entry.
 * One entry covers the range (a whole folio, or a piece of one that the split
 * made an entry of its own), and each step splits all the entries of a level:
 * their nodes first, then one pass under the lock, with no walk of the range
 * (a 1G page split into 2M entries took 65 lock round trips and 512 lookups).
 */
static int gmem_xa_presplit(struct address_space *mapping, struct folio *folio,
			    pgoff_t index, pgoff_t end, unsigned int new_order)
{
	XA_STATE(xas, &mapping->i_pages, index);
	unsigned int order, step;
	pgoff_t i;

	rcu_read_lock();
	xas_load(&xas);
	order = xas_get_order(&xas);
	rcu_read_unlock();
	if (WARN_ON_ONCE(index + (1UL << order) != end))
		return -EINVAL;

	mapping_set_update(&xas, mapping);
	for (; order > new_order; order = step) {
		step = gmem_xa_split_step(order, new_order);
		/* The nodes pile up on xas.xa_alloc, which xas_split() takes. */
		for (i = index; i < end; i += 1UL << order) {
			xas_set_order(&xas, i, step);
			xas_split_alloc(&xas, folio, order, GFP_KERNEL);
			if (xas_error(&xas))
				return xas_error(&xas);
		}
		xas_lock_irq(&xas);
		for (i = index; i < end; i += 1UL << order) {
			xas_set_order(&xas, i, step);
			xas_split(&xas, folio, order);
		}
		xas_unlock_irq(&xas);
		xas_destroy(&xas);
	}
	return 0;
}

/*
 * Make the page cache entries of @folio one entry of its order again, as they
 * were before gmem_xa_presplit(): the finer nodes are freed, nothing is
 * allocated. Lookups find @folio in the old entries or the new one.
 */
static void gmem_xa_unsplit(struct address_space *mapping, struct folio *folio)
{
	XA_STATE_ORDER(xas, &mapping->i_pages, folio->index, folio_order(folio));

	mapping_set_update(&xas, mapping);
	xas_lock_irq(&xas);
	xas_store(&xas, folio);
	WARN_ON_ONCE(xas_error(&xas));
	xas_unlock_irq(&xas);
}

#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
/*
 * fail_gmem_split in debugfs: splits fail with -EAGAIN, as if someone held a
 * reference to the folio, so that tests can see what their callers do then.
 */
static DECLARE_FAULT_ATTR(fail_gmem_split);

static int __init fail_gmem_split_debugfs(void)
{
	return PTR_ERR_OR_ZERO(fault_create_debugfs_attr("fail_gmem_split", NULL,
							 &fail_gmem_split));
}
late_initcall(fail_gmem_split_debugfs);

/*
 * Only when asked for: should_fail() also counts towards a task's fail-nth,
 * which tests use to fail allocations one by one, and this is none.
 */
static bool gmem_split_should_fail(void)
{
	return READ_ONCE(fail_gmem_split.probability) &&
	       should_fail(&fail_gmem_split, 1);
}
#else
static inline bool gmem_split_should_fail(void)
{
	return false;
}
#endif

static pgoff_t gmem_huge_index(const struct gmem_hugetlb *gh, pgoff_t index)
{
	return index >> huge_page_order(gh->h);
}

/* Whether the struct pages of @rec's huge page are optimized (HVO) now. */
static bool gmem_record_hvo(const struct gmem_split_record *rec)
{
	return rec->hugetlb_flags & BIT(HPG_vmemmap_optimized);
}

/* Pages of struct pages that HVO saves on a folio of @order. */
static unsigned long gmem_hvo_saved_pages(unsigned int order)
{
	return ((1UL << order) * sizeof(struct page) -
		HUGETLB_VMEMMAP_RESERVE_SIZE) >> PAGE_SHIFT;
}

/* List @rec's huge page (at @head) as having pieces that keep HVO, or not. */
static int gmem_set_hvo_piece(struct gmem_split_record *rec, struct page *head,
			      unsigned int order)
{
	unsigned long pfn = page_to_pfn(head);

	lockdep_assert_held(&gmem_vmemmap_mutex);
	return xa_err(xa_store_range(&gmem_hvo_pieces, pfn,
				     pfn + (1UL << order) - 1, rec, GFP_KERNEL));
}

/*
 * Give the struct pages of @rec's piece @i, which keeps HVO, memory of their
 * own, so that they can be written; the merge re-applies HVO.
 */
static int gmem_restore_hvo_piece(struct gmem_split_record *rec, unsigned long i)
{
	unsigned int nr = 1U << (huge_page_order(rec->h) - rec->hvo_order);
	int r;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	r = hugetlb_vmemmap_restore_in_use_pages(rec->head + (i << rec->hvo_order),
						 rec->hvo_order);
	if (r)
		return r;
	__clear_bit(i, rec->hvo_pieces);
	if (bitmap_empty(rec->hvo_pieces, nr))
		gmem_set_hvo_piece(NULL, rec->head, huge_page_order(rec->h));
	rec->hugetlb_flags &= ~BIT(HPG_vmemmap_optimized);
	WRITE_ONCE(rec->vmemmap_pages,
		   rec->vmemmap_pages + gmem_hvo_saved_pages(rec->hvo_order));
	return 0;
}

/*
 * Restore the piece that keeps HVO at @pfn, if one does.
 * Return: 1 if it restored one, 0 if none keeps HVO there, or -ENOMEM.
 */
static int gmem_restore_listed_piece(unsigned long pfn)
{
	struct gmem_split_record *rec;
	unsigned long i;
	int r;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	rec = xa_load(&gmem_hvo_pieces, pfn);
	if (!rec)
		return 0;
	i = (pfn - page_to_pfn(rec->head)) >> rec->hvo_order;
	if (!test_bit(i, rec->hvo_pieces))
		return 0;
	r = gmem_restore_hvo_piece(rec, i);
	return r ? r : 1;
}

/* Restore every piece of @rec's huge page that keeps HVO. */
static int gmem_restore_hvo_pieces(struct gmem_split_record *rec)
{
	unsigned int nr = 1U << (huge_page_order(rec->h) - rec->hvo_order);
	unsigned long i;
	int r;

	if (!rec->hvo_order)
		return 0;
	for_each_set_bit(i, rec->hvo_pieces, nr) {
		r = gmem_restore_hvo_piece(rec, i);
		if (r)
			return r;
	}
	return 0;
}

/* Whether a piece of @rec's huge page keeps HVO. */
static bool gmem_pieces_keep_hvo(const struct gmem_split_record *rec)
{
	return rec->hvo_order &&
	       !bitmap_empty(rec->hvo_pieces,
			     1U << (huge_page_order(rec->h) - rec->hvo_order));
}

/*
 * Whether a page of the block of @order at @head, in @rec's huge page, is
 * poisoned. A piece that keeps HVO has none (memory failure restores it
 * before it marks a page), so only the others' struct pages are looked at:
 * a merged 1G page with one mixed 2M block, 512 instead of 262,144.
 */
static bool gmem_block_hwpoisoned(const struct gmem_split_record *rec,
				  struct page *head, unsigned int order)
{
	unsigned int piece_order = rec->hvo_order;
	unsigned long i, first;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	if (!gmem_pieces_keep_hvo(rec) || piece_order > order)
		return gmem_pages_hwpoisoned(head, order);
	first = (head - rec->head) >> piece_order;
	for (i = 0; i < 1UL << (order - piece_order); i++) {
		if (!test_bit(first + i, rec->hvo_pieces) &&
		    gmem_pages_hwpoisoned(head + (i << piece_order), piece_order))
			return true;
	}
	return false;
}

/*
 * Note that @rec's piece at @head, of @order, keeps HVO again, which freed
 * @freed pages of struct pages. Its huge page is listed already.
 */
static void gmem_note_hvo_piece(struct gmem_split_record *rec, struct page *head,
				unsigned int order, unsigned long freed)
{
	lockdep_assert_held(&gmem_vmemmap_mutex);
	if (rec->hvo_order != order) {
		bitmap_zero(rec->hvo_pieces, GMEM_HVO_MAX_PIECES);
		bitmap_zero(rec->hvo_undone, GMEM_HVO_MAX_PIECES);
		rec->hvo_order = order;
	}
	__set_bit((head - rec->head) >> order, rec->hvo_pieces);
	if (order == huge_page_order(rec->h))
		rec->hugetlb_flags |= BIT(HPG_vmemmap_optimized);
	WRITE_ONCE(rec->vmemmap_pages, rec->vmemmap_pages - freed);
}

/**
 * gmem_hugetlb_restore_vmemmap() - Give the pages of a folio of a guest_memfd
 *				    huge page struct pages of their own.
 * @folio: a folio of the file, locked.
 *
 * For a caller about to map a page of @folio with a PTE, which writes the
 * page's struct page (its mapcount): a whole piece that keeps HVO has its
 * vmemmap restored. Any other folio has nothing to restore.
 *
 * Return: 0, or -ENOMEM (@folio is as it was).
 */
int gmem_hugetlb_restore_vmemmap(struct folio *folio)
{
	int r;

	VM_WARN_ON_ONCE_FOLIO(!folio_test_locked(folio), folio);
	if (folio_test_hugetlb(folio) || !folio_test_large(folio) ||
	    !xa_load(&gmem_hvo_pieces, folio_pfn(folio)))
		return 0;

	mutex_lock(&gmem_vmemmap_mutex);
	r = gmem_restore_listed_piece(folio_pfn(folio));
	mutex_unlock(&gmem_vmemmap_mutex);
	return min(r, 0);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_restore_vmemmap);

/**
 * gmem_hugetlb_lock_struct_page() - Make a page's struct page writable, and
 *				     keep it so, for memory failure.
 * @page: the page memory failure is about to mark, which was in no hugetlb
 *	  folio when it looked.
 *
 * A page of a whole piece that keeps HVO has its piece's vmemmap restored.
 * Until gmem_hugetlb_unlock_struct_page(), no split or merge of a guest_memfd
 * huge page changes whether @page's struct page can be written.
 *
 * Return: 0, and the caller calls gmem_hugetlb_unlock_struct_page() once it
 * has written @page's struct page; -EAGAIN if @page is a hugetlb folio's now
 * (memory failure's hugetlb path is for it) or -ENOMEM, with nothing held.
 */
int gmem_hugetlb_lock_struct_page(struct page *page)
{
	int r;

	mutex_lock(&gmem_vmemmap_mutex);
	if (folio_test_hugetlb(page_folio(page)))
		r = -EAGAIN;
	else
		r = min(gmem_restore_listed_piece(page_to_pfn(page)), 0);
	if (r)
		mutex_unlock(&gmem_vmemmap_mutex);
	return r;
}

/**
 * gmem_hugetlb_unlock_struct_page() - Let guest_memfd's huge pages change
 *				       again, after
 *				       gmem_hugetlb_lock_struct_page().
 */
void gmem_hugetlb_unlock_struct_page(void)
{
	mutex_unlock(&gmem_vmemmap_mutex);
}

/*
 * Before a split of the piece @folio: give it struct pages of its own if it
 * keeps HVO; the join that puts it back re-applies HVO. A reference beyond the
 * page cache's and the caller's fails the split at once (-EAGAIN), before the
 * restore, which the split would then leave behind.
 */
static int gmem_split_piece_vmemmap(struct gmem_hugetlb *gh, struct folio *folio)
{
	struct gmem_split_record *rec;
	int r;

	if (folio_ref_count(folio) != folio_nr_pages(folio) + 1)
		return -EAGAIN;
	if (!folio_test_large(folio))
		return 0;

	rec = xa_load(&gh->split, gmem_huge_index(gh, folio->index));
	if (WARN_ON_ONCE(!rec))
		return -EINVAL;
	mutex_lock(&gmem_vmemmap_mutex);
	/* 0: restored already, by a PTE mapping or by a split that failed. */
	r = gmem_restore_listed_piece(folio_pfn(folio));
	if (r > 0)
		__set_bit((&folio->page - rec->head) >> rec->hvo_order,
			  rec->hvo_undone);
	mutex_unlock(&gmem_vmemmap_mutex);
	return min(r, 0);
}

/*
 * Before a split of the hugetlb folio @folio into pieces of @new_order that
 * keep HVO (but those @mixed_blocks names): allocate their struct pages into
 * @vmemmap_pages and list them for memory failure, which must not see them
 * before they are pieces (the caller holds gmem_vmemmap_mutex until then).
 */
static int gmem_prepare_split_hvo(struct gmem_split_record *rec,
				  struct folio *folio, unsigned int new_order,
				  const unsigned long *mixed_blocks,
				  struct list_head *vmemmap_pages)
{
	unsigned int order = folio_order(folio), nr = 1U << (order - new_order);
	int r;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	r = hugetlb_vmemmap_prepare_split_pages(&folio->page, order, new_order,
						mixed_blocks, vmemmap_pages);
	if (r)
		return r;
	r = gmem_set_hvo_piece(rec, &folio->page, order);
	if (r) {
		hugetlb_vmemmap_free_pages(vmemmap_pages);
		return r;
	}
	rec->hvo_order = new_order;
	bitmap_fill(rec->hvo_pieces, nr);
	if (mixed_blocks) {
		bitmap_andnot(rec->hvo_pieces, rec->hvo_pieces, mixed_blocks, nr);
		bitmap_copy(rec->hvo_undone, mixed_blocks, nr);
	}
	rec->vmemmap_pages = nr - 1;
	if (mixed_blocks)
		rec->vmemmap_pages += bitmap_weight(mixed_blocks, nr) *
				      gmem_hvo_saved_pages(new_order);
	return 0;
}

/* What a split does with the struct pages of a folio, decided before it. */
struct gmem_split_plan {
	bool hugetlb;		/* a whole huge page, not a piece */
	bool keep_hvo;		/* made one piece of its own order: keeps HVO */
	bool split_hvo;		/* 2M pieces of a 1G page: they keep HVO */
	struct gmem_split_record *rec;	/* a hugetlb folio's, from the prepare */
	struct list_head vmemmap_pages;	/* the pieces' struct pages (split_hvo) */
};

/* Whether @folio can be split into pieces of @new_order now, and if not why. */
static int gmem_split_check(struct folio *folio, unsigned int new_order)
{
	unsigned int order = folio_order(folio);
	bool hugetlb = folio_test_hugetlb(folio);

	if (new_order > order || (new_order == order && !hugetlb))
		return -EINVAL;
	/* A piece's poisoned pages keep their marks; a hugetlb folio's cannot. */
	if (hugetlb && folio_test_hwpoison(folio))
		return -EHWPOISON;
	if (folio_mapped(folio))
		return -EAGAIN;
	return 0;
}

static void gmem_split_decide(struct folio *folio, unsigned int new_order,
			      const unsigned long *mixed_blocks,
			      struct gmem_split_plan *plan)
{
	unsigned int order = folio_order(folio);
	bool hugetlb = folio_test_hugetlb(folio);

	*plan = (struct gmem_split_plan) { .hugetlb = hugetlb };
	INIT_LIST_HEAD(&plan->vmemmap_pages);
	/*
	 * A hugetlb folio made one piece of its own order keeps HVO; any
	 * other split writes all the struct pages, so a whole piece that kept
	 * HVO has it restored first (gmem_split_prepare()).
	 */
	plan->keep_hvo = hugetlb && new_order == order &&
			 (!mixed_blocks || !test_bit(0, mixed_blocks)) &&
			 folio_test_hugetlb_vmemmap_optimized(folio);
	/* A 1G page split into 2M pieces keeps HVO for them, but mixed ones. */
	plan->split_hvo = hugetlb && new_order < order &&
			  READ_ONCE(gmem_keep_hvo_on_split) &&
			  (1UL << (order - new_order)) <= GMEM_HVO_MAX_PIECES &&
			  folio_test_hugetlb_vmemmap_optimized(folio);
}

/* Take back a prepared split's page cache entries and record. */
static void gmem_split_drop_record(struct gmem_hugetlb *gh, struct folio *folio,
				   struct gmem_split_plan *plan)
{
	gmem_xa_unsplit(folio->mapping, folio);
	if (plan->rec) {
		xa_erase(&gh->split, gmem_huge_index(gh, folio->index));
		kfree(plan->rec);
		plan->rec = NULL;
	}
}

/*
 * The struct pages of a split, before the references are frozen: restoring
 * the vmemmap allocates, and lookups spin on a frozen folio, so they must not
 * wait for a sleeper.  Only the tail struct pages move, and nobody writes
 * them.  A piece that keeps HVO is listed for memory failure, which must not
 * see it before it is one (see gmem_hugetlb_lock_struct_page()): then this
 * returns with gmem_vmemmap_mutex held.
 */
static int gmem_split_prepare_vmemmap(struct gmem_hugetlb *gh,
				      struct folio *folio, unsigned int new_order,
				      const unsigned long *mixed_blocks,
				      struct gmem_split_plan *plan)
{
	unsigned int order = folio_order(folio);
	bool optimized;
	int r;

	if (plan->keep_hvo || plan->split_hvo)
		mutex_lock(&gmem_vmemmap_mutex);
	if (plan->split_hvo) {
		r = gmem_prepare_split_hvo(plan->rec, folio, new_order,
					   mixed_blocks, &plan->vmemmap_pages);
		if (r == -EOPNOTSUPP) {
			/* HVO is off for 2M folios: restore it all. */
			mutex_unlock(&gmem_vmemmap_mutex);
			plan->split_hvo = false;
		} else if (r) {
			mutex_unlock(&gmem_vmemmap_mutex);
			return r;
		}
	}
	if (plan->keep_hvo) {
		r = gmem_set_hvo_piece(plan->rec, &folio->page, order);
		if (r) {
			mutex_unlock(&gmem_vmemmap_mutex);
			return r;
		}
		plan->rec->hvo_order = order;
		__set_bit(0, plan->rec->hvo_pieces);
		return 0;
	}
	if (plan->split_hvo)
		return 0;	/* prepared above */
	if (!plan->hugetlb)
		return gmem_split_piece_vmemmap(gh, folio);

	optimized = folio_test_hugetlb_vmemmap_optimized(folio);
	r = hugetlb_vmemmap_restore_in_use_folio(gh->h, folio);
	if (!r && optimized)
		plan->rec->vmemmap_pages = gmem_hvo_saved_pages(order);
	return r;
}

/*
 * Everything a split allocates, before the references are frozen: the
 * record of a hugetlb folio, the page cache nodes of the pieces, and their
 * struct pages (gmem_split_prepare_vmemmap()).  On failure, nothing is left
 * of it.
 */
static int gmem_split_prepare(struct gmem_hugetlb *gh, struct folio *folio,
			      unsigned int new_order,
			      const unsigned long *mixed_blocks,
			      struct gmem_split_plan *plan)
{
	struct address_space *mapping = folio->mapping;
	unsigned int order = folio_order(folio);
	pgoff_t index = folio->index;
	struct gmem_split_record *rec;
	unsigned long i;
	int r;

	if (plan->hugetlb) {
		rec = kzalloc_obj(*rec, GFP_KERNEL_ACCOUNT);
		if (!rec)
			return -ENOMEM;
		rec->changed = jiffies;
		rec->h = gh->h;
		rec->head = &folio->page;
		r = xa_insert(&gh->split, gmem_huge_index(gh, index), rec,
			      GFP_KERNEL_ACCOUNT);
		if (r) {
			kfree(rec);
			return r;
		}
		plan->rec = rec;
	}

	r = gmem_xa_presplit(mapping, folio, index, folio_next_index(folio),
			     new_order);
	for (i = 0; !r && mixed_blocks && new_order &&
	     i < (1UL << (order - new_order)); i++) {
		if (test_bit(i, mixed_blocks))
			r = gmem_xa_presplit(mapping, folio, index + (i << new_order),
					     index + ((i + 1) << new_order), 0);
	}
	if (!r)
		r = gmem_split_prepare_vmemmap(gh, folio, new_order,
					       mixed_blocks, plan);
	if (r)
		gmem_split_drop_record(gh, folio, plan);
	return r;
}

/* Undo a gmem_split_prepare() that succeeded, for a freeze that failed. */
static void gmem_split_unprepare(struct gmem_hugetlb *gh, struct folio *folio,
				 struct gmem_split_plan *plan)
{
	if (plan->keep_hvo || plan->split_hvo) {
		gmem_set_hvo_piece(NULL, &folio->page, folio_order(folio));
		hugetlb_vmemmap_free_pages(&plan->vmemmap_pages);
		mutex_unlock(&gmem_vmemmap_mutex);
	}
	gmem_split_drop_record(gh, folio, plan);
}

/*
 * Freeze the page cache's references and the caller's, and make a hugetlb
 * folio an ordinary one.  Lookups spin on a frozen folio inside an RCU
 * read-side section, so on success this returns with preemption disabled,
 * until gmem_split_apply() unfreezes the pieces.
 */
static int gmem_split_freeze(struct folio *folio, struct gmem_split_plan *plan)
{
	preempt_disable();
	if (gmem_split_should_fail() ||
	    !folio_ref_freeze(folio, folio_nr_pages(folio) + 1)) {
		preempt_enable();
		return -EAGAIN;
	}
	if (!plan->hugetlb)
		return 0;

	spin_lock_irq(&hugetlb_lock);
	/*
	 * Memory failure marks a hugetlb folio under hugetlb_lock, and may have
	 * since gmem_split_check(): look again.  Once the folio is no hugetlb
	 * folio, a mark lands on the page itself.
	 */
	if (folio_test_hwpoison(folio)) {
		spin_unlock_irq(&hugetlb_lock);
		folio_ref_unfreeze(folio, folio_nr_pages(folio) + 1);
		preempt_enable();
		return -EHWPOISON;
	}
	/* In use, the folio is on the active list: not any more. */
	list_del_init(&folio->lru);
	gmem_save_hugetlb(folio, plan->rec);
	__folio_clear_hugetlb(folio);
	spin_unlock_irq(&hugetlb_lock);
	return 0;
}

/*
 * The point of no return: lay out the pieces' struct pages, make them
 * folios of the page cache and unfreeze them.
 */
static void gmem_split_apply(struct folio *folio, unsigned int new_order,
			     const unsigned long *mixed_blocks,
			     struct gmem_split_plan *plan)
{
	struct address_space *mapping = folio->mapping;
	unsigned int order = folio_order(folio);
	pgoff_t index = folio->index;
	unsigned long i, j;
	bool hvo;

	if (plan->split_hvo) {
		plan->rec->hugetlb_flags &= ~BIT(HPG_vmemmap_optimized);
		hugetlb_vmemmap_split_pages(&folio->page, order, new_order,
					    mixed_blocks, &plan->vmemmap_pages);
		for (i = 0; i < (1UL << order); i += 1UL << new_order) {
			hvo = !mixed_blocks ||
			      !test_bit(i >> new_order, mixed_blocks);
			gmem_reset_pages(&folio->page + i,
					 gmem_writable_struct_pages(new_order, hvo));
		}
	} else {
		gmem_reset_pages(&folio->page,
				 gmem_writable_struct_pages(order, plan->keep_hvo));
	}
	for (i = 0; i < (1UL << order); i += 1UL << new_order) {
		struct page *piece = &folio->page + i;

		if (!mixed_blocks || !new_order ||
		    !test_bit(i >> new_order, mixed_blocks)) {
			/* A hugetlb folio with poison is not split (above). */
			gmem_prep_folio(piece, new_order, mapping, index + i,
					plan->keep_hvo || plan->split_hvo,
					!plan->hugetlb &&
					gmem_pages_hwpoisoned(piece, new_order));
			continue;
		}
		for (j = 0; j < (1UL << new_order); j++)
			gmem_prep_folio(piece + j, 0, mapping, index + i + j,
					false, false);
	}
	gmem_store_pieces(mapping, &folio->page, order, index);
	preempt_enable();
	if (plan->keep_hvo || plan->split_hvo)
		mutex_unlock(&gmem_vmemmap_mutex);
}

/**
 * gmem_hugetlb_split() - Split a folio of a hugetlb-backed guest_memfd.
 * @gh: the file's hugetlb backing.
 * @folio: a folio of the file, locked, with one reference held by the caller:
 *	   a whole huge page (a hugetlb folio) or a piece of a split one.
 * @new_order: the order of the pieces: smaller than @folio's, or equal to it
 *	       to turn a hugetlb folio into an ordinary one the host can map.
 * @mixed_blocks: NULL, or a bitmap of the pieces whose shareability is mixed:
 *		  they are split further, into 4K folios, in the same step, so
 *		  that nobody sees them in between.
 *
 * @folio must not be mapped into userspace (its host mappings zapped). A
 * hugetlb folio has its vmemmap restored first, which is the memory the split
 * costs: gmem_hugetlb_split_stats() reports it.
 *
 * Return: 0 on success: @folio is gone, its lock and the caller's reference
 * with it, and its pieces are unlocked in the page cache. -ENOMEM (no memory
 * for page cache nodes, the record or the vmemmap), -EAGAIN (@folio mapped or
 * referenced by someone else), -EHWPOISON (a page of a hugetlb @folio is
 * poisoned) or -EINVAL: @folio is as it was, locked and referenced.
 */
int gmem_hugetlb_split(struct gmem_hugetlb *gh, struct folio *folio,
		       unsigned int new_order, const unsigned long *mixed_blocks)
{
	struct gmem_split_plan plan;
	int r;

	lockdep_assert_held(&folio->mapping->invalidate_lock);
	VM_WARN_ON_ONCE_FOLIO(!folio_test_locked(folio), folio);
	r = gmem_split_check(folio, new_order);
	if (r)
		return r;

	gmem_split_decide(folio, new_order, mixed_blocks, &plan);
	r = gmem_split_prepare(gh, folio, new_order, mixed_blocks, &plan);
	if (r)
		return r;
	r = gmem_split_freeze(folio, &plan);
	if (r) {
		gmem_split_unprepare(gh, folio, &plan);
		return r;
	}
	gmem_split_apply(folio, new_order, mixed_blocks, &plan);
	return 0;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_split);

/**
 * gmem_hugetlb_get_piece() - Get the folio at an index of a guest_memfd file
 *			      without its invalidate lock.
 * @mapping: the file's mapping.
 * @index: the index.
 *
 * For lookups that hold neither the invalidate lock nor the folio's lock (a
 * vCPU fault, or a caller under KVM's MMU lock): such a lookup may read a
 * piece's reference count just before a merge freezes it, and write it just
 * after the merge made that struct page a read-only HVO tail. So the lookup
 * runs under gmem_lookup_srcu, which the merge waits for, and does not wait for
 * a frozen folio (being split or merged), which would hold that wait up.
 *
 * Return: the folio with a reference, or NULL if there is none or it is
 * frozen.
 */
struct folio *gmem_hugetlb_get_piece(struct address_space *mapping,
				     pgoff_t index)
{
	XA_STATE(xas, &mapping->i_pages, index);
	struct folio *folio;
	int idx;

	idx = srcu_read_lock(&gmem_lookup_srcu);
	rcu_read_lock();
	do {
		folio = xas_load(&xas);
	} while (xas_retry(&xas, folio));
	if (!folio || xa_is_value(folio) || !folio_try_get(folio)) {
		folio = NULL;
	} else if (unlikely(folio != xas_reload(&xas))) {
		folio_put(folio);
		folio = NULL;
	}
	rcu_read_unlock();
	srcu_read_unlock(&gmem_lookup_srcu, idx);
	return folio;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_get_piece);

/*
 * Wait for the lookups without the invalidate lock that may have read the
 * reference count of a piece before it was frozen: HVO, about to be applied,
 * makes that struct page read-only, and their folio_try_get() would write it.
 */
static void gmem_wait_for_lookups(void)
{
	synchronize_srcu_expedited(&gmem_lookup_srcu);
}

/*
 * Freeze the references of the pieces that cover the 2^@order pages from
 * @head, pieces of @mapping from @index (or of no mapping, if NULL): each
 * must hold only the page cache's references, and not be mapped. All are
 * frozen, or none.
 */
static bool gmem_freeze_pieces(struct page *head, unsigned int order,
			       struct address_space *mapping, pgoff_t index)
{
	unsigned long nr = 1UL << order, i, j;
	struct folio *folio;

	for (i = 0; i < nr; i += folio_nr_pages(folio)) {
		folio = page_folio(head + i);
		if (folio_test_hugetlb(folio) || &folio->page != head + i ||
		    i + folio_nr_pages(folio) > nr ||
		    folio->mapping != mapping ||
		    (mapping && folio->index != index + i) ||
		    folio_mapped(folio) ||
		    !folio_ref_freeze(folio, folio_nr_pages(folio)))
			goto unfreeze;
	}
	return true;

unfreeze:
	for (j = 0; j < i; j += folio_nr_pages(folio)) {
		folio = page_folio(head + j);
		folio_ref_unfreeze(folio, folio_nr_pages(folio));
	}
	return false;
}

/**
 * gmem_hugetlb_page_hwpoisoned() - Whether a page of a guest_memfd huge page
 *				    is poisoned.
 * @folio: the hugetlb folio or the piece that holds @page.
 * @page: the page.
 *
 * Memory failure marks a page of a piece itself, but only the head of a
 * hugetlb folio, whose tail struct pages HVO shares: it lists the poisoned
 * pages aside.
 *
 * Return: true if @page is poisoned, or if @folio is a hugetlb folio with
 * poison and the list of its poisoned pages was lost.
 */
bool gmem_hugetlb_page_hwpoisoned(struct folio *folio, struct page *page)
{
	if (!folio_test_hugetlb(folio))
		return PageHWPoison(page);
	if (!folio_test_hwpoison(folio))
		return false;
	return !IS_ENABLED(CONFIG_MEMORY_FAILURE) ||
	       is_raw_hwpoison_page_in_hugepage(page);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_page_hwpoisoned);

/**
 * gmem_hugetlb_folio_hwpoisoned() - Whether a folio of a guest_memfd huge
 *				     page has a poisoned page.
 * @folio: a hugetlb folio or a piece.
 *
 * A large piece is marked when it is made over a poisoned page
 * (gmem_prep_folio()) and when memory failure poisons one of its pages
 * (zap_inaccessible_page(), under the folio lock, before it zaps the
 * page's mappings), so the answer costs one flag, not a look at each of a
 * 1G piece's 262144 struct pages on every stage-2 fault.
 *
 * Return: true if a page of @folio is poisoned.
 */
bool gmem_hugetlb_folio_hwpoisoned(struct folio *folio)
{
	if (folio_test_hugetlb(folio) || !folio_test_large(folio))
		return folio_test_hwpoison(folio);
	return folio_test_has_hwpoisoned(folio);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_folio_hwpoisoned);

/*
 * Before the pieces of @rec's huge page from @head, a block of @order, are
 * frozen to be made one folio: whether that folio gets HVO (@hvo), if the
 * caller wants it to (@want: not for a block with a poisoned page, whose mark
 * HVO would drop), with what that takes allocated now, so that nobody waits
 * on a frozen folio for an allocation. A block that gets none is given all
 * its struct pages first, for the caller to write. The caller holds
 * gmem_vmemmap_mutex, which memory failure takes to mark a page of a piece, so
 * whether a page is poisoned holds until it is done.
 *
 * Return: 0, or -ENOMEM (nothing changed that matters).
 */
static int gmem_prepare_block_hvo(struct gmem_split_record *rec,
				  struct page *head, unsigned int order,
				  bool want, bool *hvo)
{
	unsigned int huge_order = huge_page_order(rec->h);
	unsigned long i;
	int r;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	*hvo = want && !hugetlb_vmemmap_prepare_optimize_pages(head, order);
	if (*hvo || !gmem_pieces_keep_hvo(rec))
		return 0;

	if (order == huge_order)
		return gmem_restore_hvo_pieces(rec);
	/* Pieces smaller than those that keep HVO: none of them does. */
	if (order < rec->hvo_order)
		return 0;
	for (i = 0; i < 1UL << (order - rec->hvo_order); i++) {
		r = gmem_restore_listed_piece(page_to_pfn(head) +
					      (i << rec->hvo_order));
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Apply HVO to the block of @order at @head, whose pieces are frozen and
 * stored in the page cache as the one folio they are now (if @mapping), and
 * note it in @rec. HVO makes all struct pages but those of the first vmemmap
 * page read-only, so a lookup that read a piece's reference count before the
 * freeze must be done before it (gmem_wait_for_lookups()).
 */
static void gmem_apply_block_hvo(struct gmem_split_record *rec,
				 struct address_space *mapping, struct page *head,
				 pgoff_t index, unsigned int order)
{
	unsigned long freed;

	if (mapping)
		gmem_store_entries(mapping, head, order, index);
	gmem_wait_for_lookups();
	freed = hugetlb_vmemmap_optimize_pages(head, order);
	gmem_note_hvo_piece(rec, head, order, freed);
}

/*
 * Make the frozen pages from @head one hugetlb folio again, with HVO if @hvo
 * (from gmem_prepare_block_hvo()), else with all its struct pages, marked if
 * a page is @poisoned; it is left frozen.
 */
static struct folio *gmem_make_hugetlb(struct hstate *h, struct page *head,
				       struct gmem_split_record *rec,
				       struct address_space *mapping, pgoff_t index,
				       bool hvo, bool poisoned)
{
	unsigned int order = huge_page_order(h);
	struct folio *folio = (struct folio *)head;

	lockdep_assert_held(&gmem_vmemmap_mutex);
	/*
	 * The head and the tails of the first vmemmap page first, so that the
	 * page cache entries say what the folio is (order 1G or 2M), then HVO
	 * for the others; or all of them.
	 */
	gmem_reset_pages(head, gmem_writable_struct_pages(order, hvo));
	gmem_prep_compound(head, order, hvo);
	folio->mapping = mapping;
	folio->index = index;
	__folio_mark_uptodate(folio);
	if (hvo && !gmem_record_hvo(rec))
		gmem_apply_block_hvo(rec, mapping, head, index, order);
	if (rec->hvo_order)
		gmem_set_hvo_piece(NULL, head, order);

	spin_lock_irq(&hugetlb_lock);
	__folio_set_hugetlb(folio);
	gmem_restore_hugetlb(folio, rec);
	spin_unlock_irq(&hugetlb_lock);

	/*
	 * A huge page with a poisoned page is kept as hugetlb keeps one: its
	 * head marked, so that the pool never hands it out again, and the list
	 * of its bad pages "lost", so that it is never dissolved into the page
	 * allocator either. No HVO (see gmem_prepare_block_hvo()).
	 */
	if (poisoned) {
		folio_set_hwpoison(folio);
		folio_set_hugetlb_raw_hwp_unreliable(folio);
		pr_warn("guest_memfd: huge page at pfn %#lx has a poisoned page: kept out of use\n",
			page_to_pfn(head));
	}

	/*
	 * On the active list only now, once its head struct page is as it
	 * stays.
	 */
	spin_lock_irq(&hugetlb_lock);
	list_add(&folio->lru, &h->hugepage_activelist);
	spin_unlock_irq(&hugetlb_lock);
	return folio;
}

/* Whether a split undid the HVO of @rec's piece at @head, of @order. */
static bool gmem_block_hvo_undone(const struct gmem_split_record *rec,
				  struct page *head, unsigned int order)
{
	return order == rec->hvo_order &&
	       test_bit((head - rec->head) >> order, rec->hvo_undone);
}

/*
 * Make the pieces of the block of @order at @head (@index) one ordinary folio,
 * with HVO where a split undid it: a whole piece keeps HVO, so that an
 * all-shared huge page costs the struct pages hugetlbfs costs, and so does a
 * 2M piece of a 1G page, so that the split costs the struct pages of the 2M
 * pieces that are split further.
 */
static int gmem_join_pieces(struct gmem_hugetlb *gh, struct address_space *mapping,
			    struct page *head, pgoff_t index, unsigned int order)
{
	struct gmem_split_record *rec;
	bool want, hvo = false;
	int r;

	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (WARN_ON_ONCE(!rec))
		return -EINVAL;
	mutex_lock(&gmem_vmemmap_mutex);
	/*
	 * HVO comes back where a split undid it, and for a whole piece made of
	 * pieces that keep it (their read-only struct pages cannot be written
	 * as the whole piece's).
	 */
	if (gmem_block_hwpoisoned(rec, head, order)) {
		r = -EHWPOISON;
		goto unlock;
	}
	want = gmem_block_hvo_undone(rec, head, order) ||
	       (order == huge_page_order(gh->h) && gmem_pieces_keep_hvo(rec));
	r = gmem_prepare_block_hvo(rec, head, order, want, &hvo);
	if (r)
		goto unlock;
	/* For memory failure; listed already if a piece keeps HVO. */
	if (hvo && gmem_set_hvo_piece(rec, rec->head, huge_page_order(gh->h)))
		hvo = false;
	if (!gmem_freeze_pieces(head, order, mapping, index)) {
		r = -EAGAIN;
		goto unlock;
	}
	gmem_reset_pages(head, gmem_writable_struct_pages(order, hvo));
	gmem_prep_folio(head, order, mapping, index, hvo, false);
	if (hvo)
		gmem_apply_block_hvo(rec, mapping, head, index, order);
	if (order == rec->hvo_order)
		__clear_bit((head - rec->head) >> order, rec->hvo_undone);
	gmem_store_pieces(mapping, head, order, index);
unlock:
	if (!gmem_pieces_keep_hvo(rec))
		gmem_set_hvo_piece(NULL, rec->head, huge_page_order(gh->h));
	mutex_unlock(&gmem_vmemmap_mutex);
	return r;
}

/*
 * Make the pieces of the block of @order at @index one folio: a hugetlb folio
 * with @rec's contents, or an ordinary folio if @rec is NULL.
 */
static int gmem_merge_pieces(struct gmem_hugetlb *gh, struct address_space *mapping,
			     pgoff_t index, unsigned int order,
			     struct gmem_split_record *rec)
{
	struct folio *folio;
	struct page *head;
	bool hvo;
	int r;

	folio = filemap_get_folio(mapping, index);
	if (IS_ERR(folio))
		return -ENOENT;
	head = folio_file_page(folio, index);
	folio_put(folio);

	if (!rec)
		return gmem_join_pieces(gh, mapping, head, index, order);

	mutex_lock(&gmem_vmemmap_mutex);
	if (gmem_block_hwpoisoned(rec, head, order))
		r = -EHWPOISON;
	else
		r = gmem_prepare_block_hvo(rec, head, order, true, &hvo);
	if (!r && !gmem_freeze_pieces(head, order, mapping, index))
		r = -EAGAIN;
	if (r) {
		mutex_unlock(&gmem_vmemmap_mutex);
		return r;
	}
	gmem_make_hugetlb(gh->h, head, rec, mapping, index, hvo, false);
	mutex_unlock(&gmem_vmemmap_mutex);
	xa_erase(&gh->split, gmem_huge_index(gh, index));
	kfree(rec);
	gmem_store_pieces(mapping, head, order, index);
	return 0;
}

/* The order of the folio that holds @index, or -ENOENT. */
static int gmem_folio_order_at(struct address_space *mapping, pgoff_t index,
			       bool *hugetlb)
{
	struct folio *folio = filemap_get_folio(mapping, index);
	int order;

	if (IS_ERR(folio))
		return -ENOENT;
	order = folio_order(folio);
	*hugetlb = folio_test_hugetlb(folio);
	folio_put(folio);
	return order;
}

/**
 * gmem_hugetlb_merge() - Merge the folios of a block of a hugetlb-backed
 *			  guest_memfd into one.
 * @gh: the file's hugetlb backing.
 * @mapping: the file's page cache.
 * @index: the first page of the block, aligned to its size.
 * @order: the block's order: the huge page order, which makes the block one
 *	   hugetlb folio again (HVO re-applied), or a smaller one, which makes
 *	   it one ordinary folio.
 *
 * The folios of the block must be neither mapped into userspace nor
 * referenced other than by the page cache. A block with a poisoned page stays
 * in pieces: merged, the page would be one of a folio, and a hugetlb folio's
 * would lose its mark to HVO.
 *
 * Return: 0 if the block is one folio of @order now (also if it already was),
 * -EAGAIN if a folio of it is mapped or referenced, -EHWPOISON if a page of
 * it is poisoned (nothing changed), -ENOENT if part of the block is not
 * allocated, -EINVAL if @index or @order is wrong.
 */
int gmem_hugetlb_merge(struct gmem_hugetlb *gh, struct address_space *mapping,
		       pgoff_t index, unsigned int order)
{
	unsigned int huge_order = huge_page_order(gh->h);
	struct gmem_split_record *rec = NULL;
	bool hugetlb;
	int old;

	lockdep_assert_held_write(&mapping->invalidate_lock);
	if (order > huge_order || !IS_ALIGNED(index, 1UL << order))
		return -EINVAL;

	old = gmem_folio_order_at(mapping, index, &hugetlb);
	if (old < 0)
		return old;
	/* Already one folio: whole, or inside a larger piece, or the piece. */
	if (hugetlb || old > order || (old == order && order < huge_order))
		return 0;

	if (order == huge_order) {
		rec = xa_load(&gh->split, gmem_huge_index(gh, index));
		if (WARN_ON_ONCE(!rec))
			return -EINVAL;
	}
	return gmem_merge_pieces(gh, mapping, index, order, rec);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_merge);

/**
 * gmem_hugetlb_join() - Make a split huge page of a hugetlb-backed guest_memfd
 *			 one ordinary folio of its size.
 * @gh: the file's hugetlb backing.
 * @mapping: the file's page cache.
 * @index: the first page of the huge page.
 *
 * The shape of a huge page that is all shared (see gmem_hugetlb_split() with
 * the folio's own order): its pieces become one folio the host can map, with
 * HVO re-applied if the split undid it, and the huge page stays split as far
 * as hugetlb is concerned. The pieces must be neither mapped into userspace
 * nor referenced other than by the page cache.
 *
 * Return: 0 if the huge page is one ordinary folio now (also if it already
 * was), -EAGAIN, -EHWPOISON, -ENOENT or -EINVAL as for gmem_hugetlb_merge().
 */
int gmem_hugetlb_join(struct gmem_hugetlb *gh, struct address_space *mapping,
		      pgoff_t index)
{
	unsigned int huge_order = huge_page_order(gh->h);
	bool hugetlb;
	int old;

	lockdep_assert_held_write(&mapping->invalidate_lock);
	if (!IS_ALIGNED(index, 1UL << huge_order) ||
	    !xa_load(&gh->split, gmem_huge_index(gh, index)))
		return -EINVAL;

	old = gmem_folio_order_at(mapping, index, &hugetlb);
	if (old < 0)
		return old;
	if (old == huge_order)
		return 0;
	return gmem_merge_pieces(gh, mapping, index, huge_order, NULL);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_join);

/**
 * gmem_hugetlb_is_split() - Whether the huge page holding an index is split.
 * @gh: the file's hugetlb backing.
 * @index: a page index in the file.
 *
 * Return: true if the huge page is in pieces, false if it is one hugetlb
 * folio or not allocated.
 */
bool gmem_hugetlb_is_split(struct gmem_hugetlb *gh, pgoff_t index)
{
	return xa_load(&gh->split, gmem_huge_index(gh, index));
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_is_split);

/**
 * gmem_hugetlb_note_change() - Note that a split huge page changes now.
 * @gh: the file's hugetlb backing.
 * @index: an index of the huge page.
 * @window: in jiffies: a change that comes within @window of the one before
 *	    continues their row, a later one starts a new row.
 *
 * Its caller converts part of the huge page, or puts its shape back: the
 * time gmem_hugetlb_split_since() reports, which a merge policy with
 * hysteresis measures from, and the row gmem_hugetlb_changes_in_row()
 * counts.  The split itself starts the row at 0.  Nothing happens if the huge
 * page is not split.  The caller holds the file's invalidate lock.
 */
void gmem_hugetlb_note_change(struct gmem_hugetlb *gh, pgoff_t index,
			      unsigned long window)
{
	struct gmem_split_record *rec;
	unsigned int row;

	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (!rec)
		return;
	row = 1;
	if (time_before(jiffies, rec->changed + window))
		row = min(rec->changes_in_row, UINT_MAX - 1) + 1;
	WRITE_ONCE(rec->changes_in_row, row);
	WRITE_ONCE(rec->changed, jiffies);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_note_change);

/**
 * gmem_hugetlb_changes_in_row() - How many times in a row a split huge page
 *				   has just changed.
 * @gh: the file's hugetlb backing.
 * @index: an index of the huge page.
 * @window: in jiffies, as given to gmem_hugetlb_note_change().
 *
 * Needs no lock: a caller that holds a reference on a piece of the huge page
 * keeps its record from being freed; one that holds the invalidate lock keeps
 * the answer from changing.
 *
 * Return: the changes noted in a row, each within @window of the one before,
 * if the last was less than @window ago; else 0, as for a huge page that is
 * not split.
 */
unsigned int gmem_hugetlb_changes_in_row(struct gmem_hugetlb *gh, pgoff_t index,
					 unsigned long window)
{
	struct gmem_split_record *rec;

	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (!rec || !time_before(jiffies, READ_ONCE(rec->changed) + window))
		return 0;
	return READ_ONCE(rec->changes_in_row);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_changes_in_row);

/**
 * gmem_hugetlb_split_since() - Since when a huge page has been as it is.
 * @gh: the file's hugetlb backing.
 * @index: an index of the huge page.
 * @since: set to the jiffies of its split or of its last change noted by
 *	   gmem_hugetlb_note_change().
 * @vmemmap_bytes: set to the struct page memory its split restored, which its
 *		   merge gives back.
 *
 * Return: true if the huge page is split, else false (@since and
 * @vmemmap_bytes untouched).
 */
bool gmem_hugetlb_split_since(struct gmem_hugetlb *gh, pgoff_t index,
			      unsigned long *since, unsigned long *vmemmap_bytes)
{
	struct gmem_split_record *rec;

	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (!rec)
		return false;
	*since = READ_ONCE(rec->changed);
	*vmemmap_bytes = READ_ONCE(rec->vmemmap_pages) << PAGE_SHIFT;
	return true;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_split_since);

/* Whether no piece of the block of 2^@order pages at @index has poison. */
static bool gmem_block_unpoisoned(struct address_space *mapping, pgoff_t index,
				  unsigned int order)
{
	XA_STATE(xas, &mapping->i_pages, index);
	struct folio *folio;
	bool unpoisoned = true;

	rcu_read_lock();
	xas_for_each(&xas, folio, index + (1UL << order) - 1) {
		if (xas_retry(&xas, folio))
			continue;
		if (xa_is_value(folio) || gmem_hugetlb_folio_hwpoisoned(folio)) {
			unpoisoned = false;
			break;
		}
	}
	rcu_read_unlock();
	return unpoisoned;
}

/**
 * gmem_hugetlb_block_mappable() - Whether a block of a split huge page may be
 *				   mapped as one, over its pieces.
 * @gh: the file's hugetlb backing.
 * @piece: a piece of the huge page, in the file's page cache, which the caller
 *	   holds a reference on (the one it maps from).
 * @index: the first index of the block, aligned to its size.
 * @order: the block's order, at most the huge page's.
 *
 * The pieces of a split huge page are its memory, in place and contiguous, so
 * a block of them can be mapped by one huge mapping (a stage-2 one: the pfns
 * are what matters) as long as no page of it is poisoned. No lock is needed:
 * the caller's reference on @piece keeps the huge page from being merged
 * (which freezes every piece) and its record from being freed (an orphan's
 * lasts until its last piece is free). What may change meanwhile is the
 * answer, and whatever changes it (truncation, memory failure) invalidates
 * KVM's mappings of the huge page after the change, so a fault that asked
 * before the change does not install what it computed. Poison is rare: only a
 * huge page that memory failure hit (gmem_hugetlb_note_hwpoison()) has its
 * pieces looked at, so a fault costs the same whatever the number of pieces.
 *
 * Return: true if the block may be mapped whole.
 */
bool gmem_hugetlb_block_mappable(struct gmem_hugetlb *gh, struct folio *piece,
				 pgoff_t index, unsigned int order)
{
	struct address_space *mapping = READ_ONCE(piece->mapping);
	struct gmem_split_record *rec;

	VM_WARN_ON_ONCE_FOLIO(gmem_huge_index(gh, piece->index) !=
			      gmem_huge_index(gh, index), piece);
	if (!mapping || order > gmem_hugetlb_order(gh) ||
	    !IS_ALIGNED(index, 1UL << order))
		return false;

	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (!rec)
		return false;
	return !READ_ONCE(rec->hwpoisoned) ||
	       gmem_block_unpoisoned(mapping, index, order);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_block_mappable);

/**
 * gmem_hugetlb_note_hwpoison() - Note that memory failure poisoned a page of
 *				  a piece of a split huge page.
 * @gh: the file's hugetlb backing.
 * @folio: the piece, in the file's page cache, locked and referenced (which
 *	   keeps its huge page from being merged meanwhile).
 *
 * Called before the poisoned page's stage-2 mappings are zapped, so that a
 * fault that maps the huge page's blocks after the zap finds the note and
 * looks at their pieces (gmem_hugetlb_block_mappable()). A hugetlb folio is
 * never split once poisoned, and needs no note.
 */
void gmem_hugetlb_note_hwpoison(struct gmem_hugetlb *gh, struct folio *folio)
{
	struct gmem_split_record *rec;

	if (folio_test_hugetlb(folio))
		return;
	VM_WARN_ON_ONCE_FOLIO(!folio_test_locked(folio), folio);
	rec = xa_load(&gh->split, gmem_huge_index(gh, folio->index));
	if (rec)
		WRITE_ONCE(rec->hwpoisoned, true);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_note_hwpoison);

/**
 * gmem_hugetlb_split_stats() - How many huge pages of a file are split.
 * @gh: the file's hugetlb backing.
 * @vmemmap_bytes: set to the struct page memory their splits restored.
 *
 * Return: the number of split huge pages.
 */
unsigned long gmem_hugetlb_split_stats(struct gmem_hugetlb *gh,
				       unsigned long *vmemmap_bytes)
{
	struct gmem_split_record *rec;
	unsigned long index, nr = 0;

	*vmemmap_bytes = 0;
	xa_for_each(&gh->split, index, rec) {
		nr++;
		*vmemmap_bytes += READ_ONCE(rec->vmemmap_pages) << PAGE_SHIFT;
	}
	return nr;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_split_stats);

/*
 * Orphans: split huge pages taken out of a file while something still
 * referenced a piece, by their split records. They keep the page cache's
 * references until the others are gone, then are made one hugetlb folio again
 * and freed to the pool.
 */
static LIST_HEAD(gmem_orphans);
static DEFINE_SPINLOCK(gmem_orphans_lock);
static void gmem_free_orphans(struct work_struct *work);
static DECLARE_DELAYED_WORK(gmem_orphans_work, gmem_free_orphans);

/* Free @rec's huge page to the pool if nothing but its own refs hold it. */
static bool gmem_free_orphan(struct gmem_split_record *rec)
{
	unsigned int order = huge_page_order(rec->h);
	struct folio *folio;
	bool hvo, poisoned;

	mutex_lock(&gmem_vmemmap_mutex);
	poisoned = gmem_block_hwpoisoned(rec, rec->head, order);
	if (gmem_prepare_block_hvo(rec, rec->head, order, !poisoned, &hvo) ||
	    !gmem_freeze_pieces(rec->head, order, NULL, 0)) {
		mutex_unlock(&gmem_vmemmap_mutex);
		return false;
	}

	folio = gmem_make_hugetlb(rec->h, rec->head, rec, NULL, 0, hvo, poisoned);
	mutex_unlock(&gmem_vmemmap_mutex);
	folio_ref_unfreeze(folio, 1);
	folio_put(folio);
	return true;
}

static void gmem_free_orphans(struct work_struct *work)
{
	struct gmem_split_record *rec, *next;
	LIST_HEAD(list);

	spin_lock(&gmem_orphans_lock);
	list_splice_init(&gmem_orphans, &list);
	spin_unlock(&gmem_orphans_lock);

	list_for_each_entry_safe(rec, next, &list, orphan) {
		if (!gmem_free_orphan(rec))
			continue;
		list_del(&rec->orphan);
		kfree(rec);
	}

	spin_lock(&gmem_orphans_lock);
	list_splice(&list, &gmem_orphans);
	if (!list_empty(&gmem_orphans))
		schedule_delayed_work(&gmem_orphans_work, HZ / 10);
	spin_unlock(&gmem_orphans_lock);
}

/**
 * gmem_hugetlb_remove_split() - Take a split huge page out of the file.
 * @gh: the file's hugetlb backing.
 * @mapping: the file's page cache.
 * @index: a page index in the huge page.
 *
 * For truncation, once gmem_hugetlb_merge() has kept failing because
 * something still references a piece: the pieces leave the page cache now,
 * keeping its references, and once nothing else holds them they are merged
 * and the huge page goes back to the pool. The pieces must not be mapped.
 *
 * Nothing is allocated: the split record carries the huge page from now on.
 *
 * Return: 0, or -EAGAIN (a piece is still mapped: the huge page stays in the
 * file).
 */
int gmem_hugetlb_remove_split(struct gmem_hugetlb *gh,
			      struct address_space *mapping, pgoff_t index)
{
	unsigned int order = huge_page_order(gh->h);
	pgoff_t base = round_down(index, 1UL << order), i;
	struct gmem_split_record *rec;
	struct folio *folio;
	struct page *head;

	lockdep_assert_held_write(&mapping->invalidate_lock);
	rec = xa_load(&gh->split, gmem_huge_index(gh, index));
	if (WARN_ON_ONCE(!rec))
		return -EINVAL;

	folio = filemap_get_folio(mapping, base);
	if (WARN_ON_ONCE(IS_ERR(folio)))
		return -EINVAL;
	head = &folio->page;
	folio_put(folio);

	/* Under the page cache lock, so that nobody maps a piece meanwhile. */
	{
		XA_STATE_ORDER(xas, &mapping->i_pages, base, order);

		mapping_set_update(&xas, mapping);
		xas_lock_irq(&xas);
		for (i = 0; i < (1UL << order); i += folio_nr_pages(folio)) {
			folio = page_folio(head + i);
			if (folio_mapped(folio)) {
				xas_unlock_irq(&xas);
				return -EAGAIN;
			}
		}
		xas_store(&xas, NULL);
		mapping->nrpages -= 1UL << order;
		for (i = 0; i < (1UL << order); i += folio_nr_pages(folio)) {
			folio = page_folio(head + i);
			folio->mapping = NULL;
		}
		xas_unlock_irq(&xas);
	}

	xa_erase(&gh->split, gmem_huge_index(gh, index));
	/*
	 * The huge page is no longer the file's: freed, it goes back to the
	 * pool unreserved, and the file reserves another in its place now, so
	 * that the range can be filled again and the file's reservation goes
	 * back to the pool when it is closed, however long the orphan lives.
	 */
	rec->subpool = NULL;
	hugepage_subpool_drop_page(gh->spool);

	spin_lock(&gmem_orphans_lock);
	list_add_tail(&rec->orphan, &gmem_orphans);
	schedule_delayed_work(&gmem_orphans_work, HZ / 10);
	spin_unlock(&gmem_orphans_lock);
	return 0;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_remove_split);
