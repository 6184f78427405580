#!/bin/sh
# tui_themes.sh - the built-in themes work when mixel runs from any folder (issue: "theme 'dark'
# not found" at every start outside the source tree): started from / with no MX_SRCDIR, the
# default theme loads silently, /theme switches to each built-in, and a user theme in
# $XDG_CONFIG_HOME/mixel/themes overrides a built-in of the same name.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"

# start_anywhere [MIXEL ARGS...]: like tui_lib's start, but from / and without MX_SRCDIR
start_anywhere() {
    $T kill-server 2>/dev/null
    n_start=$((n_start + 1)); T="tmux -S $work/tmux.$n_start"
    $T -f /dev/null new-session -d -s t -x 100 -y 30 -c / \
        "cd / && env -u MX_SRCDIR HOME='$work/home' MIXEL_SCRIPTED_REPLY=echo \
         XDG_DATA_HOME='$work/data' XDG_CONFIG_HOME='$work/cfg' TERM=xterm-256color \
         '$MIXEL' chat --db '$work/h.db' $*; echo EXITED \$?; sleep 30"
    wait_for "────────" || fail "the TUI did not start"
}

start_anywhere
sleep 0.3
$T capture-pane -p -t t | grep -q "not found" && fail "a theme was not found at start"
for th in light high-contrast basic16 dark; do
    $T send-keys -t t "/theme $th" Enter
    wait_for "theme $th" || fail "/theme $th from / did not switch"
    $T capture-pane -p -t t | grep -q "'$th' not found" && fail "/theme $th not found"
done
$T send-keys -t t "/theme nosuch" Enter
wait_for "theme 'nosuch' not found" || fail "an unknown theme is not reported"

# a user's theme of the same name wins (its own name shows in /theme)
mkdir -p "$work/cfg/mixel/themes"
printf 'name = mine\nuser = #ff0000 default bold\n' >"$work/cfg/mixel/themes/light.theme"
$T send-keys -t t "/theme light" Enter
wait_for "theme light" || fail "/theme light with a user override"
$T send-keys -t t "/theme" Enter
wait_for "theme: light" || fail "/theme does not name the current theme"

# --theme at start, from /, with a built-in name
start_anywhere --theme basic16
sleep 0.3
$T capture-pane -p -t t | grep -q "not found" && fail "--theme basic16 not found from /"
$T send-keys -t t "/theme" Enter
wait_for "theme: basic16" || fail "--theme basic16 was not applied"
echo "themes: built-ins load from /, user themes override"
