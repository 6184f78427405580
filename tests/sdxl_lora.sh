#!/bin/sh
# sdxl_lora.sh - kohya SDXL LoRA on `mixel image`, on the small random SDXL checkpoint
# (tests/sdxl_ckpt.sh small), with a LoRA tests/sd_lora_tool writes (`make CKPT OUT xl`: UNet
# attention in input_blocks.4, middle_block and output_blocks.1 under SGM names, a feed-forward
# of output_blocks.2 under its diffusers name, a CLIP-L layer as lora_te1_, OpenCLIP bigG's
# k_proj (the middle third of the file's fused in_proj_weight) and an MLP as lora_te2_):
#   - --lora FILE:W equals the checkpoint with W * alpha/rank * up * down merged offline into
#     the file's own (SGM, fused in_proj) tensors by the tool, within the SD tolerance (mean
#     <= 0.5, max <= 4), at W = 0.8 and -0.6, with the LCM settings the help gives
#     (--sampler lcm --steps 4 --cfg 1.5), and for the same LoRA under diffusers/PEFT names
#     (unet.*, text_encoder.*, text_encoder_2.*; `xl-peft`) at 0.8 (under MX_SANITIZE=1 only
#     the kohya file at 0.8);
#   - the LoRA changes the picture (else the comparison would prove nothing);
#   - weight 0 gives the pixels of no LoRA exactly;
#   - an SD 1.x name (lora_te_) on the SDXL checkpoint and this SDXL LoRA on the SD 1.5
#     checkpoint (tests/sd_ckpt.sh) are refused with one line naming the tensor and families.
set -eu
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sdxl_ckpt.sh" small) || exit $?
bin=${MX_BUILDDIR:-.}/tests
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}" # the CLIP vocabulary
export XDG_CACHE_HOME="$tmp/cache" HOME="$tmp/home"
mkdir -p "$HOME"
. "$MX_SRCDIR/tests/sd_lora_lib.sh"

"$bin/sd_lora_tool" make "$ckpt" "$tmp/xl.safetensors" xl
p='a red lighthouse by the sea'
gen "$tmp/none.png" "$ckpt" -p "$p"
gen "$tmp/l08.png" "$ckpt" -p "$p" --lora "$tmp/xl.safetensors:0.8"
far "$tmp/none.png" "$tmp/l08.png" "no LoRA vs SDXL LoRA 0.8"
gen "$tmp/l0.png" "$ckpt" -p "$p" --lora "$tmp/xl.safetensors:0"
close "$tmp/none.png" "$tmp/l0.png" 0 0 "weight 0 vs no LoRA (must be exact)"
"$bin/sd_lora_tool" make "$ckpt" "$tmp/peft.safetensors" xl-peft
# under the sanitizers (MX_SANITIZE=1, several times slower) one weight of the kohya file
cases="xl:0.8 xl:-0.6 xl:lcm peft:0.8"
[ "${MX_SANITIZE:-}" != 1 ] || cases=xl:0.8
for c in $cases; do
    f=${c%%:*} w=${c#*:}
    set -- -p "$p"
    lw=$w
    [ "$w" != lcm ] || { set -- -p "$p" --sampler lcm --steps 4 --cfg 1.5; lw=1; }
    "$bin/sd_lora_tool" merge "$ckpt" "$tmp/$f.safetensors" "$lw" "$tmp/merged.safetensors"
    gen "$tmp/m.png" "$tmp/merged.safetensors" "$@"
    gen "$tmp/l.png" "$ckpt" "$@" --lora "$tmp/$f.safetensors:$lw"
    close "$tmp/m.png" "$tmp/l.png" 0.5 4 "SDXL $f --lora $w vs merged offline"
done
rm -f "$tmp/merged.safetensors"

# the families: SD 1.x's one text encoder on SDXL, and SDXL's LoRA on SD 1.5
"$bin/sd_lora_tool" make "$ckpt" "$tmp/sd1.safetensors" xl-sd1
expect_err "tensor lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight is an SD \
1.x/2.x name (one text encoder): the LoRA was made for SD 1.x/2.x, the checkpoint is SDXL" \
    "$ckpt" -p "$p" --lora "$tmp/sd1.safetensors"
if sd1=$("$MX_SRCDIR/tests/sd_ckpt.sh"); then
    expect_err "tensor lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight is \
an SDXL name (two text encoders): the LoRA was made for SDXL, the checkpoint is SD 1.x" \
        "$sd1" -p "$p" --lora "$tmp/xl.safetensors:0.8"
else
    fail "tests/sd_ckpt.sh gave no SD 1.5 checkpoint"
fi

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all SDXL LoRA checks passed"
