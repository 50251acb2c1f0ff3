// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd backed by hugetlb pages.
 *
 * A guest_memfd file created with a huge page size takes its folios from the
 * hugetlb pool of that size, the same pools hugetlbfs uses, so the sizes a
 * VMM may ask for are exactly the registered hstates (hugepagesz= on the
 * kernel command line, or the architecture's defaults).
 *
 * Accounting follows hugetlbfs: each file has a hugepage subpool whose
 * minimum and maximum are the file's size in huge pages, so the whole file is
 * reserved in the pool when it is created (or creation fails with -ENOMEM),
 * a folio allocated for the file consumes one of those reservations, and a
 * folio freed (punch hole, last close) gives it back to the file. When the
 * file goes away, so does the subpool and what is left of its reservation.
 * A huge page that leaves the file while something still holds a piece of it
 * (an orphan, see mm/guest_memfd_split.c) leaves the subpool too: the file
 * reserves a page in its place, or, if the pool has none to reserve, is a
 * page short until it can take an unreserved one (-ENOSPC meanwhile, as for a
 * hugetlbfs file without a reservation).
 * The pool counters (free, reserved, surplus) therefore stay exact at every
 * step, as they do for a hugetlbfs file with a min_size mount.
 *
 * The hugetlb cgroup controller is charged as for a hugetlbfs file: the
 * creating task's cgroup is charged the whole file's reservation
 * (hugetlb.<size>.rsvd) at creation, which fails with -ENOMEM over the limit,
 * and given it back when the file goes; each huge page is charged to the
 * allocating task's cgroup (hugetlb.<size>.current) when it is allocated,
 * which fails with -ENOSPC over the limit, and uncharged when it is freed.
 * A split huge page stays charged: its record keeps the charge until the
 * merge puts it back on the folio, which free_huge_folio() uncharges.
 *
 * Folios are zeroed when they leave the pool, before they are added to the
 * file, so nobody sees what a previous user left in them. They are not
 * touched page by page afterwards, so HVO (the freed vmemmap of their tail
 * struct pages) stays in effect.
 */
#include <linux/bits.h>
#include <linux/export.h>
#include <linux/guest_memfd.h>
#include <linux/hugetlb.h>
#include <linux/hugetlb_cgroup.h>
#include <linux/mempolicy.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <kunit/visibility.h>

#include "guest_memfd_internal.h"

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

/* Give back the reservation charge gmem_hugetlb_create() took. */
static void gmem_hugetlb_uncharge_rsvd(struct gmem_hugetlb *gh)
{
	hugetlb_cgroup_uncharge_cgroup_rsvd(hstate_index(gh->h),
					    gh->nr_pages * pages_per_huge_page(gh->h),
					    gh->rsvd_cgroup);
}

/**
 * gmem_hugetlb_create() - Reserve the huge pages of a new guest_memfd file.
 * @size_log2: log2 of the huge page size in bytes.
 * @size: the file's size in bytes.
 *
 * Reserves size / 2^@size_log2 pages of the pool in a subpool that belongs to
 * the file, and charges them to the hugetlb cgroup of the current task as a
 * reservation. Nothing is allocated yet.
 *
 * Return: the file's hugetlb backing, ERR_PTR(-EINVAL) if there is no pool of
 * that size or @size is not a multiple of it, ERR_PTR(-ENOMEM) if the pool
 * cannot reserve the whole file or the cgroup's reservation limit does not
 * allow it (the pool and the cgroup are then left as they were).
 */
struct gmem_hugetlb *gmem_hugetlb_create(unsigned int size_log2, loff_t size)
{
	struct hstate *h = gmem_hugetlb_hstate(size_log2);
	struct gmem_hugetlb *gh;
	long nr_pages;

	if (!h || size <= 0 || !IS_ALIGNED(size, huge_page_size(h)))
		return ERR_PTR(-EINVAL);
	nr_pages = size >> huge_page_shift(h);

	gh = kzalloc_obj(*gh);
	if (!gh)
		return ERR_PTR(-ENOMEM);

	gh->h = h;
	gh->nr_pages = nr_pages;
	xa_init(&gh->split);
	if (hugetlb_cgroup_charge_cgroup_rsvd(hstate_index(h),
					      nr_pages * pages_per_huge_page(h),
					      &gh->rsvd_cgroup))
		goto err_free;

	gh->spool = hugepage_new_subpool(h, nr_pages, nr_pages);
	if (!gh->spool)
		goto err_uncharge;
	return gh;

err_uncharge:
	gmem_hugetlb_uncharge_rsvd(gh);
err_free:
	kfree(gh);
	return ERR_PTR(-ENOMEM);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_create);

/**
 * gmem_hugetlb_destroy() - Drop a guest_memfd file's hugetlb backing.
 * @gh: what gmem_hugetlb_create() returned, or NULL.
 *
 * Called when the file's inode is destroyed, after its folios were removed
 * from the page cache. The reservation of the pages that are free goes back
 * to the pool now; a folio that is still referenced elsewhere keeps the
 * subpool alive and gives its page back when it is freed.
 */
void gmem_hugetlb_destroy(struct gmem_hugetlb *gh)
{
	if (!gh)
		return;
	gmem_split_destroy(gh);
	hugepage_put_subpool(gh->spool);
	gmem_hugetlb_uncharge_rsvd(gh);
	kfree(gh);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_destroy);

/**
 * gmem_hugetlb_order() - The order of a guest_memfd file's folios.
 * @gh: the file's hugetlb backing.
 *
 * Return: log2 of the number of base pages in each of the file's folios.
 */
unsigned int gmem_hugetlb_order(const struct gmem_hugetlb *gh)
{
	return huge_page_order(gh->h);
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_order);

static gfp_t gmem_hugetlb_gfp(struct hstate *h)
{
	return htlb_alloc_mask(h) & ~(__GFP_HIGHMEM | __GFP_MOVABLE);
}

/*
 * Take one huge page for the file, from node @nid first and only from
 * @nodemask if not NULL: a zeroed, up-to-date folio with one reference,
 * charged to the file's subpool so that freeing it returns the page to the
 * file's reservation. The page comes out of the file's reservation, or, if
 * the file is short of it (an orphan took its place while the pool had no
 * page to reserve instead), out of the pool's unreserved pages.
 */
VISIBLE_IF_KUNIT struct folio *gmem_hugetlb_alloc_folio(struct gmem_hugetlb *gh,
							int nid, nodemask_t *nodemask)
{
	unsigned long nr_base = pages_per_huge_page(gh->h);
	int idx = hstate_index(gh->h);
	struct hugetlb_cgroup *h_cg;
	struct hstate *h = gh->h;
	struct folio *folio;
	int ret;

	/* Over the cgroup's limit: -ENOSPC, as alloc_hugetlb_folio() says it. */
	if (hugetlb_cgroup_charge_cgroup(idx, nr_base, &h_cg))
		return ERR_PTR(-ENOSPC);

	/*
	 * Beyond the file's size: -ENOMEM. No page to reserve: -ENOSPC, as
	 * hugetlb says it, so that a fault on a mapping gets SIGBUS rather
	 * than the OOM killer (or a fault retried for ever).
	 */
	ret = hugepage_subpool_reserve_page(gh->spool);
	if (ret)
		goto err_uncharge;

	/*
	 * The reservation is not per node: a 'bind' policy may allow only
	 * nodes with no free page.
	 */
	folio = alloc_hugetlb_folio_reserve(h, nid, nodemask, gmem_hugetlb_gfp(h));
	if (!folio) {
		hugepage_subpool_unreserve_page(gh->spool);
		ret = -ENOSPC;
		goto err_uncharge;
	}
	hugetlb_set_folio_subpool(folio, gh->spool);
	spin_lock_irq(&hugetlb_lock);
	hugetlb_cgroup_commit_charge(idx, nr_base, h_cg, folio);
	spin_unlock_irq(&hugetlb_lock);

	folio_zero_user(folio, 0);
	__folio_mark_uptodate(folio);
	return folio;

err_uncharge:
	hugetlb_cgroup_uncharge_cgroup(idx, nr_base, h_cg);
	return ERR_PTR(ret);
}
EXPORT_SYMBOL_IF_KUNIT(gmem_hugetlb_alloc_folio);

/**
 * gmem_hugetlb_get_folio() - Find or allocate the folio covering an index.
 * @gh: the file's hugetlb backing.
 * @mapping: the file's page cache.
 * @index: a page index in the file.
 * @policy: the memory policy of @index (mbind() on a mapping), or NULL.
 *
 * Concurrent calls for indices inside one huge page are serialised on the
 * huge-aligned index (the hugetlb fault mutex), so the page is allocated once
 * and nobody fails spuriously because another thread holds the reservation.
 * A new page comes from the nodes @policy names (interleaving by huge page),
 * or from the local node first.
 *
 * Return: the locked folio that covers @index, with a reference,
 * ERR_PTR(-ENOSPC) if the pool has no free page on the nodes @policy allows,
 * or another error if the page cache could not take the folio.
 */
struct folio *gmem_hugetlb_get_folio(struct gmem_hugetlb *gh,
				     struct address_space *mapping,
				     pgoff_t index, struct mempolicy *policy)
{
	unsigned int order = huge_page_order(gh->h);
	pgoff_t huge_index = index >> order;
	nodemask_t *nodemask = NULL;
	struct folio *folio;
	int err, nid;
	u32 hash;

	hash = hugetlb_fault_mutex_hash(mapping, huge_index);
	mutex_lock(&hugetlb_fault_mutex_table[hash]);

	folio = filemap_lock_folio(mapping, index);
	if (!IS_ERR(folio))
		goto out;

	nid = numa_node_id();
	if (policy)
		nid = huge_node_policy(policy, mapping->host->i_ino + huge_index,
				       gmem_hugetlb_gfp(gh->h), &nodemask);

	folio = gmem_hugetlb_alloc_folio(gh, nid, nodemask);
	if (IS_ERR(folio))
		goto out;

	__folio_set_locked(folio);
	err = __filemap_add_folio(mapping, folio, huge_index << order,
				  GFP_KERNEL, NULL);
	if (err) {
		__folio_clear_locked(folio);
		folio_put(folio);
		folio = ERR_PTR(err);
	}
out:
	mutex_unlock(&hugetlb_fault_mutex_table[hash]);
	return folio;
}
EXPORT_SYMBOL_GPL(gmem_hugetlb_get_folio);
