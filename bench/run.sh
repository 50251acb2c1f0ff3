#!/bin/sh
# Runs in the test VM (scripts/bench.sh boots it): the capabilities, then the
# fault-in benchmark, whose CSV goes to the run's output directory.
# FAULT_IN_ARGS: extra arguments for fault_in (e.g. "-s 2048 -v 2").
set -e
echo "kernel: $(uname -r)"
./build/bench/gmem_caps
# shellcheck disable=SC2086
./build/bench/fault_in -o /mnt/out/fault_in.csv ${FAULT_IN_ARGS:-}
