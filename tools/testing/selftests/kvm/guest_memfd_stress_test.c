// SPDX-License-Identifier: GPL-2.0-only
/*
 * Concurrency stress of guest_memfd conversion, bounded in time and seeded
 * (the seed is printed; SEED= replays the random choices of each thread).
 *
 * Two vCPUs read random pages of the region all along, asserting that each
 * page holds either zeroes or a tag naming that very page: a vCPU must never
 * see another page's memory, whatever the host does at that moment.  Host
 * workers each own every Nth block (2M, or one huge page where that is
 * larger) and, at random, on their blocks: convert a random range both ways,
 * write a fresh tag into a shared page through mmap, read a shared page back,
 * punch a hole through a whole huge page and allocate it again, pin a shared
 * page with vmsplice() and check that it cannot become private until the pipe
 * lets go (in split huge pages too), and read fdinfo.  Each worker keeps a
 * model of its blocks: at the end every attribute and every byte matches,
 * fdinfo's counts match, and the hugetlb pools are exact after close.
 *
 * Other tests race the memslot, the VM and the file going away against
 * conversions and vCPU faults, two VMs converting at once, and files closed
 * while their deferred merges run.
 *
 * The run lasts 10 s, times TIMEOUT_SCALE (set by make check-debug).  A vCPU
 * that has not stopped a minute (times TIMEOUT_SCALE) after it was told to
 * fails the test, with its exit and fault counts and the kernel stack of
 * every thread, rather than hang it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>

#include <linux/falloc.h>
#include <linux/sizes.h>
#include <linux/time64.h>

#include "gmem_hugetlb_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define DATA_SLOT	10
#define DATA_GPA	SZ_4G
#define PRIVATE		KVM_MEMORY_ATTRIBUTE_PRIVATE
#define NR_VCPUS	2
#define NR_WORKERS	2
#define SUBBLOCK_PAGES	(SZ_2M / PAGE_SIZE)

/* A page's tag: its index and a generation, so a reader can tell whose it is. */
#define TAG(index, gen)	((u64)(index) << 24 | ((gen) & 0xffffff))
#define TAG_INDEX(tag)	((tag) >> 24)

static u64 region_pages;
static bool stop_guest;

static void guest_code(u32 seed)
{
	u64 state = seed | 1, index, v;

	while (!READ_ONCE(stop_guest)) {
		/* xorshift: no libc in the guest */
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		index = state % region_pages;
		v = READ_ONCE(*(u64 *)(DATA_GPA + index * PAGE_SIZE));
		__GUEST_ASSERT(!v || TAG_INDEX(v) == index, "page %lx read %lx", index, v);
	}
	GUEST_DONE();
}

struct stress {
	struct kvm_vm *vm;
	int fd;
	u64 size, page_size;
	u64 block_pages;	/* a worker's unit: 2M, or a huge page if larger */
	u64 *mem;		/* the host's mapping of the whole file */
	u8 *shared;		/* the model: per page */
	u64 *tag;
	bool stop;
};

struct worker {
	struct stress *s;
	int id;
	unsigned int seed;
	u64 last_shared;	/* a page this worker last made shared */
	unsigned long converts, eagain, writes, reads, punches, pins, fdinfos;
};

static int convert(int fd, u64 first, u64 n, bool shared, u64 *error_offset)
{
	int r;

	if (shared)
		r = __gmem_set_shared(fd, first * PAGE_SIZE, n * PAGE_SIZE, error_offset);
	else
		r = __gmem_set_private(fd, first * PAGE_SIZE, n * PAGE_SIZE, error_offset);
	return r ? -errno : 0;
}

/* A random page of one of the worker's blocks. */
static u64 worker_page(struct worker *w)
{
	u64 nr_blocks = w->s->size / PAGE_SIZE / w->s->block_pages, block;

	block = (rand_r(&w->seed) % (nr_blocks / NR_WORKERS)) * NR_WORKERS + w->id;
	return block * w->s->block_pages + rand_r(&w->seed) % w->s->block_pages;
}

/*
 * A page to write, read or pin: half the time the one this worker last made
 * shared, since in a 1G file few random pages are shared at any moment.
 */
