#!/bin/sh
# gptoss_tui.sh - a reasoning model's answer in the TUI (tmux, 80x24, capture-pane): the
# scripted engine replays a gpt-oss (harmony) answer, split into channels as the LLM engine
# splits them. The reasoning shows folded to one line under the answer's header, F4 unfolds it
# (muted, before the answer) and folds it again; the stored answer is the final channel alone;
# escape sequences in the reasoning stay inert.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"

esc=$(printf '\033')
printf '<|channel|>analysis<|message|>The user greets me. I should greet back%s[31m warmly.<|end|><|start|>assistant<|channel|>final<|message|>Hello! How can I help?' "$esc" > "$work/reply.txt"

start "$work/reply.txt"
$T send-keys -t t "Hi there" Enter
wait_for "Hello! How can I help?" || fail "the final answer did not appear"
wait_for "Reasoning · 9 words (F4 unfolds)" || fail "no folded reasoning line"
$T capture-pane -p -t t | grep -q "I should greet back" && fail "the reasoning shows while folded"
# the fold line sits right under the answer's header, the answer under it
$T capture-pane -p -t t | grep -A2 "^Assistant" | sed -n 2p | grep -q "▸ Reasoning" ||
    fail "the fold line is not under the header"

$T send-keys -t t F4
wait_for "Reasoning (F4 folds)" || fail "F4 did not unfold"
wait_for "I should greet back" || fail "the reasoning did not show unfolded"
# inert: the escape byte shows as text, not a colour change (no raw ESC reaches tmux's screen)
$T capture-pane -p -e -t t | grep "I should greet back" | grep -q "$esc\[31m warmly" &&
    fail "an escape sequence from the reasoning reached the terminal"
$T capture-pane -p -t t | grep -B1 "Hello! How can I help?" | head -1 | grep -q "warmly" ||
    fail "the reasoning is not right above the answer"

$T send-keys -t t F4
wait_gone "I should greet back" || fail "F4 did not fold again"
wait_for "Reasoning · 9 words (F4 unfolds)" || fail "no folded line after folding"

# the history holds the final channel only
i=0
until /usr/bin/python3 - "$work/h.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
a = [r[0] for r in c.execute("SELECT content FROM messages WHERE role = 'assistant'")]
sys.exit(0 if a == ["Hello! How can I help?"] else 1)
EOF
do
    i=$((i + 1))
    [ $i -lt 40 ] || fail "the stored answer is not the final channel alone"
    sleep 0.05
done
quit
echo "ok: reasoning folded, unfolded with F4, folded again; stored answer is the final channel"
