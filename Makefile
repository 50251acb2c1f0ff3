# hugetlb-backed guest_memfd: fetch Linux 7.3, lay the overlay on it, build the
# test kernel and selftests, boot them under QEMU and run the tests.
#
#   make              install packages, fetch, overlay, build kernel + selftests
#   make check        ... then boot and run every test tier (T=PATTERN: some)
#   make check-debug  the same on the debug kernel (KASAN, kmemleak, ...)
#   make bench        ... then boot and run the benchmarks
#   make vm-run CMD=  ... then boot and run CMD in the test VM
#   make run-guest    ... then boot a Linux guest with Debian's QEMU in the test
#                     VM, its RAM on 1G guest_memfd (HUGE=2M, 4K, hugetlbfs-1G,
#                     hugetlbfs-2M, anon to compare)
#   make series       export the overlay as a git format-patch series (build/series)
#   make checkpatch   scripts/checkpatch.pl --strict on our C files and patches
#   make series-builds build the kernel at every patch of the series (P="1 26":
#                     those only); opt-in, about an hour
#
# See README.md.

TOP      := $(CURDIR)
BUILD    := $(TOP)/build
SRC      := $(BUILD)/linux-7.3
OBJ      := $(BUILD)/obj
HDR      := $(BUILD)/headers
KSFT     := $(BUILD)/selftests
FRAGMENT := $(TOP)/config/test.config
JOBS     ?= $(shell nproc)
KMAKE    := $(MAKE) -s -C $(SRC) O=$(OBJ) CC="ccache gcc" -j$(JOBS)
BZIMAGE  := $(OBJ)/arch/x86/boot/bzImage

# ccache keys on paths relative to the checkout, so another clone of this
# repository (CI's) reuses the objects a developer's build cached.
export CCACHE_BASEDIR := $(TOP)
export CCACHE_NOHASHDIR := 1

.PHONY: all deps fetch overlay config kernel headers selftests perf check bench \
	vm-run series series-builds checkpatch clean distclean kernel-debug check-debug vmm run-guest check-vmm

all: kernel selftests
	@echo "Built on Linux $$(cat $(BUILD)/kernelrelease) (Debian linux-source-7.3, $$(cd $(SRC) && git log -1 --format=%s v7.3 | sed 's/.*(Debian \(.*\))/\1/'))"

deps:
	@bash scripts/deps.sh

fetch: deps
	@bash scripts/fetch-kernel.sh

overlay: fetch
	@bash scripts/overlay.sh apply

# Regenerated when the fragment or the overlay (which may change Kconfig)
# changes; scripts/mkconfig.sh fails if an option of the fragment is dropped.
config: overlay
	@key="$$( (cat $(FRAGMENT) scripts/mkconfig.sh; git -C $(SRC) ls-tree -r HEAD | grep -E "Kconfig") | sha1sum)"; \
	if [ ! -f $(OBJ)/.config ] || [ "$$(cat $(OBJ)/.config.key 2>/dev/null)" != "$$key" ]; then \
		echo "config: tinyconfig + $(notdir $(FRAGMENT))"; \
		bash scripts/mkconfig.sh $(SRC) $(OBJ) $(FRAGMENT) && echo "$$key" > $(OBJ)/.config.key; \
	fi

kernel: config
	@echo "kernel: building bzImage (first build ~7 min, incremental < 1 min)"
	@$(KMAKE) bzImage
	@$(KMAKE) kernelrelease > $(BUILD)/kernelrelease

# The debug kernel: the same fragment plus config/debug.config, built apart.
DEBUG_OBJ := $(BUILD)/obj-debug
DEBUG_FRAGMENT := $(BUILD)/debug.config

kernel-debug: overlay
	@# debug.config's options replace test.config's (KASAN rules out KVM_WERROR).
	@awk 'NR == FNR { if (match($$0, /CONFIG_[A-Z0-9_]+/)) over[substr($$0, RSTART, RLENGTH)] = 1; next } \
		match($$0, /CONFIG_[A-Z0-9_]+/) && substr($$0, RSTART, RLENGTH) in over { next } \
		{ print }' $(TOP)/config/debug.config $(FRAGMENT) > $(DEBUG_FRAGMENT).new
	@cat $(TOP)/config/debug.config >> $(DEBUG_FRAGMENT).new
	@key="$$( (cat $(DEBUG_FRAGMENT).new scripts/mkconfig.sh; git -C $(SRC) ls-tree -r HEAD | grep -E "Kconfig") | sha1sum)"; \
	if [ ! -f $(DEBUG_OBJ)/.config ] || [ "$$(cat $(DEBUG_OBJ)/.config.key 2>/dev/null)" != "$$key" ]; then \
		echo "config: tinyconfig + test.config + debug.config"; \
		mv $(DEBUG_FRAGMENT).new $(DEBUG_FRAGMENT); \
		bash scripts/mkconfig.sh $(SRC) $(DEBUG_OBJ) $(DEBUG_FRAGMENT) && echo "$$key" > $(DEBUG_OBJ)/.config.key; \
	fi
	@echo "kernel-debug: building the debug bzImage (first build ~20 min)"
	@$(MAKE) -s -C $(SRC) O=$(DEBUG_OBJ) CC="ccache gcc" -j$(JOBS) bzImage

