#!/bin/sh
# Runs in the test VM: selftest cases of one harness binary, N times over,
# to hunt rare failures; a case still running after HANG seconds gets the
# kernel stacks of the test's tasks (and of every runnable or blocked task)
# written to $OUT/hang-ITER-CASE.txt, and the loop stops there.
#
#   scripts/vm-run.sh 'N=12 TESTS="stress.page_2m.lifetime_races" sh scripts/guest/loop-stress.sh'
#
# BIN (build/selftests/guest_memfd_stress_test), TESTS (full case names),
# N (12), HANG (90), OUT (/mnt/out). Each run's output: $OUT/run-ITER-CASE.log.
bin=${BIN:-build/selftests/guest_memfd_stress_test}
out=${OUT:-/mnt/out}
pass=0 fail=0
for i in $(seq 1 "${N:-12}"); do
	for t in ${TESTS:-stress.page_4k.lifetime_races stress.page_2m.lifetime_races}; do
		"$bin" -r "$t" >"$out/run-$i-$t.log" 2>&1 &
		pid=$!
		s=0
		while kill -0 $pid 2>/dev/null && [ $s -lt "${HANG:-90}" ]; do
			sleep 1
			s=$((s + 1))
		done
		if kill -0 $pid 2>/dev/null; then
			echo "HANG $i $t after $s s"
			for k in 1 2 3; do
				for tk in /proc/[0-9]*/task/*; do
					st=$(cut -d' ' -f3 "$tk/stat")
					case "$(cat "$tk/comm")" in
					guest_memfd*|kworker*|*kvm*) ;;
					*) [ "$st" = R ] || [ "$st" = D ] || continue ;;
					esac
					echo "== $k $tk $(cat "$tk/comm") $st $(cat "$tk/wchan") syscall: $(cat "$tk/syscall")"
					cat "$tk/stack"
				done
				sleep 1
			done >"$out/hang-$i-$t.txt" 2>&1
			exit 1
		fi
		if wait $pid; then
			pass=$((pass + 1))
		else
			fail=$((fail + 1))
			echo "FAIL $i $t"
			grep -m3 'exit\|Assert' "$out/run-$i-$t.log"
		fi
	done
	echo "iter $i pass $pass fail $fail uptime $(cut -d' ' -f1 /proc/uptime)"
done
