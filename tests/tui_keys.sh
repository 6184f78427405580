#!/bin/sh
# tui_keys.sh - the key table (tui/keys.h) is the one list of the chat's keys: every key in it is
# in the README's key list and in /help, and the README names no key that is not in it. The table
# comes from tests/keys_table (which prints it); /help from the real binary in tmux.
set -u
table="$MX_BUILDDIR/tests/keys_table"
readme="$MX_SRCDIR/README.md"
[ -x "$table" ] || { echo "FAIL: $table is not built"; exit 1; }
tab=$(printf '\t')
keys=$("$table" | cut -f1)
[ -n "$keys" ] || { echo "FAIL: the key table is empty"; exit 1; }

# The README's keys: the first cells of its "| key / command |" table, commands (`/...`) left
# out, split at ", " and " / " (Up/Down stays one key, as in the table).
readme_keys=$(awk '
    /^\| key \/ command \|/ { t = 1; next }
    t && !/^\|/ { exit }
    t && /^\| *---/ { next }
    t {
        split($0, c, "|"); cell = c[2]
        gsub(/^ +| +$/, "", cell)
        if (cell ~ /^`\//) next
        gsub(/`/, "", cell)
        n = split(cell, k, /, | \/ /)
        for (i = 1; i <= n; i++) print k[i]
    }' "$readme")
[ -n "$readme_keys" ] || { echo "FAIL: no key list found in README.md"; exit 1; }

missing=$(echo "$keys" | while IFS= read -r k; do
    echo "$readme_keys" | grep -qxF -- "$k" || echo "$k"
done)
extra=$(echo "$readme_keys" | while IFS= read -r k; do
    echo "$keys" | grep -qxF -- "$k" || echo "$k"
done)
[ -z "$missing" ] || echo "$missing" | while IFS= read -r k; do
    echo "FAIL: key '$k' is in the key table (tui/keys.h) but not in README.md's key list"
done
[ -z "$extra" ] || echo "$extra" | while IFS= read -r k; do
    echo "FAIL: README.md's key list names '$k', which the key table (tui/keys.h) does not have"
done
[ -z "$missing$extra" ] || exit 1

# /help lists every named key of the table with its help, one "• KEY HELP" line each
if ! command -v tmux >/dev/null 2>&1; then
    echo "note: /help not checked (tmux is not installed)"
    echo ok
    exit 0
fi
. "$MX_SRCDIR/tests/tui_lib.sh"
start echo
$T resize-window -t t -x 160 -y 100
$T send-keys -t t "/help" Enter
wait_for "/quit  leave mixel" || fail "/help did not show"
"$table" | while IFS="$tab" read -r k h; do
    wait_for "• $k $h" 2 || fail "/help does not list the key '$k' ($h)"
done || exit 1
$T send-keys -t t "/quit" Enter
wait_for "EXITED 0" || fail "/quit did not exit cleanly"
echo ok