# The patched tree's uAPI headers, for the selftests and for outside programs.
headers: overlay
	@$(MAKE) -s -C $(SRC) O=$(OBJ) INSTALL_HDR_PATH=$(HDR) headers_install

selftests: headers
	@echo "selftests: building the KVM selftests (static)"
	@$(MAKE) -s -C $(SRC)/tools/testing/selftests/kvm -j$(JOBS) OUTPUT=$(KSFT) \
		KHDR_INCLUDES="-isystem $(HDR)/include" EXTRA_CFLAGS=-static >$(BUILD)/selftests.log 2>&1 \
		|| { tail -n 40 $(BUILD)/selftests.log; exit 1; }

check: all vmm
	@bash scripts/check.sh

# The VMM tier alone (boot 3 of tests.list).
check-vmm: all vmm
	@BOOTS=3 bash scripts/check.sh

# Slower under KASAN and kmemleak: every test gets three times its timeout; 14G
# of memory, or the KASAN shadow leaves node 0 room for one 1G page, not two.
# QEMU's single-threaded TCG (ACCEL= overrides): under multi-threaded TCG the
# nested guest of a test that rebuilds stage 2 while vCPUs run is, rarely,
# reported triple-faulted (README, "make check-debug").
# The in-place conversion boots of tests.list (0: KUnit, our tests and
# upstream's that run with it; 2: the stress test and the tests that balance
# it), to keep CI under its budget; the VM-wide boot (1: upstream's v7.3
# guards, which make check runs) is opt-in: CHECK_DEBUG_BOOTS='0 1 2', and so
# is boot 4 (upstream's set_memory_region_test, 691 s on this kernel):
# CHECK_DEBUG_BOOTS='0 2 4'.
# Boot 2 runs concurrently with the others (each QEMU takes one core):
# CHECK_DEBUG_CONCURRENT= runs the boots one after the other.
CHECK_DEBUG_BOOTS ?= 0 2
CHECK_DEBUG_CONCURRENT ?= 2
check-debug: all kernel-debug
	@ACCEL=$${ACCEL:-tcg,thread=single} MEM=14G KERNEL=$(DEBUG_OBJ)/arch/x86/boot/bzImage CHECK_OUT=$(BUILD)/check-debug \
		TIMEOUT_SCALE=3 BOOTS='$(CHECK_DEBUG_BOOTS)' CONCURRENT_BOOTS='$(CHECK_DEBUG_CONCURRENT)' bash scripts/check.sh

# Benchmarks: C programs built against the KVM selftest library (the objects
# the selftests build left in build/selftests/lib), static, run in the test VM.
KSFT_SRC := $(SRC)/tools/testing/selftests/kvm
BENCH_CFLAGS := -D_GNU_SOURCE -Wall -Wstrict-prototypes -O2 -g -std=gnu99 -DCONFIG_64BIT \
	-U_FORTIFY_SOURCE -fno-builtin-memcmp -fno-builtin-memcpy \
	-fno-builtin-memset -fno-builtin-strnlen -fno-stack-protector -fno-PIE \
	-fno-strict-aliasing -march=x86-64-v2 \
	-I$(SRC)/tools/include -I$(SRC)/tools/arch/x86/include \
	-I$(KSFT_SRC)/include -I$(KSFT_SRC)/include/x86 -I$(KSFT_SRC) \
	-I$(SRC)/tools/testing/selftests -isystem $(HDR)/include
BENCH_PROGS := $(BUILD)/bench/gmem_caps $(BUILD)/bench/fault_in $(BUILD)/bench/convert \
	$(BUILD)/bench/host_touch $(BUILD)/bench/postcopy

