#!/bin/sh
# tok_peer.sh - ids equal to llama.cpp's on our own strings (tests/golden/tok/strings.rec: digits,
# fractions, CJK, emoji, code, whitespace runs, special-token texts, ...) with each of llama.cpp's
# vocabularies listed in tests/golden/tok/vocabs, with BOS, without, and with special tokens
# parsed: compared with the committed peer ids (tests/golden/tok/NAME.ids.gz, made by
# make_goldens.sh) and, when MX_LLREF names the peer driver, with the peer run now. The
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
for name in $(cat "$g/vocabs"); do
    v=$src/models/ggml-vocab-$name.gguf
    [ -f "$v" ] || fail "$v missing"
    "$drv" records "$v" <"$g/strings.rec" >"$d/mine" 2>"$d/err" || fail "$name: $(cat "$d/err")"
    gzip -dc "$g/$name.ids.gz" >"$d/want" || fail "$name: bad golden"
    if ! cmp -s "$d/want" "$d/mine"; then
        echo "MISMATCH $name vs the committed peer ids:"
        show "$d/want" "$d/mine"
        bad=$((bad + 1))
    fi
    if [ -n "$peer" ]; then
        "$peer" "$v" tokenize <"$g/strings.rec" 2>/dev/null | grep -v '^DETOK ' >"$d/peer"
        if ! cmp -s "$d/peer" "$d/mine"; then
            echo "MISMATCH $name vs the peer now:"
            show "$d/peer" "$d/mine"
            bad=$((bad + 1))
        fi
    fi
    echo "$name: $(grep -c '^END$' "$d/mine") strings x 3 compared"
done
[ $bad -eq 0 ] || fail "$bad vocabularies differ from llama.cpp"
echo "all equal"
