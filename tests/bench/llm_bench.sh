#!/bin/sh
# llm_bench.sh - the LLM speed record of tests/bench/RESULTS.md, reproducible.
#
# Makes the benchmark models with tests/bench/make_bench_models.sh (in $BENCH_DIR, default /tmp;
# ~1 GB each; never commit them), of which it runs three: the default top-2-of-8 MoE, the same
# weights with all 8 experts used (a dense model of the total size), and a 2-expert top-2 model
# (a dense model of the active size). Then runs `mixel bench --json` on them in turn, REPS rounds
# (alternating, so a busy machine hurts each alike), and finally the issue's command on the MoE.
#
# usage: tests/bench/llm_bench.sh MIXEL [THREADS] [REPS]
set -eu
MIXEL=${1:?usage: llm_bench.sh MIXEL [THREADS] [REPS]}
T=${2:-2}
REPS=${3:-2}
D=${BENCH_DIR:-/tmp}
sh "$(dirname "$0")/make_bench_models.sh" "$MIXEL" "$D"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) threads $T"
i=0
while [ "$i" -lt "$REPS" ]; do
    for m in bench-moe-q4_0 bench-moe-top8-q4_0 bench-dense-active-q4_0; do
        "$MIXEL" bench -m "$D/$m.gguf" -t "$T" -p 128 -n 32 -r 3 --json
    done
    i=$((i + 1))
done
"$MIXEL" bench -m "$D/bench-moe-q4_0.gguf" -t "$T" -p 512 -n 128 -r 1 --depth 2048
