#!/bin/sh
# sdxl_peer.sh - the full-size random SDXL checkpoint (tests/sdxl_ckpt.sh full: every shape of
# sd_xl_base_1.0) loads as SDXL and gives stable-diffusion.cpp's picture: a 64x64, 2-step
# euler image compared pixel by pixel with the committed peer golden
# (tests/golden/sdxl/README.md; mean absolute difference <= 0.5, max <= 4, the bars of
# ../shared/refs/sd/README.md); with MX_SD_CLI (a peer sd-cli) the peer runs again and mixel is
# compared with that too. Skips under the sanitizers (a 7 GB model through ASan; test_sdxl runs
# the same code on the reduced-width checkpoint there).
set -eu
: "${MIXEL:?}" "${MX_SRCDIR:?}"
if [ "${MX_SANITIZE:-}" = 1 ]; then
    echo "SKIP: the 6.9 GB SDXL checkpoint is not run under the sanitizers (test_sdxl covers the code)"
    exit 77
fi
ckpt=$("$MX_SRCDIR/tests/sdxl_ckpt.sh" full) || exit $?
golden=$MX_SRCDIR/tests/golden/sdxl/peer_cat_s42.png
diff_tool=${MX_BUILDDIR:-.}/tests/sd_png_diff
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

kind=$("$MIXEL" inspect "$ckpt" | grep '^  family')
echo "$kind"
case $kind in *"SDXL (cross-attention context 2048)"*) ;; *) echo "FAIL: not loaded as SDXL"; exit 1 ;; esac

# compare A B: prints the stats, fails beyond the bars
compare() {
    stats=$("$diff_tool" "$1" "$2") || { echo "FAIL: cannot compare $1 $2"; return 1; }
    set -- $stats
    verdict=$(awk -v m="$2" -v x="$4" 'BEGIN { print (m <= 0.5 && x <= 4) ? "ok" : "FAIL" }')
    echo "$verdict: $stats"
    [ "$verdict" = ok ]
}

set -- -p "a photo of a cat" -n "blurry" -W 64 -H 64 --steps 2 --cfg 7 --sampler euler \
    --scheduler discrete -s 42 --rng cuda
t0=$(date +%s)
"$MIXEL" image -t 2 -d "$ckpt" "$@" -o "$tmp/mixel.png" 2> "$tmp/err" > /dev/null ||
    { echo "FAIL: mixel image: $(cat "$tmp/err")"; exit 1; }
grep 'total' "$tmp/err" || true
echo "mixel image: $(($(date +%s) - t0)) s"
fail=0
printf 'mixel vs golden: '
compare "$golden" "$tmp/mixel.png" || fail=1
if [ -n "${MX_SD_CLI:-}" ]; then
    "$MX_SD_CLI" -m "$ckpt" -p "a photo of a cat" -n "blurry" -W 64 -H 64 --steps 2 \
        --cfg-scale 7.0 --sampling-method euler --scheduler discrete -s 42 --rng cuda -t 2 \
        -o "$tmp/peer.png" > "$tmp/peer.log" 2>&1 || { echo "FAIL: sd-cli"; tail -5 "$tmp/peer.log"; exit 1; }
    printf 'mixel vs peer now: '
    compare "$tmp/peer.png" "$tmp/mixel.png" || fail=1
fi
exit $fail
