#!/usr/bin/env bash
# Fetch Debian's linux-source-7.3 from trixie-backports and unpack it, pristine,
# into build/linux-7.3 as a git repository whose first commit is tagged v7.3.
#
# The machine's apt configuration is not touched: a private sources list, lists
# directory and cache live under build/apt. A no-op once build/linux-7.3 exists.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build
tree=$build/linux-7.3
pkg=linux-source-7.3
suite=trixie-backports

if [ -e "$tree/.git/refs/tags/v7.3" ] && [ -s "$tree/Makefile" ]; then
	exit 0
fi

apt_dir=$build/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$build/dl"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
	>"$apt_dir/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache::Archives=$apt_dir/archives"
	-o Debug::NoLocking=1
	-o APT::Sandbox::User=root
)

echo "fetch: updating the $suite package list (private to build/apt)"
apt-get "${apt_opts[@]}" update -qq
if ! apt-cache "${apt_opts[@]}" show "$pkg" >/dev/null 2>&1; then
	echo "fetch: ERROR: $pkg is no longer offered by Debian $suite." >&2
	echo "fetch: Backports keep only the newest kernel; the overlay must be rebased" >&2
	echo "fetch: onto the version the mirror now offers (see README, 'Rebasing')." >&2
	exit 1
fi

(cd "$build/dl" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download "$pkg")
deb=$(ls "$build/dl"/"$pkg"_*.deb)
echo "fetch: unpacking $(basename "$deb")"
rm -rf "$build/dl/x" "$tree.tmp"
dpkg-deb -x "$deb" "$build/dl/x"
tarball=$(ls "$build/dl/x/usr/src/$pkg.tar.xz")
mkdir -p "$tree.tmp"
tar -xJf "$tarball" -C "$tree.tmp" --strip-components=1
rm -rf "$build/dl/x"

# Pristine tree as a git repository: the overlay is applied as commits on top
# of v7.3, and switching between two overlay states rewrites only the files that
# differ, so incremental kernel builds stay incremental.
cd "$tree.tmp"
git init -q
git config user.name "overlay"
git config user.email "overlay@localhost"
git config gc.auto 0
# Debian's tarball ships no .gitignore-d build products, but keep git from
# ignoring anything that is part of the source.
git add -f -A .
git commit -q -m "Linux $(make -s kernelversion) (Debian $(basename "$deb" .deb))"
git tag v7.3
cd "$build"
rm -rf "$tree"
mv "$tree.tmp" "$tree"
echo "fetch: pristine Linux $(make -s -C "$tree" kernelversion) in $tree"
