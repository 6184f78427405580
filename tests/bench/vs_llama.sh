#!/bin/sh
# vs_llama.sh - issue 5's comparison: mixel against llama.cpp on the same GGUF file, the same
# threads, alternating run by run (so a busy shared machine hurts both alike), medians of ROUNDS.
#
# Each round runs `mixel bench --json` then llref's bench (../shared/tools/peer-llama: llama.cpp
# from npm) with the same -p / -n / -r and an f16 KV cache, and prints both; the end prints the
# medians and the ratios mixel / llama.cpp. MIXEL_NO_REPACK etc. pass through the environment.
# Everything printed also goes to a raw log, a small text file per run kept for RESULTS.md:
# $BENCH_LOG, default tests/bench/logs/<UTC time>-<commit>-<model>.txt, whose first lines give
# the command, the commit of the source tree, mixel's version line and the machine.
#
# usage: tests/bench/vs_llama.sh MIXEL LLREF MODEL [THREADS] [ROUNDS] [PP] [TG] [REPS]
set -eu
MIXEL=${1:?usage: vs_llama.sh MIXEL LLREF MODEL [THREADS] [ROUNDS] [PP] [TG] [REPS]}
LLREF=${2:?llref binary (../shared/tools/peer-llama/build.sh)}
MODEL=${3:?GGUF file}
T=${4:-2}
ROUNDS=${5:-5}
PP=${6:-128}
TG=${7:-32}
REPS=${8:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
commit=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
log=${BENCH_LOG:-$here/logs/$(date -u +%Y%m%dT%H%M%SZ)-$commit-$(basename "$MODEL" .gguf).txt}
mkdir -p "$(dirname "$log")"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

say "# command: tests/bench/vs_llama.sh $*"
say "# commit: $commit; $("$MIXEL" --version 2>&1 | head -n 1)"
say "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
    "$(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(uname -sr)"
say "# $(date -u +%FT%TZ) threads $T model $(basename "$MODEL") ($(stat -c %s "$MODEL") bytes)" \
    "pp $PP tg $TG reps $REPS rounds $ROUNDS load $(cut -d' ' -f1 /proc/loadavg)"
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    j=$("$MIXEL" bench -m "$MODEL" -t "$T" -p "$PP" -n "$TG" -r "$REPS" --json 2>/dev/null)
    mpp=$(printf '%s' "$j" | sed -n 's/.*"pp": {"n": [0-9]*, "tokens_per_s": \([0-9.]*\)}.*/\1/p')
    mtg=$(printf '%s' "$j" | sed -n 's/.*"tg": {"n": [0-9]*, "tokens_per_s": \([0-9.]*\)}.*/\1/p')
    bw=$(printf '%s' "$j" | sed -n 's/.*"machine_gbps": \([0-9.]*\).*/\1/p')
    l=$("$LLREF" "$MODEL" bench -t "$T" -p "$PP" -n "$TG" -r "$REPS" -kv f16 2>/dev/null |
        grep '^BENCH')
    lpp=$(printf '%s' "$l" | sed -n 's/.*pp_median=\([0-9.]*\).*/\1/p')
    ltg=$(printf '%s' "$l" | sed -n 's/.*tg_median=\([0-9.]*\).*/\1/p')
    say "round $i: mixel pp $mpp tg $mtg | llama.cpp pp $lpp tg $ltg | machine $bw GB/s" \
        "| load $(cut -d' ' -f1 /proc/loadavg)"
    echo "$mpp $mtg $lpp $ltg" >>"$out"
    i=$((i + 1))
done
awk '
function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++)
        for (j = i + 1; j <= n; j++)
            if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ n++; mp[n] = $1; mt[n] = $2; lp[n] = $3; lt[n] = $4 }
END {
    a = median(mp, n); b = median(mt, n); c = median(lp, n); d = median(lt, n)
    rp = 0; rt = 0
    if (c > 0) rp = a / c
    if (d > 0) rt = b / d
    printf "median: mixel pp %.1f tg %.1f | llama.cpp pp %.1f tg %.1f | ratio pp %.2fx tg %.2fx\n", a, b, c, d, rp, rt
}' "$out" | tee -a "$log"
echo "raw log: $log"
