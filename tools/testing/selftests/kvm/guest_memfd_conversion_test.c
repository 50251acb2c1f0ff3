// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-place conversion of guest_memfd between shared and private: the
 * KVM_SET_MEMORY_ATTRIBUTES2 ioctl on the file, in a software-protected VM,
 * for an order-0 file (the baseline) and files of 2M and 1G hugetlb pages.
 *
 * The guest and the host take turns on the same pages: what one wrote before
 * a conversion, the other reads after it.  The host can map shared pages only;
 * a private page gets it SIGBUS and cannot be pinned.  KVM maps the largest
 * aligned block whose shareability is uniform, so the binary stats show
 * exactly how many mappings of each level a touch of the whole region makes.
 * A bad request fails with its errno and changes nothing (fdinfo reports the
 * file's shareability), a page the host still holds makes conversion to
 * private fail with EAGAIN at that page, and the hugetlb pools are exact
 * after every test.
 */
#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define PRIVATE		KVM_MEMORY_ATTRIBUTE_PRIVATE

/* What the guest does when it is next run: one command over a range. */
enum guest_op {
	OP_NOP,
	OP_WRITE,	/* write each page's tag */
	OP_CHECK,	/* assert each page holds its tag */
	OP_TOUCH,	/* read each page */
	OP_CHECK_LOOP,	/* OP_CHECK, until the host clears @loop */
};

struct guest_cmd {
	u64 op;
	u64 offset;	/* into the data region */
	u64 size;
	u64 tag;
	u64 loop;
};

static struct guest_cmd cmd;

/* The first 8 bytes of the page at @offset, written under @tag. */
static u64 page_tag(u64 offset, u64 tag)
{
	return (offset * 0x9e3779b97f4a7c15ull) ^ tag;
}

static void guest_code(void)
{
	u64 off, end;

	for (;;) {
		GUEST_SYNC(0);
		end = cmd.offset + cmd.size;
		do {
			for (off = cmd.offset; off < end; off += PAGE_SIZE) {
				u64 *p = (u64 *)(DATA_GPA + off);

				switch (cmd.op) {
				case OP_WRITE:
					WRITE_ONCE(*p, page_tag(off, cmd.tag));
					break;
				case OP_CHECK:
				case OP_CHECK_LOOP:
					GUEST_ASSERT_EQ(READ_ONCE(*p), page_tag(off, cmd.tag));
					break;
				case OP_TOUCH:
					(void)READ_ONCE(*p);
					break;
				}
			}
		} while (cmd.op == OP_CHECK_LOOP && READ_ONCE(cmd.loop));
	}
}

/* Run until the guest asks for its next command, letting KVM's races pass. */
static void vcpu_run_to_sync(struct kvm_vcpu *vcpu)
{
	struct ucall uc;
	int r = vcpu_run_past_memory_faults(vcpu);

	TEST_ASSERT(!r, "KVM_RUN failed, errno %d, exit reason %u", errno,
		    vcpu->run->exit_reason);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

static void guest_do(struct kvm_vcpu *vcpu, enum guest_op op, u64 offset,
		     u64 size, u64 tag)
{
	cmd = (struct guest_cmd) {
		.op = op, .offset = offset, .size = size, .tag = tag,
	};
	sync_global_to_guest(vcpu->vm, cmd);
	vcpu_run_to_sync(vcpu);
}

/* What /proc/self/fdinfo/<fd> says about a guest_memfd. */
struct gmem_fdinfo {
	u64 flags;
	u64 page_size;
	u64 private_pages;
	u64 shared_pages;
	u64 shareability_ranges;
	u64 huge_folios;		/* whole: hugetlb folios */
	u64 split_huge_pages;
	u64 split_vmemmap_bytes;	/* struct page memory the splits restored */
	u64 unmerged_huge_pages;	/* split, though all private again */
	u64 unmerged_vmemmap_bytes;	/* what their merges will give back */
	char folio_orders[128];		/* "order:count ..." from the largest */
};

/* Parse the guest_memfd lines of /proc/self/fdinfo/@fd. */
static void read_gmem_fdinfo(int fd, struct gmem_fdinfo *info)
{
	static const struct {
		const char *key;
		size_t offset;
	} fields[] = {
		{ "gmem_flags:", offsetof(struct gmem_fdinfo, flags) },
		{ "gmem_page_size:", offsetof(struct gmem_fdinfo, page_size) },
		{ "gmem_private_pages:", offsetof(struct gmem_fdinfo, private_pages) },
		{ "gmem_shared_pages:", offsetof(struct gmem_fdinfo, shared_pages) },
		{ "gmem_shareability_ranges:", offsetof(struct gmem_fdinfo, shareability_ranges) },
		{ "gmem_huge_folios:", offsetof(struct gmem_fdinfo, huge_folios) },
		{ "gmem_split_huge_pages:", offsetof(struct gmem_fdinfo, split_huge_pages) },
		{ "gmem_split_vmemmap_bytes:", offsetof(struct gmem_fdinfo, split_vmemmap_bytes) },
		{ "gmem_unmerged_huge_pages:", offsetof(struct gmem_fdinfo, unmerged_huge_pages) },
		{ "gmem_unmerged_vmemmap_bytes:",
		  offsetof(struct gmem_fdinfo, unmerged_vmemmap_bytes) },
	};
	char path[64], key[64], line[256];
	unsigned long long val;
	int i, found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	memset(info, 0, sizeof(*info));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "gmem_folio_orders: %127[0-9: ]", info->folio_orders) == 1)
			continue;
		if (sscanf(line, "%63s %lli", key, &val) != 2)
			continue;
		for (i = 0; i < ARRAY_SIZE(fields); i++) {
			if (strcmp(key, fields[i].key))
				continue;
			*(u64 *)((char *)info + fields[i].offset) = val;
			found++;
		}
	}
	fclose(f);
	TEST_ASSERT_EQ(found, ARRAY_SIZE(fields));
}

/* A request with every field given (bad ones included). */
static int __convert(int fd, struct kvm_memory_attributes2 *args)
{
	return ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, args);
}

static void convert(int fd, u64 offset, u64 size, u64 attributes)
{
	int r;

	/* A fault in flight holds an order-0 page for a moment: retry. */
	do {
		if (attributes & PRIVATE)
			r = __gmem_set_private(fd, offset, size, NULL);
		else
			r = __gmem_set_shared(fd, offset, size, NULL);
	} while (r && errno == EAGAIN);
	TEST_ASSERT(!r, "converting [%#lx, +%#lx) to %s failed, errno %d",
		    offset, size, attributes ? "private" : "shared", errno);
}

static sigjmp_buf sigbus_jmp;

static void sigbus_handler(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/* Whether reading @p from the host gets SIGBUS. */
static bool host_read_faults(u64 *p)
{
	struct sigaction sa = { .sa_handler = sigbus_handler }, old;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1)) {
		sigaction(SIGBUS, &old, NULL);
		return true;
	}
	(void)READ_ONCE(*p);
	sigaction(SIGBUS, &old, NULL);
	return false;
}

static bool vm_type_supported(unsigned long vm_type)
{
	return kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(vm_type);
}

static void assert_shareability(int fd, u64 private_pages, u64 shared_pages,
				u64 ranges);

/* The ABI is mainline's: a binary built against its header talks to ours. */
static_assert(KVM_SET_MEMORY_ATTRIBUTES2 ==
	      _IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2));
static_assert(sizeof(struct kvm_memory_attributes2) == 16 * sizeof(__u64));
static_assert(offsetof(struct kvm_memory_attributes2, address) == 0 &&
	      offsetof(struct kvm_memory_attributes2, offset) == 0 &&
	      offsetof(struct kvm_memory_attributes2, error_offset) == 32);
static_assert(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES == 252);
static_assert(KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES == 253);

/* kvm.gmem_in_place_conversion, which the test VM's command line sets. */
static bool in_place_conversion_param(void)
{
	char c = 'N';
	FILE *f = fopen("/sys/module/kvm/parameters/gmem_in_place_conversion", "r");

	TEST_ASSERT(f, "no kvm.gmem_in_place_conversion parameter");
	TEST_ASSERT_EQ(fread(&c, 1, 1, f), 1);
	fclose(f);
	return c == 'Y';
}

/*
 * Which attributes a VM takes, and where: with kvm.gmem_in_place_conversion,
 * a software-protected VM converts its guest_memfd files in place (files the
 * host can map; they may start shared) and refuses the VM-wide ioctl, which
 * would otherwise be a silent no-op; without it, the VM-wide attributes are
 * the only ones, as before in-place conversion.  A default VM never converts.
 */
TEST(conversion_support)
{
	struct kvm_memory_attributes vm_attrs = { .size = PAGE_SIZE };
	bool in_place = in_place_conversion_param();
	struct kvm_vm *vm;
	int fd;

	TEST_REQUIRE(vm_type_supported(KVM_X86_SW_PROTECTED_VM));
	TEST_ASSERT_EQ(kvm_check_cap(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES),
		       in_place ? PRIVATE : 0);
	TEST_ASSERT_EQ(kvm_has_gmem_attributes, in_place);

	vm = vm_create_barebones();
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES), 0);
	fd = vm_create_guest_memfd(vm, SZ_2M, GUEST_MEMFD_FLAG_MMAP |
				   GUEST_MEMFD_FLAG_INIT_SHARED);
	TEST_ASSERT(__gmem_set_private(fd, 0, PAGE_SIZE, NULL) && errno == EOPNOTSUPP,
		    "a default VM's guest_memfd must not convert, errno %d", errno);
	close(fd);
	kvm_vm_free(vm);

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES),
		       in_place ? PRIVATE : 0);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_MEMORY_ATTRIBUTES),
		       in_place ? 0 : PRIVATE);

	/* VM-wide attributes: the only ones, or refused whatever they are. */
	for (vm_attrs.attributes = 0; vm_attrs.attributes <= PRIVATE;
	     vm_attrs.attributes += PRIVATE) {
		int r = __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &vm_attrs);

		if (in_place)
			TEST_ASSERT(r == -1 && errno == EINVAL,
				    "KVM_SET_MEMORY_ATTRIBUTES %#llx: %d, errno %d",
				    vm_attrs.attributes, r, errno);
		else
			TEST_ASSERT_EQ(r, 0);
	}

	/* INIT_SHARED: only where the file keeps the shareability. */
	fd = __vm_create_guest_memfd(vm, SZ_2M, GUEST_MEMFD_FLAG_MMAP |
				     GUEST_MEMFD_FLAG_INIT_SHARED);
	if (in_place) {
		TEST_ASSERT(fd >= 0, "INIT_SHARED refused, errno %d", errno);
		assert_shareability(fd, 0, SZ_2M / PAGE_SIZE, 1);
		gmem_set_private(fd, 0, SZ_2M);
		assert_shareability(fd, SZ_2M / PAGE_SIZE, 0, 1);
		close(fd);
	} else {
		TEST_ASSERT(fd == -1 && errno == EINVAL,
			    "INIT_SHARED without in-place conversion: %d, errno %d",
			    fd, errno);
	}

	/* Without GUEST_MEMFD_FLAG_MMAP, shared memory lives elsewhere. */
	fd = vm_create_guest_memfd(vm, SZ_2M, 0);
	TEST_ASSERT(__gmem_set_shared(fd, 0, PAGE_SIZE, NULL) && errno == EOPNOTSUPP,
		    "a guest_memfd without mmap must not convert, errno %d", errno);
	close(fd);

	fd = vm_create_guest_memfd(vm, SZ_2M, GUEST_MEMFD_FLAG_MMAP);
	if (in_place) {
		gmem_set_shared(fd, 0, PAGE_SIZE);
		assert_shareability(fd, SZ_2M / PAGE_SIZE - 1, 1, 2);
	} else {
		TEST_ASSERT(__gmem_set_shared(fd, 0, PAGE_SIZE, NULL) &&
			    errno == EOPNOTSUPP,
			    "converted without in-place conversion, errno %d", errno);
	}
	close(fd);
	kvm_vm_free(vm);
}

FIXTURE(conv) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct hugetlb_pools pools_before;
	u64 size, page_size;
	u64 *mem;	/* the host's mapping of the whole file */
	int fd;
};

FIXTURE_VARIANT(conv) {
	unsigned int page_shift;
	u64 size;
};

FIXTURE_VARIANT_ADD(conv, page_4k) {
	.page_shift = 12,
	.size = SZ_4M,
};

