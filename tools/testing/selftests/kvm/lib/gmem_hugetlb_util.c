// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for tests of guest_memfd backed by hugetlb pages.
 */
#include <dirent.h>
#include <stdio.h>

#include "gmem_hugetlb_util.h"
#include "test_util.h"

unsigned long read_sysfs_ulong(const char *path)
{
	unsigned long val;
	FILE *f;

	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT_EQ(fscanf(f, "%lu", &val), 1);
	fclose(f);
	return val;
}

static unsigned long read_pool_count(const char *dir, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/%s", dir, name);
	return read_sysfs_ulong(path);
}

/* Free, reserved and surplus pages of every hugetlb pool, by size. */
void read_hugetlb_pools(struct hugetlb_pools *pools)
{
	DIR *dir = opendir("/sys/kernel/mm/hugepages");
	struct dirent *ent;

	TEST_ASSERT(dir, "opendir(/sys/kernel/mm/hugepages)");
	memset(pools, 0, sizeof(*pools));
	while ((ent = readdir(dir))) {
		struct hugetlb_pool *p = &pools->pool[pools->nr];

		if (sscanf(ent->d_name, "hugepages-%lukB", &p->kb) != 1)
			continue;
		TEST_ASSERT(pools->nr < MAX_HUGETLB_POOLS, "too many hugetlb pools");
		p->free = read_pool_count(ent->d_name, "free_hugepages");
		p->resv = read_pool_count(ent->d_name, "resv_hugepages");
		p->surplus = read_pool_count(ent->d_name, "surplus_hugepages");
		pools->nr++;
	}
	closedir(dir);
}

/*
 * Every pool is as in @before, but the pool of @page_shift pages, whose free
 * and reserved counts moved by @dfree and @dresv.
 */
void assert_hugetlb_pools(const struct hugetlb_pools *before,
			  unsigned int page_shift, long dfree, long dresv)
{
	struct hugetlb_pools now;
	int i, j;

	read_hugetlb_pools(&now);
	TEST_ASSERT_EQ(now.nr, before->nr);
	for (i = 0; i < now.nr; i++) {
		const struct hugetlb_pool *a = &now.pool[i], *b = NULL;
		bool this_size = a->kb << 10 == 1ul << page_shift;
		long df = this_size ? dfree : 0, dr = this_size ? dresv : 0;

		for (j = 0; j < before->nr; j++)
			if (before->pool[j].kb == a->kb)
				b = &before->pool[j];
		TEST_ASSERT(b, "hugetlb pool of %lukB appeared", a->kb);
		TEST_ASSERT(a->free == b->free + df && a->resv == b->resv + dr &&
			    a->surplus == b->surplus,
			    "%lukB pool: free %lu -> %lu (expected %+ld), resv %lu -> %lu (expected %+ld), surplus %lu -> %lu",
			    a->kb, b->free, a->free, df, b->resv, a->resv, dr,
			    b->surplus, a->surplus);
	}
}

unsigned long hugetlb_pool_free_pages(unsigned int page_shift)
{
	char dir[64];

	snprintf(dir, sizeof(dir), "hugepages-%lukB", (1ul << page_shift) >> 10);
	return read_pool_count(dir, "free_hugepages") - read_pool_count(dir, "resv_hugepages");
}

int __gmem_create_huge(struct kvm_vm *vm, u64 size, u64 flags, u8 size_log2)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = flags,
		.huge_page_size_log2 = size_log2,
	};

	return __vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
}
