#!/bin/sh
# memplan.sh - memory planning before a model loads (app/memplan.h), from the outside, on a small
# machine simulated with MIXEL_MEM_AVAILABLE: a model that does not fit is refused before
# anything is allocated (exit 1, the numbers: model + KV + buffers = total, available, and a
# -c that fits); without -c the largest context that fits is chosen and said; --no-mem-check
# loads anyway; an ample limit changes nothing. stories260K: 1.1 MB of weights, 512 tokens of
# context, 5 layers x 2 x 64 values of f16 KV per token (640 bytes/token x 2 = 1280).
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: memplan.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
M="$MX_SHARED/models/stories260K.gguf"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
run() { "$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 4 "$@" >"$T/out" 2>"$T/err"; }

# the plan with a roomy limit: the numbers of a full context, and the load goes through
MIXEL_MEM_AVAILABLE=100000000 run -c 512 -v || fail "ample memory refused: $(cat "$T/err")"
grep -q 'context: 512 tokens' "$T/err" || fail "-c 512 not used: $(cat "$T/err")"
# 2 MB: the weights (1.1 MiB) fit, a 512-token context with an f32 cache and its buffers do not
MIXEL_MEM_AVAILABLE=2000000 run -c 512 --kv-type f32; rc=$?
[ $rc -eq 1 ] || fail "a model that does not fit: exit $rc, want 1: $(cat "$T/err")"
grep -q 'stories260K.gguf: does not fit in memory: model 1.1 MiB + KV 642 KiB (f32, 512 tokens) + buffers [0-9.]* MiB = 3.3 MiB, 1.9 MiB available; try -c [0-9]* (KV [0-9]* KiB), --kv-type q8_0, a smaller quant, or --no-mem-check' "$T/err" ||
    fail "no numbers in the refusal: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "a refused model wrote output"
# the suggested -c loads under the same limit
c=$(sed -n 's/.*try -c \([0-9]*\) .*/\1/p' "$T/err")
MIXEL_MEM_AVAILABLE=2000000 run -c "$c" --kv-type f32 || fail "the suggested -c $c: $(cat "$T/err")"
# no -c: the largest context that fits is chosen and said
MIXEL_MEM_AVAILABLE=2000000 run || fail "no -c under a limit: $(cat "$T/err")"
grep -q "context: [0-9]* tokens of the model's 512 fit in memory (KV [0-9]* KiB, 1.9 MiB available)" \
    "$T/err" || fail "the chosen context is not said: $(cat "$T/err")"
[ -s "$T/out" ] || fail "no text with the chosen context"
# --no-mem-check: the user knows better
MIXEL_MEM_AVAILABLE=2000000 run -c 512 --kv-type f32 --no-mem-check ||
    fail "--no-mem-check refused: $(cat "$T/err")"
# not even the weights fit: refused whatever the context
MIXEL_MEM_AVAILABLE=1000000 run -c 16; rc=$?
[ $rc -eq 1 ] || fail "weights above the limit: exit $rc"
grep -q 'does not fit in memory: model 1.1 MiB' "$T/err" || fail "$(cat "$T/err")"
# on a GPU the plan is against its free VRAM (refused before the device is even opened, so this
# runs without one): the same numbers but the embedding (128 KiB, kept in host memory as
# llama.cpp keeps its input layer), and where they did not fit
MIXEL_MEM_AVAILABLE=100000000 MIXEL_VRAM_AVAILABLE=2000000 run -c 512 --kv-type f32 --device cuda
rc=$?
[ $rc -eq 1 ] || fail "a model that does not fit in VRAM: exit $rc"
grep -q 'stories260K.gguf: does not fit in VRAM on .*: model 1016 KiB + KV 642 KiB (f32, 512 tokens)' \
    "$T/err" || fail "VRAM refusal: $(cat "$T/err")"
# the plan is said before loading
MIXEL_MEM_AVAILABLE=100000000 run -c 512 || fail "$(cat "$T/err")"
grep -q 'memory: model 1.1 MiB + KV [0-9]* KiB (512 tokens) + buffers [0-9.]* MiB = [0-9.]* MiB; 95.4 MiB free in memory' \
    "$T/err" || fail "the plan is not said: $(cat "$T/err")"
"$MIXEL" run --help | grep -q -- '--no-mem-check' || fail "--no-mem-check not in run --help"
echo ok
