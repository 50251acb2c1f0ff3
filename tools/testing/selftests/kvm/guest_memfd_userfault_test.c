// SPDX-License-Identifier: GPL-2.0-only
/*
 * Post-copy on guest_memfd: KVM_MEM_USERFAULT and its bitmap, on order-0, 2M
 * and 1G files, for shared memory (filled through the file's mapping) and for
 * private memory of a software-protected VM (filled with pwrite()).
 *
 * The VM first touches all its memory, mapped huge; setting the flag on the
 * live memslot zaps it.  Then several vCPUs read every byte of the memory
 * while a host thread "receives" the pages in random order: it fills each one
 * and clears its bit.  A vCPU that touches a page that has not arrived exits
 * with KVM_EXIT_MEMORY_FAULT and KVM_MEMORY_EXIT_FLAG_USERFAULT, receives the
 * page itself (or waits for the host thread to finish it) and runs again.
 * The guest asserts every byte.  At the end the memory is mapped at its huge
 * page size although the flag is still set, each page was received once, and
 * clearing the flag changes no mapping.  Bad inputs get their errno and change
 * nothing; the hugetlb pools are exact after every test.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define NR_VCPUS	4

static_assert(KVM_MEM_USERFAULT == (1UL << 3));
static_assert(KVM_MEMORY_EXIT_FLAG_USERFAULT == (1ULL << 4));
static_assert(offsetof(struct kvm_userspace_memory_region2, userfault_bitmap) ==
	      offsetof(struct kvm_userspace_memory_region2, pad1) + 4);

enum guest_phase {
	PHASE_TOUCH,	/* read a word of each page */
	PHASE_VERIFY,	/* assert every word */
};

/* Read by the guest. */
static u64 data_size;
static u64 seed;
static u64 phase;
static u64 skip_page = ~0ull;	/* a page the guest must not read */

/* The word at @offset of the data, as the host "receives" it. */
static u64 word_value(u64 offset, u64 seed)
{
	return (offset * 0x9e3779b97f4a7c15ull) ^ seed;
}

static void guest_code(u64 idx)
{
	u64 chunk = data_size / NR_VCPUS, start = idx * chunk, off;

	for (;;) {
		for (off = start; off < start + chunk; off += sizeof(u64)) {
			u64 v;

			if (off / PAGE_SIZE == skip_page) {
				off += PAGE_SIZE - sizeof(u64);
				continue;
			}
			v = READ_ONCE(*(u64 *)(DATA_GPA + off));
			if (phase == PHASE_TOUCH) {
				off += PAGE_SIZE - sizeof(u64);
				continue;
			}
			__GUEST_ASSERT(v == word_value(off, seed),
				       "gpa %#lx holds %#lx, expected %#lx",
				       (u64)DATA_GPA + off, v, word_value(off, seed));
		}
		GUEST_SYNC(phase);
	}
}

static int __set_region(struct kvm_vm *vm, u32 flags, u64 size, void *hva,
			int fd, u64 offset, void *bitmap)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = DATA_SLOT,
		.flags = flags,
		.guest_phys_addr = DATA_GPA,
		.memory_size = size,
		.userspace_addr = (u64)hva,
		.guest_memfd = fd,
		.guest_memfd_offset = offset,
		.userfault_bitmap = (u64)bitmap,
	};

	return __vm_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &region);
}

static void *alloc_bitmap(u64 npages)
{
	u64 bytes = align_up(npages / 8 ?: 1, getpagesize());
	void *bitmap = kvm_mmap(bytes, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1);

	memset(bitmap, 0xff, bytes);
	return bitmap;
}

static void free_bitmap(void *bitmap, u64 npages)
{
	kvm_munmap(bitmap, align_up(npages / 8 ?: 1, getpagesize()));
}

static bool vm_type_supported(unsigned long vm_type)
{
	return kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(vm_type);
}

struct postcopy {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	u64 size, npages;
	u64 *mem;		/* the host's mapping of the file */
	int fd;
	bool private;
	u64 seed;
	unsigned long *bitmap;	/* KVM_MEM_USERFAULT's */
	u8 *claimed;		/* a receiver has taken the page */
	u64 received;		/* pages filled, by anyone */
	u64 exits;		/* userfault exits */
	bool stop_on_userfault;	/* a vCPU returns at its exit instead */
};

