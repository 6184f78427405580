#!/bin/sh
# run_session_kill.sh - `mixel run --session` holds a conversation across calls (the second turn
# reuses the first from the KV snapshot), and SIGKILL at random moments while answers stream, 50
# times, never damages what was committed: after every kill the database passes
# integrity_check, opens normally, and every message of the previous export is still there
# unchanged (the answer being streamed when killed stays as its last committed prefix).
set -u
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow end-to-end test, run in the normal pass only"; exit 77; }
M="${MX_SHARED:-}/models/stories260K.gguf"
[ -f "$M" ] || { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: needs /usr/bin/python3 to compare exports"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/data"
DB="$work/h.db"
fail() { echo "FAIL: $*"; exit 1; }
run() { "$MIXEL" run -m "$M" --chat-template mistral-v1 --db "$DB" --temp 0 "$@"; }

# two turns: the second starts from the first's KV snapshot
run --session talk -n 16 -p "Tell me a story" >"$work/a1" 2>"$work/e1" || fail "turn 1: $(cat "$work/e1")"
run --session talk -n 16 -p "And then?" >"$work/a2" 2>"$work/e2" || fail "turn 2: $(cat "$work/e2")"
grep -Eq "\(([1-9][0-9]*) reused from the cache" "$work/e2" || fail "turn 2 did not reuse the cache: $(cat "$work/e2")"
"$MIXEL" sessions export talk --format json --db "$DB" >"$work/talk.json" || fail "export"
"$PY" - "$work/talk.json" "$work/a1" <<'PYEOF' || fail "stored conversation differs from what was printed"
import json, sys
s = json.load(open(sys.argv[1]))
roles = [m["role"] for m in s["messages"]]
assert roles == ["user", "assistant", "user", "assistant"], roles
assert s["messages"][0]["content"] == "Tell me a story"
printed = open(sys.argv[2]).read().rstrip("\n")
assert s["messages"][1]["content"] == printed, (s["messages"][1]["content"], printed)
PYEOF

# 50 kills at pseudo-random points (fixed seed) while answers stream
i=0
seed=12345
prev=""
while [ $i -lt 50 ]; do
    seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
    delay=$(( seed % 600 ))
    # exec: $! must be mixel itself, not a subshell that SIGKILL would leave its child behind
    ( exec "$MIXEL" run -m "$M" --chat-template mistral-v1 --db "$DB" --temp 0 \
        --session kill -n 400 -p "turn $i" >/dev/null 2>&1 ) &
    pid=$!
    sleep "$(printf '0.%03d' "$delay")"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    "$MX_BUILDDIR/tests/db_integrity" "$DB" >/dev/null || fail "kill $i: database damaged"
    if "$MIXEL" sessions export kill --format json --db "$DB" >"$work/now.json" 2>/dev/null; then
        if [ -n "$prev" ]; then
            "$PY" - "$prev" "$work/now.json" <<'PYEOF' || fail "kill $i: committed messages changed"
import json, sys
a = json.load(open(sys.argv[1]))["messages"]
b = {m["id"]: m for m in json.load(open(sys.argv[2]))["messages"]}
for m in a:
    assert m["id"] in b, ("lost", m["id"])
    assert b[m["id"]]["content"] == m["content"], ("changed", m["id"])
PYEOF
        fi
        cp "$work/now.json" "$work/prev.json"
        prev="$work/prev.json"
    fi
    i=$((i + 1))
done
[ -n "$prev" ] || fail "no session was ever stored"
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["messages"]))' "$prev")
echo "ok: 50 kills, $n messages intact"
