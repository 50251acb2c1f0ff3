// SPDX-License-Identifier: GPL-2.0-only
/*
 * Stage-2 fault-in, backing by backing, in one run: a guest whose vCPUs
 * touch every 4K page of a region once (each vCPU its own slice), for
 * upstream order-0 guest_memfd, guest_memfd on 2M and 1G hugetlb pages, and
 * the legacy memslots (anonymous memory, hugetlbfs 2M and 1G).
 *
 * Before the timed pass each vCPU has run once (its code and stack are
 * mapped) and the VM's own memory, where the guest page tables live, is
 * pre-faulted, so the faults counted are the region's: the physical limit is
 * one per page of the backing (262,144 per GiB at 4K, 512 at 2M, 1 at 1G).
 *
 * With -p PERF, the faults are also counted by `perf stat -a -e
 * kvm:kvm_page_fault` around each timed pass, as a cross-check of pf_taken.
 *
 * Prints a table, and writes the same rows as CSV to the file given with -o.
 * Times under emulation are only comparable as ratios within one run.
 */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define MAX_VCPUS	8

struct backing {
	const char *name;
	bool gmem;
	unsigned int page_shift;
	enum vm_mem_backing_src_type src;	/* memslot backings */
};

static const struct backing backings[] = {
	{ "guest_memfd 4K (upstream)", true, 12 },
	{ "guest_memfd 2M", true, 21 },
	{ "guest_memfd 1G", true, 30 },
	{ "anonymous 4K", false, 12, VM_MEM_SRC_ANONYMOUS },
	{ "hugetlbfs 2M", false, 21, VM_MEM_SRC_ANONYMOUS_HUGETLB_2MB },
	{ "hugetlbfs 1G", false, 30, VM_MEM_SRC_ANONYMOUS_HUGETLB_1GB },
};

struct result {
	u64 pf_taken, pf_fixed;
	long long perf_faults;	/* kvm:kvm_page_fault by perf stat, or -1 */
	u64 pages_4k, pages_2m, pages_1g;
	double seconds;
};

static void guest_code(u64 gpa, u64 size)
{
	u64 off;

	GUEST_SYNC(0);
	for (off = 0; off < size; off += PAGE_SIZE)
		WRITE_ONCE(*(u64 *)(gpa + off), off);
	GUEST_DONE();
}

static void run_until(struct kvm_vcpu *vcpu, u64 ucall)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, ucall);
}

