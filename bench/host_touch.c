// SPDX-License-Identifier: GPL-2.0-only
/*
 * What shared huge memory costs the host, against hugetlbfs, in one run:
 * guest_memfd on 2M and 1G pages (GUEST_MEMFD_FLAG_MMAP | INIT_SHARED, as a
 * secret-free VM's VMM has it), hugetlbfs 2M and 1G (memfd_create() with
 * MFD_HUGETLB), and order-0 guest_memfd as the baseline.  For each, a file
 * of the region's size is mapped, and:
 *
 *  - every 4K page is written once: minor faults and time;
 *  - a second mapping of the same memory is populated with
 *    MADV_POPULATE_WRITE, as VMMs preallocate: minor faults and time;
 *  - the struct page memory the file took: the change of nr_memmap_pages in
 *    /proc/vmstat from before the file was created to after it was touched
 *    (vmemmap that splits restored, HVO undone), and fdinfo's
 *    gmem_split_vmemmap_bytes for guest_memfd.
 *
 * The hugetlb pools are taken before and given back after each file, so the
 * huge pages are allocated from the pools (with HVO applied) in both cases.
 * Each huge backing runs once unrecorded first (see main()).
 * Prints a table, and writes the same rows as CSV to the file given with -o.
 * Times under emulation are only comparable as ratios within one run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <linux/memfd.h>
#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

struct backing {
	const char *name;
	bool gmem;
	unsigned int page_shift;
};

static const struct backing backings[] = {
	{ "guest_memfd 4K", true, 12 },
	{ "guest_memfd 2M", true, 21 },
	{ "guest_memfd 1G", true, 30 },
	{ "hugetlbfs 2M", false, 21 },
	{ "hugetlbfs 1G", false, 30 },
};

struct result {
	long touch_faults, populate_faults;
	double touch_s, populate_s;
	long memmap_bytes;		/* nr_memmap_pages delta, in bytes */
	long split_vmemmap_bytes;	/* fdinfo, guest_memfd only; else -1 */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long minor_faults(void)
{
	struct rusage ru;

	TEST_ASSERT_EQ(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_minflt;
}

/* fdinfo's gmem_split_vmemmap_bytes of @fd. */
static long split_vmemmap_bytes(int fd)
{
	char path[64], line[256];
	long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "gmem_split_vmemmap_bytes: %ld", &val) == 1)
			break;
	fclose(f);
	return val;
}

static int create_file(struct kvm_vm *vm, const struct backing *b, u64 size)
{
	unsigned int mfd_flags;
	int fd;

	if (b->gmem) {
		u64 flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

		if (b->page_shift > 12)
			flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
		fd = __gmem_create_huge(vm, size, flags,
					b->page_shift > 12 ? b->page_shift : 0);
		TEST_ASSERT(fd >= 0, "%s: KVM_CREATE_GUEST_MEMFD failed, errno %d",
			    b->name, errno);
		return fd;
	}

	mfd_flags = MFD_HUGETLB | (b->page_shift << MFD_HUGE_SHIFT);
	fd = memfd_create("host_touch", mfd_flags);
	TEST_ASSERT(fd >= 0, "%s: memfd_create() failed, errno %d", b->name, errno);
	TEST_ASSERT_EQ(ftruncate(fd, size), 0);
	return fd;
}

static void run_backing(struct kvm_vm *vm, const struct backing *b, u64 size,
			struct result *r)
{
	long memmap_before = read_vmstat("nr_memmap_pages"), faults;
	int fd = create_file(vm, b, size);
	double t;
	u64 off;
	char *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(p != MAP_FAILED, "%s: mmap() failed, errno %d", b->name, errno);
	faults = minor_faults();
	t = now();
	for (off = 0; off < size; off += PAGE_SIZE)
		p[off] = 1;
	r->touch_s = now() - t;
	r->touch_faults = minor_faults() - faults;
	r->memmap_bytes = (read_vmstat("nr_memmap_pages") - memmap_before) * PAGE_SIZE;
	r->split_vmemmap_bytes = b->gmem ? split_vmemmap_bytes(fd) : -1;
	munmap(p, size);

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(p != MAP_FAILED, "%s: mmap() failed, errno %d", b->name, errno);
	faults = minor_faults();
	t = now();
	TEST_ASSERT_EQ(madvise(p, size, MADV_POPULATE_WRITE), 0);
	r->populate_s = now() - t;
	r->populate_faults = minor_faults() - faults;
	for (off = 0; off < size; off += PAGE_SIZE)
		TEST_ASSERT_EQ(p[off], 1);
	munmap(p, size);
	close(fd);
}

