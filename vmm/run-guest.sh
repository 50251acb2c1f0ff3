#!/bin/sh
# Boot a nested Linux guest with Debian's QEMU in the test VM, its RAM on the
# backing named, and check it (busybox sh: this runs in the test VM, from the
# repository's root).
#
#   vmm/run-guest.sh [BACKING] [OUT]
#
# BACKING: 1G (default), 2M or 4K guest_memfd (QEMU's memory-backend-memfd,
# made a guest_memfd by vmm/gmem_preload.so), hugetlbfs-1G, hugetlbfs-2M
# (QEMU's memory-backend-file) or anon (memory-backend-ram). OUT (default
# /tmp/run-guest-BACKING) gets the console log, QEMU's stderr (qemu.log), the
# guest's results, summary.csv (one line: the times and counts printed at the
# end, for bench/vmm.sh) and, for a guest killed at GUEST_TIMEOUT, where
# QEMU's threads were (qemu-threads.txt).
#
# The guest (vmm/guest/init) writes and verifies a pattern over most of its
# RAM, moves files through virtio-9p and waits; meanwhile this script reads
# the VM's stage-2 mapping counts (debugfs). Then the guest reboots once if
# RESET=1 (a system reset), and powers off. After QEMU exits, the hugetlb pool
# counts must be where they were.
#
# Environment: GUEST_MEM (2G), RESET (0), PREALLOC (0: 1 adds prealloc=on),
# GUEST_TIMEOUT (300 s). Exit status 0 only if every check passed: the
# guest's, the stage-2 level the backing promises, the pools, QEMU's exit.
backing=${1:-1G}
out=${2:-/tmp/run-guest-$backing}
mem=${GUEST_MEM:-2G}
mem_gib=${mem%G}
tmo=${GUEST_TIMEOUT:-300}
top=$(pwd)
qemu=$top/build/qemu/qemu-system-x86_64
kernel=$top/build/obj/arch/x86/boot/bzImage
initrd=$top/build/vmm/guest.cpio.gz
preload=$top/build/vmm/gmem_preload.so

for f in "$qemu" "$kernel" "$initrd" "$preload"; do
	[ -e "$f" ] || { echo "run-guest: missing $f (make run-guest builds it)"; exit 2; }
done

pools() {
	for d in /sys/kernel/mm/hugepages/hugepages-*; do
		printf '%s free %s resv %s; ' "${d##*-}" "$(cat "$d/free_hugepages")" \
			"$(cat "$d/resv_hugepages")"
	done
}

prealloc=
[ "${PREALLOC:-0}" = 1 ] && prealloc=,prealloc=on
unset GMEM_PRELOAD GMEM_PAGE_SIZE
case "$backing" in
1G|2M|4K)
	ram="memory-backend-memfd,id=ram0,size=$mem,share=on,seal=off$prealloc"
	export GMEM_PRELOAD=$preload GMEM_PAGE_SIZE=$backing ;;
hugetlbfs-1G) ram="memory-backend-file,id=ram0,size=$mem,share=on,mem-path=/dev/hugepages-1G$prealloc" ;;
hugetlbfs-2M) ram="memory-backend-file,id=ram0,size=$mem,share=on,mem-path=/dev/hugepages$prealloc" ;;
anon) ram="memory-backend-ram,id=ram0,size=$mem$prealloc" ;;
*) echo "run-guest: unknown backing $backing"; exit 2 ;;
esac

rm -rf "$out"
mkdir -p "$out"
# A pool too small for the guest's RAM grows for this run (below), and gets
# back to its size after it.
pool_dir=
grown=0
shrink_pool() {
	[ "$grown" -gt 0 ] || return 0
	echo $(( $(cat "$pool_dir/nr_hugepages") - grown )) >"$pool_dir/nr_hugepages"
	grown=0
}
cleanup() {
	shrink_pool
	# What the guest reported stays with the logs.
	cp "$share/results" "$out/results" 2>/dev/null
	rm -rf "$share"
}
trap cleanup EXIT
# The directory QEMU serves over virtio-9p is in the test VM's tmpfs: on the
# test VM's own 9p mount, each of the guest's requests would wait for a round
# trip to the host's QEMU too.
share=$(mktemp -d /tmp/run-guest-share.XXXXXX)
dd if=/dev/urandom of="$share/to-guest.bin" bs=1M count=4 2>/dev/null
sha256sum <"$share/to-guest.bin" >"$share/to-guest.sha256"
reboot=-no-reboot
if [ "${RESET:-0}" = 1 ]; then
	touch "$share/want-reset"
	reboot=
fi