static u64 worker_shared_page(struct worker *w)
{
	return rand_r(&w->seed) % 2 ? w->last_shared : worker_page(w);
}

static void worker_convert(struct worker *w)
{
	struct stress *s = w->s;
	u64 page = worker_page(w), first = page, n, i;
	/* Stay inside the page's 2M, which the worker owns. */
	u64 room = SUBBLOCK_PAGES - page % SUBBLOCK_PAGES;
	bool shared = rand_r(&w->seed) % 2;
	int r;

	n = 1 + rand_r(&w->seed) % (rand_r(&w->seed) % 4 ? 4 : SUBBLOCK_PAGES);
	if (n > room)
		n = room;

	do {
		r = convert(s->fd, first, n, shared, NULL);
		/* Order-0 pages: a vCPU fault holds the page for a moment. */
		w->eagain += r == -EAGAIN;
	} while (r == -EAGAIN);
	TEST_ASSERT(!r, "worker %d: converting %lu pages at %lu failed: %d",
		    w->id, n, first, r);
	for (i = first; i < first + n; i++)
		s->shared[i] = shared;
	if (shared)
		w->last_shared = first;
	w->converts++;
}

static void worker_write(struct worker *w)
{
	struct stress *s = w->s;
	u64 page = worker_shared_page(w);

	if (!s->shared[page])
		return;
	s->tag[page] = TAG(page, s->tag[page] + 1);
	WRITE_ONCE(s->mem[page * PAGE_SIZE / sizeof(u64)], s->tag[page]);
	w->writes++;
}

static void worker_read(struct worker *w)
{
	struct stress *s = w->s;
	u64 page = worker_shared_page(w);

	if (!s->shared[page])
		return;
	TEST_ASSERT_EQ(READ_ONCE(s->mem[page * PAGE_SIZE / sizeof(u64)]), s->tag[page]);
	w->reads++;
}

/* Punch a hole through the huge page (or 2M) of a page, and allocate it again. */
static void worker_punch(struct worker *w)
{
	struct stress *s = w->s;
	u64 unit = s->page_size > PAGE_SIZE ? s->page_size / PAGE_SIZE : SUBBLOCK_PAGES;
	u64 first, i;

	/*
	 * Allocating a 1G page again means zeroing it, about a second under
	 * emulation: after its first, a worker punches one a 16th as often.
	 */
	if (s->page_size >= SZ_1G && w->punches && rand_r(&w->seed) % 16)
		return;
	first = round_down(worker_page(w), unit);

	TEST_ASSERT_EQ(fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 first * PAGE_SIZE, unit * PAGE_SIZE), 0);
	TEST_ASSERT_EQ(fallocate(s->fd, FALLOC_FL_KEEP_SIZE, first * PAGE_SIZE,
				 unit * PAGE_SIZE), 0);
	for (i = first; i < first + unit; i++)
		s->tag[i] = 0;
	w->punches++;
}

/*
 * A pinned shared page cannot become private, in a split huge page too: the
 * conversion fails at that page, whether the page's block has to be split
 * for it or is in 4K pieces already.
 */
static void worker_pin(struct worker *w)
{
	struct stress *s = w->s;
	u64 page = worker_shared_page(w), error_offset;
	struct iovec iov = {
		.iov_base = &s->mem[page * PAGE_SIZE / sizeof(u64)],
		.iov_len = PAGE_SIZE,
	};
	char buf[PAGE_SIZE];
	int pipefd[2], r;

	if (!s->shared[page])
		return;
	TEST_ASSERT_EQ(pipe(pipefd), 0);
	TEST_ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), PAGE_SIZE);
	r = convert(s->fd, page, 1, false, &error_offset);
	TEST_ASSERT(r == -EAGAIN && error_offset == page * PAGE_SIZE,
		    "converting a pinned page: %d, error_offset %#lx", r, error_offset);
	TEST_ASSERT_EQ(read(pipefd[0], buf, sizeof(buf)), PAGE_SIZE);
	TEST_ASSERT_EQ(*(u64 *)buf, s->tag[page]);
	close(pipefd[0]);
	close(pipefd[1]);
	w->pins++;
}

