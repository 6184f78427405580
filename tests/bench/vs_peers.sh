#!/bin/sh
# vs_peers.sh - issue 17's comparison: mixel against llama.cpp and ik_llama.cpp on the same GGUF
# file, the same threads, alternating run by run (so a busy shared machine hurts all alike),
# medians of ROUNDS, and the ratio table mixel / llama.cpp and mixel / ik_llama.cpp.
#
# Each round runs, in this order:
#   mixel bench --json -p PP -n TG [--depth DEPTH]   (f16 KV cache, the default)
#   llref bench -p PP -n TG -kv f16 -fa 1, and with DEPTH > 0 llref bench -d DEPTH -n TG
#     (../shared/tools/peer-llama: llama.cpp as node-llama-cpp ships it)
#   ik_llama.cpp's llama-bench -t T -rtr 1 -fmoe 1 -fa 1 -p PP -n TG [-gp DEPTH,TG] -o json
#     (../shared/tools/peer-ik; its llama-bench has no -d: -gp times TG tokens generated after a
#     DEPTH-token prompt, the same figure as tg at depth)
# Rows: ppPP, tgTG, and with DEPTH: ppPP@DEPTH (mixel only: neither peer bench times a prompt
# after a filled cache) and tgTG@DEPTH. A peer given as "-" is skipped (its columns n/a).
# Everything printed also goes to a raw log like vs_llama.sh's: $BENCH_LOG, default
# tests/bench/logs/<UTC time>-<commit>-<model>-peers.txt, whose first lines give the command,
# the commit, mixel's version line and the machine. Timings from a shared, loaded machine are
# rough; compare only runs of the same log.
#
# usage: tests/bench/vs_peers.sh MIXEL LLREF IKBENCH MODEL [THREADS] [ROUNDS] [PP] [TG] [DEPTH]
#   defaults: THREADS 2, ROUNDS 5, PP 512, TG 128, DEPTH 0; REPS (env) repetitions per run, 3
set -eu
U="usage: vs_peers.sh MIXEL LLREF IKBENCH MODEL [THREADS] [ROUNDS] [PP] [TG] [DEPTH]"
MIXEL=${1:?$U}
LLREF=${2:?$U}
IKBENCH=${3:?$U}
MODEL=${4:?$U}
T=${5:-2}
ROUNDS=${6:-5}
PP=${7:-512}
TG=${8:-128}
DEPTH=${9:-0}
REPS=${REPS:-3}
for n in "$T" "$ROUNDS" "$PP" "$TG" "$DEPTH" "$REPS"; do
    case $n in '' | *[!0-9]*) echo "vs_peers.sh: '$n' is not a whole number" >&2; exit 2 ;; esac
done
[ -f "$MODEL" ] || { echo "vs_peers.sh: no model file '$MODEL'" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/peers_parse.sh"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
commit=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
log=${BENCH_LOG:-$here/logs/$(date -u +%Y%m%dT%H%M%SZ)-$commit-$(basename "$MODEL" .gguf)-peers.txt}
mkdir -p "$(dirname "$log")"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

say "# command: tests/bench/vs_peers.sh $*"
say "# commit: $commit; $("$MIXEL" --version 2>&1 | head -n 1)"
say "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
    "$(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(uname -sr)"
say "# $(date -u +%FT%TZ) threads $T model $(basename "$MODEL") ($(stat -c %s "$MODEL") bytes)" \
    "pp $PP tg $TG depth $DEPTH reps $REPS rounds $ROUNDS load $(cut -d' ' -f1 /proc/loadavg)"
dflag=""
[ "$DEPTH" -gt 0 ] && dflag="--depth $DEPTH"
ctx=$((DEPTH + (PP > TG ? PP : TG) + 64))
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    # shellcheck disable=SC2086 # dflag is empty or two words
    j=$("$MIXEL" bench -m "$MODEL" -t "$T" -p "$PP" -n "$TG" -r "$REPS" $dflag --json \
        2>/dev/null || true)
    mpp=$(printf '%s' "$j" | mixel_tps pp)
    mtg=$(printf '%s' "$j" | mixel_tps tg)
    mppd=$(printf '%s' "$j" | mixel_tps pp_depth)
    mtgd=$(printf '%s' "$j" | mixel_tps tg_depth)
    lpp=- ltg=- ltgd=- ipp=- itg=- itgd=-
    if [ "$LLREF" != "-" ]; then
        l=$("$LLREF" "$MODEL" bench -t "$T" -p "$PP" -n "$TG" -r "$REPS" -kv f16 -fa 1 \
            -c "$ctx" 2>/dev/null || true)
        lpp=$(printf '%s\n' "$l" | llref_field BENCH pp_median)
        ltg=$(printf '%s\n' "$l" | llref_field BENCH tg_median)
        if [ "$DEPTH" -gt 0 ]; then
            l=$("$LLREF" "$MODEL" bench -t "$T" -n "$TG" -r "$REPS" -kv f16 -fa 1 -d "$DEPTH" \
                -c "$ctx" 2>/dev/null || true)
            ltgd=$(printf '%s\n' "$l" | llref_field BENCH_DEPTH tg_median)
        fi
    fi
    if [ "$IKBENCH" != "-" ]; then
        gp=""
        [ "$DEPTH" -gt 0 ] && gp="-gp $DEPTH,$TG"
        # shellcheck disable=SC2086 # gp is empty or two words
        k=$("$IKBENCH" -m "$MODEL" -t "$T" -rtr 1 -fmoe 1 -fa 1 -p "$PP" -n "$TG" $gp \
            -r "$REPS" -o json 2>/dev/null || true)
        ipp=$(printf '%s\n' "$k" | ik_tps "pp$PP")
        itg=$(printf '%s\n' "$k" | ik_tps "tg$TG")
        [ "$DEPTH" -gt 0 ] && itgd=$(printf '%s\n' "$k" | ik_tps "tg$TG@pp$DEPTH")
    fi
    say "round $i: pp$PP mixel $mpp llama.cpp $lpp ik $ipp | tg$TG mixel $mtg llama.cpp $ltg" \
        "ik $itg$([ "$DEPTH" -gt 0 ] && echo " | @$DEPTH: pp mixel $mppd, tg mixel $mtgd" \
        "llama.cpp $ltgd ik $itgd") | load $(cut -d' ' -f1 /proc/loadavg)"
    {
        echo "pp$PP $mpp $lpp $ipp"
        echo "tg$TG $mtg $ltg $itg"
        if [ "$DEPTH" -gt 0 ]; then
            echo "pp$PP@$DEPTH $mppd - -"
            echo "tg$TG@$DEPTH $mtgd $ltgd $itgd"
        fi
    } >>"$out"
    i=$((i + 1))
done
say "medians of $ROUNDS rounds (rough: a shared machine):"
peers_table <"$out" | tee -a "$log"
echo "raw log: $log"
