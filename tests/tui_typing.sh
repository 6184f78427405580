#!/bin/sh
# tui_typing.sh - typed input is linear in the text typed (issue 15, item 6): 10,000 characters
# sent as keys in one go (a paste into a terminal without bracketed paste, xdotool type, a slow
# SSH link) show in the input line well within the bound and arrive intact, one message.
# Before the fix, readline's "more input?" hook looked at the terminal while its getc hook handed
# over the byte already read: rl_insert inserted that byte again for as long as keys waited, and
# the TUI never caught up (100% CPU, an empty input box, memory growing).
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
text=$(awk 'BEGIN { for (i = 0; i < 10000; i++) printf "%c", i % 6 == 5 ? " " : 97 + i % 26 }')
[ ${#text} = 10000 ] || fail "test text is ${#text} characters, not 10000"

start echo
t0=$(date +%s.%N)
$T send-keys -t t -l "${text}ZQEND"
# generous: about 0.05 s here; the old code did not get there at all
wait_for "ZQEND" 15 || fail "10,000 typed characters did not show within 15 s"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "note: 10,005 keys shown after %.3f s (%.0f keys/s)\n",
                                   b - a, 10005 / (b - a) }'
$T send-keys -t t Enter
wait_for_re "^› *$" || fail "the long message was not sent (the input line is not empty)"
i=0
while $T capture-pane -p -t t | grep -q "generating"; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "the echo answer did not finish"; sleep 0.05
done
$T send-keys -t t "/export $work/out.md" Enter
wait_for "exported to" || fail "/export"
# the message is the text typed, exactly once: no byte doubled, dropped or split off
n=$(grep -cxF -- "${text}ZQEND" "$work/out.md")
[ "$n" = 1 ] || fail "the typed message was not stored intact ($n exact copies in the export)"
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" || fail "/quit"
echo ok
