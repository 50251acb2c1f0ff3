// SPDX-License-Identifier: GPL-2.0-only
/*
 * Every allocation of guest_memfd's conversions, splits, merges, huge page
 * allocations and file creation made to fail, one at a time, for files of 2M
 * and 1G hugetlb pages.
 *
 * The kernel's fault injection fails the n-th allocation this thread makes
 * (/proc/thread-self/fail-nth, with failslab and fail_page_alloc armed for
 * every allocation), for n = 1, 2, ... until an operation makes fewer than n:
 * every allocation on its path fails once (past the first 64, every eighth or
 * so: a 1G split restores 4095 pages of struct pages one by one).  Each
 * failure must return ENOMEM and change nothing: fdinfo (shareability, folio
 * orders, splits) and the hugetlb pools are as before.  An allocation that
 * may fail (a merge's HVO, an xarray node retried with a sleeping
 * allocation) must not fail the operation: its result is the one without
 * injection.  The contents of the file survive it all.
 *
 * Fault injection reports each failure with a stack in the kernel log: the
 * test reads them from /dev/kmsg and prints, per operation, where the
 * failures were, and asserts that guest_memfd's own allocation sites were
 * among them.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest_harness.h"

#define PRIVATE		KVM_MEMORY_ATTRIBUTE_PRIVATE
#define SHARED		0
#define DEBUGFS		"/sys/kernel/debug"
#define EXHAUSTIVE_N	64	/* every n up to this, then a stride */
#define MAX_SITES	128
#define MAX_ROUNDS	10	/* passes over the operations, at most */

/*
 * Fault injection fails every allocation it is asked to (the defaults skip
 * sleeping ones and order-0 pages), and reports each with its stack.
 */
static const struct {
	const char *path, *value;
} knobs[] = {
	{ DEBUGFS "/failslab/ignore-gfp-wait", "N" },
	{ DEBUGFS "/failslab/verbose", "2" },
	{ DEBUGFS "/failslab/verbose_ratelimit_interval_ms", "0" },
	{ DEBUGFS "/fail_page_alloc/ignore-gfp-wait", "N" },
	{ DEBUGFS "/fail_page_alloc/ignore-gfp-highmem", "N" },
	{ DEBUGFS "/fail_page_alloc/min-order", "0" },
	{ DEBUGFS "/fail_page_alloc/verbose", "2" },
	{ DEBUGFS "/fail_page_alloc/verbose_ratelimit_interval_ms", "0" },
};

/* Their values before the test, to restore. */
static char saved_knobs[ARRAY_SIZE(knobs)][32];

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);

	TEST_ASSERT(fd >= 0 && write(fd, value, strlen(value)) == strlen(value),
		    "writing %s to %s failed, errno %d", value, path, errno);
	close(fd);
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	TEST_ASSERT(fd >= 0, "opening %s failed, errno %d", path, errno);
	n = read(fd, buf, size - 1);
	TEST_ASSERT(n >= 0, "reading %s failed, errno %d", path, errno);
	buf[n] = 0;
	close(fd);
}

static void arm_fault_injection(void)
{
	int i;

	if (access(DEBUGFS "/failslab", F_OK))
		mount("debugfs", DEBUGFS, "debugfs", 0, NULL);
	TEST_ASSERT(!access(DEBUGFS "/failslab", F_OK) &&
		    !access(DEBUGFS "/fail_page_alloc", F_OK) &&
		    !access("/proc/thread-self/fail-nth", F_OK),
		    "fault injection needs CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC and CONFIG_FAULT_INJECTION_DEBUG_FS");
	for (i = 0; i < ARRAY_SIZE(knobs); i++) {
		read_file(knobs[i].path, saved_knobs[i], sizeof(saved_knobs[i]));
		write_file(knobs[i].path, knobs[i].value);
	}
}

static void disarm_fault_injection(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(knobs); i++)
		write_file(knobs[i].path, saved_knobs[i]);
}