static int vcpus_done;
/* When each vCPU finished its pass (CLOCK_MONOTONIC, seconds). */
static double vcpu_end[MAX_VCPUS];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *vcpu_touch(void *arg)
{
	struct kvm_vcpu *vcpu = arg;

	run_until(vcpu, UCALL_DONE);
	vcpu_end[vcpu->id] = now();
	__atomic_add_fetch(&vcpus_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static const char *perf_path;

/* A `perf stat` counting KVM's page faults system-wide. */
struct perf_count {
	pid_t pid;
	int go;		/* the workload's stdin: closing it ends the count */
};

#define PERF_OUT	"/tmp/fault_in.perf"

/*
 * Start perf with a workload that says "ready" and then waits for its stdin
 * to close: perf turns the counters on before it lets the workload run, so
 * they count from the moment "ready" arrives.
 *
 * posix_spawn(), not fork(): fork() would write-protect the VM's memory for
 * copy-on-write, and KVM would zap and fault again all of it.
 */
static void perf_start(struct perf_count *pc)
{
	static char * const argv[] = {
		"perf", "stat", "-a", "-x", ",", "-e", "kvm:kvm_page_fault",
		"-o", PERF_OUT, "--", "/bin/sh", "-c", "echo r; exec cat >/dev/null",
		NULL,
	};
	posix_spawn_file_actions_t fa;
	int go[2], ready[2];
	char c;

	TEST_ASSERT(!pipe(go) && !pipe(ready), "pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, go[0], 0);
	posix_spawn_file_actions_adddup2(&fa, ready[1], 1);
	posix_spawn_file_actions_addclose(&fa, go[1]);
	posix_spawn_file_actions_addclose(&fa, ready[0]);
	TEST_ASSERT(!posix_spawn(&pc->pid, perf_path, &fa, NULL, argv, environ),
		    "cannot run %s", perf_path);
	posix_spawn_file_actions_destroy(&fa);
	close(go[0]);
	close(ready[1]);
	pc->go = go[1];
	TEST_ASSERT(read(ready[0], &c, 1) == 1, "%s stat did not start", perf_path);
	close(ready[0]);
}

static long long perf_stop(struct perf_count *pc)
{
	long long count = -1;
	char line[256];
	int status;
	FILE *f;

	close(pc->go);
	TEST_ASSERT(waitpid(pc->pid, &status, 0) == pc->pid &&
		    WIFEXITED(status) && !WEXITSTATUS(status),
		    "perf stat failed, status %#x", status);
	f = fopen(PERF_OUT, "r");
	TEST_ASSERT(f, "fopen(%s)", PERF_OUT);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "kvm:kvm_page_fault"))
			count = atoll(line);
	fclose(f);
	unlink(PERF_OUT);
	TEST_ASSERT(count >= 0, "no kvm:kvm_page_fault count from perf");
	return count;
}

/* Map the VM's own memory (slot 0) in stage-2 before the timed pass. */
static void prefault_slot0(struct kvm_vcpu *vcpu)
{
	struct userspace_mem_region *slot0 = memslot2region(vcpu->vm, 0);
	struct kvm_pre_fault_memory range = {
		.gpa = slot0->region.guest_phys_addr,
		.size = slot0->region.memory_size,
	};
	int ret;

	while (range.size) {
		ret = __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range);
		TEST_ASSERT(!ret || errno == EINTR || errno == EAGAIN,
			    "KVM_PRE_FAULT_MEMORY failed, errno %d", errno);
	}
}

static void read_stats(struct kvm_vm *vm, struct kvm_vcpu **vcpus, int nr_vcpus,
		       struct result *r)
{
	int i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < nr_vcpus; i++) {
		r->pf_taken += vcpu_get_stat(vcpus[i], pf_taken);
		r->pf_fixed += vcpu_get_stat(vcpus[i], pf_fixed);
	}
	r->pages_4k = vm_get_stat(vm, pages_4k);
	r->pages_2m = vm_get_stat(vm, pages_2m);
	r->pages_1g = vm_get_stat(vm, pages_1g);
}

