#!/bin/sh
# sd_preview_taesd.sh - mixel's TAESD decoder (core/diffusion/taesd.c) against an independent
# numpy restatement (tests/taesd_ref.py) on random-weight decoders written with the exact key
# names of both published layouts (madebyollin's taesd_decoder.safetensors, F32; the diffusers
# AutoencoderTiny, F16) and a non-square latent: relative RMS <= 1e-4 (f32 on both sides; the
# SD references allow 1e-2 for a VAE decoder's output).
set -eu
: "${MX_SRCDIR:?}"
tool=${MX_BUILDDIR:-.}/tests/sd_preview_tool
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "SKIP: the numpy reference needs /usr/bin/python3 with numpy (Debian python3-numpy)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
for case in "raw f32 11 5 3" "diffusers f16 12 4 7"; do
    set -- $case
    "$tool" taesd-write "$tmp/t.safetensors" "$1" "$2" "$3"
    "$tool" taesd-decode "$tmp/t.safetensors" "$4" "$5" "$3" "$tmp/z.f32" "$tmp/o.f32"
    if /usr/bin/python3 "$MX_SRCDIR/tests/taesd_ref.py" "$tmp/t.safetensors" "$4" "$5" \
        "$tmp/z.f32" "$tmp/o.f32"; then
        echo "ok: $1 $2 ${4}x$5 latent"
    else
        echo "FAIL: $1 $2 ${4}x$5 latent differs from the numpy reference"
        fails=$((fails + 1))
    fi
done
[ "$fails" -eq 0 ]
