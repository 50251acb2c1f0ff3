#!/usr/bin/env bash
# `make bench`: boot the test kernel, run bench/run.sh in it, and keep the
# results (CSV) with the kernel and QEMU versions and the parameters in
# results/DATE/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/bench-run
dest=$top/results/$(date -u +%Y%m%dT%H%M%SZ)

OUT=$out TIMEOUT=${TIMEOUT:-1800} "$top/scripts/vm-run.sh" \
	"FAULT_IN_ARGS='${FAULT_IN_ARGS:-}' CONVERT_ARGS='${CONVERT_ARGS:-}' HOST_TOUCH_ARGS='${HOST_TOUCH_ARGS:-}' POSTCOPY_ARGS='${POSTCOPY_ARGS:-}' VMM_BENCH='${VMM_BENCH:-1}' VMM_BACKINGS='${VMM_BACKINGS:-}' sh bench/run.sh"

mkdir -p "$dest"
cp "$out"/*.csv "$dest/"
# Each nested guest's logs (bench/vmm.sh), without the files it moved.
if [ -d "$out/vmm" ]; then
	for d in "$out"/vmm/*/; do
		b=$(basename "$d")
		mkdir -p "$dest/vmm/$b"
		cp "$d"/*.log "$dest/vmm/$b/"
	done
	cp "$out"/vmm/*.log "$dest/vmm/"
fi
{
	echo "kernel=$(cat "$top/build/kernelrelease")"
	echo "qemu=$(qemu-system-x86_64 --version | head -n 1)"
	echo "accel=${ACCEL:-tcg,thread=multi}"
	echo "nested_qemu=$("$top/build/qemu/qemu-system-x86_64" --version | head -n 1)"
	echo "vmm_bench=${VMM_BENCH:-1} vmm_backings=${VMM_BACKINGS:-}"
	echo "fault_in_args=${FAULT_IN_ARGS:-}"
	echo "convert_args=${CONVERT_ARGS:-}"
	echo "host_touch_args=${HOST_TOUCH_ARGS:-}"
	echo "postcopy_args=${POSTCOPY_ARGS:-}"
	echo "note=times under emulation compare only as ratios within one run"
} >"$dest/params.txt"
# Plots of the run: faults per GiB, conversion latency, the nested guest.
bash "$top/scripts/deps.sh" gnuplot-nox
gnuplot -e "dir='$dest'" "$top/bench/plot.gp"
echo "bench: results in ${dest#"$top"/} (CSV, params.txt and the PNGs)"