/* If @line is "@key value", set @val to the value. */
static void fdinfo_field(const char *line, const char *key, u64 *val)
{
	size_t n = strlen(key);

	if (!strncmp(line, key, n))
		*val = strtoull(line + n, NULL, 0);
}

static void worker_fdinfo(struct worker *w)
{
	char path[64], line[128];
	u64 private = 0, shared = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", w->s->fd);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	while (fgets(line, sizeof(line), f)) {
		fdinfo_field(line, "gmem_private_pages:", &private);
		fdinfo_field(line, "gmem_shared_pages:", &shared);
	}
	fclose(f);
	TEST_ASSERT_EQ(private + shared, w->s->size / PAGE_SIZE);
	w->fdinfos++;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	while (!READ_ONCE(w->s->stop)) {
		switch (rand_r(&w->seed) % 16) {
		case 0 ... 4:
			worker_convert(w);
			break;
		case 5 ... 8:
			worker_write(w);
			break;
		case 9 ... 11:
			worker_read(w);
			break;
		case 12:
			worker_punch(w);
			break;
		case 13 ... 14:
			worker_pin(w);
			break;
		case 15:
			worker_fdinfo(w);
			break;
		}
	}
	return NULL;
}

/* Set while the lifetime test deletes the data memslot under the vCPUs. */
static bool memslot_may_vanish;

/* The guest left its loop in a way it never does: where was it? */
static void report_unexpected_exit(struct kvm_vcpu *vcpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	vcpu_regs_get(vcpu, &regs);
	vcpu_sregs_get(vcpu, &sregs);
	TEST_FAIL("vCPU %u: unexpected exit %u at rip %#llx, rsp %#llx, cr2 %#llx, cr3 %#llx",
		  vcpu->id, vcpu->run->exit_reason, regs.rip, regs.rsp,
		  sregs.cr2, sregs.cr3);
}

static void *vcpu_run_until_done(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct ucall uc;

	for (;;) {
		TEST_ASSERT(!vcpu_run_past_memory_faults(vcpu),
			    "KVM_RUN failed, errno %d", errno);
		if (vcpu->run->exit_reason == KVM_EXIT_MMIO &&
		    READ_ONCE(memslot_may_vanish)) {
			/* The memslot is gone: the page reads as zeroes. */
			memset(vcpu->run->mmio.data, 0, sizeof(vcpu->run->mmio.data));
			continue;
		}
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_DONE:
			return NULL;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			report_unexpected_exit(vcpu);
		}
	}
}

/* The vCPU statistics that tell what a vCPU that makes no progress does. */
static const char * const vcpu_progress_stats[] = {
	"exits", "pf_taken", "pf_fixed", "pf_emulate", "irq_exits",
	"io_exits", "mmio_exits", "insn_emulation",
};

#define NR_PROGRESS_STATS ARRAY_SIZE(vcpu_progress_stats)

static void read_vcpu_progress(struct kvm_vcpu *vcpu, u64 *values)
{
	int i;

	for (i = 0; i < NR_PROGRESS_STATS; i++)
		kvm_get_stat(&vcpu->stats, vcpu_progress_stats[i], &values[i], 1);
}

/*
 * Join the thread of a vCPU told to stop.  A vCPU that never gets back to
 * the guest code's loop would hang the test until the harness's timeout:
 * fail within a minute instead, with what the vCPU did in its last second.
 */
static void join_vcpu_thread(pthread_t thread, struct kvm_vcpu *vcpu)
{
	int scale = getenv("TIMEOUT_SCALE") ? atoi(getenv("TIMEOUT_SCALE")) : 1;
	u64 before[NR_PROGRESS_STATS], after[NR_PROGRESS_STATS];
	struct timespec deadline;
	int i;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60 * scale;
	if (!pthread_timedjoin_np(thread, NULL, &deadline))
		return;

	read_vcpu_progress(vcpu, before);
	sleep(1);
	read_vcpu_progress(vcpu, after);
	for (i = 0; i < NR_PROGRESS_STATS; i++)
		ksft_print_msg("vCPU %u %s: %lu, %lu in the last second\n", vcpu->id,
			       vcpu_progress_stats[i], after[i], after[i] - before[i]);
	print_thread_stacks();
	TEST_FAIL("vCPU %u did not stop within %d s", vcpu->id, 60 * scale);
}

