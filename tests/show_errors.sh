#!/bin/sh
# show_errors.sh - `mixel show` on hostile and broken input: truncated PNG, bad CRC, absurd sizes
# in IHDR / the JPEG frame header, a truncated JPEG, a missing file, a non-image; each must exit 1
# with a clear message naming the file, write nothing to stdout, and never hang or crash. Bad usage
# exits 2. With stdin/stdout not a terminal, no query is ever sent.
set -u
fail() { echo "FAIL: $*"; exit 1; }
D="$MX_SRCDIR/tests/data"
t=$(mktemp -d /tmp/mx-show-err.XXXXXX) || exit 1
trap 'rm -rf "$t"' EXIT

expect_error() { # FILE MESSAGE-PART
    timeout 20 "$MIXEL" show "$D/$1" </dev/null >"$t/out" 2>"$t/err"
    rc=$?
    [ $rc -eq 1 ] || fail "$1: exit $rc, want 1 ($(cat "$t/err"))"
    [ -s "$t/out" ] && fail "$1: wrote to stdout on error"
    grep -q "^mixel show: .*$1: .*$2" "$t/err" || fail "$1: message '$(cat "$t/err")' lacks '$2'"
    echo "$1: $(cat "$t/err")"
}
expect_error bad_truncated.png "corrupt PNG"
expect_error bad_crc.png "CRC error"
expect_error bad_huge.png "too large (100000x100000"
expect_error bad_giant.png "too large (16000x16000"
expect_error bad_huge.jpg "too large (60000x60000"
expect_error bad_liar.png "8000x8000 needs at least"
if "$MIXEL" --version | grep -q sixel; then
    expect_error bad_truncated.jpg "corrupt JPEG"
fi
expect_error make_images.py "not a PNG or JPEG"
expect_error no-such.png "No such file"
# an empty file and a PNG cut right after its signature
: >"$t/empty.png"
head -c 8 "$D/quadrants.png" >"$t/sig.png"
for f in empty.png sig.png; do
    timeout 20 "$MIXEL" show "$t/$f" </dev/null >/dev/null 2>"$t/err"
    [ $? -eq 1 ] || fail "$f: want exit 1"
    grep -q "$f" "$t/err" || fail "$f: message does not name the file"
done

# usage errors
"$MIXEL" show >/dev/null 2>&1; [ $? -eq 2 ] || fail "no FILE: want exit 2"
"$MIXEL" show "$D/quadrants.png" --graphics kitty >/dev/null 2>&1
[ $? -eq 2 ] || fail "--graphics kitty: want exit 2"
"$MIXEL" show "$D/quadrants.png" --width 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--width 0"
"$MIXEL" show "$D/quadrants.png" --height >/dev/null 2>&1; [ $? -eq 2 ] || fail "--height"
"$MIXEL" show --help | grep -q '^usage: mixel show' || fail "--help"
"$MIXEL" show "$D/quadrants.png" --at 3 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--at 3: want 2"
"$MIXEL" show "$D/quadrants.png" --at -1,2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--at -1,2"
# off the (80x24 when not a terminal) screen: a runtime error, nothing drawn
"$MIXEL" show "$D/quadrants.png" --at 30,0 >"$t/out" 2>"$t/err"
[ $? -eq 1 ] || fail "--at 30,0: want exit 1"
grep -q 'off the' "$t/err" || fail "--at 30,0: message '$(cat "$t/err")'"
[ -s "$t/out" ] && fail "--at 30,0 wrote to stdout"

# not a tty: no query bytes (CSI c, CSI ? ... S, CSI 1x t) in the output, even with auto or sixel
modes="auto blocks"
"$MIXEL" --version | grep -q sixel && modes="$modes sixel"
for g in $modes; do
    timeout 20 "$MIXEL" show "$D/quadrants.png" --graphics $g </dev/null >"$t/out" 2>&1 ||
        fail "--graphics $g to a pipe failed"
    if grep -q "$(printf '\033')\[c\|$(printf '\033')\[?[12];1;0S\|$(printf '\033')\[1[468]t" \
        "$t/out"; then
        fail "--graphics $g sent a terminal query with stdout not a tty"
    fi
done
echo "ok"
