#!/bin/sh
# tokenize_cli.sh - `mixel tokenize` / `mixel detokenize` on the Llama-2 vocabulary of ../shared:
# JSON ids with and without BOS, --parse-special, -f FILE and stdin, --pieces, the round trip
# through detokenize (raw bytes into a pipe), and the exit codes (1 runtime, 2 usage).
set -u
fail() { echo "FAIL: $*"; exit 1; }
M="${MX_SHARED:-}/models/llama2-vocab.gguf"
if [ -z "${MX_SHARED:-}" ] || [ ! -f "$M" ]; then
    echo "SKIP: tokenize_cli.sh needs ../shared/models/llama2-vocab.gguf (set MX_SHARED)"
    exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/mx-tokcli.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT

out=$("$MIXEL" tokenize -m "$M" "Hello world") || fail "tokenize exited non-zero"
[ "$out" = "[1, 15043, 3186]" ] || fail "ids with BOS: $out"
out=$("$MIXEL" tokenize -m "$M" --no-bos Hello world) || fail "tokenize --no-bos"
[ "$out" = "[15043, 3186]" ] || fail "ids without BOS (args joined): $out"
out=$("$MIXEL" tokenize -m "$M" --parse-special 'Hello<s>world</s>')
[ "$out" = "[1, 15043, 1, 3186, 2]" ] || fail "--parse-special: $out"
out=$("$MIXEL" tokenize -m "$M" 'Hello<s>world</s>')
[ "$out" = "[1, 15043, 29966, 29879, 29958, 11526, 829, 29879, 29958]" ] || fail "literal <s>: $out"
printf 'line one\nline two' >"$d/in.txt"
out=$("$MIXEL" tokenize -m "$M" -f "$d/in.txt")
[ "$out" = "[1, 1196, 697, 13, 1220, 1023]" ] || fail "-f FILE: $out"
out=$(printf '' | "$MIXEL" tokenize -m "$M" -f -)
[ "$out" = "[1]" ] || fail "empty stdin: $out"
"$MIXEL" tokenize -m "$M" --pieces --no-bos "Hello world" >"$d/pieces" || fail "--pieces"
printf '15043\t\342\226\201Hello\n3186\t\342\226\201world\n' | cmp -s - "$d/pieces" \
    || fail "--pieces output: $(cat "$d/pieces")"
# a newline piece is escaped, never raw
"$MIXEL" tokenize -m "$M" --pieces --no-bos "a
b" | grep -q '^13	<0x0A>$' || fail "--pieces newline token"

# detokenize: separate args, comma list, JSON array; raw bytes into a pipe
out=$("$MIXEL" detokenize -m "$M" 15043 3186)
[ "$out" = "Hello world" ] || fail "detokenize args: '$out'"
out=$("$MIXEL" detokenize -m "$M" 15043,3186)
[ "$out" = "Hello world" ] || fail "detokenize comma list: '$out'"
out=$("$MIXEL" detokenize -m "$M" "[15043, 3186]")
[ "$out" = "Hello world" ] || fail "detokenize JSON array: '$out'"
"$MIXEL" detokenize -m "$M" 29871 243 162 156 133 >"$d/emoji" || fail "detokenize bytes"
printf '\360\237\231\202' | cmp -s - "$d/emoji" || fail "byte tokens not joined into U+1F642"
out=$("$MIXEL" detokenize -m "$M" --special 1 15043 2)
[ "$out" = "<s> Hello</s>" ] || fail "--special: '$out'"
out=$(echo "[15043, 3186]" | "$MIXEL" detokenize -m "$M" -f -)
[ "$out" = "Hello world" ] || fail "detokenize -f -: '$out'"
# round trip of a file with tabs, CR LF and UTF-8
printf 'caf\303\251\tna\303\257ve\r\nline 2 \360\237\231\202 end' >"$d/rt.txt"
ids=$("$MIXEL" tokenize -m "$M" --no-bos -f "$d/rt.txt") || fail "tokenize rt"
"$MIXEL" detokenize -m "$M" "$ids" >"$d/rt.out" || fail "detokenize rt"
cmp -s "$d/rt.txt" "$d/rt.out" || fail "round trip differs"

# errors
"$MIXEL" tokenize "x" >/dev/null 2>"$d/err"; [ $? -eq 2 ] || fail "no -m: want exit 2"
grep -q -- '-m MODEL is required' "$d/err" || fail "no -m message"
"$MIXEL" tokenize -m "$M" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no text: want exit 2"
"$MIXEL" tokenize -m "$M" --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad option: exit 2"
"$MIXEL" tokenize -m "$d/none.gguf" x >/dev/null 2>"$d/err"; [ $? -eq 1 ] || fail "no model: 1"
grep -q 'none.gguf' "$d/err" || fail "missing model message"
"$MIXEL" detokenize -m "$M" 1 32000 >/dev/null 2>"$d/err"; [ $? -eq 1 ] || fail "bad id: 1"
grep -q '32000' "$d/err" || fail "bad id message: $(cat "$d/err")"
"$MIXEL" detokenize -m "$M" 1 x2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "non-number id: 2"
"$MIXEL" tokenize -m "$d" x >/dev/null 2>"$d/err"; [ $? -eq 1 ] || fail "no CLIP vocab: 1"
grep -q 'install-clip-vocab.sh' "$d/err" || fail "no hint to install the CLIP vocabulary"
echo "ok"
