#!/bin/sh
# show_blocks.sh - `mixel show` for shell use, stdout not a terminal: half blocks 80 columns wide by
# default (rows from the aspect ratio with 1:2 cells), exact 24-bit colours per quadrant, --width,
# JPEG input, sixel to a pipe when asked (DCS ... ST), and `none` / MIXEL_GRAPHICS overrides.
set -u
fail() { echo "FAIL: $*"; exit 1; }
D="$MX_SRCDIR/tests/data"
t=$(mktemp -d /tmp/mx-show-blk.XXXXXX) || exit 1
trap 'rm -rf "$t"' EXIT
ESC=$(printf '\033')
BLK=$(printf '\342\226\200')

# 64x48 at 80 columns of 8x16 cells: 640x480 px -> 80 x 60 half blocks -> 30 text rows
"$MIXEL" show "$D/quadrants.png" </dev/null >"$t/out" 2>"$t/err" || fail "show: $(cat "$t/err")"
[ "$(wc -l <"$t/out")" -eq 30 ] || fail "want 30 rows, got $(wc -l <"$t/out")"
while IFS= read -r line; do
    n=$(printf '%s' "$line" | grep -o "$BLK" | wc -l)
    [ "$n" -eq 80 ] || fail "a row has $n blocks, want 80"
done <"$t/out"
# first row starts with the top-left colour (fg and bg), switches to top-right at column 41
head -n 1 "$t/out" | grep -q "^$ESC\[38;2;220;40;40m$ESC\[48;2;220;40;40m$BLK" ||
    fail "top-left colour"
head -n 1 "$t/out" | grep -q "$ESC\[38;2;40;200;70m$ESC\[48;2;40;200;70m" || fail "top-right"
tail -n 1 "$t/out" | grep -q "$ESC\[38;2;40;70;220m$ESC\[48;2;40;70;220m" || fail "bottom-left"
tail -n 1 "$t/out" | grep -q "$ESC\[38;2;240;220;40m$ESC\[48;2;240;220;40m" || fail "bottom-right"
tail -n 1 "$t/out" | grep -q "$ESC\[0m\$" || fail "rows must end with SGR 0"
# the layout at an exact 2:1 shrink (--width 32): 16 red blocks then 16 green ones, 12 rows
"$MIXEL" show "$D/quadrants.png" --width 32 >"$t/out32" || fail "--width 32"
[ "$(wc -l <"$t/out32")" -eq 12 ] || fail "--width 32: want 12 rows"
first=$(head -n 1 "$t/out32" | sed "s/$ESC\[38;2;40;200;70m.*//" | grep -o "$BLK" | wc -l)
[ "$first" -eq 16 ] || fail "red part of row 1 is $first blocks, want 16"
[ "$(head -n 1 "$t/out32" | grep -o "$BLK" | wc -l)" -eq 32 ] || fail "--width 32: 32 columns"

# --width 16: 16 columns, 6 rows; JPEG: same layout, colours near (lossy)
"$MIXEL" show "$D/quadrants.png" --width 16 >"$t/out" || fail "--width 16"
[ "$(wc -l <"$t/out")" -eq 6 ] || fail "--width 16: want 6 rows"
[ "$(head -n 1 "$t/out" | grep -o "$BLK" | wc -l)" -eq 16 ] || fail "--width 16: 16 columns"
if "$MIXEL" --version | grep -q sixel; then
    "$MIXEL" show "$D/quadrants.jpg" --width 16 >"$t/out" 2>"$t/err" || fail "jpeg: $(cat "$t/err")"
    [ "$(wc -l <"$t/out")" -eq 6 ] || fail "jpeg: want 6 rows"
    # first cell within 8 levels of (220,40,40)
    n='\([0-9]*\)'
    set -- $(head -n 1 "$t/out" | sed -n "s/^$ESC\[38;2;$n;$n;${n}m.*/\1 \2 \3/p")
    [ $# -eq 3 ] || fail "jpeg: no 24-bit colour in the first cell"
    for p in "$1:220" "$2:40" "$3:40"; do
        v=${p%%:*} w=${p##*:}
        [ $((v - w)) -le 8 ] && [ $((w - v)) -le 8 ] || fail "jpeg: first cell $1,$2,$3"
    done
    # sixel to a pipe when asked: DCS introducer, 'q', string terminator
    "$MIXEL" show "$D/quadrants.png" --graphics sixel --width 10 >"$t/six" || fail "sixel"
    [ "$(head -c 2 "$t/six" | od -An -tx1 | tr -d " ")" = 1b50 ] ||
        fail "sixel must start with ESC P"
    grep -q "^${ESC}P[0-9;]*q" "$t/six" || fail "sixel: no 'q' after the DCS parameters"
    [ "$(tail -c 3 "$t/six" | od -An -tx1 | tr -d " ")" = 1b5c0a ] ||
        fail "sixel must end with ST"
fi

# several files: each in turn; a missing one is reported, the others still shown, exit 1
"$MIXEL" show "$D/quadrants.png" "$D/no-such.png" "$D/quadrants_palette.png" --width 4 \
    >"$t/out" 2>"$t/err"
[ $? -eq 1 ] || fail "a missing file among several: want exit 1"
grep -q 'no-such.png' "$t/err" || fail "the missing file is not named"
[ "$(wc -l <"$t/out")" -eq 4 ] || fail "two images of 2 rows each expected"
[ "$(grep -c "^$ESC\[38;2;220;40;40m" "$t/out")" -eq 2 ] || fail "both images start top-left red"

# --at ROW,COL: DECSC, CUP to the cell, each half-block row placed with its own CUP, DECRC; no
# newline (the cursor stays where it was)
"$MIXEL" show "$D/quadrants.png" --at 2,3 --width 4 >"$t/out" || fail "--at"
[ "$(head -c 8 "$t/out" | od -An -tx1 | tr -d ' ')" = 1b371b5b333b3448 ] ||
    fail "--at must start with DECSC and CUP 3;4: $(head -c 8 "$t/out" | od -An -c)"
grep -aq "${ESC}\[4;4H" "$t/out" || fail "--at: second row not placed at 4;4"
[ "$(tail -c 2 "$t/out" | od -An -tx1 | tr -d ' ')" = 1b38 ] || fail "--at must end with DECRC"
[ "$(wc -l <"$t/out")" -eq 0 ] || fail "--at wrote a newline"

# none and the environment
"$MIXEL" show "$D/quadrants.png" --graphics none >"$t/out" || fail "none"
[ "$(cat "$t/out")" = "[image: $D/quadrants.png]" ] || fail "none: '$(cat "$t/out")'"
MIXEL_GRAPHICS=none "$MIXEL" show "$D/quadrants.png" >"$t/out" || fail "MIXEL_GRAPHICS=none"
grep -q '^\[image: ' "$t/out" || fail "MIXEL_GRAPHICS=none ignored"
MIXEL_GRAPHICS=none "$MIXEL" show "$D/quadrants.png" --graphics blocks --width 4 >"$t/out"
grep -q "$BLK" "$t/out" || fail "--graphics must override MIXEL_GRAPHICS"
echo "ok"
