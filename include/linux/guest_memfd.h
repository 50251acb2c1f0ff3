/* SPDX-License-Identifier: GPL-2.0 */
/*
 * guest_memfd backed by hugetlb pages: the interface between KVM's
 * guest_memfd (virt/kvm/guest_memfd.c) and the hugetlb glue in
 * mm/guest_memfd_hugetlb.c.
 */
#ifndef _LINUX_GUEST_MEMFD_H
#define _LINUX_GUEST_MEMFD_H

#include <linux/types.h>

struct hstate;

#ifdef CONFIG_GUEST_MEMFD_HUGETLB
struct hstate *gmem_hugetlb_hstate(unsigned int size_log2);
u64 gmem_hugetlb_supported_sizes(void);
#else
static inline struct hstate *gmem_hugetlb_hstate(unsigned int size_log2)
{
	return NULL;
}

static inline u64 gmem_hugetlb_supported_sizes(void)
{
	return 0;
}
#endif /* CONFIG_GUEST_MEMFD_HUGETLB */

#endif /* _LINUX_GUEST_MEMFD_H */
