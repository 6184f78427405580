#!/bin/sh
# sd_ckpt.sh - prints the path of the random-weight SD 1.5 checkpoint that ../shared/refs/sd was
# made with, generating it once (about 20 s, 2.1 GB) with ../shared/tools/make_sd15_random.py.
#   tests/sd_ckpt.sh            the single-file (CompVis/LDM names) .safetensors
#   tests/sd_ckpt.sh diffusers  the same weights as a diffusers folder
# The files live in $MX_SD_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/mixel-tests/sd-ckpt, so
# the normal and the sanitizer builds, and later clones, share one copy); parallel tests wait
# on one lock. Exit 77 (Automake's skip) with the reason on stderr when ../shared, python3
# or numpy is missing; exit 1 when the generated file's sha256 is not the documented one.
set -eu
kind=${1:-ldm}
shared=${MX_SHARED:-$(dirname "$0")/../../shared}
dir=${MX_SD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mixel-tests/sd-ckpt}
tool=$shared/tools/make_sd15_random.py
SHA=fe5778e6666fd3bbdb93b11484fc1f84621b2a855c082737848486252f173942
if [ ! -f "$tool" ]; then
    echo "SKIP: $tool not found (../shared absent): no SD 1.5 reference checkpoint" >&2
    exit 77
fi
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "SKIP: python3 with numpy (Debian python3-numpy) is needed to make the SD checkpoint" >&2
    exit 77
fi
mkdir -p "$dir"
file=$dir/sd15_random_s1.safetensors
folder=$dir/sd15_diffusers
(
    flock 9
    if [ ! -f "$file.ok" ]; then
        /usr/bin/python3 "$tool" --seed 1 --out "$file.part" >&2
        sum=$(sha256sum "$file.part" | cut -d' ' -f1)
        if [ "$sum" != "$SHA" ]; then
            echo "sd_ckpt.sh: generated checkpoint has sha256 $sum, expected $SHA" >&2
            exit 1
        fi
        mv "$file.part" "$file" && touch "$file.ok"
    fi
    if [ "$kind" = diffusers ] && [ ! -f "$folder.ok" ]; then
        rm -rf "$folder.part"
        /usr/bin/python3 "$tool" --seed 1 --format diffusers --out "$folder.part" >&2
        rm -rf "$folder" && mv "$folder.part" "$folder" && touch "$folder.ok"
    fi
) 9>"$dir/.lock"
if [ "$kind" = diffusers ]; then echo "$folder"; else echo "$file"; fi
