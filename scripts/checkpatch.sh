#!/usr/bin/env bash
# scripts/checkpatch.pl --strict on the project's C files and on the exported
# series (build/series, written by make series).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cp=$top/build/linux-7.3/scripts/checkpatch.pl
cd "$top"
rc=0
files=$(git ls-files -co --exclude-standard -- '*.c' '*.h')
# shellcheck disable=SC2086
perl "$cp" --no-tree --strict --terse -f $files || rc=1
# The exported series (make series): commit messages and every hunk, from
# the kernel tree, where the commits that Fixes: tags name are.
cd "$top/build/linux-7.3"
for p in "$top"/build/series/*.patch; do
	[ -f "$p" ] || continue
	case "$p" in */0000-cover-letter.patch) continue ;; esac
	perl "$cp" --no-tree --strict --terse "$p" || rc=1
done
exit $rc
