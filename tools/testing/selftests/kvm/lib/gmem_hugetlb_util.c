// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for tests of guest_memfd backed by hugetlb pages.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gmem_hugetlb_util.h"
#include "test_util.h"

unsigned long read_sysfs_ulong(const char *path)
{
	unsigned long val;
	FILE *f;

	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT_EQ(fscanf(f, "%lu", &val), 1);
	fclose(f);
	return val;
}

/* A counter of /proc/vmstat, e.g. "nr_memmap_pages". */
long read_vmstat(const char *name)
{
	char key[64];
	long val = -1, v;
	FILE *f = fopen("/proc/vmstat", "r");

	TEST_ASSERT(f, "fopen(/proc/vmstat)");
	while (fscanf(f, "%63s %ld", key, &v) == 2) {
		if (!strcmp(key, name)) {
			val = v;
			break;
		}
	}
	fclose(f);
	TEST_ASSERT(val >= 0, "no %s in /proc/vmstat", name);
	return val;
}

/* Writes @val to the sysfs file @path. Return: the value it held before. */
static unsigned int swap_sysfs_uint(const char *path, unsigned int val)
{
	unsigned int old = read_sysfs_ulong(path);
	FILE *f = fopen(path, "w");

	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT(fprintf(f, "%u\n", val) > 0 && !fclose(f),
		    "writing %u to %s", val, path);
	return old;
}

#define GMEM_MERGE_DELAY_MS	"/sys/module/kvm/parameters/gmem_merge_delay_ms"

unsigned int gmem_get_merge_delay_ms(void)
{
	return read_sysfs_ulong(GMEM_MERGE_DELAY_MS);
}

/*
 * How long a split huge page of guest_memfd stays split once its range is
 * uniform again (kvm.gmem_merge_delay_ms; 0: merged in the conversion).
 * Return: the delay it had before.
 */
unsigned int gmem_set_merge_delay_ms(unsigned int ms)
{
	return swap_sysfs_uint(GMEM_MERGE_DELAY_MS, ms);
}

#define GMEM_TOGGLED_CHANGES	"/sys/module/kvm/parameters/gmem_toggled_changes"

unsigned int gmem_get_toggled_changes(void)
{
	return read_sysfs_ulong(GMEM_TOGGLED_CHANGES);
}

/*
 * After how many changes in a row, each within the merge delay of the one
 * before, a split huge page counts as toggled, and KVM maps it at its pieces'
 * sizes until it is merged (kvm.gmem_toggled_changes; 0: never).
 * Return: the setting it had before.
 */
unsigned int gmem_set_toggled_changes(unsigned int changes)
{
	return swap_sysfs_uint(GMEM_TOGGLED_CHANGES, changes);
}

/*
 * How many times a test polls, every GMEM_POLL_MS, for guest_memfd's deferred
 * work to get somewhere (a merge put off by kvm.gmem_merge_delay_ms or by a
 * reference, an orphan freed): for the merge delay and 10 s more, since a
 * debug kernel under TCG takes its time (a 1G merge re-applies HVO).
 */
unsigned int gmem_poll_tries(void)
{
	return (gmem_get_merge_delay_ms() + 10 * 1000) / GMEM_POLL_MS;
}

static bool read_sysfs_bool(const char *path)
{
	char c = 0;
	FILE *f = fopen(path, "r");

	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT_EQ(fscanf(f, " %c", &c), 1);
	fclose(f);
	return c == 'Y';
}

/* Writes @val to the sysfs bool @path. Return: the value it held before. */
static bool swap_sysfs_bool(const char *path, bool val)
{
	bool old = read_sysfs_bool(path);
	FILE *f = fopen(path, "w");

	TEST_ASSERT(f, "fopen(%s)", path);
	TEST_ASSERT(fprintf(f, "%c\n", val ? 'Y' : 'N') > 0 && !fclose(f),
		    "writing %d to %s", val, path);
	return old;
}

#define GMEM_KEEP_HVO_ON_SPLIT	"/sys/module/guest_memfd_split/parameters/keep_hvo_on_split"

