# tui_lib.sh - shared by the tmux-driven TUI tests: a private tmux server per mixel start,
# polling helpers (no fixed sleeps), and failure output with the screen. Sourced, not run.
command -v tmux >/dev/null 2>&1 || { echo "SKIP: tmux is not installed"; exit 77; }
work=$(mktemp -d)
n_start=0
T="tmux -S $work/tmux.0"
cleanup() { $T kill-server 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "---- screen:"; $T capture-pane -p -t t 2>/dev/null; exit 1; }

# wait_for TEXT [SECONDS]: poll the screen until TEXT shows
wait_for() {
    i=0; limit=$(( ${2:-10} * 20 ))
    while [ $i -lt $limit ]; do
        $T capture-pane -p -t t 2>/dev/null | grep -qF -- "$1" && return 0
        i=$((i + 1)); sleep 0.05
    done
    return 1
}

# wait_gone TEXT [SECONDS]: poll the screen until TEXT no longer shows (the screen follows the
# database by up to a frame and tmux's refresh: a state already stored may still be on screen)
wait_gone() {
    i=0; limit=$(( ${2:-10} * 20 ))
    while [ $i -lt $limit ]; do
        $T capture-pane -p -t t 2>/dev/null | grep -qF -- "$1" || return 0
        i=$((i + 1)); sleep 0.05
    done
    return 1
}

wait_for_re() { # like wait_for, with an extended regular expression
    i=0; limit=$(( ${2:-10} * 20 ))
    while [ $i -lt $limit ]; do
        $T capture-pane -p -t t 2>/dev/null | grep -qE -- "$1" && return 0
        i=$((i + 1)); sleep 0.05
    done
    return 1
}

# start REPLY [RATE] [MIXEL ARGS...]: a fresh mixel in an 80x24 tmux window (own server each
# time; $TUI_ENV adds environment settings such as NO_COLOR=1, $TUI_TERM another TERM)
# time), history in $work/h.db
start() {
    reply=$1; rate=${2:-0}
    shift; [ $# -gt 0 ] && shift
    $T kill-server 2>/dev/null
    n_start=$((n_start + 1)); T="tmux -S $work/tmux.$n_start"
    $T -f /dev/null new-session -d -s t -x ${TUI_WIDTH:-80} -y 24 \
        "env ${TUI_ENV:-} HOME='$work/home' MIXEL_SCRIPTED_REPLY='$reply' MIXEL_SCRIPTED_RATE='$rate' \
         XDG_DATA_HOME='$work/data' \
         XDG_CONFIG_HOME='$work/cfg' MX_SRCDIR='$MX_SRCDIR' TERM=${TUI_TERM:-xterm-256color} \
         '$MIXEL' chat --db '$work/h.db' $*; echo EXITED \$?; sleep 30"
    wait_for "────────" || fail "the TUI did not start"
}

# say TEXT [SECONDS]: types TEXT and Enter, then waits until a real model's answer has finished
# (the status bar ends with "ctx N/M · R tok/s" again; give the window room for it). Fails
# with WHAT ($2 of fail) left to the caller: returns 1 on timeout.
say() {
    $T send-keys -t t "$1" Enter
    sleep 0.2
    wait_for_re "ctx [1-9][0-9]*/[0-9]+( \([0-9]+ reused, [0-9]+ new\))? · [0-9.]+ tok/s( +/help)? *$" "${2:-30}"
}

# quit: /quit and wait for mixel to exit cleanly
quit() {
    $T send-keys -t t "/quit" Enter
    wait_for "EXITED 0" 20 || fail "quit"
}

# tree: the stored session tree (tests/session_tree --dump) into $work/tree.txt; fails when the
# tree is not valid for the next turn
tree_dump() {
    "$MX_BUILDDIR/tests/session_tree" "$work/h.db" --dump >"$work/tree.txt" ||
        { cat "$work/tree.txt"; fail "stored tree not valid"; }
}

# tree_has REGEX WHAT: the last tree_dump has a line matching REGEX, else fail with WHAT
tree_has() {
    grep -q -- "$1" "$work/tree.txt" || { cat "$work/tree.txt"; fail "$2"; }
}