/*
 * A VM of @nr_vcpus vCPUs running guest_code(), with a guest_memfd of @size
 * bytes bound at DATA_GPA and mapped in the guest: 4K pages for a
 * @page_shift of 12, hugetlb pages of that size otherwise.  KVM itself (its
 * instruction emulator, for one) reads and writes guest memory through the
 * memslot's userspace address, so that is the file's own mapping, *@mem, as
 * a VMM sets it.  Returns the guest_memfd.
 */
static int data_vm_create(struct kvm_vm **vm, struct kvm_vcpu **vcpus, int nr_vcpus,
			  unsigned int page_shift, u64 size, void **mem)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	bool huge = page_shift > 12;
	int fd;

	*vm = __vm_create_with_vcpus(shape, nr_vcpus, size / PAGE_SIZE, guest_code, vcpus);
	fd = __gmem_create_huge(*vm, size, GUEST_MEMFD_FLAG_MMAP |
				(huge ? GUEST_MEMFD_FLAG_HUGE_PAGES : 0),
				huge ? page_shift : 0);
	TEST_ASSERT(fd >= 0, "creating the guest_memfd failed, errno %d", errno);
	*mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	vm_set_user_memory_region2(*vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
				   size, *mem, fd, 0);
	virt_map_level(*vm, DATA_GPA, DATA_GPA, size,
		       size % SZ_1G ? PG_LEVEL_2M : PG_LEVEL_1G);
	region_pages = size / PAGE_SIZE;
	sync_global_to_guest(*vm, region_pages);
	return fd;
}

FIXTURE(stress) {
	struct hugetlb_pools pools_before;
};

FIXTURE_VARIANT(stress) {
	unsigned int page_shift;
	u64 size;
};

FIXTURE_VARIANT_ADD(stress, page_4k) {
	.page_shift = 12,
	.size = SZ_16M,
};

FIXTURE_VARIANT_ADD(stress, page_2m) {
	.page_shift = 21,
	.size = SZ_64M,
};

FIXTURE_VARIANT_ADD(stress, page_1g) {
	.page_shift = 30,
	.size = SZ_1G,
};

FIXTURE_SETUP(stress)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
	read_hugetlb_pools(&self->pools_before);
}

FIXTURE_TEARDOWN(stress)
{
	assert_hugetlb_pools(&self->pools_before, 0, 0, 0);
}

