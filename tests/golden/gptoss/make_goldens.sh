#!/bin/sh
# make_goldens.sh - llama.cpp's output on the tiny gpt-oss model of tests/test_gptoss.c.
#
#   MX_LLREF=/path/to/llref sh make_goldens.sh BUILD_DIR
#
# Writes the model with `BUILD_DIR/tests/test_gptoss --write-model` (deterministic), runs the
# peer (../shared/tools/peer-llama/llref: node-llama-cpp 3.21.1's libllama, KV cache F32, flash
# attention off, 2 threads) in evalids mode on records.txt (token ids, 16 greedy steps) and
# saves its output as peer_eval.txt, which test_gptoss compares mixel with.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: make_goldens.sh BUILD_DIR}
llref=${MX_LLREF:?set MX_LLREF to the peer driver}
model=$(mktemp /tmp/gptoss-golden-XXXXXX.gguf)
trap 'rm -f "$model"' EXIT
"$build/tests/test_gptoss" --write-model "$model"
"$llref" "$model" evalids -n 16 -c 256 -t 2 < "$here/records.txt" > "$here/peer_eval.txt"
sha256sum "$model" | sed 's| .*||' > "$here/model.sha256"
echo "wrote $here/peer_eval.txt ($(grep -c '^LOGITS' "$here/peer_eval.txt") logit rows)"