FIXTURE_VARIANT_ADD(conv, page_2m) {
	.page_shift = 21,
	.size = SZ_8M,
};

FIXTURE_VARIANT_ADD(conv, page_1g) {
	.page_shift = 30,
	.size = SZ_1G,
};

FIXTURE_SETUP(conv)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	bool huge = variant->page_shift > 12;
	u64 flags = GUEST_MEMFD_FLAG_MMAP;
	int level;

	TEST_REQUIRE(vm_type_supported(KVM_X86_SW_PROTECTED_VM));

	/* No THP: every huge stage-2 mapping in the stats is guest_memfd's. */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	self->size = variant->size;
	self->page_size = 1ull << variant->page_shift;
	read_hugetlb_pools(&self->pools_before);

	self->vm = __vm_create_shape_with_one_vcpu(shape, &self->vcpu,
						   self->size / PAGE_SIZE, guest_code);
	if (huge)
		flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
	self->fd = __gmem_create_huge(self->vm, self->size, flags,
				      huge ? variant->page_shift : 0);
	TEST_ASSERT(self->fd >= 0, "creating the guest_memfd failed, errno %d", errno);

	/*
	 * The memslot's userspace address is the file's own mapping: KVM
	 * reads guest memory through it itself, e.g. when it emulates.
	 */
	self->mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			     self->fd);
	vm_set_user_memory_region2(self->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, self->size, self->mem, self->fd, 0);
	/* Big guest pages: no guest page table pages to fault in on the way. */
	level = self->size % SZ_1G == 0 ? PG_LEVEL_1G : PG_LEVEL_2M;
	virt_map_level(self->vm, DATA_GPA, DATA_GPA, self->size, level);

	/* To the guest's command loop. */
	vcpu_run_to_sync(self->vcpu);
}

/* The file and the VM, unless the test closed them itself. */
static void conv_close(FIXTURE_DATA(conv) * self)
{
	if (!self->vm)
		return;
	kvm_munmap(self->mem, self->size);
	close(self->fd);
	kvm_vm_free(self->vm);
	self->vm = NULL;
}

FIXTURE_TEARDOWN(conv)
{
	conv_close(self);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

#define host_page(self, offset)	(&(self)->mem[(offset) / sizeof(u64)])

static void assert_shareability(int fd, u64 private_pages, u64 shared_pages,
				u64 ranges)
{
	struct gmem_fdinfo info;

	read_gmem_fdinfo(fd, &info);
	TEST_ASSERT(info.private_pages == private_pages &&
		    info.shared_pages == shared_pages &&
		    info.shareability_ranges == ranges,
		    "fdinfo: %lu private, %lu shared pages in %lu ranges; expected %lu, %lu in %lu",
		    info.private_pages, info.shared_pages, info.shareability_ranges,
		    private_pages, shared_pages, ranges);
}

/*
 * Where a few pages straddle the middle of the first huge page (or of the
 * file, if it has no huge pages).
 */
static u64 middle_offset(u64 file_size, u64 page_size)
{
	u64 unit = page_size > PAGE_SIZE ? page_size : file_size;

	return unit / 2 - 3 * PAGE_SIZE;
}

/*
 * Private pages are the guest's: the host gets SIGBUS.  Converted to shared,
 * the host reads what the guest wrote; converted back, the guest reads what
 * the host wrote.  Nothing outside the range changes.
 */
TEST_F_TIMEOUT(conv, contents_survive_conversion, GMEM_TEST_TIMEOUT)
{
	u64 npages = self->size / PAGE_SIZE, off;
	u64 start = middle_offset(self->size, self->page_size), len = 5 * PAGE_SIZE;

	assert_shareability(self->fd, npages, 0, 1);
	guest_do(self->vcpu, OP_WRITE, 0, self->size, 1);
	TEST_ASSERT(host_read_faults(host_page(self, start)),
		    "the host read a private page");

	convert(self->fd, start, len, 0);
	assert_shareability(self->fd, npages - 5, 5, 3);
	for (off = start; off < start + len; off += PAGE_SIZE) {
		TEST_ASSERT_EQ(*host_page(self, off), page_tag(off, 1));
		*host_page(self, off) = page_tag(off, 2);
	}
	TEST_ASSERT(host_read_faults(host_page(self, start - PAGE_SIZE)),
		    "the host read the private page before the range");
	TEST_ASSERT(host_read_faults(host_page(self, start + len)),
		    "the host read the private page after the range");

	/* The guest sees the host's bytes while shared, and after. */
	guest_do(self->vcpu, OP_CHECK, start, len, 2);
	convert(self->fd, start, len, PRIVATE);
	assert_shareability(self->fd, npages, 0, 1);
	TEST_ASSERT(host_read_faults(host_page(self, start)),
		    "the host read a page converted back to private");
	guest_do(self->vcpu, OP_CHECK, 0, start, 1);
	guest_do(self->vcpu, OP_CHECK, start, len, 2);
	guest_do(self->vcpu, OP_CHECK, start + len, self->size - start - len, 1);
}

/*
 * A memslot only guest_memfd backs takes its shareability from the file, so
 * while the memslot is gone the guest's access is MMIO (KVM caches that in
 * an MMIO SPTE), and once it is back the same access is private again: the
 * guest reads its own bytes on the first run, without a memory-fault exit
 * (before the fix, the stale MMIO SPTE made every run exit, asking for a
 * conversion to shared the guest never requested).
 */
TEST_F_TIMEOUT(conv, memslot_comes_back_private, GMEM_TEST_TIMEOUT)
{
	struct kvm_run *run = self->vcpu->run;
	struct ucall uc;

	guest_do(self->vcpu, OP_WRITE, 0, PAGE_SIZE, 3);

	vm_set_user_memory_region2(self->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, 0, NULL, self->fd, 0);
	cmd = (struct guest_cmd) { .op = OP_TOUCH, .size = PAGE_SIZE };
	sync_global_to_guest(self->vm, cmd);
	vcpu_run(self->vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_MMIO);
	TEST_ASSERT_EQ(run->mmio.phys_addr, DATA_GPA);
	TEST_ASSERT(!run->mmio.is_write, "the guest's read became a write");
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	vcpu_run_to_sync(self->vcpu);

	vm_set_user_memory_region2(self->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, self->size, self->mem, self->fd, 0);
	cmd = (struct guest_cmd) { .op = OP_CHECK, .size = PAGE_SIZE, .tag = 3 };
	sync_global_to_guest(self->vm, cmd);
	TEST_ASSERT(!_vcpu_run(self->vcpu), "KVM_RUN: errno %d, exit reason %u",
		    errno, run->exit_reason);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(get_ucall(self->vcpu, &uc), UCALL_SYNC);
	assert_shareability(self->fd, self->size / PAGE_SIZE, 0, 1);
}

/*
 * The file's shareability is kept as maximal uniform ranges: conversions at
 * the first and last page, adjacent and overlapping ones, and of the whole
 * file split and merge them, and fdinfo counts them exactly.
 */
TEST_F_TIMEOUT(conv, shareability_ranges_split_and_merge, GMEM_TEST_TIMEOUT)
{
	const u64 n = self->size / PAGE_SIZE, last = (n - 1) * PAGE_SIZE;
	const u64 pg = PAGE_SIZE;

	convert(self->fd, 0, pg, 0);			/* S P */
	assert_shareability(self->fd, n - 1, 1, 2);
	convert(self->fd, last, pg, 0);			/* S P S */
	assert_shareability(self->fd, n - 2, 2, 3);
	convert(self->fd, 2 * pg, pg, 0);		/* S P S P S */
	assert_shareability(self->fd, n - 3, 3, 5);
	convert(self->fd, pg, pg, 0);			/* S P S: 0-2 merge */
	assert_shareability(self->fd, n - 4, 4, 3);
	convert(self->fd, pg, 3 * pg, PRIVATE);		/* overlaps 1-2 */
	assert_shareability(self->fd, n - 2, 2, 3);
	convert(self->fd, 4 * pg, 2 * pg, 0);		/* S P S P S */
	convert(self->fd, 6 * pg, 2 * pg, 0);		/* adjacent: 4-7 */
	assert_shareability(self->fd, n - 6, 6, 5);
	convert(self->fd, 5 * pg, 5 * pg, PRIVATE);	/* S P S P S */
	assert_shareability(self->fd, n - 3, 3, 5);
	convert(self->fd, 0, self->size, 0);
	assert_shareability(self->fd, 0, n, 1);
	convert(self->fd, 0, self->size, PRIVATE);
	assert_shareability(self->fd, n, 0, 1);
}

/*
 * The folios of a huge-page file, by order from the largest ("9:3 0:512 "),
 * the huge pages split and the struct page memory their splits restored: a
 * merge that a reference blocked is retried shortly, so wait for it.
 */
static void assert_folios(int fd, const char *orders, u64 split,
			  u64 vmemmap_bytes)
{
	unsigned int tries = gmem_poll_tries();
	struct gmem_fdinfo info;

	do {
		read_gmem_fdinfo(fd, &info);
		if (!strcmp(info.folio_orders, orders) &&
		    info.split_huge_pages == split)
			break;
		usleep(GMEM_POLL_MS * 1000);
	} while (--tries);

	pr_info("folio orders: %s, split huge pages: %lu, vmemmap restored: %lu bytes\n",
		info.folio_orders, info.split_huge_pages, info.split_vmemmap_bytes);
	TEST_ASSERT(!strcmp(info.folio_orders, orders),
		    "folio orders \"%s\", expected \"%s\"", info.folio_orders, orders);
	TEST_ASSERT_EQ(info.split_huge_pages, split);
	TEST_ASSERT_EQ(info.split_vmemmap_bytes, vmemmap_bytes);
}

/*
 * HVO keeps one page of struct pages per huge page; a split restores the rest
 * (64 bytes of struct page per 4K page).
 */
static u64 vmemmap_restored(u64 page_size)
{
	return page_size / PAGE_SIZE * 64 - PAGE_SIZE;
}

/*
 * What one 4K page made shared costs in struct pages: a 2M page's split
 * restores its vmemmap; a 1G page's gives each of its 2M pieces a vmemmap
 * page of its own (511 pages) and the mixed piece all of its own (7 more),
 * about 2 MiB, or, with guest_memfd_split.keep_hvo_on_split off, restores the
 * whole GiB's (4095 pages, 16 MiB).
 */
static u64 split_vmemmap_bytes(u64 page_size)
{
	if (page_size == SZ_1G && gmem_get_keep_hvo_on_split())
		return (SZ_1G / SZ_2M - 1) * PAGE_SIZE + vmemmap_restored(SZ_2M);
	return vmemmap_restored(page_size);
}

/*
 * One 4K page made shared in a huge page costs the huge mapping of its
 * smallest enclosing block only: the other blocks are mapped at the next
 * level down (511 2M mappings for a 1G page, plus 512 4K ones).  Made private
 * again, the whole huge page is mapped at its size again.  The huge page is
 * split only as far as that (511 2M folios and 512 4K ones for a 1G page) and
 * merged back, HVO and all.
 */
TEST_F_TIMEOUT(conv, mapping_levels_follow_shareability, GMEM_TEST_TIMEOUT)
{
	u64 nr_1g = 0, nr_2m = 0, base_4k, split_2m, split_4k;
	u64 page = self->size / 2 + 5 * PAGE_SIZE;
	char whole[32], split[32];

	/* The VM's own memory is mapped at 4K; count it once. */
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	base_4k = vm_get_stat(self->vm, pages_4k);
	switch (variant->page_shift) {
	case 30:
		nr_1g = self->size / SZ_1G;
		split_2m = SZ_1G / SZ_2M - 1;
		split_4k = base_4k + SZ_2M / PAGE_SIZE;
		break;
	case 21:
		nr_2m = self->size / SZ_2M;
		split_2m = nr_2m - 1;
		split_4k = base_4k + SZ_2M / PAGE_SIZE;
		break;
	default:
		split_2m = 0;
		split_4k = base_4k;
	}
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);
	if (variant->page_shift > 12) {
		snprintf(whole, sizeof(whole), "%u:%lu ", variant->page_shift - 12,
			 self->size / self->page_size);
		/* The other 2M blocks, then the 512 pages of the page's block. */
		snprintf(split, sizeof(split), "9:%lu 0:512 ",
			 self->size / SZ_2M - 1);
		assert_folios(self->fd, whole, 0, 0);
	}

	convert(self->fd, page, PAGE_SIZE, 0);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, 0, split_2m, split_4k, false);
	if (variant->page_shift > 12)
		assert_folios(self->fd, split, 1, split_vmemmap_bytes(self->page_size));

	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);
	if (variant->page_shift > 12)
		assert_folios(self->fd, whole, 0, 0);
}

