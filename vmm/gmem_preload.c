// SPDX-License-Identifier: GPL-2.0-only
/*
 * gmem_preload: QEMU's RAM in a (huge) guest_memfd, QEMU unchanged.
 *
 * An LD_PRELOAD library for Debian's QEMU that does what a "hugetlbsize="
 * property on QEMU's guest_memfd RAM backend would do:
 *
 * - the RAM of "-object memory-backend-memfd,share=on,seal=off" lives in a
 *   guest_memfd created on QEMU's VM with GUEST_MEMFD_FLAG_MMAP |
 *   GUEST_MEMFD_FLAG_INIT_SHARED, plus GUEST_MEMFD_FLAG_HUGE_PAGES and the
 *   page size GMEM_PAGE_SIZE names (1G, the default, 2M, or 4K for none);
 * - every memslot QEMU makes over that RAM is bound to the file
 *   (KVM_MEM_GUEST_MEMFD, guest_memfd_offset), so that KVM maps guest memory
 *   at the file's page size whatever the host's mapping of it;
 * - everything else (the mapping QEMU reads and writes guest memory through,
 *   prealloc=on, devices) is QEMU's own.
 *
 * How: memfd_create() with QEMU's name for the backend returns a memfd that
 * holds the descriptor's number; ftruncate(), which tells the size, replaces it
 * with the guest_memfd (dup2()).  mmap() of it is recorded, so that
 * KVM_SET_USER_MEMORY_REGION(2) over the mapping becomes a
 * KVM_SET_USER_MEMORY_REGION2 with the binding.  A slot KVM cannot bind
 * (read-only or dirty-logged, or an alias of a file range another slot
 * holds) stays a plain userspace_addr slot, and the library says so on stderr.
 * KVM changes nothing of a bound slot but its deletion: turning dirty logging
 * on, as live migration (or a framebuffer over this RAM) does, fails with
 * EINVAL, and the library says why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kvm.h>

/* QEMU's TYPE_MEMORY_BACKEND_MEMFD, the name it gives memfd_create(). */
#define QEMU_MEMFD_NAME "memory-backend-memfd"
#define MAX_FILES 8
#define MAX_MAPS 32
#define MAX_SLOTS 64
#define __alias(symbol) __attribute__((alias(#symbol)))

