// SPDX-License-Identifier: GPL-2.0-only
/*
 * Every argument of guest_memfd's uAPI in one table: creation flags and
 * sizes, KVM_SET_MEMORY_ATTRIBUTES2, fallocate() modes, offsets and lengths,
 * mmap() flags and protections, and memslot bindings.  Each bad value fails
 * with its documented errno and changes nothing: the hugetlb pools, and the
 * file's shareability and allocated huge folios as fdinfo reports them, are
 * as they were.
 *
 * Then a bounded fuzz of the creation and conversion structs (seeded, the
 * seed printed): every call succeeds or fails with a documented errno, and
 * when all is closed the pools are as they were.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <linux/falloc.h>
#include <linux/memfd.h>
#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "test_util.h"
#include "kselftest_harness.h"

#define PRIVATE		KVM_MEMORY_ATTRIBUTE_PRIVATE
#define HUGE		GUEST_MEMFD_FLAG_HUGE_PAGES
#define MMAP		GUEST_MEMFD_FLAG_MMAP
#define FILE_SIZE	SZ_4M	/* two 2M pages */
#define SLOT		10
#define SLOT_GPA	SZ_4G

enum op { CREATE, CONVERT, FALLOCATE, MMAP_FILE, BIND };

struct bad_input {
	const char *what;
	enum op op;
	int err;
	/* CREATE: the struct; pad and reserved get a 1 at the index given + 1 */
	u64 size, flags;
	u8 log2;
	int pad, reserved;
	/* CONVERT: the struct (size in size), the file without mmap if nommap */
	u64 offset, attributes, conv_flags;
	bool nommap;
	/* FALLOCATE: mode, offset, len */
	int mode;
	/* MMAP_FILE: prot, flags */
	int prot, map_flags;
	/* BIND: which fd (see bind_fd()), guest_memfd_offset, size */
	int fd_kind;
};

enum { FD_OWN, FD_OTHER_VM, FD_MEMFD, FD_CLOSED };

