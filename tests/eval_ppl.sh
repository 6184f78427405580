#!/bin/sh
# eval_ppl.sh - `mixel eval` and `mixel eval ppl` from the command line: the dispatcher (help
# lists ppl, mc, gen; unknown subcommand exits 2), usage errors exit 2, a too-short or missing
# text exits 1 with a message; with ../shared: the real tiny story model's perplexity on story
# text is far below a random-weight model's (tiny-mixtral-f32, same 512-token vocabulary); the
# --json line has every field; progress lines on a pipe, a redrawn bar on a terminal; a model
# against its own --save-logits file gives KL ~0, 100 % top-1 and PPL(Q) = PPL(base); a
# `mixel quantize` Q8_0 copy gives a small positive KL and Q4_0 a larger one; a base from other
# tokens, another vocabulary size, another -c or a truncated file is refused.
set -u
MIXEL=${MIXEL:-./mixel}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mx_eval_ppl.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# the dispatcher
"$MIXEL" eval >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'ppl|mc|gen' "$tmp/err" && ok "eval alone -> 2 with usage" ||
    bad "eval alone ($rc)"
"$MIXEL" eval --help >"$tmp/out"; rc=$?
[ $rc -eq 0 ] && grep -q '^  ppl ' "$tmp/out" && grep -q '^  mc ' "$tmp/out" &&
    grep -q '^  gen ' "$tmp/out" && ok "eval --help lists ppl, mc, gen" || bad "eval --help"
"$MIXEL" eval nope >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown subcommand 'nope'" "$tmp/err" && ok "unknown subcommand" ||
    bad "unknown subcommand ($rc)"
"$MIXEL" --help | grep -q 'eval ppl|mc|gen' && ok "mixel --help names eval" || bad "--help"
"$MIXEL" eval ppl --help | grep -q -- '--kl-base' && ok "eval ppl --help" || bad "ppl --help"

# usage errors: exit 2 with a message naming the problem
for args in "-m x.gguf" "-f t.txt" "-m x -f t --chunks 0" "-m x -f t -c abc" "-m x -f t --bogus" \
    "-m x -f t -b 0" "-m x -f t --save-logits a --kl-base a"; do
    # shellcheck disable=SC2086
    "$MIXEL" eval ppl $args >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 2 ] && [ -s "$tmp/err" ] && ok "usage: $args -> 2" || bad "usage: $args ($rc)"
done

if [ ! -f "${MX_SHARED:-}/models/stories260K.gguf" ]; then
    echo "SKIP: eval_ppl.sh: the model cases need ../shared/models (set MX_SHARED)"
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
M=$MX_SHARED/models
T=${MX_SRCDIR:-.}/tests/data/story.txt
E="$MIXEL eval ppl -t 2"

# runtime errors: exit 1
printf 'Once upon a time.\n' >"$tmp/short.txt"
$E -m "$M/stories260K.gguf" -f "$tmp/short.txt" -c 64 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'needs at least 128' "$tmp/err" && ok "too-short text -> 1" ||
    bad "too-short text ($rc: $(cat "$tmp/err"))"
$E -m "$M/stories260K.gguf" -f "$tmp/absent.txt" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'absent.txt' "$tmp/err" && ok "missing text -> 1" || bad "missing ($rc)"
$E -m "$M/stories260K.gguf" -f "$T" -c 4096 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'needs at least 8192' "$tmp/err" && ok "-c larger than the text" ||
    bad "-c 4096 ($rc: $(cat "$tmp/err"))"

# JSON fields and numbers; progress on a pipe is one line per chunk
$E -m "$M/stories260K.gguf" -f "$T" -c 128 --json >"$tmp/story.json" 2>"$tmp/prog"; rc=$?
[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/story.json")" -eq 1 ] && ok "--json: one line" ||
    bad "--json ($rc)"
[ "$(grep -c '^\[[0-9]*/19\] PPL' "$tmp/prog")" -eq 19 ] && ok "19 progress lines" ||
    bad "progress lines: $(cat "$tmp/prog")"
$E -m "$M/tiny-mixtral-f32.gguf" -f "$T" -c 128 --json -q >"$tmp/random.json" 2>"$tmp/prog"
[ ! -s "$tmp/prog" ] && ok "-q: no progress" || bad "-q printed $(cat "$tmp/prog")"
"$PY" - "$tmp/story.json" "$tmp/random.json" <<'EOF' && ok "story model far below random" ||
import json, sys
s, r = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["ppl", "ppl_stderr", "scored_tokens", "chunks", "n_ctx", "tok_s", "model"]
assert list(s)[:7] == keys, list(s)
assert s["scored_tokens"] == 19 * 63 and s["chunks"] == 19 and s["n_ctx"] == 128, s
assert s["model"] == "stories260K" and s["tok_s"] > 0 and 0 < s["ppl_stderr"] < s["ppl"], s
# the trained model knows these stories; random weights on the same vocabulary do not
assert 1 < s["ppl"] < 10 and r["ppl"] > 100 * s["ppl"], (s["ppl"], r["ppl"])
print("story ppl %.3f, random-weight ppl %.1f" % (s["ppl"], r["ppl"]))
EOF
    bad "json numbers"
# on a terminal the bar is redrawn in place with an ETA
if command -v script >/dev/null 2>&1; then
    script -qec "$E -m '$M/stories260K.gguf' -f '$T' -c 128 --chunks 3 >/dev/null" \
        "$tmp/tty.log" >/dev/null 2>&1
    tr '\r' '\n' <"$tmp/tty.log" | grep -q '^\[3/3\] \[#*\] PPL .*ETA' && ok "tty bar" ||
        bad "tty bar: $(cat "$tmp/tty.log")"
