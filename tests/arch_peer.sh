#!/bin/sh
# arch_peer.sh - the llama-like MoE architectures against llama.cpp: for qwen2moe, qwen3moe,
# olmoe and granitemoe, tests/arch_gguf.py writes a tiny seeded random model (F32 and Q4_0;
# their sha256 must equal tests/golden/arch/SHA256SUMS, else the goldens do not apply), and
# tests/arch_drv compares mixel's logits at every prompt position and 16 greedy steps with the
# peer's output committed in tests/golden/arch/ (see make_goldens.sh there).
# Tolerances (../shared/refs/llm/README.md): F32 1e-4 (llama.cpp vs exact math: 1.2e-5; measured
# here ~5e-6), greedy ids and text equal. Q4_0 0.2 (llama.cpp's own token-by-token vs batch and
# repack on/off gaps on tiny-mixtral-q4_0: 0.19, 0.17; measured here 0 on prompt rows, 0.06 on
# one generation step), greedy ids and text equal.
# llama: Mixtral-style plus Llama 3.1's rope_freqs.weight (the frequency factors must be applied).
# Also `mixel inspect --json` on each F32 file: total and active parameters equal to what the
# writer counts (experts: k of n per token; shared experts: every token).
# With MX_LLREF=path/to/llref the peer is run now as well and mixel is checked against that too.
set -u
MX_BUILDDIR=${MX_BUILDDIR:-.}
MIXEL=${MIXEL:-$MX_BUILDDIR/mixel}
src=${MX_SRCDIR:-.}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
if [ ! -f "${MX_SHARED:-}/models/stories260K.gguf" ]; then
    echo "SKIP: arch_peer.sh needs ../shared/models (set MX_SHARED)"
    exit 77
fi
if [ -z "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "SKIP: arch_peer.sh needs python3 with numpy"
    exit 77
fi
drv="$MX_BUILDDIR/tests/arch_drv"
gold="$src/tests/golden/arch"
llref=${MX_LLREF:-}
[ -n "$llref" ] && [ ! -x "$llref" ] && llref=
[ -n "$llref" ] && echo "peer: $llref (recomputing its output too)" ||
    echo "peer: MX_LLREF not set; comparing with the committed goldens only"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for arch in ${MX_ARCHS:-qwen2moe qwen3moe olmoe granitemoe llama}; do
    for type in F32 Q4_0; do
        t=$(echo "$type" | tr 'A-Z' 'a-z')
        tol=1e-4
        [ "$type" = F32 ] || tol=0.2
        m="$tmp/$arch-$t.gguf"
        if ! "$PY" "$src/tests/arch_gguf.py" "$arch" "$m" --type "$type" --shared "$MX_SHARED"; then
            echo "FAIL: $arch-$t: arch_gguf.py failed"
            fail=1
            continue
        fi
        want=$(grep " $arch-$t.gguf\$" "$gold/SHA256SUMS" | cut -d' ' -f1)
        got=$(sha256sum "$m" | cut -d' ' -f1)
        if [ "$want" != "$got" ]; then
            echo "FAIL: $arch-$t.gguf: sha256 $got, goldens made from $want (writer changed?)"
            fail=1
            continue
        fi
        if [ "$type" = F32 ]; then
            want=$("$PY" "$src/tests/arch_gguf.py" "$arch" - --counts --shared "$MX_SHARED")
            js=$("$MIXEL" inspect --json "$m")
            got="$(echo "$js" | sed -n 's/.*"parameters": \([0-9]*\).*/\1/p') $(echo "$js" |
                   sed -n 's/.*"active_parameters": \([0-9]*\).*/\1/p')"
            if [ "$got" = "$want" ]; then
                echo "ok   $arch inspect: $got parameters (total, active)"
            else
                echo "FAIL $arch inspect: parameters (total, active) $got, writer counts $want"
                fail=1
            fi
        fi
        gzip -dc "$gold/$arch-$t.txt.gz" > "$tmp/$arch-$t.txt"
        echo "== $arch $type vs committed golden"
        "$drv" "$m" "$tmp/$arch-$t.txt" "$tol" strict || fail=1
        if [ -n "$llref" ]; then
            "$llref" "$m" eval -n 16 < "$gold/prompts.rec" > "$tmp/$arch-$t.now" 2>/dev/null
            echo "== $arch $type vs the peer now"
            "$drv" "$m" "$tmp/$arch-$t.now" "$tol" strict || fail=1
        fi
    done
done
# broken files: refused at load with a message naming the problem
for c in "qwen3moe arch architecture 'qwen35moe' not supported (supported: llama, qwen2moe, qwen3moe, olmoe, granitemoe" \
         "qwen3moe no-experts architecture qwen3moe needs expert_count > 0" \
         "qwen3moe no-qnorm tensor 'blk.1.attn_q_norm.weight' missing" \
         "granitemoe no-logit-scale key 'granitemoe.logit_scale' missing" \
         "qwen2moe shexp-shape tensor 'blk.0.ffn_gate_inp_shexp.weight' has shape [64, 2], expected [64, 1]" \
         "qwen3moe kq-norm-shape tensor 'blk.0.attn_k_norm.weight' has shape [34], expected [32]"; do
    set -- $c
    arch=$1 brk=$2
    shift 2
    want="$*"
    m="$tmp/bad-$brk.gguf"
    "$PY" "$src/tests/arch_gguf.py" "$arch" "$m" --break "$brk" --shared "$MX_SHARED" || fail=1
    out=$("$drv" "$m" /dev/null 1 2>&1)
    rc=$?
    case "$out" in
    *"$want"*) [ "$rc" = 1 ] && echo "ok   $brk refused: $out" ||
                   { echo "FAIL $brk: exit $rc"; fail=1; } ;;
    *) echo "FAIL $brk: got '$out', want '$want'"; fail=1 ;;
    esac
done
[ "$fail" = 0 ] && echo "arch_peer: all passed"
exit "$fail"
