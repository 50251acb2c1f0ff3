// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-place conversion of guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2), measured
 * in a software-protected VM for files of 2M and 1G hugetlb pages and the
 * order-0 baseline.
 *
 * 1. Fault-in after partial conversion: a pattern of pages is made shared
 *    (one 4K page per GiB, one per 2M, every other 2M, a random 1%), the
 *    guest touches every 4K page of the region, and the faults and mappings
 *    are compared with the uniform-range limit: the fewest aligned blocks of
 *    one shareability, inside one huge page, that cover the region. Then the
 *    pattern is made private again and the guest touches the region again:
 *    the limit is one mapping per huge page.
 * 2. Conversion latency (median and p99 over many repetitions): one 4K page
 *    to shared inside a whole huge page that KVM maps, the same page back to
 *    private, and a whole huge page each way; then conversions per second
 *    while a vCPU keeps reading the pages being converted. Huge files are
 *    measured twice: merging in the conversion (kvm.gmem_merge_delay_ms=0,
 *    the behaviour before merges were deferred) and with the kernel's
 *    default delay.
 * 3. Toggling: several vCPUs read several pages spread over 1 GiB while the
 *    host converts them back and forth, one after the other: conversions per
 *    second, both merge policies again.
 * 4. Memory: the hugetlb pool's free and reserved pages before, while the
 *    pattern is shared, and after.
 *
 * Prints tables, and writes the rows as CSV to the file given with -o.
 * Times under emulation are only comparable as ratios within one run.
 */
#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>

#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define PRIVATE		KVM_MEMORY_ATTRIBUTE_PRIVATE

struct backing {
	const char *name;
	unsigned int page_shift;
	int merge_delay_ms;	/* -1: the kernel's default */
	/*
	 * The split of a 1G page restores the struct pages of the whole GiB
	 * (guest_memfd_split.keep_hvo_on_split=N), as before December,
	 * instead of keeping HVO for its 2M pieces.
	 */
	bool old_split;
	/*
	 * KVM maps a toggled huge page over its pieces, as before December
	 * (kvm.gmem_toggled_changes=0), instead of at their sizes.
	 */
	bool untoggled;
};

static const struct backing backings[] = {
	{ "guest_memfd 2M", 21, -1 },
	{ "guest_memfd 1G", 30, -1 },
};

/* Latency is also measured for order-0 files, on 2M of them: the baseline. */
static const struct backing order0 = { "guest_memfd 4K", 12, -1 };

/* Merged in the conversion (as before deferral), then deferred (default). */
static const struct backing merge_policies[] = {
	{ "guest_memfd 2M merge 0ms", 21, 0 },
	{ "guest_memfd 2M", 21, -1 },
	{ "guest_memfd 1G merge 0ms", 30, 0 },
	{ "guest_memfd 1G 0ms, old split", 30, 0, true },
	{ "guest_memfd 1G", 30, -1 },
};

/* The toggle bench also measures the default policy without the toggled state. */
static const struct backing untoggled_policies[] = {
	{ "guest_memfd 2M, untoggled", 21, -1, false, true },
	{ "guest_memfd 1G, untoggled", 30, -1, false, true },
};

/* -b: only the huge-page backings whose name contains this. */
static const char *only;

static bool selected(const struct backing *b)
{
	if (only && only[0] == '=')
		return !strcmp(b->name, only + 1);
	return !only || strstr(b->name, only);
}

/* kvm.gmem_merge_delay_ms and kvm.gmem_toggled_changes as the bench found them. */
static unsigned int default_merge_delay_ms, default_toggled_changes;

/*
 * Set the merge delay, the split and the toggled state @b is measured with;
 * return the delay.
 */
static unsigned int set_merge_delay(const struct backing *b)
{
	unsigned int ms = b->merge_delay_ms < 0 ? default_merge_delay_ms :
			  b->merge_delay_ms;

	gmem_set_merge_delay_ms(ms);
	gmem_set_keep_hvo_on_split(!b->old_split);
	gmem_set_toggled_changes(b->untoggled ? 0 : default_toggled_changes);
	return ms;
}

enum pattern {
	PATTERN_ONE_PER_GIB,
	PATTERN_ONE_PER_2M,
	PATTERN_EVERY_OTHER_2M,
	PATTERN_RANDOM_1PCT,
	NR_PATTERNS,
};

