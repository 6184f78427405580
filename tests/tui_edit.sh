#!/bin/sh
# tui_edit.sh - issue 15 item 3: /edit puts the last user message into the input box, and the
# edited message is a branch that Alt-Left/Alt-Right reach at once (before: the input stayed
# empty, and Alt-Left said "no branches here yet" until a restart). Asserts the screen and the
# stored tree (tests/session_tree --dump).
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
tree() { "$MX_BUILDDIR/tests/session_tree" "$work/h.db" --dump; }

start echo
$T send-keys -t t "first question" Enter
wait_for "You said: first question" || fail "no answer"
cp "$MX_SRCDIR/tests/data/quadrants.png" "$work/x.png"
$T send-keys -t t "/show $work/x.png" Enter
wait_for "image attached" || fail "/show"
$T send-keys -t t "/edit" Enter
wait_for "editing your last message" || fail "/edit said nothing"
wait_for "› first question" 3 || fail "/edit left the input box empty (or took the image caption)"
$T send-keys -t t " again" Enter
wait_for "You said: first question again" || fail "the edited message was not sent"
wait_for_re "You +◂ 2/2 ▸" 3 || fail "the edited message is not shown as branch 2/2"
$T send-keys -t t M-Left
wait_for "You said: first question" || fail "Alt-Left: first branch not shown"
wait_for_re "You +◂ 1/2 ▸" 3 || fail "Alt-Left did not go to branch 1/2"
$T capture-pane -p -t t | grep -q "no branches here yet" && fail "Alt-Left: no branches"
$T capture-pane -p -t t | grep -q "first question again" && fail "Alt-Left: still on branch 2"
$T send-keys -t t M-Right
wait_for "You said: first question again" || fail "Alt-Right did not come back to branch 2"
quit

# the stored tree: two user messages under the root (siblings), each with its answer; the
# active leaf is the answer to the edited one
tree_dump
tree_has "^[0-9]* 0 user complete 1/2 first question$" "original message not stored as branch 1/2"
tree_has "^[0-9]* 0 user complete 2/2 first question again$" "edited message not stored as sibling 2/2"
leaf=$(sed -n 's/^S[0-9]* leaf=\([0-9]*\).*/\1/p' "$work/tree.txt")
tree_has "^$leaf [0-9]* assistant complete 1/1 You said: first question again$" "active leaf is not the edited branch's answer"
echo ok
