#!/usr/bin/env bash
# Build the kernel at each patch of the series, so that the series bisects:
# every patch must build, not only the last.
#
#   series-builds.sh            every patch, in order
#   series-builds.sh 1 20 26    those patches only (their numbers in patches/series)
#
# The builds run in a worktree of build/linux-7.3 (build/series-wt), in their
# own object directory (build/obj-series), with the test kernel's .config
# (build/obj/.config, from `make config`) brought to each patch's Kconfig by
# olddefconfig, afresh at each patch. A patch that changes the KVM selftests
# also builds them, against its own uAPI headers. Going from one patch to the
# next rebuilds only what it changed, so a run of the whole series costs the
# first build plus an incremental build per patch. Logs:
# build/series-builds/NNNN.log.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/build/linux-7.3
wt=$top/build/series-wt
obj=$top/build/obj-series
logs=$top/build/series-builds
hdr=$top/build/series-headers
ksft=$top/build/series-selftests
jobs=${JOBS:-$(nproc)}

# One run at a time: two share the worktree and the object directory, and
# each would build over the other's files.
exec 9>"$top/build/series-builds.lock"
flock -n 9 || { echo "series-builds: another run holds build/series-builds.lock" >&2; exit 1; }

[ -f "$top/build/obj/.config" ] || { echo "series-builds: no build/obj/.config (run make config)" >&2; exit 1; }
mapfile -t commits < <(git -C "$src" rev-list --reverse v7.3..overlay)
[ "${#commits[@]}" -gt 0 ] || { echo "series-builds: no series on v7.3" >&2; exit 1; }

if [ ! -d "$wt" ]; then
	git -C "$src" worktree prune
	git -C "$src" worktree add -q --detach "$wt" v7.3
fi
mkdir -p "$obj" "$logs"

wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=($(seq 1 "${#commits[@]}"))
failed=0
for n in "${wanted[@]}"; do
	[ "$n" -ge 1 ] && [ "$n" -le "${#commits[@]}" ] || { echo "series-builds: no patch $n" >&2; exit 1; }
	c=${commits[$((n - 1))]}
	log=$logs/$(printf '%04d' "$n").log
	git -C "$wt" checkout -q --detach "$c"
	start=$(date +%s)
	result=ok
	# The test kernel's options that this patch knows, each time: an option
	# that an earlier patch did not know would otherwise stay dropped.
	cp "$top/build/obj/.config" "$obj/.config"
	if ! make -s -C "$wt" O="$obj" olddefconfig >"$log" 2>&1 ||
	   ! make -s -C "$wt" O="$obj" CC="ccache gcc" -j"$jobs" bzImage >>"$log" 2>&1; then
		result=FAILED
	elif ! git -C "$wt" diff --quiet "$c~1" "$c" -- tools/testing/selftests/kvm; then
		mkdir -p "$ksft"
		if ! make -s -C "$wt" O="$obj" INSTALL_HDR_PATH="$hdr" headers_install >>"$log" 2>&1 ||
		   ! make -s -C "$wt/tools/testing/selftests/kvm" -j"$jobs" OUTPUT="$ksft" \
			KHDR_INCLUDES="-isystem $hdr/include" >>"$log" 2>&1; then
			result=FAILED
		else
			result="ok+ksft"
		fi
	fi
	[ "$result" != FAILED ] || failed=$((failed + 1))
	printf '%04d %-7s %4ss  %s\n' "$n" "$result" $(($(date +%s) - start)) \
		"$(git -C "$wt" log -1 --format=%s "$c")"
done
[ "$failed" -eq 0 ] || { echo "series-builds: $failed patch(es) do not build; see $logs" >&2; exit 1; }
echo "series-builds: ${#wanted[@]} patch(es) build"
