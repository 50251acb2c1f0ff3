#!/usr/bin/env bash
# `make check`: boot the test kernel once, run the KUnit suites built into it
# (results read from the boot log with the tree's kunit.py parse) and the
# selftests of tests.list, check the kernel log for splats, and print one
# summary line "N passed, N failed, N skipped". Exits non-zero on any failure,
# including a guest that hangs (killed at the timeout) or crashes.
#
# T=PATTERN runs only the selftests whose name matches the shell pattern, and
# only the KUnit tests matching it as a kunit.filter_glob; T='P1 P2 ...' runs
# the selftests matching any of the patterns, and every KUnit suite. BOOTS="0 1" (the
# indexes of tests.list's @boot groups, from 0) runs only those boots; the
# others' tests are listed as not run. CHECK_TIMEOUT=S
# overrides the guest's time limit (by default the sum of the tests' own).
# For the debug kernel (`make check-debug`): KERNEL (the bzImage), CHECK_OUT
# (the output directory) and TIMEOUT_SCALE (multiplies every test's timeout);
# a kmemleak scan after the tests fails the run if a leak involves our code.
# CONCURRENT_BOOTS="2" starts those boots first, in the background, and runs
# the others meanwhile: for QEMUs that each use one core (single-threaded
# TCG, as make check-debug runs) on a machine with two.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
tree=$top/build/linux-7.3
out=${CHECK_OUT:-$top/build/check}
filter=${T:-}
list=$top/tests.list
scale=${TIMEOUT_SCALE:-1}

# Whether test NAME is one that T selects (no T: all of them).
selected() { # NAME
	local p
	[ -z "$filter" ] && return 0
	set -f
	for p in $filter; do
		case "$1" in $p) set +f; return 0 ;; esac
	done
	set +f
	return 1
}

# Boots: a "@boot ARGS" line of tests.list starts the tests that run in a
# boot of their own, with ARGS on the kernel command line (tests before the
# first such line run in the first boot). The KUnit suites run in the first
# boot. Each boot's time budget: its tests' own timeouts, plus boot and KUnit.
# ARGs "qemu-accel=A", "qemu-mem=M", "qemu-nodes=N" and "qemu-1g-pages=P" are
# no kernel arguments: that boot runs QEMU with -accel A (the others with
# ACCEL, default multi-threaded TCG), M of memory over N NUMA nodes and P 1G
# pages in the pool (the others with vm-run.sh's defaults, or MEM).
seen=-1
boot_args=() budgets=() ntests=()
while read -r name tmo rest; do
	case "$name" in
	@boot) seen=$((seen + 1)); boot_args[seen]=$tmo${rest:+ $rest}; continue ;;
	''|'#'*) continue ;;
	esac
	selected "$name" || continue
	b=$((seen < 0 ? 0 : seen))
	budgets[b]=$((${budgets[b]:-240} + tmo * scale))
	ntests[b]=$((${ntests[b]:-0} + 1))
done <"$list"
nboots=$((seen < 0 ? 1 : seen + 1))

rm -rf "$out"
mkdir -p "$out/tests"
: >"$out/results"
: >"$out/console.log"
vm_rc=0
boot_selected() { # B
	[ -z "${BOOTS:-}" ] && return 0
	case " $BOOTS " in *" $1 "*) return 0 ;; esac
	return 1
}
not_run=()

# Boot B: its tests, in the test VM, into $out/bootB. Its qemu-* arguments
# become vm-run.sh's environment, the others its kernel command line EXTRA.
run_boot() { # B EXTRA
	local b=$1 extra=$2 accel=${ACCEL:-} budget vm_env=()
	for arg in ${boot_args[b]:-}; do
		case "$arg" in
		qemu-accel=*) accel=${arg#qemu-accel=} ;;
		qemu-mem=*) vm_env+=("MEM=${arg#qemu-mem=}") ;;
		qemu-nodes=*) vm_env+=("NUMA_NODES=${arg#qemu-nodes=}") ;;
		qemu-1g-pages=*) vm_env+=("HUGEPAGES_1G=${arg#qemu-1g-pages=}") ;;
		qemu-*) echo "check: boot $b: unknown argument $arg in tests.list"; return 2 ;;
		esac
	done
	budget=${CHECK_TIMEOUT:-${budgets[b]:-240}}
	echo "check: boot $b: booting ${KERNEL:-the test kernel} ($(cat "$top/build/kernelrelease" 2>/dev/null)) with '$extra'${accel:+ under -accel $accel}${vm_env[0]+ (${vm_env[*]})}; guest time limit ${budget}s"
	env ${vm_env[@]+"${vm_env[@]}"} OUT="$out/boot$b" TIMEOUT=$budget CMDLINE_EXTRA="$extra" ACCEL="$accel" \
		"$top/scripts/vm-run.sh" \
		"sh scripts/guest/run-tests.sh tests.list build/selftests /mnt/out '$filter' $scale $b"
}

