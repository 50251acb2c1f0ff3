/* SPDX-License-Identifier: GPL-2.0 */
/*
 * guest_memfd backed by hugetlb pages: the interface between KVM's
 * guest_memfd (virt/kvm/guest_memfd.c) and the hugetlb glue in
 * mm/guest_memfd_hugetlb.c.
 */
#ifndef _LINUX_GUEST_MEMFD_H
#define _LINUX_GUEST_MEMFD_H

#include <linux/err.h>
#include <linux/page-flags.h>
#include <linux/types.h>

struct address_space;
struct folio;
struct hstate;
struct mempolicy;

/* The hugetlb backing of one guest_memfd inode: its pool and reservation. */
struct gmem_hugetlb;

#ifdef CONFIG_GUEST_MEMFD_HUGETLB
u64 gmem_hugetlb_supported_sizes(void);
struct gmem_hugetlb *gmem_hugetlb_create(unsigned int size_log2, loff_t size);
void gmem_hugetlb_destroy(struct gmem_hugetlb *gh);
unsigned int gmem_hugetlb_order(const struct gmem_hugetlb *gh);
struct folio *gmem_hugetlb_get_folio(struct gmem_hugetlb *gh,
				     struct address_space *mapping,
				     pgoff_t index, struct mempolicy *policy);

/* The split/merge engine, mm/guest_memfd_split.c. */
int gmem_hugetlb_split(struct gmem_hugetlb *gh, struct folio *folio,
		       unsigned int new_order, const unsigned long *mixed_blocks);
int gmem_hugetlb_merge(struct gmem_hugetlb *gh, struct address_space *mapping,
		       pgoff_t index, unsigned int order);
int gmem_hugetlb_join(struct gmem_hugetlb *gh, struct address_space *mapping,
		      pgoff_t index);
bool gmem_hugetlb_is_split(struct gmem_hugetlb *gh, pgoff_t index);
unsigned long gmem_hugetlb_split_stats(struct gmem_hugetlb *gh,
				       unsigned long *vmemmap_bytes);
void gmem_hugetlb_note_change(struct gmem_hugetlb *gh, pgoff_t index,
			      unsigned long window);
unsigned int gmem_hugetlb_changes_in_row(struct gmem_hugetlb *gh, pgoff_t index,
					 unsigned long window);
bool gmem_hugetlb_split_since(struct gmem_hugetlb *gh, pgoff_t index,
			      unsigned long *since, unsigned long *vmemmap_bytes);
bool gmem_hugetlb_block_mappable(struct gmem_hugetlb *gh, struct folio *piece,
				 pgoff_t index, unsigned int order);
struct folio *gmem_hugetlb_get_piece(struct address_space *mapping,
				     pgoff_t index);
void gmem_hugetlb_note_hwpoison(struct gmem_hugetlb *gh, struct folio *folio);
int gmem_hugetlb_remove_split(struct gmem_hugetlb *gh,
			      struct address_space *mapping, pgoff_t index);
bool gmem_hugetlb_page_hwpoisoned(struct folio *folio, struct page *page);
bool gmem_hugetlb_folio_hwpoisoned(struct folio *folio);
int gmem_hugetlb_restore_vmemmap(struct folio *folio);
int gmem_hugetlb_lock_struct_page(struct page *page);
void gmem_hugetlb_unlock_struct_page(void);
#else
static inline u64 gmem_hugetlb_supported_sizes(void)
{
	return 0;
}

static inline struct gmem_hugetlb *gmem_hugetlb_create(unsigned int size_log2,
						       loff_t size)
{
	return ERR_PTR(-EINVAL);
}

static inline void gmem_hugetlb_destroy(struct gmem_hugetlb *gh)
{
}

static inline unsigned int gmem_hugetlb_order(const struct gmem_hugetlb *gh)
{
	return 0;
}

static inline struct folio *gmem_hugetlb_get_folio(struct gmem_hugetlb *gh,
						   struct address_space *mapping,
						   pgoff_t index,
						   struct mempolicy *policy)
{
	return ERR_PTR(-EINVAL);
}

static inline int gmem_hugetlb_split(struct gmem_hugetlb *gh,
				     struct folio *folio, unsigned int new_order,
				     const unsigned long *mixed_blocks)
{
	return -EINVAL;
}

static inline int gmem_hugetlb_merge(struct gmem_hugetlb *gh,
				     struct address_space *mapping,
				     pgoff_t index, unsigned int order)
{
	return -EINVAL;
}

static inline int gmem_hugetlb_join(struct gmem_hugetlb *gh,
				    struct address_space *mapping, pgoff_t index)
{
	return -EINVAL;
}

static inline bool gmem_hugetlb_is_split(struct gmem_hugetlb *gh, pgoff_t index)
{
	return false;
}

static inline unsigned long gmem_hugetlb_split_stats(struct gmem_hugetlb *gh,
						     unsigned long *vmemmap_bytes)
{
	*vmemmap_bytes = 0;
	return 0;
}

static inline void gmem_hugetlb_note_change(struct gmem_hugetlb *gh,
					    pgoff_t index, unsigned long window)
{
}

static inline unsigned int gmem_hugetlb_changes_in_row(struct gmem_hugetlb *gh,
						       pgoff_t index,
						       unsigned long window)
{
	return 0;
}

static inline bool gmem_hugetlb_split_since(struct gmem_hugetlb *gh,
					    pgoff_t index, unsigned long *since,
					    unsigned long *vmemmap_bytes)
{
	return false;
}

/* Without huge pages every folio is order-0: KVM maps it at 4K, unlooked. */
static inline struct folio *gmem_hugetlb_get_piece(struct address_space *mapping,
						   pgoff_t index)
{
	return NULL;
}

static inline bool gmem_hugetlb_block_mappable(struct gmem_hugetlb *gh,
					       struct folio *piece,
					       pgoff_t index, unsigned int order)
{
	return false;
}

static inline void gmem_hugetlb_note_hwpoison(struct gmem_hugetlb *gh,
					      struct folio *folio)
{
}

static inline int gmem_hugetlb_remove_split(struct gmem_hugetlb *gh,
					    struct address_space *mapping,
					    pgoff_t index)
{
	return -EINVAL;
}

static inline bool gmem_hugetlb_page_hwpoisoned(struct folio *folio,
						struct page *page)
{
	return PageHWPoison(page);
}

static inline bool gmem_hugetlb_folio_hwpoisoned(struct folio *folio)
{
	return folio_test_hwpoison(folio);
}

static inline int gmem_hugetlb_restore_vmemmap(struct folio *folio)
{
	return 0;
}

static inline int gmem_hugetlb_lock_struct_page(struct page *page)
{
	return 0;
}

static inline void gmem_hugetlb_unlock_struct_page(void)
{
}
#endif /* CONFIG_GUEST_MEMFD_HUGETLB */

#endif /* _LINUX_GUEST_MEMFD_H */
