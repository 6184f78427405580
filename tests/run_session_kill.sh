#!/bin/sh
# run_session_kill.sh - `mixel run --session` holds a conversation across calls (the second turn
# reuses the first from the KV snapshot), and SIGKILL at random moments while answers stream, 50
# times, never damages what was committed: after every kill the database passes
# integrity_check, opens normally, and every message of the previous export is still there
# unchanged (the answer being streamed when killed stays as its last committed prefix). Each
# kill's session must export (unless the kill came before the run created it), and at least 10 kills must have landed mid-answer (the answer
# still marked streaming, with committed text): kills that all came before the first commit or
# after the answer ended would test nothing.
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

# 50 kills at pseudo-random points (fixed seed) 0.2 to 2 s into a run, each in a session of its
# own (a growing history would make later runs spend those seconds on the prompt). The answers
# cannot end before: a 16K context and --ignore-eos (stories260K writes its 512-token context
# full in 40 ms, and mixel commits a streaming answer once a second).
# dump FILE: every message of the database (all sessions) as JSON {id: content}, read-only
dump() {
    "$PY" - "$DB" "$1" <<'PYEOF'
import json, sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
json.dump({str(i): t for i, t in c.execute("SELECT id, content FROM messages")},
          open(sys.argv[2], "w"))
PYEOF
}
i=0
seed=12345
n_mid=0 n_other=0 n_early=0
dump "$work/prev.json" || fail "cannot read the database"
while [ $i -lt 50 ]; do
    seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
    delay=$(( 200 + seed % 1800 ))
    # exec: $! must be mixel itself, not a subshell that SIGKILL would leave its child behind
    ( exec "$MIXEL" run -m "$M" --chat-template mistral-v1 --db "$DB" --temp 0 -c 16384 \
        --session "kill$i" -n 16000 --ignore-eos -p "turn $i" >/dev/null 2>&1 ) &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    "$MX_BUILDDIR/tests/db_integrity" "$DB" >/dev/null || fail "kill $i: database damaged"
    # on a loaded machine a kill can land before the run created its session (startup over
    # 0.2 s): nothing was committed then, and that is the only case where export may fail
    made=$("$PY" -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(c.execute("SELECT count(*) FROM sessions WHERE title = ?", (sys.argv[2],)).fetchone()[0])
' "$DB" "kill$i") || fail "kill $i: cannot read the database"
    if [ "$made" = 0 ]; then
        n_early=$((n_early + 1))
    else
        "$MIXEL" sessions export "kill$i" --format json --db "$DB" >"$work/now.json" 2>"$work/err" ||
            fail "kill $i: export failed: $(cat "$work/err")"
    fi
    dump "$work/all.json" || fail "kill $i: cannot read the database"
    "$PY" - "$work/prev.json" "$work/all.json" <<'PYEOF' || fail "kill $i: messages changed"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k, v in a.items():
    assert k in b, ("lost", k)
    assert b[k] == v, ("changed", k)
PYEOF
    mv "$work/all.json" "$work/prev.json"
    [ "$made" != 0 ] || { i=$((i + 1)); continue; }
    last=$("$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))["messages"]
print("%s:%s:%d" % (m[-1]["role"], m[-1]["state"], len(m[-1]["content"])) if m else "none")
' "$work/now.json") || fail "kill $i: export unreadable"
    case $last in
    assistant:streaming:0) n_other=$((n_other + 1)) ;;
    assistant:streaming:*) n_mid=$((n_mid + 1)) ;;
    # the session is created before the model loads, the question and the answer after it:
    # a kill in between leaves the session without the answer (or without any message)
    none | user:complete:*) n_early=$((n_early + 1)) ;;
    *) fail "kill $i: the last message is $last, not the answer being streamed" ;;
    esac
    i=$((i + 1))
done
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/prev.json")
echo "kills: $n_mid mid-answer with committed text, $n_other before the first commit, $n_early before the session existed"
[ $n_mid -ge 10 ] || fail "only $n_mid of 50 kills landed mid-answer after a commit"
echo "ok: 50 kills, $n messages intact"
