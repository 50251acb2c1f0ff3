// SPDX-License-Identifier: GPL-2.0-only
/*
 * Print what guest_memfd support the running kernel's KVM reports: the
 * capabilities a VMM probes before it creates a guest_memfd, on /dev/kvm and
 * on a VM of each type that supports guest_memfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct cap {
	const char *name;
	long nr;
};

static const struct cap caps[] = {
	{ "KVM_CAP_GUEST_MEMFD", KVM_CAP_GUEST_MEMFD },
	{ "KVM_CAP_GUEST_MEMFD_FLAGS", KVM_CAP_GUEST_MEMFD_FLAGS },
	{ "KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES", KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES },
	{ "KVM_CAP_MEMORY_ATTRIBUTES", KVM_CAP_MEMORY_ATTRIBUTES },
	{ "KVM_CAP_VM_TYPES", KVM_CAP_VM_TYPES },
};

static const struct {
	const char *name;
	unsigned long type;
} vm_types[] = {
	{ "KVM_X86_DEFAULT_VM", KVM_X86_DEFAULT_VM },
	{ "KVM_X86_SW_PROTECTED_VM", KVM_X86_SW_PROTECTED_VM },
};

static const char *const gmem_flags[] = {
	"MMAP", "INIT_SHARED", "NO_DIRECT_MAP", "HUGE_PAGES",
};

/* The value, and what it means for the flag and size masks. */
static void print_cap(const struct cap *cap, int val)
{
	unsigned int k;

	printf("  %-36s %#x", cap->name, val);
	if (cap->nr == KVM_CAP_GUEST_MEMFD_FLAGS) {
		for (k = 0; k < 32; k++)
			if (val & (1u << k))
				printf(" %s", k < 4 ? gmem_flags[k] : "?");
	} else if (cap->nr == KVM_CAP_GUEST_MEMFD_HUGE_PAGE_SIZES) {
		for (k = 0; k < 31; k++) {
			if (!(val & (1u << k)))
				continue;
			if (k >= 30)
				printf(" %luG", 1ul << (k - 30));
			else if (k >= 20)
				printf(" %luM", 1ul << (k - 20));
			else
				printf(" %luK", 1ul << (k - 10));
		}
	}
	printf("\n");
}

static void print_caps(const char *what, int fd)
{
	unsigned int i;

	printf("%s:\n", what);
	for (i = 0; i < ARRAY_SIZE(caps); i++)
		print_cap(&caps[i], ioctl(fd, KVM_CHECK_EXTENSION, caps[i].nr));
}

int main(void)
{
	unsigned int i;
	int kvm, vm;

	kvm = open("/dev/kvm", O_RDWR);
	if (kvm < 0) {
		perror("open /dev/kvm");
		return 1;
	}
	print_caps("/dev/kvm", kvm);
	for (i = 0; i < ARRAY_SIZE(vm_types); i++) {
		char what[64];

		vm = ioctl(kvm, KVM_CREATE_VM, vm_types[i].type);
		if (vm < 0) {
			printf("%s: KVM_CREATE_VM failed: %s\n", vm_types[i].name,
			       strerror(errno));
			continue;
		}
		snprintf(what, sizeof(what), "VM of type %s", vm_types[i].name);
		print_caps(what, vm);
		close(vm);
	}
	close(kvm);
	return 0;
}