/*
 * Made private again, a page loses its own mapping only: the rest of the huge
 * page stays mapped at the levels its mixed shape allowed (511 2M and 511 4K
 * mappings for a 1G page), and the guest's next touch of the page takes one
 * fault that maps the whole huge page at its size over them.  A conversion
 * that zapped the whole huge page instead would make every round trip of one
 * page walk all of its mappings.
 */
TEST_F_TIMEOUT(conv, private_again_maps_huge_at_first_fault, GMEM_TEST_TIMEOUT)
{
	u64 page = self->size / 2 + 5 * PAGE_SIZE;
	u64 nr_1g = 0, nr_2m = 0, mixed_2m = 0, mixed_4k = 0, base_4k, faults;

	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	base_4k = vm_get_stat(self->vm, pages_4k);
	if (variant->page_shift == 30)
		nr_1g = self->size / SZ_1G;
	else if (variant->page_shift == 21)
		nr_2m = self->size / SZ_2M;
	if (variant->page_shift > 12) {
		mixed_2m = self->size / SZ_2M - 1;
		mixed_4k = SZ_2M / PAGE_SIZE;
	}

	convert(self->fd, page, PAGE_SIZE, 0);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, 0, mixed_2m, base_4k + mixed_4k, false);

	/* Only the page's own mapping goes (order-0: the page's, as ever). */
	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	if (variant->page_shift > 12)
		assert_stage2_mappings(self->vm, 0, mixed_2m,
				       base_4k + mixed_4k - 1, false);
	else
		assert_stage2_mappings(self->vm, 0, 0, base_4k - 1, false);

	faults = vcpu_get_stat(self->vcpu, pf_fixed);
	guest_do(self->vcpu, OP_TOUCH, page, PAGE_SIZE, 0);
	TEST_ASSERT_EQ(vcpu_get_stat(self->vcpu, pf_fixed) - faults, 1);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);

	/* Nothing else of the huge page faults. */
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	TEST_ASSERT_EQ(vcpu_get_stat(self->vcpu, pf_fixed) - faults, 1);
}

/*
 * Converting one page inside a huge mapping zaps that page's mapping only:
 * KVM splits the huge mappings the conversion cuts, so the rest of the huge
 * page stays mapped (511 2M and 511 4K mappings for a 1G page) and a vCPU
 * that reads it all faults once, on the page, as over order-0 memory.  Before,
 * the zap took the whole huge mapping, and every page around faulted back.
 */
TEST_F_TIMEOUT(conv, conversion_leaves_the_rest_mapped, GMEM_TEST_TIMEOUT)
{
	u64 page = self->size / 2 + 5 * PAGE_SIZE;
	u64 mixed_2m = 0, mixed_4k = 0, base_4k, faults;

	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	base_4k = vm_get_stat(self->vm, pages_4k);
	if (variant->page_shift > 12) {
		mixed_2m = self->size / SZ_2M - 1;
		mixed_4k = SZ_2M / PAGE_SIZE;
	}

	convert(self->fd, page, PAGE_SIZE, 0);
	assert_stage2_mappings(self->vm, 0, mixed_2m, base_4k + mixed_4k - 1,
			       false);

	faults = vcpu_get_stat(self->vcpu, pf_fixed);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	TEST_ASSERT_EQ(vcpu_get_stat(self->vcpu, pf_fixed) - faults, 1);
	assert_stage2_mappings(self->vm, 0, mixed_2m, base_4k + mixed_4k, false);
	convert(self->fd, page, PAGE_SIZE, PRIVATE);
}

/* @n round trips of @page, the guest reading it each way. */
static void round_trips(FIXTURE_DATA(conv) * self, u64 page, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		convert(self->fd, page, PAGE_SIZE, 0);
		guest_do(self->vcpu, OP_TOUCH, page, PAGE_SIZE, 0);
		convert(self->fd, page, PAGE_SIZE, PRIVATE);
		guest_do(self->vcpu, OP_TOUCH, page, PAGE_SIZE, 0);
	}
}

/*
 * A huge page whose range is all private again stays split for
 * kvm.gmem_merge_delay_ms, while KVM maps it at its size over its pieces
 * (pages_1g is 1 again before any merge), so that round trips in the meantime
 * split nothing more; fdinfo shows the struct pages the wait holds.  Once it
 * is being toggled (a change in a row after a round trip), KVM maps it at its
 * pieces' sizes instead, unless kvm.gmem_toggled_changes is 0.  Memory
 * pressure (the shrinker: drop_caches here) merges at once, and KVM maps the
 * merged page whole again; a short delay merges on its own.  An order-0 file
 * has nothing to merge: it shows none.
 */
TEST_F_TIMEOUT(conv, deferred_merge_keeps_huge_mappings, GMEM_TEST_TIMEOUT)
{
	u64 page = self->size / 2 + 5 * PAGE_SIZE;
	u64 nr_1g = 0, nr_2m = 0, mixed_2m = 0, mixed_4k = 0, base_4k;
	u64 restored = 0;
	bool huge = variant->page_shift > 12;
	char whole[32] = "", split[32] = "";
	unsigned int old_delay, old_toggled;
	struct gmem_fdinfo info, again;
	long memmap;

	if (variant->page_shift == 30)
		nr_1g = self->size / SZ_1G;
	else if (variant->page_shift == 21)
		nr_2m = self->size / SZ_2M;
	if (huge) {
		snprintf(whole, sizeof(whole), "%u:%lu ", variant->page_shift - 12,
			 self->size / self->page_size);
		snprintf(split, sizeof(split), "9:%lu 0:512 ",
			 self->size / SZ_2M - 1);
		restored = split_vmemmap_bytes(self->page_size);
		mixed_2m = self->size / SZ_2M - 1;
		mixed_4k = SZ_2M / PAGE_SIZE;
	}

	old_delay = gmem_set_merge_delay_ms(60 * 1000);
	old_toggled = gmem_set_toggled_changes(0);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	base_4k = vm_get_stat(self->vm, pages_4k);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);
	memmap = read_vmstat("nr_memmap_pages");

	/* A round trip: split, private again, still split, mapped huge. */
	gmem_set_toggled_changes(old_toggled);
	convert(self->fd, page, PAGE_SIZE, 0);
	guest_do(self->vcpu, OP_TOUCH, page, PAGE_SIZE, 0);
	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);
	read_gmem_fdinfo(self->fd, &info);
	pr_info("unmerged: %lu huge pages, %lu bytes of struct pages; folios %s\n",
		info.unmerged_huge_pages, info.unmerged_vmemmap_bytes,
		info.folio_orders);
	TEST_ASSERT_EQ(info.split_huge_pages, huge);
	TEST_ASSERT_EQ(info.unmerged_huge_pages, huge);
	TEST_ASSERT_EQ(info.unmerged_vmemmap_bytes, restored);
	TEST_ASSERT_EQ(read_vmstat("nr_memmap_pages") - memmap,
		       restored / PAGE_SIZE);
	if (huge)
		TEST_ASSERT(!strcmp(info.folio_orders, split),
			    "folio orders \"%s\", expected \"%s\"",
			    info.folio_orders, split);

	/* More round trips, toggled now, mapped at the pieces' sizes. */
	round_trips(self, page, 16);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, 0, mixed_2m, base_4k + mixed_4k, false);

	/* Without the toggled state, over the pieces again: nothing split. */
	gmem_set_toggled_changes(0);
	round_trips(self, page, 16);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);
	gmem_set_toggled_changes(old_toggled);
	read_gmem_fdinfo(self->fd, &again);
	TEST_ASSERT(!memcmp(&info, &again, sizeof(info)),
		    "round trips changed the file: folios %s, %lu split",
		    again.folio_orders, again.split_huge_pages);

	/* Toggled again: its row of changes went on meanwhile. */
	round_trips(self, page, 1);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, 0, mixed_2m, base_4k + mixed_4k, false);

	/*
	 * Memory pressure merges without waiting out the delay, and KVM maps
	 * the merged page whole.
	 */
	drop_caches();
	if (huge)
		assert_folios(self->fd, whole, 0, 0);
	read_gmem_fdinfo(self->fd, &info);
	TEST_ASSERT_EQ(info.unmerged_huge_pages, 0);
	TEST_ASSERT_EQ(info.unmerged_vmemmap_bytes, 0);
	TEST_ASSERT_EQ(read_vmstat("nr_memmap_pages"), memmap);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, base_4k, false);

	/* A short delay merges on its own. */
	gmem_set_merge_delay_ms(100);
	convert(self->fd, page, PAGE_SIZE, 0);
	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	if (huge)
		assert_folios(self->fd, whole, 0, 0);
	TEST_ASSERT_EQ(read_vmstat("nr_memmap_pages"), memmap);
	gmem_set_merge_delay_ms(old_delay);
}

/*
 * The pages of struct pages in use: a vmemmap page allocated at boot (the
 * head of a 1G page that HVO optimised then) counts in nr_memmap_boot_pages,
 * and freeing it lowers that one.
 */
static long memmap_pages(void)
{
	return read_vmstat("nr_memmap_pages") + read_vmstat("nr_memmap_boot_pages");
}

/* The struct pages fdinfo and /proc/vmstat say the file's splits hold. */
static void assert_split_vmemmap(FIXTURE_DATA(conv) * self, long memmap,
				 u64 bytes)
{
	struct gmem_fdinfo info;

	read_gmem_fdinfo(self->fd, &info);
	TEST_ASSERT_EQ(info.split_vmemmap_bytes, bytes);
	TEST_ASSERT_EQ(memmap_pages() - memmap, bytes / PAGE_SIZE);
}

/*
 * A huge page that stays mixed (one 4K page of it shared for good, as a
 * shared ring would be) has nothing to merge, and the merge work leaves it
 * alone: KVM's mappings of it stay as they are, however often the work runs
 * (here at once, on memory pressure).
 */
TEST_F_TIMEOUT(conv, merge_work_leaves_mixed_page_mapped, GMEM_TEST_TIMEOUT)
{
	u64 page = self->size / 2 + 5 * PAGE_SIZE;
	u64 nr_1g, nr_2m, nr_4k;
	struct gmem_fdinfo info;
	unsigned int old_delay;

	/*
	 * The huge page allocated, two pages of it shared and one back: a
	 * merge is deferred, and the huge page is mixed.
	 */
	old_delay = gmem_set_merge_delay_ms(60 * 1000);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	convert(self->fd, page, 2 * PAGE_SIZE, 0);
	convert(self->fd, page + PAGE_SIZE, PAGE_SIZE, PRIVATE);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	nr_1g = vm_get_stat(self->vm, pages_1g);
	nr_2m = vm_get_stat(self->vm, pages_2m);
	nr_4k = vm_get_stat(self->vm, pages_4k);

	/* The shrinker runs the merge work now, over every split huge page. */
	drop_caches();
	usleep(500 * 1000);
	assert_stage2_mappings(self->vm, nr_1g, nr_2m, nr_4k, false);
	read_gmem_fdinfo(self->fd, &info);
	TEST_ASSERT_EQ(info.split_huge_pages, variant->page_shift > 12);
	gmem_set_merge_delay_ms(old_delay);
}

static void assert_convert_errno(int fd, const struct hugetlb_pools *pools,
				 struct kvm_memory_attributes2 *args, int err)
{
	struct gmem_fdinfo before, after;
	int r;

	read_gmem_fdinfo(fd, &before);
	r = __convert(fd, args);
	TEST_ASSERT(r && errno == err,
		    "offset %#llx size %#llx attributes %#llx flags %#llx: expected errno %d, got %d/%d",
		    args->offset, args->size, args->attributes, args->flags,
		    err, r, errno);
	read_gmem_fdinfo(fd, &after);
	TEST_ASSERT(!memcmp(&before, &after, sizeof(before)),
		    "a failed conversion changed the file's shareability");
	assert_hugetlb_pools(pools, 0, 0, 0);
}

