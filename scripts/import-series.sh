#!/usr/bin/env bash
# Turn the commits of build/linux-7.3 (v7.3..HEAD) back into the overlay:
# patches/series and patches/*.patch, and our own files at their kernel paths
# in this repository. This is the way to work on the series with git in the
# kernel tree (commit, amend, rebase), then keep the result:
#
#   cd build/linux-7.3 && git commit ... && cd - && scripts/import-series.sh
#
# A file under the overlay directories that is new in the series is one of
# ours: it is copied here as it is at HEAD, and claimed (Overlay: line) by the
# last commit that changes it. Earlier commits that add or change it keep
# their hunks to it in their patches, so a file can grow over the series (a
# header that a later patch extends); the claiming patch holds the rest, up to
# the copy here. Everything else is an upstream file and stays in the patches.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tree=$top/build/linux-7.3
OVERLAY_DIRS=(Documentation arch include mm tools virt)
git_tree() { git -C "$tree" "$@"; }

commits=$(git_tree rev-list --reverse v7.3..HEAD)
[ -n "$commits" ] || { echo "import: no commits on top of v7.3" >&2; exit 1; }

# Our files: added by the series, under the overlay directories.
ours=$(git_tree diff --name-only --no-renames --diff-filter=A v7.3 HEAD -- "${OVERLAY_DIRS[@]}")
for f in $ours; do
	mkdir -p "$top/$(dirname "$f")"
	git_tree show "HEAD:$f" >"$top/$f"
done
# Ours that the series no longer has are removed.
(cd "$top" && git ls-files -- "${OVERLAY_DIRS[@]}") | while read -r f; do
	grep -xF -- "$f" <<<"$ours" >/dev/null || rm -f "$top/$f"
done

new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
# The commit that claims each of ours: the last one that changes it.
declare -A claimer
for c in $commits; do
	for f in $(git_tree diff --name-only --no-renames "$c~1" "$c" -- "${OVERLAY_DIRS[@]}"); do
		# Not grep -q in a pipe: under pipefail, printf's SIGPIPE when
		# grep exits early would drop the claim.
		if grep -xF -- "$f" <<<"$ours" >/dev/null; then claimer[$f]=$c; fi
	done
done
n=0
for c in $commits; do
	n=$((n + 1))
	name=$(git_tree log -1 --format=%f "$c")
	file=$(printf '%04d-%s' "$n" "$(printf '%s' "$name" | cut -c1-60 | sed 's/[.-]*$//')").patch
	claimed=$(for f in $ours; do [ "${claimer[$f]}" != "$c" ] || echo "$f"; done)
	{
		echo "From: $(git_tree log -1 --format='%an <%ae>' "$c")"
		echo "Date: Thu, 1 Jan 2026 00:00:00 +0000"
		echo "Subject: [PATCH] $(git_tree log -1 --format=%s "$c")"
		echo
		body=$(git_tree log -1 --format=%b "$c" | grep -v '^Overlay:' || true)
		overlay=
		[ -z "$claimed" ] || overlay="Overlay: $(echo $claimed)"
		# Overlay: goes just before the trailers (Signed-off-by: etc.).
		printf '%s\n' "$body" | awk -v ov="$overlay" '
			!done && /^[A-Za-z-]+-by: / { if (ov != "") print ov; done = 1 }
			{ print }
			END { if (!done && ov != "") print ov }' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
		echo "---"
		# shellcheck disable=SC2046
		git_tree diff --no-renames "$c~1" "$c" -- . $(for f in $claimed; do printf ':!%s ' "$f"; done)
	} >"$new/$file"
	echo "$file" >>"$new/series.list"
done

rm -f "$top"/patches/*.patch
mkdir -p "$top/patches"
cp "$new"/*.patch "$top/patches/"
{
	echo "# Applied in order onto v7.3 by scripts/overlay.sh (quilt style)."
	cat "$new/series.list"
} >"$top/patches/series"
echo "import: $n patches:"
sed 's/^/  /' "$new/series.list"