TEST_F_TIMEOUT(stress, convert_punch_pin_while_vcpus_read, 900)
{
	unsigned int seed = getenv("SEED") ? atoi(getenv("SEED")) : time(NULL);
	int scale = getenv("TIMEOUT_SCALE") ? atoi(getenv("TIMEOUT_SCALE")) : 1;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct worker workers[NR_WORKERS];
	pthread_t vcpu_threads[NR_VCPUS], worker_threads[NR_WORKERS];
	u64 npages, i, private = 0, checked = 0;
	u64 got_private = 0, got_shared = 0, got_ranges = 0;
	struct stress s = { 0 };
	char path[64], line[128];
	FILE *f;

	s.page_size = 1ull << variant->page_shift;
	s.block_pages = max_t(u64, s.page_size, SZ_2M) / PAGE_SIZE;
	/* A block per worker at least, so that each can punch a huge page of its own. */
	s.size = max_t(u64, variant->size, (NR_WORKERS * s.block_pages * PAGE_SIZE));
	npages = s.size / PAGE_SIZE;
	ksft_print_msg("seed %u (SEED=%u replays it), %d s\n", seed, seed, 10 * scale);

	s.fd = data_vm_create(&s.vm, vcpus, NR_VCPUS, variant->page_shift, s.size,
			      (void **)&s.mem);
	s.shared = calloc(npages, 1);
	s.tag = calloc(npages, sizeof(u64));
	TEST_ASSERT(s.shared && s.tag, "calloc");

	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_args_set(vcpus[i], 1, seed + i);
		pthread_create(&vcpu_threads[i], NULL, vcpu_run_until_done, vcpus[i]);
	}
	for (i = 0; i < NR_WORKERS; i++) {
		workers[i] = (struct worker) {
			.s = &s, .id = i, .seed = seed * 31 + i,
			.last_shared = i * s.block_pages,	/* its first block */
		};
		pthread_create(&worker_threads[i], NULL, worker_run, &workers[i]);
	}

	sleep(10 * scale);
	WRITE_ONCE(s.stop, true);
	for (i = 0; i < NR_WORKERS; i++)
		pthread_join(worker_threads[i], NULL);
	*(bool *)addr_gva2hva(s.vm, (gva_t)&stop_guest) = true;
	for (i = 0; i < NR_VCPUS; i++)
		join_vcpu_thread(vcpu_threads[i], vcpus[i]);

	for (i = 0; i < NR_WORKERS; i++) {
		struct worker *w = &workers[i];

		ksft_print_msg("worker %lu: %lu conversions (%lu EAGAIN retries), %lu writes, ",
			       i, w->converts, w->eagain, w->writes);
		printf("%lu reads, %lu punches, %lu pins, %lu fdinfo reads\n",
		       w->reads, w->punches, w->pins, w->fdinfos);
	}

	/* Every attribute, as fdinfo counts them. */
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", s.fd);
	f = fopen(path, "r");
	TEST_ASSERT(f, "fopen(%s)", path);
	while (fgets(line, sizeof(line), f)) {
		fdinfo_field(line, "gmem_private_pages:", &got_private);
		fdinfo_field(line, "gmem_shared_pages:", &got_shared);
		fdinfo_field(line, "gmem_shareability_ranges:", &got_ranges);
	}
	fclose(f);
	for (i = 0; i < npages; i++)
		private += !s.shared[i];
	TEST_ASSERT_EQ(got_private, private);
	TEST_ASSERT_EQ(got_shared, npages - private);
	TEST_ASSERT_EQ(got_ranges, count_uniform_runs(s.shared, npages));

	/* Every byte: shared, the private pages show what they kept. */
	TEST_ASSERT_EQ(convert(s.fd, 0, npages, true, NULL), 0);
	for (i = 0; i < npages; i++) {
		if (!s.tag[i] && i % 64)
			continue;	/* a sample of the untouched pages */
		TEST_ASSERT(s.mem[i * PAGE_SIZE / sizeof(u64)] == s.tag[i],
			    "page %lu holds %#lx, expected %#lx", i,
			    s.mem[i * PAGE_SIZE / sizeof(u64)], s.tag[i]);
		checked++;
	}
	ksft_print_msg("%lu pages checked, %lu private at the end\n", checked, private);

	kvm_munmap(s.mem, s.size);
	close(s.fd);
	kvm_vm_free(s.vm);
	free(s.shared);
	free(s.tag);
}

/*
 * Lifetimes: a conversion racing the deletion of the memslot it backs, the
 * guest_memfd closed while vCPUs fault on it, and the VM and the file closed
 * while conversions are in flight.  Nothing may crash, warn or leak (the
 * kernel's taint; make check scans the kernel log; teardown checks the
 * pools), and each side sees only documented outcomes.  The memslot goes and
 * comes back 20 times, or DELETIONS= times, to make a rare outcome of that
 * race less rare: a vCPU that found no memslot, then met the mapping another
 * vCPU made once the memslot was back, warned in the TDP MMU.
 */
struct racer {
	int fd;
	u64 npages;
	unsigned int seed;
	unsigned long ok;
	bool stop;
};

static void *convert_until_stopped(void *arg)
{
	struct racer *r = arg;
	struct kvm_memory_attributes2 args;

	while (!READ_ONCE(r->stop)) {
		u64 first = rand_r(&r->seed) % r->npages;

		args = (struct kvm_memory_attributes2) {
			.offset = first * PAGE_SIZE,
			.size = min_t(u64, 1 + rand_r(&r->seed) % 1024, r->npages - first) *
				PAGE_SIZE,
			.attributes = rand_r(&r->seed) % 2 ? PRIVATE : 0,
		};
		if (!ioctl(r->fd, KVM_SET_MEMORY_ATTRIBUTES2, &args)) {
			r->ok++;
			continue;
		}
		/* The file is closed under us: the end of the race. */
		if (errno == EBADF)
			break;
		TEST_ASSERT(errno == EAGAIN, "conversion failed, errno %d", errno);
	}
	return NULL;
}

