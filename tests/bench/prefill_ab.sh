#!/bin/sh
# prefill_ab.sh - prompt processing of two mixel binaries by CPU time, for a loaded machine
# (issue 17): wall-clock tokens/s mean little while other jobs share the cores, CPU time of one
# thread does. Each binary runs `bench -p P -n 0 -t 1` with 1 and with 1 + R rounds; the
# difference of their CPU times (perf stat task-clock) over R is one prefill without the
# load, printed as tokens per CPU-second, the two binaries alternating, ROUNDS times.
#
# usage: tests/bench/prefill_ab.sh OLD_MIXEL NEW_MIXEL MODEL.gguf [P=512] [R=2] [ROUNDS=2]
# Rough on a shared machine (caches and clocks are shared too); the lead's quiet runs decide.
set -eu
old=$1 new=$2 model=$3 p=${4:-512} r=${5:-2} rounds=${6:-2}
command -v perf >/dev/null || { echo "prefill_ab: needs perf" >&2; exit 1; }
cpu_ms() { # binary, rounds -> task-clock in ms
    perf stat -x, -e task-clock "$1" bench -m "$model" -p "$p" -n 0 -t 1 -r "$2" 2>&1 >/dev/null |
        awk -F, '/task-clock/ { printf "%d\n", $1 }'
}
i=0
while [ "$i" -lt "$rounds" ]; do
    for b in "$old" "$new"; do
        a=$(cpu_ms "$b" 1) z=$(cpu_ms "$b" $((1 + r)))
        awk -v a="$a" -v z="$z" -v r="$r" -v p="$p" -v b="$b" 'BEGIN {
            s = (z - a) / r / 1000; printf "%-40s pp%d %7.2f s CPU  %7.1f tokens/CPU-s\n", b, p, s, p / s }'
    done
    i=$((i + 1))
done
