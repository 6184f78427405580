#!/bin/sh
# sd_inspect.sh - `mixel inspect` on Stable Diffusion checkpoints: what the image engine's loader
# makes of them (family, prediction and how it was found, inpainting, source format, parameters
# per component, weight types, schedule source), in text and JSON, and a refused checkpoint's
# one-line reason. Small files are written here with python3; the SD 1.5 reference checkpoint
# (tests/sd_ckpt.sh) is used when ../shared has it. A part that cannot run makes the test a SKIP.
set -u
MIXEL=${MIXEL:-./mixel}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: python3 is needed to write the test checkpoints"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mx_sd_inspect.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
skipped=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# mk OUT META KIND: a tiny F16 checkpoint (zeros). KIND: sd2v (SD 2.x UNet, OpenCLIP text
# encoder, inpainting, metadata META), vae16 (an SD 1.x UNet with a 16-channel VAE)
mk() {
    "$PY" - "$@" <<'PYEOF'
import json, struct, sys
out, meta, kind = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = 1024 if kind == "sd2v" else 768
t = {"model.diffusion_model.input_blocks.0.0.weight": [8, 9 if kind == "sd2v" else 4, 3, 3],
     "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [8, ctx]}
if kind == "sd2v":
    t["cond_stage_model.model.token_embedding.weight"] = [10, ctx]
    t["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = [3 * 32, 32]
    t["first_stage_model.decoder.conv_in.weight"] = [8, 4, 3, 3]
    t["first_stage_model.decoder.conv_out.weight"] = [3, 8, 3, 3]
else:
    t["first_stage_model.decoder.conv_in.weight"] = [8, 16, 3, 3]
    t["first_stage_model.decoder.conv_out.weight"] = [3, 8, 3, 3]
hdr, off = {}, 0
for k, s in t.items():
    n = 2
    for d in s:
        n *= d
    hdr[k] = {"dtype": "F16", "shape": s, "data_offsets": [off, off + n]}
    off += n
if meta:
    k, v = meta.split("=", 1)
    hdr["__metadata__"] = {k: v}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + bytes(off))
PYEOF
}

mk "$tmp/sd2v.safetensors" modelspec.prediction_type=v sd2v
"$MIXEL" inspect "$tmp/sd2v.safetensors" >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 0 ] && ok "sd2 inspect exit 0" || bad "sd2 inspect exit $rc: $(cat "$tmp/out")"
grep -q '^  family        SD 2.x (cross-attention context 1024)$' "$tmp/out" && ok "family" ||
    bad "family: $(cat "$tmp/out")"
grep -q '^  prediction    v (detected: metadata modelspec.prediction_type)$' "$tmp/out" &&
    ok "prediction detected" || bad "prediction line"
grep -q '^  inpainting    yes (UNet input 9 channels)$' "$tmp/out" && ok "inpainting" ||
    bad "inpainting line"
grep -q '^  source        safetensors (LDM names)$' "$tmp/out" && ok "source" || bad "source line"
"$MIXEL" inspect --json "$tmp/sd2v.safetensors" >"$tmp/j" 2>&1 || bad "json exit"
"$PY" - "$tmp/j" <<'PYEOF' && ok "json fields" || bad "json fields: $(cat "$tmp/j")"
import json, sys
sd = json.load(open(sys.argv[1]))["stable_diffusion"]
assert sd["family"] == "SD 2.x" and sd["prediction"] == "v" and sd["prediction_detected"], sd
assert sd["inpaint"] and sd["unet_in_channels"] == 9 and sd["source"] == "safetensors", sd
p = sd["parameters"]
assert p["unet"] == 8 * 9 * 9 + 8 * 1024 and p["text_encoder"] == 10 * 1024 + 3 * 32 * 32, p
assert p["vae"] == 8 * 4 * 9 + 3 * 8 * 9 and p["total"] == p["unet"] + p["vae"] + p["text_encoder"]
assert sd["weight_types"]["unet"] == {"f16": 2}, sd
# the fused in_proj is three q/k/v views: 2 UNet + 2 VAE + token_embedding + 3
assert sd["tensors"] == 8, sd
assert sd["schedule_source"].startswith("default"), sd
PYEOF

mk "$tmp/vae16.safetensors" "" vae16
"$MIXEL" inspect "$tmp/vae16.safetensors" >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q 'not usable: .*vae16.safetensors: the VAE decodes 16 latent channels' \
    "$tmp/out" && ok "refused checkpoint explained" || bad "vae16 ($rc): $(cat "$tmp/out")"
"$MIXEL" inspect --json "$tmp/vae16.safetensors" | "$PY" -c '
import json, sys
assert "16 latent channels" in json.load(sys.stdin)["stable_diffusion"]["error"]' &&
    ok "refusal in json" || bad "refusal in json"

# the SD 1.5 reference checkpoint: single file and diffusers folder agree
src=${MX_SRCDIR:-$(dirname "$0")/..}
if file=$("$src/tests/sd_ckpt.sh" 2>/dev/null) &&
    dir=$("$src/tests/sd_ckpt.sh" diffusers 2>/dev/null); then
    "$MIXEL" inspect --json "$file" >"$tmp/a" && "$MIXEL" inspect --json "$dir" >"$tmp/b" ||
        bad "sd15 inspect"
    "$PY" - "$tmp/a" "$tmp/b" <<'PYEOF' && ok "sd15 file and folder" || bad "sd15 file vs folder"
import json, sys
a = json.load(open(sys.argv[1]))["stable_diffusion"]
b = json.load(open(sys.argv[2]))["stable_diffusion"]
assert a["parameters"] == b["parameters"], (a, b)
assert a["parameters"]["total"] == 1066235307 and a["parameters"]["unet"] == 859520964, a
assert a["weight_types"] == b["weight_types"] == {"unet": {"f16": 686}, "vae": {"f16": 248},
                                                  "text_encoder": {"f16": 196}}, a
assert a["source"] == "safetensors" and b["source"] == "diffusers"
assert not a["prediction_detected"] and b["prediction_detected"]
assert a["schedule_source"] == "alphas_cumprod in the file"
assert b["schedule_source"] == "scheduler_config.json (scaled_linear)"
PYEOF
else
    echo "SKIP: no SD 1.5 reference checkpoint (tests/sd_ckpt.sh)"; skipped=1
fi
[ $fail -eq 0 ] || exit 1
[ $skipped -eq 0 ] || exit 77
exit 0
