// SPDX-License-Identifier: GPL-2.0-only
/*
 * Post-copy of 1 GiB of private memory (a software-protected VM, pages filled
 * with pwrite()) with KVM_MEM_USERFAULT, backing by backing, in one run:
 * guest_memfd on 1G and 2M hugetlb pages, each with KVM mapping huge the
 * ranges that have arrived (ours) and at 4K only while the flag is set
 * (kvm.userfault_huge_mappings=0: the posted proposal's behaviour), and the
 * upstream order-0 file.
 *
 * The VM starts on the "destination" with none of its memory: its memslot has
 * the flag and every bit set.  Two vCPUs read a word of each page of their
 * halves, pass after pass.  A host thread receives the pages in random order
 * (fills each one, then clears its bit), and a vCPU that exits for a page that
 * has not arrived receives it itself, as a VMM's urgent fetch would.  At 25,
 * 50 and 75% of the pages arrived, and at 100% once each vCPU has read all of
 * its memory again, the row records the vCPUs' stage-2 faults (pf_taken),
 * the userfault exits and KVM's mappings of each level (the region's: the
 * VM's own are subtracted), and the seconds since the VM started.  The time
 * to 100% is compared with the 4K-only row of the same backing.  Every free
 * page of the 2M and 1G pools is touched once before the first row.
 *
 * Prints a table, and writes the same rows as CSV to the file given with -o.
 * Times under emulation are only comparable as ratios within one run.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <linux/sizes.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define MAX_VCPUS	4
#define NR_POINTS	4	/* 25, 50, 75 and 100% arrived */

struct backing {
	const char *name;
	unsigned int page_shift;
	bool huge_mappings;	/* kvm.userfault_huge_mappings */
};

static const struct backing backings[] = {
	{ "guest_memfd 1G", 30, true },
	{ "guest_memfd 1G, 4K only", 30, false },
	{ "guest_memfd 2M", 21, true },
	{ "guest_memfd 2M, 4K only", 21, false },
	{ "guest_memfd 4K (upstream)", 12, true },
};

struct point {
	u64 faults, exits;
	u64 pages_1g, pages_2m, pages_4k;
	double seconds;
};

struct row {
	struct point points[NR_POINTS];
};

/* Read by the guest. */
static u64 data_size;
static u64 nr_vcpus = 1;

static void guest_code(u64 idx)
{
	u64 chunk = data_size / nr_vcpus, off;

	GUEST_SYNC(0);
	for (;;) {
		for (off = idx * chunk; off < (idx + 1) * chunk; off += PAGE_SIZE)
			(void)READ_ONCE(*(u64 *)(DATA_GPA + off));
		GUEST_SYNC(1);
	}
}

