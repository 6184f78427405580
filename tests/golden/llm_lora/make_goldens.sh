#!/bin/sh
# make_goldens.sh OUT_DIR - llama.cpp's logits with a LoRA adapter, for test_llm_lora.
#   MX_LLREF    the peer's llref (../shared/tools/peer-llama/build.sh): its folder has the
#               llama.cpp headers (src/) and the npm package's libraries
#   MX_SHARED   ../shared (models/tiny-mixtral-f32.gguf)
#   MX_BUILDDIR the build folder (tests/test_llm_lora writes the adapter: seeded, the same bytes
#               every time)
# Writes OUT_DIR/logits-lora.json (committed as tests/golden/llm_lora/logits-lora.json) and
# prints nothing else on success. Scale 0.7, 12 tokens, F32 KV cache (see llref_lora.c).
set -eu
out=$1
here=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "$(dirname "$MX_LLREF")" && pwd)
bins=$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -std=gnu11 -o "$tmp/llref_lora" "$here/llref_lora.c" -I "$dir/src/include" \
    -I "$dir/src/ggml/include" -DBACKEND_DIR="\"$bins\"" -L"$bins" -l:libllama.v0.4.0.so \
    -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,"$bins" -lm
MX_SHARED=$MX_SHARED "$MX_BUILDDIR/tests/test_llm_lora" write-adapter "$tmp/a.gguf" >/dev/null
"$tmp/llref_lora" "$MX_SHARED/models/tiny-mixtral-f32.gguf" "$tmp/a.gguf" 0.7 \
    1 15 200 37 411 8 99 300 250 17 3 505 > "$out/logits-lora.json"
