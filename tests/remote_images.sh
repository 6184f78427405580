#!/bin/sh
# remote_images.sh - images drawn by an AUTOMATIC1111-compatible server (the mock
# tests/remote_a1111_mock.py on 127.0.0.1): `mixel image --remote-images` sends the request's
# fields in A1111's spelling, shows the server's progress, saves the PNG with its parameters chunk
# (added from the server's infotext when the PNG lacks it), sends an img2img source as base64
# (the server decodes the same bytes), reports a server error with its text and refuses an image
# that is not a PNG (no file left), and Ctrl-C stops the request and asks the server to stop;
# in the chat, /image over the remote server stores and shows the image like a local one.
set -u
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
. "$MX_SRCDIR/tests/remote_lib.sh"
start_mock remote_a1111_mock.py "$work/a.log"
U="http://127.0.0.1:$P"
export HOME="$work/home" XDG_CONFIG_HOME="$work/cfg" XDG_DATA_HOME="$work/data"
unset MIXEL_API_KEY OPENAI_API_KEY MIXEL_CONFIG
img() { "$MIXEL" image --remote-images "$U" "$@" >"$work/out" 2>"$work/err"; }
# pngtext FILE: the PNG's size and its parameters chunk, as "WxH|text"
pngtext() {
    python3 - "$1" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
i, w, h, text = 8, 0, 0, ""
while i < len(b):
    n, kind = struct.unpack(">I4s", b[i:i + 8]); data = b[i + 8:i + 8 + n]
    if kind == b"IHDR": w, h = struct.unpack(">II", data[:8])
    if kind == b"tEXt" and data.startswith(b"parameters\0"): text = data[11:].decode("latin-1")
    if kind == b"iTXt" and data.startswith(b"parameters\0"): text = data.split(b"\0", 5)[-1].decode()
    i += 12 + n
print("%dx%d|%s" % (w, h, text.replace("\n", " / ")))
PY
}

# 1. txt2img: fields, progress, the PNG and its parameters
img -p "a lighthouse" -n "blurry" --seed 42 -W 64 -H 48 --steps 8 --cfg 5.5 \
    --sampler "DPM++ 2M Karras" -o "$work/a.png" || fail "txt2img"
[ "$(cat "$work/out")" = "$work/a.png" ] || fail "txt2img: the path printed"
grep -qE "image [1-7]/8 · " "$work/err" || fail "txt2img: no progress from /sdapi/v1/progress"
python3 - "$work/a.log" <<'PY' || fail "txt2img: the request's fields"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '/txt2img"' in l][-1]["body"]
want = {"prompt": "a lighthouse", "negative_prompt": "blurry", "seed": 42, "width": 64,
        "height": 48, "steps": 8, "cfg_scale": 5.5, "sampler_name": "DPM++ 2M",
        "scheduler": "Karras", "send_images": True}
bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
sys.exit("mismatch: %r" % bad if bad else 0)
PY
pngtext "$work/a.png" | grep -q "^64x48|a lighthouse / Negative prompt: blurry / Steps: 8.*Seed: 42" ||
    fail "txt2img: PNG $(pngtext "$work/a.png")"
# a PNG without the chunk gets the server's infotext
img -p "noinfo tree" --seed 7 -W 32 -H 32 --steps 2 -o "$work/b.png" || fail "noinfo"
pngtext "$work/b.png" | grep -q "^32x32|noinfo tree / .*Seed: 7, Size: 32x32, Model: mock" ||
    fail "noinfo: PNG $(pngtext "$work/b.png")"

# 2. img2img: the source as base64, its size by default, the strength
img -p "at night" --init-img "$work/a.png" --strength 0.4 --seed 3 --steps 2 -o "$work/c.png" ||
    fail "img2img"
sha=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$work/a.png")
tail -n 20 "$work/a.log" | grep '"/sdapi/v1/img2img"' | grep -q "\"init_sha256\": \"$sha\"" ||
    fail "img2img: the server did not get the source's bytes"
tail -n 20 "$work/a.log" | grep '"/sdapi/v1/img2img"' |
    grep -q '"denoising_strength": 0.4.*"width": 64, "height": 48' || fail "img2img: fields"

# 3. errors
img -p "crash" -o "$work/d.png"; [ $? -eq 1 ] || fail "500: exit status"
grep -q "HTTP 500: OutOfMemoryError" "$work/err" || fail "500: message"
img -p "garbage" -W 32 -H 32 --steps 1 -o "$work/e.png"; [ $? -eq 1 ] || fail "not a PNG: status"
[ ! -e "$work/e.png" ] || fail "not a PNG: the file was kept"
img -p x --mask "$work/a.png" -o "$work/f.png"; [ $? -eq 2 ] || fail "--mask with a server"
"$MIXEL" image --remote-images "ftp://x" -p x 2>"$work/err"; [ $? -eq 1 ] || fail "ftp URL"

# 4. Ctrl-C: stopped at once, the server asked to interrupt
: >"$work/a.log" # (the mock opens it per line) from here on: this request's polls only
"$MIXEL" image --remote-images "$U" -p "slow one" -o "$work/g.png" >"$work/out" 2>"$work/err" &
ip=$!
i=0
until grep -q '"/sdapi/v1/progress", "busy": true' "$work/a.log"; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "slow: not started"
    sleep 0.05
done
kill -INT $ip
i=0
while kill -0 $ip 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 60 ] && { kill $ip; fail "SIGINT: still running after 3 s"; }
    sleep 0.05
done
wait $ip; [ $? -eq 130 ] || fail "SIGINT: exit status"
grep -q '"path": "/sdapi/v1/interrupt"' "$work/a.log" || fail "SIGINT: no interrupt sent"

# 5. the chat: /image drawn by the server, stored with the session and shown
start echo 0 --remote-images "$U"
$T resize-window -t t -x 120 -y 40
$T send-keys -t t "/image a red door --steps 8 -W 64 -H 64 --seed 9" Enter
wait_for_re "image [1-7]/8" 5 || fail "chat: no progress"
wait_for "image saved in" 10 || fail "chat: no image"
p=$(sqlite3 "$work/h.db" "SELECT path FROM images")
[ -f "$p" ] || fail "chat: the image is not stored ($p)"
sqlite3 "$work/h.db" "SELECT params FROM images" | grep -q '"backend": "remote"' ||
    fail "chat: the image's record does not say remote"
pngtext "$p" | grep -q "^64x64|a red door" || fail "chat: PNG $(pngtext "$p")"
$T send-keys -t t "/img2img at dusk --strength 0.5 --steps 2" Enter
wait_for "from the last image" 10 || fail "chat: /img2img"
tail -n 20 "$work/a.log" | grep -q '"/sdapi/v1/img2img"' || fail "chat: /img2img not sent"
quit
echo "remote images: txt2img, progress, parameters, img2img, errors, Ctrl-C, chat"