/*
 * Where injected failures were: the first two frames of each stack below the
 * allocator, and how often.
 */
struct sites {
	int kmsg;
	int nr;
	struct {
		char where[96];
		char stack[512];	/* every frame, for the assertions */
		int count;
	} site[MAX_SITES];
	int silent;	/* failures of allocations that asked not to warn */
};

static bool allocator_frame(const char *fn)
{
	static const char * const prefixes[] = {
		"dump_stack", "__dump_stack", "show_stack", "fail_dump",
		"should_fail", "__should_fail", "should_failslab",
		"prepare_alloc_pages", "__alloc_pages", "alloc_pages",
		"__alloc_frozen_pages", "alloc_frozen_pages", "__folio_alloc",
		"folio_alloc", "__kmalloc", "kmalloc", "__kmem_cache",
		"kmem_cache_alloc", "slab_pre_alloc", "slab_alloc", "__slab_alloc",
		"___slab_alloc", "__do_kmalloc", "kzalloc", "kvmalloc",
		"__kvmalloc", "xas_alloc", "alloc_slab", "allocate_slab",
		"new_slab",
	};
	int i;

	for (i = 0; i < ARRAY_SIZE(prefixes); i++) {
		if (!strncmp(fn, prefixes[i], strlen(prefixes[i])))
			return true;
	}
	return false;
}

static void sites_open(struct sites *s)
{
	memset(s, 0, sizeof(*s));
	s->kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	TEST_ASSERT(s->kmsg >= 0, "opening /dev/kmsg failed, errno %d", errno);
	lseek(s->kmsg, 0, SEEK_END);
}

/* The frame of a kmsg record of a stack ("4,12,34,-;  foo+0x1/0x2"), or NULL. */
static char *frame(char *record)
{
	char *msg = strchr(record, ';'), *end;

	if (!msg)
		return NULL;
	msg++;
	while (*msg == ' ')
		msg++;
	if (*msg == '?')	/* unreliable */
		return NULL;
	end = strchr(msg, '+');
	if (!end || !strstr(end, "/0x"))
		return NULL;
	*end = 0;
	return msg;
}

/* Record the failure the last operation's injection made. */
static void sites_collect(struct sites *s)
{
	char record[1024], where[96] = "", stack[512] = "";
	bool in_stack = false, found = false;
	int nframes = 0, i;
	ssize_t n;

	/* printk is synchronous to /dev/kmsg: the records are there. */
	while ((n = read(s->kmsg, record, sizeof(record) - 1)) > 0) {
		char *fn;

		record[n] = 0;
		if (strstr(record, "FAULT_INJECTION: forcing a failure")) {
			in_stack = true;
			found = true;
			continue;
		}
		if (!in_stack)
			continue;
		if (strstr(record, "</TASK>")) {
			in_stack = false;
			continue;
		}
		fn = frame(record);
		if (!fn)
			continue;
		if (strlen(stack) + strlen(fn) + 2 < sizeof(stack)) {
			strcat(stack, fn);
			strcat(stack, " ");
		}
		if (allocator_frame(fn) || nframes >= 2)
			continue;
		if (nframes++)
			strcat(where, " < ");
		strncat(where, fn, sizeof(where) - strlen(where) - 1);
	}
	if (!found) {
		s->silent++;
		return;
	}
	for (i = 0; i < s->nr; i++) {
		if (!strcmp(s->site[i].where, where))
			break;
	}
	if (i == s->nr) {
		TEST_ASSERT(s->nr < MAX_SITES, "too many allocation sites");
		s->nr++;
		snprintf(s->site[i].where, sizeof(s->site[i].where), "%s", where);
		snprintf(s->site[i].stack, sizeof(s->site[i].stack), "%s", stack);
	}
	s->site[i].count++;
}

