#!/bin/sh
# make_goldens.sh - the peer's ids for strings.rec with each llama.cpp vocabulary that mixel
# reads (list in vocabs): one NAME.ids.gz per models/ggml-vocab-NAME.gguf, and with the
# llama-bpe vocabulary relabelled with each pre-tokenizer in pres (llama.cpp ships no
# vocabulary for those): one llama-bpe@PRE.ids.gz each. Each is the output of
# `llref VOCAB tokenize < strings.rec` (../shared/tools/peer-llama: llama.cpp via
# node-llama-cpp 3.21.1) without its DETOK lines: per string "BOS ids" (add_special),
# "NOBOS ids", "SPECIAL ids" (add_special + parse_special) and "END".
# Usage: MX_LLREF=/path/to/llref tests/golden/tok/make_goldens.sh BUILDDIR
#   (after make_strings.py; BUILDDIR has tests/tok_vocab_drv, which writes the relabelled files)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${MX_LLREF:?set MX_LLREF to the peer driver llref}"
build=${1:?usage: make_goldens.sh BUILDDIR}
src=$("$here/../../llama_src.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in $(cat "$here/vocabs"); do
    "$MX_LLREF" "$src/models/ggml-vocab-$name.gguf" tokenize <"$here/strings.rec" 2>/dev/null |
        grep -v '^DETOK ' | gzip -9n >"$here/$name.ids.gz"
    echo "$name: $(gzip -dc "$here/$name.ids.gz" | grep -c '^END$') strings"
done
for pre in $(cat "$here/pres"); do
    "$build/tests/tok_vocab_drv" repre "$src/models/ggml-vocab-llama-bpe.gguf" "$pre" "$tmp/v.gguf"
    "$MX_LLREF" "$tmp/v.gguf" tokenize <"$here/strings.rec" 2>/dev/null |
        grep -v '^DETOK ' | gzip -9n >"$here/llama-bpe@$pre.ids.gz"
    echo "llama-bpe@$pre: $(gzip -dc "$here/llama-bpe@$pre.ids.gz" | grep -c '^END$') strings"
done
