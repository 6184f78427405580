#!/bin/sh
# tok_vocab.sh - llama.cpp's own tokenizer test vectors: every models/ggml-vocab-NAME.gguf of its
# source tree (tests/llama_src.sh) that has NAME.gguf.inp/.out is tokenized (no BOS, no special
# parsing, as llama.cpp's test-tokenizer-0) and must give the expected ids exactly; vocabularies
# of tokenizer kinds mixel does not implement (bert's WordPiece, t5's Unigram) must be refused
# with a message naming the kind.
set -u
fail() { echo "FAIL: $*"; exit 1; }
src=$(sh "$MX_SRCDIR/tests/llama_src.sh")
rc=$?
[ $rc -eq 0 ] || exit $rc
drv=$MX_BUILDDIR/tests/tok_vocab_drv
n=0
for v in "$src"/models/ggml-vocab-*.gguf; do
    name=$(basename "$v" .gguf)
    name=${name#ggml-vocab-}
    case $name in
    bert-bge | nomic-bert-moe)
        out=$("$drv" records "$v" </dev/null 2>&1)
        [ $? -eq 3 ] || fail "$name: a $name vocabulary should be refused"
        echo "$out" | grep -q "tokenizer model '.*' is not supported" ||
            fail "$name: unclear refusal: $out"
        echo "$name: refused (not implemented): $out"
        continue
        ;;
    esac
    [ -f "$v.inp" ] || continue
    "$drv" vectors "$v" "$v.inp" "$v.out" || fail "$name: ids differ from llama.cpp's vectors"
    n=$((n + 1))
done
[ $n -ge 14 ] || fail "only $n vocabularies with test vectors in $src/models"
echo "$n vocabularies equal to llama.cpp's test vectors"
