#!/bin/sh
# Runs in the test VM (scripts/bench.sh boots it): the capabilities, the
# fault-in benchmark with perf counting KVM's page faults, then the
# conversion benchmark, the host touching shared memory, post-copy with
# KVM_MEM_USERFAULT, then QEMU booting a guest on each backing
# (bench/vmm.sh); their CSVs go to the run's output directory.
# FAULT_IN_ARGS, CONVERT_ARGS, HOST_TOUCH_ARGS, POSTCOPY_ARGS: extra arguments
# (e.g. "-s 2048 -v 2"); VMM_BENCH, VMM_BACKINGS: bench/vmm.sh's.
set -e
echo "kernel: $(uname -r)"
# perf finds KVM's tracepoints in tracefs.
[ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing
./build/bench/gmem_caps
echo
# shellcheck disable=SC2086
./build/bench/fault_in -p ./build/perf/perf -o /mnt/out/fault_in.csv ${FAULT_IN_ARGS:-}
echo
# shellcheck disable=SC2086
./build/bench/convert -o /mnt/out ${CONVERT_ARGS:-}
echo
# shellcheck disable=SC2086
./build/bench/host_touch -o /mnt/out/host_touch.csv ${HOST_TOUCH_ARGS:-}
echo
# shellcheck disable=SC2086
./build/bench/postcopy -o /mnt/out/postcopy.csv ${POSTCOPY_ARGS:-}
# VMM_BENCH=0 leaves the VMM rows out (CI's short run does).
if [ "${VMM_BENCH:-1}" != 0 ]; then
	echo
	sh bench/vmm.sh /mnt/out
fi
