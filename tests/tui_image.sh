#!/bin/sh
# tui_image.sh - images in the chat, in a real terminal: xterm -ti vt340 (sixel) under Xvfb via
# ../shared/tools/termshot. /show attaches tests/data/quadrants.png; the screenshot must hold it
# once, at the expected size, with the right quadrant colours (tests/data/shotcheck.py): after
# more text scrolls it up (no ghost copies left behind), after a restart (--resume), full screen
# (F3), inside tmux with passthrough, and as half blocks in a terminal told not to use sixel.
set -u
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow end-to-end test, run in the normal pass only"; exit 77; }
. "$MX_SRCDIR/tests/show_lib.sh"   # skips without termshot/Xvfb/xterm; defines d, fail, check
"$MIXEL" --version | grep -q sixel || skip "this build has no libsixel"
IMG="$MX_SRCDIR/tests/data/quadrants.png"

# The dark theme keeps caption text (cyan) apart from the quadrant colours the check looks for.
# termshot's xterm has 8x17 px cells: a 64x48 image in the chat's 12-row block is 204 px high,
# 272 px wide; full screen (100x32, 30 rows for the image) it is 510 x 680.
tui() { # tui NAME [--tmux] KEYS... : mixel chat in a 100x32 xterm, termshot actions, a shot
    name=$1
    shift
    tm=
    [ "${1:-}" = --tmux ] && { tm=--tmux; shift; }
    "$TS" $tm --cols 100 --rows 32 --wait 1.5 "$@" --wait 1.5 "$d/$name.png" -- \
        env XDG_DATA_HOME="$d/data" MIXEL_SCRIPTED_REPLY=echo MX_SRCDIR="$MX_SRCDIR" \
        "$MIXEL" chat --theme dark --db "$d/h.db" $TUI_ARGS >"$d/$name.log" 2>&1 ||
        fail "$name: termshot failed: $(cat "$d/$name.log")"
}

TUI_ARGS=""
tui attach --keys "/show $IMG" --key Return
check attach 272 204 40 0

# more conversation scrolls the image up: it is sent again at its new place, nothing stays behind
tui scrolled --keys "/show $IMG" --key Return --keys "one more line" --key Return \
    --keys "and another" --key Return
# the first image is half off the top: only whole images are drawn, so exactly one is seen and a
# ghost of its old place would widen the bounding box
check scrolled 272 204 40 0

TUI_ARGS="--resume"
tui resumed
check resumed 272 204 40 0

tui viewer --key F3
check viewer 680 510 40 0

# the gallery: a thumbnail (8 rows: 136 px high, 181 wide); /save copies the file
tui gallery --keys "/gallery" --key Return --wait 1 --keys "/save $d/saved.png" --key Return \
    --keys "/gallery" --key Return
check gallery 181 136 40 0
cmp -s "$IMG" "$d/saved.png" || fail "/save did not copy the image"

# inside tmux with allow-passthrough on (termshot --tmux sets it): the sixel and the cursor move
# that places it pass through to xterm; the last 20 px are tmux's status line
TUI_ARGS="--no-history"
tui tmux --tmux --keys "/show $IMG" --key Return
check tmux 272 204 40 20

# half blocks: the same place, two pixels per cell, 256 colours
"$TS" --cols 100 --rows 32 --wait 2 "$d/blocks.png" -- env TERM=xterm-256color \
    XDG_DATA_HOME="$d/data" MIXEL_SCRIPTED_REPLY=echo MX_SRCDIR="$MX_SRCDIR" \
    "$MIXEL" chat --theme dark --db "$d/h.db" --resume --graphics blocks >"$d/blocks.log" 2>&1 ||
    fail "blocks: termshot failed"
check blocks 272 204 48 0
echo ok
