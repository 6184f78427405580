#!/bin/sh
# split_cli.sh - --gpu-layers / --cpu-moe / --n-cpu-moe from the command line, where no GPU
# is: MIXEL_SPLIT_CPU=1 lets a CPU backend play the device and a second one hold the host part,
# so the split's plumbing runs and its logits must equal the whole model's to the last digit
# (stories260K-moe8, 5 blocks of 8 experts, and a tiny gpt-oss written by test_gptoss: biased
# experts, attention sinks, and a sliding-window block whose trimmed KV cache lands on either
# side). Also: the memory of each side said before loading (and what the trimming saves), a
# split that does not fit the device refused with the --cpu-moe / --gpu-layers choices that would
# (and the suggestion then loads), a host part too big refused, and the flags in --help.
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: split_cli.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
M="$MX_SHARED/models/stories260K-moe8.gguf"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
IDS=1,50,30,7,99,12,200,5,60,77,3,260
# every row's logits, in chunks of 4 tokens, one thread on each side
L() {
    m=$1
    shift
    "$MIXEL" logits -m "$m" --ids $IDS --all -t 1 -c 64 --ubatch 4 --device cpu "$@" 2>"$T/err"
}

whole=$(L "$M") || fail "whole model: $(cat "$T/err")"
[ -n "$whole" ] || fail "no logits"
for a in "--gpu-layers 0" "--gpu-layers 1" "--gpu-layers 3" "--gpu-layers 6" "--cpu-moe" \
         "--n-cpu-moe 2" "--gpu-layers 4 --n-cpu-moe 3" "-ngl 2 --cpu-moe"; do
    # shellcheck disable=SC2086
    got=$(MIXEL_SPLIT_CPU=1 L "$M" $a) || fail "$a: $(cat "$T/err")"
    [ "$got" = "$whole" ] || fail "$a: the split's logits differ from the whole model's"
done

# gpt-oss: its router (with bias) on the device, its biased experts on the host
G="$T/gptoss.gguf"
"$MX_BUILDDIR/tests/test_gptoss" --write-model "$G" >/dev/null 2>&1 ||
    fail "test_gptoss --write-model did not write the model"
gw=$(L "$G") || fail "gpt-oss whole: $(cat "$T/err")"
for a in "--cpu-moe" "--gpu-layers 1" "--n-cpu-moe 1"; do
    # shellcheck disable=SC2086
    got=$(MIXEL_SPLIT_CPU=1 L "$G" $a) || fail "gpt-oss $a: $(cat "$T/err")"
    [ "$got" = "$gw" ] || fail "gpt-oss $a: the split's logits differ from the whole model's"
done
# its sliding-window block keeps window + ubatch cells (8 of 64) on the host side of the split:
# the plan says what that saves
MIXEL_SPLIT_CPU=1 "$MIXEL" run -m "$G" -p "Once" -n 2 -t 1 -c 64 --ubatch 4 --device cpu \
    --gpu-layers 2 -v >/dev/null 2>"$T/err" || fail "gpt-oss -v: $(cat "$T/err")"
grep -q 'memory: model .* + KV [0-9]* KiB (64 tokens; sliding-window layers keep only the window: [0-9]* KiB saved)' \
    "$T/err" || fail "the sliding-window saving is not said: $(cat "$T/err")"
grep -q 'context: 64 tokens, KV cache f16 .* (sliding-window layers keep window + ubatch cells)' \
    "$T/err" || fail "the trimmed cache is not said: $(cat "$T/err")"

# the memory of each side, before loading
MIXEL_SPLIT_CPU=1 "$MIXEL" run -m "$M" -p "Once" -n 2 -t 1 -c 64 --device cpu --gpu-layers 3 -v \
    >/dev/null 2>"$T/err" || fail "$(cat "$T/err")"
grep -q 'memory: model [0-9.]* MiB + KV [0-9]* KiB (64 tokens) + buffers .* free in memory' \
    "$T/err" || fail "the device part is not said: $(cat "$T/err")"
grep -q 'memory: host part: model [0-9.]* MiB + KV [0-9]* KiB + buffers' "$T/err" ||
    fail "the host part is not said: $(cat "$T/err")"
grep -q 'placement: 2 of 5 blocks on the device (cpu), the output there too' "$T/err" ||
    fail "the placement is not said: $(cat "$T/err")"

# too big for the device: refused with the choices that fit, and the suggestion loads
MIXEL_SPLIT_CPU=1 MIXEL_VRAM_AVAILABLE=3000000 L "$M" >/dev/null
rc=$?
[ $rc -eq 1 ] || fail "a split that does not fit: exit $rc, want 1: $(cat "$T/err")"
grep -q 'stories260K-moe8.gguf: does not fit in device memory: model 5.4 MiB + KV 41 KiB (f16, 64 tokens) + buffers [0-9]* KiB = 5.5 MiB, 2.9 MiB available; try --cpu-moe ([0-9]* KiB) or --gpu-layers 3 ([0-9.]* MiB)' \
    "$T/err" || fail "no numbers or choices in the refusal: $(cat "$T/err")"
n=$(sed -n 's/.*--gpu-layers \([0-9]*\) (.*/\1/p' "$T/err")
got=$(MIXEL_SPLIT_CPU=1 MIXEL_VRAM_AVAILABLE=3000000 L "$M" --gpu-layers "$n") ||
    fail "the suggested --gpu-layers $n: $(cat "$T/err")"
[ "$got" = "$whole" ] || fail "--gpu-layers $n: logits differ"
got=$(MIXEL_SPLIT_CPU=1 MIXEL_VRAM_AVAILABLE=3000000 L "$M" --cpu-moe) ||
    fail "the suggested --cpu-moe: $(cat "$T/err")"
[ "$got" = "$whole" ] || fail "--cpu-moe under the limit: logits differ"
# a real GPU's plan says the same before the device is opened (so this runs without one)
MIXEL_VRAM_AVAILABLE=3000000 L "$M" --device cuda >/dev/null
grep -q 'does not fit in VRAM on .*try --cpu-moe ([0-9]* KiB) or --gpu-layers 3' "$T/err" ||
    fail "VRAM refusal: $(cat "$T/err")"

# the host part too big for the machine
MIXEL_SPLIT_CPU=1 MIXEL_MEM_AVAILABLE=2000000 L "$M" --cpu-moe >/dev/null
rc=$?
[ $rc -eq 1 ] || fail "a host part that does not fit: exit $rc"
grep -q 'the part left on the host does not fit in memory: model [0-9.]* MiB + KV' "$T/err" ||
    fail "host refusal: $(cat "$T/err")"

# on the CPU alone there is nothing to split: said, and the model runs whole
got=$(L "$M" --gpu-layers 2) || fail "$(cat "$T/err")"
[ "$got" = "$whole" ] || fail "--gpu-layers on the CPU changed the logits"
grep -q 'running on the CPU, nothing to split' "$T/err" || fail "no warning: $(cat "$T/err")"

for f in --gpu-layers --cpu-moe --n-cpu-moe; do
    "$MIXEL" run --help | grep -q -- "$f" || fail "$f not in run --help"
done
echo ok
