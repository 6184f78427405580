#!/bin/sh
# prefill_profile.sh - where one thread's prompt-processing time goes (issue 17), by CPU time:
# perf samples the task clock (1 sample per CPU-millisecond) over `mixel bench -p P -n 0 -t 1`
# and sums the forward pass's functions into GEMM tiles, activation preparation, attention,
# MoE routing / gather / scatter and the rest; loading (repacking, page clearing, the bandwidth
# probe) is left out. Milliseconds of CPU are comparable between binaries on a loaded machine,
# unlike wall-clock tokens/s. Expert and dense GEMMs share the same tiles; split them by the
# model's multiply-adds (see the report in tests/bench/RESULTS.md).
#
# usage: tests/bench/prefill_profile.sh MIXEL MODEL.gguf [P=512]
set -eu
mixel=$1 model=$2 p=${3:-512}
command -v perf >/dev/null || { echo "prefill_profile: needs perf" >&2; exit 1; }
data=$(mktemp /tmp/prefill_profile.XXXXXX)
trap 'rm -f "$data"' EXIT
perf record -q -e task-clock -F 1000 -o "$data" "$mixel" bench -m "$model" -p "$p" -n 0 -t 1 \
    -r 1 >/dev/null 2>&1
perf report -i "$data" --no-children --sort symbol -g none -F overhead,sample,sym --stdio \
    2>/dev/null | awk -v p="$p" -v bin="$mixel" '
    /^#/ || NF < 3 { next }
    { n = $2; sym = $4 }
    sym ~ /repack|clear_page|measure_bandwidth|sweep_slice|fault|folio|alloc|gguf|load|memcg|lru|mmap/ { next }
    $3 == "[k]" { k += n; next }
    sym ~ /^gemm_|vec_dot|^mm_task|x8_tile|dequant/ { g += n; next }
    sym ~ /quant_act|round_act|prep_|round_f16/ { q += n; next }
    sym ~ /attn|stage_kv|qk8|pv_accum|softmax|exp|sgemm|oncopy|otcopy|itcopy|incopy/ { a += n; next }
    sym ~ /memmove|memcpy|moe_|route|topk|matmul_id|combine/ { r += n; next }
    { o += n }
    END {
        t = g + q + a + r + o
        printf "%s, pp%d, CPU ms (task-clock samples) outside loading: %d\n", bin, p, t
        printf "  GEMM tiles        %7d  %5.1f %%\n", g, 100 * g / t
        printf "  activation prep   %7d  %5.1f %%\n", q, 100 * q / t
        printf "  attention         %7d  %5.1f %%\n", a, 100 * a / t
        printf "  routing/scatter   %7d  %5.1f %%\n", r, 100 * r / t
        printf "  the rest          %7d  %5.1f %%   (kernel time not counted: %d)\n", o, 100 * o / t, k
        printf "  => %.1f tokens per CPU-second\n", p / (t / 1000)
    }'
