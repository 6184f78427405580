#!/bin/sh
# sd_preview_tui.sh - the live preview in the chat: /image in the TUI (xterm -ti vt340 under Xvfb,
# ../shared/tools/termshot), 40 steps on the random SD 1.5 checkpoint, with a random-weight TAESD
# decoder found where ComfyUI keeps them (~/ComfyUI/models/vae_approx). Once the job has written
# its first preview the process is stopped (SIGSTOP; killed after the shot), so the screenshot is
# mid-generation on any machine: no image is saved yet, the conversation shows the preview
# message, and a picture (saturated colours, which the dark theme's text is not) is on screen.
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
V="${MX_CLIP_VOCAB:-${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/mixel/bpe_simple_vocab_16e6.txt}"
[ -f "$V" ] || skip "the CLIP vocabulary ($V) is not installed: scripts/install-clip-vocab.sh"
tool=${MX_BUILDDIR:-.}/tests/sd_preview_tool
d=$(mktemp -d /tmp/mx-preview-tui.XXXXXX) || exit 1
[ -n "${MX_KEEP_SHOTS:-}" ] && echo "screenshots in $d" || trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; echo "(kept in $d)"; trap - EXIT; exit 1; }
mkdir -p "$d/data/mixel" "$d/home/ComfyUI/models/vae_approx" "$d/cfg" && ln -s "$V" "$d/data/mixel/"
"$tool" taesd-write "$d/home/ComfyUI/models/vae_approx/taesd_decoder.safetensors" diffusers f16 7 ||
    fail "writing the TAESD file"
imgs=$d/data/mixel/images
(
    i=0
    while [ $i -lt 1500 ]; do
        if [ -s "$d/pid" ] && ls "$imgs"/.preview-*.png >/dev/null 2>&1; then
            sleep 3 # the TUI loads and draws it at the step's progress event
            kill -STOP "$(cat "$d/pid")" && touch "$d/stopped"
            exit 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
) &
watcher=$!
"$TS" --cols 100 --rows 32 --wait 3 --keys "/image a red fox -W 64 -H 64 --steps 40 --seed 5" \
    --key Return --wait "${MX_PREVIEW_WAIT:-60}" "$d/shot.png" -- \
    sh -c 'echo $$ > "$1/pid"; exec env XDG_DATA_HOME="$1/data" XDG_CONFIG_HOME="$1/cfg" \
        HOME="$1/home" MIXEL_SCRIPTED_REPLY=echo "$2" chat --theme dark --db "$1/h.db" \
        --sd-model "$3" -t 2 2> "$1/err"' sh "$d" "$MIXEL" "$ckpt" > "$d/ts.log" 2>&1
ts=$?
kill "$watcher" 2>/dev/null
[ -s "$d/pid" ] && kill -KILL "$(cat "$d/pid")" 2>/dev/null # only the mixel this test started
[ $ts -eq 0 ] || fail "termshot failed: $(cat "$d/ts.log")"
[ -f "$d/stopped" ] || fail "no preview file within the wait (stderr: $(cat "$d/err" 2>/dev/null))"
[ -z "$(ls "$imgs")" ] || fail "an image was saved already: not mid-generation ($(ls "$imgs"))"
/usr/bin/python3 - "$d/shot.png" "$MX_SRCDIR/tests/data" <<'PY' || fail "no preview picture in the screenshot"
import sys
sys.path.insert(0, sys.argv[2])
from shotcheck import read_png
w, h, rows = read_png(sys.argv[1])
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
# the conversation's image box is 12 rows of 17 px (204 px) square
sys.exit(0 if len(sat) > 15000 and x1 - x0 > 150 and y1 - y0 > 150 else 1)
PY
echo "ok: the picture forming is in the chat before the image is done"