static void sites_print(struct sites *s, const char *op)
{
	int i;

	for (i = 0; i < s->nr; i++)
		ksft_print_msg("  %-22s %4d x %s\n", op, s->site[i].count,
			       s->site[i].where);
	if (s->silent)
		ksft_print_msg("  %-22s %4d x (an allocation that does not warn)\n",
			       op, s->silent);
}

/* The first of @fns that no injected failure had on its stack, or NULL. */
static const char *sites_missing(struct sites *s, const char * const *fns,
				 int nr_fns)
{
	int i, j;

	for (j = 0; j < nr_fns; j++) {
		for (i = 0; i < s->nr; i++) {
			if (strstr(s->site[i].stack, fns[j]))
				break;
		}
		if (i == s->nr)
			return fns[j];
	}
	return NULL;
}

/* The first site whose stack has @fn, or NULL. */
static const char *sites_with(struct sites *s, const char *fn)
{
	int i;

	for (i = 0; i < s->nr; i++) {
		if (strstr(s->site[i].stack, fn))
			return s->site[i].where;
	}
	return NULL;
}

/* The whole of /proc/self/fdinfo/@fd, guest_memfd's lines included. */
struct fdinfo {
	char text[1024];
};

static void read_fdinfo(int fd, struct fdinfo *info)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	read_file(path, info->text, sizeof(info->text));
	TEST_ASSERT(strstr(info->text, "gmem_folio_orders:"),
		    "no guest_memfd lines in %s", path);
}

FIXTURE(inject) {
	struct kvm_vm *vm;
	int fd;
	u64 page_size, size;
	u8 log2;
	char *mem;
	int fail_nth;
	unsigned int merge_delay_ms;
	struct hugetlb_pools pools_before;
};

FIXTURE_VARIANT(inject) {
	u8 log2;
	int nr_pages;
};

FIXTURE_VARIANT_ADD(inject, huge_2m) { .log2 = 21, .nr_pages = 2 };
FIXTURE_VARIANT_ADD(inject, huge_1g) { .log2 = 30, .nr_pages = 1 };

FIXTURE_SETUP(inject)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(hugetlb_pool_free_pages(variant->log2) >= variant->nr_pages);
	arm_fault_injection();
	/* Merges in the conversion itself: on its path, with its fail-nth. */
	self->merge_delay_ms = gmem_set_merge_delay_ms(0);
	read_hugetlb_pools(&self->pools_before);

	self->log2 = variant->log2;
	self->page_size = 1ull << variant->log2;
	self->size = self->page_size * variant->nr_pages;
	self->vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	self->fd = __gmem_create_huge(self->vm, self->size,
				      GUEST_MEMFD_FLAG_HUGE_PAGES |
				      GUEST_MEMFD_FLAG_MMAP, self->log2);
	TEST_ASSERT(self->fd >= 0, "creating the guest_memfd failed, errno %d", errno);
	self->mem = mmap(NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 self->fd, 0);
	TEST_ASSERT(self->mem != MAP_FAILED, "mmap failed, errno %d", errno);
	self->fail_nth = open("/proc/thread-self/fail-nth", O_RDWR);
	TEST_ASSERT(self->fail_nth >= 0, "opening fail-nth failed, errno %d", errno);
}