fi

# KL: a model against its own saved logits
$E -m "$M/stories260K.gguf" -f "$T" -c 128 -q --save-logits "$tmp/base.mxlp" >/dev/null; rc=$?
[ $rc -eq 0 ] && [ -s "$tmp/base.mxlp" ] && [ ! -e "$tmp/base.mxlp.part" ] &&
    ok "--save-logits wrote the file" || bad "--save-logits ($rc)"
$E -m "$M/stories260K.gguf" --kl-base "$tmp/base.mxlp" --json -q >"$tmp/self.json"; rc=$?
"$MIXEL" quantize "$M/stories260K.gguf" "$tmp/q8.gguf" Q8_0 >/dev/null 2>&1 &&
    "$MIXEL" quantize "$M/stories260K.gguf" "$tmp/q4.gguf" Q4_0 >/dev/null 2>&1 ||
    bad "quantize"
$E -m "$tmp/q8.gguf" --kl-base "$tmp/base.mxlp" -f "$T" --json -q >"$tmp/q8.json"
$E -m "$tmp/q4.gguf" --kl-base "$tmp/base.mxlp" --json -q >"$tmp/q4.json"
$E -m "$tmp/q4.gguf" --kl-base "$tmp/base.mxlp" -q >"$tmp/q4.txt"
grep -q '^Mean    KLD:' "$tmp/q4.txt" && grep -q '^Same top p:' "$tmp/q4.txt" &&
    grep -q '^99.0%   KLD:' "$tmp/q4.txt" && ok "KL report" || bad "KL report: $(cat "$tmp/q4.txt")"
"$PY" - "$tmp/story.json" "$tmp/self.json" "$tmp/q8.json" "$tmp/q4.json" <<'EOF' &&
import json, sys
story, me, q8, q4 = (json.load(open(p)) for p in sys.argv[1:5])
assert abs(me["kld"]) < 1e-5 and me["kld_max"] < 1e-4 and me["top1_pct"] == 100, me
assert me["dppl"] == 0 and me["ppl"] == story["ppl"], me
assert 0 < q8["kld"] < 0.01 and q8["top1_pct"] > 95, q8
assert q8["kld"] < q4["kld"] < 0.5 and q4["top1_pct"] < q8["top1_pct"], (q8, q4)
assert q4["kld_p99"] > q4["kld_median"] > q4["kld_p5"] >= q4["kld_min"], q4
print("self KL %.2g top-1 %.1f %%; Q8_0 KL %.5f top-1 %.1f %%; Q4_0 KL %.5f top-1 %.1f %%" % (
    me["kld"], me["top1_pct"], q8["kld"], q8["top1_pct"], q4["kld"], q4["top1_pct"]))
EOF
    ok "self KL ~0, Q8_0 small, Q4_0 larger" || bad "KL numbers"

# refusals: other tokens, another -c, another vocabulary size, a truncated file
head -c 3000 "$T" >"$tmp/other.txt"
printf 'A different ending.\n' >>"$tmp/other.txt"
cat "$T" >>"$tmp/other.txt"
$E -m "$M/stories260K.gguf" --kl-base "$tmp/base.mxlp" -f "$tmp/other.txt" -q >/dev/null \
    2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'made from other tokens' "$tmp/err" && ok "other tokens refused" ||
    bad "other tokens ($rc: $(cat "$tmp/err"))"
$E -m "$M/stories260K.gguf" --kl-base "$tmp/base.mxlp" -c 256 -q >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'made with -c 128' "$tmp/err" && ok "other -c refused" ||
    bad "other -c ($rc: $(cat "$tmp/err"))"
"$PY" - "$tmp/base.mxlp" "$tmp/v1000.mxlp" <<'EOF' || bad "making a 1000-token base"
import struct, sys
# a well-formed file for a 1000-token vocabulary: same n_ctx and tokens, zero rows
src = open(sys.argv[1], "rb").read()
n_vocab, n_ctx, n_chunk, nl = struct.unpack("<4I", src[8:24])
toks = src[24 + nl:24 + nl + 4 * n_ctx * n_chunk]
rows = (n_ctx - 1 - n_ctx // 2) * n_chunk * (12 + 2 * 1000)
open(sys.argv[2], "wb").write(src[:8] + struct.pack("<4I", 1000, n_ctx, n_chunk, 1) + b"x" +
                              toks + bytes(rows))
EOF
$E -m "$M/stories260K.gguf" --kl-base "$tmp/v1000.mxlp" -q >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q '1000 tokens in its vocabulary' "$tmp/err" &&
    ok "other vocabulary size refused" || bad "other vocabulary ($rc: $(cat "$tmp/err"))"
head -c 100000 "$tmp/base.mxlp" >"$tmp/cut.mxlp"
$E -m "$M/stories260K.gguf" --kl-base "$tmp/cut.mxlp" -q >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'truncated' "$tmp/err" && ok "truncated base refused" ||
    bad "truncated base ($rc: $(cat "$tmp/err"))"
$E -m "$M/stories260K.gguf" --kl-base "$T" -q >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'not a mixel logits file' "$tmp/err" && ok "foreign base refused" ||
    bad "foreign base ($rc: $(cat "$tmp/err"))"
exit $fail