case "$backing" in
1G|hugetlbfs-1G) pool_dir=/sys/kernel/mm/hugepages/hugepages-1048576kB ;;
2M|hugetlbfs-2M) pool_dir=/sys/kernel/mm/hugepages/hugepages-2048kB ;;
esac
if [ -n "$pool_dir" ]; then
	kib=${pool_dir##*-}
	need=$(( mem_gib * 1024 * 1024 / ${kib%kB} ))
	free=$(( $(cat "$pool_dir/free_hugepages") - $(cat "$pool_dir/resv_hugepages") ))
	if [ "$free" -lt "$need" ]; then
		nr=$(cat "$pool_dir/nr_hugepages")
		echo $((nr + need - free)) >"$pool_dir/nr_hugepages"
		grown=$(( $(cat "$pool_dir/nr_hugepages") - nr ))
	fi
	# Every free page of the pool, so every page the guest may get, is
	# written once first, by fallocate() on hugetlbfs, which zeroes it: the
	# test VM's QEMU backs its RAM on first touch, and a guest that got
	# pages no guest had used yet paid for it (2M guest_memfd's first pass,
	# first on the 2M pool in bench/vmm.sh, took 1.4x and 2.1x hugetlbfs
	# 2M's).
	free=$(( $(cat "$pool_dir/free_hugepages") - $(cat "$pool_dir/resv_hugepages") ))
	warm=$(mktemp -d)
	if mount -t hugetlbfs -o "pagesize=${kib%kB}K" none "$warm"; then
		fallocate -l "$(( free * ${kib%kB} ))K" "$warm/pages" ||
			echo "run-guest: could not write the pool's pages once first"
		rm -f "$warm/pages"
		umount "$warm"
	fi
	rmdir "$warm"
fi

# The guest's kernel is the test kernel. In the guest, its KUnit suites,
# lockdep's checks of the guest's own locks and its informational boot
# messages (each byte a port write that exits to QEMU, two levels of
# emulation down) only cost boot time; notices (the first line, "Linux
# version", is one), warnings and worse still print.
cmdline="console=ttyS0 panic=-1 kunit.enable=0 lockdep.prove_locking=0 loglevel=6"

before=$(pools)
# Seconds since QEMU started, to the hundredth (the test VM's uptime).
uptime0=$(cut -d' ' -f1 /proc/uptime)
# shellcheck disable=SC2086
"$qemu" -accel kvm -cpu qemu64 -machine q35,smm=off,memory-backend=ram0 \
	-m "$mem" -smp 1 -nodefaults -display none -monitor none $reboot \
	-object "$ram" \
	-kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
	-serial "file:$out/console.log" \
	-virtfs "local,path=$share,mount_tag=share,security_model=none" \
	>"$out/qemu.log" 2>&1 &
pid=$!

fails=0
fail() { echo "run-guest: FAIL: $*"; fails=$((fails + 1)); }
alive() { kill -0 "$pid" 2>/dev/null; }
elapsed() { awk -v t0="$uptime0" '{ printf "%.2f", $1 - t0 }' /proc/uptime; }
late() { awk -v e="$(elapsed)" -v t="$tmo" 'BEGIN { exit !(e >= t) }'; }

# When the guest's kernel prints its first line, when its init starts, and
# when it has touched its memory; then the stage-2 counts.
t_kernel=- t_init=- t_ready=-
while alive && [ "$t_ready" = - ] && ! late; do
	[ "$t_kernel" = - ] && [ -s "$out/console.log" ] && t_kernel=$(elapsed)
	[ "$t_init" = - ] && [ -e "$share/init-seconds" ] && t_init=$(elapsed)
	[ -e "$share/ready" ] && t_ready=$(elapsed)
	sleep 0.2
done
p4k=- p2m=- p1g=-
if [ "$t_ready" != - ]; then
	d=$(ls -d /sys/kernel/debug/kvm/"$pid"-* 2>/dev/null | head -n 1)
	if [ -n "$d" ]; then
		p4k=$(cat "$d/pages_4k") p2m=$(cat "$d/pages_2m") p1g=$(cat "$d/pages_1g")
	else
		fail "no debugfs directory for QEMU's VM (pid $pid)"
	fi
	touch "$share/go"
fi
while alive && ! late; do
	sleep 0.2
done
if alive; then
	# Where each of QEMU's threads is, for the report; and what the VM's
	# vCPU does: KVM's statistics for it (exits, faults, halts...), read
	# twice two seconds apart, tell a guest spinning in its own code from
	# one faulting or exiting over and over, or halted.
	for t in /proc/"$pid"/task/*; do
		echo "thread $(cat "$t/comm"): $(cat "$t/wchan" 2>/dev/null)"
		sed 's/^/    /' "$t/stack" 2>/dev/null
	done >"$out/qemu-threads.txt"
	d=$(ls -d /sys/kernel/debug/kvm/"$pid"-* 2>/dev/null | head -n 1)
	if [ -n "$d" ]; then
		for pass in 1 2; do
			echo "=== $pass"
			grep -r . "$d" 2>/dev/null | sed "s|$d/||"
			[ $pass = 1 ] && sleep 2
		done >"$out/kvm-stats.txt"
	fi
	# And the VM's last KVM events (exits and what KVM injected), 0.2 s.
	tracefs=/sys/kernel/tracing
	[ -d $tracefs/events/kvm ] || mount -t tracefs none $tracefs 2>/dev/null
	if [ -w $tracefs/events/kvm/enable ]; then
		echo >$tracefs/trace
		echo 1 >$tracefs/events/kvm/enable
		sleep 0.2
		echo 0 >$tracefs/events/kvm/enable
		grep -v '^#' $tracefs/trace | tail -n 200 >"$out/kvm-events.txt"
	fi
	fail "guest still running after ${tmo}s; killed (QEMU's threads: $out/qemu-threads.txt, KVM's statistics and events: $out/kvm-stats.txt, $out/kvm-events.txt)"
	kill -9 "$pid"
fi
wait "$pid"
rc=$?
t_exit=$(elapsed)
after=$(pools)
shrink_pool

[ $rc -eq 0 ] || fail "QEMU exited with status $rc"
for what in memory virtio-read; do
	grep -qx "pass $what" "$share/results" 2>/dev/null || fail "guest: $what"
done
[ "${RESET:-0}" = 1 ] && { grep -qx "pass reset" "$share/results" 2>/dev/null || fail "guest: reset"; }
[ -e "$share/from-guest.bin" ] && [ "$(sha256sum <"$share/from-guest.bin")" = "$(cat "$share/from-guest.sha256")" ] ||
	fail "the file the guest wrote over virtio-9p is not intact"
[ "$before" = "$after" ] || fail "hugetlb pools before [$before] after [$after]"
# guest_memfd backings: the file was made, and every slot over it is bound.
case "$backing" in
1G|2M|4K)
	grep -q "gmem_preload: RAM of .* in guest_memfd" "$out/qemu.log" ||
		fail "QEMU's RAM is not in a guest_memfd"
	grep -q "gmem_preload: slot .* bound at offset" "$out/qemu.log" ||
		fail "no memslot bound to the guest_memfd"
	! grep -q "not bound" "$out/qemu.log" || fail "a memslot over the guest_memfd is not bound"
	;;
esac

# The stage-2 level each backing promises. Guest RAM is below 4G: its first
# GiB holds the legacy holes, every other GiB can be one 1G mapping; memfill
# touches more than a GiB of 2M blocks.
case "$p1g" in -) fail "no stage-2 counts (the guest did not get ready)" ;; esac
if [ "$p1g" != - ]; then
	case "$backing" in
	1G|hugetlbfs-1G) [ "$p1g" -ge $((mem_gib - 1)) ] || fail "pages_1g $p1g < $((mem_gib - 1))" ;;
	2M|hugetlbfs-2M) [ "$p1g" -eq 0 ] && [ "$p2m" -ge 512 ] || fail "pages_1g $p1g, pages_2m $p2m: want 0 and >= 512" ;;
	4K) [ "$p1g" -eq 0 ] && [ "$p2m" -eq 0 ] || fail "pages_1g $p1g, pages_2m $p2m: want 0 and 0" ;;
	esac
fi

echo "run-guest: $backing, $mem: seconds after QEMU started: kernel's console $t_kernel," \
	"init $t_init (guest uptime $(cat "$share/init-seconds" 2>/dev/null || echo -))," \
	"memory touched $t_ready, QEMU exited $t_exit;" \
	"stage-2 pages_1g $p1g pages_2m $p2m pages_4k $p4k"
grep -hE "memfill: pass|guest: virtio-" "$out/console.log" | sed 's/^/run-guest:   /'
# One CSV line for bench/vmm.sh: the times above, memfill's, the counts.
pass() { # N: memfill's write and verify seconds of pass N
	sed -n "s/^memfill: pass $1: [0-9]* MiB written in \([0-9.]*\) s, verified in \([0-9.]*\) s.*/\1,\2/p" \
		"$out/console.log" | head -n 1 | grep . || echo -,-
}
virtio() { # read|write: the guest's seconds to move 4 MiB that way
	sed -n "s/^guest: virtio-$1: 4 MiB .* in \([0-9.]*\) s.*/\1/p" "$out/console.log" |
		head -n 1 | grep . || echo -
}
echo "$backing,$mem_gib,$t_kernel,$t_init,$t_ready,$t_exit,$(pass 1),$(pass 2),$(virtio read),$(virtio write),$p1g,$p2m,$p4k" \
	>"$out/summary.csv"
grep -h "gmem_preload" "$out/qemu.log" | sed 's/^/run-guest:   /'
echo "run-guest:   hugetlb pools when QEMU had exited: $after"
if [ $fails -gt 0 ]; then
	echo "run-guest: $fails check(s) failed; console log ($out/console.log) ends:"
	tail -n 30 "$out/console.log" | sed 's/^/    /'
	sed 's/^/    qemu: /' "$out/qemu.log" | tail -n 10
	# Exit status 3: the guest vanished. QEMU exited 0 (so the guest
	# was reset, and -no-reboot ended the run) before the guest had
	# reported, and its console shows no panic, BUG or oops: the reset
	# that the environment's nested SVM (TCG) gives a nested guest now
	# and then (README, "A real VMM"). vmm/test-vmm.sh runs such a guest
	# again, once.
	if [ $rc -eq 0 ] && [ ! -e "$share/ready" ] &&
	   ! grep -qE "Kernel panic|BUG:|Oops|WARNING:|guest: FAIL" "$out/console.log"; then
		echo "run-guest: the guest vanished without a word (a reset, not a poweroff)"
		exit 3
	fi
	exit 1
fi
echo "run-guest: all checks passed"
