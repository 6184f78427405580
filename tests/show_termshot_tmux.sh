#!/bin/sh
# show_termshot_tmux.sh - `mixel show` inside tmux 3.x in a real xterm: with allow-passthrough on
# the sixel goes through DCS passthrough and shows; with it off mixel says why and draws half
# blocks. Skips without tmux (or what show_lib.sh needs).
set -u
. "$MX_SRCDIR/tests/show_lib.sh"
command -v tmux >/dev/null 2>&1 || skip "tmux is not installed (apt-get install tmux)"

# 4. tmux with allow-passthrough on (termshot's tmux): sixel wrapped for passthrough, after 20
#    lines of output: the pane scrolls first and the image is placed by the pane's offset and
#    cursor (an image drawn at the outer cursor landed over tmux's status line)
if [ $sixel_build = yes ]; then
    shot tmuxon --tmux "seq 1 20;"
    grep -q 'mode sixel:.*passthrough' "$d/tmuxon.dbg" || fail "tmux passthrough not used"
    sizes tmuxon
    check tmuxon "$sw" "$sh" 12 24
fi
# 5. tmux with it off: half blocks, and the reason says so
shot tmuxoff --tmux "tmux set -g allow-passthrough off;"
grep -q 'mode blocks:.*allow-passthrough off' "$d/tmuxoff.dbg" ||
    fail "tmux without passthrough: expected blocks and a reason"
sizes tmuxoff
check tmuxoff "$sw" "$bh" 48 24
# 6. --at 5,10 in the pane: the passthrough carries the position (pane offset + cell)
if [ $sixel_build = yes ]; then
    SHOW_ARGS="--at 5,10"
    shot tmuxat --tmux "seq 1 3;"
    SHOW_ARGS=
    sizes tmuxat
    check tmuxat "$sw" "$sh" 12 24 - $((2 + 10 * cw)),$((2 + 5 * ch))
fi
echo "ok"
