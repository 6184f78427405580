#!/bin/sh
# tok_spm_ref.sh - `mixel tokenize` against an independent SentencePiece reference in Python
# (tests/tok_spm_ref.py, itself checked against refs/llm's llama.cpp goldens) on random strings,
# for both vocabularies in ../shared/models.
set -u
if [ -z "${MX_SHARED:-}" ] || [ ! -f "$MX_SHARED/models/stories260K.gguf" ]; then
    echo "SKIP: tok_spm_ref.sh needs ../shared/models (set MX_SHARED)"
    exit 77
fi
PY=/usr/bin/python3
"$PY" "$MX_SRCDIR/tests/tok_spm_ref.py" "$MIXEL" "$MX_SHARED/models/stories260K.gguf" 1 60 &&
"$PY" "$MX_SRCDIR/tests/tok_spm_ref.py" "$MIXEL" "$MX_SHARED/models/llama2-vocab.gguf" 2 60
