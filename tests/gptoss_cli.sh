#!/bin/sh
# gptoss_cli.sh - gpt-oss through the front door, on the tiny random model test_gptoss writes
# (MXFP4 experts, harmony chat template): `mixel inspect` names the architecture and the MXFP4
# tensors, `mixel run` completes with --reasoning show and hide, a --session turn goes through
# the harmony template and stores an answer without channel tags, and a bad --reasoning value
# is a usage error.
set -u
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/cfg"
m="$work/gpt-oss-tiny.gguf"
"$MX_BUILDDIR/tests/test_gptoss" --write-model "$m" || fail "cannot write the model"

"$MIXEL" run --help >"$work/help" 2>&1 || fail "run --help"
grep -q -- "--reasoning show|hide" "$work/help" || fail "run --help does not list --reasoning"
"$MIXEL" run -m "$m" -p hi --reasoning maybe >/dev/null 2>"$work/err" && fail "bad value accepted"
[ $? -eq 2 ] || fail "bad --reasoning value: exit status not 2"
grep -q "say show or hide" "$work/err" || fail "bad --reasoning value: no message"

"$MIXEL" inspect "$m" >"$work/inspect" 2>&1 || fail "inspect"
grep -q "^architecture  gpt-oss (mixture of experts: 4 experts, 2 used" "$work/inspect" ||
    fail "inspect: architecture"
grep -q "mxfp4 6" "$work/inspect" || fail "inspect: no MXFP4 tensors"

for r in show hide; do
    "$MIXEL" run -m "$m" -p "Hi there" -n 16 --temp 0 --reasoning $r >"$work/out.$r" \
        2>"$work/err.$r" || { cat "$work/err.$r"; fail "run --reasoning $r"; }
    grep -q "generated 16 tokens" "$work/err.$r" || fail "run --reasoning $r: not 16 tokens"
done

"$MIXEL" run -m "$m" -c 1024 --session t --db "$work/h.db" -p "Hi there" -n 40 --temp 0 \
    >"$work/out.s" 2>"$work/err.s" || { cat "$work/err.s"; fail "run --session"; }
/usr/bin/python3 - "$work/h.db" <<'EOF' || fail "the stored answer holds channel tags"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
a = [r[0] for r in c.execute("SELECT content FROM messages WHERE role = 'assistant'")]
tags = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>")
sys.exit(0 if len(a) == 1 and not any(t in a[0] for t in tags) else 1)
EOF
echo "ok"
