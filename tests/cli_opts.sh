#!/bin/sh
# cli_opts.sh - the options run, chat, bench and logits share (cli/opts.c, one table): every
# number is checked against its range with a one-line message naming the option and the range
# (exit 2); `mixel --bogus` is one line and a hint, not the chat usage under the binary's path;
# --device picks the backend; -m takes a name `mixel list` shows (an ollama tag here); bench
# counts parameters in K/M/B and reports prefill and generation at --depth; --stop works the
# same in `run` and `run --session` (one loop).
set -u
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
# usage errors need no model: exit 2, one line, the option and its range named
check() { # check WANT-REGEX ARGS...: exits 2, one line on stderr matching WANT
    want=$1
    shift
    "$MIXEL" "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    [ $rc -eq 2 ] || fail "mixel $*: exit $rc, not 2: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "mixel $*: not one line: $(cat "$T/err")"
    grep -q -- "$want" "$T/err" || fail "mixel $*: '$(cat "$T/err")' lacks '$want'"
    [ -s "$T/out" ] && fail "mixel $*: wrote to stdout"
    return 0
}
check "^mixel run: --temp: '-1' is not a number from 0 to 5" run -m x.gguf -p hi --temp -1
check "^mixel chat: --temp: 'abc' is not a number from 0 to 5" chat --temp abc
check "^mixel: --temp: 'abc' is not a number from 0 to 5 (see mixel --help)" --temp abc
check "^mixel run: --top-p: '0' is not a number above 0, up to 1" run -m x -p x --top-p 0
check "^mixel run: --top-k: '1.5' is not a whole number from 0 to" run -m x -p x --top-k 1.5
check "^mixel run: -c: '0' is not a whole number from 1 to 16777216" run -m x -p x -c 0
check "^mixel chat: --ctx: '-5' is not a whole number from 1 to" chat --ctx -5
check "^mixel bench: -t: '0' is not a whole number from 1 to 1024" bench -t 0
check "^mixel logits: --kv-type: 'q4' is not one of f32, f16, q8_0" logits --kv-type q4
check "^mixel run: -n: '-2' is not a whole number from -1 to" run -m x -p x -n -2
check "^mixel run: --seed: '-3' is not a whole number from 0 to" run -m x -p x --seed -3
check "^mixel chat: --min-p: '2' is not a number from 0 to 1" chat --min-p 2
check "^mixel run: --repeat-penalty: 'nan' is not a number above 0" run --repeat-penalty nan
check "^mixel bench: -r: 'x' is not a whole number from 1 to" bench -r x
check "^mixel run: --device: 'tpu' is not a device (auto, .*cpu" run --device tpu
check "^mixel run: --temp needs a value" run -m x -p x --temp
check "^mixel: unknown option '--bogus' (see mixel --help)$" --bogus
check "^mixel chat: unknown option '--bogus' (see mixel chat --help)$" chat --bogus
check "^mixel run: unknown option '--bogus' (see mixel run --help)$" run --bogus
grep -q "$MIXEL" "$T/err" && fail "an error names the binary's path"
# every command's --help lists the shared options it takes, from the same table
for c in run chat bench logits; do
    "$MIXEL" $c --help >"$T/h" || fail "$c --help"
    grep -q -- '--device D' "$T/h" || fail "$c --help lacks --device"
    grep -q -- '-t, --threads N' "$T/h" || fail "$c --help lacks --threads"
done
"$MIXEL" run --help | grep -q -- '--top-k K' || fail "run --help lacks --top-k"
"$MIXEL" bench --help | grep -q -- '--top-k' && fail "bench --help lists sampling options"

if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: the model cases need ../shared (set MX_SHARED)"
    exit 77
fi
M="$MX_SHARED/models/stories260K.gguf"
want=', there was a little girl named Lily'
# --device cpu and the --opt=value form
"$MIXEL" run -m "$M" -p "Once upon a time" --temp=0 -n 10 --device cpu -q >"$T/o" 2>"$T/err" \
    || fail "run --device cpu: $(cat "$T/err")"
[ "$(cat "$T/o")" = "$want" ] || fail "run --device cpu: '$(cat "$T/o")'"
# a device this machine cannot use: run and the chat's engine (on a pty: chat wants a terminal)
# fail before anything else, saying why
if "$MIXEL" doctor </dev/null | grep -q '^          cuda .*: no\|^          cuda .*not'; then
    "$MIXEL" run -m "$M" -p x --device cuda >/dev/null 2>"$T/err"
    [ $? -eq 1 ] || fail "run --device cuda without a usable GPU did not exit 1"
    grep -q "device 'cuda' cannot be used" "$T/err" || fail "run --device cuda: $(cat "$T/err")"
    if command -v script >/dev/null 2>&1; then
        printf 'exec "$MIXEL" chat -m "$1" --device cuda\n' >"$T/chat.sh"
        # bounded: a chat that did start would wait for keys on the pty
        MIXEL="$MIXEL" timeout 20 script -qec "sh '$T/chat.sh' '$M'" /dev/null </dev/null \
            >"$T/o" 2>&1
        grep -q "mixel chat: device 'cuda' cannot be used" "$T/o" ||
            fail "chat --device: $(cat "$T/o")"
    fi