/* Each bad request fails with EINVAL and changes nothing. */
TEST_F_TIMEOUT(conv, bad_requests_change_nothing, GMEM_TEST_TIMEOUT)
{
	const u64 size = self->size, start = middle_offset(self->size, self->page_size);
	const struct kvm_memory_attributes2 good = {
		.offset = start, .size = PAGE_SIZE, .attributes = PRIVATE,
	};
	const struct {
		const char *what;
		u64 offset, size, attributes, flags;
		int reserved;	/* index of a non-zero reserved word, or -1 */
	} bad[] = {
		{ "unaligned offset", start + 1, PAGE_SIZE, PRIVATE, 0, -1 },
		{ "half-page offset", start + PAGE_SIZE / 2, PAGE_SIZE, PRIVATE, 0, -1 },
		{ "unaligned size", start, PAGE_SIZE + 8, PRIVATE, 0, -1 },
		{ "zero size", start, 0, PRIVATE, 0, -1 },
		{ "starts at the end", size, PAGE_SIZE, PRIVATE, 0, -1 },
		{ "runs past the end", size - PAGE_SIZE, 2 * PAGE_SIZE, PRIVATE, 0, -1 },
		{ "wraps around", -PAGE_SIZE, 2 * PAGE_SIZE, PRIVATE, 0, -1 },
		{ "huge size", 0, -PAGE_SIZE, PRIVATE, 0, -1 },
		{ "unknown attribute", start, PAGE_SIZE, BIT(0), 0, -1 },
		{ "private and unknown", start, PAGE_SIZE, PRIVATE | BIT(63), 0, -1 },
		{ "flags", start, PAGE_SIZE, PRIVATE, 1, -1 },
		{ "high flag", start, PAGE_SIZE, PRIVATE, BIT(63), -1 },
		{ "first reserved word", start, PAGE_SIZE, PRIVATE, 0, 0 },
		{ "last reserved word", start, PAGE_SIZE, PRIVATE, 0, 10 },
	};
	struct kvm_memory_attributes2 args;
	struct hugetlb_pools pools;
	int i;

	/* Something to change: a shared page in a private file. */
	convert(self->fd, start, PAGE_SIZE, 0);
	read_hugetlb_pools(&pools);

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		memset(&args, 0, sizeof(args));
		args.offset = bad[i].offset;
		args.size = bad[i].size;
		args.attributes = bad[i].attributes;
		args.flags = bad[i].flags;
		if (bad[i].reserved >= 0)
			args.reserved[bad[i].reserved] = 1;
		pr_info("bad request: %s\n", bad[i].what);
		assert_convert_errno(self->fd, &pools, &args, EINVAL);
	}

	/* The good request works, and repeating it is a no-op that succeeds. */
	args = good;
	TEST_ASSERT_EQ(__convert(self->fd, &args), 0);
	assert_shareability(self->fd, size / PAGE_SIZE, 0, 1);
	TEST_ASSERT_EQ(__convert(self->fd, &args), 0);
	assert_shareability(self->fd, size / PAGE_SIZE, 0, 1);
}

/*
 * Converting [@offset, +@size) to private fails with EAGAIN at @pinned, the
 * one shared page of a file of @npages pages, and changes nothing.
 */
static void assert_private_blocked_at(int fd, u64 offset, u64 size, u64 pinned,
				      u64 npages)
{
	u64 error_offset = -1ull;

	TEST_ASSERT(__gmem_set_private(fd, offset, size, &error_offset) &&
		    errno == EAGAIN,
		    "converting a pinned page: expected EAGAIN, errno %d", errno);
	TEST_ASSERT_EQ(error_offset, pinned);
	assert_shareability(fd, npages - 1, 1, 3);
}

/*
 * vmsplice() pins the pages it takes (GUP).  Private pages cannot be pinned.
 * A pinned shared page (of a split huge page too) makes conversion to private
 * fail with EAGAIN and error_offset at that page, changing nothing, until the
 * pipe lets go; the huge page is whole again once it is all private.
 */
TEST_F_TIMEOUT(conv, host_references_block_private, GMEM_TEST_TIMEOUT)
{
	u64 start = middle_offset(self->size, self->page_size), pinned = start + 2 * PAGE_SIZE;
	u64 npages = self->size / PAGE_SIZE;
	struct iovec iov = { .iov_len = PAGE_SIZE };
	char buf[PAGE_SIZE];
	int pipefd[2];
	ssize_t r;

	TEST_ASSERT_EQ(pipe(pipefd), 0);

	iov.iov_base = host_page(self, pinned);
	TEST_ASSERT(vmsplice(pipefd[1], &iov, 1, 0) < 0 && errno == EFAULT,
		    "vmsplice() of a private page: expected EFAULT, errno %d", errno);

	convert(self->fd, pinned, PAGE_SIZE, 0);
	*host_page(self, pinned) = page_tag(pinned, 3);
	r = vmsplice(pipefd[1], &iov, 1, 0);
	TEST_ASSERT(r == PAGE_SIZE, "vmsplice() of a shared page: %zd, errno %d",
		    r, errno);

	assert_private_blocked_at(self->fd, start, 5 * PAGE_SIZE, pinned, npages);
	TEST_ASSERT_EQ(*host_page(self, pinned), page_tag(pinned, 3));

	/* Reading the pipe drops the pin. */
	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	TEST_ASSERT_EQ(*(u64 *)buf, page_tag(pinned, 3));

	/* A long-term pin (GUP_TEST, as mainline's tests pin) blocks it too. */
	pin_pages(host_page(self, pinned), PAGE_SIZE);
	assert_private_blocked_at(self->fd, start, 5 * PAGE_SIZE, pinned, npages);
	unpin_pages();

	/* Without the pins, the conversion goes through. */
	convert(self->fd, start, 5 * PAGE_SIZE, PRIVATE);
	assert_shareability(self->fd, npages, 0, 1);
	TEST_ASSERT(host_read_faults(host_page(self, pinned)),
		    "the host read a page converted to private");
	/* The huge page the host's write allocated, whole again. */
	if (variant->page_shift > 12) {
		snprintf(buf, sizeof(buf), "%u:1 ", variant->page_shift - 12);
		assert_folios(self->fd, buf, 0, 0);
	}
	guest_do(self->vcpu, OP_CHECK, pinned, PAGE_SIZE, 3);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* The FilePmdMapped of the host's mapping at @addr, in kB, from smaps. */
static u64 smaps_file_pmd_mapped_kb(void *addr)
{
	unsigned long start, end;
	bool in_vma = false;
	u64 kb = -1ull;
	char line[256];
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	TEST_ASSERT(f, "fopen(/proc/self/smaps)");
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			in_vma = start == (unsigned long)addr;
		else if (in_vma && sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1)
			break;
	}
	fclose(f);
	TEST_ASSERT(kb != -1ull, "no FilePmdMapped for %p in smaps", addr);
	return kb;
}

/* A mapping of the file's 2M at @offset, at a 2M-aligned address. */
static u64 *map_block_aligned(int fd, u64 offset)
{
	char *area = mmap(NULL, 2 * SZ_2M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *aligned = (char *)(((unsigned long)area + SZ_2M - 1) & ~(SZ_2M - 1ul));
	void *p;

	TEST_ASSERT(area != MAP_FAILED, "mmap() failed, errno %d", errno);
	p = mmap(aligned, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 offset);
	TEST_ASSERT(p == aligned, "mmap() of the file failed, errno %d", errno);
	if (aligned > area)
		munmap(area, aligned - area);
	munmap(aligned + SZ_2M, area + SZ_2M - aligned);
	return p;
}

/*
 * THP for the mappings that ask for it only: a huge-page guest_memfd's
 * mapping does (it is VM_HUGEPAGE), the VM's own memory does not, so that
 * every huge stage-2 mapping in the stats is still guest_memfd's.
 */
static void thp_for_advised_mappings_only(void)
{
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED,
			     0, 0), 0);
}

/*
 * The host maps a 2M block that is one shared folio with one PMD, unless
 * the mapping is MADV_NOHUGEPAGE.  Converting a page of it to private zaps
 * the PMD first, then splits the folio: the host keeps its bytes in the rest
 * of the block, at 4K.
 */
TEST_F_TIMEOUT(conv, shared_blocks_map_with_pmds, GMEM_TEST_TIMEOUT)
{
	u64 last = SZ_2M - PAGE_SIZE, page = SZ_1M;
	u64 *block;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no 2M folio to map");

	thp_for_advised_mappings_only();
	convert(self->fd, 0, SZ_2M, 0);

	block = map_block_aligned(self->fd, 0);
	TEST_ASSERT_EQ(madvise(block, SZ_2M, MADV_NOHUGEPAGE), 0);
	block[0] = page_tag(0, 11);
	TEST_ASSERT_EQ(smaps_file_pmd_mapped_kb(block), 0);
	munmap(block, SZ_2M);

	block = map_block_aligned(self->fd, 0);
	TEST_ASSERT_EQ(block[0], page_tag(0, 11));
	TEST_ASSERT_EQ(smaps_file_pmd_mapped_kb(block), 2048);
	block[last / sizeof(u64)] = page_tag(last, 11);
	block[page / sizeof(u64)] = page_tag(page, 11);

	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	TEST_ASSERT_EQ(smaps_file_pmd_mapped_kb(block), 0);
	TEST_ASSERT(host_read_faults(&block[page / sizeof(u64)]),
		    "the host read a page converted to private");
	TEST_ASSERT_EQ(block[0], page_tag(0, 11));
	TEST_ASSERT_EQ(block[last / sizeof(u64)], page_tag(last, 11));
	TEST_ASSERT_EQ(smaps_file_pmd_mapped_kb(block), 0);
	guest_do(self->vcpu, OP_CHECK, page, PAGE_SIZE, 11);
	munmap(block, SZ_2M);
}

/*
 * The minor faults this process has taken. They count every fault, so what
 * runs between two calls touches no stack page that the first call did not:
 * after fork() each one is copy-on-write and takes a fault of its own (the
 * assertion helper's frame, called once the count was read, once made
 * huge_mappings_survive_mremap_and_fork count a fault that the mapping did
 * not take, in about one run in 40, as ASLR placed the stack).
 */
static long minor_faults(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		TEST_FAIL("getrusage(): errno %d", errno);
	return ru.ru_minflt;
}

/*
 * Write @tag's pattern to every page of [@offset, @offset + @size) through
 * @mem, a mapping of the whole file; return the minor faults that took.
 */
static long host_write_pages(u64 *mem, u64 offset, u64 size, u64 tag)
{
	long before = minor_faults();
	u64 off;

	for (off = offset; off < offset + size; off += PAGE_SIZE)
		mem[off / sizeof(u64)] = page_tag(off, tag);
	return minor_faults() - before;
}

/*
 * As host_write_pages(), reading and asserting the pattern: asserted once
 * counted, so that no call in the loop touches the stack (minor_faults()).
 */
static long host_check_pages(u64 *mem, u64 offset, u64 size, u64 tag)
{
	u64 off, bad = ~0ull;
	long before, faults;

	before = minor_faults();
	for (off = offset; off < offset + size; off += PAGE_SIZE) {
		if (mem[off / sizeof(u64)] != page_tag(off, tag) && bad == ~0ull)
			bad = off;
	}
	faults = minor_faults() - before;
	TEST_ASSERT(bad == ~0ull, "page %#lx: %#lx, expected %#lx", bad,
		    bad == ~0ull ? 0 : mem[bad / sizeof(u64)],
		    bad == ~0ull ? 0 : page_tag(bad, tag));
	return faults;
}

/*
 * Make the whole file shared and write @tag's pattern to every page through
 * the fixture's mapping, with THP for advised mappings only: one fault per
 * huge page, each mapped whole.
 */
static void share_and_map_whole(FIXTURE_DATA(conv) * self, u64 tag)
{
	thp_for_advised_mappings_only();
	convert(self->fd, 0, self->size, 0);
	TEST_ASSERT_EQ(host_write_pages(self->mem, 0, self->size, tag),
		       self->size / self->page_size);
}

/*
 * Shared huge pages cost the host what hugetlbfs's cost: the file's mapping
 * lands at an address aligned to its huge pages, and touching them takes one
 * fault per huge page (a PUD for a 1G page, a PMD for a 2M one), as does
 * MADV_POPULATE_WRITE, which VMMs use to preallocate.  MADV_NOHUGEPAGE
 * leaves PTEs only: one fault still maps a 2M folio whole (finish_fault()
 * maps a folio that fits in one page table at once), a 1G folio takes one
 * per page.
 */
