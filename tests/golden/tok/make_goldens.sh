#!/bin/sh
# make_goldens.sh - the peer's ids for strings.rec with each llama.cpp vocabulary that mixel
# reads: one NAME.ids.gz per models/ggml-vocab-NAME.gguf, the output of
# `llref VOCAB tokenize < strings.rec` (../shared/tools/peer-llama: llama.cpp via
# node-llama-cpp 3.21.1) without its DETOK lines: per string "BOS ids" (add_special),
# "NOBOS ids", "SPECIAL ids" (add_special + parse_special) and "END".
# Usage: MX_LLREF=/path/to/llref tests/golden/tok/make_goldens.sh   (after make_strings.py)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${MX_LLREF:?set MX_LLREF to the peer driver llref}"
src=$("$here/../../llama_src.sh")
for name in $(cat "$here/vocabs"); do
    "$MX_LLREF" "$src/models/ggml-vocab-$name.gguf" tokenize <"$here/strings.rec" 2>/dev/null |
        grep -v '^DETOK ' | gzip -9n >"$here/$name.ids.gz"
    echo "$name: $(gzip -dc "$here/$name.ids.gz" | grep -c '^END$') strings"
done
