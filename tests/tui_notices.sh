#!/bin/sh
# tui_notices.sh - notices (issue 15 item 10): a notice longer than the status line shows whole,
# wrapped above the input; Esc dismisses it; /log lists recent ones with their times (and the
# internal detail behind a reworded one); Ctrl-C when idle says how to quit. With a model: the
# template warning shows to its end, and a KV snapshot made with another model is reported in
# words for users ("the saved context is for another model"), its file name only in /log.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"

# wait_gone TEXT: poll until TEXT is no longer on the screen
wait_gone() {
    i=0
    while [ $i -lt 100 ]; do
        $T capture-pane -p -t t | grep -qF -- "$1" || return 0
        i=$((i + 1)); sleep 0.05
    done
    return 1
}

# 1. a long notice shows whole: its end, 150 characters in, is on the screen
start echo
long="a-session-title-that-nobody-ever-gave-to-any-session-so-the-notice-gets-long"
$T send-keys -t t "/resume $long" Enter
wait_for "(F2 lists them)" || fail "the end of a long notice is cut off"
wait_for "$long" || fail "the long notice's middle is missing"
# 2. Esc dismisses it; /log keeps it, with its time
$T send-keys -t t Escape
wait_gone "(F2 lists them)" || fail "Esc did not dismiss the notice"
# 3. Ctrl-C when idle: a hint how to quit (before: nothing happened)
$T send-keys -t t C-c
wait_for "to leave mixel, type /quit" || fail "Ctrl-C when idle gave no hint how to quit"
$T send-keys -t t "/log" Enter
wait_for "Recent notices" || fail "/log shows nothing"
wait_for_re "[0-2][0-9]:[0-5][0-9]:[0-5][0-9] \(error\) no saved session has the id or title" ||
    fail "/log lacks the notice and its time"
wait_for_re "[0-2][0-9]:[0-5][0-9]:[0-5][0-9] nothing to stop" || fail "/log lacks the hint"
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" || fail "/quit"

[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] &&
    [ -f "$MX_SHARED/models/stories260K-moe8.gguf" ] ||
    { echo "notices ok (model part skipped: no ../shared/models)"; exit 0; }
M="$MX_SHARED/models/stories260K.gguf"
M2="$MX_SHARED/models/stories260K-moe8.gguf"

# 4. the template warning at start, whole (it used to end "... mistral-legacy, mis")
start "" 0 -m "$M" --temp 0 -n 8
$T resize-window -t t -x 100 -y 30
wait_for "stories260K" 20 || fail "model not loaded"
# (the list ends with phi3 and the families added after it)
wait_for_re "gemma, phi3(, [a-z0-9-]+)*\) *$" || fail "the template warning is cut off"
$T send-keys -t t "Once upon a time" Enter
wait_for_re "ctx [1-9][0-9]*/512( \([0-9]+ reused, [0-9]+ new\))? · [0-9.]+ tok/s( +/help)? *$" 30 || fail "no answer"
quit
ls "$work/data/mixel/kv/"*.kv >/dev/null 2>&1 || fail "no KV snapshot saved on quit"

# 5. resumed with another model: the snapshot does not fit; said in words, details in /log
start "" 0 -m "$M2" --chat-template mistral-v1 --temp 0 -n 8 --resume
$T resize-window -t t -x 100 -y 30
wait_for "Once upon a time" 20 || fail "conversation not restored"
wait_for "answering with stories260K-moe8.gguf" || fail "no notice of the other model"
# notices that come together stack: the snapshot's shows too, worded for users
wait_for "the saved context is for another model; reprocessing the conversation" ||
    fail "the KV mismatch is not worded for users (or hidden by the next notice)"
$T capture-pane -p -t t | grep -q "\.kv" && fail "an internal file name shows outside /log"
$T send-keys -t t "/log" Enter
wait_for "the saved context is for another model; reprocessing the conversation" ||
    fail "the KV mismatch is not worded for users"
wait_for_re "\.kv: snapshot is for another model" || fail "/log lacks the detail"
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" 20 || fail "quit after resume"
echo "notices ok"
