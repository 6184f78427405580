#!/bin/sh
# sd_lora.sh - LoRA on `mixel image` end to end, on the random SD 1.5 checkpoint (tests/sd_ckpt.sh)
# with small LoRA files tests/sd_lora_tool writes (kohya names: UNet attention, feed-forward,
# a LoCon 3x3 conv, a 1x1 proj_in, a time-embedding projection, two text-encoder layers):
#   - --lora FILE:W equals the checkpoint with W + W * alpha/rank * up * down merged offline by
#     the tool (its own name table, double sums), within the SD tolerance (mean <= 0.5, max <= 4)
#     at two weights (0.8 and -0.6), for kohya and diffusers/PEFT names;
#   - the LoRA changes the picture (else the comparison would prove nothing);
#   - weight 0 gives the pixels of no LoRA exactly; <lora:NAME:0.8> found in a ComfyUI
#     models/loras folder beside the checkpoint folder equals --lora FILE:0.8, and the PNG says
#     Lora hashes as A1111 does;
#   (under MX_SANITIZE=1 only weight 0.8 of the kohya file is compared);
#   - the chat's /image path (tests/sd_lora_job) gives the same pixels with --lora, the tag, and
#     after switching LoRAs off and on again on one open engine;
#   - with MX_SD_CLI set, stable-diffusion.cpp's sd-cli gives the same picture (SD tolerance);
#   - SDXL names, a mismatched shape, a tensor that fits no weight, LoHa, and an unknown
#     <lora:NAME> are refused with one line naming the problem.
set -eu
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
bin=${MX_BUILDDIR:-.}/tests
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}" # the CLIP vocabulary
export XDG_CACHE_HOME="$tmp/cache" HOME="$tmp/home"
mkdir -p "$HOME"
. "$MX_SRCDIR/tests/sd_lora_lib.sh"

"$bin/sd_lora_tool" make "$ckpt" "$tmp/k.safetensors"
"$bin/sd_lora_tool" make "$ckpt" "$tmp/p.safetensors" peft
p='a red lighthouse by the sea'
gen "$tmp/none.png" "$ckpt" -p "$p"
gen "$tmp/k08.png" "$ckpt" -p "$p" --lora "$tmp/k.safetensors:0.8"
far "$tmp/none.png" "$tmp/k08.png" "no LoRA vs kohya 0.8"
gen "$tmp/k0.png" "$ckpt" -p "$p" --lora "$tmp/k.safetensors:0"
cmp -s "$tmp/none.png" "$tmp/k0.png" ||
    close "$tmp/none.png" "$tmp/k0.png" 0 0 "weight 0 vs no LoRA (must be exact)"
# under the sanitizers (MX_SANITIZE=1, several times slower) one weight and no PEFT copy
weights="0.8 -0.6"
[ "${MX_SANITIZE:-}" != 1 ] || weights=0.8
for w in $weights; do
    "$bin/sd_lora_tool" merge "$ckpt" "$tmp/k.safetensors" "$w" "$tmp/merged.safetensors"
    gen "$tmp/m.png" "$tmp/merged.safetensors" -p "$p"
    gen "$tmp/l.png" "$ckpt" -p "$p" --lora "$tmp/k.safetensors:$w"
    close "$tmp/m.png" "$tmp/l.png" 0.5 4 "kohya --lora $w vs merged offline"
    if [ "$w" = 0.8 ] && [ "${MX_SANITIZE:-}" != 1 ]; then
        gen "$tmp/pl.png" "$ckpt" -p "$p" --lora "$tmp/p.safetensors:$w"
        "$bin/sd_lora_tool" merge "$ckpt" "$tmp/p.safetensors" "$w" "$tmp/merged.safetensors"
        gen "$tmp/pm.png" "$tmp/merged.safetensors" -p "$p"
        close "$tmp/pm.png" "$tmp/pl.png" 0.5 4 "PEFT --lora $w vs merged offline"
    fi
done
rm -f "$tmp/merged.safetensors"