TEST_F_TIMEOUT(conv, shared_huge_pages_map_with_one_fault, GMEM_TEST_TIMEOUT)
{
	u64 nr_huge = self->size / self->page_size;
	long before;
	u64 *mem;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to map");

	TEST_ASSERT_EQ((unsigned long)self->mem % self->page_size, 0);
	share_and_map_whole(self, 12);
	TEST_ASSERT_EQ(host_check_pages(self->mem, 0, self->size, 12), 0);

	mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
	TEST_ASSERT_EQ((unsigned long)mem % self->page_size, 0);
	before = minor_faults();
	TEST_ASSERT_EQ(madvise(mem, self->size, MADV_POPULATE_WRITE), 0);
	TEST_ASSERT_EQ(minor_faults() - before, nr_huge);
	TEST_ASSERT_EQ(host_write_pages(mem, 0, self->size, 13), 0);
	kvm_munmap(mem, self->size);

	mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
	TEST_ASSERT_EQ(madvise(mem, self->size, MADV_NOHUGEPAGE), 0);
	TEST_ASSERT_EQ(host_check_pages(mem, 0, SZ_2M, 13),
		       variant->page_shift == 21 ? 1 : SZ_2M / PAGE_SIZE);
	TEST_ASSERT_EQ(smaps_file_pmd_mapped_kb(mem), 0);
	kvm_munmap(mem, self->size);

	guest_do(self->vcpu, OP_CHECK, 0, self->size, 13);
}

/*
 * A 1G page split into 2M pieces keeps HVO for each piece but the one split
 * further: one 4K page made shared costs 511 + 7 pages of struct pages, not
 * 4095; a page made shared in a second 2M block costs that block's 7 more,
 * which its merge back into a 2M piece gives back, and so does a shared 2M
 * block that the host maps with PTEs (each page's mapcount is in its own
 * struct page); the 1G merge gives back the rest, to the page (fdinfo and
 * nr_memmap_pages).  The guest's bytes and the host's stay where they were.
 * With
 * guest_memfd_split.keep_hvo_on_split off, the split restores the whole GiB,
 * as it did before.  A 2M page has no smaller piece that could keep HVO: 7
 * pages either way.
 */
TEST_F_TIMEOUT(conv, split_keeps_hvo_for_2m_pieces, GMEM_TEST_TIMEOUT)
{
	u64 first = self->size / 2 + 5 * PAGE_SIZE, second = first + 3 * SZ_2M;
	u64 block = vmemmap_restored(SZ_2M), second_block, pte_block;
	unsigned int old_delay;
	bool old_keep, keep;
	char whole[32];
	long memmap;
	u64 *mem;
	int i;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page, no HVO");
	if (variant->page_shift == 21)
		second = first + SZ_2M;

	snprintf(whole, sizeof(whole), "%u:%lu ", variant->page_shift - 12,
		 self->size / self->page_size);
	old_delay = gmem_set_merge_delay_ms(0);
	old_keep = gmem_get_keep_hvo_on_split();
	guest_do(self->vcpu, OP_WRITE, 0, self->size, 1);
	for (i = 0; i < 2; i++) {
		keep = !i;
		gmem_set_keep_hvo_on_split(keep);
		memmap = memmap_pages();
		assert_split_vmemmap(self, memmap, 0);

		convert(self->fd, first, PAGE_SIZE, 0);
		assert_split_vmemmap(self, memmap,
				     split_vmemmap_bytes(self->page_size));
		/* 1G: the second block's piece; 2M: the second huge page. */
		second_block = variant->page_shift == 21 || keep ? block : 0;
		convert(self->fd, second, PAGE_SIZE, 0);
		assert_split_vmemmap(self, memmap,
				     split_vmemmap_bytes(self->page_size) +
				     second_block);
		TEST_ASSERT_EQ(*host_page(self, first), page_tag(first, 1));
		TEST_ASSERT_EQ(*host_page(self, second), page_tag(second, 1));
		*host_page(self, first) = page_tag(first, 2);

		/* The second block merges back into a 2M piece, HVO and all. */
		convert(self->fd, second, PAGE_SIZE, PRIVATE);
		assert_split_vmemmap(self, memmap,
				     split_vmemmap_bytes(self->page_size));
		/*
		 * The 2M block at 2M shared, and mapped with PTEs: its piece's
		 * struct pages (a 2M piece that kept HVO; a 2M file's whole
		 * piece), until the huge page is merged.
		 */
		pte_block = variant->page_shift == 21 || keep ? block : 0;
		convert(self->fd, SZ_2M, SZ_2M, 0);
		mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       self->fd);
		TEST_ASSERT_EQ(madvise(mem, self->size, MADV_NOHUGEPAGE), 0);
		host_check_pages(mem, SZ_2M + 100 * PAGE_SIZE, PAGE_SIZE, 1);
		assert_split_vmemmap(self, memmap,
				     split_vmemmap_bytes(self->page_size) +
				     pte_block);
		kvm_munmap(mem, self->size);
		convert(self->fd, SZ_2M, SZ_2M, PRIVATE);

		convert(self->fd, first, PAGE_SIZE, PRIVATE);
		assert_folios(self->fd, whole, 0, 0);
		assert_split_vmemmap(self, memmap, 0);

		guest_do(self->vcpu, OP_CHECK, first, PAGE_SIZE, 2);
		guest_do(self->vcpu, OP_WRITE, first, PAGE_SIZE, 1);
		guest_do(self->vcpu, OP_CHECK, 0, self->size, 1);
	}
	gmem_set_keep_hvo_on_split(old_keep);
	gmem_set_merge_delay_ms(old_delay);
}

/*
 * A huge page shared whole keeps HVO, as a hugetlbfs page does: sharing the
 * file and touching all of it through huge mappings restores no struct page
 * (fdinfo and nr_memmap_pages say so).  A PTE mapping of one of its pages
 * (MADV_NOHUGEPAGE) needs the page's own struct page: that huge page's
 * vmemmap is restored then, and only that one's, and its merge gives it back
 * once the file is private again.  Before, sharing restored every huge page's
 * vmemmap (issue 18's 14,680,064 bytes for 1 GiB of 2M pages).
 */
TEST_F_TIMEOUT(conv, whole_shared_huge_pages_keep_hvo, GMEM_TEST_TIMEOUT)
{
	u64 nr_huge = self->size / self->page_size, page = 100 * PAGE_SIZE;
	u64 restored = vmemmap_restored(self->page_size);
	char whole[32];
	long memmap;
	u64 *mem;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page, no HVO");

	snprintf(whole, sizeof(whole), "%u:%lu ", variant->page_shift - 12, nr_huge);
	/*
	 * A merge applies HVO to the file's huge pages, whatever the pool's
	 * pages had: one that a merge short of memory put back without it
	 * (the fault injection test makes such merges) keeps none.
	 */
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	convert(self->fd, 0, self->size, 0);
	convert(self->fd, 0, self->size, PRIVATE);
	drop_caches();
	assert_folios(self->fd, whole, 0, 0);

	memmap = memmap_pages();
	share_and_map_whole(self, 17);
	assert_folios(self->fd, whole, nr_huge, 0);
	TEST_ASSERT_EQ(memmap_pages(), memmap);

	/* Past the huge page's first vmemmap page (64 struct pages). */
	mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
	TEST_ASSERT_EQ(madvise(mem, self->size, MADV_NOHUGEPAGE), 0);
	TEST_ASSERT_EQ(host_check_pages(mem, page, PAGE_SIZE, 17), 1);
	assert_folios(self->fd, whole, nr_huge, restored);
	TEST_ASSERT_EQ(memmap_pages() - memmap, restored / PAGE_SIZE);
	kvm_munmap(mem, self->size);

	convert(self->fd, 0, self->size, PRIVATE);
	drop_caches();
	assert_folios(self->fd, whole, 0, 0);
	TEST_ASSERT_EQ(memmap_pages(), memmap);
	guest_do(self->vcpu, OP_CHECK, 0, self->size, 17);
}

/*
 * Converting a page of a huge page the host maps whole zaps the whole
 * mapping first, and a page pinned through it (vmsplice()) holds the
 * conversion off, as a pin of a 4K mapping does.  Afterwards the host maps
 * the rest of the huge page at the largest level its new shape allows: the
 * 2M blocks that stayed shared with PMDs, the mixed block's pages with PTEs.
 * The file's other huge pages keep their mappings.
 */
TEST_F_TIMEOUT(conv, converting_a_page_zaps_its_huge_mapping, GMEM_TEST_TIMEOUT)
{
	u64 page = self->page_size / 2, after = page + PAGE_SIZE;
	struct iovec iov = { .iov_base = host_page(self, page), .iov_len = PAGE_SIZE };
	long faults = (SZ_2M / PAGE_SIZE - 1) + (self->page_size / SZ_2M - 1);
	u64 error_offset = 0, buf[PAGE_SIZE / sizeof(u64)];
	int pipefd[2];

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to map");

	share_and_map_whole(self, 14);

	TEST_ASSERT_EQ(pipe(pipefd), 0);
	TEST_ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), PAGE_SIZE);
	TEST_ASSERT(__gmem_set_private(self->fd, page, PAGE_SIZE, &error_offset) &&
		    errno == EAGAIN,
		    "converting a pinned page: expected EAGAIN, errno %d", errno);
	TEST_ASSERT_EQ(error_offset, page);
	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	TEST_ASSERT_EQ(buf[0], page_tag(page, 14));
	close(pipefd[0]);
	close(pipefd[1]);

	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	TEST_ASSERT(host_read_faults(host_page(self, page)),
		    "the host read a page converted to private");
	TEST_ASSERT_EQ(host_check_pages(self->mem, 0, page, 14) +
		       host_check_pages(self->mem, after, self->page_size - after, 14),
		       faults);
	TEST_ASSERT_EQ(host_check_pages(self->mem, self->page_size,
					self->size - self->page_size, 14), 0);
	guest_do(self->vcpu, OP_CHECK, 0, page, 14);
}

/*
 * Unmapping part of a huge mapping splits it: the folio's reference and
 * mapcount go with it, so the huge page converts to private afterwards (a
 * leaked reference made the conversion fail with EAGAIN for good).  The
 * rest of the huge page, in a VMA that no longer covers it whole, is mapped
 * page by page.
 */
TEST_F_TIMEOUT(conv, partial_unmap_of_a_huge_mapping_releases_it, GMEM_TEST_TIMEOUT)
{
	u64 hole = self->page_size - PAGE_SIZE, error_offset = 0;
	void *p;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to map");

	share_and_map_whole(self, 15);

	TEST_ASSERT_EQ(munmap(host_page(self, hole), PAGE_SIZE), 0);
	TEST_ASSERT_EQ(host_check_pages(self->mem, 0, 2 * PAGE_SIZE, 15), 2);
	p = mmap(host_page(self, hole), PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, self->fd, hole);
	TEST_ASSERT(p == host_page(self, hole), "mmap() of the hole failed, errno %d", errno);
	TEST_ASSERT_EQ(host_check_pages(self->mem, hole, PAGE_SIZE, 15), 1);

	TEST_ASSERT(!__gmem_set_private(self->fd, 0, self->size, &error_offset),
		    "converting after a partial unmap: errno %d, error_offset %#lx",
		    errno, error_offset);
	guest_do(self->vcpu, OP_CHECK, 0, self->size, 15);
}

/*
 * mremap() moves a huge mapping whole (no fault at its new address), and
 * fork() of a mapping that copies its page tables (MADV_GUARD_INSTALL makes
 * a VMA do that, here on a page past the end of the file) leaves the huge
 * mappings to the child's faults.  Neither may leave a reference behind, or
 * take one it does not hold: the huge pages convert to private afterwards.
 * Before the fixes, mremap() cleared a PUD as a bad page table (a leaked
 * reference: EAGAIN for good) and the child's exit dropped a reference its
 * copied PUD never took (a freed folio still in the file).
 */
