#!/bin/sh
# serve.sh - `mixel serve` end to end on 127.0.0.1 (a free port each time) with the small models
# in ../shared/models, driven by tests/serve_client.py (python3's http.client and raw sockets):
#   - /v1/completions, streamed and not, equal `mixel run` with the same seed and prompt, and
#     /v1/chat/completions equal `mixel run --session` (the same chat template, the same tokens),
#     for tiny-mixtral-f32 and the tiny story model; /health, /v1/models
#   - malformed JSON, wrong types, unknown role or model, unsupported fields -> 400; an oversized
#     body -> 413 (by Content-Length and while reading a chunked one); huge headers refused
#   - a client that disconnects (streamed or not) cancels its answer: the next is quick
#   - 4 concurrent clients all answered, each as alone; a full queue -> 503 with Retry-After
#   - --api-key: missing/wrong key -> 401; a non-loopback --host without a key is refused
#   - SIGTERM stops the server with status 0
set -u
fail() { echo "FAIL: $*"; [ -f "$T/log" ] && sed 's/^/  server: /' "$T/log" | tail -20; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: serve.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
command -v python3 >/dev/null || { echo "SKIP: serve.sh needs python3 (the HTTP client)"; exit 77; }
M="$MX_SHARED/models/tiny-mixtral-f32.gguf"
S="$MX_SHARED/models/stories260K.gguf"
PY="python3 $MX_SRCDIR/tests/serve_client.py"
T=$(mktemp -d) || exit 1
export XDG_DATA_HOME="$T/data" XDG_CONFIG_HOME="$T/config" XDG_CACHE_HOME="$T/cache"
unset MIXEL_API_KEY
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT

# start ARGS...: runs mixel serve on a free port in the background; sets PID and PORT
start() {
    : >"$T/log"
    "$MIXEL" serve --port 0 "$@" 2>"$T/log" &
    PID=$!
    i=0
    while ! grep -q 'listening on' "$T/log"; do
        kill -0 "$PID" 2>/dev/null || fail "mixel serve $* exited: $(cat "$T/log")"
        i=$((i + 1))
        [ $i -gt 300 ] && fail "mixel serve $* did not start in 30 s"
        sleep 0.1
    done
    PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/log")
    [ -n "$PORT" ] || fail "no port in: $(cat "$T/log")"
}
# stop: SIGTERM, which must end the server with status 0
stop() {
    kill -TERM "$PID"
    wait "$PID"
    rc=$?
    PID=
    [ $rc -eq 0 ] || fail "mixel serve exited $rc on SIGTERM"
    grep -q 'SIGTERM: stopping' "$T/log" || fail "no stopping line"
}

# the references: mixel run (raw text) and mixel run --session (through the chat template)
"$MIXEL" run -m "$M" -p "Once upon a time" --seed 7 -n 24 -q --ignore-eos >"$T/run.txt" 2>/dev/null \
    || fail "mixel run"
"$MIXEL" run -m "$M" -p "Hello there" --seed 11 -n 20 -q --ignore-eos --session s --db "$T/h.db" \
    >"$T/chat.txt" 2>/dev/null || fail "mixel run --session"
"$MIXEL" run -m "$S" -p "Once upon a time" --seed 5 -n 30 -q >"$T/story.txt" 2>/dev/null \
    || fail "mixel run (story)"

# 1. answers, errors, limits, cancel, concurrency on tiny-mixtral (--ignore-eos and a large
#    context, so that a long answer takes seconds: the cancel checks tell a cancelled answer from
#    a finished one; the references above ignore end-of-text too)
start -m "$M" -c 8192 --ignore-eos --queue 8 --max-body 4096
$PY "$PORT" basics tiny-mixtral-f32.gguf || fail basics
$PY "$PORT" completion "Once upon a time" 7 24 "$T/run.txt" || fail completion
$PY "$PORT" chat "Hello there" 11 20 "$T/chat.txt" tiny-mixtral-f32 || fail chat
$PY "$PORT" errors || fail errors
$PY "$PORT" too_big 4096 || fail too_big
$PY "$PORT" cancel 8000 || fail cancel
[ "$(grep -c 'canceled after [0-9]* tokens (the client went away)' "$T/log")" -eq 2 ] \
    || fail "not two cancelled answers in the log"
$PY "$PORT" concurrent 4 || fail concurrent
grep -q '127.0.0.1 POST /v1/completions 200' "$T/log" || fail "no request log line"
stop

# 2. the story model, by the name its file gives
start -m "$S"
$PY "$PORT" completion "Once upon a time" 5 30 "$T/story.txt" || fail "story completion"
stop

# 2b. response_format: JSON and JSON Schema answers through the grammar stage (end of text on)
start -m "$M"
$PY "$PORT" json_schema || fail "response_format"
stop

# 3. a queue of one: the third request gets 503
start -m "$M" -c 8192 --ignore-eos --queue 1
$PY "$PORT" overflow 8000 || fail overflow
stop

# 4. API keys: the flag, then the environment variable
start -m "$S" --api-key sekrit
$PY "$PORT" key sekrit || fail key
grep -q 'API key required' "$T/log" || fail "no key notice"
stop
MIXEL_API_KEY=envkey start -m "$S"
$PY "$PORT" key envkey || fail "key from MIXEL_API_KEY"
stop

# 5. refusals at start: a non-loopback address without a key; bad options
"$MIXEL" serve -m "$S" --host 0.0.0.0 --port 0 2>"$T/err" && fail "0.0.0.0 without a key served"
grep -q 'API key is required' "$T/err" || fail "no reason for the refusal: $(cat "$T/err")"
"$MIXEL" serve -m "$S" --queue 0 2>"$T/err"
[ $? -eq 2 ] || fail "--queue 0 not a usage error"
"$MIXEL" serve -m "$S" --host not-an-address --api-key k --port 0 2>"$T/err" \
    && fail "a bad --host served"
grep -q 'not a numeric' "$T/err" || fail "bad --host message: $(cat "$T/err")"
echo "ok: refusals (0.0.0.0 without a key, --queue 0, a bad --host)"
echo "PASS: serve.sh"
