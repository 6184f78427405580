#!/bin/sh
# sdxl_ckpt.sh - prints the path of a random-weight SDXL base checkpoint written by
# tests/make_sdxl_random.py (SGM key names of sd_xl_base_1.0.safetensors), generating it once:
#   tests/sdxl_ckpt.sh small   reduced widths, the same key names (317 MB, a few seconds)
#   tests/sdxl_ckpt.sh full    the real shapes (6.9 GB F16; minutes on a busy machine)
# The files live in $MX_SD_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/mixel-tests/sd-ckpt, as
# tests/sd_ckpt.sh); parallel tests wait on one lock. Exit 77 (Automake's skip) with the reason
# on stderr when python3 or numpy is missing, or (full) when the disk has less than 8 GB free;
# exit 1 when the generated file's sha256 is not the one recorded here (numpy 1.24.2).
set -eu
kind=${1:-small}
tool=$(dirname "$0")/make_sdxl_random.py
dir=${MX_SD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mixel-tests/sd-ckpt}
case $kind in
small) file=$dir/sdxl_small_s1.safetensors; flag=--small
       SHA=81a933f6c9f75c1a7218e6bcad5540a98dfac68a2393b7faca653687edef56d9 ;;
full) file=$dir/sdxl_random_s1.safetensors; flag=
      SHA=121bec163bf846df322d7af804739463394fb3381dd21a86c456c0d60b6fc618 ;;
*) echo "usage: sdxl_ckpt.sh small|full" >&2; exit 2 ;;
esac
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "SKIP: python3 with numpy (Debian python3-numpy) is needed to make the SDXL checkpoint" >&2
    exit 77
fi
mkdir -p "$dir"
if [ "$kind" = full ] && [ ! -f "$file.ok" ]; then
    free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
    if [ "${free_kb:-0}" -lt 8000000 ]; then
        echo "SKIP: less than 8 GB free in $dir for the full-size SDXL checkpoint" >&2
        exit 77
    fi
fi
(
    flock 9
    if [ ! -f "$file.ok" ]; then
        if [ ! -f "$file" ]; then
            # shellcheck disable=SC2086
            /usr/bin/python3 "$tool" --seed 1 $flag --out "$file.gen" >&2
            mv "$file.gen" "$file"
        fi
        sum=$(sha256sum "$file" | cut -d' ' -f1)
        if [ "$sum" != "$SHA" ]; then
            echo "sdxl_ckpt.sh: $file has sha256 $sum, expected $SHA" >&2
            rm -f "$file"
            exit 1
        fi
        touch "$file.ok"
    fi
) 9>"$dir/.lock"
echo "$file"