TEST_F_TIMEOUT(stress, lifetime_races, 900)
{
	int deletions = getenv("DELETIONS") ? atoi(getenv("DELETIONS")) : 20;
	unsigned long taint = read_kernel_taint();
	u64 size = variant->size, npages = size / PAGE_SIZE;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	pthread_t converter, vcpu_threads[NR_VCPUS];
	struct racer racer;
	struct kvm_vm *vm;
	void *mem;
	int i, fd;

	fd = data_vm_create(&vm, vcpus, NR_VCPUS, variant->page_shift, size, &mem);

	racer = (struct racer) { .fd = fd, .npages = npages, .seed = time(NULL) };
	pthread_create(&converter, NULL, convert_until_stopped, &racer);
	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_args_set(vcpus[i], 1, racer.seed + i);
		pthread_create(&vcpu_threads[i], NULL, vcpu_run_until_done, vcpus[i]);
	}

	/*
	 * Conversions and vCPU faults racing the memslot going and coming back.
	 * While it is gone the guest's reads are MMIO that reads as zeroes;
	 * when it is back, its pages are private or shared as the file says.
	 */
	WRITE_ONCE(memslot_may_vanish, true);
	for (i = 0; i < deletions; i++) {
		vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
					   0, NULL, fd, 0);
		usleep(20 * 1000);
		vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
					   size, mem, fd, 0);
		usleep(20 * 1000);
	}

	/*
	 * The vCPUs stop; the VM's file descriptors go while conversions run
	 * (the guest_memfd keeps the VM alive), then the guest_memfd itself,
	 * which takes the VM with it.
	 */
	*(bool *)addr_gva2hva(vm, (gva_t)&stop_guest) = true;
	for (i = 0; i < NR_VCPUS; i++)
		join_vcpu_thread(vcpu_threads[i], vcpus[i]);
	WRITE_ONCE(memslot_may_vanish, false);
	kvm_vm_free(vm);
	usleep(50 * 1000);
	close(fd);
	pthread_join(converter, NULL);
	kvm_munmap(mem, size);
	ksft_print_msg("%lu conversions raced %d memslot deletions and two closes\n",
		       racer.ok, deletions);
	assert_kernel_did_not_warn(taint);
}

/*
 * Two VMs, each with a guest_memfd of its own (a guest_memfd belongs to the
 * VM that created it; binding it to another VM is refused), converting at
 * once: their splits and merges share the hugetlb pool and its vmemmap work.
 * One VM and its file go while the other keeps converting, and the one left
 * still converts its whole file.
 */
struct gmem_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	void *mem;
	pthread_t converter, vcpu_thread;
	struct racer racer;
};

static void gmem_vm_start(struct gmem_vm *g, unsigned int page_shift, u64 size,
			  unsigned int seed)
{
	int fd = data_vm_create(&g->vm, &g->vcpu, 1, page_shift, size, &g->mem);

	g->racer = (struct racer) { .fd = fd, .npages = size / PAGE_SIZE, .seed = seed };
	pthread_create(&g->converter, NULL, convert_until_stopped, &g->racer);
	vcpu_args_set(g->vcpu, 1, seed);
	pthread_create(&g->vcpu_thread, NULL, vcpu_run_until_done, g->vcpu);
}

static void gmem_vm_stop_vcpu(struct gmem_vm *g)
{
	*(bool *)addr_gva2hva(g->vm, (gva_t)&stop_guest) = true;
	join_vcpu_thread(g->vcpu_thread, g->vcpu);
}

