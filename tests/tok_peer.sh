#!/bin/sh
# tok_peer.sh - ids equal to llama.cpp's on our own strings (tests/golden/tok/strings.rec: digits,
# fractions, CJK, emoji, code, whitespace runs, special-token texts, ...) with each of llama.cpp's
# vocabularies listed in tests/golden/tok/vocabs, and with its llama-bpe vocabulary relabelled
# with each pre-tokenizer listed in tests/golden/tok/pres (the ones llama.cpp ships no
# vocabulary for: tekken, gpt-4o, deepseek-v3, kimi-k2, ...), with BOS, without, and with
# special tokens parsed: compared with the committed peer ids (tests/golden/tok/*.ids.gz, made
# by make_goldens.sh) and, when MX_LLREF names the peer driver, with the peer run now. The
# vocabularies come from llama.cpp's source tree (tests/llama_src.sh; fetched once with npm).
set -u
fail() { echo "FAIL: $*"; exit 1; }
src=$(sh "$MX_SRCDIR/tests/llama_src.sh")
rc=$?
[ $rc -eq 0 ] || exit $rc
g=$MX_SRCDIR/tests/golden/tok
drv=$MX_BUILDDIR/tests/tok_vocab_drv
d=$(mktemp -d "${TMPDIR:-/tmp}/mx-tokpeer.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
peer=""
if [ -n "${MX_LLREF:-}" ] && [ -x "$MX_LLREF" ]; then
    peer=$MX_LLREF
else
    echo "note: MX_LLREF not set: comparing with the committed goldens only"
fi

# the first record whose lines differ, with its text
show() {
    n=$(awk 'NR==FNR{a[FNR]=$0; next} a[FNR]!=$0{print FNR; exit}' "$1" "$2")
    rec=$(head -n "$n" "$1" | grep -c '^END$')
    echo "  string $((rec + 1)) of strings.rec, line $n:"
    echo "    want: $(sed -n "${n}p" "$1")"
    echo "    got:  $(sed -n "${n}p" "$2")"
}

bad=0
# check NAME VOCAB: our ids for strings.rec against NAME.ids.gz and the peer's
check() {
    "$drv" records "$2" <"$g/strings.rec" >"$d/mine" 2>"$d/err" || fail "$1: $(cat "$d/err")"
    gzip -dc "$g/$1.ids.gz" >"$d/want" || fail "$1: bad golden"
    if ! cmp -s "$d/want" "$d/mine"; then
        echo "MISMATCH $1 vs the committed peer ids:"
        show "$d/want" "$d/mine"
        bad=$((bad + 1))
    fi
    if [ -n "$peer" ]; then
        "$peer" "$2" tokenize <"$g/strings.rec" 2>/dev/null | grep -v '^DETOK ' >"$d/peer"
        if ! cmp -s "$d/peer" "$d/mine"; then
            echo "MISMATCH $1 vs the peer now:"
            show "$d/peer" "$d/mine"
            bad=$((bad + 1))
        fi
    fi
    echo "$1: $(grep -c '^END$' "$d/mine") strings x 3 compared"
}
for name in $(cat "$g/vocabs"); do
    v=$src/models/ggml-vocab-$name.gguf
    [ -f "$v" ] || fail "$v missing"
    check "$name" "$v"
done
for pre in $(cat "$g/pres"); do
    "$drv" repre "$src/models/ggml-vocab-llama-bpe.gguf" "$pre" "$d/v.gguf" || fail "repre $pre"
    check "llama-bpe@$pre" "$d/v.gguf"
done
[ $bad -eq 0 ] || fail "$bad vocabularies differ from llama.cpp"
echo "all equal"
