/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What mm/guest_memfd_hugetlb.c (allocation, reservation) and
 * mm/guest_memfd_split.c (the split/merge engine) share.
 */
#ifndef __MM_GUEST_MEMFD_INTERNAL_H
#define __MM_GUEST_MEMFD_INTERNAL_H

#include <linux/bug.h>
#include <linux/nodemask_types.h>
#include <linux/xarray.h>
#include <kunit/visibility.h>

struct hstate;
struct hugepage_subpool;
struct hugetlb_cgroup;

/* The hugetlb backing of one guest_memfd inode. */
struct gmem_hugetlb {
	struct hstate *h;
	struct hugepage_subpool *spool;
	/* Huge pages in the file: its reservation, and the cgroup charged it. */
	long nr_pages;
	struct hugetlb_cgroup *rsvd_cgroup;
	/*
	 * The huge pages that are split, by huge page index: what their
	 * hugetlb folio held that the pieces cannot (struct gmem_split_record).
	 */
	struct xarray split;
};

struct hstate *gmem_hugetlb_hstate(unsigned int size_log2);

#if IS_ENABLED(CONFIG_KUNIT)
/* For the KUnit suites: one huge page of the file's reservation. */
struct folio *gmem_hugetlb_alloc_folio(struct gmem_hugetlb *gh, int nid,
				       nodemask_t *nodemask);
#endif

/* guest_memfd_split.keep_hvo_on_split: see mm/guest_memfd_split.c. */
extern bool gmem_keep_hvo_on_split;

/* The file is going: it must have no split huge page left. */
static inline void gmem_split_destroy(struct gmem_hugetlb *gh)
{
	WARN_ON_ONCE(!xa_empty(&gh->split));
	xa_destroy(&gh->split);
}

#endif /* __MM_GUEST_MEMFD_INTERNAL_H */