fi
# -m NAME: an ollama tag as `mixel list` shows it (a manifest pointing at a blob)
H="$T/home"
O="$H/.ollama/models"
mkdir -p "$O/blobs" "$O/manifests/registry.ollama.ai/library/tinystory"
D=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
cp "$M" "$H/.ollama/models/blobs/sha256-$D"
printf '{"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s"}]}' \
    "$D" >"$H/.ollama/models/manifests/registry.ollama.ai/library/tinystory/latest"
(cd "$T" && HOME="$H" "$MIXEL" list) >"$T/list" 2>&1 || fail "list: $(cat "$T/list")"
grep -q '^  tinystory:latest (ollama)' "$T/list" || fail "list: $(cat "$T/list")"
(cd "$T" && HOME="$H" "$MIXEL" models) | cmp -s - "$T/list" || fail "models differs from list"
(cd "$T" && HOME="$H" "$MIXEL" run -m tinystory:latest -p "Once upon a time" --temp 0 -n 10 \
    -q) >"$T/o" 2>"$T/err" || fail "run -m tinystory:latest: $(cat "$T/err")"
[ "$(cat "$T/o")" = "$want" ] || fail "run -m tinystory:latest: '$(cat "$T/o")'"
(cd "$T" && HOME="$H" "$MIXEL" tokenize -m tinystory:latest "Once upon a time") >"$T/o" \
    2>"$T/err" || fail "tokenize -m tinystory:latest: $(cat "$T/err")"
grep -q '^\[1, 403, 407' "$T/o" || fail "tokenize -m tinystory:latest: $(cat "$T/o")"
(cd "$T" && HOME="$H" "$MIXEL" run -m nosuch:latest -p x) >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "unknown model name did not exit 1"
grep -q "nosuch:latest" "$T/err" || fail "unknown name message: $(cat "$T/err")"
# bench: parameter counts in K/M/B, never "0.000 B" for a small model
"$MIXEL" bench -m "$M" -p 8 -n 4 -r 1 --mem-mib 8 -t 1 >"$T/b" 2>"$T/err" \
    || fail "bench: $(cat "$T/err")"
grep -q '^params  *2[0-9][0-9]\.[0-9] K total, ' "$T/b" || fail "bench params: $(cat "$T/b")"
grep -q '0\.000 B' "$T/b" && fail "bench still prints 0.000 B"
# bench --depth: prefill (-p tokens after D of context) and generation again, text and JSON
"$MIXEL" bench -m "$M" -p 8 -n 4 -r 1 --mem-mib 8 -t 1 --depth 16 >"$T/b" 2>"$T/err" \
    || fail "bench --depth: $(cat "$T/err")"
grep -q '^pp 8 @ 16 *[1-9][0-9.]* tokens/s$' "$T/b" || fail "bench pp at depth: $(cat "$T/b")"
grep -q '^tg 4 @ 16 *[1-9][0-9.]* tokens/s' "$T/b" || fail "bench tg at depth: $(cat "$T/b")"
"$MIXEL" bench -m "$M" -p 8 -n 0 -r 1 --mem-mib 8 -t 1 --depth 16 --json >"$T/b" \
    2>"$T/err" || fail "bench --depth --json: $(cat "$T/err")"
grep -q '"pp_depth": {"depth": 16, "n": 8, "tokens_per_s": [1-9]' "$T/b" \
    || fail "bench --json pp_depth: $(cat "$T/b")"
grep -q '"tg_depth"' "$T/b" && fail "bench --json: tg_depth without -n: $(cat "$T/b")"
# --stop cuts `run --session` exactly as plain `run` (one generate loop, one hold-back)
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 40 -q >"$T/free" 2>/dev/null
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 40 --session s1 --db "$T/h.db" -q \
    >"$T/sfree" 2>"$T/err" || fail "session run: $(cat "$T/err")"
stop=$(tr -d '\n' <"$T/sfree" | cut -c 12-16)
[ -n "$stop" ] || fail "session answer too short: '$(cat "$T/sfree")'"
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 40 --session s2 --db "$T/h.db" -q \
    --stop "$stop" >"$T/scut" 2>"$T/err" || fail "session --stop: $(cat "$T/err")"
case "$(tr -d '\n' <"$T/sfree")" in
"$(tr -d '\n' <"$T/scut")$stop"*) ;;
*) fail "--stop '$stop' in a session: '$(cat "$T/scut")' vs '$(cat "$T/sfree")'" ;;
esac
# a session answer ends at a full context with a notice (it never shifts the chat out from
# under itself, whatever run's shift default), exit 0
"$MIXEL" run -m "$M" -p "Once" --temp 0 -c 32 -n 80 --ignore-eos --session s3 --db "$T/h.db" \
    >"$T/o" 2>"$T/err" || fail "session in a small context: $(cat "$T/err")"
grep -q 'the context is full: the answer was cut' "$T/err" ||
    fail "no cut in a session: $(cat "$T/err")"
# ... and stored as cut (partial, "stop": "context_full"), not as complete
"$MIXEL" sessions export s3 --format json --db "$T/h.db" >"$T/s3.json" || fail "export s3"
grep -q '"stop": *"context_full"' "$T/s3.json" || fail "the cut answer is stored as complete"
echo "ok"
