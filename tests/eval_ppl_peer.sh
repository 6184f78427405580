#!/bin/sh
# eval_ppl_peer.sh - `mixel eval ppl --json` against llama.cpp: perplexity (and KL divergence
# against a saved base) on tests/data/story.txt for the small models in ../shared/models,
# compared with the numbers llama-perplexity's method gives on the peer's logits
# (tests/data/eval_ppl_peer.json, made once by `tests/eval_ppl_peer.py golden` from
# ../shared/tools/peer-llama's llref; the tolerances per case are in that file and explained in
# eval_ppl_peer.py). With MX_LLREF=path/to/llref (the peer built here), the peer's numbers are
# also recomputed now and must equal the golden: opt-in, it costs ~75 s, too much for every run.
set -u
MIXEL=${MIXEL:-./mixel}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
if [ ! -f "${MX_SHARED:-}/models/stories260K.gguf" ]; then
    echo "SKIP: eval_ppl_peer.sh needs ../shared/models (set MX_SHARED)"
    exit 77
fi
if [ -z "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "SKIP: eval_ppl_peer.sh needs python3 with numpy"
    exit 77
fi
src=${MX_SRCDIR:-.}
llref=
for c in "${MX_LLREF:-}"; do
    if [ -n "$c" ] && [ -x "$c" ]; then llref=$c; break; fi
done
[ -n "$llref" ] && echo "peer: $llref (recomputing its numbers too)" ||
    echo "peer: MX_LLREF not set; comparing with the committed golden only"
# shellcheck disable=SC2086
"$PY" "$src/tests/eval_ppl_peer.py" check "$src/tests/data/eval_ppl_peer.json" "$MIXEL" \
    "$MX_SHARED" "$src" $llref
