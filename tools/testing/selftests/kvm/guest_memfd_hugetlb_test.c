// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd backed by hugetlb pages (GUEST_MEMFD_FLAG_HUGE_PAGES).
 *
 * The uAPI: the capability that reports the huge page sizes, and every
 * creation error, each of which must leave the hugetlb pools as they were.
 *
 * Then a table of variants, (VM type, guest_memfd flags, page size): a guest
 * writes every 4K page of a region backed by the file, the bytes are read
 * back (by the host through mmap when the memory is shared, which then writes
 * its own for the guest to read, and by the guest), KVM's binary stats show
 * the mapping level it used, and the
 * hugetlb pool counts are exact at every step: reserved at creation, used
 * when touched, given back on punch hole and on close; racers inside one huge
 * page allocate it once. Order-0 guest_memfd is the baseline: it never takes
 * from the pools and is mapped at 4K only.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "numaif.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
static u64 page_pattern(u64 offset)
{
	return offset ^ 0x5a5a5a5a00000000ull;
}

/* What the host writes over the guest's pattern, when it can map the memory. */
static u64 host_pattern(u64 offset)
{
	return ~page_pattern(offset);
}

/*
 * Write every page, let the host look (and, if @host_writes, write its own
 * pattern), then check every page holds what the last writer wrote.
 */
static void guest_code(u64 gpa, u64 size, u64 host_writes)
{
	u64 off;

	for (off = 0; off < size; off += PAGE_SIZE)
		WRITE_ONCE(*(u64 *)(gpa + off), page_pattern(off));
	GUEST_SYNC(0);

	for (off = 0; off < size; off += PAGE_SIZE)
		GUEST_ASSERT_EQ(READ_ONCE(*(u64 *)(gpa + off)),
				host_writes ? host_pattern(off) : page_pattern(off));
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

static bool vm_type_supported(unsigned long vm_type)
{
	return vm_type == VM_TYPE_DEFAULT ||
	       (kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(vm_type));
}

/* The capability names exactly the hugetlb pools (up to 1G, bit 30). */
TEST(huge_page_sizes_capability)
{
	u32 sizes = kvm_check_cap(KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES);
	struct hugetlb_pools pools;
	unsigned long expected = 0;
	struct kvm_vm *vm;
	int i;

	read_hugetlb_pools(&pools);
	for (i = 0; i < pools.nr; i++) {
		int shift = __builtin_ctzl(pools.pool[i].kb << 10);

		if (shift <= 30)
			expected |= BIT(shift);
	}
	TEST_ASSERT_EQ(sizes, expected);
	TEST_ASSERT(sizes & BIT(21), "2M pages are expected on x86");
	TEST_ASSERT(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & GUEST_MEMFD_FLAG_HUGE_PAGES,
		    "KVM_CAP_GUEST_MEMFD_FLAGS lacks GUEST_MEMFD_FLAG_HUGE_PAGES");

	vm = vm_create_barebones();
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES), sizes);
	TEST_ASSERT(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS) & GUEST_MEMFD_FLAG_HUGE_PAGES,
		    "a default VM does not offer GUEST_MEMFD_FLAG_HUGE_PAGES");
	kvm_vm_free(vm);
}

static void expect_create_errno(struct kvm_vm *vm, const struct hugetlb_pools *pools,
				int err, u64 size, u64 flags, u8 log2)
{
	int fd = __gmem_create_huge(vm, size, flags, log2);

	TEST_ASSERT(fd < 0 && errno == err,
		    "size %#lx flags %#lx log2 %u: expected errno %d, got fd %d errno %d",
		    size, flags, log2, err, fd, errno);
	assert_hugetlb_pools(pools, 0, 0, 0);
}