static const struct bad_input bad_inputs[] = {
	/* KVM_CREATE_GUEST_MEMFD */
	{ "create: size 0", CREATE, EINVAL, .size = 0, .flags = MMAP },
	{ "create: size not page-aligned", CREATE, EINVAL, .size = SZ_4K + 1, .flags = MMAP },
	{ "create: negative size", CREATE, EINVAL, .size = 1ull << 63, .flags = MMAP },
	{ "create: flag bit 2 (NO_DIRECT_MAP)", CREATE, EINVAL, .size = SZ_2M, .flags = BIT(2) },
	{ "create: flag bit 63", CREATE, EINVAL, .size = SZ_2M, .flags = BIT_ULL(63) },
	{ "create: HUGE_PAGES without a size", CREATE, EINVAL, .size = SZ_2M, .flags = HUGE },
	{ "create: a size without HUGE_PAGES", CREATE, EINVAL, .size = SZ_2M, .log2 = 21 },
	{ "create: 4K huge pages", CREATE, EINVAL, .size = SZ_2M, .flags = HUGE, .log2 = 12 },
	{ "create: 4M huge pages (no pool)", CREATE, EINVAL,
	  .size = SZ_4M, .flags = HUGE, .log2 = 22 },
	{ "create: 2G huge pages (beyond the cap)", CREATE, EINVAL,
	  .size = SZ_2G, .flags = HUGE, .log2 = 31 },
	{ "create: size not whole 2M pages", CREATE, EINVAL,
	  .size = SZ_2M + SZ_4K, .flags = HUGE, .log2 = 21 },
	{ "create: size not whole 1G pages", CREATE, EINVAL,
	  .size = SZ_1G + SZ_2M, .flags = HUGE, .log2 = 30 },
	{ "create: non-zero pad", CREATE, EINVAL,
	  .size = SZ_2M, .flags = HUGE, .log2 = 21, .pad = 1 },
	{ "create: non-zero last reserved word", CREATE, EINVAL,
	  .size = SZ_2M, .flags = HUGE, .log2 = 21, .reserved = 5 },
	{ "create: more than the 2M pool", CREATE, ENOMEM,
	  .size = 1ull << 40, .flags = HUGE, .log2 = 21 },
	/* KVM_SET_MEMORY_ATTRIBUTES2 */
	{ "convert: unaligned offset", CONVERT, EINVAL, .offset = 1, .size = SZ_4K },
	{ "convert: unaligned size", CONVERT, EINVAL, .size = SZ_4K - 1 },
	{ "convert: size 0", CONVERT, EINVAL, .size = 0 },
	{ "convert: past the end", CONVERT, EINVAL, .offset = FILE_SIZE - SZ_4K, .size = SZ_8K },
	{ "convert: offset + size wraps", CONVERT, EINVAL, .offset = -SZ_4K, .size = SZ_8K },
	{ "convert: unknown attribute", CONVERT, EINVAL, .size = SZ_4K, .attributes = BIT(0) },
	{ "convert: private and bit 63", CONVERT, EINVAL,
	  .size = SZ_4K, .attributes = PRIVATE | BIT_ULL(63) },
	{ "convert: flags", CONVERT, EINVAL, .size = SZ_4K, .conv_flags = 1 },
	{ "convert: reserved word", CONVERT, EINVAL, .size = SZ_4K, .reserved = 10 },
	{ "convert: file without mmap", CONVERT, EOPNOTSUPP, .size = SZ_4K, .nommap = true },
	/* fallocate() */
	{ "fallocate: without KEEP_SIZE", FALLOCATE, EOPNOTSUPP, .mode = 0, .size = SZ_2M },
	{ "fallocate: ZERO_RANGE", FALLOCATE, EOPNOTSUPP,
	  .mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, .size = SZ_2M },
	{ "fallocate: offset inside a huge page", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_KEEP_SIZE, .offset = SZ_4K, .size = SZ_2M },
	{ "fallocate: part of a huge page", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_KEEP_SIZE, .size = SZ_1M },
	{ "fallocate: unaligned length", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_KEEP_SIZE, .size = SZ_2M + 1 },
	{ "fallocate: beyond the end", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_KEEP_SIZE, .offset = SZ_2M, .size = SZ_4M },
	{ "fallocate: length 0", FALLOCATE, EINVAL, .mode = FALLOC_FL_KEEP_SIZE, .size = 0 },
	{ "fallocate: negative offset", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_KEEP_SIZE, .offset = -SZ_2M, .size = SZ_2M },
	{ "punch hole: inside a huge page", FALLOCATE, EINVAL,
	  .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, .offset = SZ_4K, .size = SZ_4K },
	/* mmap() */
	{ "mmap: file without mmap", MMAP_FILE, ENODEV,
	  .prot = PROT_READ, .map_flags = MAP_SHARED, .nommap = true },
	{ "mmap: MAP_PRIVATE", MMAP_FILE, EINVAL, .prot = PROT_READ, .map_flags = MAP_PRIVATE },
	{ "mmap: PROT_EXEC (noexec)", MMAP_FILE, EPERM,
	  .prot = PROT_READ | PROT_EXEC, .map_flags = MAP_SHARED },
	/* KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD */
	{ "bind: unaligned guest_memfd_offset", BIND, EINVAL, .offset = 1, .size = SZ_2M },
	{ "bind: beyond the end of the file", BIND, EINVAL, .offset = SZ_2M, .size = SZ_4M },
	{ "bind: offset + size wraps", BIND, EINVAL, .offset = -SZ_2M, .size = SZ_4M },
	{ "bind: another VM's guest_memfd", BIND, EINVAL, .size = SZ_2M, .fd_kind = FD_OTHER_VM },
	{ "bind: a memfd", BIND, EINVAL, .size = SZ_2M, .fd_kind = FD_MEMFD },
	{ "bind: a closed fd", BIND, EBADF, .size = SZ_2M, .fd_kind = FD_CLOSED },
};

FIXTURE(bad) {
	struct kvm_vm *vm, *other_vm;
	struct hugetlb_pools pools_before;
	int fd;		/* 4M of 2M pages, mmap-able, private */
	int nommap_fd;	/* the same without GUEST_MEMFD_FLAG_MMAP */
	int other_fd;	/* another VM's */
};

static bool sw_protected_supported(void)
{
	return kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM);
}

FIXTURE_SETUP(bad)
{
	TEST_REQUIRE(sw_protected_supported());
	read_hugetlb_pools(&self->pools_before);

	self->vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	self->other_vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	self->fd = __gmem_create_huge(self->vm, FILE_SIZE, HUGE | MMAP, 21);
	self->nommap_fd = __gmem_create_huge(self->vm, FILE_SIZE, HUGE, 21);
	self->other_fd = __gmem_create_huge(self->other_vm, FILE_SIZE, HUGE | MMAP, 21);
	TEST_ASSERT(self->fd >= 0 && self->nommap_fd >= 0 && self->other_fd >= 0,
		    "creating the guest_memfds failed, errno %d", errno);
	/* Something allocated and something shared, for fdinfo to show. */
	TEST_ASSERT_EQ(fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, SZ_2M), 0);
}

