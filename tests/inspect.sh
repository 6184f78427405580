#!/bin/sh
# inspect.sh - `mixel inspect`: every model in ../shared/models is described (text and JSON), the
# parameter counts agree with an independent reader (../shared/tools/gguf_writer.py), safetensors
# files and diffusers folders made here are recognised, and bad files fail with exit 1 and the
# reader's message. Needs python3 for the JSON checks and ../shared for the models; a part that
# cannot run is counted and the test ends as a SKIP (exit 77, refused in CI), not a PASS.
set -u
MIXEL=${MIXEL:-./mixel}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mx_inspect.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
skipped=0
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }
# done_: the exit status: 1 after a FAIL, 77 when a part was skipped, else 0
done_() {
    [ $fail -eq 0 ] || exit 1
    [ $skipped -eq 0 ] || { echo "SKIP: $skipped part(s) above could not run"; exit 77; }
    exit 0
}
[ -n "$PY" ] || skip "the JSON and writer checks need python3"

# usage errors
"$MIXEL" inspect >/dev/null 2>&1; [ $? -eq 2 ] && ok "no file -> 2" || bad "no file exit"
"$MIXEL" inspect --bogus x >/dev/null 2>&1; [ $? -eq 2 ] && ok "bad option -> 2" || bad "bad option"
"$MIXEL" inspect --help | grep -q -- '--json' && ok "help" || bad "help"

# missing / foreign / corrupt files: exit 1 with a message naming the file
"$MIXEL" inspect "$tmp/absent.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q absent.gguf "$tmp/err" && ok "missing file" || bad "missing file ($rc)"
printf 'hello world, not a model\n' >"$tmp/readme.txt"
"$MIXEL" inspect "$tmp/readme.txt" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'not a GGUF or safetensors file' "$tmp/err" && ok "foreign file" ||
    bad "foreign file ($rc: $(cat "$tmp/err"))"
printf 'GGUF\001\000\000\000' >"$tmp/v1.gguf"; head -c 32 /dev/zero >>"$tmp/v1.gguf"
"$MIXEL" inspect "$tmp/v1.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'version 1 is obsolete' "$tmp/err" && ok "GGUF v1" || bad "GGUF v1 ($rc)"
printf 'XXXX' >"$tmp/magic.gguf"; head -c 64 /dev/zero >>"$tmp/magic.gguf"
"$MIXEL" inspect "$tmp/magic.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'magic.gguf: not a GGUF file (bad magic)' "$tmp/err" && ok "bad magic" ||
    bad "bad magic ($rc: $(cat "$tmp/err"))"
printf '\377\000\000\000\000\000\000\000{"a":1}' >"$tmp/h.safetensors"
"$MIXEL" inspect "$tmp/h.safetensors" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'header length 255 exceeds the file' "$tmp/err" &&
    ok "safetensors header > file" || bad "safetensors header ($rc: $(cat "$tmp/err"))"

if [ -n "$PY" ]; then
    # a CompVis SD 1.x single file, a diffusers folder, a hostile name: written by plain Python
    "$PY" - "$tmp" <<'EOF' || bad "python writer"
import json, struct, sys, os
d = sys.argv[1]
def write(path, tensors, meta=None):
    hdr, off, blobs = {}, 0, []
    if meta: hdr["__metadata__"] = meta
    for name, dtype, shape in tensors:
        n = 1
        for s in shape: n *= s
        nb = n * {"F16": 2, "F32": 4, "I64": 8}[dtype]
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nb]}
        blobs.append(b"\0" * nb); off += nb
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
write(d + "/sd15.safetensors", [
    ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "F16",
     [320, 768]),
    ("model.diffusion_model.out.2.bias", "F16", [4]),
    ("first_stage_model.decoder.conv_in.weight", "F16", [512, 4, 3, 3]),
    ("cond_stage_model.transformer.text_model.embeddings.position_ids", "I64", [1, 77]),
    ("alphas_cumprod", "F32", [1000])], {"format": "pt"})
for c in ("unet", "vae", "text_encoder"): os.makedirs(d + "/diff/" + c)
write(d + "/diff/unet/diffusion_pytorch_model.safetensors", [
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", "F16", [320, 768]),
    ("time_embedding.linear_1.weight", "F16", [1280, 320])])
write(d + "/diff/vae/diffusion_pytorch_model.safetensors",
      [("decoder.up_blocks.0.resnets.0.conv1.bias", "F32", [512])])
write(d + "/diff/text_encoder/model.safetensors", [
    ("text_model.encoder.layers.0.mlp.fc1.bias", "F32", [3072]),
    ("text_model.embeddings.token_embedding.weight", "F16", [16, 768])])
open(d + "/diff/unet/config.json", "w").write('{"cross_attention_dim": 768}')
open(d + "/diff/model_index.json", "w").write('{"_class_name": "StableDiffusionPipeline"}')
write(d + "/evil.safetensors", [("\x1b]0;pwned\x07", "F32", [1])], {"note": "\x1b[2J"})
EOF
    out=$("$MIXEL" inspect "$tmp/sd15.safetensors") || bad "inspect sd15"
    echo "$out" | grep -q 'SD 1.x checkpoint (CompVis/LDM key names): UNet + VAE + CLIP' &&
        ok "SD 1.x single-file kind" || bad "SD kind: $out"
    echo "$out" | grep -q 'F16 3' && echo "$out" | grep -q 'format = pt' &&
        ok "dtype histogram + metadata" || bad "histogram: $out"
    "$MIXEL" inspect --json --tensors "$tmp/sd15.safetensors" | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "safetensors" and j["n_tensors"] == 5, j