TEST_F_TIMEOUT(conv, huge_mappings_survive_mremap_and_fork, GMEM_TEST_TIMEOUT)
{
	u64 nr_huge = self->size / self->page_size, error_offset = 0;
	u64 *mem, *moved;
	int status;
	pid_t pid;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to map");

	share_and_map_whole(self, 18);

	mem = kvm_mmap(self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd);
	TEST_ASSERT_EQ(host_check_pages(mem, 0, self->size, 18), nr_huge);
	moved = mremap(mem, self->size, self->size, MREMAP_MAYMOVE);
	TEST_ASSERT(moved != MAP_FAILED, "mremap() failed, errno %d", errno);
	TEST_ASSERT_EQ(host_check_pages(moved, 0, self->size, 18), 0);
	kvm_munmap(moved, self->size);

	mem = mmap(NULL, self->size + PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		   self->fd, 0);
	TEST_ASSERT(mem != MAP_FAILED, "mmap() failed, errno %d", errno);
	TEST_ASSERT_EQ(madvise(&mem[self->size / sizeof(u64)], PAGE_SIZE,
			       MADV_GUARD_INSTALL), 0);
	TEST_ASSERT_EQ(host_check_pages(mem, 0, self->size, 18), nr_huge);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed, errno %d", errno);
	if (!pid) {
		host_check_pages(mem, 0, self->size, 18);
		_exit(0);
	}
	TEST_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	TEST_ASSERT(WIFEXITED(status) && !WEXITSTATUS(status),
		    "the child failed, status %#x", status);
	TEST_ASSERT_EQ(host_check_pages(mem, 0, self->size, 18), 0);
	TEST_ASSERT_EQ(munmap(mem, self->size + PAGE_SIZE), 0);

	TEST_ASSERT(!__gmem_set_private(self->fd, 0, self->size, &error_offset),
		    "converting after mremap() and fork(): errno %d, error_offset %#lx",
		    errno, error_offset);
	guest_do(self->vcpu, OP_CHECK, 0, self->size, 18);
}

/*
 * A memslot that is not bound to the file, only its userspace address in
 * the file's mapping (as a VMM that does not bind guest_memfd has it), is
 * mapped by KVM at the host's level: 1G and 2M where the host maps huge.
 */
TEST_F_TIMEOUT(conv, unbound_memslot_maps_huge, GMEM_TEST_TIMEOUT)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to map");

	share_and_map_whole(self, 16);

	vm = __vm_create_shape_with_one_vcpu(VM_SHAPE_DEFAULT, &vcpu,
					     self->size / PAGE_SIZE, guest_code);
	vm_set_user_memory_region2(vm, DATA_SLOT, 0, DATA_GPA, self->size,
				   self->mem, 0, 0);
	virt_map_level(vm, DATA_GPA, DATA_GPA, self->size,
		       self->size % SZ_1G ? PG_LEVEL_2M : PG_LEVEL_1G);
	vcpu_run_to_sync(vcpu);
	guest_do(vcpu, OP_CHECK, 0, self->size, 16);
	if (variant->page_shift == 30)
		assert_stage2_mappings(vm, self->size / SZ_1G, 0, 0, true);
	else
		assert_stage2_mappings(vm, 0, self->size / SZ_2M, 0, true);
	guest_do(vcpu, OP_WRITE, 0, self->size, 17);
	kvm_vm_free(vm);
	TEST_ASSERT_EQ(host_check_pages(self->mem, 0, self->size, 17), 0);
}

/*
 * A conversion that fails changes nothing, folio shapes included.  The first
 * 4M are shared: 2M folios (one ordinary folio per 2M page; 2M pieces of a 1G
 * page), but the second 2M block, split to 4K around a private page, with a
 * page pinned.  A conversion to private of pages on both sides of the block
 * boundary splits the first block, then fails on the pinned page (EAGAIN):
 * the first block is one folio again.  fdinfo is the same before and after,
 * and the host still reads what it wrote.  Before the fix the block stayed
 * split.
 */
TEST_F_TIMEOUT(conv, failed_conversion_keeps_shapes, GMEM_TEST_TIMEOUT)
{
	u64 boundary = SZ_2M, pinned = SZ_2M + 2 * PAGE_SIZE;
	struct iovec iov = { .iov_base = host_page(self, pinned), .iov_len = PAGE_SIZE };
	struct kvm_memory_attributes2 args = {
		.offset = boundary - PAGE_SIZE, .size = 4 * PAGE_SIZE,
		.attributes = PRIVATE,
	};
	struct gmem_fdinfo before, after;
	char buf[PAGE_SIZE];
	int pipefd[2];

	convert(self->fd, 0, SZ_4M, 0);
	*host_page(self, boundary - PAGE_SIZE) = page_tag(boundary - PAGE_SIZE, 10);
	*host_page(self, pinned) = page_tag(pinned, 10);
	convert(self->fd, boundary, PAGE_SIZE, PRIVATE);
	TEST_ASSERT_EQ(pipe(pipefd), 0);
	TEST_ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), PAGE_SIZE);
	read_gmem_fdinfo(self->fd, &before);

	TEST_ASSERT(__convert(self->fd, &args) && errno == EAGAIN,
		    "converting a pinned page: expected EAGAIN, errno %d", errno);
	TEST_ASSERT_EQ(args.error_offset, pinned);
	read_gmem_fdinfo(self->fd, &after);
	TEST_ASSERT(!memcmp(&before, &after, sizeof(before)),
		    "a failed conversion changed folio orders \"%s\" -> \"%s\", splits %lu -> %lu, struct page bytes %lu -> %lu",
		    before.folio_orders, after.folio_orders,
		    before.split_huge_pages, after.split_huge_pages,
		    before.split_vmemmap_bytes, after.split_vmemmap_bytes);
	TEST_ASSERT_EQ(*host_page(self, boundary - PAGE_SIZE),
		       page_tag(boundary - PAGE_SIZE, 10));
	TEST_ASSERT_EQ(*host_page(self, pinned), page_tag(pinned, 10));

	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	close(pipefd[0]);
	close(pipefd[1]);
	convert(self->fd, 0, self->size, PRIVATE);
}

/*
 * Make the page at @page shared, write @tag to it from the host, pin it in a
 * new pipe (@pipefd) and punch the huge page that holds it (the whole file
 * for an order-0 file).
 */
static void punch_pinned_page(FIXTURE_DATA(conv) * self, u64 page, u64 unit,
			      u64 tag, int pipefd[2])
{
	struct iovec iov = { .iov_base = host_page(self, page), .iov_len = PAGE_SIZE };

	convert(self->fd, page, PAGE_SIZE, 0);
	*host_page(self, page) = page_tag(page, tag);
	TEST_ASSERT_EQ(pipe(pipefd), 0);
	TEST_ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), PAGE_SIZE);
	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 round_down(page, unit), unit), 0);
}

/*
 * Punch hole and close merge a split huge page before they free it, so that it
 * goes back to the pool whole.  A piece still pinned a second later leaves
 * the file anyway, and the huge page goes back to the pool once the pin is
 * released: the file shows nothing of it, and no page is lost.
 */
TEST_F_TIMEOUT(conv, pinned_page_outlives_punch_hole, GMEM_TEST_TIMEOUT)
{
	u64 page = middle_offset(self->size, self->page_size);
	u64 unit = variant->page_shift > 12 ? self->page_size : self->size;
	bool huge = variant->page_shift > 12;
	struct hugetlb_pools start;
	struct gmem_fdinfo info;
	char buf[PAGE_SIZE];
	int pipefd[2];

	read_hugetlb_pools(&start);
	punch_pinned_page(self, page, unit, 4, pipefd);
	read_gmem_fdinfo(self->fd, &info);
	TEST_ASSERT_EQ(info.huge_folios, 0);
	TEST_ASSERT_EQ(info.split_huge_pages, 0);
	TEST_ASSERT(!strcmp(info.folio_orders, ""), "folios left: %s", info.folio_orders);
	/*
	 * The huge page is still out of the pool, but no longer on the file's
	 * reservation: the file reserved a page in its place.
	 */
	if (huge)
		assert_hugetlb_pools(&start, variant->page_shift, -1, 0);

	/* The pipe still holds the page, with what the host wrote. */
	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	TEST_ASSERT_EQ(*(u64 *)buf, page_tag(page, 4));
	close(pipefd[0]);
	close(pipefd[1]);

	/* Released, it goes back to the pool, shortly. */
	wait_hugetlb_pools(&start, variant->page_shift, 0, 0);
}

/*
 * Read @p in a child process, so that a read that never returns fails the test
 * instead of hanging it: 0 if the child read @expect, 1 if it got SIGBUS.
 */
static int host_read_in_child(u64 *p, u64 expect)
{
	int status;
	pid_t pid;

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed, errno %d", errno);
	if (!pid) {
		alarm(20);
		if (host_read_faults(p))
			_exit(1);
		_exit(READ_ONCE(*p) == expect ? 0 : 2);
	}
	TEST_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	TEST_ASSERT(!WIFSIGNALED(status),
		    "the host's read of %p did not return within 20 s (signal %d)",
		    p, WTERMSIG(status));
	TEST_ASSERT(WEXITSTATUS(status) < 2,
		    "the host's read of %p: %s, expected %#lx", p,
		    WEXITSTATUS(status) == 2 ? "another value" : "the child failed", expect);
	return WEXITSTATUS(status);
}

/*
 * A pinned piece of a punched huge page lives on as an orphan, out of the
 * pool, but no longer the file's: the file reserves a page in its place, the
 * punched range is filled again from the pool at the next touch (zeroed), and
 * a file closed while the orphan lives gives its whole reservation back.
 * Before the fix, the orphan kept the file's page: the host's read looped
 * forever on VM_FAULT_OOM, and closing the file kept its reservation.
 */
TEST_F_TIMEOUT(conv, punched_pinned_page_refills_from_pool, GMEM_TEST_TIMEOUT)
{
	u64 page = middle_offset(self->size, self->page_size);
	u64 unit = variant->page_shift > 12 ? self->page_size : self->size;
	unsigned int shift = variant->page_shift;
	struct hugetlb_pools start;
	char buf[PAGE_SIZE];
	int pipefd[2];

	read_hugetlb_pools(&start);
	punch_pinned_page(self, page, unit, 8, pipefd);

	/*
	 * Filled again from the pool, zeroed, for the host and the guest: the
	 * orphan and the new page are out of the pool, and the file's
	 * reservation is whole but for the new page.
	 */
	TEST_ASSERT_EQ(host_read_in_child(host_page(self, page), 0), 0);
	assert_hugetlb_pools(&start, shift, -2, -1);
	guest_do(self->vcpu, OP_TOUCH, round_down(page, unit), unit, 0);

	/* Closed while the orphan lives: the reservation goes back whole. */
	conv_close(self);
	assert_hugetlb_pools(&self->pools_before, shift, -1, 0);

	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	TEST_ASSERT_EQ(*(u64 *)buf, page_tag(page, 8));
	close(pipefd[0]);
	close(pipefd[1]);
	wait_hugetlb_pools(&self->pools_before, shift, 0, 0);
}

/*
 * The same with every page of the file allocated and no page left in the
 * pool to reserve in the orphan's place (another file reserved them all): the
 * file is a page short, as a hugetlbfs file without a reservation would be.
 * A touch of the punched range gets the host SIGBUS and the vCPU ENOSPC with a
 * memory-fault exit at its gpa, at once, until a page is free again (the
 * orphan released): then it is filled.
 */
TEST_F_TIMEOUT(conv, punched_pinned_page_without_free_page, GMEM_TEST_TIMEOUT)
{
	u64 page = middle_offset(self->size, self->page_size);
	unsigned int shift = variant->page_shift;
	struct kvm_run *run = self->vcpu->run;
	struct hugetlb_pools start;
	int pipefd[2], hog = -1;
	unsigned long spare;
	char buf[PAGE_SIZE];

	if (shift == 12)
		SKIP(return, "order-0 file: its pages come from the page allocator, not a pool");

	/* Every huge page of the file allocated: no reservation left. */
	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, self->size), 0);
	read_hugetlb_pools(&start);
	spare = hugetlb_pool_free_pages(shift);
	if (spare) {
		hog = __gmem_create_huge(self->vm, spare << shift,
					 GUEST_MEMFD_FLAG_HUGE_PAGES, shift);
		TEST_ASSERT(hog >= 0, "reserving the rest of the pool failed, errno %d", errno);
	}
	TEST_ASSERT_EQ(hugetlb_pool_free_pages(shift), 0);

	punch_pinned_page(self, page, self->page_size, 9, pipefd);
	assert_hugetlb_pools(&start, shift, 0, spare);

	TEST_ASSERT_EQ(host_read_in_child(host_page(self, page), 0), 1);
	cmd = (struct guest_cmd) { .op = OP_TOUCH, .offset = page, .size = PAGE_SIZE };
	sync_global_to_guest(self->vm, cmd);
	TEST_ASSERT(_vcpu_run(self->vcpu) == -1 && errno == ENOSPC,
		    "KVM_RUN on a page the pool cannot give: errno %d", errno);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_MEMORY_FAULT);
	TEST_ASSERT_EQ(run->memory_fault.gpa, DATA_GPA + page);
	TEST_ASSERT_EQ(run->memory_fault.size, PAGE_SIZE);
	assert_hugetlb_pools(&start, shift, 0, spare);

	/* The orphan released, its page is free: the range is filled. */
	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	close(pipefd[0]);
	close(pipefd[1]);
	wait_hugetlb_pools(&start, shift, 1, spare);
	TEST_ASSERT_EQ(host_read_in_child(host_page(self, page), 0), 0);
	vcpu_run_to_sync(self->vcpu);
	assert_hugetlb_pools(&start, shift, 0, spare);
	if (hog >= 0)
		close(hog);
}

