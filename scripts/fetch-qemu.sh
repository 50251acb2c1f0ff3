#!/usr/bin/env bash
# Fetch Debian's qemu-system-x86 from trixie-backports, with every library it
# needs, and unpack it into build/qemu (no system install): the VMM that
# `make run-guest` and the VMM tier of `make check` run in the test VM. It runs
# through its own dynamic loader; build/qemu/qemu-system-x86_64 is a wrapper
# that does that from wherever the tree is mounted.
#
# The machine's apt configuration is not touched: a private sources list,
# package lists, cache and an empty dpkg status file (so that apt fetches the
# whole dependency closure) live under build/apt-qemu. A no-op once
# build/qemu/.version names the pinned package version.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build
root=$build/qemu
pkg=qemu-system-x86
version=1:11.1.3*
suite=trixie-backports

# shellcheck disable=SC2053
if [ -x "$root/qemu-system-x86_64" ] && [[ "$(cat "$root/.version" 2>/dev/null)" == "$pkg "$version ]]; then
	exit 0
fi

apt_dir=$build/apt-qemu
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
{
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main"
} >"$apt_dir/sources.list"
: >"$apt_dir/status"
apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o Dir::Etc::Preferences=/dev/null
	-o Dir::Etc::PreferencesParts=/dev/null
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::State::status=$apt_dir/status"
	-o "Dir::Cache::Archives=$apt_dir/archives"
	-o Debug::NoLocking=1
	-o APT::Sandbox::User=root
	-o APT::Install-Recommends=false
)

echo "fetch-qemu: updating the trixie and $suite package lists (private to build/apt-qemu)"
apt-get "${apt_opts[@]}" update -qq
have=$(apt-cache "${apt_opts[@]}" madison "$pkg" | awk -v s="$suite" '$0 ~ s { print $3; exit }')
# shellcheck disable=SC2254
case "$have" in
$version) ;;
*)
	echo "fetch-qemu: ERROR: Debian $suite offers $pkg ${have:-in no version}, not $version." >&2
	echo "fetch-qemu: Pin the version it offers now in scripts/fetch-qemu.sh and rerun make check." >&2
	exit 1
	;;
esac

echo "fetch-qemu: downloading $pkg $have and its dependencies"
rm -f "$apt_dir"/archives/*.deb
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -qq -y --download-only -t "$suite" \
	"$pkg=$have" >/dev/null
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
n=0
for deb in "$apt_dir"/archives/*.deb; do
	dpkg-deb -x "$deb" "$root.tmp"
	n=$((n + 1))
done
cat >"$root.tmp/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# Debian's QEMU, run through its own loader and libraries (scripts/fetch-qemu.sh).
r=$(cd "$(dirname "$0")" && pwd)
exec "$r/usr/lib64/ld-linux-x86-64.so.2" --library-path "$r/usr/lib/x86_64-linux-gnu" \
	${GMEM_PRELOAD:+--preload "$GMEM_PRELOAD"} \
	"$r/usr/bin/qemu-system-x86_64" -L "$r/usr/share/seabios" -L "$r/usr/share/qemu" "$@"
WRAP
chmod +x "$root.tmp/qemu-system-x86_64"
echo "$pkg $have" >"$root.tmp/.version"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "fetch-qemu: $pkg $have and $((n - 1)) dependencies in build/qemu ($(du -sm "$root" | cut -f1) MB)"