struct postcopy {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	int fd;
	u64 npages;
	unsigned long *bitmap;
	u8 *claimed;
	u64 received, exits;
	u64 passes[MAX_VCPUS];	/* the vCPUs' passes over their memory */
	u64 stop_after[MAX_VCPUS];	/* run until this many passes */
	struct point base;	/* the VM's own, before post-copy */
	double start;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool page_missing(struct postcopy *pc, u64 page)
{
	return __atomic_load_n(&pc->bitmap[page / 64], __ATOMIC_ACQUIRE) &
	       (1ul << (page % 64));
}

static void receive_page(struct postcopy *pc, u64 page)
{
	u64 buf[PAGE_SIZE / sizeof(u64)], i;

	if (__atomic_exchange_n(&pc->claimed[page], 1, __ATOMIC_ACQ_REL)) {
		while (page_missing(pc, page))
			sched_yield();
		return;
	}
	for (i = 0; i < ARRAY_SIZE(buf); i++)
		buf[i] = page * PAGE_SIZE + i;
	TEST_ASSERT_EQ(pwrite(pc->fd, buf, PAGE_SIZE, page * PAGE_SIZE),
		       PAGE_SIZE);
	__atomic_fetch_and(&pc->bitmap[page / 64], ~(1ul << (page % 64)),
			   __ATOMIC_RELEASE);
	__atomic_fetch_add(&pc->received, 1, __ATOMIC_RELEASE);
}

static void snapshot(struct postcopy *pc, struct point *p)
{
	int i;

	p->faults = 0;
	for (i = 0; i < nr_vcpus; i++)
		p->faults += vcpu_get_stat(pc->vcpus[i], pf_taken);
	p->exits = __atomic_load_n(&pc->exits, __ATOMIC_RELAXED);
	p->pages_1g = vm_get_stat(pc->vm, pages_1g);
	p->pages_2m = vm_get_stat(pc->vm, pages_2m);
	p->pages_4k = vm_get_stat(pc->vm, pages_4k);
	p->seconds = now() - pc->start;
}

struct vcpu_thread {
	struct postcopy *pc;
	int idx;
	pthread_t thread;
};

/* Run until the vCPU has made pc->stop_after passes, receiving pages. */
static void *vcpu_run_passes(void *arg)
{
	struct vcpu_thread *t = arg;
	struct postcopy *pc = t->pc;
	struct kvm_vcpu *vcpu = pc->vcpus[t->idx];
	struct kvm_run *run = vcpu->run;
	struct ucall uc;

	while (__atomic_load_n(&pc->passes[t->idx], __ATOMIC_ACQUIRE) <
	       __atomic_load_n(&pc->stop_after[t->idx], __ATOMIC_ACQUIRE)) {
		if (vcpu_run_to_userfault(vcpu)) {
			__atomic_fetch_add(&pc->exits, 1, __ATOMIC_RELAXED);
			receive_page(pc, (run->memory_fault.gpa - DATA_GPA) /
					 PAGE_SIZE);
			continue;
		}
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			__atomic_fetch_add(&pc->passes[t->idx], 1,
					   __ATOMIC_RELEASE);
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
	return NULL;
}

/* The sum of what moves while post-copy makes progress. */
static u64 progress(void *arg)
{
	struct postcopy *pc = arg;
	u64 sum = __atomic_load_n(&pc->received, __ATOMIC_RELAXED) +
		  __atomic_load_n(&pc->exits, __ATOMIC_RELAXED);
	int i;

	for (i = 0; i < nr_vcpus; i++)
		sum += __atomic_load_n(&pc->passes[i], __ATOMIC_RELAXED);
	return sum;
}

/* What the watchdog prints when post-copy stops making progress. */
static void report(void *arg)
{
	struct postcopy *pc = arg;
	int i;

	for (i = 0; i < nr_vcpus; i++)
		ksft_print_msg("vCPU %d: pf_taken %lu, exits %lu, passes %lu\n", i,
			       vcpu_get_stat(pc->vcpus[i], pf_taken),
			       vcpu_get_stat(pc->vcpus[i], exits),
			       pc->passes[i]);
	ksft_print_msg("received %lu of %lu, userfault exits %lu\n",
		       pc->received, pc->npages, pc->exits);
}

static void start_vcpus(struct postcopy *pc, struct vcpu_thread *t, u64 passes)
{
	int i;

	for (i = 0; i < nr_vcpus; i++) {
		pc->stop_after[i] = pc->passes[i] + passes;
		t[i] = (struct vcpu_thread) { .pc = pc, .idx = i };
		pthread_create(&t[i].thread, NULL, vcpu_run_passes, &t[i]);
	}
}

static void join_vcpus(struct vcpu_thread *t)
{
	int i;

	for (i = 0; i < nr_vcpus; i++)
		pthread_join(t[i].thread, NULL);
}

static void measure(const struct backing *b, u64 size, unsigned int seed,
		    struct row *row)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct kvm_userspace_memory_region2 region = {
		.slot = DATA_SLOT,
		.flags = KVM_MEM_GUEST_MEMFD | KVM_MEM_USERFAULT,
		.guest_phys_addr = DATA_GPA,
		.memory_size = size,
	};
	u64 flags = GUEST_MEMFD_FLAG_MMAP, bitmap_bytes, *order, i, j, tmp;
	bool huge = b->page_shift > 12, huge_mappings;
	struct vcpu_thread threads[MAX_VCPUS];
	struct hugetlb_pools pools;
	struct postcopy pc = {};
	/*
	 * A row that stops making progress for a minute fails the bench, with
	 * where each thread is in the kernel and the vCPUs' KVM statistics,
	 * rather than hang it until make bench's timeout.
	 */
	struct progress_watchdog dog = {
		.what = "post-copy", .progress = progress, .report = report,
		.arg = &pc, .seconds = 60,
	};
	struct point *p;
	int next = 0;
	void *mem;

	read_hugetlb_pools(&pools);
	pc.npages = size / PAGE_SIZE;
	pc.vm = __vm_create_with_vcpus(shape, nr_vcpus, 0, guest_code, pc.vcpus);
	if (huge)
		flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
	pc.fd = __gmem_create_huge(pc.vm, size, flags, huge ? b->page_shift : 0);
	TEST_ASSERT(pc.fd >= 0, "creating the guest_memfd failed, errno %d", errno);
	mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, pc.fd);

