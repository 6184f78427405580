#!/bin/sh
# show_no_color.sh - NO_COLOR is about colour in text, not pictures: on a real terminal (tmux,
# which shows no sixel here) `mixel show` under NO_COLOR=1 still draws the image as coloured half
# blocks, and only --graphics none turns it off.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
D="$MX_SRCDIR/tests/data"
ESC=$(printf '\033')

run_in_tmux() { # run_in_tmux ENV ARGS...: mixel show in a fresh 100x40 tmux window
    env_set=$1; shift
    $T kill-server 2>/dev/null
    n_start=$((n_start + 1)); T="tmux -S $work/tmux.$n_start"
    $T -f /dev/null new-session -d -s t -x 100 -y 40 \
        "env $env_set TERM=xterm-256color '$MIXEL' show '$D/quadrants.png' $*; echo EXITED \$?; sleep 30"
    wait_for "EXITED" 10 || fail "mixel show did not finish"
}

run_in_tmux NO_COLOR=1 --width 16
$T capture-pane -p -t t | grep -q "EXITED 0" || fail "show under NO_COLOR failed"
$T capture-pane -p -t t | grep -q '▀' || fail "NO_COLOR turned the image off"
$T capture-pane -p -e -t t | grep -qE "$ESC\[(38|48);(5|2);" || fail "NO_COLOR image has no colour"

run_in_tmux NO_COLOR=1 --width 16 --graphics none
$T capture-pane -p -t t | grep -q '▀' && fail "--graphics none still drew blocks"
echo "NO_COLOR keeps images; --graphics none removes them"