bool gmem_get_keep_hvo_on_split(void)
{
	return read_sysfs_bool(GMEM_KEEP_HVO_ON_SPLIT);
}

/*
 * Whether a 1G page of guest_memfd split into 2M pieces keeps HVO for them
 * (guest_memfd_split.keep_hvo_on_split), or restores the struct pages of the
 * whole GiB. Return: the setting it had before.
 */
bool gmem_set_keep_hvo_on_split(bool keep)
{
	return swap_sysfs_bool(GMEM_KEEP_HVO_ON_SPLIT, keep);
}

#define USERFAULT_HUGE_MAPPINGS	"/sys/module/kvm/parameters/userfault_huge_mappings"

/*
 * Whether KVM maps huge, while a memslot has KVM_MEM_USERFAULT, the ranges
 * whose pages have all arrived (kvm.userfault_huge_mappings), or maps the
 * memslot at 4K only, as the posted proposal does. Return: the setting it
 * had before.
 */
bool set_userfault_huge_mappings(bool huge)
{
	return swap_sysfs_bool(USERFAULT_HUGE_MAPPINGS, huge);
}

#define DROP_CACHES	"/proc/sys/vm/drop_caches"

/* Runs the shrinkers (2: slab objects), as memory pressure does. */
void drop_caches(void)
{
	FILE *f = fopen(DROP_CACHES, "w");

	TEST_ASSERT(f, "fopen(%s)", DROP_CACHES);
	TEST_ASSERT(fputs("2\n", f) >= 0 && !fclose(f), "writing 2 to %s",
		    DROP_CACHES);
}

/* The kernel's taint flags: bit 9 (TAINT_WARN) is set by any WARN(). */
unsigned long read_kernel_taint(void)
{
	return read_sysfs_ulong("/proc/sys/kernel/tainted");
}

#define TAINT_WARN	BIT(9)

/* Fail if the kernel warned since its taint was @taint_before. */
void assert_kernel_did_not_warn(unsigned long taint_before)
{
	unsigned long taint = read_kernel_taint();

	TEST_ASSERT(!(taint & ~taint_before & TAINT_WARN),
		    "the kernel warned (taint %#lx, was %#lx; see its log)",
		    taint, taint_before);
}

static unsigned long read_pool_count(const char *dir, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/%s", dir, name);
	return read_sysfs_ulong(path);
}

/* Free, reserved and surplus pages of every hugetlb pool, by size. */
void read_hugetlb_pools(struct hugetlb_pools *pools)
{
	DIR *dir = opendir("/sys/kernel/mm/hugepages");
	struct dirent *ent;

	TEST_ASSERT(dir, "opendir(/sys/kernel/mm/hugepages)");
	memset(pools, 0, sizeof(*pools));
	while ((ent = readdir(dir))) {
		struct hugetlb_pool *p = &pools->pool[pools->nr];

		if (sscanf(ent->d_name, "hugepages-%lukB", &p->kb) != 1)
			continue;
		TEST_ASSERT(pools->nr < MAX_HUGETLB_POOLS, "too many hugetlb pools");
		p->free = read_pool_count(ent->d_name, "free_hugepages");
		p->resv = read_pool_count(ent->d_name, "resv_hugepages");
		p->surplus = read_pool_count(ent->d_name, "surplus_hugepages");
		pools->nr++;
	}
	closedir(dir);
}

/*
 * Every pool is as in @before, but the pool of @page_shift pages, whose free
 * and reserved counts moved by @dfree and @dresv.
 */
static bool hugetlb_pools_moved(const struct hugetlb_pools *before,
				unsigned int page_shift, long dfree, long dresv)
{
	struct hugetlb_pools now;
	int i;

	read_hugetlb_pools(&now);
	if (now.nr != before->nr)
		return false;
	for (i = 0; i < now.nr; i++) {
		const struct hugetlb_pool *a = &now.pool[i], *b = &before->pool[i];
		bool this_size = a->kb << 10 == 1ul << page_shift;

		if (a->kb != b->kb || a->surplus != b->surplus ||
		    a->free != b->free + (this_size ? dfree : 0) ||
		    a->resv != b->resv + (this_size ? dresv : 0))
			return false;
	}
	return true;
}

