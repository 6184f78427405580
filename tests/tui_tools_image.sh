#!/bin/sh
# tui_tools_image.sh - the chat model that draws (issue 18's "done when"): a Mixtral-template
# answer (scripted, Mistral's [TOOL_CALLS] syntax) calls generate_image; the call is shown and
# waits; after y the image is drawn with the session's checkpoint (the random-weight SD 1.5 of
# tests/sd_ckpt.sh, 64x64, 2 steps) through the /image job: it is in the conversation, the
# session (message + image row) and the images folder, the model is told what was drawn (a tool
# message answering the call's id) and the answer goes on. The same picture as `mixel image`
# draws with those settings. In a real terminal (xterm under Xvfb, ../shared/tools/termshot) the
# user types the message, presses y, and the picture is in the panel (tests/data/shotfind.py);
# MX_KEEP_SHOTS=DIR keeps the screenshot and the image there to look at.
set -u
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow end-to-end test, run in the normal pass only"; exit 77; }
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh")
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: no SD reference checkpoint (tests/sd_ckpt.sh says why above)"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: tests/sd_ckpt.sh failed ($rc)"; exit 1; }
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: sqlite3 is not installed"; exit 77; }
V="${MX_CLIP_VOCAB:-${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/mixel/bpe_simple_vocab_16e6.txt}"
[ -f "$V" ] || { echo "SKIP: the CLIP vocabulary ($V) is not installed: scripts/install-clip-vocab.sh"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
mkdir -p "$work/data/mixel" && ln -s "$V" "$work/data/mixel/" || fail "cannot link the vocabulary"
q() { sqlite3 "$work/h.db" "$1"; }
imgdir="$work/data/mixel/images"
printf 'I will draw it.\n[TOOL_CALLS] [{"name": "generate_image", "arguments": {"prompt": "a red cube", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2, "seed": 42}}]' \
    > "$work/r1.txt"
printf 'There is your red cube.' > "$work/r2.txt"
replies="$work/r1.txt:$work/r2.txt"

# --- tmux: the text flow
start "$replies" 0 --sd-model "$ckpt"
$T resize-window -t t -x 160 -y 40
t0=$(date +%s)
$T send-keys -t t "draw a red cube" Enter
wait_for 'generate_image(prompt="a red cube", negative_prompt="blurry", width=64, height=64, steps=2, seed=42)' 10 ||
    fail "the call is not shown with its arguments"
wait_for "run it? y yes · n no · a always (this session)" 5 || fail "no confirmation asked"
[ -z "$(ls "$imgdir" 2>/dev/null)" ] || fail "an image was drawn before the user answered"
$T send-keys -t t "y"
wait_for_re "image [12]/2 · [0-9.]+ s/step|image: " 120 || fail "no image progress after y"
wait_for "There is your red cube." 300 || fail "the answer did not go on after the image"
t1=$(date +%s)
wait_for_re "\[image: [0-9]+-42\.png, 64x64, seed 42, 2 steps, [0-9.]+ s\] a red cube" 5 ||
    fail "the image is not in the conversation"
wait_for_re '⚙ generate_image\(prompt="a red cube", .*\) → [0-9]+ B' 5 || fail "no folded call line"
[ "$(q 'SELECT COUNT(*) FROM images')" = 1 ] || fail "the image is not stored in the session"
png=$(q "SELECT path FROM images")
[ -f "$png" ] || fail "the stored image file $png is not there"
id=$(q "SELECT json_extract(tool_calls, '\$[0].id') FROM messages WHERE tool_calls != ''")
[ ${#id} -eq 9 ] || fail "the stored call has no 9-character id: $(q 'SELECT tool_calls FROM messages')"
q "SELECT content FROM messages WHERE role = 'tool' AND tool_call_id = '$id'" |
    grep -qE "^the image is drawn and shown to the user: [0-9]+-42\.png, 64x64, seed 42, 2 steps$" ||
    fail "the model was not told: $(q "SELECT role, tool_call_id, content FROM messages")"
# the picture is the one `mixel image` draws with the same settings
HOME="$work/home" XDG_DATA_HOME="$work/data" "$MIXEL" image -d "$ckpt" -p "a red cube" \
    -n "blurry" -W 64 -H 64 --steps 2 -s 42 -q -o "$work/cli.png" >"$work/cli.log" 2>&1 ||
    fail "mixel image failed: $(cat "$work/cli.log")"
/usr/bin/python3 - "$MX_SRCDIR/tests/data" "$png" "$work/cli.png" <<'PY' ||
import sys
sys.path.insert(0, sys.argv[1])
from shotcheck import read_png
sys.exit(0 if read_png(sys.argv[2]) == read_png(sys.argv[3]) else 1)
PY
    fail "generate_image and mixel image made different pixels from the same settings"
quit

# --- n: nothing drawn, the model is told, the answer goes on
rm -f "$work/h.db"
start "$replies" 0 --sd-model "$ckpt"
$T resize-window -t t -x 160 -y 40
$T send-keys -t t "draw a red cube" Enter
wait_for "run it? y yes" 10 || fail "no confirmation asked (second run)"
$T send-keys -t t "n"
wait_for "There is your red cube." 10 || fail "the answer did not go on after n"
wait_for "⚙ \`generate_image" 1 && fail "the folded line shows its markdown"
wait_for_re '⚙ generate_image\(.*\) → declined' 5 || fail "the call is not marked declined"
[ "$(q 'SELECT COUNT(*) FROM images')" = 0 ] || fail "a declined image was drawn"
quit

# --- xterm (termshot): type the message, press y, the picture is in the panel
TS="${MX_SHARED:-}/tools/termshot"
shot_ok=
for p in Xvfb xterm xdotool import; do command -v $p >/dev/null 2>&1 || shot_ok=no; done
if [ -x "$TS" ] && [ -z "$shot_ok" ] && "$MIXEL" --version | grep -q sixel; then
    rm -f "$work/h.db"
    # the image took t1 - t0 s in tmux: wait twice that (and the model load) before the shot
    w=$(( (t1 - t0) * 2 + 15 ))
    "$TS" --cols 100 --rows 40 --wait 3 --keys "draw a red cube" --key Return --wait 3 \
        --keys y --wait "$w" "$work/shot.png" -- env XDG_DATA_HOME="$work/data" \
        HOME="$work/home" MIXEL_SCRIPTED_REPLY="$replies" MX_SRCDIR="$MX_SRCDIR" \
        "$MIXEL" chat --theme dark --db "$work/h.db" --sd-model "$ckpt" >"$work/shot.log" 2>&1 ||
        fail "termshot failed: $(cat "$work/shot.log")"
    shotpng=$(q "SELECT path FROM images")
    [ -n "$shotpng" ] || fail "xterm: no image was drawn after y (waited $w s)"
    [ -n "${MX_KEEP_SHOTS:-}" ] && cp "$work/shot.png" "$shotpng" "${MX_KEEP_SHOTS}/" 2>/dev/null
    /usr/bin/python3 "$MX_SRCDIR/tests/data/shotfind.py" "$work/shot.png" "$shotpng" 204 8 17 ||
        fail "the generated image is not in the xterm screenshot"
    [ "$(q "SELECT count(*) FROM messages WHERE role = 'tool'")" = 1 ] ||
        fail "xterm: the call has no result stored"
else
    echo "(termshot, Xvfb, xterm, xdotool, ImageMagick or sixel absent: no screenshot)"
fi
echo ok
