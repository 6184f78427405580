#!/bin/sh
# tui_llm.sh - the TUI with a real model (../shared/models/stories260K.gguf, greedy): an answer
# streams with tokens/s in the status bar; after /quit, --resume loads the KV snapshot instead of
# re-processing the history, and the next answer continues from it: it is stored complete in the
# history as the answer to the new question, and the context grew past the first conversation.
# --device reaches the engine.
set -u
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
M="$MX_SHARED/models/stories260K.gguf"

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 24 --device cpu
wait_for "stories260K · CPU" || fail "model not shown in the status bar"
$T send-keys -t t "Once upon a time" Enter
wait_for_re "tok/s" 30 || fail "no tokens/s while answering"
wait_for_re "ctx [1-9][0-9]*/512( \([0-9]+ reused, [0-9]+ new\))? · [0-9.]+ tok/s( +/help)? *$" 30 || fail "answer did not finish"
# ctx_now: the context fill the status bar shows
ctx_now() { $T capture-pane -p -t t | sed -n 's|.*ctx \([0-9][0-9]*\)/512.*|\1|p' | tail -n 1; }
c1=$(ctx_now)
quit
ls "$work/data/mixel/kv/"*.kv >/dev/null 2>&1 || fail "no KV snapshot saved on quit"

TUI_WIDTH=120 # room for the prompt's reuse in the status bar
start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 8 --resume
wait_for "resumed with the saved context" 20 || fail "snapshot not used on resume"
wait_for "Once upon a time" || fail "conversation not restored"
$T send-keys -t t "The end" Enter
# the status bar already showed a finished answer before this one: wait for the history to hold
# the new answer, complete, under the new question
i=0
until /usr/bin/python3 - "$work/h.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = c.execute("SELECT a.content FROM messages a JOIN messages u ON a.parent = u.id"
              " WHERE u.role = 'user' AND u.content = 'The end' AND a.role = 'assistant'"
              " AND a.state = 'complete'").fetchall()
sys.exit(0 if len(r) == 1 and r[0][0].strip() else 1)
EOF
do
    i=$((i + 1))
    [ $i -lt 600 ] || fail "no complete answer to 'The end' in the history"
    sleep 0.05
done
wait_for_re "ctx [1-9][0-9]*/512( \([0-9]+ reused, [0-9]+ new\))? · [0-9.]+ tok/s( +/help)? *$" 30 || fail "second answer did not finish"
c2=$(ctx_now)
echo "context: $c1 after the first answer, $c2 after the answer on the resumed snapshot"
[ -n "$c1" ] && [ -n "$c2" ] && [ "$c2" -gt "$c1" ] ||
    fail "the resumed context did not grow from the first conversation ($c1 -> $c2)"
# the status bar says what the prompt cost: the whole first conversation (prompt and the
# answer's own ids) came from the snapshot, only the new question was evaluated
reuse=$($T capture-pane -p -t t | sed -n 's|.*ctx [0-9]*/512 (\([0-9]*\) reused, \([0-9]*\) new).*|\1 \2|p' | tail -n 1)
echo "status bar: reused/new $reuse"
set -- $reuse
[ $# -eq 2 ] && [ "$1" -eq "$c1" ] && [ "$2" -gt 0 ] && [ "$2" -lt 24 ] ||
    fail "status bar reuse: expected all $c1 cached tokens reused and a few new, got '$reuse'"
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" 20 || fail "quit after resume"
echo ok
