#!/bin/sh
# Runs in the test VM: each test of tests.list (or only those whose name
# matches one of the T patterns) with its own timeout. Writes one line per test to
# $OUT/results ("pass NAME", "fail NAME why" or "skip NAME why") and each
# test's output to $OUT/tests/NAME.log; prints progress on the console.
# Usage: run-tests.sh LIST BINDIR OUT [T] [TIMEOUT_SCALE] [BOOT]
# BOOT (default 0) picks the tests after the BOOT-th "@boot" line of LIST
# (counting from 0; tests before the first one belong to boot 0): those that
# need this boot's kernel command line.
# With kmemleak (the debug kernel), a scan after the tests goes to
# $OUT/kmemleak.txt.
list=$1 bindir=$2 out=$3 filter=${4:-} scale=${5:-1} boot=${6:-0}

mkdir -p "$out/tests"
: >"$out/results"

# kmemleak's own scans, every 10 min, take about 75 s each of the debug VM's
# single TCG thread (the conversion test's 2M variant: 71 s with them, 48 s
# without): scan after the tests instead.
if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan=off >/sys/kernel/debug/kmemleak
fi

pool() {
	for d in /sys/kernel/mm/hugepages/hugepages-*; do
		printf '%s free=%s rsvd=%s surp=%s ' "${d##*-}" \
			"$(cat "$d/free_hugepages")" "$(cat "$d/resv_hugepages")" \
			"$(cat "$d/surplus_hugepages")"
	done
}

# The module parameters a test may change for its own run, as name=value
# pairs. A test puts them back when it ends, but not one that fails midway
# (the KVM library's asserts exit at once): this script puts them back after
# each test, so that later tests run as the boot configured them, and fails a
# test that passed but left one changed.
params=/sys/module/kvm/parameters/gmem_merge_delay_ms
read_params() {
	for p in $params; do
		[ -r "$p" ] && printf '%s=%s ' "$p" "$(cat "$p")"
	done
}
restore_params() {
	for kv in $1; do
		echo "${kv#*=}" >"${kv%%=*}"
	done
}
params_boot=$(read_params)

# The kernel stacks of every task of the test BIN (the harness forks), and
# the blocked tasks on the console: what a test that is about to be killed
# for its timeout is waiting for.
dump_stacks() { # BIN
	for p in /proc/[0-9]*; do
		grep -q "$1" "$p/cmdline" 2>/dev/null || continue
		for t in "$p"/task/*; do
			echo "--- task ${t##*/} ($(cat "$t/comm")), state $(cut -d' ' -f3 "$t/stat")"
			cat "$t/stack"
		done
	done
	echo w >/proc/sysrq-trigger 2>/dev/null
}

seen=-1
grep -v '^[[:space:]]*\(#\|$\)' "$list" | while read -r name tmo bin args; do
	if [ "$name" = @boot ]; then
		seen=$((seen + 1))
		continue
	fi
	[ "$boot" -eq "$(( seen < 0 ? 0 : seen ))" ] || continue
	if [ -n "$filter" ]; then
		# T: one shell pattern or several, separated by spaces.
		match=
		set -f
		for p in $filter; do
			case "$name" in $p) match=1 ;; esac
		done
		set +f
		[ -n "$match" ] || continue
	fi
	log=$out/tests/$name.log
	before=$(pool)
	start=$(date +%s)
	echo "=== $name"
	# shellcheck disable=SC2086
	tmo=$((tmo * scale))
	(sleep $((tmo - 2)) && echo "=== stacks before the timeout" && dump_stacks "$bin") \
		>"$log.stacks" 2>&1 &
	watchdog=$!
	(cd "$bindir" && TIMEOUT_SCALE=$scale timeout -s KILL "$tmo" "./$bin" $args) >"$log" 2>&1 </dev/null
	rc=$?
	kill "$watchdog" 2>/dev/null
	wait "$watchdog" 2>/dev/null
	cat "$log.stacks" >>"$log"
	rm -f "$log.stacks"
	secs=$(($(date +%s) - start))
	after=$(pool)
	params_after=$(read_params)
	if [ "$params_after" != "$params_boot" ]; then
		echo "module parameters after the test: $params_after" >>"$log"
		echo "put back as the boot had them:    $params_boot" >>"$log"
		restore_params "$params_boot"
	fi
	if [ $rc -eq 0 ] && [ "$params_after" != "$params_boot" ]; then
		line="fail $name left module parameters changed: [$params_after], boot had [$params_boot]"
	elif [ $rc -eq 0 ] && [ "$before" != "$after" ]; then
		echo "hugetlb pool before: $before" >>"$log"
		echo "hugetlb pool after:  $after" >>"$log"
		line="fail $name hugetlb pool counts changed: before [$before] after [$after]"
	elif [ $rc -eq 0 ]; then
		line="pass $name"
	elif [ $rc -eq 4 ]; then
		why=$(grep -m1 -i 'skip' "$log" | cut -c1-200)
		line="skip $name ${why:-exit status 4 (KSFT_SKIP)}"
	elif [ $rc -eq 137 ]; then
		line="fail $name killed after the ${tmo}s timeout"
	else
		line="fail $name exit status $rc"
	fi
	echo "$line" >>"$out/results"
	echo "$line (${secs}s)"
	case "$line" in fail*) tail -n 20 "$log" | sed 's/^/    /' ;; esac
done

# How close the boot came to lockdep's table sizes: a full table is a
# "BUG: MAX_LOCKDEP_..." splat.
if [ -r /proc/lockdep_stats ]; then
	cp /proc/lockdep_stats "$out/lockdep_stats.txt"
fi

if [ -w /sys/kernel/debug/kmemleak ]; then
	# An object is reported once two scans, some seconds apart, found it
	# unreferenced.
	echo "=== kmemleak scan"
	echo scan >/sys/kernel/debug/kmemleak
	sleep 6
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak >"$out/kmemleak.txt"
	echo "kmemleak: $(grep -c '^unreferenced object' "$out/kmemleak.txt") report(s)"
fi
exit 0
