/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for tests of guest_memfd backed by hugetlb pages: creating such a
 * file, and reading the hugetlb pools and asserting their counts.
 */
#ifndef SELFTEST_KVM_GMEM_HUGETLB_UTIL_H
#define SELFTEST_KVM_GMEM_HUGETLB_UTIL_H

#include <pthread.h>

#include "kvm_util.h"

/*
 * Every guest_memfd test's time limit, in seconds: the harness's default of
 * 30 s is too short on the debug kernel (KASAN, kmemleak, single-threaded
 * TCG), where a VM's setup and teardown alone can take that long, and for
 * touching 1 GiB page by page under emulation.
 */
#define GMEM_TEST_TIMEOUT	300

#define MAX_HUGETLB_POOLS	8

struct hugetlb_pool {
	unsigned long kb;
	unsigned long free, resv, surplus;
};

struct hugetlb_pools {
	int nr;
	struct hugetlb_pool pool[MAX_HUGETLB_POOLS];
};

/* How often tests poll for guest_memfd's deferred work (gmem_poll_tries()). */
#define GMEM_POLL_MS	20

unsigned long read_sysfs_ulong(const char *path);
long read_vmstat(const char *name);
unsigned int gmem_get_merge_delay_ms(void);
unsigned int gmem_set_merge_delay_ms(unsigned int ms);
unsigned int gmem_get_toggled_changes(void);
unsigned int gmem_set_toggled_changes(unsigned int changes);
unsigned int gmem_poll_tries(void);
bool gmem_get_keep_hvo_on_split(void);
bool gmem_set_keep_hvo_on_split(bool keep);
bool set_userfault_huge_mappings(bool huge);
void drop_caches(void);
unsigned long read_kernel_taint(void);
void assert_kernel_did_not_warn(unsigned long taint_before);
void read_hugetlb_pools(struct hugetlb_pools *pools);
void assert_hugetlb_pools(const struct hugetlb_pools *before,
			  unsigned int page_shift, long dfree, long dresv);
void wait_hugetlb_pools(const struct hugetlb_pools *before,
			unsigned int page_shift, long dfree, long dresv);
unsigned long hugetlb_pool_free_pages(unsigned int page_shift);

int __gmem_create_huge(struct kvm_vm *vm, u64 size, u64 flags, u8 size_log2);

int vcpu_run_past_memory_faults(struct kvm_vcpu *vcpu);
bool vcpu_run_to_userfault(struct kvm_vcpu *vcpu);
void assert_stage2_mappings(struct kvm_vm *vm, u64 nr_1g, u64 nr_2m, u64 nr_4k,
			    bool at_least_4k);
u64 count_uniform_runs(const u8 *values, u64 n);
void print_thread_stacks(void);

/* Fails the program when progress(arg) stays the same for seconds. */
struct progress_watchdog {
	const char *what;
	u64 (*progress)(void *arg);
	void (*report)(void *arg);	/* what to print first, or NULL */
	void *arg;
	int seconds;
	bool done;
	pthread_t thread;
};

void progress_watchdog_start(struct progress_watchdog *w);
void progress_watchdog_stop(struct progress_watchdog *w);

#endif /* SELFTEST_KVM_GMEM_HUGETLB_UTIL_H */