static const char * const pattern_names[] = {
	"one 4K per GiB", "one 4K per 2M", "every other 2M", "random 1%",
};

/* What the guest does when it is next run. */
struct guest_cmd {
	u64 offset, size, stride;
	u64 loop;	/* repeat until the host clears it */
};

static struct guest_cmd cmd;

static void guest_code(void)
{
	u64 off;

	for (;;) {
		GUEST_SYNC(0);
		do {
			for (off = cmd.offset; off < cmd.offset + cmd.size;
			     off += cmd.stride)
				(void)READ_ONCE(*(u64 *)(DATA_GPA + off));
		} while (READ_ONCE(cmd.loop));
	}
}

struct vm_ctx {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	u64 size, page_size;
	int fd;
};

static void vcpu_run_to_sync(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	TEST_ASSERT(!vcpu_run_past_memory_faults(vcpu), "KVM_RUN failed, errno %d", errno);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_SYNC);
}

/* The guest reads one u64 every @stride bytes of [@offset, @offset + @size). */
static void guest_touch(struct vm_ctx *c, u64 offset, u64 size, u64 stride)
{
	cmd = (struct guest_cmd) { .offset = offset, .size = size, .stride = stride };
	sync_global_to_guest(c->vm, cmd);
	vcpu_run_to_sync(c->vcpu);
}

static void convert_fd(int fd, u64 offset, u64 size, u64 attributes)
{
	int r;

	/* A vCPU's fault in flight holds a page for a moment: retry. */
	do {
		r = __gmem_set_memory_attributes(fd, offset, size, attributes,
						 NULL);
	} while (r && errno == EAGAIN);
	TEST_ASSERT(!r, "KVM_SET_MEMORY_ATTRIBUTES2 failed, errno %d", errno);
}

static void convert(struct vm_ctx *c, u64 offset, u64 size, u64 attributes)
{
	convert_fd(c->fd, offset, size, attributes);
}

/* A guest_memfd of @size for @vm, of @b's page size. */
static int backing_create_gmem(struct kvm_vm *vm, const struct backing *b,
			       u64 size)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = GUEST_MEMFD_FLAG_MMAP,
	};
	int fd;

	if (b->page_shift > 12) {
		args.flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
		args.huge_page_size_log2 = b->page_shift;
	}
	fd = __vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
	TEST_ASSERT(fd >= 0, "%s: KVM_CREATE_GUEST_MEMFD failed, errno %d",
		    b->name, errno);
	return fd;
}

static void vm_ctx_create(struct vm_ctx *c, const struct backing *b, u64 size)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};

	c->size = size;
	c->page_size = 1ull << b->page_shift;
	c->vm = __vm_create_shape_with_one_vcpu(shape, &c->vcpu, size / PAGE_SIZE,
						guest_code);
	c->fd = backing_create_gmem(c->vm, b, size);
	vm_set_user_memory_region2(c->vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
				   DATA_GPA, size, NULL, c->fd, 0);
	/* Big guest pages: the guest's walks fault in no page table pages. */
	virt_map_level(c->vm, DATA_GPA, DATA_GPA, size,
		       size % SZ_1G ? PG_LEVEL_2M : PG_LEVEL_1G);
	vcpu_run_to_sync(c->vcpu);
}

static void vm_ctx_destroy(struct vm_ctx *c)
{
	kvm_vm_free(c->vm);
	close(c->fd);
}

/* Unmap the whole region from KVM: a round trip through shared. */
static void zap_region(struct vm_ctx *c)
{
	convert(c, 0, c->size, 0);
	convert(c, 0, c->size, PRIVATE);
}

/* Mark the pattern's shared pages in @shared, one byte per 4K page. */
static void pattern_pages(enum pattern p, u64 size, u8 *shared)
{
	u64 npages = size / PAGE_SIZE, i, per_2m = SZ_2M / PAGE_SIZE;

	memset(shared, 0, npages);
	switch (p) {
	case PATTERN_ONE_PER_GIB:
		for (i = 0; i < npages; i += SZ_1G / PAGE_SIZE)
			shared[i + per_2m / 2 + 5] = 1;
		break;
	case PATTERN_ONE_PER_2M:
		for (i = 0; i < npages; i += per_2m)
			shared[i + 5] = 1;
		break;
	case PATTERN_EVERY_OTHER_2M:
		for (i = per_2m; i < npages; i += 2 * per_2m)
			memset(&shared[i], 1, per_2m);
		break;
	case PATTERN_RANDOM_1PCT:
		for (i = 0; i < npages / 100; i++)
			shared[random() % npages] = 1;
		break;
	default:
		TEST_FAIL("unknown pattern %d", p);
	}
}