/* The hugetlbfs row of @b's page size, or NULL. */
static const struct result *hugetlbfs_result(const struct result *results,
					     unsigned int page_shift)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(backings); i++)
		if (!backings[i].gmem && backings[i].page_shift == page_shift)
			return &results[i];
	return NULL;
}

/* -s: each file's size in MiB, a multiple of 1024; -o: the CSV file. */
static void usage(const char *prog)
{
	fprintf(stderr, "%s [-s size_in_MiB] [-o csv_file]\n", prog);
	exit(KSFT_FAIL);
}

int main(int argc, char *argv[])
{
	struct result results[ARRAY_SIZE(backings)] = {}, warmup;
	const char *csv_path = NULL;
	u64 size = SZ_1G;
	struct kvm_vm *vm;
	FILE *csv = NULL;
	int opt, i;

	while ((opt = getopt(argc, argv, "s:o:h")) != -1) {
		switch (opt) {
		case 's':
			size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'o':
			csv_path = optarg;
			break;
		default:
			usage(argv[0]);
		}
	}
	TEST_ASSERT(size && size % SZ_1G == 0, "-s must be a multiple of 1024");

	vm = vm_create_barebones();
	/*
	 * Under emulation the first touch of a pool page costs several times
	 * what a later one does (the test VM's memory is allocated on first
	 * touch), and would fall on whichever backing comes first: each huge
	 * backing runs once unrecorded.
	 */
	for (i = 0; i < ARRAY_SIZE(backings); i++)
		if (backings[i].page_shift > 12)
			run_backing(vm, &backings[i], size, &warmup);
	for (i = 0; i < ARRAY_SIZE(backings); i++)
		run_backing(vm, &backings[i], size, &results[i]);
	kvm_vm_free(vm);

	if (csv_path) {
		csv = fopen(csv_path, "w");
		TEST_ASSERT(csv, "fopen(%s)", csv_path);
		fputs("backing,size_mib,touch_faults,touch_s,populate_faults,", csv);
		fputs("populate_s,memmap_bytes,split_vmemmap_bytes,touch_vs_hugetlbfs\n", csv);
	}
	printf("The host touching %llu MiB of shared memory (one run):\n\n",
	       (unsigned long long)(size >> 20));
	printf("%-16s %12s %9s %12s %9s %14s %14s %10s\n", "backing", "touch faults",
	       "time (s)", "populate flt", "time (s)", "memmap bytes", "split vmemmap",
	       "vs hugetlbfs");
	for (i = 0; i < ARRAY_SIZE(backings); i++) {
		const struct result *r = &results[i];
		const struct result *h = hugetlbfs_result(results, backings[i].page_shift);
		double ratio = h ? r->touch_s / h->touch_s : 0;

		printf("%-16s %12ld %9.3f %12ld %9.3f %14ld %14ld", backings[i].name,
		       r->touch_faults, r->touch_s, r->populate_faults, r->populate_s,
		       r->memmap_bytes, r->split_vmemmap_bytes);
		if (h)
			printf(" %9.2fx\n", ratio);
		else
			printf(" %10s\n", "-");
		if (csv)
			fprintf(csv, "%s,%llu,%ld,%.6f,%ld,%.6f,%ld,%ld,%.4f\n",
				backings[i].name, (unsigned long long)(size >> 20),
				r->touch_faults, r->touch_s, r->populate_faults,
				r->populate_s, r->memmap_bytes, r->split_vmemmap_bytes,
				ratio);
	}
	if (csv)
		fclose(csv);
	return 0;
}