TEST_F_TIMEOUT(stress, two_vms_convert_at_once, 900)
{
	int scale = getenv("TIMEOUT_SCALE") ? atoi(getenv("TIMEOUT_SCALE")) : 1;
	unsigned int seed = time(NULL);
	u64 size = variant->size, npages = size / PAGE_SIZE;
	struct gmem_vm a, b;
	int r;

	gmem_vm_start(&a, variant->page_shift, size, seed);
	gmem_vm_start(&b, variant->page_shift, size, seed + 1);

	/*
	 * The same binding of b's own file fails only because that range of
	 * the file is bound already: the owner alone makes the EINVAL.
	 */
	r = __vm_set_user_memory_region2(b.vm, DATA_SLOT + 1, KVM_MEM_GUEST_MEMFD,
					 DATA_GPA + size, size, b.mem, b.racer.fd, 0);
	TEST_ASSERT(r == -1 && errno == EEXIST,
		    "binding b's own bound range again: %d, errno %d", r, errno);
	r = __vm_set_user_memory_region2(b.vm, DATA_SLOT + 1, KVM_MEM_GUEST_MEMFD,
					 DATA_GPA + size, size, a.mem, a.racer.fd, 0);
	TEST_ASSERT(r == -1 && errno == EINVAL,
		    "binding another VM's guest_memfd: %d, errno %d", r, errno);

	sleep(2 * scale);

	/* VM a goes, then its file, while b converts on. */
	gmem_vm_stop_vcpu(&a);
	kvm_vm_free(a.vm);
	close(a.racer.fd);
	pthread_join(a.converter, NULL);
	kvm_munmap(a.mem, size);
	sleep(scale);

	gmem_vm_stop_vcpu(&b);
	WRITE_ONCE(b.racer.stop, true);
	pthread_join(b.converter, NULL);
	ksft_print_msg("conversions: %lu in the VM that went first, %lu in the other\n",
		       a.racer.ok, b.racer.ok);

	/* The one left converts its whole file both ways. */
	TEST_ASSERT_EQ(convert(b.racer.fd, 0, npages, true, NULL), 0);
	TEST_ASSERT_EQ(convert(b.racer.fd, 0, npages, false, NULL), 0);
	kvm_vm_free(b.vm);
	kvm_munmap(b.mem, size);
	close(b.racer.fd);
}

/* One 4K round trip, shared and back, at a random page of each block. */
static void round_trip_blocks(int fd, u64 first, u64 last, u64 block_pages,
			      unsigned int *seed)
{
	u64 block, page;

	for (block = first; block < last; block++) {
		page = block * block_pages + rand_r(seed) % block_pages;
		TEST_ASSERT_EQ(convert(fd, page, 1, true, NULL), 0);
		TEST_ASSERT_EQ(convert(fd, page, 1, false, NULL), 0);
	}
}

static void sleep_until(struct timespec start, u64 ms)
{
	struct timespec elapsed = timespec_elapsed(start);
	u64 ns = elapsed.tv_sec * NSEC_PER_SEC + elapsed.tv_nsec;

	if (ns < ms * NSEC_PER_MSEC)
		usleep((ms * NSEC_PER_MSEC - ns) / NSEC_PER_USEC);
}

/*
 * Files closed while their deferred merges run: the merge work, running as
 * the last reference goes, may defer again, and must not put the evicted
 * inode back on the shrinker's list (a use after free, which list debugging
 * reports as a corrupted list, and on which a shrinker's walk may loop).
 * With a 50 ms delay, half of each file's blocks get a 4K round trip at once
 * and the other half 25 ms later, so that when the work runs it merges the
 * first half while the second must wait on; the file is closed at a random
 * moment of the 20 ms the work may take.  40 files (fewer on the slow debug
 * kernel; ITERATIONS= sets it): the old code failed within a few.  The
 * kernel must not warn (TAINT_WARN), and the shrinker's walk afterwards
 * (drop_caches) returns.
 */
