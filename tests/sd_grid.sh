#!/bin/sh
# sd_grid.sh - A1111's batch semantics and contact sheet in `mixel image`: --batch-count 3 writes
# three images with seeds S, S+1, S+2 and out_grid.png, a 2x2 grid (A1111: rows round(sqrt(3)) =
# 2, cols 2) whose tiles are those PNGs pixel for pixel, the fourth cell black, with the first
# image's parameters; --no-grid leaves it out; --batch-size 2 gives the same seeds' pictures.
# The chat's /image (app/image_job.h, through tests/sd_preview_tool job) with --batch-count 2 and
# the hires fix: the result is the 2x1 grid of two 128x128 hires images carrying the hires keys.
set -eu
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow SD end-to-end test, run in the normal pass only"; exit 77; }
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
tool=${MX_BUILDDIR:-.}/tests/sd_preview_tool
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
text() { # the parameters chunk's last line
    /usr/bin/python3 -c '
import struct, sys
data, pos = open(sys.argv[1], "rb").read(), 8
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"tEXt" and body.startswith(b"parameters\0"):
        print(body[11:].decode("latin-1").strip().split("\n")[-1])
    pos += 12 + n' "$1"
}

"$MIXEL" image -q -t 2 -d "$ckpt" -p "a fox" -W 64 -H 64 --steps 1 --seed 20 --batch-count 3 \
    -o "$tmp/b.png" > "$tmp/out"
printf '%s\n' "$tmp/b.png" "$tmp/b_2.png" "$tmp/b_3.png" "$tmp/b_grid.png" > "$tmp/want"
cmp -s "$tmp/out" "$tmp/want" || fail "--batch-count 3 printed: $(cat "$tmp/out")"
if "$tool" tiles "$tmp/b_grid.png" 2 2 "$tmp/b.png" "$tmp/b_2.png" "$tmp/b_3.png"; then
    echo "ok: the grid's tiles are the images"
else
    fail "grid tiles"
fi
for i in 1 2 3; do
    f=$tmp/b.png
    [ $i -eq 1 ] || f=$tmp/b_$i.png
    text "$f" | grep -q "Seed: $((19 + i))," || fail "image $i: not seed $((19 + i)): $(text "$f")"
done
[ "$(text "$tmp/b_grid.png")" = "$(text "$tmp/b.png")" ] ||
    fail "the grid's parameters are not the first image's: $(text "$tmp/b_grid.png")"
# --batch-size 2 --no-grid: two images (A1111's batch_size), no sheet
"$MIXEL" image -q -t 2 -d "$ckpt" -p "a fox" -W 64 -H 64 --steps 1 --seed 21 --batch-size 2 \
    --no-grid -o "$tmp/c.png" > "$tmp/out"
printf '%s\n' "$tmp/c.png" "$tmp/c_2.png" > "$tmp/want"
cmp -s "$tmp/out" "$tmp/want" || fail "--batch-size 2 --no-grid printed: $(cat "$tmp/out")"
# the same seed gives the same picture in a batch as alone
cmp -s "$tmp/c.png" "$tmp/b_2.png" || fail "seed 21 differs between the two batches"
# /image: a batch of two with the hires fix (nearest, strength 0: cheap); the grid is the result
mkdir "$tmp/chat"
"$tool" job "$ckpt" "$tmp/chat" "a fox -W 64 -H 64 --steps 1 --seed 30 --batch-count 2 \
--hires-scale 2 --denoise 0 --hires-upscaler nearest" > "$tmp/job" || fail "/image job failed"
grid=$(sed -n 1p "$tmp/job")
[ "$(sed -n 2,3p "$tmp/job" | tr '\n' ' ')" = "256x128 2 " ] ||
    fail "/image batch result: $(cat "$tmp/job")"
grep -q "Seed: 30, Size: 64x64, .*Denoising strength: 0, Hires upscale: 2, Hires upscaler: Nearest" \
    "$tmp/job" || fail "/image batch infotext: $(cat "$tmp/job")"
set -- $(ls "$tmp/chat"/*-30.png "$tmp/chat"/*-31.png)
if [ $# -eq 2 ] && "$tool" tiles "$grid" 1 2 "$1" "$2"; then
    echo "ok: /image batch grid"
else
    fail "/image batch: images $* / grid $grid"
fi
[ "$fails" -eq 0 ] && echo "ok: batch count, batch size, grid"
