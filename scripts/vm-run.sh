#!/usr/bin/env bash
# Boot the test kernel under QEMU (TCG, nested SVM with NPT, so KVM works in
# the guest) and run a shell command there.
#
#   scripts/vm-run.sh 'CMD'
#
# The command runs in the guest as root, in /mnt/host, which is SHARE (default:
# this repository) shared over 9p; /mnt/out is the run's output directory on
# the host (OUT, default build/vm/last). Its output is printed here and the
# script exits with its status. A guest that does not finish within TIMEOUT
# seconds is killed and the script exits 124. The kernel log is left in
# OUT/console.log (serial console) and OUT/dmesg.txt.
#
# Environment: KERNEL (bzImage), SHARE, OUT, TIMEOUT (default 900), MEM (12G,
# in G), SMP (2), NUMA_NODES (2), HUGEPAGES_2M (600), HUGEPAGES_1G (4),
# ACCEL (tcg,thread=multi), CMDLINE_EXTRA (appended to the command line,
# after kvm.gmem_in_place_conversion=1).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 'CMD'" >&2; exit 2; }
cmd=$*
kernel=${KERNEL:-$top/build/obj/arch/x86/boot/bzImage}
share=$(realpath "${SHARE:-$top}")
out=${OUT:-$top/build/vm/last}
timeout_s=${TIMEOUT:-900}
initramfs=$top/build/initramfs.cpio.gz

[ -f "$kernel" ] || { echo "vm-run: no kernel at $kernel (run make)" >&2; exit 2; }

# The initramfs: static busybox and our init, rebuilt when init changes.
if [ ! -f "$initramfs" ] || [ "$top/scripts/guest/init" -nt "$initramfs" ]; then
	root=$(mktemp -d)
	mkdir -p "$root/bin" "$root/dev"
	cp /bin/busybox "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	cp "$top/scripts/guest/init" "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$initramfs.tmp.$$"
	rm -rf "$root"
	mv "$initramfs.tmp.$$" "$initramfs"
fi

rm -rf "$out"
mkdir -p "$out"
out=$(realpath "$out")
printf '%s\n' "$cmd" >"$out/cmd.sh"

# NUMA_NODES nodes (default 2), each with an equal share of the memory and
# of the vCPUs (one socket each, so that no cache is shared across nodes), so
# that memory policies can be tested; the hugetlb pools are split evenly over
# the nodes at boot (hugepages=NODE:COUNT,...).
mem=${MEM:-12G}
smp=${SMP:-2}
nodes=${NUMA_NODES:-2}
numa=()
smp_topology=$smp
if [ "$nodes" -gt 1 ]; then
	per_node=$(( ${mem%G} / nodes ))
	smp_topology="$smp,sockets=$nodes,cores=$((smp / nodes)),threads=1"
	for ((n = 0; n < nodes; n++)); do
		numa+=(-object "memory-backend-ram,id=mem$n,size=${per_node}G"
		       -numa "node,nodeid=$n,cpus=$((n * smp / nodes))-$(((n + 1) * smp / nodes - 1)),memdev=mem$n")
	done
fi
per_node_pages() { # COUNT -> "0:a,1:b,..." over the nodes, or COUNT
	local total=$1 n out=
	if [ "$nodes" -le 1 ]; then echo "$total"; return; fi
	for ((n = 0; n < nodes; n++)); do
		out+="${out:+,}$n:$(( total / nodes + (n < total % nodes) ))"
	done
	echo "$out"
}

append="console=ttyS0 panic=-1 oops=panic log_buf_len=16M"
append+=" default_hugepagesz=2M hugepagesz=2M hugepages=$(per_node_pages "${HUGEPAGES_2M:-600}")"
append+=" hugepagesz=1G hugepages=$(per_node_pages "${HUGEPAGES_1G:-4}")"
# guest_memfd converts in place (KVM_SET_MEMORY_ATTRIBUTES2), as our tests and
# benchmarks need; CMDLINE_EXTRA can turn it off (the last setting wins).
append+=" kvm.gmem_in_place_conversion=1"
append+=" ${CMDLINE_EXTRA:-}"

rc=0
timeout --foreground -k 10 "$timeout_s" \
	qemu-system-x86_64 \
	-accel "${ACCEL:-tcg,thread=multi}" -cpu EPYC,+svm,+npt \
	-m "$mem" -smp "$smp_topology" "${numa[@]}" \
	-kernel "$kernel" -initrd "$initramfs" -append "$append" \
	-display none -monitor none -no-reboot \
	-serial "file:$out/console.log" \
	-device virtio-serial-pci \
	-chardev stdio,id=con0,signal=off -device virtconsole,chardev=con0 \
	-virtfs "local,path=$share,mount_tag=host0,security_model=none" \
	-virtfs "local,path=$out,mount_tag=out,security_model=none" \
	2> >(grep -v 'warning: TCG doesn.t support requested feature' >&2) || rc=$?

if [ -f "$out/status" ]; then
	exit "$(cat "$out/status")"
fi
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
	echo "vm-run: guest did not finish within ${timeout_s}s: killed (see $out/console.log)" >&2
	exit 124
fi
echo "vm-run: guest stopped without reporting a status (qemu exit $rc); last console lines:" >&2
tail -n 30 "$out/console.log" >&2
exit 125
