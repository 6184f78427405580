#!/bin/sh
# show_termshot_mlterm.sh - `mixel show` in a real mlterm (under Xvfb, via termshot): mlterm shows
# sixel with no settings but answers XTSMGRAPHICS's geometry query wrongly; the image must still
# come out at the size its 10x19 cells give, in the right colours, over mlterm's background, and
# the half-block fallback too. Skips without mlterm (or what show_lib.sh needs).
set -u
. "$MX_SRCDIR/tests/show_lib.sh"
command -v mlterm >/dev/null 2>&1 || skip "mlterm is not installed (apt-get install mlterm)"

if [ $sixel_build = yes ]; then
    shot mlsixel "--term mlterm" "seq 1 20;"
    grep -q 'mode sixel: terminal answers DA1 with sixel' "$d/mlsixel.dbg" ||
        fail "mlterm not detected as sixel"
    sizes mlsixel 10x19
    check mlsixel "$sw" "$sh" 12 0
fi

shot mlblocks "--term mlterm" "" MIXEL_GRAPHICS=blocks COLORTERM=truecolor
grep -q 'mode blocks:' "$d/mlblocks.dbg" || fail "MIXEL_GRAPHICS=blocks ignored in mlterm"
sizes mlblocks 10x19
check mlblocks "$sw" "$bh" 4 0
echo "ok"
