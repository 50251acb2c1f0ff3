#!/usr/bin/env bash
# Install the Debian packages the build, the test VM and the benchmarks need.
# Idempotent: packages already installed are not touched, and apt is only run
# when something is missing.
set -euo pipefail

# Extra packages (e.g. gnuplot-nox for make bench's plots) come as arguments.
pkgs=(
	build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils
	qemu-system-x86 busybox-static ccache uuid-dev rsync python3 "$@"
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