/*
 * assert_hugetlb_pools(), once the pools got there: a page that leaves a
 * file later (a blocked merge retried, an orphan released) takes a moment.
 */
void wait_hugetlb_pools(const struct hugetlb_pools *before,
			unsigned int page_shift, long dfree, long dresv)
{
	unsigned int tries = gmem_poll_tries();

	while (!hugetlb_pools_moved(before, page_shift, dfree, dresv) && --tries)
		usleep(GMEM_POLL_MS * 1000);
	assert_hugetlb_pools(before, page_shift, dfree, dresv);
}

void assert_hugetlb_pools(const struct hugetlb_pools *before,
			  unsigned int page_shift, long dfree, long dresv)
{
	struct hugetlb_pools now;
	int i, j;

	read_hugetlb_pools(&now);
	TEST_ASSERT_EQ(now.nr, before->nr);
	for (i = 0; i < now.nr; i++) {
		const struct hugetlb_pool *a = &now.pool[i], *b = NULL;
		bool this_size = a->kb << 10 == 1ul << page_shift;
		long df = this_size ? dfree : 0, dr = this_size ? dresv : 0;

		for (j = 0; j < before->nr; j++)
			if (before->pool[j].kb == a->kb)
				b = &before->pool[j];
		TEST_ASSERT(b, "hugetlb pool of %lukB appeared", a->kb);
		TEST_ASSERT(a->free == b->free + df && a->resv == b->resv + dr &&
			    a->surplus == b->surplus,
			    "%lukB pool: free %lu -> %lu (expected %+ld), resv %lu -> %lu (expected %+ld), surplus %lu -> %lu",
			    a->kb, b->free, a->free, df, b->resv, a->resv, dr,
			    b->surplus, a->surplus);
	}
}

unsigned long hugetlb_pool_free_pages(unsigned int page_shift)
{
	char dir[64];

	snprintf(dir, sizeof(dir), "hugepages-%lukB", (1ul << page_shift) >> 10);
	return read_pool_count(dir, "free_hugepages") - read_pool_count(dir, "resv_hugepages");
}

int __gmem_create_huge(struct kvm_vm *vm, u64 size, u64 flags, u8 size_log2)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = flags,
		.huge_page_size_log2 = size_log2,
	};

	return __vm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
}

static bool is_memory_fault(struct kvm_vcpu *vcpu, int r)
{
	return r && errno == EFAULT &&
	       vcpu->run->exit_reason == KVM_EXIT_MEMORY_FAULT;
}

/*
 * KVM_RUN, entered again after each KVM_EXIT_MEMORY_FAULT, but one for a page
 * that has not arrived (KVM_MEMORY_EXIT_FLAG_USERFAULT) with @stop_at_userfault.
 */
static int __vcpu_run_past_memory_faults(struct kvm_vcpu *vcpu,
					 bool stop_at_userfault)
{
	struct kvm_run *run = vcpu->run;
	unsigned long exits = 0;
	int r;

	for (;;) {
		r = _vcpu_run(vcpu);
		if (!is_memory_fault(vcpu, r) ||
		    (stop_at_userfault &&
		     (run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_USERFAULT)))
			return r;
		exits++;
		TEST_ASSERT(exits < 1000000,
			    "%lu memory fault exits in a row, the last at gpa %#llx size %#llx flags %#llx",
			    exits, run->memory_fault.gpa, run->memory_fault.size,
			    run->memory_fault.flags);
	}
}

/*
 * KVM_RUN, entered again after each KVM_EXIT_MEMORY_FAULT: a fault that raced
 * a conversion of guest_memfd exits that way, and the guest just retries.
 * Returns what the last _vcpu_run() returned.  A fault that keeps exiting is
 * no race but a livelock: it fails the test, saying where, after a million
 * exits in a row (about a minute under emulation).
 */
