#!/bin/sh
# tui_queue.sh - issue 15 item 9: Enter while an answer streams no longer throws the typed
# message away. It is queued (shown under the answer as "[queued ...]", not stored yet) and sent
# when the answer ends; when the answer is stopped (Esc) it comes back into the input line
# instead, unsent. Asserts the screen and the stored session (tests/session_tree --dump).
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
tree() { "$MX_BUILDDIR/tests/session_tree" "$work/h.db" --dump; }
# an answer of ~750 pieces at 250 pieces/s: about 3 s of streaming
awk 'BEGIN { for (i = 0; i < 600; i++) printf "w%03d ", i; printf "END." }' > "$work/reply.txt"

start "$work/reply.txt" 250
$T resize-window -t t -x 160 -y 40 # room for "generating (Esc stops)" in the status line
$T send-keys -t t "first" Enter
wait_for "generating (Esc stops)" 5 || fail "the first answer did not start"
$T send-keys -t t "second question" Enter
wait_for "[queued: sent when the answer ends]" 2 || fail "Enter while streaming: nothing queued"
$T capture-pane -p -t t | grep -q "second question" || fail "the queued text is not shown"
$T capture-pane -p -t t | tail -1 | grep -q "second question" && fail "queued text left in input"
tree | grep -q " user .* second question" && fail "a queued message was stored before it was sent"
# the first answer ends: the queued message is sent, stored after it, and answered
wait_for_re "^You *$" 10 || fail "no user header"
i=0
while ! tree 2>/dev/null | grep -q " user complete 1/1 second question$"; do
    i=$((i + 1)); [ $i -lt 200 ] || { tree; fail "the queued message was never sent"; }
    sleep 0.05
done
wait_gone "[queued" 2 || fail "still shown as queued after it was sent"
# while its answer streams, queue another and stop with Esc: it comes back into the input
wait_for "generating (Esc stops)" 5 || fail "the second answer did not start"
$T send-keys -t t "third thought" Enter
wait_for "[queued: sent when the answer ends]" 2 || fail "second queue"
$T send-keys -t t Escape
wait_for "your queued message is back in the input" 5 || fail "Esc did not give the message back"
wait_for "› third thought" 2 || fail "the queued text is not in the input line"
wait_gone "[queued" 2 || fail "still shown as queued after Esc"
sleep 0.5
tree | grep -q "third thought" && fail "a message queued and then stopped was sent"
$T send-keys -t t C-c "/quit" Enter
wait_for "EXITED 0" || fail "quit"
tree_dump
# stored: first, its complete answer, second (under that answer), its stopped answer
tree_has "^[0-9]* 0 user complete 1/1 first$" "first message not stored"
a1=$(sed -n 's/^\([0-9]*\) [0-9]* assistant complete .*END\.$/\1/p' "$work/tree.txt" | head -1)
[ -n "$a1" ] || { cat "$work/tree.txt"; fail "the first answer is not stored complete"; }
tree_has "^[0-9]* $a1 user complete 1/1 second question$" "the queued message is not stored after the first answer"
grep -q " assistant partial " "$work/tree.txt" || { cat "$work/tree.txt"; fail "stopped answer"; }
echo ok
