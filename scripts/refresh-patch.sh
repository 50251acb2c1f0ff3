#!/usr/bin/env bash
# Rewrite the diff of one patch of patches/series from build/linux-7.3's work
# tree, after editing upstream files there (only this patch's part of them):
#
#   scripts/refresh-patch.sh PATCH [NEW_FILE...]
#
# The patch's new diff is the work tree against the commit before it, for the
# upstream files the patch already touches plus NEW_FILE... (our own files are
# left out: they live in this repository). A file that a later patch also
# touches too is handled by taking the later patch's hunks back out. Its message
# and "Overlay:" lines are kept. Run `make` afterwards: it rebuilds the tree
# from the patches, so unrefreshed edits in build/linux-7.3 are lost.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tree=$top/build/linux-7.3
name=${1:?usage: refresh-patch.sh PATCH [NEW_FILE...]}
shift
name=$(basename "$name")

mapfile -t series < <(grep -v '^\s*\(#\|$\)' "$top/patches/series" | awk '{print $1}')
n=${#series[@]} i=-1
for k in "${!series[@]}"; do [ "${series[$k]}" = "$name" ] && i=$k; done
[ $i -ge 0 ] || { echo "refresh: $name is not in patches/series" >&2; exit 1; }
[ "$(git -C "$tree" symbolic-ref -q HEAD)" = refs/heads/overlay ] ||
	{ echo "refresh: build/linux-7.3 is not on the overlay (run make)" >&2; exit 1; }
commit=$(git -C "$tree" rev-parse "HEAD~$((n - 1 - i))")
base=$(git -C "$tree" rev-parse "$commit~1")

claimed=$(cd "$top" && git ls-files -co --exclude-standard -- Documentation arch include mm tools virt)
is_ours() { printf '%s\n' "$claimed" | grep -qxF -- "$1"; }
files=()
while read -r f; do is_ours "$f" || files+=("$f"); done < <(git -C "$tree" diff --name-only "$base" "$commit")
for f in "$@"; do files+=("$f"); done
# Later patches' changes to the same files are taken back out of the work
# tree copy (patch -R), so each patch keeps only its own hunks.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
state_after_patch() { # FILE -> path of FILE as it is right after this patch
	local f=$1 out=$work/after/$1 k later
	mkdir -p "$(dirname "$out")"
	if [ -e "$tree/$f" ]; then cp "$tree/$f" "$out"; else : >"$out"; fi
	for ((k = n - 1; k > i; k--)); do
		later=$(git -C "$tree" rev-parse "HEAD~$((n - 1 - k))")
		git -C "$tree" diff "$later~1" "$later" -- "$f" >"$work/later.diff"
		if [ -s "$work/later.diff" ]; then
			patch -s -R -p1 "$out" <"$work/later.diff" ||
				{ echo "refresh: cannot take ${series[$k]} back out of $f" >&2; exit 1; }
		fi
	done
	echo "$out"
}

p=$top/patches/$name
tmp=$(mktemp)
sed -n '1,/^---$/p' "$p" >"$tmp"
for f in ${files[@]+"${files[@]}"}; do
	mkdir -p "$work/before/$(dirname "$f")"
	git -C "$tree" show "$base:$f" >"$work/before/$f" 2>/dev/null || : >"$work/before/$f"
	after=$(state_after_patch "$f")
	(cd "$work" && git diff --no-index --no-prefix -- "before/$f" "after/$f") |
		sed -e "s|^diff --git before/$f after/$f|diff --git a/$f b/$f|" \
		    -e "s|^--- before/$f|--- a/$f|" -e "s|^+++ after/$f|+++ b/$f|" >>"$tmp" || true
done
mv "$tmp" "$p"
echo "refresh: $name now changes ${files[*]:-nothing upstream}"