struct converter {
	int fd;
	u64 offset, size;
	int rounds;
	u64 *guest_loop;	/* the guest's cmd.loop */
};

static void *convert_back_and_forth(void *arg)
{
	struct converter *c = arg;
	int i;

	for (i = 0; i < c->rounds; i++)
		convert(c->fd, c->offset, c->size, i % 2 ? PRIVATE : 0);
	WRITE_ONCE(*c->guest_loop, 0);
	return NULL;
}

/*
 * The guest keeps reading pages while the host converts them back and forth:
 * it always reads its own bytes, whatever the shareability of the moment.
 */
TEST_F_TIMEOUT(conv, guest_reads_while_converting, GMEM_TEST_TIMEOUT)
{
	struct converter c = {
		.fd = self->fd, .offset = middle_offset(self->size, self->page_size),
		.size = 4 * PAGE_SIZE, .rounds = 200,
	};
	pthread_t thread;

	guest_do(self->vcpu, OP_WRITE, 0, self->size, 4);

	cmd = (struct guest_cmd) {
		.op = OP_CHECK_LOOP, .offset = c.offset - 2 * PAGE_SIZE,
		.size = c.size + 4 * PAGE_SIZE, .tag = 4, .loop = 1,
	};
	sync_global_to_guest(self->vm, cmd);
	c.guest_loop = addr_gva2hva(self->vm, (gva_t)&cmd.loop);

	pthread_create(&thread, NULL, convert_back_and_forth, &c);
	vcpu_run_to_sync(self->vcpu);
	pthread_join(thread, NULL);

	assert_shareability(self->fd, self->size / PAGE_SIZE, 0, 1);
	guest_do(self->vcpu, OP_CHECK, 0, self->size, 4);
}

/*
 * KVM maps @nr pages at the file's huge page size, and nothing at the other
 * huge size (an order-0 file: nothing huge at all).
 */
static void assert_huge_mappings(FIXTURE_DATA(conv) * self, u64 nr)
{
	TEST_ASSERT_EQ(vm_get_stat(self->vm, pages_1g),
		       self->page_size == SZ_1G ? nr : 0);
	TEST_ASSERT_EQ(vm_get_stat(self->vm, pages_2m),
		       self->page_size == SZ_2M ? nr : 0);
}

/*
 * Seeded random conversions, checked against a model after each step: the
 * side that owns the range afterwards reads what was written before, and
 * fdinfo's counts (pages and ranges) match the model's.  At the end the whole
 * file is private again and is mapped at its page size.
 */
TEST_F_TIMEOUT(conv, random_conversions_match_model, GMEM_TEST_TIMEOUT)
{
	u64 npages = self->size / PAGE_SIZE, huge = self->page_size / PAGE_SIZE;
	unsigned int seed = getenv("SEED") ? atoi(getenv("SEED")) : time(NULL);
	u64 step, first, nr, i, nr_shared = 0;
	u8 *shared = calloc(npages, 1);

	TEST_ASSERT(shared, "calloc");
	pr_info("seed %u (SEED=%u reproduces this run)\n", seed, seed);
	srandom(seed);

	for (step = 1; step <= 40; step++) {
		u64 attributes = random() % 2 ? PRIVATE : 0;
		u64 tag = step << 32 | seed;

		switch (random() % 4) {
		case 0:		/* a whole huge page */
			first = random() % (npages / huge) * huge;
			nr = huge;
			break;
		case 1:		/* up to two 2M pages' worth, anywhere */
			first = random() % npages;
			nr = 1 + random() % (2 * min_t(u64, huge, 512));
			break;
		default:	/* a few pages */
			first = random() % npages;
			nr = 1 + random() % 3;
		}
		nr = min(nr, npages - first);

		guest_do(self->vcpu, OP_WRITE, first * PAGE_SIZE, nr * PAGE_SIZE, tag);
		convert(self->fd, first * PAGE_SIZE, nr * PAGE_SIZE, attributes);
		for (i = first; i < first + nr; i++) {
			nr_shared += !attributes - shared[i];
			shared[i] = !attributes;
		}

		if (attributes) {
			guest_do(self->vcpu, OP_CHECK, first * PAGE_SIZE,
				 nr * PAGE_SIZE, tag);
			TEST_ASSERT(host_read_faults(host_page(self, first * PAGE_SIZE)),
				    "step %lu: the host read a private page", step);
		} else {
			/* The ends and a sample in between. */
			for (i = 0; i < min_t(u64, nr, 64); i++) {
				u64 off = (first + (i < 2 ? i * (nr - 1) :
						    random() % nr)) * PAGE_SIZE;

				TEST_ASSERT_EQ(*host_page(self, off), page_tag(off, tag));
			}
		}
		assert_shareability(self->fd, npages - nr_shared, nr_shared,
				    count_uniform_runs(shared, npages));
	}

	convert(self->fd, 0, self->size, PRIVATE);
	assert_shareability(self->fd, npages, 0, 1);
	guest_do(self->vcpu, OP_TOUCH, 0, self->size, 0);
	assert_huge_mappings(self, self->size / self->page_size);
	free(shared);
}

/*
 * The guest touches the poisoned page at @page: KVM_RUN fails with EHWPOISON
 * and a memory fault exit at its gpa.  The vCPU stays on it.
 */
static void assert_guest_gets_hwpoison(FIXTURE_DATA(conv) * self, u64 page)
{
	struct kvm_run *run = self->vcpu->run;
	int r;

	cmd = (struct guest_cmd) { .op = OP_TOUCH, .offset = page, .size = PAGE_SIZE };
	sync_global_to_guest(self->vm, cmd);
	r = _vcpu_run(self->vcpu);
	TEST_ASSERT(r == -1 && errno == EHWPOISON,
		    "KVM_RUN on a poisoned page: %d, errno %d, expected EHWPOISON", r, errno);
	TEST_ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	TEST_ASSERT_EQ(run->memory_fault.gpa, DATA_GPA + page);
	TEST_ASSERT_EQ(run->memory_fault.size, PAGE_SIZE);
}

/*
 * Close a file with a poisoned page: its huge page goes back to the pool
 * (marked) once the orphan work has run, and the counts are exact.
 */
