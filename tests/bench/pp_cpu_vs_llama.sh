#!/bin/sh
# pp_cpu_vs_llama.sh - prompt processing of one thread, mixel against llama.cpp (llref), by CPU
# time rather than wall clock: on the shared 2-core machine wall-clock tokens/s swing with the
# other processes' load, CPU milliseconds much less. perf samples the task clock (1 per
# CPU-ms) over `bench -p P -n 0 -t 1 -r 1` of each program (a warm-up run and a measured run),
# drops the samples of loading (page clearing and faults, the bandwidth probe, repacking,
# vocabulary and file parsing), and prints the forward passes' CPU ms per run and the ratio
# llama.cpp / mixel (> 1: mixel is faster). Rough: the loading filter is by symbol name.
#
# usage: tests/bench/pp_cpu_vs_llama.sh MIXEL LLREF MODEL [P=128]
set -eu
mixel=$1 llref=$2 model=$3 p=${4:-128}
command -v perf >/dev/null || { echo "pp_cpu_vs_llama: needs perf" >&2; exit 1; }
data=$(mktemp /tmp/pp_cpu.XXXXXX)
trap 'rm -f "$data"' EXIT
# forward CPU ms of one run: all samples less loading's, halved (warm-up + 1 run)
fwd_ms() {
    perf report -i "$data" --no-children --sort symbol -g none --stdio -n 2>/dev/null |
        awk '/^#/ || NF < 3 { next }
             { n += $2 }
             /clear_page|sweep_slice|measure_bandwidth|repack|fault|folio|alloc_pages|gguf|load|memcg|lru|mmap|page|vocab|_dl_/ { l += $2 }
             END { printf "%.0f", (n - l) / 2 }'
}
perf record -q -e task-clock -F 1000 -o "$data" "$mixel" bench -m "$model" -p "$p" -n 0 -t 1 \
    -r 1 >/dev/null 2>&1
m=$(fwd_ms)
perf record -q -e task-clock -F 1000 -o "$data" "$llref" "$model" bench -t 1 -p "$p" -n 0 -r 1 \
    -kv f16 >/dev/null 2>&1
l=$(fwd_ms)
echo "$(basename "$model" .gguf) pp$p 1 thread CPU ms per run: mixel $m llama.cpp $l" \
    "ratio $(awk -v m="$m" -v l="$l" 'BEGIN { printf "%.2fx", l / m }') (rough, loaded machine)"