/* Each bad request fails with its errno and leaves the pools as they were. */
TEST(creation_errors)
{
	const u64 huge = GUEST_MEMFD_FLAG_HUGE_PAGES;
	struct kvm_create_guest_memfd args;
	struct hugetlb_pools pools;
	struct kvm_vm *vm;
	unsigned long spare;

	vm = vm_create_barebones();
	read_hugetlb_pools(&pools);

	/* The flag without a size, a size without the flag. */
	expect_create_errno(vm, &pools, EINVAL, SZ_2M, huge, 0);
	expect_create_errno(vm, &pools, EINVAL, SZ_2M, 0, 21);
	expect_create_errno(vm, &pools, EINVAL, SZ_2M, GUEST_MEMFD_FLAG_MMAP, 21);
	/* Sizes with no hugetlb pool. */
	expect_create_errno(vm, &pools, EINVAL, SZ_4M, huge, 12);
	expect_create_errno(vm, &pools, EINVAL, SZ_4M, huge, 22);
	expect_create_errno(vm, &pools, EINVAL, SZ_4M, huge, 31);
	expect_create_errno(vm, &pools, EINVAL, SZ_4M, huge, 63);
	expect_create_errno(vm, &pools, EINVAL, SZ_4M, huge, 255);
	/* A file size that is not whole huge pages. */
	expect_create_errno(vm, &pools, EINVAL, SZ_2M + SZ_4K, huge, 21);
	expect_create_errno(vm, &pools, EINVAL, SZ_4K, huge, 21);
	expect_create_errno(vm, &pools, EINVAL, SZ_1G - SZ_2M, huge, 30);
	/* Unknown flags. */
	expect_create_errno(vm, &pools, EINVAL, SZ_2M, huge | BIT_ULL(4), 21);
	expect_create_errno(vm, &pools, EINVAL, SZ_2M, huge | BIT_ULL(63), 21);

	/* Non-zero padding or reserved bytes. */
	memset(&args, 0, sizeof(args));
	args.size = SZ_2M;
	args.flags = huge;
	args.huge_page_size_log2 = 21;
	args.pad[6] = 1;
	TEST_ASSERT(__vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args) < 0 && errno == EINVAL,
		    "non-zero pad should fail with EINVAL");
	args.pad[6] = 0;
	args.reserved[4] = 1;
	TEST_ASSERT(__vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args) < 0 && errno == EINVAL,
		    "non-zero reserved should fail with EINVAL");
	args.reserved[4] = 0;
	args.size = 0;
	TEST_ASSERT(__vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args) < 0 && errno == EINVAL,
		    "size 0 should fail with EINVAL");
	assert_hugetlb_pools(&pools, 0, 0, 0);

	/* More than the pool can reserve: -ENOMEM at creation. */
	spare = hugetlb_pool_free_pages(21);
	expect_create_errno(vm, &pools, ENOMEM, (spare + 1) * SZ_2M, huge, 21);
	spare = hugetlb_pool_free_pages(30);
	expect_create_errno(vm, &pools, ENOMEM, (spare + 1) * SZ_1G, huge, 30);

	kvm_vm_free(vm);
}

static unsigned long node_free_pages(int node, unsigned int page_shift)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node%d/hugepages/hugepages-%lukB/free_hugepages",
		 node, (1ul << page_shift) >> 10);
	return read_sysfs_ulong(path);
}

/*
 * A 'bind' policy set with mbind() on the mapping of a shared file decides
 * the node each huge page comes from, as it does for order-0 guest_memfd.
 */
TEST(numa_bind_places_huge_pages)
{
	static const unsigned int shifts[] = { 21, 30 };
	const u64 flags = GUEST_MEMFD_FLAG_HUGE_PAGES | GUEST_MEMFD_FLAG_MMAP |
			  GUEST_MEMFD_FLAG_INIT_SHARED;
	struct kvm_vm *vm = vm_create_barebones();
	int i, node, other;

	TEST_REQUIRE(is_multi_numa_node_system());

	for (i = 0; i < ARRAY_SIZE(shifts); i++) {
		u64 psz = 1ull << shifts[i];

		for (node = 0; node < 2; node++) {
			unsigned long nodemask = BIT(node);
			unsigned long free[2];
			u64 *mem;
			int fd;

			other = !node;
			free[node] = node_free_pages(node, shifts[i]);
			free[other] = node_free_pages(other, shifts[i]);
			TEST_ASSERT(free[node] >= 1, "no free %lukB page on node %d",
				    psz >> 10, node);

			fd = __gmem_create_huge(vm, psz, flags, shifts[i]);
			TEST_ASSERT(fd >= 0, "creating the guest_memfd failed, errno %d", errno);
			mem = kvm_mmap(psz, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
			kvm_mbind(mem, psz, MPOL_BIND, &nodemask, 8, 0);
			WRITE_ONCE(mem[0], 1);

			TEST_ASSERT_EQ(node_free_pages(node, shifts[i]), free[node] - 1);
			TEST_ASSERT_EQ(node_free_pages(other, shifts[i]), free[other]);

			kvm_munmap(mem, psz);
			close(fd);
			TEST_ASSERT_EQ(node_free_pages(node, shifts[i]), free[node]);
		}
	}
	kvm_vm_free(vm);
}

FIXTURE(gmem) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct hugetlb_pools pools_before;
	u64 page_size;
	long nr_huge;	/* huge pages in the file, 0 for order-0 */
	int fd;
};