/*
 * The fewest mappings KVM can cover the aligned block of @n pages at @first
 * with (@n a huge page, 2M or 4K): one if its shareability is uniform,
 * otherwise those of its blocks at the next level down.
 */
static u64 block_limit(const u8 *shared, u64 first, u64 n)
{
	u64 sub, i, blocks = 0;

	if (n == 1 || !memchr(&shared[first], !shared[first], n))
		return 1;

	sub = n > SZ_2M / PAGE_SIZE ? SZ_2M / PAGE_SIZE : 1;
	for (i = first; i < first + n; i += sub)
		blocks += block_limit(shared, i, sub);
	return blocks;
}

static void apply_pattern(struct vm_ctx *c, const u8 *shared, u64 attributes)
{
	u64 npages = c->size / PAGE_SIZE, i, j;

	for (i = 0; i < npages; i = j) {
		for (j = i; j < npages && shared[j] == shared[i]; j++)
			;
		if (shared[i])
			convert(c, i * PAGE_SIZE, (j - i) * PAGE_SIZE, attributes);
	}
}

struct counts {
	u64 pf_fixed;		/* faults taken by the touch */
	u64 pages_4k, pages_2m, pages_1g;	/* the region's mappings after it */
	double seconds;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * One touch of every 4K page of the region: the faults it takes, and the
 * region's mappings after it (those of the VM's own memory, @own_4k, taken
 * out; the VM's memory has no huge mappings without THP).
 */
static void touch_region(struct vm_ctx *c, u64 own_4k, struct counts *r)
{
	u64 pf = vcpu_get_stat(c->vcpu, pf_fixed);
	double start = now();

	guest_touch(c, 0, c->size, PAGE_SIZE);
	r->seconds = now() - start;
	r->pf_fixed = vcpu_get_stat(c->vcpu, pf_fixed) - pf;
	r->pages_4k = vm_get_stat(c->vm, pages_4k) - own_4k;
	r->pages_2m = vm_get_stat(c->vm, pages_2m);
	r->pages_1g = vm_get_stat(c->vm, pages_1g);
}

static unsigned long pool_count(unsigned int shift, const char *name)
{
	char path[128];
	unsigned long v;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/%s",
		 (1ul << shift) >> 10, name);
	f = fopen(path, "r");
	TEST_ASSERT(f && fscanf(f, "%lu", &v) == 1, "reading %s", path);
	fclose(f);
	return v;
}

/* CSV output, when -o names a directory: one file per table. */
static FILE *csv_fault_in, *csv_latency, *csv_pool, *csv_vmemmap;

/* A counter of /proc/vmstat: nr_memmap_pages is the struct page memory. */
static void progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("convert: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n", stderr);
	va_end(ap);
}

static void print_row(const struct backing *b, int p, const char *state,
		      const struct counts *r, u64 limit, double per_gib)
{
	u64 maps = r->pages_1g + r->pages_2m + r->pages_4k;

	printf("%-15s %-15s %-8s %10.0f %10.0f %10.0f %7llu %7llu %7llu %9.3f\n",
	       b->name, pattern_names[p], state, r->pf_fixed * per_gib,
	       maps * per_gib, limit * per_gib, (unsigned long long)r->pages_1g,
	       (unsigned long long)r->pages_2m, (unsigned long long)r->pages_4k,
	       r->seconds);
}

static void csv_row(const struct backing *b, int p, const char *state,
		    const struct counts *r, u64 limit, u64 size)
{
	if (!csv_fault_in)
		return;
	fprintf(csv_fault_in, "%s,%s,%s,%llu,%llu,%llu,%llu,%llu,%llu,%.6f\n",
		b->name, pattern_names[p], state, (unsigned long long)size,
		(unsigned long long)r->pf_fixed, (unsigned long long)limit,
		(unsigned long long)r->pages_1g, (unsigned long long)r->pages_2m,
		(unsigned long long)r->pages_4k, r->seconds);
}

