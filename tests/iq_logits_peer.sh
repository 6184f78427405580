#!/bin/sh
# iq_logits_peer.sh - `mixel logits` on random tiny MoE models of every IQ type (IQ4_XS, IQ4_NL,
# IQ3_S, IQ3_XXS, IQ2_XS, IQ2_XXS, IQ2_S, IQ1_S, IQ1_M) against
# llama.cpp's logits for them (all committed in tests/golden/iq, made by make_models.py there with
# ggml's own quantizer and the peer's llref). Tolerances: tests/iq_logits_peer.py's rule, with
# the K-quant bounds of tests/test_llama.c (the IQ paths round activations to Q8_K as ggml does;
# measured median ~2e-6). With MX_LLREF=path/to/llref the peer's logits are also recomputed.
set -u
MIXEL=${MIXEL:-./mixel}
src=${MX_SRCDIR:-.}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
if [ -z "$PY" ]; then
    echo "SKIP: iq_logits_peer.sh needs python3"
    exit 77
fi
llref=
if [ -n "${MX_LLREF:-}" ] && [ -x "$MX_LLREF" ]; then
    llref=$MX_LLREF
    echo "peer: $llref (recomputing its logits too)"
else
    echo "peer: MX_LLREF not set; comparing with the committed golden only"
fi
rc=0
# mixel inspect names the IQ file type and the tensors' type
for t in iq4_xs:30:IQ4_XS iq4_nl:25:IQ4_NL iq3_s:26:IQ3_S iq2_xs:20:IQ2_XS \
    iq2_xxs:19:IQ2_XXS iq2_s:28:IQ2_S iq3_xxs:23:IQ3_XXS iq1_s:24:IQ1_S iq1_m:31:IQ1_M; do
    f=${t%%:*}; rest=${t#*:}; n=${rest%%:*}; name=${rest#*:}
    out=$("$MIXEL" inspect "$src/tests/golden/iq/tiny-mixtral-d256-$f.gguf" 2>&1)
    if printf '%s\n' "$out" | grep -q "file type  *$n ($name)" &&
       printf '%s\n' "$out" | grep -q "tensors .*$f 16"; then
        echo "ok: inspect shows $name"
    else
        echo "FAIL: inspect of the $name model:"; printf '%s\n' "$out" | head -12; rc=1
    fi
done
# d512-*: 512-wide models (two IQ blocks per row: the tiles' sums across blocks), peer run on AVX2
for t in iq4_xs iq4_nl iq3_s iq2_xs iq2_xxs iq2_s iq3_xxs iq1_s iq1_m d512-iq2_s d512-iq3_xxs; do
    # shellcheck disable=SC2086
    "$PY" "$src/tests/iq_logits_peer.py" "$MIXEL" "$src/tests/golden/iq" $t 1e-4 0.75 0.5 \
        $llref || rc=1
done
exit $rc