FIXTURE_TEARDOWN(inject)
{
	close(self->fail_nth);
	munmap(self->mem, self->size);
	close(self->fd);
	kvm_vm_free(self->vm);
	disarm_fault_injection();
	gmem_set_merge_delay_ms(self->merge_delay_ms);
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

static int convert(int fd, u64 offset, u64 size, u64 attributes)
{
	if (attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE)
		return __gmem_set_private(fd, offset, size, NULL);
	return __gmem_set_shared(fd, offset, size, NULL);
}

static void must_convert(int fd, u64 offset, u64 size, u64 attributes)
{
	if (attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE)
		gmem_set_private(fd, offset, size);
	else
		gmem_set_shared(fd, offset, size);
}

static void must_fallocate(int fd, int mode, u64 offset, u64 size)
{
	TEST_ASSERT(!fallocate(fd, mode, offset, size),
		    "fallocate(%#x, %#lx, %#lx) failed, errno %d", mode, offset,
		    size, errno);
}

/* The pages the contents are checked on, in every 2M block. */
static const u64 tagged_pages[] = { 0, SZ_1M, SZ_2M - PAGE_SIZE };

static u64 tag(u64 offset)
{
	return 0x676d656d00000000ull ^ offset;
}

/* Write each tagged page's tag, or check that it holds it. */
static void tag_pages(FIXTURE_DATA(inject) * self, bool check)
{
	u64 block, offset, *p;
	int i;

	for (block = 0; block < self->size; block += SZ_2M) {
		for (i = 0; i < ARRAY_SIZE(tagged_pages); i++) {
			offset = block + tagged_pages[i];
			p = (u64 *)(self->mem + offset);
			if (!check)
				*p = tag(offset);
			else
				TEST_ASSERT(*p == tag(offset), "page %#lx: %#lx, expected %#lx",
					    offset, *p, tag(offset));
		}
	}
}

/* One operation under test, and how to set up the state it starts from. */
struct op {
	const char *name;
	void (*prepare)(FIXTURE_DATA(inject) * self);
	int (*run)(FIXTURE_DATA(inject) * self);
};

static void all_private(FIXTURE_DATA(inject) * self)
{
	must_convert(self->fd, 0, self->size, PRIVATE);
}

static void all_shared(FIXTURE_DATA(inject) * self)
{
	all_private(self);	/* whole huge pages first */
	must_convert(self->fd, 0, self->size, SHARED);
}

static void one_page_shared(FIXTURE_DATA(inject) * self)
{
	all_private(self);
	must_convert(self->fd, 3 * PAGE_SIZE, PAGE_SIZE, SHARED);
}

/* An order-0 page of a huge page made shared: split down to 4K. */
static int page_to_shared(FIXTURE_DATA(inject) * self)
{
	return convert(self->fd, 3 * PAGE_SIZE, PAGE_SIZE, SHARED);
}

/* A 2M block made shared: a 1G page split into 2M, a 2M page made ordinary. */
static int block_to_shared(FIXTURE_DATA(inject) * self)
{
	return convert(self->fd, SZ_2M, SZ_2M, SHARED);
}

/*
 * An order-0 page made private: in a shared huge page, split down to 4K; in a
 * huge page where it was the only shared one, merged, HVO re-applied.
 */
static int page_to_private(FIXTURE_DATA(inject) * self)
{
	return convert(self->fd, 3 * PAGE_SIZE, PAGE_SIZE, PRIVATE);
}

/*
 * Pages at the end of one huge page and the start of the next made private,
 * from all shared: both huge pages split, the second may fail after the first
 * did (a 1G file has one huge page: the range is inside it).
 */
static int range_to_private(FIXTURE_DATA(inject) * self)
{
	return convert(self->fd, SZ_2M - PAGE_SIZE, 2 * PAGE_SIZE, PRIVATE);
}

static void hole(FIXTURE_DATA(inject) * self)
{
	must_fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		       self->size);
	all_private(self);
}

static void hole_one_page_shared(FIXTURE_DATA(inject) * self)
{
	hole(self);
	must_convert(self->fd, 3 * PAGE_SIZE, PAGE_SIZE, SHARED);
}

static void allocated_one_page_shared(FIXTURE_DATA(inject) * self)
{
	must_fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, self->size);
	one_page_shared(self);
}

/* A huge page allocated: all private, or split right away. */
static int allocate(FIXTURE_DATA(inject) * self)
{
	return fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, self->page_size);
}

/* A split huge page punched out: merged, then freed to the pool. */
static int punch_split(FIXTURE_DATA(inject) * self)
{
	return fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			 self->page_size);
}

static void nothing(FIXTURE_DATA(inject) * self)
{
}