	bitmap_bytes = align_up(pc.npages / 8, getpagesize());
	pc.bitmap = kvm_mmap(bitmap_bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1);
	memset(pc.bitmap, 0xff, bitmap_bytes);
	pc.claimed = calloc(pc.npages, 1);
	order = malloc(pc.npages * sizeof(*order));
	TEST_ASSERT(pc.claimed && order, "no memory");

	region.userspace_addr = (u64)mem;
	region.guest_memfd = pc.fd;
	region.userfault_bitmap = (u64)pc.bitmap;
	vm_ioctl(pc.vm, KVM_SET_USER_MEMORY_REGION2, &region);
	virt_map_level(pc.vm, DATA_GPA, DATA_GPA, size, PG_LEVEL_1G);

	data_size = size;
	sync_global_to_guest(pc.vm, data_size);
	sync_global_to_guest(pc.vm, nr_vcpus);
	for (i = 0; i < nr_vcpus; i++)
		vcpu_args_set(pc.vcpus[i], 1, i);

	/* To the first sync: the vCPUs' code and stacks are mapped. */
	for (i = 0; i < nr_vcpus; i++) {
		pc.stop_after[i] = 1;
		threads[i] = (struct vcpu_thread) { .pc = &pc, .idx = i };
		vcpu_run_passes(&threads[i]);
	}
	for (i = 0; i < pc.npages; i++)
		order[i] = i;
	for (i = pc.npages - 1; i > 0; i--) {
		j = rand_r(&seed) % (i + 1);
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}

	huge_mappings = set_userfault_huge_mappings(b->huge_mappings);
	pc.start = now();
	snapshot(&pc, &pc.base);
	progress_watchdog_start(&dog);
	start_vcpus(&pc, threads, -1ull >> 1);

	/* The receiver: this thread. */
	for (i = 0; i < pc.npages; i++) {
		receive_page(&pc, order[i]);
		if (next < NR_POINTS - 1 &&
		    __atomic_load_n(&pc.received, __ATOMIC_ACQUIRE) * NR_POINTS >=
		    (next + 1) * pc.npages)
			snapshot(&pc, &row->points[next++]);
	}
	/* All arrived: each vCPU reads all of its memory again, twice. */
	for (i = 0; i < nr_vcpus; i++)
		__atomic_store_n(&pc.stop_after[i],
				 __atomic_load_n(&pc.passes[i], __ATOMIC_ACQUIRE) + 2,
				 __ATOMIC_RELEASE);
	join_vcpus(threads);
	snapshot(&pc, &row->points[NR_POINTS - 1]);
	progress_watchdog_stop(&dog);

	set_userfault_huge_mappings(huge_mappings);

	TEST_ASSERT_EQ(pc.received, pc.npages);
	for (i = 0; i < NR_POINTS; i++) {
		p = &row->points[i];
		p->faults -= pc.base.faults;
		p->pages_1g -= pc.base.pages_1g;
		p->pages_2m -= pc.base.pages_2m;
		p->pages_4k -= pc.base.pages_4k;
	}

	kvm_vm_free(pc.vm);
	kvm_munmap(mem, size);
	kvm_munmap(pc.bitmap, bitmap_bytes);
	close(pc.fd);
	free(pc.claimed);
	free(order);
	/* The file's pages are back in the pool before the next row. */
	wait_hugetlb_pools(&pools, 0, 0, 0);
}

