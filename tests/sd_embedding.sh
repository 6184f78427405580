#!/bin/sh
# sd_embedding.sh - textual-inversion embeddings on `mixel image` end to end, on the random SD 1.5
# checkpoint (tests/sd_ckpt.sh), with an embedding test_sd_embedding writes from the checkpoint's
# own token rows of "sea" and "red" (so the oracle is exact):
#   - "a sdx_style lighthouse" with --embeddings DIR gives the pixels of "a sea red lighthouse";
#     so do ComfyUI's embedding:sdx_style and the file found in ComfyUI's models/embeddings
#     beside models/checkpoints without --embeddings (weights, BREAK: test_sd_embedding);
#   - the embedding changes the picture, and the PNG says TI hashes as A1111 does;
#   - stable-diffusion.cpp's picture with --embd-dir (tests/golden/sd_embedding, remade when
#     MX_SD_CLI names its sd-cli) within the SD tolerance (mean <= 0.5, max <= 4);
#   - embedding:NAME without a file, a pickle and --embeddings on a missing folder are refused
#     with one line naming the problem (a width mismatch: test_sd_embedding).
set -eu
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow SD end-to-end test, run in the normal pass only"; exit 77; }
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
bin=${MX_BUILDDIR:-.}/tests
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}" # the CLIP vocabulary
export XDG_CACHE_HOME="$tmp/cache" HOME="$tmp/home"
mkdir -p "$HOME" "$tmp/emb"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
gen() { # gen OUT CKPT ARGS...: a 64x64 2-step image (euler: stable-diffusion.cpp's euler_a draws
    # other noise)
    out=$1 model=$2
    shift 2
    "$MIXEL" image -q -t 2 -d "$model" -W 64 -H 64 --steps 2 --cfg 5 --seed 3 --sampler euler \
        -o "$out" "$@" \
        > /dev/null
}
close() { # close A B MAXMEAN MAXMAX WHAT
    d=$("$bin/sd_png_diff" "$1" "$2") || { fail "$5: $d"; return; }
    echo "$5: $d"
    echo "$d" | awk -v m="$3" -v x="$4" '{ exit !($2 <= m && $4 <= x) }' || fail "$5: $d"
}
expect_err() { # expect_err STATUS TEXT ARGS...: mixel image exits STATUS with TEXT in one line
    st=$1 text=$2
    shift 2
    set +e
    gen "$tmp/x.png" "$ckpt" "$@" 2> "$tmp/err"
    got=$?
    set -e
    if [ "$got" -ne "$st" ] || ! grep -qF -- "$text" "$tmp/err" || [ "$(wc -l < "$tmp/err")" -ne 1 ]
    then
        fail "$*: exit $got, wanted $st and '$text': $(cat "$tmp/err")"
    else
        echo "ok: $(cat "$tmp/err")"
    fi
}

"$bin/test_sd_embedding" make "$ckpt" "$tmp/emb/sdx_style.safetensors" sea red
gen "$tmp/emb.png" "$ckpt" -p "a sdx_style lighthouse" --embd-dir "$tmp/emb"
gen "$tmp/rows.png" "$ckpt" -p "a sea red lighthouse"
close "$tmp/emb.png" "$tmp/rows.png" 0 0 "sdx_style vs the tokens whose rows it holds"
gen "$tmp/plain.png" "$ckpt" -p "a lighthouse"
d=$("$bin/sd_png_diff" "$tmp/emb.png" "$tmp/plain.png")
echo "$d" | awk '{ exit !($2 > 2) }' || fail "the embedding changed nothing ($d)"
hash=$(sha256sum "$tmp/emb/sdx_style.safetensors" | cut -c1-12)
grep -aqF "TI hashes: \"sdx_style: $hash\"" "$tmp/emb.png" ||
    fail "the PNG lacks TI hashes: \"sdx_style: $hash\""
# ComfyUI: models/embeddings beside models/checkpoints, embedding:NAME
mkdir -p "$tmp/ComfyUI/models/checkpoints" "$tmp/ComfyUI/models/embeddings"
ln -s "$ckpt" "$tmp/ComfyUI/models/checkpoints/sd15.safetensors"
cp "$tmp/emb/sdx_style.safetensors" "$tmp/ComfyUI/models/embeddings/"
gen "$tmp/comfy.png" "$tmp/ComfyUI/models/checkpoints/sd15.safetensors" \
    -p "a embedding:sdx_style lighthouse"
close "$tmp/comfy.png" "$tmp/rows.png" 0 0 "embedding:sdx_style from models/embeddings"

# stable-diffusion.cpp
mxe=$tmp/emb.png
close "$MX_SRCDIR/tests/golden/sd_embedding/peer-sdx_style.png" "$mxe" 0.5 4 \
    "stable-diffusion.cpp --embd-dir (committed) vs mixel"
if [ -n "${MX_SD_CLI:-}" ] && [ -x "$MX_SD_CLI" ]; then
    "$MX_SD_CLI" -m "$ckpt" -p "a sdx_style lighthouse" --embd-dir "$tmp/emb" -W 64 -H 64 \
        --steps 2 --cfg-scale 5 --sampling-method euler --seed 3 --rng cuda -t 2 \
        -o "$tmp/peer.png" > "$tmp/peer.log" 2>&1 || fail "sd-cli: $(tail -3 "$tmp/peer.log")"
    close "$tmp/peer.png" "$mxe" 0.5 4 "stable-diffusion.cpp --embd-dir (now) vs mixel"
else
    echo "note: MX_SD_CLI (stable-diffusion.cpp's sd-cli) unset: compared with the committed picture"
fi

# refusals
printf '\200\002}q\000.' > "$tmp/emb/pick.pt"
expect_err 1 "embedding:nothere: no nothere.safetensors in the embeddings folders" \
    -p "a embedding:nothere" --embeddings "$tmp/emb"
expect_err 1 "pick.pt: a pickled embedding (.pt/.bin) is not read" -p "a pick" \
    --embeddings "$tmp/emb"
expect_err 1 "--embeddings $tmp/none: not a folder" -p "a" --embeddings "$tmp/none"
[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all embedding checks passed"
