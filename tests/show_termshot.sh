#!/bin/sh
# show_termshot.sh - `mixel show` in a real xterm (-ti vt340, under Xvfb): the sixel image, and the
# half-block fallback in 24-bit and 256 colours when told not to use sixel, each found in a
# screenshot at the expected place and size with the source's quadrant colours.
set -u
. "$MX_SRCDIR/tests/show_lib.sh"

# 1. sixel in xterm: libsixel's palette is a few levels off flat colours (measured up to 7);
#    shown after 20 lines of output, so the room for it must be made by scrolling first
if [ $sixel_build = yes ]; then
    shot sixel "" "seq 1 20;"
    grep -q 'mode sixel:' "$d/sixel.dbg" || fail "xterm vt340 not detected as sixel"
    sizes sixel
    check sixel "$sw" "$sh" 12 0
fi

# 2. told not to use sixel: half blocks in 24-bit colour are exact on screen
shot blocks24 "" "" MIXEL_GRAPHICS=blocks COLORTERM=truecolor
grep -q 'mode blocks:' "$d/blocks24.dbg" || fail "MIXEL_GRAPHICS=blocks ignored"
sizes blocks24
check blocks24 "$sw" "$bh" 4 0

# 3. ... and in 256 colours: coarse, the xterm cube's widest gap (0..95) allows 48 levels
shot blocks256 "" "" MIXEL_GRAPHICS=blocks TERM=xterm-256color
grep -q 'mode blocks:' "$d/blocks256.dbg" || fail "MIXEL_GRAPHICS=blocks ignored (256)"
check blocks256 "$sw" "$bh" 48 0

echo "ok"
