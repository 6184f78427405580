#!/bin/sh
# remote_serve_sd.sh - images from mixel through mixel: `mixel image --remote-images` against
# `mixel serve -d` (the random-weight SD 1.5 checkpoint of tests/sd_ckpt.sh, 64x64, 2 steps)
# writes the very PNG, byte for byte, that the local `mixel image` writes with the same settings
# (pixels and parameters chunk), and prints the server's progress. Slow part: opening the 2.1 GB
# checkpoint in two processes (~25 s on 2 busy cores).
set -u
fail() { echo "FAIL: $*"; [ -f "$T/log" ] && sed 's/^/  server: /' "$T/log" | tail -20; exit 1; }
[ -d "${MX_SHARED:-}/models" ] || { echo "SKIP: needs ../shared (set MX_SHARED)"; exit 77; }
"$MIXEL" serve --help 2>/dev/null | grep -q "/sdapi/v1/txt2img" ||
    { echo "SKIP: mixel serve is not in this build (branch serve)"; exit 77; }
if [ "${MX_SANITIZE:-0}" = 1 ]; then
    echo "SKIP: SD through two processes under ASan; the normal pass runs it"; exit 77
fi
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
T=$(mktemp -d) || exit 1
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
export XDG_CACHE_HOME="$T/cache"
unset MIXEL_API_KEY OPENAI_API_KEY MIXEL_CONFIG
"$MIXEL" image -q -d "$ckpt" -p "a red fox" -W 64 -H 64 --steps 2 --seed 42 -o "$T/want.png" \
    >/dev/null 2>"$T/err" || fail "mixel image: $(cat "$T/err")"
"$MIXEL" serve -m "$MX_SHARED/models/stories260K.gguf" -d "$ckpt" --port 0 2>"$T/log" &
PID=$!
i=0
until grep -q 'listening on' "$T/log"; do
    kill -0 "$PID" 2>/dev/null || fail "mixel serve -d exited"
    i=$((i + 1)); [ $i -gt 600 ] && fail "mixel serve -d did not start in 30 s"
    sleep 0.05
done
PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/log")
"$MIXEL" image --remote-images "http://127.0.0.1:$PORT" -p "a red fox" -W 64 -H 64 --steps 2 \
    --seed 42 -o "$T/got.png" >"$T/out" 2>"$T/err" || fail "remote image: $(cat "$T/err")"
cmp -s "$T/want.png" "$T/got.png" || fail "the server's PNG differs from the local one"
grep -q "image 1/2" "$T/err" || fail "no progress from the server: $(cat "$T/err")"
echo "remote serve sd: the image through mixel serve equals the local one, byte for byte"