static void bench_patterns(const struct backing *b, u64 size)
{
	u64 npages = size / PAGE_SIZE, huge = (1ull << b->page_shift) / PAGE_SIZE;
	double per_gib = (double)SZ_1G / size;
	u8 *shared = malloc(npages);
	struct counts mixed, back;
	unsigned long free0, resv0, free1 = 0, resv1 = 0;
	u64 own_4k;
	struct vm_ctx c;
	int p;

	TEST_ASSERT(shared, "malloc");
	free0 = pool_count(b->page_shift, "free_hugepages");
	resv0 = pool_count(b->page_shift, "resv_hugepages");
	vm_ctx_create(&c, b, size);
	/* Allocate everything first: the touches below only map. */
	guest_touch(&c, 0, size, PAGE_SIZE);

	for (p = 0; p < NR_PATTERNS; p++) {
		u64 limit = 0, i;

		progress("%s, %s: shared, then private again", b->name, pattern_names[p]);
		pattern_pages(p, size, shared);
		for (i = 0; i < npages; i += huge)
			limit += block_limit(shared, i, huge);

		/* Nothing of the region mapped: what is left is the VM's own. */
		zap_region(&c);
		own_4k = vm_get_stat(c.vm, pages_4k);
		apply_pattern(&c, shared, 0);
		touch_region(&c, own_4k, &mixed);
		free1 = pool_count(b->page_shift, "free_hugepages");
		resv1 = pool_count(b->page_shift, "resv_hugepages");
		TEST_ASSERT_EQ(free1, free0 - size / c.page_size);
		TEST_ASSERT_EQ(resv1, resv0);

		apply_pattern(&c, shared, PRIVATE);
		touch_region(&c, own_4k, &back);

		print_row(b, p, "shared", &mixed, limit, per_gib);
		print_row(b, p, "private", &back, npages / huge, per_gib);
		csv_row(b, p, "shared", &mixed, limit, size);
		csv_row(b, p, "private", &back, npages / huge, size);
	}

	vm_ctx_destroy(&c);
	TEST_ASSERT_EQ(pool_count(b->page_shift, "free_hugepages"), free0);
	TEST_ASSERT_EQ(pool_count(b->page_shift, "resv_hugepages"), resv0);
	printf("%-15s hugetlb pool free/reserved: before %lu/%lu, ", b->name, free0, resv0);
	printf("pattern shared %lu/%lu, after close %lu/%lu\n", free1, resv1,
	       pool_count(b->page_shift, "free_hugepages"),
	       pool_count(b->page_shift, "resv_hugepages"));
	if (csv_pool)
		fprintf(csv_pool, "%s,%lu,%lu,%lu,%lu,%lu,%lu\n",
			b->name, free0, resv0, free1, resv1,
			pool_count(b->page_shift, "free_hugepages"),
			pool_count(b->page_shift, "resv_hugepages"));
	free(shared);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct latency {
	double median, p99;
};

static void summarise(double *t, int n, struct latency *l)
{
	qsort(t, n, sizeof(*t), cmp_double);
	l->median = t[n / 2];
	l->p99 = t[(n * 99) / 100];
}

enum { SPLIT, MERGE, WHOLE_SHARED, WHOLE_PRIVATE, NR_LATENCIES };

/* The order-0 file's medians, measured first. */
static double baseline[NR_LATENCIES];

static void report_latency(const struct backing *b, int kind, const char *what,
			   int reps, const struct latency *l)
{
	if (b == &order0)
		baseline[kind] = l->median;
	printf("%-29s %-34s %6d %12.1f %12.1f %10.2f\n", b->name, what, reps,
	       l->median * 1e6, l->p99 * 1e6, l->median / baseline[kind]);
	if (csv_latency)
		fprintf(csv_latency, "%s,%s,%d,%.9f,%.9f,\n", b->name, what, reps,
			l->median, l->p99);
}

/*
 * Conversions between two reads of the clock in the rate loops.  Under TCG a
 * read of the clock (the HPET) costs more than converting a page of an
 * order-0 file: read at every conversion, it added the same time to every
 * file's conversions and made the huge files' rates look several times closer
 * to order-0's than they are.  A multiple of 2 * TOGGLE_PAGES, so that each
 * loop ends with every page private again.
 */
#define CLOCK_EVERY	32

struct reader {
	struct vm_ctx *c;
	u64 offset, size;
};

static void *vcpu_reads(void *arg)
{
	struct reader *r = arg;

	cmd = (struct guest_cmd) {
		.offset = r->offset, .size = r->size, .stride = PAGE_SIZE, .loop = 1,
	};
	sync_global_to_guest(r->c->vm, cmd);
	vcpu_run_to_sync(r->c->vcpu);
	return NULL;
}

static void bench_latency(const struct backing *b, int reps)
{
	double *split = calloc(reps, sizeof(double));
	double *merge = calloc(reps, sizeof(double));
	double *whole_s = calloc(reps, sizeof(double));
	double *whole_p = calloc(reps, sizeof(double));
	u64 huge = b->page_shift > 12 ? 1ull << b->page_shift : SZ_2M;
	u64 page = huge / 2 + 5 * PAGE_SIZE;
	struct latency l_split, l_merge, l_ws, l_wp;
	struct reader reader;
	pthread_t thread;
	u64 *guest_loop;
	struct vm_ctx c;
	double start, t;
	unsigned int delay_ms = set_merge_delay(b);
	long memmap[3];
	u64 faults;
	long nr = 0;
	int i;

	TEST_ASSERT(split && merge && whole_s && whole_p, "calloc");
	vm_ctx_create(&c, b, huge);
	progress("%s: conversion latency, %d repetitions", b->name, reps);

	for (i = 0; i < reps; i++) {
		/* KVM maps the whole huge page: one touch faults it in. */
		guest_touch(&c, 0, PAGE_SIZE, PAGE_SIZE);
		start = now();
		convert(&c, page, PAGE_SIZE, 0);
		split[i] = now() - start;
		start = now();
		convert(&c, page, PAGE_SIZE, PRIVATE);
		merge[i] = now() - start;

		guest_touch(&c, 0, PAGE_SIZE, PAGE_SIZE);
		start = now();
		convert(&c, 0, huge, 0);
		whole_s[i] = now() - start;
		start = now();
		convert(&c, 0, huge, PRIVATE);
		whole_p[i] = now() - start;
	}
	summarise(split, reps, &l_split);
	summarise(merge, reps, &l_merge);
	summarise(whole_s, reps, &l_ws);
	summarise(whole_p, reps, &l_wp);
	report_latency(b, SPLIT, "4K to shared in a mapped huge page", reps, &l_split);
	report_latency(b, MERGE, "4K back to private (uniform again)", reps, &l_merge);
	report_latency(b, WHOLE_SHARED, "whole huge page to shared", reps, &l_ws);
	report_latency(b, WHOLE_PRIVATE, "whole huge page to private", reps, &l_wp);

	/*
	 * The struct page memory a split restores and a merge frees again
	 * (HVO), as the kernel counts it (nr_memmap_pages), measured around
	 * one 4K page converted to shared and back.
	 */
	guest_touch(&c, 0, PAGE_SIZE, PAGE_SIZE);
	memmap[0] = read_vmstat("nr_memmap_pages");
	convert(&c, page, PAGE_SIZE, 0);
	memmap[1] = read_vmstat("nr_memmap_pages");
	convert(&c, page, PAGE_SIZE, PRIVATE);
	/* A merge a reference blocked is retried; a deferred one waits. */
	usleep((200 + delay_ms) * 1000);
	memmap[2] = read_vmstat("nr_memmap_pages");
	printf("%-29s %-34s %6s %+12ld %+12ld %10s\n", b->name,
	       "struct pages (KiB): split, merge", "-",
	       (memmap[1] - memmap[0]) * (long)PAGE_SIZE / 1024,
	       (memmap[2] - memmap[1]) * (long)PAGE_SIZE / 1024, "-");
	if (csv_vmemmap)
		fprintf(csv_vmemmap, "%s,%ld,%ld\n", b->name,
			(memmap[1] - memmap[0]) * (long)PAGE_SIZE,
			(memmap[2] - memmap[1]) * (long)PAGE_SIZE);

	/* Conversions per second while the vCPU reads the pages converted. */
	progress("%s: conversions while a vCPU reads", b->name);
	reader = (struct reader) { .c = &c, .offset = page - PAGE_SIZE, .size = 3 * PAGE_SIZE };
	pthread_create(&thread, NULL, vcpu_reads, &reader);
	guest_loop = addr_gva2hva(c.vm, (gva_t)&cmd.loop);
	faults = vcpu_get_stat(c.vcpu, pf_fixed);
	start = now();
	do {
		convert(&c, page, PAGE_SIZE, nr % 2 ? PRIVATE : 0);
		nr++;
	} while (nr % CLOCK_EVERY || now() - start < 2.0);
	t = now() - start;
	WRITE_ONCE(*guest_loop, 0);
	pthread_join(thread, NULL);
	faults = vcpu_get_stat(c.vcpu, pf_fixed) - faults;
	printf("%-29s %-34s %6ld %12.0f %12s %10s\n", b->name,
	       "conversions/s, vCPU reading", nr, nr / t, "-", "-");
	printf("%-29s %-34s %6ld %12.2f %12s %10s\n", b->name,
	       "vCPU faults per conversion", nr, (double)faults / nr, "-", "-");
	if (csv_latency)
		fprintf(csv_latency, "%s,conversions with a vCPU reading,%ld,,,%.3f\n",
			b->name, nr, nr / t);

	vm_ctx_destroy(&c);
	free(split);
	free(merge);
	free(whole_s);
	free(whole_p);
}

#define TOGGLE_MAX_VCPUS	4
#define TOGGLE_PAGES	16
static_assert(CLOCK_EVERY % (2 * TOGGLE_PAGES) == 0, "loops end all private");

/* -V: how many vCPUs read while the toggle bench converts. */
static int toggle_vcpus = TOGGLE_MAX_VCPUS;

/* What each vCPU of the toggle bench reads, until the host clears loop. */
static struct guest_cmd toggle_cmds[TOGGLE_MAX_VCPUS];

static void toggle_guest_code(u64 id)
{
	struct guest_cmd *c = &toggle_cmds[id];
	u64 off;

	/* Fault the pages in (allocating and zeroing) before the clock starts. */
	for (off = c->offset; off < c->offset + c->size; off += c->stride)
		(void)READ_ONCE(*(u64 *)(DATA_GPA + off));
	GUEST_SYNC(0);
	do {
		for (off = c->offset; off < c->offset + c->size; off += c->stride)
			(void)READ_ONCE(*(u64 *)(DATA_GPA + off));
	} while (READ_ONCE(c->loop));
	GUEST_SYNC(0);
}

static void *toggle_vcpu_run(void *arg)
{
	vcpu_run_to_sync(arg);
	return NULL;
}

/*
 * What the toggle bench's watchdog watches: make bench hung twice in this
 * bench (4 vCPUs, multi-threaded TCG), without a word of where.
 */
struct toggle_watch {
	struct kvm_vcpu **vcpus;
	long conversions;	/* done so far, the first round's included */
	int stage;		/* 0 faulting in, 1 converting, 2 stopping */
};

static u64 toggle_progress(void *arg)
{
	struct toggle_watch *w = arg;

	return __atomic_load_n(&w->conversions, __ATOMIC_RELAXED) +
	       __atomic_load_n(&w->stage, __ATOMIC_RELAXED);
}

static void toggle_report(void *arg)
{
	struct toggle_watch *w = arg;
	int i;

	ksft_print_msg("toggle: stage %d, %ld conversions\n", w->stage,
		       w->conversions);
	for (i = 0; i < toggle_vcpus; i++)
		ksft_print_msg("vCPU %d: pf_taken %lu, pf_fixed %lu, exits %lu\n", i,
			       vcpu_get_stat(w->vcpus[i], pf_taken),
			       vcpu_get_stat(w->vcpus[i], pf_fixed),
			       vcpu_get_stat(w->vcpus[i], exits));
}

/*
 * TOGGLE_PAGES 4K pages, 64 MiB apart in 1 GiB (a 1G page, 512 2M pages or
 * 262,144 4K ones), each read by one of toggle_vcpus vCPUs in a loop while
 * the host converts the pages to shared and back, one after the other, for
 * two seconds, after the vCPUs faulted their pages in and one round of
 * conversions.
 */
static void bench_toggle(const struct backing *b)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	u64 spacing = SZ_1G / TOGGLE_PAGES, first = 5 * PAGE_SIZE;
	struct kvm_vcpu *vcpus[TOGGLE_MAX_VCPUS];
	pthread_t threads[TOGGLE_MAX_VCPUS];
	struct toggle_watch watch = { .vcpus = vcpus };
	struct progress_watchdog dog = {
		.what = "toggling", .progress = toggle_progress,
		.report = toggle_report, .arg = &watch, .seconds = 60,
	};
	static double baseline_rate;
	struct kvm_vm *vm;
	double start, t;
	u64 faults = 0;
	long nr = 0;
	int fd, i;

	set_merge_delay(b);
	progress("%s: toggling with %d vCPUs", b->name, toggle_vcpus);
	vm = __vm_create_with_vcpus(shape, toggle_vcpus, SZ_1G / PAGE_SIZE,
				    toggle_guest_code, vcpus);
	fd = backing_create_gmem(vm, b, SZ_1G);
	vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
				   SZ_1G, NULL, fd, 0);
	virt_map_level(vm, DATA_GPA, DATA_GPA, SZ_1G, PG_LEVEL_1G);

	/* vCPU i reads pages i, i + toggle_vcpus, ... */
	for (i = 0; i < toggle_vcpus; i++) {
		toggle_cmds[i] = (struct guest_cmd) {
			.offset = first + i * spacing, .size = SZ_1G - i * spacing,
			.stride = toggle_vcpus * spacing, .loop = 1,
		};
		vcpu_args_set(vcpus[i], 1, i);
	}
	sync_global_to_guest(vm, toggle_cmds);
	progress_watchdog_start(&dog);
	for (i = 0; i < toggle_vcpus; i++) {
		vcpu_run_to_sync(vcpus[i]);
		pthread_create(&threads[i], NULL, toggle_vcpu_run, vcpus[i]);
	}

	/*
	 * One round of every page first: the steady state is what is measured,
	 * not the first split of each huge page (merges are deferred).
	 */
	__atomic_store_n(&watch.stage, 1, __ATOMIC_RELAXED);
	for (nr = 0; nr < 2 * TOGGLE_PAGES; nr++) {
		convert_fd(fd, first + (nr / 2 % TOGGLE_PAGES) * spacing,
			   PAGE_SIZE, nr % 2 ? PRIVATE : 0);
		__atomic_add_fetch(&watch.conversions, 1, __ATOMIC_RELAXED);
	}
	nr = 0;

	for (i = 0; i < toggle_vcpus; i++)
		faults -= vcpu_get_stat(vcpus[i], pf_fixed);
	start = now();
	do {
		convert_fd(fd, first + (nr / 2 % TOGGLE_PAGES) * spacing,
			   PAGE_SIZE, nr % 2 ? PRIVATE : 0);
		nr++;
		__atomic_add_fetch(&watch.conversions, 1, __ATOMIC_RELAXED);
	} while (nr % CLOCK_EVERY || now() - start < 2.0);
	t = now() - start;
	__atomic_store_n(&watch.stage, 2, __ATOMIC_RELAXED);

	for (i = 0; i < toggle_vcpus; i++) {
		struct guest_cmd *c = addr_gva2hva(vm, (gva_t)&toggle_cmds[i]);

		WRITE_ONCE(c->loop, 0);
	}
	for (i = 0; i < toggle_vcpus; i++) {
		pthread_join(threads[i], NULL);
		faults += vcpu_get_stat(vcpus[i], pf_fixed);
	}
	progress_watchdog_stop(&dog);
	kvm_vm_free(vm);
	close(fd);

	if (b == &order0)
		baseline_rate = nr / t;
	printf("%-29s %14ld %12.0f %10.2f %12.2f\n", b->name, nr, nr / t,
	       nr / t / baseline_rate, (double)faults / nr);
	if (csv_latency)
		fprintf(csv_latency, "%s,conversions toggling %d pages with %d vCPUs,%ld,,,%.3f\n",
			b->name, TOGGLE_PAGES, toggle_vcpus, nr, nr / t);
}

