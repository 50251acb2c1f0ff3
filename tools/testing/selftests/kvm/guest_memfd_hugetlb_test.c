// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd page sizes, seen from a guest.
 *
 * A guest writes every 4K page of a region backed by guest_memfd, the bytes
 * are read back (by the host through mmap when the memory is shared, by the
 * guest when it is private), KVM's binary stats show the mapping level it
 * used, and the hugetlb pool counts are exactly where they started.
 *
 * The variants are a table of (VM type, guest_memfd flags); the page-size
 * variants extend it. Order-0 guest_memfd is the baseline: it never takes
 * from the hugetlb pools and KVM maps it with 4K mappings only.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define DATA_SIZE	SZ_64M
#define MAX_POOLS	8

struct hugetlb_pool {
	unsigned long kb;
	unsigned long free, resv, surplus;
};

struct hugetlb_pools {
	int nr;
	struct hugetlb_pool pool[MAX_POOLS];
};

static unsigned long read_pool_count(const char *dir, const char *name)
{
	char path[PATH_MAX];
	unsigned long val;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/%s", dir, name);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT_EQ(fscanf(f, "%lu", &val), 1);
	fclose(f);
	return val;
}

/* Free, reserved and surplus pages of every hugetlb pool, by size. */
static void read_hugetlb_pools(struct hugetlb_pools *pools)
{
	DIR *dir = opendir("/sys/kernel/mm/hugepages");
	struct dirent *ent;

	TEST_ASSERT(dir, "opendir(/sys/kernel/mm/hugepages)");
	memset(pools, 0, sizeof(*pools));
	while ((ent = readdir(dir))) {
		struct hugetlb_pool *p = &pools->pool[pools->nr];

		if (sscanf(ent->d_name, "hugepages-%lukB", &p->kb) != 1)
			continue;
		TEST_ASSERT(pools->nr < MAX_POOLS, "too many hugetlb pools");
		p->free = read_pool_count(ent->d_name, "free_hugepages");
		p->resv = read_pool_count(ent->d_name, "resv_hugepages");
		p->surplus = read_pool_count(ent->d_name, "surplus_hugepages");
		pools->nr++;
	}
	closedir(dir);
}

static void assert_hugetlb_pools_unchanged(const struct hugetlb_pools *before)
{
	struct hugetlb_pools now;
	int i, j;

	read_hugetlb_pools(&now);
	TEST_ASSERT_EQ(now.nr, before->nr);
	for (i = 0; i < now.nr; i++) {
		const struct hugetlb_pool *a = &now.pool[i], *b = NULL;

		for (j = 0; j < before->nr; j++)
			if (before->pool[j].kb == a->kb)
				b = &before->pool[j];
		TEST_ASSERT(b, "hugetlb pool of %lukB appeared", a->kb);
		TEST_ASSERT(a->free == b->free && a->resv == b->resv &&
			    a->surplus == b->surplus,
			    "%lukB pool changed: free %lu -> %lu, resv %lu -> %lu, surplus %lu -> %lu",
			    a->kb, b->free, a->free, b->resv, a->resv,
			    b->surplus, a->surplus);
	}
}

static u64 page_pattern(u64 offset)
{
	return offset ^ 0x5a5a5a5a00000000ull;
}

static void guest_code(u64 gpa, u64 size)
{
	u64 off;

	for (off = 0; off < size; off += PAGE_SIZE)
		WRITE_ONCE(*(u64 *)(gpa + off), page_pattern(off));
	GUEST_SYNC(0);

	for (off = 0; off < size; off += PAGE_SIZE)
		GUEST_ASSERT_EQ(READ_ONCE(*(u64 *)(gpa + off)), page_pattern(off));
	GUEST_DONE();
}

static void run_until(struct kvm_vcpu *vcpu, u64 ucall)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	default:
		TEST_ASSERT_EQ(uc.cmd, ucall);
	}
}

FIXTURE(gmem) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct hugetlb_pools pools_before;
	int fd;
};

FIXTURE_VARIANT(gmem) {
	unsigned long vm_type;
	u64 flags;
	bool private;
};

/* Order-0 guest_memfd, private to a software-protected VM. */
FIXTURE_VARIANT_ADD(gmem, page_4k_private) {
	.vm_type = KVM_X86_SW_PROTECTED_VM,
	.flags = 0,
	.private = true,
};

/* Order-0 guest_memfd, shared and mapped by the host. */
FIXTURE_VARIANT_ADD(gmem, page_4k_shared) {
	.vm_type = VM_TYPE_DEFAULT,
	.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	.private = false,
};

FIXTURE_SETUP(gmem)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = variant->vm_type,
	};

	if (variant->vm_type != VM_TYPE_DEFAULT)
		TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(variant->vm_type));
	TEST_REQUIRE((kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & variant->flags) ==
		     variant->flags);

	/*
	 * No THP for the VM's own memory: then every huge stage-2 mapping in
	 * the stats comes from guest_memfd.
	 */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	read_hugetlb_pools(&self->pools_before);
	self->vm = __vm_create_shape_with_one_vcpu(shape, &self->vcpu, 0, guest_code);
	self->fd = vm_create_guest_memfd(self->vm, DATA_SIZE, variant->flags);
	vm_set_user_memory_region2(self->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, DATA_SIZE, NULL, self->fd, 0);
	if (variant->private)
		vm_mem_set_private(self->vm, DATA_GPA, DATA_SIZE);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_SIZE / self->vm->page_size);
	vcpu_args_set(self->vcpu, 2, DATA_GPA, DATA_SIZE);
}

FIXTURE_TEARDOWN(gmem)
{
	close(self->fd);
	kvm_vm_free(self->vm);
	assert_hugetlb_pools_unchanged(&self->pools_before);
}

TEST_F(gmem, guest_touches_every_page)
{
	const u64 nr_pages = DATA_SIZE / PAGE_SIZE;
	u64 off, *mem;

	run_until(self->vcpu, UCALL_SYNC);

	/* Order-0 folios: KVM may map them at 4K only. */
	TEST_ASSERT_EQ(vm_get_stat(self->vm, pages_1g), 0);
	TEST_ASSERT_EQ(vm_get_stat(self->vm, pages_2m), 0);
	TEST_ASSERT(vm_get_stat(self->vm, pages_4k) >= nr_pages,
		    "pages_4k = %lu after touching %lu pages",
		    vm_get_stat(self->vm, pages_4k), nr_pages);
	assert_hugetlb_pools_unchanged(&self->pools_before);

	if (!variant->private) {
		mem = kvm_mmap(DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
		for (off = 0; off < DATA_SIZE; off += PAGE_SIZE)
			TEST_ASSERT_EQ(mem[off / sizeof(*mem)], page_pattern(off));
		kvm_munmap(mem, DATA_SIZE);
	}

	run_until(self->vcpu, UCALL_DONE);
}

TEST_HARNESS_MAIN
