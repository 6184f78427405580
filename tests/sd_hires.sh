#!/bin/sh
# sd_hires.sh - the hires fix of `mixel image` (core/diffusion/hires.c) on the random SD 1.5
# checkpoint: bad settings get one clear line and exit 2; with --denoise 0 and the Lanczos
# upscaler the result is exactly the first pass resized as Pillow's LANCZOS does (the second
# pass starts from the upscaled first pass and, at strength 0, leaves it as it is); a latent
# hires run has the final size and A1111's infotext keys (Size the first pass's, Denoising
# strength, Hires upscale, Hires steps, Hires upscaler).
set -eu
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow SD end-to-end test, run in the normal pass only"; exit 77; }
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
diff_tool=${MX_BUILDDIR:-.}/tests/sd_png_diff
tool=${MX_BUILDDIR:-.}/tests/sd_preview_tool
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

expect_err() { # STATUS TEXT ARGS...
    want=$1 text=$2
    shift 2
    set +e
    "$MIXEL" image -q -d "$ckpt" -p cat -W 64 -H 64 --steps 1 -o "$tmp/x.png" "$@" \
        > "$tmp/out" 2> "$tmp/err"
    got=$?
    set -e
    if [ "$got" -ne "$want" ] || ! grep -qF -- "$text" "$tmp/err" ||
        [ "$(wc -l < "$tmp/err")" -ne 1 ]; then
        fail "image $*: exit $got (want $want), message: $(cat "$tmp/err") (want '$text')"
    else
        echo "ok: $text"
    fi
}
expect_err 2 "--hires-scale: '9' is not a number from 1 to 8" --hires-scale 9
expect_err 2 "--denoise: '1.5' is not a number from 0 to 1" --hires --denoise 1.5
expect_err 2 "unknown upscaler 'ESRGAN'" --hires --hires-upscaler ESRGAN
expect_err 2 "hires size 96x96 (from 64x64): width and height must be multiples of 64" \
    --hires-scale 1.5
init=$tmp/init.png
"$tool" resample "$MX_SRCDIR/tests/data/quadrants.png" 64 64 nearest "$init"
expect_err 2 "the hires fix (--hires-*, --denoise) is for txt2img" --hires-scale 2 \
    --init-img "$init"
[ "$(ls "$tmp" | grep -c '^x.png')" -eq 0 ] || fail "a refused run wrote an image"

# the infotext's last line, from the PNG's tEXt "parameters" chunk
params() {
    /usr/bin/python3 - "$1" <<'PY'
import struct, sys
data, pos = open(sys.argv[1], "rb").read(), 8
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"tEXt" and body.startswith(b"parameters\0"):
        print(body[11:].decode("latin-1").strip().split("\n")[-1])
    if kind == b"IHDR":
        w, h = struct.unpack(">II", body[:8])
    pos += 12 + n
print(f"{w}x{h}")
PY
}

# strength 0, Lanczos: the first pass, resized (Pillow's LANCZOS), nothing else
"$MIXEL" image -q -t 2 -d "$ckpt" -p "a red fox" -W 64 -H 64 --steps 1 --seed 3 \
    -o "$tmp/base.png" > /dev/null
"$MIXEL" image -q -t 2 -d "$ckpt" -p "a red fox" -W 64 -H 64 --steps 1 --seed 3 \
    --hires-scale 2 --denoise 0 --hires-upscaler lanczos -o "$tmp/h0.png" > /dev/null
"$tool" resample "$tmp/base.png" 128 128 lanczos "$tmp/want.png"
stats=$("$diff_tool" "$tmp/h0.png" "$tmp/want.png")
case $stats in
    "mean 0.0000 max 0 "*) echo "ok: --denoise 0 --hires-upscaler lanczos = the first pass resized" ;;
    *) fail "--denoise 0 lanczos is not the upscaled first pass: $stats" ;;
esac
params "$tmp/h0.png" > "$tmp/h0.txt"
grep -q "Size: 64x64, .*Denoising strength: 0, Hires upscale: 2, Hires upscaler: Lanczos" \
    "$tmp/h0.txt" || fail "lanczos infotext: $(cat "$tmp/h0.txt")"

# latent upscale, a second pass of 2 steps at 0.5
"$MIXEL" image -q -t 2 -d "$ckpt" -p "a red fox" -W 64 -H 64 --steps 1 --seed 3 \
    --hires-scale 2 --denoise 0.5 --hires-steps 2 -o "$tmp/h1.png" > /dev/null
params "$tmp/h1.png" > "$tmp/h1.txt"
if grep -q "Size: 64x64, .*Denoising strength: 0.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent, Version" \
    "$tmp/h1.txt" && grep -qx "128x128" "$tmp/h1.txt"; then
    echo "ok: latent hires: $(head -1 "$tmp/h1.txt")"
else
    fail "latent hires: $(cat "$tmp/h1.txt")"
fi
stats=$("$diff_tool" "$tmp/h1.png" "$tmp/h0.png")
case $stats in
    "mean 0.0000 "*) fail "the second pass changed nothing: $stats" ;;
    *) echo "ok: the second pass repainted ($stats against the strength-0 picture)" ;;
esac
[ "$fails" -eq 0 ]