struct gmem_map {
	__u64 start, len, offset;
	int fd;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int vm_fd = -1;
static int pending[MAX_FILES];	/* memfds waiting for their size */
static int nr_pending;
static int files[MAX_FILES];	/* descriptors that are guest_memfds */
static int nr_files;
static struct gmem_map maps[MAX_MAPS];
static int nr_maps;
static unsigned int bound[MAX_SLOTS];	/* slots bound to a guest_memfd */
static int nr_bound;
static int shift;			/* log2 of GMEM_PAGE_SIZE */

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("gmem_preload: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int take(int *set, int *nr, int fd)
{
	for (int i = 0; i < *nr; i++) {
		if (set[i] == fd) {
			set[i] = set[--*nr];
			return 1;
		}
	}
	return 0;
}

static int holds(const int *set, int nr, int fd)
{
	for (int i = 0; i < nr; i++)
		if (set[i] == fd)
			return 1;
	return 0;
}

/* GMEM_PAGE_SIZE as log2 of bytes: 12 (4K, no huge pages), 21 or 30. */
__attribute__((constructor)) static void read_page_size(void)
{
	const char *s = getenv("GMEM_PAGE_SIZE");

	if (!s || !strcmp(s, "1G")) {
		shift = 30;
	} else if (!strcmp(s, "2M")) {
		shift = 21;
	} else if (!strcmp(s, "4K")) {
		shift = 12;
	} else {
		say("GMEM_PAGE_SIZE=%s: use 4K, 2M or 1G\n", s);
		exit(1);
	}
}

static int holds_slot(unsigned int slot)
{
	for (int i = 0; i < nr_bound; i++)
		if (bound[i] == slot)
			return 1;
	return 0;
}

static void forget_slot(unsigned int slot)
{
	for (int i = 0; i < nr_bound; i++) {
		if (bound[i] == slot) {
			bound[i] = bound[--nr_bound];
			return;
		}
	}
}

/* Forget the mappings that overlap [@start, @start + @len). */
static void forget_maps(__u64 start, __u64 len)
{
	for (int i = 0; i < nr_maps; i++) {
		if (maps[i].start < start + len && start < maps[i].start + maps[i].len)
			maps[i--] = maps[--nr_maps];
	}
}

int memfd_create(const char *name, unsigned int flags)
{
	int fd = syscall(SYS_memfd_create, name, flags);

	if (fd < 0 || strcmp(name, QEMU_MEMFD_NAME))
		return fd;
	pthread_mutex_lock(&lock);
	if (nr_pending < MAX_FILES)
		pending[nr_pending++] = fd;
	pthread_mutex_unlock(&lock);
	return fd;
}

/* Put a guest_memfd of @size bytes where the memfd @fd is. */
static int become_guest_memfd(int fd, off_t size)
{
	struct kvm_create_guest_memfd gmem = {
		.size = size,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	int g, err;

	if (shift > 12) {
		gmem.flags |= GUEST_MEMFD_FLAG_HUGE_PAGES;
		gmem.huge_page_size_log2 = shift;
	}
	if (vm_fd < 0 || nr_files == MAX_FILES) {
		say(vm_fd < 0 ? "no KVM VM yet: QEMU must run with -accel kvm\n" :
				"more than %d memfd backends\n", MAX_FILES);
		errno = ENODEV;
		return -1;
	}
	g = syscall(SYS_ioctl, vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (g < 0) {
		err = errno;
		say("KVM_CREATE_GUEST_MEMFD of %lld MiB, %lu KiB pages: %s\n",
		    (long long)size >> 20, (1UL << shift) >> 10, strerror(err));
		errno = err;
		return -1;
	}
	/* The guest_memfd keeps the memfd's close-on-exec flag. */
	if (dup3(g, fd, fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0) < 0) {
		err = errno;
		close(g);
		errno = err;
		return -1;
	}
	close(g);
	files[nr_files++] = fd;
	say("RAM of %lld MiB in guest_memfd %d, %lu KiB pages\n",
	    (long long)size >> 20, fd, (1UL << shift) >> 10);
	return 0;
}

int ftruncate(int fd, off_t size)
{
	int r;

	pthread_mutex_lock(&lock);
	if (take(pending, &nr_pending, fd))
		r = become_guest_memfd(fd, size);
	else
		r = syscall(SYS_ftruncate, fd, size);
	pthread_mutex_unlock(&lock);
	return r;
}

int ftruncate64(int fd, off_t size) __alias(ftruncate);

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
	void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, offset);

	if (p == MAP_FAILED)
		return p;
	pthread_mutex_lock(&lock);
	forget_maps((uintptr_t)p, len);
	if (fd >= 0 && holds(files, nr_files, fd) && nr_maps < MAX_MAPS)
		maps[nr_maps++] = (struct gmem_map){
			.start = (uintptr_t)p, .len = len, .offset = offset, .fd = fd,
		};
	pthread_mutex_unlock(&lock);
	return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
	__alias(mmap);

int munmap(void *addr, size_t len)
{
	pthread_mutex_lock(&lock);
	forget_maps((uintptr_t)addr, len);
	pthread_mutex_unlock(&lock);
	return syscall(SYS_munmap, addr, len);
}

static const struct gmem_map *map_of(__u64 uaddr, __u64 size)
{
	for (int i = 0; i < nr_maps; i++)
		if (uaddr >= maps[i].start &&
		    uaddr + size <= maps[i].start + maps[i].len)
			return &maps[i];
	return NULL;
}

/*
 * A memslot over guest_memfd RAM, bound to the file.  Returns the ioctl's
 * result, or 1 if the slot is not one to bind (the caller passes it on).
 */
static int set_bound_region(int fd, const struct kvm_userspace_memory_region2 *r)
{
	struct kvm_userspace_memory_region2 b = *r;
	const struct gmem_map *m;
	int ret;

	if (!r->memory_size) {
		forget_slot(r->slot);
		return 1;
	}
	if (holds_slot(r->slot)) {
		/* KVM changes nothing of a bound slot but its deletion. */
		say("slot %u is bound to a guest_memfd: KVM cannot change its flags to %#x\n",
		    r->slot, r->flags);
		errno = EINVAL;
		return -1;
	}
	if (r->flags & (KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES))
		return 1;
	m = map_of(r->userspace_addr, r->memory_size);
	if (!m)
		return 1;
	b.flags |= KVM_MEM_GUEST_MEMFD;
	b.guest_memfd = m->fd;
	b.guest_memfd_offset = m->offset + r->userspace_addr - m->start;
	ret = syscall(SYS_ioctl, fd, KVM_SET_USER_MEMORY_REGION2, &b);
	if (ret && (errno == EEXIST || errno == EINVAL)) {
		say("slot %u (gpa 0x%llx, %llu KiB) not bound: %s\n", r->slot,
		    (unsigned long long)r->guest_phys_addr,
		    (unsigned long long)r->memory_size >> 10, strerror(errno));
		return 1;
	}
	if (!ret && nr_bound < MAX_SLOTS)
		bound[nr_bound++] = r->slot;
	if (!ret)
		say("slot %u: gpa 0x%llx, %llu KiB, bound at offset 0x%llx\n",
		    r->slot, (unsigned long long)b.guest_phys_addr,
		    (unsigned long long)b.memory_size >> 10,
		    (unsigned long long)b.guest_memfd_offset);
	return ret;
}

int ioctl(int fd, unsigned long req, ...)
{
	struct kvm_userspace_memory_region2 r2 = {};
	void *arg;
	va_list ap;
	int ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);

	switch (req) {
	case KVM_SET_USER_MEMORY_REGION:
		memcpy(&r2, arg, sizeof(struct kvm_userspace_memory_region));
		break;
	case KVM_SET_USER_MEMORY_REGION2:
		r2 = *(struct kvm_userspace_memory_region2 *)arg;
		break;
	default:
		ret = syscall(SYS_ioctl, fd, req, arg);
		if (req == KVM_CREATE_VM && ret >= 0)
			vm_fd = ret;
		return ret;
	}
	pthread_mutex_lock(&lock);
	ret = set_bound_region(fd, &r2);
	pthread_mutex_unlock(&lock);
	if (ret == 1)
		ret = syscall(SYS_ioctl, fd, req, arg);
	return ret;
}