FIXTURE_TEARDOWN(bad)
{
	close(self->fd);
	close(self->nommap_fd);
	close(self->other_fd);
	kvm_vm_free(self->other_vm);
	kvm_vm_free(self->vm);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

/* The whole of /proc/self/fdinfo/@fd, guest_memfd's lines included. */
struct gmem_fdinfo_raw {
	char text[1024];
};

static void read_gmem_fdinfo_raw(int fd, struct gmem_fdinfo_raw *info)
{
	char path[64];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	n = fread(info->text, 1, sizeof(info->text) - 1, f);
	info->text[n] = 0;
	fclose(f);
	TEST_ASSERT(strstr(info->text, "gmem_shareability_ranges:"),
		    "no guest_memfd lines in %s", path);
}

static int try_create(struct kvm_vm *vm, const struct bad_input *b)
{
	struct kvm_create_guest_memfd args = {
		.size = b->size, .flags = b->flags, .huge_page_size_log2 = b->log2,
	};
	int fd;

	if (b->pad)
		args.pad[b->pad - 1] = 1;
	if (b->reserved)
		args.reserved[b->reserved - 1] = 1;
	fd = __vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
	if (fd >= 0) {
		close(fd);
		errno = 0;
		return 0;
	}
	return -1;
}

static int try_convert(FIXTURE_DATA(bad) * self, const struct bad_input *b)
{
	struct kvm_memory_attributes2 args = {
		.offset = b->offset, .size = b->size,
		.attributes = b->attributes, .flags = b->conv_flags,
	};

	if (b->reserved)
		args.reserved[b->reserved - 1] = 1;
	return ioctl(b->nommap ? self->nommap_fd : self->fd,
		     KVM_SET_MEMORY_ATTRIBUTES2, &args);
}

static int try_mmap(FIXTURE_DATA(bad) * self, const struct bad_input *b)
{
	void *p = mmap(NULL, FILE_SIZE, b->prot, b->map_flags,
		       b->nommap ? self->nommap_fd : self->fd, 0);

	if (p == MAP_FAILED)
		return -1;
	munmap(p, FILE_SIZE);
	return 0;
}

static int try_bind(FIXTURE_DATA(bad) * self, const struct bad_input *b)
{
	int fd = self->fd, r;

	switch (b->fd_kind) {
	case FD_OTHER_VM:
		fd = self->other_fd;
		break;
	case FD_MEMFD:
		fd = memfd_create("not-gmem", 0);
		TEST_ASSERT(fd >= 0 && !ftruncate(fd, FILE_SIZE), "memfd");
		break;
	case FD_CLOSED:
		fd = dup(self->fd);
		close(fd);
		break;
	}
	r = __vm_set_user_memory_region2(self->vm, SLOT, KVM_MEM_GUEST_MEMFD,
					 SLOT_GPA, b->size, NULL, fd, b->offset);
	if (b->fd_kind == FD_MEMFD)
		close(fd);
	return r;
}

TEST_F_TIMEOUT(bad, every_argument, GMEM_TEST_TIMEOUT)
{
	struct gmem_fdinfo_raw before, after;
	struct hugetlb_pools pools;
	int i, r = 0;

	for (i = 0; i < ARRAY_SIZE(bad_inputs); i++) {
		const struct bad_input *b = &bad_inputs[i];

		read_hugetlb_pools(&pools);
		read_gmem_fdinfo_raw(self->fd, &before);
		errno = 0;
		switch (b->op) {
		case CREATE:
			r = try_create(self->vm, b);
			break;
		case CONVERT:
			r = try_convert(self, b);
			break;
		case FALLOCATE:
			r = fallocate(self->fd, b->mode, b->offset, b->size);
			break;
		case MMAP_FILE:
			r = try_mmap(self, b);
			break;
		case BIND:
			r = try_bind(self, b);
			break;
		}
		TEST_ASSERT(r == -1 && errno == b->err,
			    "%s: expected errno %d, got %d/%d", b->what, b->err, r, errno);
		assert_hugetlb_pools(&pools, 0, 0, 0);
		read_gmem_fdinfo_raw(self->fd, &after);
		TEST_ASSERT(!strcmp(before.text, after.text),
			    "%s changed the file:\n%s\n->\n%s", b->what, before.text,
			    after.text);
		ksft_print_msg("%-50s %s\n", b->what, strerror(b->err));
	}
	ksft_print_msg("%zu bad inputs\n", ARRAY_SIZE(bad_inputs));
}

/* A bound and a good binding make an overlapping one fail with EEXIST. */
TEST_F_TIMEOUT(bad, overlapping_binding, GMEM_TEST_TIMEOUT)
{
	struct gmem_fdinfo_raw before, after;

	vm_set_user_memory_region2(self->vm, SLOT, KVM_MEM_GUEST_MEMFD, SLOT_GPA,
				   SZ_2M, NULL, self->fd, 0);
	read_gmem_fdinfo_raw(self->fd, &before);
	TEST_ASSERT(__vm_set_user_memory_region2(self->vm, SLOT + 1, KVM_MEM_GUEST_MEMFD,
						 SLOT_GPA + SZ_1G, SZ_2M, NULL,
						 self->fd, 0) == -1 && errno == EEXIST,
		    "binding a bound range again: expected EEXIST, errno %d", errno);
	read_gmem_fdinfo_raw(self->fd, &after);
	TEST_ASSERT(!strcmp(before.text, after.text), "the failed binding changed the file");
}

static u64 pick(const u64 *values, int n)
{
	return values[random() % n];
}

/*
 * Random creation and conversion requests, mostly near the valid ones: each
 * succeeds or fails with a documented errno.  The pools are checked when
 * everything is closed (teardown).
 */
TEST_F_TIMEOUT(bad, fuzz, GMEM_TEST_TIMEOUT)
{
	static const u64 sizes[] = {
		0, 1, SZ_4K, SZ_4K + 1, SZ_2M, SZ_2M + SZ_4K, SZ_4M, SZ_1G,
		SZ_1G + SZ_2M, 1ull << 40, -SZ_4K, -1ull,
	};
	static const u64 offsets[] = {
		0, 1, SZ_4K, SZ_2M - SZ_4K, SZ_2M, FILE_SIZE - SZ_4K, FILE_SIZE,
		-SZ_4K, -1ull,
	};
	unsigned int seed = getenv("SEED") ? atoi(getenv("SEED")) : time(NULL);
	int i, created = 0, converted = 0, refused = 0;

	ksft_print_msg("seed %u (SEED=%u reproduces this run)\n", seed, seed);
	srandom(seed);

	for (i = 0; i < 2000; i++) {
		struct kvm_create_guest_memfd c = { 0 };
		struct kvm_memory_attributes2 a = { 0 };
		int r, fd;

		if (random() % 2) {
			c.size = pick(sizes, ARRAY_SIZE(sizes));
			c.flags = random() % 2 ? random() & 0xf : random() | (u64)random() << 32;
			c.huge_page_size_log2 = random() % 3 ? pick((u64[]){ 0, 21, 30 }, 3)
							     : random() & 0xff;
			if (!(random() % 8))
				c.reserved[random() % ARRAY_SIZE(c.reserved)] = random();
			fd = __vm_ioctl(self->vm, KVM_CREATE_GUEST_MEMFD, &c);
			if (fd >= 0) {
				created++;
				close(fd);
				continue;
			}
			TEST_ASSERT(errno == EINVAL || errno == ENOMEM,
				    "create size %#llx flags %#llx log2 %u: errno %d",
				    c.size, c.flags, c.huge_page_size_log2, errno);
		} else {
			a.offset = pick(offsets, ARRAY_SIZE(offsets));
			a.size = pick(sizes, ARRAY_SIZE(sizes));
			a.attributes = random() % 4 ? (random() % 2) * PRIVATE : random();
			a.flags = !(random() % 8);
			if (!(random() % 8))
				a.reserved[random() % ARRAY_SIZE(a.reserved)] = random();
			r = ioctl(self->fd, KVM_SET_MEMORY_ATTRIBUTES2, &a);
			if (!r) {
				converted++;
				continue;
			}
			TEST_ASSERT(errno == EINVAL || errno == ENOMEM,
				    "convert offset %#llx size %#llx attributes %#llx flags %#llx: errno %d",
				    a.offset, a.size, a.attributes, a.flags, errno);
		}
		refused++;
	}
	ksft_print_msg("fuzz: %d created, %d converted, %d refused\n", created,
		       converted, refused);
}

TEST_HARNESS_MAIN