/* A file created: its inode, reservation and shareability. */
static int create(FIXTURE_DATA(inject) * self)
{
	int fd = __gmem_create_huge(self->vm, self->page_size,
				    GUEST_MEMFD_FLAG_HUGE_PAGES |
				    GUEST_MEMFD_FLAG_MMAP, self->log2);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static void set_fail_nth(FIXTURE_DATA(inject) * self, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	TEST_ASSERT(pwrite(self->fail_nth, buf, len, 0) == len,
		    "writing fail-nth failed, errno %d", errno);
}

/* Whether the n-th allocation failed, and fault injection disarmed. */
static bool injected(FIXTURE_DATA(inject) * self)
{
	char buf[16] = "";

	TEST_ASSERT(pread(self->fail_nth, buf, sizeof(buf) - 1, 0) > 0,
		    "reading fail-nth failed, errno %d", errno);
	if (atoi(buf) == 0)
		return true;
	set_fail_nth(self, 0);
	return false;
}

/* The next n to try: all up to EXHAUSTIVE_N, then about 1/8 further each. */
static unsigned int next_n(unsigned int n)
{
	return n < EXHAUSTIVE_N ? n + 1 : n + n / 8;
}

/*
 * Run @op with its n-th allocation failing, for every n until it makes fewer
 * allocations than n, starting each time from the state @op->prepare sets up.
 */
static void inject_every_allocation(FIXTURE_DATA(inject) * self,
				    const struct op *op, struct sites *sites)
{
	struct fdinfo before, after, expected;
	struct hugetlb_pools pools;
	unsigned int n, failed = 0, survived = 0;
	int r, err;

	/* What @op leaves when nothing fails. */
	op->prepare(self);
	r = op->run(self);
	err = errno;
	TEST_ASSERT(!r, "%s failed, errno %d", op->name, err);
	read_fdinfo(self->fd, &expected);

	for (n = 1; ; n = next_n(n)) {
		op->prepare(self);
		read_hugetlb_pools(&pools);
		read_fdinfo(self->fd, &before);

		set_fail_nth(self, n);
		r = op->run(self);
		err = errno;
		if (!injected(self)) {
			TEST_ASSERT(!r, "%s failed without injection, errno %d",
				    op->name, err);
			break;
		}
		sites_collect(sites);

		read_fdinfo(self->fd, &after);
		if (!r) {
			survived++;
			TEST_ASSERT(!strcmp(after.text, expected.text),
				    "%s, allocation %u failing, succeeded with:\n%s\nexpected:\n%s",
				    op->name, n, after.text, expected.text);
			continue;
		}
		failed++;
		TEST_ASSERT(err == ENOMEM, "%s, allocation %u failing: errno %d, expected ENOMEM",
			    op->name, n, err);
		TEST_ASSERT(!strcmp(after.text, before.text),
			    "%s, allocation %u failing, changed the file:\n%s\n->\n%s",
			    op->name, n, before.text, after.text);
		assert_hugetlb_pools(&pools, 0, 0, 0);
	}
	ksft_print_msg("%-22s %u allocations: %u failed it with ENOMEM, %u did not fail it\n",
		       op->name, n - 1, failed, survived);
}

/* Add to @all the sites of @op_sites it does not have yet (by stack). */
static void sites_keep(struct sites *all, const struct sites *op_sites)
{
	int i, j;

	for (j = 0; j < op_sites->nr; j++) {
		for (i = 0; i < all->nr; i++) {
			if (!strcmp(all->site[i].stack, op_sites->site[j].stack))
				break;
		}
		if (i < all->nr)
			continue;
		TEST_ASSERT(all->nr < MAX_SITES, "too many allocation sites");
		all->site[all->nr++] = op_sites->site[j];
	}
}

static void run_ops_once(FIXTURE_DATA(inject) * self, const struct op *ops,
			 int nr_ops, struct sites *sites)
{
	int i;

	for (i = 0; i < nr_ops; i++) {
		struct sites op_sites;

		sites_open(&op_sites);
		inject_every_allocation(self, &ops[i], &op_sites);
		sites_print(&op_sites, ops[i].name);
		close(op_sites.kmsg);

		sites_keep(sites, &op_sites);
	}
}

/*
 * Run @ops until a failure was injected into each of @expected, MAX_ROUNDS
 * times at most.  Which allocation is the n-th is not the same from one run
 * to the next (a slab that needs a new page allocates it, a debug kernel's
 * kmemleak and KASAN allocate along), so one pass may step over a site: on a
 * debug kernel, one creation pass in ten stepped over one of its three sites
 * (and three passes in a row did, once, in CI).  A round that finds them all
 * ends the loop, so the bound only costs time when a site stays missing.
 */
static struct sites run_ops(FIXTURE_DATA(inject) * self, const struct op *ops,
			    int nr_ops, const char * const *expected, int nr_expected)
{
	struct sites sites = {};
	const char *missing;
	int round;

	for (round = 1; ; round++) {
		run_ops_once(self, ops, nr_ops, &sites);
		missing = sites_missing(&sites, expected, nr_expected);
		if (!missing || round == MAX_ROUNDS)
			break;
		ksft_print_msg("no failure injected into %s yet: again\n", missing);
	}
	TEST_ASSERT(!missing, "no injected failure had %s on its stack", missing);
	return sites;
}

/*
 * Conversions both ways: the splits they need (with their record, page cache
 * nodes and struct pages), the shareability nodes, and the merges.  The
 * contents written before are intact after.
 */
TEST_F_TIMEOUT(inject, conversions, 900)
{
	static const struct op ops[] = {
		{ "page to shared", all_private, page_to_shared },
		{ "2M block to shared", all_private, block_to_shared },
		{ "page to private", all_shared, page_to_private },
		{ "page back to private", one_page_shared, page_to_private },
		{ "range to private", all_shared, range_to_private },
	};
	/* 1G: the struct pages of the 2M pieces that keep HVO, too. */
	static const char * const expected[] = {
		"gmem_shareability_prepare", "gmem_hugetlb_split",
		"xas_split_alloc", "vmemmap", "hugetlb_vmemmap_prepare_split_pages",
	};
	int nr_expected = ARRAY_SIZE(expected) - (variant->log2 != 30 ||
						   !gmem_get_keep_hvo_on_split());
	struct sites sites;
	const char *frozen;

	all_shared(self);
	tag_pages(self, false);

	sites = run_ops(self, ops, ARRAY_SIZE(ops), expected, nr_expected);

	/*
	 * A merge (and a failed conversion's join) re-applies HVO, and a split
	 * of a 1G page lays out the struct pages of its 2M pieces, with the
	 * references frozen, while lookups wait: what that allocates is
	 * allocated before the freeze, so no failure is injected into them
	 * (hugetlb_vmemmap_optimize_folio(), _pages(), hugetlb_vmemmap_split_pages()).
	 */
	frozen = sites_with(&sites, "hugetlb_vmemmap_optimize_");
	if (!frozen)
		frozen = sites_with(&sites, "hugetlb_vmemmap_split_pages");
	TEST_ASSERT(!frozen, "an allocation with references frozen: %s", frozen);

	all_shared(self);
	tag_pages(self, true);
}

/* Huge pages allocated, all private or split right away, and punched. */
TEST_F_TIMEOUT(inject, allocation, 900)
{
	static const struct op ops[] = {
		{ "allocate private", hole, allocate },
		{ "allocate with shared", hole_one_page_shared, allocate },
		{ "punch a split page", allocated_one_page_shared, punch_split },
	};
	/* The split of a huge page allocated with shared pages in it. */
	static const char * const expected[] = {
		"kvm_gmem_get_folio", "gmem_hugetlb_split", "vmemmap",
	};

	run_ops(self, ops, ARRAY_SIZE(ops), expected, ARRAY_SIZE(expected));
}

/* Files created: their inode, hugetlb reservation and shareability. */
TEST_F_TIMEOUT(inject, creation, 300)
{
	static const struct op ops[] = {
		{ "create", nothing, create },
	};
	/* hugepage_new_subpool(): the reservation. */
	static const char * const expected[] = {
		"gmem_hugetlb_create", "hugepage_new_subpool",
		"gmem_shareability_init",
	};
	int next_fd = dup(0);

	close(next_fd);
	run_ops(self, ops, ARRAY_SIZE(ops), expected, ARRAY_SIZE(expected));

	/* No file descriptor leaked by a failed creation. */
	TEST_ASSERT_EQ(dup(0), next_fd);
	close(next_fd);
}

/* fail_gmem_split: splits fail as if a stray reference held the folio. */
#define FAIL_SPLIT	DEBUGFS "/fail_gmem_split"

static void fail_splits_of_tasks_that_ask(bool on)
{
	TEST_ASSERT(!access(FAIL_SPLIT, F_OK),
		    "%s: fail_gmem_split needs CONFIG_FAULT_INJECTION_DEBUG_FS", FAIL_SPLIT);
	write_file(FAIL_SPLIT "/task-filter", on ? "Y" : "N");
	write_file(FAIL_SPLIT "/verbose", "0");
	write_file(FAIL_SPLIT "/interval", "1");
	write_file(FAIL_SPLIT "/times", on ? "-1" : "0");
	write_file(FAIL_SPLIT "/probability", on ? "100" : "0");
}

static sigjmp_buf sigbus_jmp;

static void sigbus_handler(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/*
 * A host fault that allocates a huge page with a shared page in it splits it
 * at once; a split that a reference keeps failing (-EAGAIN, for as long as
 * fail_gmem_split says) ends the fault with SIGBUS after a bounded wait,
 * having released the fault's locks on the way (VM_FAULT_RETRY's contract),
 * and leaves nothing allocated.  The task then unmaps its mapping, which
 * needs those locks.  Before the fix, the fault returned VM_FAULT_RETRY with
 * the lock held, and the task looped in the fault for ever (and lockdep saw
 * a lock taken twice).
 */
TEST_F_TIMEOUT(inject, host_fault_split_blocked, 120)
{
	struct sigaction sa = { .sa_handler = sigbus_handler };
	u64 *page = (u64 *)(self->mem + 3 * PAGE_SIZE);
	struct fdinfo before, after;
	int status;
	pid_t pid;

	hole_one_page_shared(self);
	read_fdinfo(self->fd, &before);
	fail_splits_of_tasks_that_ask(true);

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed, errno %d", errno);
	if (!pid) {
		int fd = open("/proc/self/make-it-fail", O_WRONLY);

		alarm(60);
		if (fd < 0 || write(fd, "1", 1) != 1)
			_exit(3);
		close(fd);
		sigaction(SIGBUS, &sa, NULL);
		if (!sigsetjmp(sigbus_jmp, 1)) {
			(void)READ_ONCE(*page);
			_exit(2);
		}
		_exit(munmap(self->mem, self->size) ? 4 : 0);
	}
	TEST_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	fail_splits_of_tasks_that_ask(false);
	TEST_ASSERT(!WIFSIGNALED(status),
		    "the host's fault did not end within 60 s (signal %d)", WTERMSIG(status));
	TEST_ASSERT(WEXITSTATUS(status) != 2, "the host read the page, no split failed");
	TEST_ASSERT_EQ(WEXITSTATUS(status), 0);

	read_fdinfo(self->fd, &after);
	TEST_ASSERT(!strcmp(before.text, after.text),
		    "the failed fault changed the file:\n%s\nexpected:\n%s",
		    after.text, before.text);
	/* Without injection, the same fault maps the page. */
	TEST_ASSERT_EQ(READ_ONCE(*page), 0);
}

TEST_HARNESS_MAIN