boot_concurrent() { # B
	case " ${CONCURRENT_BOOTS:-} " in *" $1 "*) return 0 ;; esac
	return 1
}

# The boots to run: concurrent ones first, each in the background with its
# output in $out/bootB.out, shown when it ends.
order=()
for ((b = 0; b < nboots; b++)); do boot_concurrent $b && order+=("$b"); done
for ((b = 0; b < nboots; b++)); do boot_concurrent $b || order+=("$b"); done
pids=() boot_extra=()
for b in "${order[@]}"; do
	if ! boot_selected $b; then
		echo "check: boot $b (${boot_args[b]:-}) not run: BOOTS='$BOOTS'"
		continue
	fi
	# The first boot always runs, for KUnit; the others only with tests.
	[ $b -gt 0 ] && [ "${ntests[b]:-0}" -eq 0 ] && continue
	extra=
	for arg in ${boot_args[b]:-}; do
		case "$arg" in
		qemu-*) ;;
		*) extra+="${extra:+ }$arg" ;;
		esac
	done
	if [ $b -gt 0 ]; then
		extra+=" kunit.enable=0"
	elif [ -n "$filter" ] && [ "$filter" = "${filter%% *}" ]; then
		extra+=" kunit.filter_glob=$filter"
	fi
	boot_extra[b]=$extra
	if boot_concurrent $b; then
		echo "check: boot $b runs in the background (CONCURRENT_BOOTS='$CONCURRENT_BOOTS'), output in $out/boot$b.out"
		run_boot $b "$extra" >"$out/boot$b.out" 2>&1 </dev/null &
		pids[b]=$!
	else
		run_boot $b "$extra" || vm_rc=$?
	fi
done
for b in "${!pids[@]}"; do
	wait "${pids[b]}" || vm_rc=$?
	echo "check: boot $b (in the background) ended; its output:"
	cat "$out/boot$b.out"
done

