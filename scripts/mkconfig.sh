#!/usr/bin/env bash
# Generate OBJ/.config as tinyconfig + FRAGMENT, then check that every option of
# the fragment is honoured by the final .config (olddefconfig silently drops
# options whose dependencies are missing: that must fail the build).
# Usage: mkconfig.sh SRC OBJ FRAGMENT
set -euo pipefail
mkdir -p "$2"
src=$(realpath "$1") obj=$(realpath "$2") frag=$(realpath "$3")

make -s -C "$src" O="$obj" tinyconfig >/dev/null
KCONFIG_CONFIG="$obj/.config" "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" \
	"$obj/.config" "$frag" >/dev/null
make -s -C "$src" O="$obj" olddefconfig >/dev/null

bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF -- "$line" "$obj/.config" || {
			echo "config: $line requested, .config has: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo 'nothing')" >&2
			bad=1
		}
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }; sym=${sym%% *}
		if grep -q "^$sym=" "$obj/.config"; then
			echo "config: $sym requested off, .config has: $(grep "^$sym=" "$obj/.config")" >&2
			bad=1
		fi
		;;
	esac
done <"$frag"
if [ $bad -ne 0 ]; then
	echo "config: options of $frag were dropped (missing dependencies?)" >&2
	rm -f "$obj/.config"
	exit 1
fi
