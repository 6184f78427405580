#!/bin/sh
# tui_resume_model.sh - `mixel chat --resume` without -m loads the model the session was made
# with (and says so), restores its KV snapshot and answers; when that file is gone it says so and
# points at /model instead of showing a silent "no model".
set -u
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
cp "$MX_SHARED/models/stories260K.gguf" "$work/story.gguf"
M="$work/story.gguf"

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 16
$T resize-window -t t -x 160 -y 40
wait_for "stories260K · CPU" 20 || fail "model not loaded"
say "Once upon a time" || fail "first answer"
quit

# no -m: the session's model comes back by itself, with its cache
start "" 0 --chat-template mistral-v1 --temp 0 -n 16 --resume
$T resize-window -t t -x 160 -y 40
# (the "loading this session's model, story.gguf" notice is replaced by the next ones at once)
wait_for "stories260K · CPU" 30 || fail "resume did not load the session's model"
wait_for "resumed with the saved context" 20 || fail "the KV snapshot was not used"
say "The end" || fail "no answer after resume without -m"
quit
[ "$(sqlite3 "$work/h.db" "SELECT count(*) FROM messages WHERE role = 'assistant' \
      AND content <> ''" 2>/dev/null || echo 2)" = 2 ] || fail "the second answer was not stored"

# the model file is gone: said, with the way out
rm -f "$M"
start "" 0 --chat-template mistral-v1 --temp 0 -n 16 --resume
$T resize-window -t t -x 160 -y 40
wait_for "is not there any more: choose one with /model" 20 || fail "missing model not explained"
quit
echo "resume loads the session's model"
