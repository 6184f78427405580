#!/bin/sh
# eval_mc.sh - `mixel eval mc` and `mixel eval gen` from the outside, on the small real models:
# stories260K (a real story model) picks the story continuation over shuffled words in every
# format (HellaSwag text, JSONL, llama.cpp binary: same per-choice numbers in all three), the
# random-weight tiny-mixtral stays near chance; MMLU k-shot and Winogrande run; the per-choice
# log-likelihoods equal llama.cpp's from its golden logits (eval_mc_peer.py); eval gen asks
# through the chat template exactly what `mixel run --session` asks; bad input gives clear
# errors with exit 1 (runtime) or 2 (usage).
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: eval_mc.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
S="$MX_SHARED/models/stories260K.gguf"
R="$MX_SHARED/models/tiny-mixtral-f32.gguf"
D="$MX_SRCDIR/tests/data/eval"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
# field NAME FILE: a number from the --json line
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$2"; }

# the real model beats chance clearly (20 tasks, chance 25 %): at least 16 right
for f in hellaswag.txt arc.jsonl mc.bin; do
    "$MIXEL" eval mc -m "$S" -f "$D/$f" -t 2 --json --json-items "$T/items-$f" \
        >"$T/out" 2>"$T/err" || fail "eval mc $f exited $?: $(cat "$T/err")"
    [ "$(wc -l <"$T/out")" -eq 1 ] || fail "$f: --json printed more than one line"
    c=$(field correct "$T/out")
    [ "${c:-0}" -ge 16 ] || fail "$f: stories260K got $c of 20 (chance is 5)"
    grep -q '"tasks": 20,' "$T/out" || fail "$f: $(cat "$T/out")"
    grep -q '"complete": true' "$T/out" || fail "$f: $(cat "$T/out")"
    grep -q 'task 20/20  accuracy' "$T/err" || fail "$f: no progress on stderr"
    grep -q 'random chance 25.00 %' "$T/err" || fail "$f: no summary: $(cat "$T/err")"
done
# HellaSwag, JSONL and the binary score the same way: the same numbers per task (HellaSwag's in
# llama.cpp's random order, so sorted by task). Equal but for float order: the formats order the
# tasks differently, so the shared context's tokens meet the F32 sgemm in other batches, and
# OpenBLAS's Haswell / Zen kernel gives a column's sums differently by its place in the batch
# (every line identical with OPENBLAS_CORETYPE=Sandybridge; see test_gptoss's rows_match). Same
# task, answer, prediction and token counts; log-probability sums within 2e-4 of their size (seen
# here: 2.6e-3 on a sum of -84.3 over 14 tokens; a wrongly scored ending moves it by whole units).
same_scores() { # same_scores A B: exit 0 when the item lines agree as above
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 - "$1" "$2" <<'EOF2'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = len(a) == len(b)
for x, y in zip(a, b):
    lx, ly = x.pop("logprob_sum"), y.pop("logprob_sum")
    ok = ok and x == y and len(lx) == len(ly) and all(
        abs(p - q) <= 2e-4 * max(1.0, abs(p)) for p, q in zip(lx, ly))
sys.exit(0 if ok else 1)
EOF2
    else
        cmp -s "$1" "$2"
    fi
}
sort "$T/items-hellaswag.txt" >"$T/hs.sorted"
sort "$T/items-arc.jsonl" >"$T/arc.sorted"
same_scores "$T/hs.sorted" "$T/arc.sorted" || fail "hellaswag and jsonl per-task scores differ"
same_scores "$T/items-arc.jsonl" "$T/items-mc.bin" || fail "jsonl and binary per-task scores differ"
head -n 1 "$T/items-hellaswag.txt" | grep -q '^{"task": 8, ' || fail "hellaswag order: \
$(head -n 1 "$T/items-hellaswag.txt")"

# random weights: near chance (at most 9 of 20; the 95 % interval of 5/20 reaches 47 %)
"$MIXEL" eval mc -m "$R" -f "$D/hellaswag.txt" -t 2 --json -q >"$T/out" 2>"$T/err" \
    || fail "tiny-mixtral: $(cat "$T/err")"
c=$(field correct "$T/out")
[ "${c:-99}" -le 9 ] || fail "tiny-mixtral (random weights) got $c of 20"

# human summary on stdout without --json; --tasks picks llama.cpp's tasks (tests/eval_pick_ref.cpp:
# "./pick 20 5" prints them; HellaSwag's order starts with task 8 the same way)
"$MIXEL" eval mc -m "$S" -f "$D/arc.jsonl" -t 2 --tasks 5 -q --json-items "$T/five" \
    >"$T/out" 2>"$T/err" || fail "--tasks 5: $(cat "$T/err")"