static bool page_missing(struct postcopy *pc, u64 page)
{
	return __atomic_load_n(&pc->bitmap[page / 64], __ATOMIC_ACQUIRE) &
	       (1ul << (page % 64));
}

/* Fill @page with what the guest expects, then clear its bit. */
static void receive_page(struct postcopy *pc, u64 page)
{
	u64 buf[PAGE_SIZE / sizeof(u64)], off = page * PAGE_SIZE, i;

	if (__atomic_exchange_n(&pc->claimed[page], 1, __ATOMIC_ACQ_REL)) {
		/* Another receiver has it: wait until it has arrived. */
		while (page_missing(pc, page))
			sched_yield();
		return;
	}

	for (i = 0; i < ARRAY_SIZE(buf); i++)
		buf[i] = word_value(off + i * sizeof(u64), pc->seed);
	if (pc->private)
		TEST_ASSERT_EQ(pwrite(pc->fd, buf, PAGE_SIZE, off), PAGE_SIZE);
	else
		memcpy(&pc->mem[off / sizeof(u64)], buf, PAGE_SIZE);

	__atomic_fetch_and(&pc->bitmap[page / 64], ~(1ul << (page % 64)),
			   __ATOMIC_RELEASE);
	__atomic_fetch_add(&pc->received, 1, __ATOMIC_RELAXED);
}

struct vcpu_thread {
	struct postcopy *pc;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	u64 stopped_at;		/* the gpa it exited for, with stop_on_userfault */
};

