#!/bin/sh
# show_termshot_extra.sh - more of `mixel show` in a real xterm (-ti vt340, under Xvfb): a
# half-transparent PNG composited over the background xterm reports (OSC 11), and --at ROW,COL
# drawing the image at that cell. Checked in screenshots like show_termshot.sh; a build without
# libsixel has nothing to run here.
set -u
. "$MX_SRCDIR/tests/show_lib.sh"
[ $sixel_build = yes ] || skip "this mixel was built without libsixel"

# 1. transparency: the half-transparent quadrant is composited over xterm's white background
#    (asked with OSC 11): (240,220,40) at alpha 128 over white is (247,237,147)
if [ $sixel_build = yes ]; then
    SHOW_IMG="$MX_SRCDIR/tests/data/quadrants_rgba.png"
    shot alpha "" ""
    SHOW_IMG=
    grep -q 'background ffffff$' "$d/alpha.dbg" || fail "xterm's background not read"
    sizes alpha
    check alpha "$sw" "$sh" 12 0 247,237,147
fi

# 2. --at 5,10: the sixel drawn at that cell (2 px border + 10 columns, 5 rows), the cursor kept
if [ $sixel_build = yes ]; then
    SHOW_ARGS="--at 5,10"
    shot at "" ""
    SHOW_ARGS=
    sizes at
    check at "$sw" "$sh" 12 0 - $((2 + 10 * cw)),$((2 + 5 * ch))
fi

echo "ok"
