#!/bin/sh
# serve_sd.sh - `mixel serve -d SD` on 127.0.0.1: POST /sdapi/v1/txt2img with the random-weight
# SD 1.5 checkpoint (tests/sd_ckpt.sh) at 64x64, 2 steps, returns A1111's response whose base64
# PNG equals, byte for byte, what `mixel image` writes with the same settings (pixels and the
# parameters chunk); its info names the seed and steps; /sdapi/v1/progress reports the steps of
# a running 8-step image (and 0 when idle); a bad field
# gets 400. Slow part: opening the 2.1 GB checkpoint twice (a few seconds).
set -u
fail() { echo "FAIL: $*"; [ -f "$T/log" ] && sed 's/^/  server: /' "$T/log" | tail -20; exit 1; }
: "${MIXEL:?}" "${MX_SRCDIR:?}"
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: serve_sd.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
command -v python3 >/dev/null || { echo "SKIP: serve_sd.sh needs python3"; exit 77; }
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
T=$(mktemp -d) || exit 1
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
export XDG_CACHE_HOME="$T/cache" # the model-hash cache (the CLIP vocabulary stays in XDG_DATA_HOME)

"$MIXEL" image -q -d "$ckpt" -p "a red fox" -W 64 -H 64 --steps 2 --seed 42 -o "$T/want.png" >/dev/null \
    2>"$T/err" || fail "mixel image: $(cat "$T/err")"
: >"$T/log"
TMPDIR="$T" "$MIXEL" serve -m "$MX_SHARED/models/stories260K.gguf" -d "$ckpt" --port 0 2>"$T/log" &
PID=$!
i=0
while ! grep -q 'listening on' "$T/log"; do
    kill -0 "$PID" 2>/dev/null || fail "mixel serve -d exited"
    i=$((i + 1))
    [ $i -gt 300 ] && fail "mixel serve -d did not start in 30 s"
    sleep 0.1
done
PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/log")
python3 "$MX_SRCDIR/tests/serve_client.py" "$PORT" txt2img "a red fox" 42 2 64 64 "$T/want.png" \
    || fail txt2img
grep -q 'POST /sdapi/v1/txt2img 200 .*1 image 64x64, 2 steps' "$T/log" || fail "no log line"
kill -TERM "$PID"
wait "$PID" || fail "exit status on SIGTERM"
PID=
[ -z "$(ls "$T" | grep mixel-serve)" ] || fail "image folder left behind"
echo "PASS: serve_sd.sh"