static FILE *csv_open(const char *dir, const char *name, const char *header)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	TEST_ASSERT(f, "fopen(%s)", path);
	fprintf(f, "%s\n", header);
	return f;
}

static void usage(const char *prog)
{
	fprintf(stderr, "%s [-s size_in_MiB] [-r repetitions] [-o csv_dir]\n"
		"  [-P | -L | -T] [-V vcpus] [-b name]\n"
		"  -P: partial-conversion fault-in only, -L: latency and toggling only,\n"
		"  -T: toggling only, -V: vCPUs reading while toggling (1-4, default 4)\n"
		"  -b: only the huge-page backings whose name contains name (e.g. \"1G\"),\n"
		"      or, as =name, is name (e.g. \"=guest_memfd 1G\")\n",
		prog);
	exit(KSFT_FAIL);
}

int main(int argc, char *argv[])
{
	const char *csv_dir = NULL;
	unsigned int seed = 1;
	u64 size = SZ_1G;
	int reps = 200, opt, i;
	bool patterns = true, latency = true, latency_rows = true;

	while ((opt = getopt(argc, argv, "s:r:o:PLTV:b:h")) != -1) {
		switch (opt) {
		case 'P':
			latency = false;
			break;
		case 'b':
			only = optarg;
			break;
		case 'L':
			patterns = false;
			break;
		case 'V':
			toggle_vcpus = atoi(optarg);
			break;
		case 'T':
			patterns = false;
			latency_rows = false;
			break;
		case 's':
			size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 'o':
			csv_dir = optarg;
			break;
		default:
			usage(argv[0]);
		}
	}
	if (!size || size % SZ_1G || reps < 1 || toggle_vcpus < 1 ||
	    toggle_vcpus > TOGGLE_MAX_VCPUS)
		usage(argv[0]);

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	/* No THP: every huge mapping counted is guest_memfd's. */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
	srandom(seed);
	default_merge_delay_ms = gmem_get_merge_delay_ms();
	default_toggled_changes = gmem_get_toggled_changes();

	if (csv_dir) {
		csv_fault_in = csv_open(csv_dir, "partial_fault_in.csv",
					"backing,pattern,state,size_bytes,pf_fixed,limit,pages_1g,pages_2m,pages_4k,seconds");
		csv_latency = csv_open(csv_dir, "conversion_latency.csv",
				       "backing,conversion,repetitions,median_s,p99_s,per_second");
		csv_pool = csv_open(csv_dir, "conversion_pool.csv",
				    "backing,free_before,resv_before,free_shared,resv_shared,free_after,resv_after");
		csv_vmemmap = csv_open(csv_dir, "conversion_vmemmap.csv",
				       "backing,split_bytes,merge_bytes");
	}

	if (!patterns)
		goto latency;
	printf("Fault-in after partial conversion: %llu MiB, 1 vCPU, ",
	       (unsigned long long)(size >> 20));
	printf("every 4K page read once (random seed %u)\n", seed);
	printf("%-15s %-15s %-8s %10s %10s %10s %7s %7s %7s %9s\n", "backing",
	       "pattern", "pattern", "faults/GiB", "maps/GiB", "limit/GiB",
	       "1G maps", "2M maps", "4K maps", "time (s)");
	for (i = 0; i < ARRAY_SIZE(backings); i++)
		if (selected(&backings[i]))
			bench_patterns(&backings[i], size);

	printf("(mappings and limit count the region's mappings after the touch: the limit is the\n"
	       " fewest aligned blocks of one shareability inside one huge page that cover it)\n");
latency:
	if (!latency)
		goto out;
	if (!latency_rows)
		goto toggle;
	printf("\nConversion latency (one huge page, KVM maps it whole before each conversion;\n"
	       " for order-0 guest_memfd, 2M of it: the baseline of the last column)\n");
	printf("%-29s %-34s %6s %12s %12s %10s\n", "backing", "conversion", "reps",
	       "median (us)", "p99 (us)", "vs 4K");
	bench_latency(&order0, reps);
	for (i = 0; i < ARRAY_SIZE(merge_policies); i++)
		if (selected(&merge_policies[i]))
			bench_latency(&merge_policies[i], reps);

toggle:
	printf("\nToggling: %d vCPUs read %d pages spread over 1 GiB while the host converts\n"
	       " each to shared and back in turn (kvm.gmem_merge_delay_ms: default %u)\n",
	       toggle_vcpus, TOGGLE_PAGES, default_merge_delay_ms);
	printf("%-29s %14s %12s %10s %12s\n", "backing", "conversions", "per second",
	       "vs 4K", "faults/conv");
	bench_toggle(&order0);
	for (i = 0; i < ARRAY_SIZE(merge_policies); i++)
		if (selected(&merge_policies[i]))
			bench_toggle(&merge_policies[i]);
	for (i = 0; i < ARRAY_SIZE(untoggled_policies); i++)
		if (selected(&untoggled_policies[i]))
			bench_toggle(&untoggled_policies[i]);
	gmem_set_merge_delay_ms(default_merge_delay_ms);
	gmem_set_keep_hvo_on_split(true);
	gmem_set_toggled_changes(default_toggled_changes);

out:
	if (csv_dir) {
		fclose(csv_fault_in);
		fclose(csv_latency);
		fclose(csv_pool);
		fclose(csv_vmemmap);
	}
	return 0;
}