grep -q '^arc: 5 tasks, accuracy' "$T/out" || fail "summary: $(cat "$T/out")"
[ "$(cut -d, -f1 "$T/five" | tr -d '{"task: ' | tr '\n' ' ')" = "8 18 12 15 0 " ] \
    || fail "--tasks 5 picked $(cut -d, -f1 "$T/five" | tr '\n' ' ')"

# MMLU: 2-shot from the file itself (18 scored) and from a dev file (all 20); Winogrande
"$MIXEL" eval mc -m "$S" -f "$D/stories_test.csv" -k 2 -t 2 --json -q >"$T/out" 2>"$T/err" \
    || fail "mmlu -k 2: $(cat "$T/err")"
grep -q '"format": "mmlu", "file_syntax": "mmlu csv", "tasks": 18,.*"k_shot": 2' "$T/out" \
    || fail "mmlu -k 2: $(cat "$T/out")"
"$MIXEL" eval mc -m "$S" -f "$D/stories_test.csv" -k 3 --dev "$D/arc.jsonl" -t 2 --json -q \
    >"$T/out" 2>"$T/err" || fail "mmlu --dev: $(cat "$T/err")"
grep -q '"tasks": 20,.*"k_shot": 3' "$T/out" || fail "mmlu --dev: $(cat "$T/out")"
"$MIXEL" eval mc -m "$S" -f "$D/winogrande.csv" -t 2 --json -q >"$T/out" 2>"$T/err" \
    || fail "winogrande: $(cat "$T/err")"
grep -q '"format": "winogrande", .*"tasks": 6,.*"chance": 0.500000' "$T/out" \
    || fail "winogrande: $(cat "$T/out")"

# llama.cpp's numbers: every right choice's log-likelihood from the golden logits
if command -v python3 >/dev/null 2>&1; then
    python3 "$MX_SRCDIR/tests/eval_mc_peer.py" "$MIXEL" "$S" \
        "$MX_SHARED/refs/llm/logits-stories260K.json" "$T" >"$T/peer" 2>&1 \
        || fail "per-choice log-likelihoods differ from llama.cpp's: $(cat "$T/peer")"
    [ "$(grep -c '^ok ' "$T/peer")" -eq 18 ] || fail "peer check: $(cat "$T/peer")"
else
    fail "python3 is needed for the llama.cpp comparison"
fi

# errors: usage (2) and runtime (1), with the reason
"$MIXEL" eval mc -m "$S" >/dev/null 2>"$T/err"; [ $? -eq 2 ] || fail "no -f: exit not 2"
grep -q 'need -m MODEL and -f FILE' "$T/err" || fail "no -f: $(cat "$T/err")"
"$MIXEL" eval mc -m "$S" -f "$D/arc.jsonl" --format foo >/dev/null 2>"$T/err"
[ $? -eq 2 ] || fail "--format foo: exit not 2"
grep -q "'foo' is not one of auto, hellaswag" "$T/err" || fail "--format: $(cat "$T/err")"
"$MIXEL" eval mc -m "$S" -f "$D/hellaswag.txt" -k 2 >/dev/null 2>"$T/err"
[ $? -eq 2 ] || fail "-k on hellaswag: exit not 2"
grep -q 'are for MMLU files; this one is hellaswag' "$T/err" || fail "-k: $(cat "$T/err")"
head -n 5 "$D/hellaswag.txt" >"$T/bad.txt"
"$MIXEL" eval mc -m "$S" -f "$T/bad.txt" >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "bad exit"
grep -q 'bad.txt: 5 lines, not a multiple of 6' "$T/err" || fail "bad file: $(cat "$T/err")"
"$MIXEL" eval mc -m "$S" -f "$T/none.txt" >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "none"
grep -q 'none.txt: cannot open (No such file' "$T/err" || fail "missing file: $(cat "$T/err")"
"$MIXEL" eval mc -m "$S" -f "$D/mc.bin" -c 16 >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "-c 16"
grep -q 'task [0-9]*: a choice needs [0-9]* tokens, the context holds 16' "$T/err" \
    || fail "small context: $(cat "$T/err")"

# eval gen: GSM8K references parse, the replies are the chat's (mixel run --session, greedy)
"$MIXEL" eval gen -m "$S" -f "$D/gsm8k.jsonl" -t 2 -n 24 --json --json-items "$T/gen" \
    >"$T/out" 2>"$T/err" || fail "eval gen exited $?: $(cat "$T/err")"
grep -q '"questions": 3, "correct": 0,' "$T/out" || fail "eval gen: $(cat "$T/out")"
grep -q '"want":"2400"' "$T/gen" || fail "reference 2,400 not read as 2400: $(cat "$T/gen")"
grep -q 'question 3/3  exact match' "$T/err" || fail "eval gen progress: $(cat "$T/err")"
q=$(sed -n 1p "$T/gen" | python3 -c 'import json,sys; print(json.load(sys.stdin)["question"])')
XDG_DATA_HOME="$T/data" "$MIXEL" run -m "$S" --session evalq -p "$q" --temp 0 -n 24 -t 2 \
    >"$T/chat" 2>"$T/err" || fail "run --session: $(cat "$T/err")"
sed -n 1p "$T/gen" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["reply"])' \
    >"$T/reply"
# (run ends its output with a newline; the reply is compared without it)
[ "$(cat "$T/reply")" = "$(cat "$T/chat")" ] || fail "eval gen's reply '$(cat "$T/reply")' is not the chat's \
'$(cat "$T/chat")'"
printf '{"question": "q", "answer": "no number"}\n' >"$T/nonum.jsonl"
"$MIXEL" eval gen -m "$S" -f "$T/nonum.jsonl" >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "nonum"
grep -q 'question 1: the reference answer has no number' "$T/err" || fail "$(cat "$T/err")"
"$MIXEL" eval gen -m "$S" >/dev/null 2>"$T/err"; [ $? -eq 2 ] || fail "gen without -f"
echo "eval_mc.sh: ok"