# perf from the tree, static and without optional libraries: the test VM is a
# busybox system, and perf stat counts KVM's tracepoints there.
PERF := $(BUILD)/perf/perf
PERF_FLAGS := LDFLAGS=-static NO_RUST=1 NO_LIBTRACEEVENT=1 NO_LIBELF=1 NO_DWARF=1 \
	NO_LIBDW=1 NO_LIBUNWIND=1 NO_LIBNUMA=1 NO_SLANG=1 NO_GTK2=1 NO_LIBPERL=1 \
	NO_LIBPYTHON=1 NO_LIBBPF=1 NO_JEVENTS=1 NO_LIBCAP=1 NO_LIBBABELTRACE=1 \
	NO_LIBZSTD=1 NO_LIBLZMA=1 NO_ZLIB=1 NO_AUXTRACE=1 NO_LIBCRYPTO=1 NO_SDT=1 \
	NO_CAPSTONE=1 NO_LIBLLVM=1 NO_LIBPFM4=1

$(BUILD)/bench/gmem_caps: bench/gmem_caps.c headers
	@mkdir -p $(dir $@)
	@gcc -static -O2 -Wall -isystem $(HDR)/include -o $@ $<

$(BUILD)/bench/%: bench/%.c selftests
	@mkdir -p $(dir $@)
	@gcc $(BENCH_CFLAGS) -static -no-pie -pthread -o $@ $< \
		$$(find $(KSFT)/lib -name '*.o' | sort) -ldl

perf: overlay
	@echo "perf: building tools/perf (static)"
	@# tools/perf wants its O= directory to exist.
	@mkdir -p $(BUILD)/perf
	@$(MAKE) -s -C $(SRC)/tools/perf O=$(BUILD)/perf -j$(JOBS) $(PERF_FLAGS) perf \
		>$(BUILD)/perf.log 2>&1 || { tail -n 40 $(BUILD)/perf.log; exit 1; }

bench: all perf $(BENCH_PROGS) vmm
	@bash scripts/bench.sh

vm-run: all
	@bash scripts/vm-run.sh '$(CMD)'

# A real VMM: Debian's QEMU (scripts/fetch-qemu.sh), our preload library that
# puts its RAM in a guest_memfd (vmm/gmem_preload.c), and the nested guest's
# initramfs (busybox, vmm/guest/init, memfill); the test kernel is its kernel.
VMM := $(BUILD)/vmm
vmm: headers $(VMM)/gmem_preload.so $(VMM)/guest.cpio.gz
	@bash scripts/fetch-qemu.sh

$(VMM)/gmem_preload.so: vmm/gmem_preload.c headers
	@mkdir -p $(dir $@)
	@gcc -shared -fPIC -O2 -Wall -isystem $(HDR)/include -o $@ $< -lpthread

$(VMM)/memfill: vmm/guest/memfill.c
	@mkdir -p $(dir $@)
	@gcc -static -O2 -Wall -o $@ $<

$(VMM)/guest.cpio.gz: vmm/guest/init $(VMM)/memfill
	@rm -rf $(VMM)/root && mkdir -p $(VMM)/root/bin
	@cp /bin/busybox $(VMM)/memfill $(VMM)/root/bin/
	@cp vmm/guest/init $(VMM)/root/init
	@(cd $(VMM)/root && find . | cpio -o -H newc --quiet | gzip -1) >$@
	@rm -rf $(VMM)/root

HUGE ?= 1G
run-guest: all vmm
	@OUT=$(BUILD)/vm/run-guest bash scripts/vm-run.sh 'vmm/run-guest.sh $(HUGE) /mnt/out/guest'
	@echo "run-guest: console log in build/vm/run-guest/guest/console.log"

series: overlay
	@bash scripts/overlay.sh series $(BUILD)/series
	@bash scripts/check-series.sh $(BUILD)/series

checkpatch: series
	@bash scripts/checkpatch.sh

# Opt-in (about an hour for the whole series): build the kernel at every patch.
# P="1 26" builds those patches only.
series-builds: config
	@bash scripts/series-builds.sh $(P)

clean:
	rm -rf $(OBJ) $(DEBUG_OBJ) $(KSFT) $(HDR) $(BUILD)/check $(BUILD)/check-debug \
		$(BUILD)/vm $(BUILD)/series $(BUILD)/perf $(BUILD)/obj-series \
		$(BUILD)/series-builds $(BUILD)/series-builds.lock $(BUILD)/series-headers $(BUILD)/series-selftests

distclean:
	rm -rf $(BUILD)
