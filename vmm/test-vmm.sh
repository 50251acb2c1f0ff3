#!/bin/sh
# The VMM tier of `make check` (tests.list): Debian's QEMU boots a Linux guest
# in the test VM on 1G, 2M and 4K guest_memfd and, as the baseline, on
# hugetlbfs; vmm/run-guest.sh checks each (memory, virtio-9p, the stage-2
# level, the pools). The 1G guest also reboots once (a system reset), the 2M
# guest's RAM comes with prealloc=on, and the 4K guest has 1G of RAM (its
# stage-2 faults are 4K each: 2G would take minutes).
#
# A guest that vanished (run-guest's exit status 3: reset with no panic or
# failure on its console, which the environment's nested SVM under TCG does
# now and then) runs once more, and the retry is reported; any other failure
# (a hang included), a second vanishing in the tier, or a WARN or BUG in this
# kernel's log (make check scans it) fails the tier.
cd "$(dirname "$0")/.." || exit 1
# Console logs go to the check's output directory when there is one.
out=/tmp/test-vmm
[ -d /mnt/out ] && out=/mnt/out/vmm
out=${1:-$out}
rc=0
retried=
guest() { # NAME ENV... -- run-guest.sh with that environment
	name=$1
	shift
	env "$@" vmm/run-guest.sh "$name" "$out/$name"
	r=$?
	if [ $r -eq 3 ] && [ -z "$retried" ]; then
		retried=$name
		echo "test-vmm: RETRY $name: the guest vanished (log kept in $out/$name.vanished)"
		rm -rf "$out/$name.vanished"
		mv "$out/$name" "$out/$name.vanished"
		env "$@" vmm/run-guest.sh "$name" "$out/$name"
		r=$?
	fi
	[ $r -eq 0 ] || rc=1
}
guest 1G RESET=1
guest 2M PREALLOC=1
guest 4K GUEST_MEM=1G
guest hugetlbfs-1G
exit $rc