# <lora:NAME:W> from ComfyUI's models/loras beside models/checkpoints
mkdir -p "$tmp/ComfyUI/models/checkpoints" "$tmp/ComfyUI/models/loras"
ln -s "$ckpt" "$tmp/ComfyUI/models/checkpoints/sd15.safetensors"
cp "$tmp/k.safetensors" "$tmp/ComfyUI/models/loras/style.safetensors"
gen "$tmp/tag.png" "$tmp/ComfyUI/models/checkpoints/sd15.safetensors" -p "$p <lora:style:0.8>"
close "$tmp/tag.png" "$tmp/k08.png" 0 0 "<lora:style:0.8> vs --lora FILE:0.8"
hash=$(sha256sum "$tmp/k.safetensors" | cut -c1-12)
grep -aqF "Lora hashes: \"style: $hash\"" "$tmp/tag.png" ||
    fail "the PNG lacks Lora hashes: \"style: $hash\""
grep -aqF "<lora:style:0.8>" "$tmp/tag.png" || fail "the PNG's prompt lost the <lora:> tag"

# the chat's /image (app/image_job.c on a worker, one engine for all four jobs): --lora, none,
# <lora:style:0.8>, --lora again (undone and redone without reopening) give the CLI's pixels
"$bin/sd_lora_job" "$tmp/ComfyUI/models/checkpoints/sd15.safetensors" "$tmp/k.safetensors" \
    "$tmp/chat" > "$tmp/chat.out" || fail "sd_lora_job"
if [ "$(wc -l < "$tmp/chat.out")" -eq 4 ]; then
    set -- $(cat "$tmp/chat.out")
    close "$1" "$tmp/k08.png" 0 0 "/image --lora FILE:0.8 vs mixel image --lora FILE:0.8"
    close "$2" "$tmp/none.png" 0 0 "/image without LoRA after one vs mixel image without"
    close "$3" "$tmp/k08.png" 0 0 "/image <lora:style:0.8> vs mixel image --lora FILE:0.8"
    close "$4" "$tmp/k08.png" 0 0 "/image --lora FILE:0.8 redone vs mixel image --lora"
fi

# stable-diffusion.cpp with the same LoRA through <lora:k:0.8> and --lora-model-dir (about a
# minute on 2 cores: only when MX_SD_CLI names its sd-cli, see ../shared/tools/peer-sd)
if [ -n "${MX_SD_CLI:-}" ] && [ -x "$MX_SD_CLI" ]; then
    mkdir -p "$tmp/peer"
    cp "$tmp/k.safetensors" "$tmp/peer/k.safetensors"
    "$MX_SD_CLI" -m "$ckpt" -p "$p<lora:k:0.8>" --lora-model-dir "$tmp/peer" -W 64 -H 64 \
        --steps 2 --cfg-scale 5 --sampling-method euler --seed 3 --rng cuda -t 2 \
        -o "$tmp/peer.png" > "$tmp/peer.log" 2>&1 || fail "sd-cli: $(tail -3 "$tmp/peer.log")"
    gen "$tmp/mxe.png" "$ckpt" -p "$p" --sampler euler --lora "$tmp/k.safetensors:0.8"
    close "$tmp/peer.png" "$tmp/mxe.png" 0.5 4 "stable-diffusion.cpp <lora:k:0.8> vs mixel"
else
    echo "note: MX_SD_CLI (stable-diffusion.cpp's sd-cli) unset: no peer comparison"
fi

# refusals
for kind in sdxl shape unknown loha; do
    "$bin/sd_lora_tool" make "$ckpt" "$tmp/$kind.safetensors" "$kind"
done
expect_err "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight is an SDXL" \
    "$ckpt" -p "$p" --lora "$tmp/sdxl.safetensors"
ff=lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_ff_net_2
expect_err "$ff.lora_up.weight has shape [640, 4], expected [1280, 4]" "$ckpt" \
    -p "$p" --lora "$tmp/shape.safetensors"
expect_err "attn9_to_q.lora_up.weight matches no weight" "$ckpt" -p "$p" \
    --lora "$tmp/unknown.safetensors"
expect_err "hada_w1_a: LyCORIS LoHa" "$ckpt" -p "$p" --lora "$tmp/loha.safetensors"
expect_err "no nothere.safetensors in the LoRA folders" "$ckpt" -p "$p <lora:nothere:1>"
expect_err "bad weight \"x\"" "$ckpt" -p "$p <lora:style:x>"
expect_err "No such file" "$ckpt" -p "$p" --lora "$tmp/missing.safetensors:0.5"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all LoRA checks passed"