/* Run until the guest's next sync, receiving each page it exits for. */
static void *vcpu_run_phase(void *arg)
{
	struct vcpu_thread *t = arg;
	struct kvm_vcpu *vcpu = t->vcpu;
	struct kvm_run *run = vcpu->run;
	struct postcopy *pc = t->pc;
	u64 want = pc->private ? KVM_MEMORY_EXIT_FLAG_USERFAULT |
				 KVM_MEMORY_EXIT_FLAG_PRIVATE :
				 KVM_MEMORY_EXIT_FLAG_USERFAULT;
	struct ucall uc;

	for (;;) {
		if (vcpu_run_to_userfault(vcpu)) {
			u64 gpa = run->memory_fault.gpa;

			TEST_ASSERT(run->memory_fault.flags == want &&
				    run->memory_fault.size == PAGE_SIZE &&
				    gpa >= DATA_GPA && gpa < DATA_GPA + pc->size,
				    "userfault exit: gpa %#lx size %#llx flags %#llx",
				    gpa, run->memory_fault.size,
				    run->memory_fault.flags);
			__atomic_fetch_add(&pc->exits, 1, __ATOMIC_RELAXED);
			if (pc->stop_on_userfault) {
				t->stopped_at = gpa;
				return NULL;
			}
			receive_page(pc, (gpa - DATA_GPA) / PAGE_SIZE);
			continue;
		}
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			return NULL;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
}

static void run_phase(struct postcopy *pc, enum guest_phase p,
		      struct vcpu_thread threads[NR_VCPUS])
{
	int i;

	phase = p;
	sync_global_to_guest(pc->vm, phase);
	for (i = 0; i < NR_VCPUS; i++) {
		threads[i] = (struct vcpu_thread) { .pc = pc, .vcpu = pc->vcpus[i] };
		pthread_create(&threads[i].thread, NULL, vcpu_run_phase, &threads[i]);
	}
	for (i = 0; i < NR_VCPUS; i++)
		pthread_join(threads[i].thread, NULL);
}

/* The host's side of post-copy: every page, in random order. */
static void *receive_all(void *arg)
{
	struct postcopy *pc = arg;
	unsigned int rand_state = pc->seed;
	u64 *order = malloc(pc->npages * sizeof(*order)), i, j, tmp;

	TEST_ASSERT(order, "no memory for the page order");
	for (i = 0; i < pc->npages; i++)
		order[i] = i;
	for (i = pc->npages - 1; i > 0; i--) {
		j = rand_r(&rand_state) % (i + 1);
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (i = 0; i < pc->npages; i++)
		receive_page(pc, order[i]);
	free(order);
	return NULL;
}

FIXTURE(postcopy) {
	struct postcopy pc;
	struct hugetlb_pools pools_before;
	u64 page_size;
};

FIXTURE_VARIANT(postcopy) {
	unsigned int page_shift;
	u64 size;
	bool private;
};

FIXTURE_VARIANT_ADD(postcopy, page_4k_shared) {
	.page_shift = 12, .size = SZ_32M, .private = false,
};

FIXTURE_VARIANT_ADD(postcopy, page_4k_private) {
	.page_shift = 12, .size = SZ_32M, .private = true,
};

FIXTURE_VARIANT_ADD(postcopy, page_2m_shared) {
	.page_shift = 21, .size = SZ_64M, .private = false,
};

FIXTURE_VARIANT_ADD(postcopy, page_2m_private) {
	.page_shift = 21, .size = SZ_64M, .private = true,
};

FIXTURE_VARIANT_ADD(postcopy, page_1g_shared) {
	.page_shift = 30, .size = SZ_1G, .private = false,
};

FIXTURE_VARIANT_ADD(postcopy, page_1g_private) {
	.page_shift = 30, .size = SZ_1G, .private = true,
};

FIXTURE_SETUP(postcopy)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct postcopy *pc = &self->pc;
	bool huge = variant->page_shift > 12;
	u64 flags = GUEST_MEMFD_FLAG_MMAP;
	int i, level;

	TEST_REQUIRE(vm_type_supported(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_USERFAULT));

	/* No THP: every huge stage-2 mapping in the stats is guest_memfd's. */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	/* The default, whatever a test that failed before left. */
	set_userfault_huge_mappings(true);
	read_hugetlb_pools(&self->pools_before);
	self->page_size = 1ull << variant->page_shift;
	pc->size = variant->size;
	pc->npages = pc->size / PAGE_SIZE;
	pc->private = variant->private;
	pc->seed = random();

	pc->vm = __vm_create_with_vcpus(shape, NR_VCPUS, pc->npages, guest_code,
					pc->vcpus);
	if (huge)
		flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
	if (!pc->private)
		flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
	pc->fd = __gmem_create_huge(pc->vm, pc->size, flags,
				    huge ? variant->page_shift : 0);
	TEST_ASSERT(pc->fd >= 0, "creating the guest_memfd failed, errno %d", errno);
	pc->mem = kvm_mmap(pc->size, PROT_READ | PROT_WRITE, MAP_SHARED, pc->fd);
	vm_set_user_memory_region2(pc->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, pc->size, pc->mem, pc->fd, 0);
	level = pc->size % SZ_1G == 0 ? PG_LEVEL_1G : PG_LEVEL_2M;
	virt_map_level(pc->vm, DATA_GPA, DATA_GPA, pc->size, level);

	pc->bitmap = alloc_bitmap(pc->npages);
	pc->claimed = calloc(pc->npages, 1);
	TEST_ASSERT(pc->claimed, "no memory for the claims");

	data_size = pc->size;
	seed = pc->seed;
	sync_global_to_guest(pc->vm, data_size);
	sync_global_to_guest(pc->vm, seed);
	for (i = 0; i < NR_VCPUS; i++)
		vcpu_args_set(pc->vcpus[i], 1, i);
}

FIXTURE_TEARDOWN(postcopy)
{
	struct postcopy *pc = &self->pc;

	kvm_vm_free(pc->vm);
	kvm_munmap(pc->mem, pc->size);
	close(pc->fd);
	free_bitmap(pc->bitmap, pc->npages);
	free(pc->claimed);
	/* A huge page with a poisoned page goes back to the pool by a work. */
	wait_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

/* The data's mappings: all of it at @page_size, with the VM's own 4K ones. */
static void assert_data_mapped_at(struct kvm_vm *vm, u64 size, u64 page_size)
{
	assert_stage2_mappings(vm, page_size == SZ_1G ? size / SZ_1G : 0,
			       page_size == SZ_2M ? size / SZ_2M : 0,
			       page_size == PAGE_SIZE ? size / PAGE_SIZE : 0,
			       true);
}

/*
 * Every page but @missing (pc->npages: none) arrives before the VM runs on the
 * destination, then the memslot gets KVM_MEM_USERFAULT with the bitmap.
 */
static void set_flag_after_arrival(struct postcopy *pc, u64 missing)
{
	u64 page;

	for (page = 0; page < pc->npages; page++)
		if (page != missing)
			receive_page(pc, page);
	TEST_ASSERT_EQ(__set_region(pc->vm, KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
				    pc->size, pc->mem, pc->fd, 0, pc->bitmap), 0);
}

TEST_F_TIMEOUT(postcopy, demand_paging_maps_arrived_ranges_huge,
	       GMEM_TEST_TIMEOUT)
{
	struct postcopy *pc = &self->pc;
	u64 pages_4k, flags = KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT;
	struct vcpu_thread threads[NR_VCPUS];
	pthread_t receiver;

	/* The VM runs from its memory on the source... */
	run_phase(pc, PHASE_TOUCH, threads);
	assert_data_mapped_at(pc->vm, pc->size, self->page_size);
	pages_4k = vm_get_stat(pc->vm, pages_4k);

	/* ...and starts on the destination with none of it: the flag zaps. */
	TEST_ASSERT_EQ(__set_region(pc->vm, flags, pc->size, pc->mem, pc->fd, 0,
				    pc->bitmap), 0);
	assert_stage2_mappings(pc->vm, 0, 0, 0, true);
	if (self->page_size == PAGE_SIZE)
		TEST_ASSERT(vm_get_stat(pc->vm, pages_4k) <= pages_4k - pc->npages,
			    "setting the flag left %lu 4K mappings of %lu",
			    vm_get_stat(pc->vm, pages_4k), pages_4k);

	pthread_create(&receiver, NULL, receive_all, pc);
	run_phase(pc, PHASE_VERIFY, threads);
	pthread_join(receiver, NULL);
	pr_info("%lu pages received, %lu userfault exits\n", pc->received,
		pc->exits);
	TEST_ASSERT_EQ(pc->received, pc->npages);

	/*
	 * Each range's last page to arrive was faulted on after it arrived:
	 * that fault mapped the range at its huge page size, flag still set.
	 */
	assert_data_mapped_at(pc->vm, pc->size, self->page_size);

	/* Post-copy is over: clearing the flag maps nothing anew. */
	TEST_ASSERT_EQ(__set_region(pc->vm, KVM_MEM_GUEST_MEMFD, pc->size,
				    pc->mem, pc->fd, 0, NULL), 0);
	pc->exits = 0;
	run_phase(pc, PHASE_VERIFY, threads);
	TEST_ASSERT_EQ(pc->exits, 0);
	assert_data_mapped_at(pc->vm, pc->size, self->page_size);
}

/*
 * A page that has not arrived keeps only its own ranges at 4K: while one is
 * missing, the vCPUs that read the rest of its huge page map it at 2M.  When it
 * arrives, the fault on it maps the whole huge page, over those mappings.
 */
TEST_F_TIMEOUT(postcopy, missing_page_limits_only_its_ranges,
	       GMEM_TEST_TIMEOUT)
{
	struct postcopy *pc = &self->pc;
	u64 nr_2m = pc->size / SZ_2M, nr_1g = pc->size / SZ_1G;
	/* The fourth page of the third vCPU's quarter. */
	u64 missing = 2 * pc->npages / NR_VCPUS + 3;
	struct vcpu_thread threads[NR_VCPUS];
	int i;

	set_flag_after_arrival(pc, missing);

	/* The third vCPU stops at the missing page; the others finish. */
	pc->stop_on_userfault = true;
	run_phase(pc, PHASE_VERIFY, threads);
	TEST_ASSERT_EQ(pc->exits, 1);
	for (i = 0; i < NR_VCPUS; i++)
		TEST_ASSERT_EQ(threads[i].stopped_at,
			       i == 2 ? DATA_GPA + missing * PAGE_SIZE : 0);
	if (self->page_size > PAGE_SIZE)
		assert_stage2_mappings(pc->vm, 0, nr_2m / NR_VCPUS * 3, 3, true);

	receive_page(pc, missing);
	pc->stop_on_userfault = false;
	vcpu_run_phase(&threads[2]);
	TEST_ASSERT_EQ(pc->exits, 1);
	if (self->page_size == SZ_1G)
		assert_stage2_mappings(pc->vm, nr_1g, 0, 0, true);
	else if (self->page_size == SZ_2M)
		assert_stage2_mappings(pc->vm, 0, nr_2m, 0, true);
}

/*
 * With kvm.userfault_huge_mappings=0, the proposal's behaviour: while the flag
 * is set the memslot maps at 4K, even where all pages have arrived.  Clearing
 * the flag ends post-copy and maps the memory huge again.
 */
TEST_F_TIMEOUT(postcopy, knob_off_maps_at_4k_only, GMEM_TEST_TIMEOUT)
{
	struct postcopy *pc = &self->pc;
	struct vcpu_thread threads[NR_VCPUS];
	bool huge;

	set_flag_after_arrival(pc, pc->npages);

	huge = set_userfault_huge_mappings(false);
	run_phase(pc, PHASE_VERIFY, threads);
	set_userfault_huge_mappings(huge);
	TEST_ASSERT_EQ(pc->exits, 0);
	assert_stage2_mappings(pc->vm, 0, 0, pc->npages, true);

	TEST_ASSERT_EQ(__set_region(pc->vm, KVM_MEM_GUEST_MEMFD, pc->size,
				    pc->mem, pc->fd, 0, NULL), 0);
	assert_data_mapped_at(pc->vm, pc->size, self->page_size);
}

/*
 * A page poisoned during post-copy keeps its huge page at 4K when post-copy
 * ends: recovering huge mappings asks guest_memfd the order of each page
 * outside a fault (kvm_gmem_max_mapping_order()), which, as a fault does,
 * answers 4K for a folio with a poisoned page.  It answered the folio's order
 * before, and the recovery mapped the poisoned page at 2M with its
 * neighbours.  A shared 2M page is poisoned here (through the host's mapping,
 * MADV_HWPOISON); a poisoned 1G page would be lost to the boot.
 */
TEST_F_TIMEOUT(postcopy, recovery_keeps_a_poisoned_huge_page_at_4k,
	       GMEM_TEST_TIMEOUT)
{
	struct postcopy *pc = &self->pc;
	struct vcpu_thread threads[NR_VCPUS];
	u64 poisoned = pc->npages / 2 + 5;
	bool huge;

	if (self->page_size != SZ_2M || pc->private)
		SKIP(return, "the shared 2M variant poisons a page for all");

	set_flag_after_arrival(pc, pc->npages);

	/* Mapped at 4K while the flag is set, as the proposal maps. */
	huge = set_userfault_huge_mappings(false);
	run_phase(pc, PHASE_VERIFY, threads);

	/* Memory failure zaps the mappings of the page's huge page. */
	TEST_ASSERT(madvise(&pc->mem[poisoned * PAGE_SIZE / sizeof(u64)],
			    PAGE_SIZE, MADV_HWPOISON) && errno == EBUSY,
		    "MADV_HWPOISON: errno %d", errno);
	skip_page = poisoned;
	sync_global_to_guest(pc->vm, skip_page);
	run_phase(pc, PHASE_VERIFY, threads);
	set_userfault_huge_mappings(huge);
	TEST_ASSERT_EQ(pc->exits, 0);
	assert_stage2_mappings(pc->vm, 0, 0, pc->npages - 1, true);

	/* Post-copy ends: every huge page but the poisoned one maps at 2M. */
	TEST_ASSERT_EQ(__set_region(pc->vm, KVM_MEM_GUEST_MEMFD, pc->size,
				    pc->mem, pc->fd, 0, NULL), 0);
	assert_stage2_mappings(pc->vm, 0, pc->size / SZ_2M - 1,
			       SZ_2M / PAGE_SIZE - 1, true);
}

/*
 * Bad inputs get their errno and change nothing: a memslot that could not be
 * created does not exist, and one that could not be changed keeps its flags.
 * A bitmap that is gone when a vCPU faults fails KVM_RUN with EFAULT.
 */
TEST(bad_inputs)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	u64 size = SZ_2M, npages = size / PAGE_SIZE, buf[PAGE_SIZE / 8] = {};
	u32 gmem = KVM_MEM_GUEST_MEMFD, uf = KVM_MEM_USERFAULT;
	struct kvm_userspace_memory_region v1 = {
		.slot = DATA_SLOT, .flags = uf, .guest_phys_addr = DATA_GPA,
		.memory_size = size,
	};
	struct hugetlb_pools pools;
	unsigned long *bitmap;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	void *mem, *anon;
	int fd, fd2;

	TEST_REQUIRE(vm_type_supported(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_USERFAULT));
	read_hugetlb_pools(&pools);

	vm = __vm_create_shape_with_one_vcpu(shape, &vcpu, npages, guest_code);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_USERFAULT), 1);
	fd = __gmem_create_huge(vm, size, GUEST_MEMFD_FLAG_MMAP, 0);
	fd2 = __gmem_create_huge(vm, size, GUEST_MEMFD_FLAG_MMAP, 0);
	TEST_ASSERT(fd >= 0 && fd2 >= 0, "creating the guest_memfds failed");
	mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	anon = kvm_mmap(size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1);
	bitmap = alloc_bitmap(npages);

	/* Creation: no bitmap, a misaligned one, one outside user memory. */
	errno = 0;
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, 0, NULL), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, 0,
				    (char *)bitmap + 4), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, 0,
				    (void *)0xffff888000000000ull), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	/* A read-only memslot (ROM) cannot have it; nor the old ioctl. */
	TEST_ASSERT_EQ(__set_region(vm, KVM_MEM_READONLY | uf, size, anon, -1, 0,
				    bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	v1.userspace_addr = (u64)anon;
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_SET_USER_MEMORY_REGION, &v1), -1);
	TEST_ASSERT_EQ(errno, EINVAL);

	/* None of them created the memslot. */
	TEST_ASSERT_EQ(__set_region(vm, gmem, size, mem, fd, 0, NULL), 0);
	virt_map_level(vm, DATA_GPA, DATA_GPA, size, PG_LEVEL_2M);

	/*
	 * Re-issued unchanged, a guest_memfd memslot is refused, as in
	 * mainline; the first pad2 word means nothing without the flag.
	 */
	TEST_ASSERT_EQ(__set_region(vm, gmem, size, mem, fd, 0, NULL), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__set_region(vm, gmem, size, mem, fd, 0, bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);

	/* A change of a guest_memfd memslot: the flag only, on its own file. */
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd2, 0, bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, PAGE_SIZE,
				    bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf | KVM_MEM_LOG_DIRTY_PAGES, size,
				    mem, fd, 0, bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);

	/* Still no flag: the guest reads all of it, its bits all set, no exit. */
	data_size = size;
	phase = PHASE_TOUCH;
	sync_global_to_guest(vm, data_size);
	sync_global_to_guest(vm, phase);
	vcpu_args_set(vcpu, 1, 0);
	vcpu_run(vcpu);
	TEST_ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_SYNC);

	/* pwrite() of part of a page, or past the end of the file. */
	TEST_ASSERT_EQ(pwrite(fd, buf, PAGE_SIZE, 8), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(pwrite(fd, buf, 8, 0), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(pwrite(fd, buf, PAGE_SIZE, size), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	/* From a page no one maps (below mmap_min_addr). */
	TEST_ASSERT_EQ(pwrite(fd, (void *)PAGE_SIZE, PAGE_SIZE, 0), -1);
	TEST_ASSERT_EQ(errno, EFAULT);

	/* The flag on the live memslot (once: then it is no change)... */
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, 0, bitmap), 0);
	TEST_ASSERT_EQ(__set_region(vm, gmem | uf, size, mem, fd, 0, bitmap), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	/* ...and the first page exits... */
	TEST_ASSERT_EQ(_vcpu_run(vcpu), -1);
	TEST_ASSERT_EQ(errno, EFAULT);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MEMORY_FAULT);
	TEST_ASSERT_EQ(vcpu->run->memory_fault.flags,
		       KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE);
	TEST_ASSERT_EQ(vcpu->run->memory_fault.gpa, DATA_GPA);
	TEST_ASSERT_EQ(vcpu->run->memory_fault.size, PAGE_SIZE);

	/* ...then the bitmap goes away: EFAULT, and no memory fault exit. */
	free_bitmap(bitmap, npages);
	TEST_ASSERT_EQ(_vcpu_run(vcpu), -1);
	TEST_ASSERT_EQ(errno, EFAULT);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_UNKNOWN);

	kvm_vm_free(vm);
	kvm_munmap(mem, size);
	kvm_munmap(anon, size);
	close(fd);
	close(fd2);
	assert_hugetlb_pools(&pools, 0, 0, 0);
}

TEST_HARNESS_MAIN
