/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for tests of guest_memfd backed by hugetlb pages: creating such a
 * file, and reading the hugetlb pools and asserting their counts.
 */
#ifndef SELFTEST_KVM_GMEM_HUGETLB_UTIL_H
#define SELFTEST_KVM_GMEM_HUGETLB_UTIL_H

#include "kvm_util.h"

#define MAX_HUGETLB_POOLS	8

struct hugetlb_pool {
	unsigned long kb;
	unsigned long free, resv, surplus;
};

struct hugetlb_pools {
	int nr;
	struct hugetlb_pool pool[MAX_HUGETLB_POOLS];
};

unsigned long read_sysfs_ulong(const char *path);
void read_hugetlb_pools(struct hugetlb_pools *pools);
void assert_hugetlb_pools(const struct hugetlb_pools *before,
			  unsigned int page_shift, long dfree, long dresv);
unsigned long hugetlb_pool_free_pages(unsigned int page_shift);

int __gmem_create_huge(struct kvm_vm *vm, u64 size, u64 flags, u8 size_log2);

#endif /* SELFTEST_KVM_GMEM_HUGETLB_UTIL_H */
