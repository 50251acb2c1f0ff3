#!/bin/sh
# A real VMM's view (runs in the test VM, from the repository's root; bench/run.sh
# calls it): Debian's QEMU boots the same Linux guest, 2 GiB of RAM, on each
# backing in turn through vmm/run-guest.sh, which checks each run as make
# check's VMM tier does. The guest's memfill writes a pattern over most of its
# RAM twice: the first pass faults the memory in at stage 2, the second
# re-touches it.
#
#   bench/vmm.sh OUT
#
# Prints, per backing, the seconds from QEMU's start to the guest's init, the
# two write passes, 4 MiB moved each way over virtio-9p (QEMU reads and
# writes it through its mapping of guest memory) and the stage-2 mappings,
# each time with its ratio to order-0 (4K) guest_memfd, and writes OUT/vmm.csv (seconds) and each guest's
# logs to OUT/vmm/BACKING/. Environment: VMM_BACKINGS (the backings, in
# order; the first is the ratios' baseline).
out=${1:?usage: bench/vmm.sh OUT}
mkdir -p "$out/vmm"
csv=$out/vmm.csv
echo "backing,ram_gib,kernel_s,init_s,ready_s,exit_s,write1_s,verify1_s,write2_s,verify2_s,virtio_read_s,virtio_write_s,pages_1g,pages_2m,pages_4k" >"$csv"
rc=0
for b in ${VMM_BACKINGS:-4K 2M 1G hugetlbfs-2M hugetlbfs-1G anon}; do
	echo "bench-vmm: $b"
	vmm/run-guest.sh "$b" "$out/vmm/$b" >"$out/vmm/$b.log" 2>&1
	r=$?
	if [ $r -eq 3 ]; then
		# The guest vanished (vmm/test-vmm.sh says why): once more.
		echo "bench-vmm: $b: the guest vanished; again (first log: vmm/$b.vanished.log)"
		mv "$out/vmm/$b.log" "$out/vmm/$b.vanished.log"
		vmm/run-guest.sh "$b" "$out/vmm/$b" >"$out/vmm/$b.log" 2>&1
		r=$?
	fi
	if [ $r -eq 0 ]; then
		cat "$out/vmm/$b/summary.csv" >>"$csv"
	else
		echo "bench-vmm: $b failed (log: vmm/$b.log):"
		tail -n 25 "$out/vmm/$b.log"
		rc=1
	fi
done
echo
awk -F, '
	function ratio(t, t0) { return (t0 > 0 && t != "-") ? sprintf("(%.2fx)", t / t0) : "" }
	NR == 1 { next }
	NR == 2 { for (c = 1; c <= NF; c++) base[c] = $c }
	{ line[NR] = $0 }
	END {
		print "QEMU 11.1 boots a Linux guest, 2 GiB of RAM, 1 vCPU, in the test VM;"
		print "seconds, and the ratio to the first row (order-0 guest_memfd)"
		printf "%-13s %16s %16s %16s %16s %16s %8s %8s %8s\n", "backing",
			"QEMU to init", "write pass 1", "write pass 2", "9p read 4M",
			"9p write 4M", "1G maps", "2M maps", "4K maps"
		for (n = 2; n <= NR; n++) {
			split(line[n], f, ",")
			printf "%-13s", f[1]
			split("4 7 9 11 12", cols, " ")
			for (c = 1; c <= 5; c++)
				printf " %7s %-8s", f[cols[c]], ratio(f[cols[c]], base[cols[c]])
			printf " %8s %8s %8s\n", f[13], f[14], f[15]
		}
	}' "$csv"
exit $rc
