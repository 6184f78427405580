#!/bin/sh
# tui_regen.sh - /regen samples anew: with stories260K at temperature 1, an answer and two
# regenerations differ (each draws a fresh seed; before, the session's seed 0 gave three
# identical branches), the session stores "seed_fixed": false; after /seed 42 the notice says
# the seed is fixed and two regenerations are identical, and --resume keeps it fixed.
set -u
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
M="$MX_SHARED/models/stories260K.gguf"
answers() { sqlite3 "$work/h.db" "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id"; }
n_answers() { sqlite3 "$work/h.db" "SELECT count(*) FROM messages WHERE role = 'assistant'"; }
# wait_answers N: until N answers are stored complete
wait_answers() {
    i=0
    while [ "$(sqlite3 "$work/h.db" "SELECT count(*) FROM messages WHERE role = 'assistant' \
               AND state = 'complete'" 2>/dev/null)" != "$1" ]; do
        i=$((i + 1)); [ $i -gt 600 ] && fail "answer $1 was not stored complete"
        sleep 0.05
    done
}

start "" 0 -m "$M" --chat-template mistral-v1 --temp 1 -n 24
$T resize-window -t t -x 160 -y 40
wait_for "stories260K · CPU" 20 || fail "model not loaded"
$T send-keys -t t "Once upon a time" Enter
wait_answers 1
$T send-keys -t t "/regen" Enter
wait_answers 2
$T send-keys -t t "/regen" Enter
wait_answers 3
[ "$(answers | sort -u | wc -l)" -ge 2 ] || { answers; fail "/regen gave the same answer 3 times"; }
sqlite3 "$work/h.db" "SELECT sampling FROM sessions" | grep -q '"seed_fixed": false' ||
    fail "the session does not say its seed varies"

$T send-keys -t t "/seed 42" Enter
wait_for "seed fixed at 42" || fail "/seed 42 not confirmed"
$T send-keys -t t "/regen" Enter
wait_for "seed fixed at 42: the same settings give the same answer" || fail "/regen: fixed seed not stated"
wait_answers 4
$T send-keys -t t "/regen" Enter
wait_answers 5
a4=$(sqlite3 "$work/h.db" "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id LIMIT 1 OFFSET 3")
a5=$(sqlite3 "$work/h.db" "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id LIMIT 1 OFFSET 4")
[ -n "$a4" ] && [ "$a4" = "$a5" ] || fail "with /seed 42 two regenerations differ: '$a4' / '$a5'"
quit

start "" 0 -m "$M" --chat-template mistral-v1 --temp 1 -n 24 --resume
$T send-keys -t t "/seed" Enter
wait_for "seed fixed at 42" 20 || fail "--resume lost the fixed seed"
$T send-keys -t t "/seed random" Enter
wait_for "a fresh one per answer" || fail "/seed random not confirmed"
quit
echo "regen: fresh seeds by default, identical answers with a fixed seed"
