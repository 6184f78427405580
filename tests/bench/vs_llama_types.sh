#!/bin/sh
# vs_llama_types.sh - issue 16's per-type table in one command: tests/bench/vs_llama.sh (mixel
# against llama.cpp on the same file, alternating, medians; each run keeps its raw log) on the
# speed-only bench model of each quant type (tests/bench/make_iq_bench.py; default folder
# /tmp/bench22, files bench-moe-TYPE.gguf), then one line per type with the medians and ratios.
#
# usage: tests/bench/vs_llama_types.sh MIXEL LLREF [DIR] [TYPES...]
#   TYPES default: the K/legacy and IQ types of issue 16 item 2, in its priority order.
#   THREADS ROUNDS PP TG REPS from the environment (default 2 2 128 32 2, RESULTS.md's).
set -eu
MIXEL=${1:?usage: vs_llama_types.sh MIXEL LLREF [DIR] [TYPES...]}
LLREF=${2:?llref binary (../shared/tools/peer-llama/build.sh)}
DIR=${3:-/tmp/bench22}
[ $# -ge 3 ] && shift 3 || shift $#
TYPES=${*:-q3_k q5_1 q5_0 iq1_m iq1_s iq2_xs q2_k q4_1 iq2_xxs iq2_s iq3_s iq3_xxs}
here=$(cd "$(dirname "$0")" && pwd)
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
for t in $TYPES; do
    model=$DIR/bench-moe-$t.gguf
    if [ ! -f "$model" ]; then
        echo "$t: $model missing (tests/bench/make_iq_bench.py makes it)" >>"$summary"
        continue
    fi
    line=$("$here/vs_llama.sh" "$MIXEL" "$LLREF" "$model" "${THREADS:-2}" "${ROUNDS:-2}" \
        "${PP:-128}" "${TG:-32}" "${REPS:-2}" | tee /dev/stderr | grep '^median:') ||
        line="vs_llama.sh failed"
    echo "$t: $line" >>"$summary"
done
echo "# per type (load $(cut -d' ' -f1 /proc/loadavg) at the end):"
cat "$summary"