# Each boot's results, tests' logs, leaks and console, in boot order.
for ((b = 0; b < nboots; b++)); do
	bout=$out/boot$b
	[ -n "${boot_extra[b]+set}" ] || continue
	cat "$bout/results" >>"$out/results" 2>/dev/null
	cp "$bout"/tests/*.log "$out/tests/" 2>/dev/null
	if [ -f "$bout/kmemleak.txt" ]; then
		cat "$bout/kmemleak.txt" >>"$out/kmemleak.txt"
	fi
	{ echo "=== check: boot $b (${boot_extra[b]})"; cat "$bout/console.log" 2>/dev/null; } >>"$out/console.log"
done

pass=() fail=() skip=()

# Selftests: one result line each; a test with no line did not get to run.
seen=-1
while read -r name _; do
	case "$name" in
	@boot) seen=$((seen + 1)); continue ;;
	''|'#'*) continue ;;
	esac
	selected "$name" || continue
	if ! boot_selected $((seen < 0 ? 0 : seen)); then
		not_run+=("$name")
		continue
	fi
	line=$(grep -E "^(pass|fail|skip) $name( |\$)" "$out/results" 2>/dev/null | head -n 1)
	# A binary that passes may still have skipped some of its cases (TAP
	# "ok N case # SKIP why"): list each, so no skip goes unnoticed.
	while IFS= read -r sub; do
		skip+=("$name/$sub")
	done < <(sed -n 's/^ok [0-9]* \(.*\) # SKIP *\(.*\)$/\1: \2/p' "$out/tests/$name.log" 2>/dev/null)
	# And each case that failed, with the assertion that failed it, so that
	# the summary's last lines (all a CI report may show) name it.
	while IFS= read -r sub; do
		fail+=("$name/$sub")
	done < <(awk '/^==== Test Assertion Failure ====/ { getline; where = $0; sub(/^ +/, "", where) }
		/^not ok [0-9]+ / { sub(/^not ok [0-9]+ /, ""); print $0 (where != "" ? ": " where : ""); where = "" }' \
		"$out/tests/$name.log" 2>/dev/null)
	case "$line" in
	pass*) pass+=("$name") ;;
	skip*) skip+=("$name: ${line#skip "$name" }") ;;
	fail*) fail+=("$name: ${line#fail "$name" }") ;;
	*) fail+=("$name: no result: the guest stopped (killed at the time limit or crashed) before this test finished (vm-run exit $vm_rc)") ;;
	esac
done <"$list"

# KUnit: every test case of every suite in the first boot's log.
log=$out/console.log
if boot_selected 0 && [ -s "$out/boot0/console.log" ]; then
	python3 "$tree/tools/testing/kunit/kunit.py" parse --json="$out/kunit.json" \
		<"$out/boot0/console.log" >"$out/kunit.txt" 2>&1
	while IFS=$'\t' read -r status name; do
		case "$status" in
		PASS) pass+=("kunit:$name") ;;
		SKIP) skip+=("kunit:$name: skipped") ;;
		*) fail+=("kunit:$name: $status") ;;
		esac
	done < <(python3 - "$out/kunit.json" <<'PY'
import json, sys
try:
    root = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
def walk(group, prefix):
    for case in group.get("test_cases", []):
        print(f"{case['status']}\t{prefix}{case['name']}")
    for sub in group.get("sub_groups", []):
        walk(sub, f"{prefix}{sub['name']}.")
for suite in root.get("sub_groups", []):
    walk(suite, f"{suite['name']}.")
PY
)
	if [ -z "$filter" ] && ! grep -q 'KTAP version' "$out/boot0/console.log"; then
		fail+=("kunit: no KTAP output in the boot log")
	fi
fi

# Kernel log: any warning, bug, lockdep report or sleep-in-atomic fails the run,
# and so does our work queued on a deprecated workqueue (printed once per boot,
# for whichever work came first: a guard, not a proof).
splat_re='WARNING:|BUG:|Oops|general protection fault|Kernel panic|possible circular locking|possible recursive locking|inconsistent lock state|lock held when returning|suspicious RCU usage|sleeping function called from invalid context|INFO: task .* blocked|hung_task|UBSAN:|KASAN:|kernel BUG|Call Trace:|unreferenced object|work func [a-z_]*gmem[a-z_]* enqueued on deprecated workqueue'
# The stack fault injection prints with each failure it forces is no splat:
# scan a copy of the log without them.
scan=$out/console-scanned.log
if [ -s "$log" ]; then
	awk '/FAULT_INJECTION: forcing a failure/ { skip = 1 }
	     !skip { print }
	     skip && /<\/TASK>/ { skip = 0 }' "$log" >"$scan"
	injections=$(grep -c 'FAULT_INJECTION: forcing a failure' "$log" || true)
	[ "$injections" -gt 0 ] && echo "check: $injections failures forced by fault injection (their stacks are not splats)"
	if grep -qE "$splat_re" "$scan"; then
		n=$(grep -cE "$splat_re" "$scan")
		# The first splat line in the summary, which is all a CI report
		# may show.
		first=$(grep -m1 -E "$splat_re" "$scan" | tr -d '\r' | cut -c1-200)
		fail+=("kernel-log: $n splat line(s) in $log, the first: $first")
		echo "check: kernel log splat(s):"
		grep -nE -A 25 "$splat_re" "$scan" | head -n 80 | sed 's/^/    /'
	else
		pass+=("kernel-log")
	fi
else
	fail+=("kernel-log: the guest left no console log")
fi

# kmemleak (debug kernel): leaks whose allocation involves guest_memfd fail:
# a gmem or guest_memfd function in the allocation's backtrace (not the
# task's name: memory failure's list of a hugetlb page's poisoned pages,
# allocated in a test's write to hwpoison-inject, hangs off a free huge page
# whose struct pages kmemleak does not scan).
leaks=$out/kmemleak.txt
if [ -f "$leaks" ]; then
	total=$(grep -c '^unreferenced object' "$leaks")
	ours=$(awk '/^unreferenced object/ { n++; bt = 0 } /^  backtrace/ { bt = 1; next }
		bt && /gmem|guest_memfd/ { hit[n] = 1 }
		END { c = 0; for (i in hit) c++; print c }' "$leaks")
	if [ "$ours" -gt 0 ]; then
		fail+=("kmemleak: $ours of $total leak report(s) involve guest_memfd ($leaks)")
		sed 's/^/    /' "$leaks" | head -n 60
	else
		pass+=("kmemleak: none from guest_memfd ($total other report(s), in $leaks)")
	fi
fi

echo
for t in ${pass[@]+"${pass[@]}"}; do echo "PASS $t"; done
for t in ${skip[@]+"${skip[@]}"}; do echo "SKIP $t"; done
for t in ${fail[@]+"${fail[@]}"}; do echo "FAIL $t"; done
for t in ${not_run[@]+"${not_run[@]}"}; do echo "NOT RUN $t (its boot is not in BOOTS='$BOOTS')"; done
echo "${#pass[@]} passed, ${#fail[@]} failed, ${#skip[@]} skipped${not_run[0]+, ${#not_run[@]} not run}"
[ ${#fail[@]} -eq 0 ] && [ ${#pass[@]} -gt 0 ]
