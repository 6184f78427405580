#!/bin/sh
# llm_lora.sh - --lora on the LLM commands from the outside, with the adapter test_llm_lora
# writes for tiny-mixtral-f32: scale 0 gives the same logits bytes as no adapter, scale 1 other
# ones; run and logits take it, run/chat/bench/logits/serve list it; an adapter for another
# model is refused naming the tensor, a missing file naming the file, a bad scale and a ninth
# adapter with a message, each with a non-zero exit. With MX_LLREF (the peer, see
# tests/golden/llm_lora/make_goldens.sh) llama.cpp's logits are recomputed and must equal the
# committed golden byte for byte (the peer is deterministic).
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -f "${MX_SHARED:-}/models/tiny-mixtral-f32.gguf" ]; then
    echo "SKIP: llm_lora.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
B=${MX_BUILDDIR:-.}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
M="$MX_SHARED/models/tiny-mixtral-f32.gguf"
"$B/tests/test_llm_lora" write-adapter "$T/a.gguf" >"$T/err" 2>&1 ||
    fail "writing the adapter: $(cat "$T/err")"
ids=1,15,200,37,411,8,99,300
lg() { "$MIXEL" logits -q -m "$M" --kv-type f32 --ids $ids --all "$@"; }
lg >"$T/l0" 2>"$T/err" || fail "logits: $(cat "$T/err")"
lg --lora "$T/a.gguf:0" >"$T/l1" 2>"$T/err" || fail "logits --lora :0: $(cat "$T/err")"
cmp -s "$T/l0" "$T/l1" || fail "--lora at scale 0 changed the logits"
lg --lora "$T/a.gguf" >"$T/l2" 2>"$T/err" || fail "logits --lora: $(cat "$T/err")"
cmp -s "$T/l0" "$T/l2" && fail "--lora at scale 1 left the logits as they were"
"$MIXEL" run -q -m "$M" -p "Once upon a time" --temp 0 -n 8 --lora "$T/a.gguf:0.5" \
    --lora "$T/a.gguf:-0.5" >"$T/out" 2>"$T/err" || fail "run --lora twice: $(cat "$T/err")"
for c in run chat bench logits serve; do
    "$MIXEL" "$c" --help 2>&1 | grep -q -- "--lora FILE\[:S\]" || fail "mixel $c --help: no --lora"
done
# refusals: non-zero exit and the message
refused() {
    want=$1
    shift
    if "$MIXEL" "$@" >"$T/out" 2>"$T/err"; then fail "$* was accepted"; fi
    grep -q -- "$want" "$T/err" || fail "$*: the message does not say '$want': $(cat "$T/err")"
}
S="$MX_SHARED/models/stories260K.gguf"
refused "'blk.0.attn_q.weight': lora_a \[128, 4\]" run -m "$S" -p hi -n 1 --lora "$T/a.gguf"
refused "$T/none.gguf" run -m "$M" -p hi -n 1 --lora "$T/none.gguf"
refused "is not FILE\[:SCALE\]" run -m "$M" -p hi -n 1 --lora ":2"
refused "at most 8 --lora" logits -m "$M" --ids 1 --lora a --lora a --lora a --lora a \
    --lora a --lora a --lora a --lora a --lora a
if [ -n "${MX_LLREF:-}" ] && [ -x "$MX_LLREF" ]; then
    MX_BUILDDIR=$B sh "$MX_SRCDIR/tests/golden/llm_lora/make_goldens.sh" "$T" ||
        fail "make_goldens.sh with $MX_LLREF"
    cmp -s "$T/logits-lora.json" "$MX_SRCDIR/tests/golden/llm_lora/logits-lora.json" ||
        fail "llama.cpp's logits now differ from the committed golden"
    echo "peer: llama.cpp recomputed the golden with the same bytes"
else
    echo "peer: MX_LLREF not set; test_llm_lora compares with the committed golden only"
fi
echo "llm_lora.sh: ok"
