#!/bin/sh
# remote_tui.sh - the chat over a remote engine (tests/remote_mock.py on 127.0.0.1): the status
# bar names the server and model, a streamed answer shows and is stored, /regen asks again (a
# second branch), the session records "remote:URL#MODEL" and resumes on that backend (also
# without --remote), /model remote:URL#MODEL switches models, Esc stops a
# streaming answer at once (the server sees the client go, the partial answer is kept), and an
# HTTP error shows the server's message as a notice.
set -u
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
. "$MX_SRCDIR/tests/remote_lib.sh"
start_mock remote_mock.py "$work/mock.log"
U="http://127.0.0.1:$P/v1"
sql() { sqlite3 "$work/h.db" "$1"; }
# wait_sql QUERY VALUE: until the database answers VALUE
wait_sql() {
    i=0
    while [ "$(sql "$1" 2>/dev/null)" != "$2" ]; do
        i=$((i + 1)); [ $i -gt 200 ] && fail "database: '$1' is not '$2' but '$(sql "$1")'"
        sleep 0.05
    done
}

start "" 0 --remote "$U" --remote-model chunky
$T resize-window -t t -x 120 -y 30
wait_for "remote: 127.0.0.1:$(cat "$work/port") / chunky · http" || fail "status bar"
wait_for "ctx 0/4096" || fail "status bar: the context length /v1/models states"
$T send-keys -t t "Say hello" Enter
wait_for "Hello, wörld! ✓ done." || fail "the answer does not show"
wait_sql "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'complete'" 1
$T send-keys -t t "/regen" Enter
wait_sql "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'complete'" 2
wait_for "2/2" || fail "/regen: no second branch shown"
[ "$(sql "SELECT model_path FROM sessions")" = "remote:$U#chunky" ] ||
    fail "the session does not record the backend: $(sql "SELECT model_path FROM sessions")"
[ "$(grep -c '"path": "/v1/chat/completions"' "$work/mock.log")" -eq 2 ] ||
    fail "two chat requests expected"
quit

# resumed on the same backend: the history goes to the server with the next message (the
# mock sends JSON back with \u escapes)
start "" 0 --remote "$U" --remote-model echo --resume
$T resize-window -t t -x 120 -y 30
wait_for "remote: 127.0.0.1:$(cat "$work/port") / echo" || fail "resume: status bar"
$T send-keys -t t "And now?" Enter
wait_sql "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'complete'" 3
sql "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1" |
    grep -qF '{"content": "Say hello", "role": "user"}, {"content": "Hello, w\u00f6rld! \u2713 done.", "role": "assistant"}, {"content": "And now?", "role": "user"}' ||
    fail "resume: the conversation was not sent"

# /model remote:URL#MODEL switches to another of the server's models
$T send-keys -t t "/model remote:$U#plain" Enter
wait_for "remote: 127.0.0.1:$(cat "$work/port") / plain" || fail "/model remote:...: status bar"
wait_for "/4097" || fail "/model remote:...: the named model's context length"
$T send-keys -t t "Once more" Enter
wait_sql "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'complete'" 4
tail -n 1 "$work/mock.log" | grep -q '"model": "plain"' || fail "/model: not asked for plain"
# each answer records the backend and model that gave it
[ "$(sql "SELECT json_extract(timings, '\$.model') FROM messages WHERE role = 'assistant' ORDER BY id" | tr '\n' ' ')" = \
  "remote:$U#chunky remote:$U#chunky remote:$U#echo remote:$U#plain " ] ||
    fail "answers' models: $(sql "SELECT timings FROM messages WHERE role = 'assistant'")"
quit

# resumed without --remote: the session's server and model (the first) are reconnected
start "" 0 --resume
$T resize-window -t t -x 120 -y 30
wait_for "remote: 127.0.0.1:$(cat "$work/port") / chunky" || fail "resume without --remote"

# Esc stops a streaming answer at once; the partial answer is kept
quit
start "" 0 --remote "$U" --remote-model slow
$T resize-window -t t -x 120 -y 30
$T send-keys -t t "Tell me a long story" Enter
wait_for "tick3" || fail "slow: no text"
$T send-keys -t t Escape
wait_for "stopped: the partial answer is kept" 3 || fail "Esc did not stop the answer"
i=0
until grep -q '"event": "disconnected", "model": "slow"' "$work/mock.log"; do
    i=$((i + 1)); [ $i -gt 60 ] && fail "Esc: the server did not see the disconnect"
    sleep 0.05
done
wait_sql "SELECT state FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1" partial
quit

# an HTTP error: the server's text in the notice, the chat goes on
start "" 0 --remote "$U" --remote-model err500
$T resize-window -t t -x 160 -y 30
$T send-keys -t t "hi" Enter
wait_for "upstream model crashed" || fail "500: the server's message is not shown"
quit
echo "remote tui: status bar, answer, /regen, session backend, resume, Esc, HTTP error"
