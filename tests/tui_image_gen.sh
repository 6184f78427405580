#!/bin/sh
# tui_image_gen.sh - /image and /img2img in the chat, on the random-weight SD 1.5 checkpoint the
# refs were made with (tests/sd_ckpt.sh), 64x64: the status bar shows "image N/M · S s/step ·
# ETA T s" while it runs; Esc cancels with a notice and leaves no image (screen, database,
# images folder); a finished image is in the conversation and stored in the session (message,
# image row with its parameters, the PNG with A1111's "parameters" chunk); /img2img redraws the
# last image; the checkpoint given with -d is remembered by the session (--resume without
# --sd-model finds it), else the first one discovered is used, and -d takes a discovered name;
# the chat goes on between images; the image and its parameters are those `mixel image` makes
# with the same settings. In xterm (termshot), the generated image is in the panel;
# MX_KEEP_SHOTS=DIR keeps the screenshot and the image there to look at. With
# ../shared/models/stories260K.gguf also: when the image model does not fit beside the chat
# model (MIXEL_MEM_AVAILABLE stands in for a small machine), the chat model is unloaded with a
# notice and loaded again by the next message, which is answered.
set -u
[ -z "${MX_SANITIZE:-}" ] || { echo "SKIP: slow end-to-end test, run in the normal pass only"; exit 77; }
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh")
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: no SD reference checkpoint (tests/sd_ckpt.sh says why above)"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: tests/sd_ckpt.sh failed ($rc)"; exit 1; }
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: sqlite3 is not installed"; exit 77; }
# OpenAI's CLIP vocabulary where mixel looks for it ($XDG_DATA_HOME/mixel/), before the tests'
# own data folder replaces that
V="${MX_CLIP_VOCAB:-${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/mixel/bpe_simple_vocab_16e6.txt}"
[ -f "$V" ] || { echo "SKIP: the CLIP vocabulary ($V) is not installed: scripts/install-clip-vocab.sh"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
mkdir -p "$work/data/mixel" && ln -s "$V" "$work/data/mixel/" || fail "cannot link the vocabulary"
tree() { "$MX_BUILDDIR/tests/session_tree" "$work/h.db" --dump; }
q() { sqlite3 "$work/h.db" "$1"; }
imgdir="$work/data/mixel/images"
# the "parameters" text chunk of a PNG (tEXt or uncompressed iTXt), by the stdlib only
params() {
    /usr/bin/python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
p = 8
while p + 8 <= len(d):
    n, t = struct.unpack(">I4s", d[p:p + 8])
    c = d[p + 8:p + 8 + n]
    if t == b"tEXt" and c.startswith(b"parameters\0"):
        print(c[11:].decode("latin-1")); break
    if t == b"iTXt" and c.startswith(b"parameters\0"):
        r = c[11:].split(b"\0", 3)  # flag+method, language, translated keyword, text
        print(r[-1].decode("utf-8")); break
    p += 12 + n
PY
}

# --- no checkpoint anywhere: the command says how to give one
start echo 0
$T resize-window -t t -x 160 -y 40 # room for the progress and the notices
$T send-keys -t t "/image a red cube" Enter
wait_for "no image model: give one with -d CHECKPOINT.safetensors" 5 || fail "no model: no notice"
$T send-keys -t t "/image -W 3 x" Enter
wait_for "/image: -W takes a whole number from 8 to 4096, not '3'" 5 || fail "bad -W not refused"
$T send-keys -t t "/img2img a blue cube -d '$ckpt'" Enter
wait_for "/img2img: the conversation has no image yet" 5 || fail "img2img without an image"
quit

start echo 0 --sd-model "$ckpt"
$T resize-window -t t -x 160 -y 40
# --- cancel: 20 steps, Esc once the steps run (the status bar shows speed and ETA)
$T send-keys -t t "/image a red cube -W 64 -H 64 --steps 20 --seed 7" Enter
wait_for_re "image [1-9][0-9]*/20 · [0-9.]+ s/step · ETA [0-9]+ s \(Esc cancels\)" 300 ||
    fail "no progress with s/step and ETA in the status bar"
$T send-keys -t t Escape
wait_for "image cancelled: nothing was saved" 60 || fail "Esc did not cancel the image"
wait_gone "Esc cancels" 5 || fail "the progress stayed after the cancel"
[ "$(q 'SELECT COUNT(*) FROM images')" = 0 ] || fail "a cancelled image was stored"
[ -z "$(ls "$imgdir" 2>/dev/null)" ] || fail "a cancelled image left a file: $(ls "$imgdir")"
$T capture-pane -p -t t | grep -q "\[image: " && fail "a cancelled image is in the conversation"

# --- a 2-step image: in the conversation, the session and the PNG
$T send-keys -t t "/image a red cube -n 'blurry, dark' -W 64 -H 64 --steps 2 --seed 42" Enter
wait_for "image saved in $imgdir/" 300 || fail "the image was not made"
wait_for_re "\[image: [0-9]+-42\.png, 64x64, seed 42, 2 steps, [0-9.]+ s\] a red cube" 5 ||
    fail "the image's message is not in the conversation"
[ "$(q 'SELECT COUNT(*) FROM images')" = 1 ] || fail "the image is not stored in the session"
png=$(q "SELECT path FROM images")
[ -f "$png" ] || fail "the stored image file $png is not there"
q "SELECT params FROM images" | grep -q '"seed": 42' || fail "params: $(q 'SELECT params FROM images')"
q "SELECT params FROM images" | grep -q '"source": "txt2img"' || fail "params: no source"
params "$png" > "$work/p1.txt"
grep -q "^a red cube$" "$work/p1.txt" || { cat "$work/p1.txt"; fail "PNG parameters: prompt"; }
grep -q "^Negative prompt: blurry, dark$" "$work/p1.txt" || { cat "$work/p1.txt"; fail "negative"; }
grep -q "^Steps: 2, Sampler: .*Seed: 42, Size: 64x64, Model hash: fe5778e666, Model: sd15_random_s1" "$work/p1.txt" ||
    { cat "$work/p1.txt"; fail "PNG parameters line"; }
tree | grep -q " assistant complete 1/1 \[image: .*\] a red cube$" ||
    { tree; fail "the image message is not in the session's tree"; }
# the same image as `mixel image` makes with the same settings: pixels and parameters
HOME="$work/home" XDG_DATA_HOME="$work/data" "$MIXEL" image -d "$ckpt" -p "a red cube" \
    -n "blurry, dark" -W 64 -H 64 --steps 2 -s 42 -q -o "$work/cli.png" >"$work/cli.log" 2>&1 ||
    fail "mixel image failed: $(cat "$work/cli.log")"
/usr/bin/python3 - "$MX_SRCDIR/tests/data" "$png" "$work/cli.png" <<'PY' ||
import sys
sys.path.insert(0, sys.argv[1])
from shotcheck import read_png
a, b = read_png(sys.argv[2]), read_png(sys.argv[3])
sys.exit(0 if a == b else 1)
PY
    fail "/image and mixel image made different pixels from the same settings"
params "$work/cli.png" | cmp -s - "$work/p1.txt" ||
    { params "$work/cli.png"; cat "$work/p1.txt"; fail "/image and mixel image differ in parameters"; }
# the checkpoint is the session's
q "SELECT sampling FROM sessions" | grep -qF "\"sd_model\": \"$ckpt\"" ||
    fail "the session does not remember the checkpoint: $(q 'SELECT sampling FROM sessions')"

# --- the chat goes on, and the image is not sent to the model as text
$T send-keys -t t "hello there" Enter
i=0
while ! tree 2>/dev/null | grep -q " assistant complete 1/1 You said: hello there$"; do
    i=$((i + 1)); [ $i -lt 200 ] || { tree; fail "the chat does not answer after an image"; }
    sleep 0.05
done

# --- /img2img from the last image
$T send-keys -t t "/img2img a blue cube --strength 0.5 --steps 2 --cfg 1 --seed 43" Enter
wait_for_re "\[image: [0-9]+-43\.png, 64x64, seed 43, 2 steps, [0-9.]+ s, from the last image\] a blue cube" 300 ||
    fail "img2img made no image"
[ "$(q 'SELECT COUNT(*) FROM images')" = 2 ] || fail "the img2img image is not stored"
p2=$(q "SELECT params FROM images ORDER BY id DESC LIMIT 1")
echo "$p2" | grep -q '"source": "img2img"' || fail "img2img params: $p2"
echo "$p2" | grep -qF "\"init\": \"$png\"" || fail "img2img did not start from the last image: $p2"
echo "$p2" | grep -q '"strength": 0.5' || fail "img2img strength: $p2"
params "$(q 'SELECT path FROM images ORDER BY id DESC LIMIT 1')" |
    grep -q "Denoising strength: 0.5" || fail "img2img PNG parameters lack the strength"
quit

# --- resumed without --sd-model: the session's checkpoint draws; the images come back
start echo 0 --resume
$T resize-window -t t -x 160 -y 40
wait_for "a blue cube" 10 || fail "resume: the conversation did not come back"
$T send-keys -t t "/image a green cube -W 64 -H 64 --steps 1 --cfg 1 --seed 44" Enter
wait_for_re "\[image: [0-9]+-44\.png, 64x64, seed 44, 1 step," 300 ||
    fail "resume: the session's checkpoint was not used"
quit

# --- in a real terminal (xterm -ti vt340 under Xvfb, ../shared/tools/termshot): the session's
# last generated image is in the panel, as sixel, 12 rows of 17 px = 204 px square, and it is
# that image (tests/data/shotfind.py compares it pixel by pixel at every cell position)
TS="${MX_SHARED:-}/tools/termshot"
shot_ok=
for p in Xvfb xterm xdotool import; do command -v $p >/dev/null 2>&1 || shot_ok=no; done
if [ -x "$TS" ] && [ -z "$shot_ok" ] && "$MIXEL" --version | grep -q sixel; then
    last=$(q "SELECT path FROM images ORDER BY id DESC LIMIT 1")
    "$TS" --cols 100 --rows 32 --wait 3 "$work/shot.png" -- env XDG_DATA_HOME="$work/data" \
        HOME="$work/home" MIXEL_SCRIPTED_REPLY=echo MX_SRCDIR="$MX_SRCDIR" \
        "$MIXEL" chat --theme dark --db "$work/h.db" --resume >"$work/shot.log" 2>&1 ||
        fail "termshot failed: $(cat "$work/shot.log")"
    [ -n "${MX_KEEP_SHOTS:-}" ] && cp "$work/shot.png" "$last" "${MX_KEEP_SHOTS}/" 2>/dev/null
    /usr/bin/python3 "$MX_SRCDIR/tests/data/shotfind.py" "$work/shot.png" "$last" 204 8 17 ||
        fail "the generated image is not in the xterm screenshot"
else
    echo "(termshot, Xvfb, xterm, xdotool, ImageMagick or sixel absent: no screenshot)"
fi

# --- no --sd-model, none chosen: the first checkpoint found where A1111 keeps them; -d also
# takes a name as `mixel list` shows it
sdd="$work/home/stable-diffusion-webui/models/Stable-diffusion"
mkdir -p "$sdd" && ln -s "$ckpt" "$sdd/found.safetensors" || fail "cannot make the A1111 folder"
start echo 0
$T resize-window -t t -x 160 -y 40
$T send-keys -t t "/image a found cube -W 64 -H 64 --steps 1 --cfg 1 --seed 45" Enter
wait_for_re "\[image: [0-9]+-45\.png, 64x64, seed 45, 1 step," 300 ||
    fail "the discovered checkpoint was not used"
q "SELECT sampling FROM sessions ORDER BY id DESC LIMIT 1" |
    grep -qF "\"sd_model\": \"$sdd/found.safetensors\"" || fail "discovered checkpoint not kept"
$T send-keys -t t "/image by name -d found.safetensors -W 64 -H 64 --steps 1 --cfg 1 --seed 46" Enter
wait_for_re "\[image: [0-9]+-46\.png, 64x64, seed 46, 1 step," 300 || fail "-d NAME did not resolve"
$T send-keys -t t "/image x -d no-such-model -W 64 -H 64" Enter
wait_for "/image: -d no-such-model: No such file or directory (nor is it a checkpoint" 5 ||
    fail "-d with an unknown name: no notice"
quit

# --- a small machine: the chat model makes room and comes back for the next message
M="${MX_SHARED:-}/models/stories260K.gguf"
if [ -f "$M" ]; then
    rm -f "$work/h.db"
    TUI_ENV="MIXEL_MEM_AVAILABLE=100000000"
    start "" 0 -m "$M" --chat-template mistral-v1 --temp 0 -n 8 --device cpu --sd-model "$ckpt"
    TUI_ENV=
    $T resize-window -t t -x 160 -y 40
    $T send-keys -t t "/image a cube -W 64 -H 64 --steps 1 --cfg 1" Enter
    wait_for "image saved in" 300 || fail "no image after unloading the chat model"
    wait_for " no model · " 5 || fail "the chat model is still loaded"
    $T send-keys -t t "/log" Enter
    wait_for "unloaded the chat model stories260K.gguf to make room for the image model" 10 ||
        fail "no notice said the chat model was unloaded"
    $T send-keys -t t "Once upon a time" Enter
    wait_for_re "ctx [1-9][0-9]*/512( \([0-9]+ reused, [0-9]+ new\))? · [0-9.]+ tok/s" 60 || fail "the message was not answered"
    # the reload's notice may be replaced within a frame by the next one: /log keeps them all
    $T send-keys -t t "/log" Enter
    wait_for "loading the chat model stories260K.gguf again" 10 || fail "no reload"
    quit
else
    echo "(stories260K.gguf absent: the unload/reload case is not run)"
fi
echo ok