int vcpu_run_past_memory_faults(struct kvm_vcpu *vcpu)
{
	return __vcpu_run_past_memory_faults(vcpu, false);
}

/*
 * vcpu_run_past_memory_faults() for post-copy: returns true at an exit for a
 * page that has not arrived (its gpa in vcpu->run->memory_fault), false at
 * any other exit, which must be a successful one.
 */
bool vcpu_run_to_userfault(struct kvm_vcpu *vcpu)
{
	int r = __vcpu_run_past_memory_faults(vcpu, true);

	if (is_memory_fault(vcpu, r))
		return true;
	TEST_ASSERT(!r, "KVM_RUN failed, errno %d, exit reason %u", errno,
		    vcpu->run->exit_reason);
	return false;
}

/*
 * KVM's stage-2 mappings of each level are @nr_1g, @nr_2m and @nr_4k (or, with
 * @at_least_4k, at least @nr_4k 4K ones: the VM's own memory has some too).
 */
void assert_stage2_mappings(struct kvm_vm *vm, u64 nr_1g, u64 nr_2m, u64 nr_4k,
			    bool at_least_4k)
{
	u64 pages_1g = vm_get_stat(vm, pages_1g);
	u64 pages_2m = vm_get_stat(vm, pages_2m);
	u64 pages_4k = vm_get_stat(vm, pages_4k);

	pr_info("stage-2 mappings: 1G: %lu, 2M: %lu, 4K: %lu\n",
		pages_1g, pages_2m, pages_4k);
	TEST_ASSERT_EQ(pages_1g, nr_1g);
	TEST_ASSERT_EQ(pages_2m, nr_2m);
	TEST_ASSERT(at_least_4k ? pages_4k >= nr_4k : pages_4k == nr_4k,
		    "pages_4k = %lu, expected %s%lu", pages_4k,
		    at_least_4k ? "at least " : "", nr_4k);
}

/* The number of maximal runs of equal values in @values[0..@n). */
u64 count_uniform_runs(const u8 *values, u64 n)
{
	u64 i, runs = !!n;

	for (i = 1; i < n; i++)
		runs += values[i] != values[i - 1];
	return runs;
}

/* Where in the kernel each thread of this process is, from /proc. */
void print_thread_stacks(void)
{
	char path[300], line[256];
	struct dirent *task;
	DIR *dir = opendir("/proc/self/task");
	FILE *f;

	if (!dir)
		return;
	while ((task = readdir(dir))) {
		if (task->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stack", task->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		ksft_print_msg("thread %s:\n", task->d_name);
		while (fgets(line, sizeof(line), f))
			ksft_print_msg("  %s", line);
		fclose(f);
	}
	closedir(dir);
}

static void *progress_watchdog_run(void *arg)
{
	struct progress_watchdog *w = arg;
	u64 last = w->progress(w->arg);
	int still = 0;

	while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
		u64 now;

		sleep(1);
		now = w->progress(w->arg);
		if (now != last) {
			last = now;
			still = 0;
			continue;
		}
		if (++still < w->seconds)
			continue;
		if (w->report)
			w->report(w->arg);
		print_thread_stacks();
		TEST_FAIL("%s made no progress for %d s", w->what, w->seconds);
	}
	return NULL;
}

/**
 * progress_watchdog_start() - Fail the program if a long run stops moving.
 * @w: what to watch: @w->progress(@w->arg) is sampled each second; when it has
 *     not changed for @w->seconds, @w->report(@w->arg) (if any) and every
 *     thread's kernel stack are printed, and the program fails.
 *
 * For benchmarks and tests whose run has no natural bound: a hang says where
 * it is, instead of running into the harness's timeout without a word.
 */
void progress_watchdog_start(struct progress_watchdog *w)
{
	w->done = false;
	pthread_create(&w->thread, NULL, progress_watchdog_run, w);
}

/* progress_watchdog_stop() - End @w's watch (the run finished). */
void progress_watchdog_stop(struct progress_watchdog *w)
{
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	pthread_join(w->thread, NULL);
}