/*
 * Under emulation the first touch of a pool page costs several times a later
 * one (QEMU backs the test VM's memory on first touch), and would fall on the
 * first row of each pool: touch every free page of the pool once, before.
 */
static void warm_pool(unsigned int page_shift)
{
	u64 bytes = hugetlb_pool_free_pages(page_shift) << page_shift, off;
	char *p;

	if (!bytes)
		return;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB |
		 (page_shift << MAP_HUGE_SHIFT), -1, 0);
	TEST_ASSERT(p != MAP_FAILED, "mapping the %u-bit pool", page_shift);
	for (off = 0; off < bytes; off += PAGE_SIZE)
		p[off] = 1;
	munmap(p, bytes);
}

static void print_help(const char *prog)
{
	fprintf(stderr, "usage: %s [-s SIZE_MB] [-v VCPUS] [-o CSV] [-r SEED]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct row rows[ARRAY_SIZE(backings)];
	unsigned int seed = 1;
	const char *csv = NULL;
	u64 size = SZ_1G;
	FILE *out = NULL;
	int opt, i, k;

	while ((opt = getopt(argc, argv, "s:v:o:r:h")) != -1) {
		switch (opt) {
		case 'v':
			nr_vcpus = strtoul(optarg, NULL, 0);
			break;
		case 's':
			size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'o':
			csv = optarg;
			break;
		case 'r':
			seed = strtoul(optarg, NULL, 0);
			break;
		default:
			print_help(argv[0]);
		}
	}
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_USERFAULT));
	TEST_ASSERT(size && size % SZ_1G == 0, "the size is whole GiBs");
	TEST_ASSERT(nr_vcpus >= 1 && nr_vcpus <= MAX_VCPUS, "1 to %d vCPUs",
		    MAX_VCPUS);
	/* No THP: every huge mapping in the stats is guest_memfd's. */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	printf("post-copy of %llu MiB of private memory, pages in random order (seed %u), ",
	       (unsigned long long)size >> 20, seed);
	printf("%d vCPU(s)\n", (int)nr_vcpus);
	printf("%-26s %8s %8s %8s %8s %5s %6s %8s\n", "backing", "arrived",
	       "seconds", "faults", "exits", "1G", "2M", "4K");
	if (csv) {
		out = fopen(csv, "w");
		TEST_ASSERT(out, "fopen(%s)", csv);
		fprintf(out, "backing,arrived_pct,seconds,faults,userfault_exits,%s\n",
			"pages_1g,pages_2m,pages_4k");
	}
	warm_pool(21);
	warm_pool(30);
	for (i = 0; i < ARRAY_SIZE(backings); i++) {
		measure(&backings[i], size, seed, &rows[i]);
		for (k = 0; k < NR_POINTS; k++) {
			struct point *p = &rows[i].points[k];

			printf("%-26s %7d%% %8.2f %8llu %8llu %5llu %6llu %8llu\n",
			       k ? "" : backings[i].name, (k + 1) * 25, p->seconds,
			       (unsigned long long)p->faults,
			       (unsigned long long)p->exits,
			       (unsigned long long)p->pages_1g,
			       (unsigned long long)p->pages_2m,
			       (unsigned long long)p->pages_4k);
			if (out)
				fprintf(out, "%s,%d,%.3f,%llu,%llu,%llu,%llu,%llu\n",
					backings[i].name, (k + 1) * 25, p->seconds,
					(unsigned long long)p->faults,
					(unsigned long long)p->exits,
					(unsigned long long)p->pages_1g,
					(unsigned long long)p->pages_2m,
					(unsigned long long)p->pages_4k);
		}
		fflush(stdout);
	}

	printf("\nuntil all arrived and read again, against the 4K-only row:\n");
	for (i = 0; i + 1 < 4; i += 2) {
		struct point *p = &rows[i].points[NR_POINTS - 1];
		struct point *q = &rows[i + 1].points[NR_POINTS - 1];

		printf("%-26s %6.2f s  %5.2fx the time, %5.2fx the faults\n",
		       backings[i].name, p->seconds, p->seconds / q->seconds,
		       (double)p->faults / q->faults);
	}
	if (out)
		fclose(out);
	return 0;
}
