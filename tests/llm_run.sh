#!/bin/sh
# llm_run.sh - `mixel run` and `mixel logits` from the outside: the greedy story of stories260K
# equals llama.cpp's gen_text (../shared/refs/llm/logits-stories260K.json, prompt "Once upon a
# time", 48 tokens), the same seed gives the same text, --stop cuts, the logits JSON carries the
# golden ids, and errors give the documented exit codes (1 runtime, 2 usage) with numbers.
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: llm_run.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
M="$MX_SHARED/models/stories260K.gguf"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
# the golden continuation (gen_text of the prompt "Once upon a time")
printf '%s' ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it,' >"$T/want"
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 48 >"$T/out" 2>"$T/err" \
    || fail "run exited $?: $(cat "$T/err")"
cmp -s "$T/out" "$T/want" || fail "greedy text differs: '$(cat "$T/out")'"
grep -q 'prompt 5 tokens' "$T/err" || fail "no prompt statistics on stderr"
grep -q 'tokens/s' "$T/err" || fail "no tokens/s on stderr"
# the default length runs past the golden 48 tokens, starting with the same text
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -q >"$T/long" 2>/dev/null || fail "run -q"
head -c "$(wc -c <"$T/want")" "$T/long" | cmp -s - "$T/want" || fail "default run text differs"
# same seed, same text; --stop ends before the string
"$MIXEL" run -m "$M" -p "Lily" --seed 7 -n 40 -q >"$T/s1" 2>/dev/null || fail "seeded run"
"$MIXEL" run -m "$M" -p "Lily" --seed 7 -n 40 -q >"$T/s2" 2>/dev/null || fail "seeded run 2"
cmp -s "$T/s1" "$T/s2" || fail "same seed gave different text"
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 --stop " Lily" -q >"$T/stop" 2>/dev/null
[ "$(cat "$T/stop")" = ", there was a little girl named" ] || fail "--stop: '$(cat "$T/stop")'"
# a full context stops generation with --no-context-shift (28 tokens after a 5-token prompt in
# a 32-token context); by default it shifts and goes on, with the same text up to the shift
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -c 32 -n 80 --no-context-shift \
    >"$T/full" 2>"$T/err" || fail "--no-context-shift"
grep -q 'generated 28 tokens.*stopped: context full' "$T/err" || fail "$(cat "$T/err")"
"$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -c 32 -n 80 >"$T/shift" 2>"$T/err" \
    || fail "run with context shifts: $(cat "$T/err")"
grep -q 'generated 80 tokens' "$T/err" || fail "context shift: $(cat "$T/err")"
grep -q '4 context shifts' "$T/err" || fail "context shift count: $(cat "$T/err")"
head -c "$(wc -c <"$T/full")" "$T/shift" | cmp -s - "$T/full" || fail "text before the shift"
# prompt longer than the context: an error with the numbers
"$MIXEL" run -m "$M" -p "Once upon a time there was a dog" -c 4 >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "prompt longer than the context did not exit 1"
grep -q 'the prompt is [0-9]* tokens, the context holds 4' "$T/err" || fail "$(cat "$T/err")"
# usage errors exit 2, runtime errors 1
"$MIXEL" run -p x >/dev/null 2>&1; [ $? -eq 2 ] || fail "run without -m"
"$MIXEL" run -m "$M" -p x --temp abc >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --temp"
"$MIXEL" run -m "$T/none.gguf" -p x >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "missing model"
grep -q 'none.gguf' "$T/err" || fail "missing model message: $(cat "$T/err")"
# logits: the golden prompt ids, one row of 512, and --all rows
"$MIXEL" logits -m "$M" -p "Once upon a time" >"$T/l.json" 2>"$T/err" \
    || fail "logits: $(cat "$T/err")"
grep -q '^{"ids": \[1,403,407,261,378\], "logits": \[' "$T/l.json" || fail "logits ids"
[ "$(grep -c '^  \[' "$T/l.json")" -eq 1 ] || fail "logits: not one row"
"$MIXEL" logits -m "$M" --ids 1,403,407 --all >"$T/a.json" || fail "logits --all"
[ "$(grep -c '^  \[' "$T/a.json")" -eq 3 ] || fail "logits --all: not 3 rows"
echo "1 403 407 261 378" >"$T/ids"
"$MIXEL" logits -m "$M" --ids-file "$T/ids" --rows 1,3 >"$T/r.json" || fail "logits --rows"
[ "$(grep -c '^  \[' "$T/r.json")" -eq 2 ] || fail "logits --rows: not 2 rows"
"$MIXEL" logits -m "$M" --ids 1,999 >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "bad id"
grep -q 'out of range' "$T/err" || fail "bad id message: $(cat "$T/err")"
echo "ok"
