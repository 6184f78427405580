#!/bin/sh
# show_faketerm.sh - detection end to end on a pseudo-terminal that answers like a real one
# (tests/data/faketerm.py replays answers recorded from xterm -ti vt340, xterm's default ID 420,
# mlterm and tmux 3.3a), one that never answers, one that answers garbage and one whose answer
# arrives in two pieces: the right mode, sizes and cell source, only the queries needed, and a
# bounded time when nothing answers.
set -u
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
IMG="$MX_SRCDIR/tests/data/quadrants.png"
t=$(mktemp -d /tmp/mx-show-ft.XXXXXX) || exit 1
trap 'rm -rf "$t"' EXIT
ESC=$(printf '\033')

# run PROFILE [ENV...]: mixel show on the fake terminal; queries -> $t/q (and the echo flag after
# it ended), output -> $t/out,
# mixel's decision line -> $t/dbg, wall time in ms -> $ms
run() {
    p=$1
    shift
    s=$(date +%s%N)
    env -u TMUX -u COLORTERM MIXEL_DEBUG_GRAPHICS=1 "$@" "$PY" "$MX_SRCDIR/tests/data/faketerm.py" \
        "$p" "$t/out" -- "$MIXEL" show "$IMG" --width 10 >"$t/q"
    rc=$?
    ms=$((($(date +%s%N) - s) / 1000000))
    grep -q '^echo: on' "$t/q" || fail "$p: terminal left without echo ($(tail -n 1 "$t/q"))"
    sed -i '/^echo: /d' "$t/q"
    [ "$p" = interrupt ] && return
    [ $rc -eq 0 ] || fail "$p: exit $rc"
    grep -a 'mixel show: mode' "$t/out" | tr -d '\r' >"$t/dbg"
    [ -s "$t/dbg" ] || fail "$p: no decision line"
    echo "$p (${ms} ms, $(wc -l <"$t/q") queries): $(cat "$t/dbg")"
}
expect() { grep -q "$1" "$t/dbg" || fail "$p: want '$1' in: $(cat "$t/dbg")"; }
queries() { [ "$(wc -l <"$t/q")" -eq "$1" ] || fail "$p: $(wc -l <"$t/q") queries, want $1"; }
has_sixel() { grep -aq "${ESC}P[0-9;]*q" "$t/out" || fail "$p: no sixel in the output"; }
no_sixel() { grep -aq "${ESC}P[0-9;]*q" "$t/out" && fail "$p: sixel written"; true; }

if ! "$MIXEL" --version | grep -q sixel; then
    # a build without libsixel never picks sixel, and says why
    run xterm-vt340
    expect 'mode blocks: the terminal shows sixel but this mixel was built without libsixel'
    no_sixel
    echo "ok (no libsixel in this build: the sixel profiles were not run)"
    exit 0
fi

run xterm-vt340
expect 'mode sixel: terminal answers DA1 with sixel'
expect 'cell 8x17 (TIOCGWINSZ), 120x40 cells, max 960x680 px'
expect 'background ffffff$'
queries 7 # DA1, then registers, geometry and background colour, each followed by DA1
has_sixel

run xterm-420
expect 'mode blocks: terminal has no sixel (DA1 without attribute 4)'
queries 3 # DA1, then the background colour (for transparent pixels)
no_sixel
# alpha 128 over xterm's white: (240,220,40)*128/255 + 255*127/255 = (247,237,147)
IMG="$MX_SRCDIR/tests/data/quadrants_rgba.png"
run xterm-420 COLORTERM=truecolor
IMG="$MX_SRCDIR/tests/data/quadrants.png"
grep -aq "${ESC}\[38;2;247;237;147m" "$t/out" || fail "half-transparent pixels not over white"
grep -aq "${ESC}\[38;2;220;40;40m" "$t/out" || fail "opaque pixels changed"

run mlterm # no pixels in TIOCGWINSZ here: CSI 16 t gives the cell; the geometry answer is bogus
expect 'mode sixel:'
expect 'cell 10x19 (CSI 16 t), 120x40 cells, max 1200x760 px'
expect 'background 000000 (assumed)$' # mlterm's OSC 11 answer is not recorded: none given
queries 9
has_sixel

run tmux TMUX=/nonexistent/mx-test,1,0 # DA1 without 4; tmux cannot be asked about passthrough
expect 'mode blocks: inside tmux and allow-passthrough could not be read'
expect 'cell 8x17 (TIOCGWINSZ), 120x39 cells'
no_sixel

run silent
expect 'mode blocks: terminal did not answer DA1'
queries 1 # nothing more is asked of a terminal that does not answer
[ "$ms" -lt 5000 ] || fail "silent terminal took $ms ms"
no_sixel

run garbage
expect 'mode blocks: terminal did not answer DA1'
queries 1

run split
expect 'mode sixel:'
has_sixel

# Ctrl-C while the terminal is in raw mode: mixel dies of SIGINT, the mode restored first
run interrupt
[ $rc -eq 130 ] || fail "interrupt: exit $rc, want 130 (SIGINT)"

run silent MIXEL_GRAPHICS=sixel # forced: still sends sixel, sizes from TIOCGWINSZ / defaults
expect 'mode sixel: sixel requested by MIXEL_GRAPHICS'
has_sixel
echo "ok"
