#!/bin/sh
# tui_llm.sh - the TUI with a real model (../shared/models/stories260K.gguf, greedy): an answer
# streams with tokens/s in the status bar; after /quit, --resume loads the KV snapshot instead of
# re-processing the history, and the next answer continues from it. --device reaches the engine.
set -u
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "SKIP: needs ../shared/models/stories260K.gguf (set MX_SHARED)"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
M="$MX_SHARED/models/stories260K.gguf"

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 24 --device cpu
wait_for "stories260K · CPU" || fail "model not shown in the status bar"
$T send-keys -t t "Once upon a time" Enter
wait_for_re "tok/s" 30 || fail "no tokens/s while answering"
wait_for_re "ctx [1-9][0-9]*/512 · [0-9.]+ tok/s( +/help)? *$" 30 || fail "answer did not finish"
quit
ls "$work/data/mixel/kv/"*.kv >/dev/null 2>&1 || fail "no KV snapshot saved on quit"

start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 8 --resume
wait_for "resumed with the saved context" 20 || fail "snapshot not used on resume"
wait_for "Once upon a time" || fail "conversation not restored"
$T send-keys -t t "The end" Enter
wait_for_re "You +$" 1 || true
wait_for_re "ctx [1-9][0-9]*/512 · [0-9.]+ tok/s( +/help)? *$" 30 || fail "second answer did not finish"
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" 20 || fail "quit after resume"
echo ok