static void fault_in(const struct backing *b, u64 size, int nr_vcpus,
		     struct result *r)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = b->gmem ? KVM_X86_SW_PROTECTED_VM : VM_TYPE_DEFAULT,
	};
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	pthread_t threads[MAX_VCPUS];
	u64 slice = size / nr_vcpus;
	struct result before, after;
	struct perf_count pc;
	struct kvm_vm *vm;
	int i, fd = -1;
	double start, next;

	vm = __vm_create_with_vcpus(shape, nr_vcpus, size / PAGE_SIZE, guest_code, vcpus);
	if (b->gmem) {
		struct kvm_create_guest_memfd args = {
			.size = size,
			.flags = b->page_shift > 12 ? GUEST_MEMFD_FLAG_HUGE_PAGES : 0,
			.huge_page_size_log2 = b->page_shift > 12 ? b->page_shift : 0,
		};

		fd = __vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
		TEST_ASSERT(fd >= 0, "%s: KVM_CREATE_GUEST_MEMFD failed, errno %d",
			    b->name, errno);
		vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
					   DATA_GPA, size, NULL, fd, 0);
		/* A file that converts in place is private already. */
		if (!kvm_has_gmem_attributes)
			vm_mem_set_private(vm, DATA_GPA, size);
	} else {
		vm_userspace_mem_region_add(vm, b->src, DATA_GPA, DATA_SLOT,
					    size / PAGE_SIZE, 0);
	}
	virt_map(vm, DATA_GPA, DATA_GPA, size / vm->page_size);

	for (i = 0; i < nr_vcpus; i++) {
		vcpu_args_set(vcpus[i], 2, DATA_GPA + i * slice, slice);
		run_until(vcpus[i], UCALL_SYNC);
	}
	prefault_slot0(vcpus[0]);
	read_stats(vm, vcpus, nr_vcpus, &before);

	if (perf_path)
		perf_start(&pc);
	vcpus_done = 0;
	start = now();
	for (i = 0; i < nr_vcpus; i++)
		pthread_create(&threads[i], NULL, vcpu_touch, vcpus[i]);
	/* Progress every 5 s: a 4K backing takes a while under emulation. */
	for (next = 5; __atomic_load_n(&vcpus_done, __ATOMIC_ACQUIRE) < nr_vcpus; ) {
		usleep(100 * 1000);
		if (now() - start < next)
			continue;
		read_stats(vm, vcpus, nr_vcpus, &after);
		fprintf(stderr, "  ... %.0f s, %llu of %llu faults\n", next,
			(unsigned long long)(after.pf_fixed - before.pf_fixed),
			(unsigned long long)(size >> b->page_shift));
		next += 5;
	}
	/*
	 * The pass ends when the last vCPU ends it, not at the next 100 ms
	 * tick of the loop above: 2M and 1G passes take about half a second.
	 */
	r->seconds = 0;
	for (i = 0; i < nr_vcpus; i++) {
		pthread_join(threads[i], NULL);
		r->seconds = max(r->seconds, vcpu_end[vcpus[i]->id] - start);
	}
	r->perf_faults = perf_path ? perf_stop(&pc) : -1;

	read_stats(vm, vcpus, nr_vcpus, &after);
	r->pf_taken = after.pf_taken - before.pf_taken;
	r->pf_fixed = after.pf_fixed - before.pf_fixed;
	r->pages_4k = after.pages_4k - before.pages_4k;
	r->pages_2m = after.pages_2m - before.pages_2m;
	r->pages_1g = after.pages_1g - before.pages_1g;

	kvm_vm_free(vm);
	if (fd >= 0)
		close(fd);
}

static void usage(const char *prog)
{
	fprintf(stderr, "%s [-s size_in_MiB] [-v vcpus] [-o csv_file] [-p perf]\n", prog);
	exit(KSFT_FAIL);
}

/*
 * Touch every free page of the hugetlb pool of 2^@shift bytes once, so that
 * no backing pays for the first touch of its memory by the emulator (QEMU
 * backs the test VM's RAM on first use): whichever backing ran first on a
 * pool page would be slower, and the ratios would say so.
 */
static void warm_hugetlb_pool(unsigned int shift)
{
	unsigned long long nr = 0;
	char path[96];
	size_t len;
	void *p;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages",
		 (1UL << shift) >> 10);
	f = fopen(path, "r");
	TEST_ASSERT(f && fscanf(f, "%llu", &nr) == 1, "reading %s", path);
	fclose(f);
	if (!nr)
		return;
	len = nr << shift;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE |
		 (shift << MAP_HUGE_SHIFT), -1, 0);
	TEST_ASSERT(p != MAP_FAILED, "populating %llu pages of %lu KiB", nr,
		    (1UL << shift) >> 10);
	munmap(p, len);
}