assert j["parameters"] == 320*768 + 4 + 512*4*9 + 77 + 1000, j["parameters"]
assert j["dtypes"]["I64"]["count"] == 1 and len(j["tensor_list"]) == 5
' && ok "safetensors JSON" || bad "safetensors JSON"
    out=$("$MIXEL" inspect "$tmp/diff") || bad "inspect folder"
    echo "$out" | grep -q 'SD 1.x UNet (diffusers key names)' &&
        echo "$out" | grep -q 'VAE (diffusers key names)' &&
        echo "$out" | grep -q 'CLIP text encoder (ViT-L/14, SD 1.x)' &&
        echo "$out" | grep -q 'StableDiffusionPipeline' && ok "diffusers folder" ||
        bad "diffusers folder: $out"
    "$MIXEL" inspect --json "$tmp/diff" | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "diffusers" and set(j["components"]) == {"unet", "vae", "text_encoder"}
assert j["components"]["unet"]["config"]["cross_attention_dim"] == 768
' && ok "diffusers JSON" || bad "diffusers JSON"
    "$MIXEL" inspect "$tmp/evil.safetensors" >"$tmp/out" 2>&1
    if grep -q "$(printf '\033')" "$tmp/out"; then bad "escape reached the output"; else
        ok "hostile names inert"; fi
fi

# every shared model: text + JSON; parameter counts checked against an independent reader
if [ -z "${MX_SHARED:-}" ] || [ ! -d "$MX_SHARED/models" ]; then
    skip "the shared models: ../shared absent (set MX_SHARED)"
    done_
fi
n=0
for f in "$MX_SHARED"/models/*.gguf; do
    n=$((n + 1))
    out=$("$MIXEL" inspect "$f" 2>&1) || { bad "inspect $f: $out"; continue; }
    echo "$out" | grep -q '^architecture  llama' || bad "$f: no architecture line"
    echo "$out" | grep -q '^tokenizer     llama' || bad "$f: no tokenizer line"
    [ -n "$PY" ] || continue
    "$MIXEL" inspect --json "$f" >"$tmp/j.json" || { bad "json $f"; continue; }
    "$PY" - "$f" "$tmp/j.json" "$MX_SHARED/tools" <<'EOF' || bad "JSON vs reference reader: $f"
import json, sys
sys.path.insert(0, sys.argv[3])
from gguf_writer import read_gguf
kv, tensors = read_gguf(sys.argv[1])
j = json.load(open(sys.argv[2]))
total = experts = 0
for name, t in tensors.items():
    n = 1
    for d in t["ne"]: n *= d
    total += n
    if "_exps." in name: experts += n
ne, nu = kv.get("llama.expert_count", 0), kv.get("llama.expert_used_count", 0)
active = total - experts + (experts * nu // ne if ne else 0)
assert j["parameters"] == total, (j["parameters"], total)
assert abs(j["active_parameters"] - active) <= 1, (j["active_parameters"], active)
assert j["n_tensors"] == len(tensors)
assert j["tokenizer"]["vocab_size"] == len(kv["tokenizer.ggml.tokens"])
assert j["hyperparameters"]["block_count"] == kv["llama.block_count"]
assert j["architecture"] == kv["general.architecture"]
EOF
done
echo "inspected $n shared models"
f="$MX_SHARED/models/tiny-mixtral-q4_0.gguf"
if [ -f "$f" ]; then
    "$MIXEL" inspect "$f" | grep -q 'M total, .* M active per token (2 of 8 experts)' &&
        ok "MoE total/active line" || bad "MoE line"
    # truncated copies of a real model: exit 1 with the reader's message
    for cut in 10 100 5000 100000 1970000; do
        head -c $cut "$f" >"$tmp/cut.gguf"
        "$MIXEL" inspect "$tmp/cut.gguf" >/dev/null 2>"$tmp/err"; rc=$?
        if [ $rc -eq 1 ] && grep -q 'cut.gguf: ' "$tmp/err"; then :; else
            bad "cut at $cut: rc $rc $(cat "$tmp/err")"; fi
    done
    grep -q 'extends past end of file' "$tmp/err" && ok "truncated model" ||
        bad "truncated model message: $(cat "$tmp/err")"
fi
# the real SD 1.5 layout (names and shapes from the checkpoint maker's --list), as a sparse file:
# 2 GB apparent size, no disk used
gen="$MX_SHARED/tools/make_sd15_random.py"
if [ -z "$PY" ] || [ ! -f "$gen" ] || ! "$PY" "$gen" --list >"$tmp/sd.txt" 2>/dev/null; then
    skip "the SD 1.5 layout: no python3 or $gen --list failed"
else
    "$PY" - "$tmp/sd.txt" "$tmp/sd15.sparse.safetensors" <<'EOF'
import json, struct, sys
SZ = {"F16": 2, "F32": 4, "I64": 8}
hdr, off = {}, 0
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    name, shape, dt = line.split()
    shape = json.loads(shape)
    n = SZ[dt]
    for d in shape:
        n *= d
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
    off += n
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.truncate(8 + len(h) + off)
EOF
    out=$("$MIXEL" inspect "$tmp/sd15.sparse.safetensors") || bad "inspect SD 1.5 layout"
    echo "$out" | grep -q 'SD 1.x checkpoint (CompVis/LDM key names): UNet + VAE + CLIP ViT-L' &&
        echo "$out" | grep -q '^tensors       1143: F16 1130' &&
        ok "SD 1.5 layout (1143 tensors)" ||
        bad "SD 1.5 layout: $out"
fi
done_
