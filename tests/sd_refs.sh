#!/bin/sh
# sd_refs.sh - every Stable Diffusion reference case of ../shared/refs/sd (stable-diffusion.cpp's
# images on the random SD 1.5 checkpoint) regenerated with `mixel image` from the case's JSON
# parameters, and compared pixel by pixel: mean absolute difference <= 0.5 and max <= 4 (the
# README's bars for an independent f32 implementation). Usage: tests/sd_refs.sh [CASE_DIR]
# (default $MX_SHARED/refs/sd; any folder of sd-*.json cases in that format works). Under the
# sanitizers (MX_SANITIZE=1) one case per task runs: txt2img, img2img, inpaint.
set -eu
: "${MIXEL:?}" "${MX_SRCDIR:?}"
shared=${MX_SHARED:-$MX_SRCDIR/../shared}
dir=${1:-$shared/refs/sd}
if [ ! -d "$dir" ]; then
    echo "SKIP: $dir not found (../shared absent): no SD reference images"
    exit 77
fi
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
diff_tool=${MX_BUILDDIR:-.}/tests/sd_png_diff
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for json in "$dir"/*.json; do
    id=$(basename "$json" .json)
    if [ "${MX_SANITIZE:-}" = 1 ] && [ -z "${1:-}" ]; then
        case $id in sd-s01 | sd-s08 | sd-s09) ;; *) continue ;; esac
    fi
    # the case's parameters as one argument per line (prompts may hold spaces and commas)
    /usr/bin/python3 - "$json" "$dir" > "$tmp/args" <<'PY'
import json, sys, os
c = json.load(open(sys.argv[1])); d = sys.argv[2]
a = ["-p", c["prompt"], "-n", c["negative_prompt"], "-W", str(c["width"]), "-H", str(c["height"]),
     "--steps", str(c["steps"]), "--cfg", repr(float(c["cfg_scale"])), "--sampler", c["sampler"],
     "--scheduler", c["scheduler"], "--seed", str(c["seed"]), "--rng", c["rng"],
     "--clip-skip", str(c.get("clip_skip") or 1)]
if c.get("eta") is not None: a += ["--eta", repr(float(c["eta"]))]
if c.get("init_image"): a += ["--init-img", os.path.join(d, c["init_image"]), "--strength", repr(float(c["strength"]))]
if c.get("mask_image"): a += ["--mask", os.path.join(d, c["mask_image"])]
for x in a:
    assert "\n" not in x
    print(x)
PY
    set --
    while IFS= read -r line; do set -- "$@" "$line"; done < "$tmp/args"
    if ! "$MIXEL" image -q -t 2 -d "$ckpt" "$@" -o "$tmp/$id.png" > /dev/null 2> "$tmp/$id.err"; then
        echo "FAIL $id: mixel image failed: $(cat "$tmp/$id.err")"
        fail=1
        continue
    fi
    stats=$("$diff_tool" "$dir/$id.png" "$tmp/$id.png") || { echo "FAIL $id: cannot compare"; fail=1; continue; }
    set -- $stats
    verdict=$(awk -v m="$2" -v x="$4" 'BEGIN { print (m <= 0.5 && x <= 4) ? "ok" : "FAIL" }')
    echo "$verdict $id: $stats"
    [ "$verdict" = ok ] || fail=1
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "FAIL: no cases in $dir"; exit 1; }
exit $fail