FIXTURE_VARIANT(gmem) {
	unsigned long vm_type;
	u64 flags;
	bool private;
	unsigned int page_shift;
	u64 size;
};

#define GMEM_SHARED	(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/* Order-0 guest_memfd, private to a software-protected VM. */
FIXTURE_VARIANT_ADD(gmem, page_4k_private) {
	.vm_type = KVM_X86_SW_PROTECTED_VM,
	.page_shift = 12,
	.size = SZ_64M,
	.private = true,
};

/* Order-0 guest_memfd, shared and mapped by the host. */
FIXTURE_VARIANT_ADD(gmem, page_4k_shared) {
	.vm_type = VM_TYPE_DEFAULT,
	.flags = GMEM_SHARED,
	.page_shift = 12,
	.size = SZ_64M,
};

/* 1 GiB of 2M pages: 512 2M mappings. */
FIXTURE_VARIANT_ADD(gmem, page_2m_private) {
	.vm_type = KVM_X86_SW_PROTECTED_VM,
	.flags = GUEST_MEMFD_FLAG_HUGE_PAGES,
	.page_shift = 21,
	.size = SZ_1G,
	.private = true,
};

FIXTURE_VARIANT_ADD(gmem, page_2m_shared) {
	.vm_type = VM_TYPE_DEFAULT,
	.flags = GUEST_MEMFD_FLAG_HUGE_PAGES | GMEM_SHARED,
	.page_shift = 21,
	.size = SZ_64M,
};

FIXTURE_VARIANT_ADD(gmem, page_1g_private) {
	.vm_type = KVM_X86_SW_PROTECTED_VM,
	.flags = GUEST_MEMFD_FLAG_HUGE_PAGES,
	.page_shift = 30,
	.size = SZ_1G,
	.private = true,
};

FIXTURE_VARIANT_ADD(gmem, page_1g_shared) {
	.vm_type = VM_TYPE_DEFAULT,
	.flags = GUEST_MEMFD_FLAG_HUGE_PAGES | GMEM_SHARED,
	.page_shift = 30,
	.size = SZ_1G,
};

FIXTURE_SETUP(gmem)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = variant->vm_type,
	};
	bool huge = variant->flags & GUEST_MEMFD_FLAG_HUGE_PAGES;

	TEST_REQUIRE(vm_type_supported(variant->vm_type));

	/*
	 * No THP for the VM's own memory: then every huge stage-2 mapping in
	 * the stats comes from guest_memfd.
	 */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	self->page_size = 1ull << variant->page_shift;
	self->nr_huge = huge ? variant->size / self->page_size : 0;
	read_hugetlb_pools(&self->pools_before);

	/* The region's pages, so that the VM has room for their page tables. */
	self->vm = __vm_create_shape_with_one_vcpu(shape, &self->vcpu,
						   variant->size / PAGE_SIZE, guest_code);
	TEST_ASSERT((vm_check_cap(self->vm, KVM_CAP_GUEST_MEMFD_FLAGS) & variant->flags) ==
		    variant->flags, "VM type %lu lacks guest_memfd flags %#llx",
		    variant->vm_type, (unsigned long long)variant->flags);

	self->fd = __gmem_create_huge(self->vm, variant->size, variant->flags,
				      huge ? variant->page_shift : 0);
	TEST_ASSERT(self->fd >= 0, "creating the guest_memfd failed, errno %d", errno);

	/* The whole file is reserved at creation, nothing is used yet. */
	assert_hugetlb_pools(&self->pools_before, variant->page_shift, 0, self->nr_huge);
}

FIXTURE_TEARDOWN(gmem)
{
	close(self->fd);
	kvm_vm_free(self->vm);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

/* Bind [offset, offset + size) of @fd at DATA_GPA and map it in the guest. */
static void bind_data(struct kvm_vcpu *vcpu, int fd, bool private, u64 offset,
		      u64 size)
{
	struct kvm_vm *vm = vcpu->vm;

	vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, size, NULL, fd, offset);
	/*
	 * Where files convert in place, a file without mmap is private
	 * already (and the VM takes no VM-wide attributes).
	 */
	if (private && !kvm_has_gmem_attributes)
		vm_mem_set_private(vm, DATA_GPA, size);
	virt_map(vm, DATA_GPA, DATA_GPA, size / vm->page_size);
	vcpu_args_set(vcpu, 3, DATA_GPA, size, !private);
}

