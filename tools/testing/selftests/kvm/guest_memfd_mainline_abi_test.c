// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-place conversion through mainline's ABI only (Linux 7.4): its header
 * names and its selftest-library helpers (vm_mem_add() with guest_memfd
 * flags, kvm_slot_to_fd(), gmem_set_private() and gmem_set_shared(),
 * vm_mem_set_memory_attributes(), kvm_has_gmem_attributes, pin_pages(),
 * TEST_EXPECT_SIGBUS()), nothing of this series' own.  That it builds and
 * passes here is what says a test or VMM written for mainline runs on the
 * series unchanged.
 */
#include <pthread.h>
#include <sys/wait.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#define GMEM_SLOT	10
#define GMEM_GPA	SZ_4G
#define GMEM_SIZE	SZ_2M

/*
 * Each test's time limit, in seconds: the harness's default of 30 s is too
 * short on a debug kernel (KASAN, kmemleak) under single-threaded TCG.
 */
#define TEST_TIMEOUT	300

/*
 * The guest reads what the host wrote to a shared page and answers there, then
 * writes a page the host has made private, which keeps what it wrote across a
 * round trip through shared (the conversion is in place).
 */
static void guest_code(void)
{
	u8 *mem = (u8 *)GMEM_GPA;

	GUEST_ASSERT(kvm_has_gmem_attributes);
	GUEST_ASSERT_EQ(READ_ONCE(mem[0]), 0xaa);
	WRITE_ONCE(mem[0], 0xbb);
	GUEST_SYNC(0);
	WRITE_ONCE(mem[PAGE_SIZE], 0xcc);
	GUEST_SYNC(1);
	GUEST_ASSERT_EQ(READ_ONCE(mem[PAGE_SIZE]), 0xcc);
	GUEST_DONE();
}

FIXTURE(gmem) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	u8 *mem;
	int fd;
};

FIXTURE_SETUP(gmem)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_gmem_attributes);

	self->vm = vm_create_shape_with_one_vcpu(shape, &self->vcpu, guest_code);
	TEST_ASSERT_EQ(vm_check_cap(self->vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES),
		       KVM_MEMORY_ATTRIBUTE_PRIVATE);

	vm_mem_add(self->vm, VM_MEM_SRC_ANONYMOUS, GMEM_GPA, GMEM_SLOT,
		   GMEM_SIZE / PAGE_SIZE, KVM_MEM_GUEST_MEMFD, -1, 0,
		   GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	virt_map(self->vm, GMEM_GPA, GMEM_GPA, GMEM_SIZE / PAGE_SIZE);
	self->fd = kvm_slot_to_fd(self->vm, GMEM_SLOT);
	self->mem = addr_gpa2hva(self->vm, GMEM_GPA);
}

FIXTURE_TEARDOWN(gmem)
{
	kvm_vm_free(self->vm);
}

static void run_to_sync(struct kvm_vcpu *vcpu, u64 stage)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		TEST_ASSERT_EQ(uc.args[1], stage);
		break;
	case UCALL_DONE:
		TEST_ASSERT_EQ(stage, -1ull);
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

/*
 * The host and the guest share the file's shared pages through its mapping;
 * a page made private is the guest's only (SIGBUS for the host), and made
 * shared again the host maps it again.
 */
TEST_F_TIMEOUT(gmem, convert_through_the_file, TEST_TIMEOUT)
{
	self->mem[0] = 0xaa;
	run_to_sync(self->vcpu, 0);
	TEST_ASSERT_EQ(self->mem[0], 0xbb);

	gmem_set_private(self->fd, PAGE_SIZE, PAGE_SIZE);
	TEST_EXPECT_SIGBUS(READ_ONCE(self->mem[PAGE_SIZE]));
	run_to_sync(self->vcpu, 1);

	gmem_set_shared(self->fd, PAGE_SIZE, PAGE_SIZE);
	(void)READ_ONCE(self->mem[PAGE_SIZE]);
	gmem_set_private(self->fd, PAGE_SIZE, PAGE_SIZE);
	run_to_sync(self->vcpu, -1ull);
}

/* vm_mem_set_memory_attributes() goes through the file by the gpa. */
TEST_F_TIMEOUT(gmem, convert_by_gpa, TEST_TIMEOUT)
{
	vm_mem_set_memory_attributes(self->vm, GMEM_GPA + SZ_1M, PAGE_SIZE,
				     KVM_MEMORY_ATTRIBUTE_PRIVATE);
	TEST_EXPECT_SIGBUS(READ_ONCE(self->mem[SZ_1M]));
	(void)READ_ONCE(self->mem[SZ_1M - PAGE_SIZE]);

	vm_mem_set_memory_attributes(self->vm, GMEM_GPA + SZ_1M, PAGE_SIZE, 0);
	(void)READ_ONCE(self->mem[SZ_1M]);
}

/* A pinned shared page cannot become private: EAGAIN, at that page. */
TEST_F_TIMEOUT(gmem, pinned_page_stays_shared, TEST_TIMEOUT)
{
	u64 error_offset = 0;

	self->mem[2 * PAGE_SIZE] = 1;
	pin_pages(self->mem + 2 * PAGE_SIZE, PAGE_SIZE);
	TEST_ASSERT(__gmem_set_private(self->fd, 0, 4 * PAGE_SIZE, &error_offset) == -1 &&
		    errno == EAGAIN,
		    "converting a pinned page to private: errno %d", errno);
	TEST_ASSERT_EQ(error_offset, 2 * PAGE_SIZE);
	TEST_ASSERT_EQ(READ_ONCE(self->mem[2 * PAGE_SIZE]), 1);
	unpin_pages();

	gmem_set_private(self->fd, 0, 4 * PAGE_SIZE);
	TEST_EXPECT_SIGBUS(READ_ONCE(self->mem[2 * PAGE_SIZE]));
	gmem_set_shared(self->fd, 0, 4 * PAGE_SIZE);
}

#define NR_SIGBUS_THREADS	4

static void *expect_sigbus_loop(void *arg)
{
	u8 *p = arg;
	int i;

	for (i = 0; i < 200; i++)
		TEST_EXPECT_SIGBUS(READ_ONCE(*p));
	return NULL;
}

/* TEST_EXPECT_SIGBUS() from several threads at once, and a forked child. */
TEST_F_TIMEOUT(gmem, sigbus_in_threads_and_child, TEST_TIMEOUT)
{
	pthread_t threads[NR_SIGBUS_THREADS];
	int i, status;
	pid_t pid;

	gmem_set_private(self->fd, 0, PAGE_SIZE);
	for (i = 0; i < NR_SIGBUS_THREADS; i++)
		pthread_create(&threads[i], NULL, expect_sigbus_loop, self->mem);
	for (i = 0; i < NR_SIGBUS_THREADS; i++)
		pthread_join(threads[i], NULL);

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed, errno %d", errno);
	if (!pid) {
		expect_sigbus_loop(self->mem);
		exit(0);
	}
	TEST_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	TEST_ASSERT(WIFEXITED(status) && !WEXITSTATUS(status),
		    "the child's TEST_EXPECT_SIGBUS() failed: status %#x", status);
	gmem_set_shared(self->fd, 0, PAGE_SIZE);
}

TEST_HARNESS_MAIN
