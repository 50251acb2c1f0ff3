#!/bin/sh
# Runs in the test VM: the kernel under test and its guest_memfd capabilities.
echo "kernel: $(uname -r)"
grep -H . /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages
./build/bench/gmem_caps
