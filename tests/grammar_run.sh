#!/bin/sh
# grammar_run.sh - `mixel run --grammar FILE.gbnf` end to end with an untrained model
# (tiny-mixtral-f32, temperature 1, several seeds): the answer follows the grammar (a list of
# yes|no checked with a regex, a JSON object checked with Python's json module, Unicode letters in
# a bounded repetition), generation ends by itself at the grammar's end, the same seed gives the
# same text, and a malformed grammar fails with file:line:col (exit 1).
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: grammar_run.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
command -v python3 >/dev/null \
    || { echo "SKIP: grammar_run.sh needs python3 (the JSON check)"; exit 77; }
M="$MX_SHARED/models/tiny-mixtral-f32.gguf"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cat >"$T/yesno.gbnf" <<'G'
# a list of answers
root ::= item ("," " "? item){0,5} "."
item ::= "yes" | "no"
G
cat >"$T/json.gbnf" <<'G'
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
G
cat >"$T/greek.gbnf" <<'G'
root ::= word (" " word){1,3} "!"
word ::= [α-ω]{2,5}
G
matches() { # python regex: does all of $T/out match it?
    python3 -c 'import re, sys
t = open(sys.argv[2], encoding="utf-8").read()
sys.exit(0 if re.fullmatch(sys.argv[1], t) else 1)' "$1" "$T/out"
}
run() { # grammar seed -> $T/out, $T/err
    "$MIXEL" run -m "$M" -p "Answer:" --grammar "$T/$1.gbnf" --temp 1 --seed "$2" -n 300 \
        >"$T/out" 2>"$T/err" || fail "$1 seed $2: exit $?: $(cat "$T/err")"
}
for s in 1 2 3 4; do
    run yesno $s
    grep -q 'stopped: end of text' "$T/err" || fail "yesno seed $s did not end: $(cat "$T/err")"
    matches '(yes|no)(, ?(yes|no)){0,5}\.' \
        || fail "yesno seed $s: '$(cat "$T/out")' is not a list of yes|no"
    run greek $s
    grep -q 'stopped: end of text' "$T/err" || fail "greek seed $s did not end: $(cat "$T/err")"
    matches '[α-ω]{2,5}( [α-ω]{2,5}){1,3}!' \
        || fail "greek seed $s: '$(cat "$T/out")'"
done
n_done=0
for s in 1 2 3 4 5; do
    run json $s
    # an object the length limit cut is a prefix of one; a finished one must parse
    if grep -q 'stopped: end of text' "$T/err"; then
        python3 -c 'import json, sys
v = json.load(open(sys.argv[1], encoding="utf-8"))
sys.exit(0 if isinstance(v, dict) else 1)' "$T/out" \
            || fail "json seed $s: not a JSON object: '$(cat "$T/out")'"
        n_done=$((n_done + 1))
    else
        grep -q 'stopped: length' "$T/err" || fail "json seed $s: $(cat "$T/err")"
        head -c 1 "$T/out" | grep -q '{' || fail "json seed $s: '$(cat "$T/out")'"
    fi
done
[ "$n_done" -ge 2 ] || fail "only $n_done of 5 JSON answers finished"
grep -q 'grammar: .* us per token' "$T/err" || fail "no grammar cost line: $(cat "$T/err")"
# the same seed, the same text
run json 3; cp "$T/out" "$T/a"; run json 3
cmp -s "$T/out" "$T/a" || fail "json seed 3 gave two texts"
# errors: a malformed grammar, a missing file
printf 'root ::= "a" | foo\n' >"$T/bad.gbnf"
"$MIXEL" run -m "$M" -p x --grammar "$T/bad.gbnf" >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "bad grammar: exit code"
grep -q 'bad.gbnf:1:16: undefined rule .foo.' "$T/err" || fail "bad grammar: $(cat "$T/err")"
"$MIXEL" run -m "$M" -p x --grammar "$T/none.gbnf" >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "missing grammar: exit code"
grep -q 'none.gbnf' "$T/err" || fail "missing grammar: $(cat "$T/err")"
# mixel bench --grammar: the cost per token and its share of a decode step
"$MIXEL" bench -m "$M" -p 0 -n 32 -r 1 --mem-mib 16 --grammar "$T/yesno.gbnf" >"$T/out" \
    2>"$T/err" || fail "bench --grammar: $(cat "$T/err")"
grep -Eq '^grammar +[0-9.]+ us per token, [0-9.]+ % of a [0-9.]+ ms step' "$T/out" \
    || fail "bench --grammar: $(cat "$T/out")"
echo "PASS: grammar_run.sh ($n_done of 5 JSON answers finished)"
