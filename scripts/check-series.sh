#!/usr/bin/env bash
# Check that an exported series applies with `git am` to a pristine v7.3 tree
# and gives exactly the tree that `make` builds.
# Usage: check-series.sh SERIES_DIR
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/build/linux-7.3
series=$(realpath "$1")
wt=$top/build/series-am

git -C "$src" worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
git -C "$src" worktree prune
git -C "$src" worktree add -q --detach "$wt" v7.3
trap 'git -C "$src" worktree remove --force "$wt"' EXIT
# The cover letter (0000-cover-letter.patch) has no diff: git am skips it.
patches=$(find "$series" -name '*.patch' ! -name '0000-cover-letter.patch' | sort)
n=$(printf '%s' "$patches" | grep -c . || true)
if [ "$n" -gt 0 ]; then
	# shellcheck disable=SC2086
	git -C "$wt" -c user.name=check -c user.email=check@localhost am -q $patches
fi
if [ "$(git -C "$wt" rev-parse 'HEAD^{tree}')" != "$(git -C "$src" rev-parse 'overlay^{tree}')" ]; then
	echo "series: git am of $series gives a different tree than the overlay" >&2
	exit 1
fi
echo "series: $n patches apply with git am to pristine v7.3 and give the overlay's tree"
