#!/bin/sh
# sd_preview_shot.sh - the live preview seen in a real terminal: `mixel image --show --preview`
# with a random-weight TAESD decoder (written by tests/sd_preview_tool), 40 steps, in xterm
# (-ti vt340, sixel) under Xvfb via ../shared/tools/termshot. As soon as mixel logs its first step
# (the preview of step 1 is drawn before that line), the process is stopped (SIGSTOP), so the
# screenshot is taken mid-generation whatever the machine's speed: the check is that the final
# PNG does not exist yet and that a picture (a block of saturated colours, which the terminal's
# text and background are not) is on the screen where the preview area is.
set -u
: "${MIXEL:?}" "${MX_SRCDIR:?}"
skip() { echo "SKIP: $*"; exit 77; }
[ -z "${MX_SANITIZE:-}" ] || skip "slow real-terminal test, run in the normal pass only"
TS="${MX_SHARED:-}/tools/termshot"
[ -x "$TS" ] || skip "termshot not found ($TS): ../shared is absent"
for p in Xvfb xterm xdotool import; do
    command -v "$p" >/dev/null 2>&1 ||
        skip "$p is not installed (apt-get install xvfb xterm xdotool imagemagick)"
done
"$MIXEL" --version | grep -q sixel || skip "a build without libsixel: no sixel preview to see"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
tool=${MX_BUILDDIR:-.}/tests/sd_preview_tool
d=$(mktemp -d /tmp/mx-preview-shot.XXXXXX) || exit 1
[ -n "${MX_KEEP_SHOTS:-}" ] && echo "screenshots in $d" || trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; echo "(kept in $d)"; trap - EXIT; exit 1; }
"$tool" taesd-write "$d/taesd_decoder.safetensors" raw f16 5 || fail "writing the TAESD file"

# the watcher: stops mixel once its first step is logged
(
    i=0
    while [ $i -lt 1200 ]; do
        if [ -s "$d/pid" ] && grep -q "step 1/" "$d/log" 2>/dev/null; then
            kill -STOP "$(cat "$d/pid")" && touch "$d/stopped"
            exit 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
) &
watcher=$!
XDG_CACHE_HOME=$d/cache "$TS" --cols 100 --rows 30 --wait "${MX_PREVIEW_WAIT:-45}" "$d/shot.png" -- \
    sh -c 'echo $$ > "$1/pid"; exec "$2" image -t 2 -d "$3" -p "a red fox" -W 64 -H 64 \
        --steps 40 --seed 5 --show --preview --taesd "$1/taesd_decoder.safetensors" \
        -o "$1/out.png" 2> "$1/log"' sh "$d" "$MIXEL" "$ckpt" > "$d/ts.log" 2>&1
ts=$?
kill "$watcher" 2>/dev/null
[ -s "$d/pid" ] && kill -KILL "$(cat "$d/pid")" 2>/dev/null # only the mixel this test started
[ $ts -eq 0 ] || fail "termshot failed: $(cat "$d/ts.log")"
[ -f "$d/stopped" ] || fail "no step logged within the wait (log: $(cat "$d/log" 2>/dev/null))"
[ ! -f "$d/out.png" ] || fail "the final image was already written: not mid-generation"
grep -q "preview: taesd" "$d/log" || fail "mixel did not use the TAESD file: $(cat "$d/log")"
/usr/bin/python3 - "$d/shot.png" "$MX_SRCDIR/tests/data" <<'PY' || fail "no preview picture in the screenshot"
import sys
sys.path.insert(0, sys.argv[2])
from shotcheck import read_png
w, h, rows = read_png(sys.argv[1])
# saturated pixels: text and background are grey levels
sat = [(x, y) for y, row in enumerate(rows) for x, (r, g, b) in enumerate(row)
       if max(r, g, b) - min(r, g, b) > 60]
if not sat:
    print("preview: no coloured pixel on the screen")
    sys.exit(1)
xs = sorted(p[0] for p in sat)
ys = sorted(p[1] for p in sat)
x0, x1 = xs[len(xs) // 50], xs[-len(xs) // 50 - 1]
y0, y1 = ys[len(ys) // 50], ys[-len(ys) // 50 - 1]
print(f"preview: {len(sat)} coloured pixels in {w}x{h}, box ({x0},{y0})-({x1},{y1})")
# the area is half the 100 columns (8 px cells: 400 px) and square: well over 200x200 px
sys.exit(0 if len(sat) > 20000 and x1 - x0 > 200 and y1 - y0 > 200 else 1)
PY
echo "ok: a preview picture is on the screen before the final image ($(grep -c 'step' "$d/log") step logged)"