TEST_F_TIMEOUT(gmem, guest_touches_every_page, GMEM_TEST_TIMEOUT)
{
	u64 size = variant->size, off, *mem;

	bind_data(self->vcpu, self->fd, variant->private, 0, size);
	run_until(self->vcpu, UCALL_SYNC);

	/* KVM maps at the file's page size, as many as cover the region. */
	switch (variant->page_shift) {
	case 30:
		assert_stage2_mappings(self->vm, size / SZ_1G, 0, 0, true);
		break;
	case 21:
		assert_stage2_mappings(self->vm, 0, size / SZ_2M, 0, true);
		break;
	default:
		assert_stage2_mappings(self->vm, 0, 0, size / PAGE_SIZE, true);
	}
	/* Every huge page is in use, out of the file's reservation. */
	assert_hugetlb_pools(&self->pools_before, variant->page_shift, -self->nr_huge, 0);

	/* The host sees the guest's bytes, and the guest sees the host's. */
	if (!variant->private) {
		mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
		for (off = 0; off < size; off += PAGE_SIZE) {
			TEST_ASSERT_EQ(mem[off / sizeof(*mem)], page_pattern(off));
			mem[off / sizeof(*mem)] = host_pattern(off);
		}
		kvm_munmap(mem, size);
	}

	run_until(self->vcpu, UCALL_DONE);
}

/*
 * A binding whose guest_memfd offset is aligned only to the next smaller page
 * size (2M into a 1G file, 4K into a 2M file) is mapped at that size at most.
 */
TEST_F_TIMEOUT(gmem, misaligned_binding_maps_smaller, GMEM_TEST_TIMEOUT)
{
	u64 offset = variant->page_shift == 30 ? SZ_2M : SZ_4K;
	u64 size = variant->size - offset;

	bind_data(self->vcpu, self->fd, variant->private, offset, size);
	run_until(self->vcpu, UCALL_SYNC);

	if (variant->page_shift == 30)
		assert_stage2_mappings(self->vm, 0, size / SZ_2M, 0, true);
	else
		assert_stage2_mappings(self->vm, 0, 0, size / PAGE_SIZE, true);

	/* The guest's second pass expects the host's pattern on shared memory. */
	if (!variant->private) {
		u64 *mem = kvm_mmap(variant->size, PROT_READ | PROT_WRITE, MAP_SHARED,
				    self->fd);
		u64 off;

		for (off = 0; off < size; off += PAGE_SIZE)
			mem[(offset + off) / sizeof(*mem)] = host_pattern(off);
		kvm_munmap(mem, variant->size);
	}

	run_until(self->vcpu, UCALL_DONE);
}

/*
 * fallocate takes huge pages out of the file's reservation, punch hole gives
 * them back, whole huge pages only; anything else fails with EINVAL and
 * changes nothing. The host reads zeroes where a hole was punched.
 */