TEST_F_TIMEOUT(stress, close_while_merge_work_runs, 300)
{
	int scale = getenv("TIMEOUT_SCALE") ? atoi(getenv("TIMEOUT_SCALE")) : 1;
	int iterations = getenv("ITERATIONS") ? atoi(getenv("ITERATIONS")) : 40 / scale;
	unsigned int seed = getenv("SEED") ? atoi(getenv("SEED")) : time(NULL);
	u64 size = variant->size, npages = size / PAGE_SIZE;
	u64 block_pages = max_t(u64, 1UL << (variant->page_shift - 12), SUBBLOCK_PAGES);
	u64 nr_blocks = npages / block_pages;
	unsigned long taint = read_kernel_taint();
	unsigned int delay_ms = gmem_set_merge_delay_ms(50);
	bool huge = variant->page_shift > 12;
	struct timespec start;
	struct kvm_vm *vm;
	int i, fd;

	ksft_print_msg("seed %u\n", seed);
	for (i = 0; i < iterations; i++) {
		vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
		fd = __gmem_create_huge(vm, size, GUEST_MEMFD_FLAG_MMAP |
					(huge ? GUEST_MEMFD_FLAG_HUGE_PAGES : 0),
					huge ? variant->page_shift : 0);
		TEST_ASSERT(fd >= 0, "creating the guest_memfd failed, errno %d", errno);
		TEST_ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size), 0);

		clock_gettime(CLOCK_MONOTONIC, &start);
		round_trip_blocks(fd, 0, nr_blocks / 2, block_pages, &seed);
		sleep_until(start, 25);
		round_trip_blocks(fd, nr_blocks / 2, nr_blocks, block_pages, &seed);
		sleep_until(start, 50 + rand_r(&seed) % 20);
		kvm_vm_free(vm);
		close(fd);
	}
	drop_caches();
	gmem_set_merge_delay_ms(delay_ms);

	assert_kernel_did_not_warn(taint);
}

/*
 * vCPU faults look pieces up without the invalidate lock while conversions
 * merge the huge page back at every round trip (kvm.gmem_merge_delay_ms=0),
 * which re-applies HVO and makes the struct pages of all pieces but the first
 * read-only.  A fault that read a piece's reference count before the merge
 * froze it, and took its reference after HVO, oopsed writing a read-only page
 * (seen in bench/convert -T's "1G merge 0ms" rows before merges waited for such
 * lookups).
 */
TEST_F_TIMEOUT(stress, vcpus_fault_while_merges_apply_hvo, 300)
{
	int scale = getenv("TIMEOUT_SCALE") ? atoi(getenv("TIMEOUT_SCALE")) : 1;
	u64 npages = variant->size / PAGE_SIZE, page, round_trips = 0;
	unsigned long taint = read_kernel_taint();
	struct kvm_vcpu *vcpus[NR_VCPUS];
	pthread_t threads[NR_VCPUS];
	struct timespec start, now;
	unsigned int delay_ms;
	struct kvm_vm *vm;
	void *mem;
	int fd, i, r;

	if (variant->page_shift == 12)
		SKIP(return, "an order-0 file has no huge page to merge");

	delay_ms = gmem_set_merge_delay_ms(0);
	fd = data_vm_create(&vm, vcpus, NR_VCPUS, variant->page_shift,
			    variant->size, &mem);
	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_args_set(vcpus[i], 1, i + 1);
		pthread_create(&threads[i], NULL, vcpu_run_until_done, vcpus[i]);
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		/* 16 pages across the file, 5 pages into their 2M blocks. */
		page = (round_trips % 16) * (npages / 16) + 5;
		do {
			r = convert(fd, page, 1, true, NULL);
		} while (r == -EAGAIN);
		TEST_ASSERT_EQ(r, 0);
		do {
			r = convert(fd, page, 1, false, NULL);
		} while (r == -EAGAIN);
		TEST_ASSERT_EQ(r, 0);
		round_trips++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 10 * scale);

	*(bool *)addr_gva2hva(vm, (gva_t)&stop_guest) = true;
	for (i = 0; i < NR_VCPUS; i++)
		join_vcpu_thread(threads[i], vcpus[i]);
	ksft_print_msg("%lu round trips\n", round_trips);
	kvm_vm_free(vm);
	kvm_munmap(mem, variant->size);
	close(fd);
	gmem_set_merge_delay_ms(delay_ms);

	assert_kernel_did_not_warn(taint);
}

TEST_HARNESS_MAIN
