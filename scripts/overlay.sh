#!/usr/bin/env bash
# Lay the overlay onto the pristine kernel tree, as a chain of commits on v7.3.
#
#   overlay.sh apply          make build/linux-7.3 hold v7.3 + the overlay
#   overlay.sh series DIR     also write the chain as a git format-patch series
#
# The overlay is patches/series (quilt style: one git-format-patch file a line,
# applied in order) plus the files of this repository under the kernel
# directories listed in OVERLAY_DIRS. Each overlay file belongs to exactly one
# patch, which claims it with an "Overlay: PATH" line in its message; the file
# is added in that patch's commit, so the exported series is complete.
#
# Commits are built with a private index (git apply --cached) and fixed dates,
# so the same overlay always gives the same commit, nothing is ever half
# applied, and moving the work tree between two overlay states rewrites only
# the files that differ (incremental kernel builds stay incremental).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
tree=$top/build/linux-7.3
OVERLAY_DIRS=(Documentation arch include mm tools virt)
mode=${1:-apply}

die() { echo "overlay: ERROR: $*" >&2; exit 1; }
trap 'echo "overlay: ERROR: $BASH_COMMAND failed (line $LINENO)" >&2' ERR

[ -d "$tree/.git" ] || die "no kernel tree at $tree (run scripts/fetch-kernel.sh)"
cd "$top"

overlay_files=$(git ls-files -co --exclude-standard -- "${OVERLAY_DIRS[@]}" | sort -u |
	while read -r f; do [ -f "$f" ] && echo "$f"; done)

patches=()
if [ -f patches/series ]; then
	while read -r p _; do
		case "$p" in ''|'#'*) continue ;; esac
		[ -f "patches/$p" ] || die "patches/series names $p, which does not exist"
		patches+=("$p")
	done <patches/series
fi

# Every overlay file claimed exactly once.
claims=$(for p in ${patches[@]+"${patches[@]}"}; do
	sed -n '/^---$/q; s/^Overlay: *//p' "patches/$p" | tr ' ' '\n' | sed "/^$/d; s|\$| $p|"
done)
for f in $overlay_files; do
	n=$(printf '%s\n' "$claims" | awk -v f="$f" '$1 == f' | wc -l)
	[ "$n" -eq 1 ] || die "$f is claimed by $n patches (each overlay file needs one 'Overlay: $f' line)"
done
printf '%s\n' "$claims" | while read -r f p; do
	[ -z "$f" ] || [ -f "$f" ] || die "$p claims $f, which does not exist"
done

git_tree() { git -C "$tree" "$@"; }
index=$top/build/overlay.index
work=$(mktemp -d)
trap 'rm -f "$index"; rm -rf "$work"' EXIT
export GIT_INDEX_FILE=$index
rm -f "$index"
git_tree read-tree v7.3

commit=$(git_tree rev-parse v7.3)
: >"$work/subjects"
i=0
for p in ${patches[@]+"${patches[@]}"}; do
	i=$((i + 1))
	git mailinfo "$work/msg" "$work/diff" <"patches/$p" >"$work/info"
	subject=$(sed -n 's/^Subject: //p' "$work/info")
	author=$(sed -n 's/^Author: //p' "$work/info")
	email=$(sed -n 's/^Email: //p' "$work/info")
	[ -n "$subject" ] && [ -n "$author" ] && [ -n "$email" ] ||
		die "$p: needs From: and Subject: headers (git format-patch form)"
	if [ -s "$work/diff" ]; then
		git_tree apply --cached --whitespace=nowarn "$work/diff" 2>"$work/err" || {
			cat "$work/err" >&2
			die "patch $i/${#patches[@]} ($p) does not apply to v7.3 + the patches before it"
		}
	fi
	for f in $(printf '%s\n' "$claims" | awk -v p="$p" '$2 == p { print $1 }'); do
		mode_bits=100644
		[ -x "$f" ] && mode_bits=100755
		blob=$(git_tree hash-object -w --path="$f" "$top/$f")
		git_tree update-index --add --cacheinfo "$mode_bits,$blob,$f"
	done
	t=$(git_tree write-tree)
	# A "Fixes: <id> (\"<subject>\")" line names a commit of this chain by
	# its subject: its id is the one that commit has in this overlay, since
	# any change to an earlier patch changes the ids after it.
	{
		echo "$subject"
		echo
		{ grep -v '^Overlay:' "$work/msg" || true; } | cat -s |
			awk -v subjects="$work/subjects" '
			     BEGIN { while ((getline l < subjects) > 0) {
					t = index(l, "\t"); id[substr(l, t + 1)] = substr(l, 1, t - 1) } }
			     /^Fixes: [0-9a-f]+ \("/ {
				s = $0; sub(/^Fixes: [0-9a-f]+ \("/, "", s); sub(/"\)$/, "", s)
				if (s in id) { print "Fixes: " id[s] " (\"" s "\")"; next }
			     }
			     { print }'
	} >"$work/commitmsg"
	# Fixed dates: the same overlay gives the same commit ids.
	commit=$(GIT_AUTHOR_NAME=$author GIT_AUTHOR_EMAIL=$email GIT_COMMITTER_NAME=$author \
		GIT_COMMITTER_EMAIL=$email GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" \
		GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" \
		git_tree commit-tree "$t" -p "$commit" -F "$work/commitmsg")
	printf '%s\t%s\n' "$(git_tree rev-parse --short=12 "$commit")" "$subject" >>"$work/subjects"
done
unset GIT_INDEX_FILE

git_tree update-ref refs/heads/overlay "$commit"
if [ "$(git_tree rev-parse HEAD)" != "$commit" ] || ! git_tree diff --quiet HEAD; then
	# Point HEAD at the overlay branch, then let reset rewrite only the
	# files that differ between the work tree and the new commit.
	git_tree symbolic-ref HEAD refs/heads/overlay
	git_tree reset -q --hard "$commit"
	echo "overlay: build/linux-7.3 is now v7.3 + ${#patches[@]} patches ($(git_tree rev-parse --short HEAD))"
fi

if [ "$mode" = series ]; then
	out=${2:?usage: overlay.sh series DIR}
	rm -rf "$out"
	mkdir -p "$out"
	git_tree format-patch -q --no-signature --cover-letter -o "$out" v7.3..overlay
	# The cover letter's subject and blurb: patches/cover-letter (its first
	# line, then the rest), below format-patch's shortlog and diffstat.
	cover=$out/0000-cover-letter.patch
	[ -f patches/cover-letter ] || die "patches/cover-letter is missing"
	subject=$(head -n 1 patches/cover-letter)
	tail -n +3 patches/cover-letter >"$work/blurb"
	awk -v subject="$subject" -v blurb="$work/blurb" '
		/\*\*\* SUBJECT HERE \*\*\*/ { sub(/\*\*\* SUBJECT HERE \*\*\*/, subject) }
		/^\*\*\* BLURB HERE \*\*\*$/ { while ((getline l < blurb) > 0) print l; next }
		{ print }' "$cover" >"$work/cover" && mv "$work/cover" "$cover"
	echo "overlay: a cover letter and $(($(ls "$out" | wc -l) - 1)) patches in $out against v7.3"
fi
