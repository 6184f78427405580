#!/bin/sh
# tok_clip_ref.sh - `mixel tokenize` on CLIP against a Python reference of OpenAI's bpe() loop
# with stable-diffusion.cpp's text handling (tests/tok_clip_ref.py). Needs the CLIP vocabulary:
# $MX_CLIP_VOCAB, or the default $XDG_DATA_HOME/mixel/bpe_simple_vocab_16e6.txt
# (scripts/install-clip-vocab.sh installs it); skips without it.
set -u
DATA="${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}"
V="${MX_CLIP_VOCAB:-$DATA/mixel/bpe_simple_vocab_16e6.txt}"
if [ ! -f "$V" ]; then
    echo "SKIP: tok_clip_ref.sh needs the CLIP vocabulary ($V); run scripts/install-clip-vocab.sh"
    exit 77
fi
exec /usr/bin/python3 "$MX_SRCDIR/tests/tok_clip_ref.py" "$MIXEL" "$V" 1 40
