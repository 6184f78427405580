# show_lib.sh - sourced by the show_termshot*.sh tests: skips (exit 77) when ../shared, Xvfb,
# xterm, xdotool or ImageMagick's import are missing; shot() runs `mixel show` of
# tests/data/quadrants.png 40 columns wide in xterm -ti vt340 under Xvfb via
# ../shared/tools/termshot; check() finds the image in the screenshot and compares its size and
# quadrant colours (tests/data/shotcheck.py).
skip() { echo "SKIP: $*"; exit 77; }
[ -z "${MX_SANITIZE:-}" ] || skip "slow real-terminal test, run in the normal pass only"
TS="${MX_SHARED:-}/tools/termshot"
[ -x "$TS" ] || skip "termshot not found ($TS): ../shared is absent"
for p in Xvfb xterm xdotool import; do
    command -v "$p" >/dev/null 2>&1 ||
        skip "$p is not installed (apt-get install xvfb xterm xdotool imagemagick)"
done
PY=/usr/bin/python3
[ -x "$PY" ] || skip "no /usr/bin/python3 for the screenshot check"
IMG="$MX_SRCDIR/tests/data/quadrants.png"
CHECK="$MX_SRCDIR/tests/data/shotcheck.py"
d=$(mktemp -d /tmp/mx-show-shot.XXXXXX) || exit 1
# MX_KEEP_SHOTS=1 keeps the screenshots (look at them)
[ -n "${MX_KEEP_SHOTS:-}" ] && echo "screenshots in $d" || trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; echo "(screenshots kept in $d)"; trap - EXIT; exit 1; }

# shot NAME TMUX-OR-NOT PRE-COMMAND ENV...: shows the image ($SHOW_IMG, else quadrants.png) 40
# columns wide (plus $SHOW_ARGS); mixel's decision (MIXEL_DEBUG_GRAPHICS) goes to $d/NAME.dbg.
shot() {
    name=$1 tm=$2 pre=$3
    shift 3
    "$TS" $tm --cols 80 --rows 24 --wait 1 "$d/$name.png" -- \
        env -u COLORTERM MIXEL_DEBUG_GRAPHICS=1 "$@" sh -c \
        "$pre \"\$0\" show \"\$1\" --width 40 $SHOW_ARGS 2>\"\$2\"" "$MIXEL" "${SHOW_IMG:-$IMG}" \
        "$d/$name.dbg" \
        >"$d/$name.log" 2>&1 || fail "$name: termshot failed: $(cat "$d/$name.log")"
    [ -s "$d/$name.dbg" ] || fail "$name: mixel wrote no decision (did it run?)"
    echo "$name: $(cat "$d/$name.dbg")"
}

# expected size in px of 40 columns of a 64x48 image, from the cell size the terminal really
# has: termshot's xterm (DejaVu Sans Mono 10, also inside tmux) 8x17 px, mlterm (its default
# font) 10x19 px; half blocks are rounded to whole half cells (tui/image_term.c mx_image_fit).
# sizes NAME [WxH] also fails when the cell size mixel found (its debug line) is not that one:
# deriving the expectation from mixel's own answer would let a wrong cell size through.
sizes() {
    want=${2:-8x17}
    cw=${want%x*} ch=${want#*x}
    got=$(sed -n 's/.*; cell \([0-9]*x[0-9]*\) .*/\1/p' "$d/$1.dbg")
    [ -n "$got" ] || fail "$1: no cell size in $(cat "$d/$1.dbg")"
    [ "$got" = "$want" ] || fail "$1: mixel found ${got}-px cells; this terminal has $want"
    sw=$((40 * cw)) sh=$(((40 * cw * 48 + 32) / 64))
    bh2=$(((sh * 2 * 2 + ch) / (2 * ch)))                 # half-block rows, rounded
    bh=$((bh2 / 2 * ch + bh2 % 2 * ch / 2))
}

check() { # NAME W H TOL IGNORE_BOTTOM [R,G,B of the bottom-right quadrant]
    n=$1
    shift
    "$PY" "$CHECK" "$d/$n.png" "$@" || fail "$n: screenshot does not match"
}

# a build without libsixel runs only the half-block cases
sixel_build=no
"$MIXEL" --version | grep -q sixel && sixel_build=yes
SHOW_ARGS=