static void close_with_poisoned_page(FIXTURE_DATA(conv) * self)
{
	unsigned int tries = gmem_poll_tries();
	struct hugetlb_pools now;

	conv_close(self);
	do {
		read_hugetlb_pools(&now);
		if (!memcmp(&now, &self->pools_before, sizeof(now)))
			break;
		usleep(GMEM_POLL_MS * 1000);
	} while (--tries);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

/*
 * A shared page poisoned (MADV_HWPOISON: memory failure marks it, and the
 * file zaps its mappings at once) is refused to the host (SIGBUS) and to the
 * guest (EHWPOISON with a memory fault exit), and no more: the rest of its
 * huge page keeps working, and a host fault on a neighbour maps the piece
 * around the poisoned page, not over it; and, all private again, KVM maps no
 * block over it.  A huge page with a poisoned page is not merged again; when
 * the file goes, it goes back to the pool marked, as hugetlb keeps its own
 * poisoned pages: counted free, never handed out.  The pool counts are exact.
 */
TEST_F_TIMEOUT(conv, poisoned_page_is_refused, GMEM_TEST_TIMEOUT)
{
	u64 page = middle_offset(self->size, self->page_size);
	u64 block = round_down(page, SZ_2M), next = page + PAGE_SIZE;
	struct gmem_fdinfo info;
	u64 *aligned;

	/*
	 * An order-0 file's page is on the LRU, and memory failure handles it
	 * as upstream does: it sends this task SIGBUS and keeps a reference on
	 * the page for good, so the page never converts to private again.
	 */
	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: upstream memory failure handling");

	/* All of the block shared: one 2M piece, which a host fault maps whole. */
	guest_do(self->vcpu, OP_WRITE, block, SZ_2M, 6);
	convert(self->fd, block, SZ_2M, 0);
	TEST_ASSERT_EQ(*host_page(self, page), page_tag(page, 6));

	/*
	 * Memory failure cannot truncate the pieces of huge pages (they are not
	 * on the LRU): it marks the page and says EBUSY, and the file zaps the
	 * page's mappings, the host's here, at once.
	 */
	TEST_ASSERT(madvise(host_page(self, page), PAGE_SIZE, MADV_HWPOISON) &&
		    errno == EBUSY, "MADV_HWPOISON: errno %d", errno);
	TEST_ASSERT(host_read_faults(host_page(self, page)),
		    "the host read a poisoned page it had mapped");
	TEST_ASSERT_EQ(*host_page(self, next), page_tag(next, 6));

	/*
	 * Where the piece fits a page table (an aligned mapping), a fault maps
	 * all of it at once, but for the poisoned page.
	 */
	aligned = map_block_aligned(self->fd, block);
	TEST_ASSERT_EQ(aligned[(next - block) / sizeof(u64)], page_tag(next, 6));
	TEST_ASSERT(host_read_faults(&aligned[(page - block) / sizeof(u64)]),
		    "a fault on its neighbour mapped a poisoned page");
	munmap(aligned, SZ_2M);

	/* Private again, the huge page stays split around it. */
	convert(self->fd, page, 2 * PAGE_SIZE, PRIVATE);
	read_gmem_fdinfo(self->fd, &info);
	TEST_ASSERT_EQ(info.split_huge_pages, 1);

	/* The guest reads the rest of the block, and the rest of the file. */
	guest_do(self->vcpu, OP_CHECK, block, page - block, 6);
	guest_do(self->vcpu, OP_CHECK, next, block + SZ_2M - next, 6);
	guest_do(self->vcpu, OP_TOUCH, 0, block, 0);
	guest_do(self->vcpu, OP_TOUCH, block + SZ_2M, self->size - block - SZ_2M, 0);

	/*
	 * All private, the huge page is uniform, and its pieces stay (it never
	 * merges with a poisoned page): KVM may map blocks of it over their
	 * pieces, so the guest's reads of the block's other pages must not map
	 * the poisoned page with them.
	 */
	convert(self->fd, block, SZ_2M, PRIVATE);
	guest_do(self->vcpu, OP_CHECK, next, block + SZ_2M - next, 6);
	guest_do(self->vcpu, OP_CHECK, block, page - block, 6);

	/* Last, as the vCPU stays on it: the poisoned page. */
	assert_guest_gets_hwpoison(self, page);
	close_with_poisoned_page(self);
}

/*
 * Memory failure on a page of a whole shared huge page that keeps HVO (mapped
 * by PMDs here, so no PTE mapping restored its struct pages first) restores
 * the huge page's vmemmap before it marks the page: the page's struct page is
 * one HVO shares read-only, and writing it there oopses (seen with the
 * restore left out).  The rest is as for any poisoned page.  A 1G variant
 * would run the same code and lose one of the boot's four 1G pages for good.
 */
TEST_F_TIMEOUT(conv, memory_failure_restores_a_whole_piece, GMEM_TEST_TIMEOUT)
{
	u64 page = 100 * PAGE_SIZE, next = page + PAGE_SIZE;
	long memmap;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no HVO");
	if (variant->page_shift == 30)
		SKIP(return, "1G: same code as 2M; a poisoned 1G page is lost to the boot");

	share_and_map_whole(self, 19);
	memmap = memmap_pages();
	TEST_ASSERT(madvise(host_page(self, page), PAGE_SIZE, MADV_HWPOISON) &&
		    errno == EBUSY, "MADV_HWPOISON: errno %d", errno);
	TEST_ASSERT_EQ(memmap_pages() - memmap,
		       vmemmap_restored(self->page_size) / PAGE_SIZE);
	TEST_ASSERT(host_read_faults(host_page(self, page)),
		    "the host read a poisoned page it had mapped");
	TEST_ASSERT_EQ(*host_page(self, next), page_tag(next, 19));
	close_with_poisoned_page(self);
}

/*
 * Only guest_memfd splits its folios: madvise(MADV_COLD) and MADV_PAGEOUT on
 * part of a huge mapping, which split a THP there, leave the shared huge
 * pages whole, HVO and all.  Before, mm split a 2M page behind the engine's
 * back, writing tail struct pages that HVO shares read-only.
 */
TEST_F_TIMEOUT(conv, madvise_cold_leaves_huge_pages_whole, GMEM_TEST_TIMEOUT)
{
	u64 nr_huge = self->size / self->page_size;
	char whole[32];
	long memmap;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to split");

	snprintf(whole, sizeof(whole), "%u:%lu ", variant->page_shift - 12, nr_huge);
	share_and_map_whole(self, 20);
	memmap = memmap_pages();
	TEST_ASSERT_EQ(madvise(host_page(self, PAGE_SIZE), PAGE_SIZE, MADV_COLD), 0);
	TEST_ASSERT_EQ(madvise(host_page(self, PAGE_SIZE), PAGE_SIZE, MADV_PAGEOUT), 0);
	assert_folios(self->fd, whole, nr_huge, 0);
	TEST_ASSERT_EQ(memmap_pages(), memmap);
	host_check_pages(self->mem, 0, self->size, 20);
	guest_do(self->vcpu, OP_CHECK, 0, self->size, 20);
}

/* The pfn of the host's page at @p, from /proc/self/pagemap. */
static u64 host_pfn(const void *p)
{
	u64 entry;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	TEST_ASSERT(fd >= 0, "opening pagemap failed, errno %d", errno);
	TEST_ASSERT_EQ(pread(fd, &entry, sizeof(entry),
			     (unsigned long)p / PAGE_SIZE * sizeof(entry)),
		       sizeof(entry));
	close(fd);
	TEST_ASSERT(entry & BIT_ULL(63), "page %p not present", p);
	return entry & GENMASK_ULL(54, 0);
}

/*
 * A private page of a whole huge page poisoned (hwpoison-inject, by pfn: the
 * host cannot map it; the engine never moves memory, so its pfn is the one
 * the page had while shared).  Memory failure marks the hugetlb folio and
 * lists the page; the guest gets EHWPOISON on that page only, the rest of the
 * huge page is mapped at 4K, and the huge page cannot be split, so a
 * conversion to shared fails with EHWPOISON.  A poisoned huge page is never
 * handed out again: with poisoned_page_is_refused this keeps two 1G pages of
 * the test VM's four out of use for good.
 */
TEST_F_TIMEOUT(conv, poisoned_private_page_of_whole_huge_page, GMEM_TEST_TIMEOUT)
{
	u64 page = middle_offset(self->size, self->page_size);
	u64 huge = round_down(page, self->page_size), next = page + PAGE_SIZE;
	struct kvm_memory_attributes2 args = { .offset = next, .size = PAGE_SIZE };
	struct gmem_fdinfo before, after;
	unsigned int merge_delay_ms;
	char pfn[32];
	int fd, r;

	if (variant->page_shift == 12)
		SKIP(return, "order-0 file: no huge page to keep whole");

	guest_do(self->vcpu, OP_WRITE, huge, self->page_size, 7);
	convert(self->fd, page, PAGE_SIZE, 0);
	TEST_ASSERT_EQ(*host_page(self, page), page_tag(page, 7));
	snprintf(pfn, sizeof(pfn), "%#lx", host_pfn(host_page(self, page)));
	/* Whole again at once: merged in the conversion. */
	merge_delay_ms = gmem_set_merge_delay_ms(0);
	convert(self->fd, page, PAGE_SIZE, PRIVATE);
	gmem_set_merge_delay_ms(merge_delay_ms);
	read_gmem_fdinfo(self->fd, &before);
	TEST_ASSERT_EQ(before.split_huge_pages, 0);

	/* The guest maps all of the huge page, at its level. */
	guest_do(self->vcpu, OP_CHECK, huge, self->page_size, 7);
	assert_huge_mappings(self, 1);

	fd = open("/sys/kernel/debug/hwpoison/corrupt-pfn", O_WRONLY);
	TEST_ASSERT(fd >= 0, "hwpoison-inject (CONFIG_HWPOISON_INJECT): errno %d", errno);
	r = write(fd, pfn, strlen(pfn));
	TEST_ASSERT(r == -1 && errno == EBUSY, "corrupt-pfn %s: %d, errno %d", pfn, r, errno);
	close(fd);

	/* Memory failure zapped that mapping at once. */
	assert_huge_mappings(self, 0);

	/* Whole and private: it cannot be split, so no page of it is shared. */
	TEST_ASSERT(__convert(self->fd, &args) == -1 && errno == EHWPOISON,
		    "converting a page of a poisoned huge page: errno %d", errno);
	read_gmem_fdinfo(self->fd, &after);
	TEST_ASSERT(!memcmp(&before, &after, sizeof(before)),
		    "a conversion refused with EHWPOISON changed the file");

	/* The rest of the huge page, at 4K. */
	guest_do(self->vcpu, OP_CHECK, huge, page - huge, 7);
	guest_do(self->vcpu, OP_CHECK, next, huge + self->page_size - next, 7);
	assert_huge_mappings(self, 0);

	assert_guest_gets_hwpoison(self, page);
	close_with_poisoned_page(self);
}

#define CGROUP_ROOT	"/sys/fs/cgroup"
#define CGROUP_TEST	CGROUP_ROOT "/gmem_hugetlb_test"

static void cgroup_write(const char *file, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open(file, O_WRONLY);
	TEST_ASSERT(fd >= 0, "open(%s), errno %d", file, errno);
	TEST_ASSERT(write(fd, buf, n) == n, "writing '%s' to %s, errno %d", buf, file, errno);
	close(fd);
}

/* hugetlb.2MB.<name> of the test's cgroup, in 2M pages. */
static u64 cgroup_2m_pages(const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), CGROUP_TEST "/hugetlb.2MB.%s", name);
	return read_sysfs_ulong(path) / SZ_2M;
}

static void assert_cgroup_2m(u64 rsvd, u64 current)
{
	TEST_ASSERT(cgroup_2m_pages("rsvd.current") == rsvd &&
		    cgroup_2m_pages("current") == current,
		    "hugetlb cgroup: %lu reserved, %lu used 2M pages; expected %lu, %lu",
		    cgroup_2m_pages("rsvd.current"), cgroup_2m_pages("current"),
		    rsvd, current);
}

/* A cgroup v2 hierarchy with the hugetlb controller, and a child for the test. */
FIXTURE(conv_cgroup) {
	struct kvm_vm *vm;
	struct hugetlb_pools pools_before;
};

FIXTURE_SETUP(conv_cgroup)
{
	char controllers[256] = "";
	FILE *f;

	TEST_REQUIRE(vm_type_supported(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_gmem_attributes);
	TEST_REQUIRE(hugetlb_pool_free_pages(21) >= 4);

	if (access(CGROUP_ROOT "/cgroup.controllers", F_OK))
		TEST_ASSERT(!mount("none", CGROUP_ROOT, "cgroup2", 0, NULL),
			    "mounting cgroup2 on " CGROUP_ROOT ", errno %d", errno);
	f = fopen(CGROUP_ROOT "/cgroup.controllers", "r");
	TEST_ASSERT(f && fgets(controllers, sizeof(controllers), f),
		    "reading " CGROUP_ROOT "/cgroup.controllers");
	fclose(f);
	TEST_ASSERT(strstr(controllers, "hugetlb"),
		    "no hugetlb controller (CONFIG_CGROUP_HUGETLB): '%s'", controllers);
	cgroup_write(CGROUP_ROOT "/cgroup.subtree_control", "+hugetlb");
	TEST_ASSERT(!mkdir(CGROUP_TEST, 0755) || errno == EEXIST,
		    "mkdir " CGROUP_TEST ", errno %d", errno);
	cgroup_write(CGROUP_TEST "/cgroup.procs", "%d", getpid());

	read_hugetlb_pools(&self->pools_before);
	self->vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
}

FIXTURE_TEARDOWN(conv_cgroup)
{
	kvm_vm_free(self->vm);
	cgroup_write(CGROUP_ROOT "/cgroup.procs", "%d", getpid());
	TEST_ASSERT(!rmdir(CGROUP_TEST), "rmdir " CGROUP_TEST ", errno %d", errno);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

/*
 * The hugetlb controller charges guest_memfd as it charges hugetlbfs: the
 * file's reservation to hugetlb.<size>.rsvd at creation (over the limit,
 * creation fails with ENOMEM and changes nothing), each huge page to
 * hugetlb.<size>.current when it is allocated (over the limit, the fault gets
 * SIGBUS).  Splits and merges keep the charge, an orphan keeps its page's until
 * it is freed, and nothing stays charged once the file is gone.  The test
 * moves itself into a cgroup of its own in a cgroup v2 hierarchy.
 */
TEST_F_TIMEOUT(conv_cgroup, hugetlb_cgroup_charges, GMEM_TEST_TIMEOUT)
{
	const u64 flags = GUEST_MEMFD_FLAG_HUGE_PAGES | GUEST_MEMFD_FLAG_MMAP |
			  GUEST_MEMFD_FLAG_INIT_SHARED;
	struct hugetlb_pools created;
	struct iovec iov = { .iov_len = PAGE_SIZE };
	int fd, pipefd[2], i;
	u8 *mem;

	/* 4 pages reserved, 2 used at most. */
	cgroup_write(CGROUP_TEST "/hugetlb.2MB.rsvd.max", "%lu", 4ul * SZ_2M);
	cgroup_write(CGROUP_TEST "/hugetlb.2MB.max", "%lu", 2ul * SZ_2M);

	fd = __gmem_create_huge(self->vm, 4 * SZ_2M, flags, 21);
	TEST_ASSERT(fd >= 0, "creating the guest_memfd failed, errno %d", errno);
	assert_cgroup_2m(4, 0);
	assert_hugetlb_pools(&self->pools_before, 21, 0, 4);
	read_hugetlb_pools(&created);

	TEST_ASSERT(__gmem_create_huge(self->vm, SZ_2M, flags, 21) == -1 &&
		    errno == ENOMEM,
		    "a file over the cgroup's reservation limit: errno %d", errno);
	assert_cgroup_2m(4, 0);
	assert_hugetlb_pools(&created, 21, 0, 0);

	/* Two huge pages allocated by the host's faults; the third is over. */
	mem = kvm_mmap(4 * SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	mem[0] = 1;
	mem[SZ_2M] = 2;
	assert_cgroup_2m(4, 2);
	TEST_EXPECT_SIGBUS(mem[2 * SZ_2M] = 3);
	assert_cgroup_2m(4, 2);
	assert_hugetlb_pools(&created, 21, -2, -2);

	/* Split (one 4K page private), merged (all private), split again. */
	gmem_set_private(fd, PAGE_SIZE, PAGE_SIZE);
	assert_cgroup_2m(4, 2);
	gmem_set_private(fd, 0, SZ_2M);
	assert_cgroup_2m(4, 2);
	gmem_set_shared(fd, 0, SZ_2M);
	assert_cgroup_2m(4, 2);
	TEST_ASSERT_EQ(mem[0], 1);

	/*
	 * An orphan: punched while a pipe pins a page of it.  It stays charged
	 * until the pipe lets it go.
	 */
	iov.iov_base = mem + SZ_2M;
	TEST_ASSERT_EQ(pipe(pipefd), 0);
	TEST_ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), PAGE_SIZE);
	TEST_ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 SZ_2M, SZ_2M), 0);
	assert_cgroup_2m(4, 2);
	close(pipefd[0]);
	close(pipefd[1]);
	for (i = 0; i < 100 && cgroup_2m_pages("current") != 1; i++)
		usleep(10000);
	assert_cgroup_2m(4, 1);

	kvm_munmap(mem, 4 * SZ_2M);
	close(fd);
	assert_cgroup_2m(0, 0);
}

TEST_HARNESS_MAIN
