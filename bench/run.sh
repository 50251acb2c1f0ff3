#!/bin/sh
# Runs in the test VM (scripts/bench.sh boots it): the capabilities, the
# fault-in benchmark, then the conversion benchmark; their CSVs go to the
# run's output directory.
# FAULT_IN_ARGS, CONVERT_ARGS: extra arguments (e.g. "-s 2048 -v 2").
set -e
echo "kernel: $(uname -r)"
./build/bench/gmem_caps
# shellcheck disable=SC2086
./build/bench/fault_in -o /mnt/out/fault_in.csv ${FAULT_IN_ARGS:-}
echo
# shellcheck disable=SC2086
./build/bench/convert -o /mnt/out ${CONVERT_ARGS:-}
