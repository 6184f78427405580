#!/bin/sh
# iq_logits_peer.sh - `mixel logits` on IQ4_XS, IQ3_S and IQ2_XS random tiny MoE models against
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
for t in iq4_xs iq3_s iq2_xs; do
    # shellcheck disable=SC2086
    "$PY" "$src/tests/iq_logits_peer.py" "$MIXEL" "$src/tests/golden/iq" $t 1e-4 0.75 0.5 \
        $llref || rc=1
done
exit $rc