int main(int argc, char *argv[])
{
	struct result results[ARRAY_SIZE(backings)];
	u64 size = SZ_1G;
	const char *csv = NULL;
	int nr_vcpus = 2, opt, i;
	double per_gib;
	FILE *out;

	while ((opt = getopt(argc, argv, "s:v:o:p:h")) != -1) {
		switch (opt) {
		case 'p':
			perf_path = optarg;
			break;
		case 's':
			size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'v':
			nr_vcpus = atoi(optarg);
			break;
		case 'o':
			csv = optarg;
			break;
		default:
			usage(argv[0]);
		}
	}
	/* Whole 1G pages, and a whole number of 2M pages per vCPU. */
	if (!size || size % SZ_1G || nr_vcpus < 1 || nr_vcpus > MAX_VCPUS ||
	    (size / nr_vcpus) % SZ_2M)
		usage(argv[0]);

	/* Only the backings make huge mappings: no THP for anything else. */
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);

	warm_hugetlb_pool(21);
	warm_hugetlb_pool(30);

	per_gib = (double)SZ_1G / size;
	for (i = 0; i < ARRAY_SIZE(backings); i++) {
		fprintf(stderr, "fault_in: [%d/%zu] %s, %llu MiB, %d vCPU(s)...\n", i + 1,
			ARRAY_SIZE(backings), backings[i].name,
			(unsigned long long)(size >> 20), nr_vcpus);
		fault_in(&backings[i], size, nr_vcpus, &results[i]);
	}

	printf("Stage-2 fault-in of %llu MiB, %d vCPU(s), every 4K page written once\n",
	       (unsigned long long)(size >> 20), nr_vcpus);
	printf("%-26s %10s %10s %8s %8s %8s %8s %8s %9s %8s\n", "backing", "faults/GiB",
	       "limit/GiB", "1G maps", "2M maps", "4K maps", "pf_taken", "perf",
	       "time (s)", "vs 4K gmem");
	for (i = 0; i < ARRAY_SIZE(backings); i++) {
		const struct result *r = &results[i];
		char perf[24] = "-";

		if (r->perf_faults >= 0)
			snprintf(perf, sizeof(perf), "%lld", r->perf_faults);
		printf("%-26s %10.0f %10llu %8llu %8llu %8llu %8llu %8s %9.3f %8.3f\n",
		       backings[i].name, r->pf_fixed * per_gib,
		       (unsigned long long)(SZ_1G >> backings[i].page_shift),
		       (unsigned long long)r->pages_1g, (unsigned long long)r->pages_2m,
		       (unsigned long long)r->pages_4k, (unsigned long long)r->pf_taken,
		       perf, r->seconds, r->seconds / results[0].seconds);
	}
	printf("faults/GiB: pf_fixed, the faults that mapped memory; pf_taken: all\n");
	printf("stage-2 faults, which perf counts as kvm:kvm_page_fault.\n");
	printf("Times compare only as ratios within one run.\n");
	for (i = 0; i < ARRAY_SIZE(backings); i++)
		TEST_ASSERT(results[i].perf_faults < 0 ||
			    results[i].perf_faults == results[i].pf_taken,
			    "%s: perf counted %lld faults, KVM's pf_taken %llu",
			    backings[i].name, results[i].perf_faults,
			    (unsigned long long)results[i].pf_taken);

	if (csv) {
		out = fopen(csv, "w");
		TEST_ASSERT(out, "fopen(%s)", csv);
		fputs("backing,size_bytes,vcpus,pf_fixed,pf_taken,perf_kvm_page_fault,", out);
		fputs("faults_per_gib,limit_per_gib,pages_1g,pages_2m,pages_4k,seconds,", out);
		fputs("ratio_to_gmem_4k\n", out);
		for (i = 0; i < ARRAY_SIZE(backings); i++) {
			const struct result *r = &results[i];

			fprintf(out, "%s,%llu,%d,%llu,%llu,%lld,", backings[i].name,
				(unsigned long long)size, nr_vcpus,
				(unsigned long long)r->pf_fixed, (unsigned long long)r->pf_taken,
				r->perf_faults);
			fprintf(out, "%.0f,%llu,%llu,%llu,%llu,%.6f,%.6f\n", r->pf_fixed * per_gib,
				(unsigned long long)(SZ_1G >> backings[i].page_shift),
				(unsigned long long)r->pages_1g, (unsigned long long)r->pages_2m,
				(unsigned long long)r->pages_4k, r->seconds,
				r->seconds / results[0].seconds);
		}
		fclose(out);
	}
	return 0;
}
