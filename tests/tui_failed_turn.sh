#!/bin/sh
# tui_failed_turn.sh - one failed turn must not break a session: with stories260K (512-token
# context) a 200-line paste fails (it cannot fit), and the next message, /regen and a restart with
# --resume all still answer. Before the fix every later turn failed with "roles must alternate".
set -u
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
M="$MX_SHARED/models/stories260K.gguf"

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 16
$T resize-window -t t -x 280 -y 40 # room for the status line's session title
wait_for "stories260K · CPU" 20 || fail "model not loaded"
i=0; : >"$work/paste.txt"
while [ $i -lt 200 ]; do
    echo "line $i of a long paste that cannot fit into a context of 512 tokens" >>"$work/paste.txt"
    i=$((i + 1))
done
$T load-buffer "$work/paste.txt"
$T paste-buffer -p -t t
$T send-keys -t t Enter
wait_for "does not fit the context" 30 || fail "the oversized turn did not fail visibly"
say "short one" || fail "the turn after a failed one did not answer"
$T capture-pane -p -t t | grep -q "roles must alternate" && fail "template error after a failed turn"
say "/regen" || fail "/regen after a failed turn did not answer"
$T capture-pane -p -t t | grep -q "roles must alternate" && fail "/regen: template error"
quit

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 8 --resume
$T resize-window -t t -x 280 -y 40
wait_for "short one" 20 || fail "conversation not restored"
say "and again" || fail "after --resume the next turn did not answer"
$T capture-pane -p -t t | grep -q "roles must alternate" && fail "--resume: template error"
quit
echo "a failed turn does not poison the session"