TEST_F_TIMEOUT(gmem, fallocate_and_punch_hole, GMEM_TEST_TIMEOUT)
{
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	u64 size = variant->size, psz = self->page_size;
	long nr = self->nr_huge;
	unsigned int shift = variant->page_shift;
	u64 *mem = NULL;

	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, size), 0);
	assert_hugetlb_pools(&self->pools_before, shift, -nr, 0);

	/*
	 * The pages checked below hold a pattern: writing all of a 1G file
	 * through 4K host faults takes minutes under KASAN.
	 */
	if (!variant->private) {
		mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
		memset((void *)mem + PAGE_SIZE, 0xaa, PAGE_SIZE);
		if (size > psz)
			memset((void *)mem + size - psz - PAGE_SIZE, 0xaa, PAGE_SIZE);
		memset((void *)mem + size - psz, 0xaa, PAGE_SIZE);
		memset((void *)mem + size - PAGE_SIZE, 0xaa, PAGE_SIZE);
	}

	if (nr) {
		/* Not whole huge pages. */
		TEST_ASSERT(fallocate(self->fd, punch, PAGE_SIZE, psz) < 0 && errno == EINVAL,
			    "unaligned punch hole should fail with EINVAL");
		TEST_ASSERT(fallocate(self->fd, punch, 0, psz - PAGE_SIZE) < 0 &&
			    errno == EINVAL, "partial punch hole should fail with EINVAL");
		TEST_ASSERT(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, PAGE_SIZE, PAGE_SIZE) < 0 &&
			    errno == EINVAL, "unaligned fallocate should fail with EINVAL");
		assert_hugetlb_pools(&self->pools_before, shift, -nr, 0);
		if (mem)
			TEST_ASSERT_EQ(mem[PAGE_SIZE / sizeof(*mem)], 0xaaaaaaaaaaaaaaaaull);
	}

	/* The last huge page (or 4K page) goes back to the file's reservation. */
	TEST_ASSERT_EQ(fallocate(self->fd, punch, size - psz, psz), 0);
	assert_hugetlb_pools(&self->pools_before, shift, -nr + !!nr, !!nr);
	if (mem) {
		TEST_ASSERT_EQ(mem[(size - psz) / sizeof(*mem)], 0);
		TEST_ASSERT_EQ(mem[(size - 8) / sizeof(*mem)], 0);
		if (size > psz)
			TEST_ASSERT_EQ(mem[(size - psz - 8) / sizeof(*mem)],
				       0xaaaaaaaaaaaaaaaaull);
	}

	/* Allocating it again takes it again; a repeat is a no-op. */
	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, size - psz, psz), 0);
	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, size), 0);
	assert_hugetlb_pools(&self->pools_before, shift, -nr, 0);

	/* Everything back. */
	if (mem)
		kvm_munmap(mem, size);
	TEST_ASSERT_EQ(fallocate(self->fd, punch, 0, size), 0);
	assert_hugetlb_pools(&self->pools_before, shift, 0, nr);
}

#define NR_RACERS	8

struct racer {
	pthread_barrier_t *barrier;
	int fd;
	u64 huge_size;
	u64 *mem;	/* the mapping, or NULL to fallocate */
	int id;
	int ret;
};

static void *race_in_first_huge_page(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->barrier);
	if (r->mem) {
		/* Each racer writes its own 4K page of the first huge page. */
		u64 off = (r->huge_size / NR_RACERS) * r->id;

		WRITE_ONCE(r->mem[off / sizeof(u64)], r->id + 1);
		r->ret = 0;
	} else {
		r->ret = fallocate(r->fd, FALLOC_FL_KEEP_SIZE, 0, r->huge_size) ? errno : 0;
	}
	return NULL;
}

/*
 * Racers faulting or allocating inside one huge page all succeed, and the
 * page is allocated once.
 */
/* fstat() tells the page size, as for a hugetlbfs file: 4096 for order-0. */
TEST_F_TIMEOUT(gmem, st_blksize_is_the_page_size, GMEM_TEST_TIMEOUT)
{
	struct stat st;

	TEST_ASSERT_EQ(fstat(self->fd, &st), 0);
	TEST_ASSERT_EQ(st.st_blksize, self->page_size);
}

TEST_F_TIMEOUT(gmem, concurrent_allocation_in_one_huge_page, GMEM_TEST_TIMEOUT)
{
	u64 psz = self->page_size, size = variant->size;
	struct racer racers[NR_RACERS];
	pthread_t threads[NR_RACERS];
	pthread_barrier_t barrier;
	u64 *mem = NULL;
	int i;

	if (!variant->private)
		mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);

	pthread_barrier_init(&barrier, NULL, NR_RACERS);
	for (i = 0; i < NR_RACERS; i++) {
		racers[i] = (struct racer) {
			.barrier = &barrier, .fd = self->fd, .huge_size = psz,
			.mem = mem, .id = i,
		};
		pthread_create(&threads[i], NULL, race_in_first_huge_page, &racers[i]);
	}
	for (i = 0; i < NR_RACERS; i++) {
		pthread_join(threads[i], NULL);
		TEST_ASSERT(!racers[i].ret, "racer %d failed, errno %d", i, racers[i].ret);
	}
	pthread_barrier_destroy(&barrier);

	/* One huge page in use, the rest of the file still reserved. */
	assert_hugetlb_pools(&self->pools_before, variant->page_shift,
			     -!!self->nr_huge, self->nr_huge - !!self->nr_huge);

	if (mem) {
		for (i = 0; i < NR_RACERS; i++)
			TEST_ASSERT_EQ(mem[(psz / NR_RACERS) * i / sizeof(u64)], i + 1);
		kvm_munmap(mem, size);
	}
}

TEST_HARNESS_MAIN
