#!/bin/sh
# remote_run.sh - `mixel run --remote` and `mixel chat --remote --list-models` against the mock
# OpenAI-compatible server (tests/remote_mock.py, 127.0.0.1 only): a stream in odd pieces (CRLF,
# comments, cuts inside UTF-8 characters) prints exactly the answer; a server that does not
# stream; the request's fields (model, prompt, sampling, seed, stop, max_tokens); the model list
# and the first model as the default; HTTP 401 with OpenAI's error text, 500 with a plain body,
# an error event mid-stream; a stream broken off (an error, not retried); a refused connection
# retried until the server is up; a stalled stream ended by the stall timeout; Ctrl-C stopping
# the request at once (the server sees the disconnect); a chat turn of a stored session
# (--session) over /chat/completions, recording the backend and model; the API key sent only as a Bearer header: never in argv, output, or the
# session database.
set -u
command -v python3 >/dev/null 2>&1 || { echo "SKIP: needs python3 for the mock server"; exit 77; }
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/err" ] && { echo "---- stderr:"; cat "$work/err"; }; exit 1; }
export HOME="$work/home" XDG_CONFIG_HOME="$work/cfg" XDG_DATA_HOME="$work/data"
unset MIXEL_API_KEY OPENAI_API_KEY MIXEL_CONFIG
KEY="sk-mock-$$-secret"

# mock NAME [ARGS]: starts the mock server; its port in $port
mock() {
    name=$1; shift
    rm -f "$work/$name.port"
    python3 "$MX_SRCDIR/tests/remote_mock.py" --port-file "$work/$name.port" \
        --log "$work/$name.log" "$@" &
    pids="$pids $!"
    i=0
    while [ ! -s "$work/$name.port" ]; do
        i=$((i + 1)); [ $i -gt 200 ] && fail "the mock server did not start"
        sleep 0.05
    done
    port=$(cat "$work/$name.port")
}
mock open
U="http://127.0.0.1:$port/v1"
run() { "$MIXEL" run --remote "$U" "$@" >"$work/out" 2>"$work/err"; }

# 1. a stream in odd pieces: exactly the answer, the server's usage in the summary
run --remote-model chunky -p "Say hello" || fail "chunky stream"
[ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "chunky: got '$(cat "$work/out")'"
grep -q "prompt 9 tokens.*generated 6 tokens.*stopped: stop" "$work/err" || fail "chunky: summary"
# the base URL without /v1 gets it
"$MIXEL" run --remote "http://127.0.0.1:$port" --remote-model chunky -p x >"$work/out" \
    2>"$work/err" && [ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "URL without /v1"

# 2. a server that answers with one JSON object
run --remote-model plain -p "Say hello" || fail "plain"
[ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "plain: got '$(cat "$work/out")'"

# 3. what the request carries (the mock streams the body back)
run --remote-model echo -p "Once upon" --temp 0.5 --top-k 7 --top-p 0.9 --min-p 0.1 --seed 42 \
    -n 12 --stop "THE END" || fail "echo"
python3 - "$work/out" <<'PY' || fail "the request's fields"
import json, sys
r = json.load(open(sys.argv[1]))
want = {"model": "echo", "prompt": "Once upon", "temperature": 0.5, "top_k": 7, "top_p": 0.9,
        "min_p": 0.1, "seed": 42, "max_tokens": 12, "stop": ["THE END"], "stream": True}
bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
sys.exit("mismatch: %r" % bad if bad else 0)
PY

# 4. models: listed; the first is the default
"$MIXEL" chat --remote "$U" --list-models >"$work/out" 2>"$work/err" || fail "--list-models"
[ "$(head -n 1 "$work/out")" = chunky ] && [ "$(wc -l <"$work/out")" -eq 9 ] ||
    fail "--list-models: $(cat "$work/out")"
run -p x || fail "default model"
[ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "default model: not the first"
grep '"path": "/v1/completions"' "$work/open.log" | tail -n 1 | grep -q '"model": "chunky"' ||
    fail "default model: not asked for chunky"

# 5. errors: the server's text, a non-zero exit, no crash
run --remote-model err500 -p x; [ $? -eq 1 ] || fail "500: exit status"
grep -q "HTTP 500: upstream model crashed (worker 3)" "$work/err" || fail "500: message"
run --remote-model midfail -p x; [ $? -eq 1 ] || fail "error event: exit status"
grep -q "out of KV cache slots" "$work/err" || fail "error event: message"
[ "$(cat "$work/out")" = "partial " ] || fail "error event: the text before it"
# a stream that breaks off: the text so far, an error, and no second request (not retried)
n0=$(grep -c '"model": "drop"' "$work/open.log")
run --remote-model drop -p x; [ $? -eq 1 ] || fail "broken stream: exit status"
grep -q "the stream broke off before the end (1 pieces received)" "$work/err" ||
    fail "broken stream: message"
[ "$(cat "$work/out")" = "cut " ] || fail "broken stream: the text before it"
[ "$(grep -c '"model": "drop"' "$work/open.log")" -eq $((n0 + 1)) ] ||
    fail "broken stream: the request was sent again"
"$MIXEL" run --remote "ftp://127.0.0.1:$port" -p x 2>"$work/err"; [ $? -eq 1 ] || fail "ftp URL"
grep -q "not an http:// or https:// URL" "$work/err" || fail "ftp URL: message"
"$MIXEL" run --remote "$U" -m some.gguf -p x 2>"$work/err"; [ $? -eq 2 ] || fail "-m with --remote"

# 6. the key: a Bearer header from $MIXEL_API_KEY, then $OPENAI_API_KEY, then the config; 401
# with OpenAI's error object otherwise; never printed, never in argv
mock keyed --key "$KEY"
K="http://127.0.0.1:$port/v1"
"$MIXEL" run --remote "$K" --remote-model chunky -p x >"$work/out" 2>"$work/err"
[ $? -eq 1 ] || fail "no key: exit status"
grep -q "HTTP 401: Invalid API key" "$work/err" || fail "no key: message"
MIXEL_API_KEY=wrong "$MIXEL" run --remote "$K" --remote-model chunky -p x >"$work/out" \
    2>"$work/err"; [ $? -eq 1 ] || fail "wrong key: exit status"
grep -q "Invalid API key" "$work/err" && ! grep -q wrong "$work/err" || fail "wrong key: message"
OPENAI_API_KEY="$KEY" "$MIXEL" run --remote "$K" --remote-model chunky -p x >"$work/out" \
    2>"$work/err" || fail "OPENAI_API_KEY"
mkdir -p "$work/cfg/mixel"
printf '{"remote": {"url": "%s", "model": "chunky", "api_key": "%s"}}\n' "$K" "$KEY" \
    >"$work/cfg/mixel/config.json"
"$MIXEL" run -p x >"$work/out" 2>"$work/err" || fail "the config's url, model and key"
[ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "config: answer"
rm "$work/cfg/mixel/config.json"
grep -q "\"auth\": \"Bearer $KEY\"" "$work/keyed.log" || fail "the key was not sent as Bearer"
# a stored session over the remote chat engine: the backend and model recorded, no key
MIXEL_API_KEY="$KEY" "$MIXEL" run --remote "$K" --remote-model chunky --session remote-s \
    --db "$work/h.db" -p "Say hello" >"$work/out" 2>"$work/err" & rp=$!
pids="$pids $rp"
# the running mixel's argv: the key is not there (only in its environment)
i=0
while [ $i -lt 40 ] && kill -0 $rp 2>/dev/null; do
    tr '\0' ' ' <"/proc/$rp/cmdline" 2>/dev/null | grep -q "$KEY" && fail "the key is in argv"
    i=$((i + 1)); sleep 0.05
done
wait $rp || fail "--session over --remote"
[ "$(tr -d '\n' <"$work/out")" = "Hello, wörld! ✓ done." ] || fail "--session: answer"
grep -q '"path": "/v1/chat/completions"' "$work/keyed.log" || fail "--session: not a chat request"
grep '"path": "/v1/chat/completions"' "$work/keyed.log" | grep -q \
    '"messages": \[{"role": "user", "content": "Say hello"}\]' || fail "--session: messages"
[ "$(sqlite3 "$work/h.db" "SELECT model_path FROM sessions")" = "remote:$K#chunky" ] ||
    fail "--session: backend and model not recorded: $(sqlite3 "$work/h.db" "SELECT model_path FROM sessions")"
[ "$(sqlite3 "$work/h.db" "SELECT content FROM messages WHERE role = 'assistant'")" = \
  "Hello, wörld! ✓ done." ] || fail "--session: answer not stored"
[ "$(sqlite3 "$work/h.db" "SELECT json_extract(timings, '\$.model') FROM messages WHERE role = 'assistant'")" = \
  "remote:$K#chunky" ] || fail "--session: the answer does not record its model"
# the second turn sends the first exchange
MIXEL_API_KEY="$KEY" "$MIXEL" run --remote "$K" --remote-model chunky --session remote-s \
    --db "$work/h.db" -p "Again" >"$work/out" 2>"$work/err" || fail "--session: 2nd turn"
# (the mock logs JSON with \u escapes)
tail -n 1 "$work/keyed.log" | grep -qF '{"role": "assistant", "content": "Hello, w\u00f6rld! \u2713 done."}, {"role": "user", "content": "Again"}' ||
    fail "--session: history not sent"
for f in "$work"/h.db*; do grep -q "$KEY" "$f" && fail "the key is in $f"; done
grep -rq "$KEY" "$work/out" "$work/err" && fail "the key was printed"

# 7. connection refused, then the server comes up: retried with backoff (6 retries: 0.25 s to
# 4 s apart, room for a python start on a busy machine)
printf '{"remote": {"retries": 6}}\n' >"$work/cfg/mixel/config.json"
free=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MIXEL" run --remote "http://127.0.0.1:$free/v1" --remote-model chunky -p x >"$work/out" \
    2>"$work/err" & rp=$!
pids="$pids $rp"
sleep 0.3
mock late --port "$free"
wait $rp || fail "retry after a refused connection"
[ "$(cat "$work/out")" = "Hello, wörld! ✓ done." ] || fail "retry: answer"
# refused for good: a clear message after the attempts
printf '{"remote": {"retries": 1, "connect_timeout": 2}}\n' >"$work/cfg/mixel/config.json"
free2=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MIXEL" run --remote "http://127.0.0.1:$free2/v1" --remote-model chunky -p x 2>"$work/err"
[ $? -eq 1 ] && grep -q "(2 attempts)" "$work/err" || fail "refused: message"

# 8. a stalled stream: the stall timeout ends it with a message
printf '{"remote": {"stall_timeout": 1}}\n' >"$work/cfg/mixel/config.json"
t0=$(date +%s)
run --remote-model stall -p x; st=$?
[ $st -eq 1 ] || fail "stall: exit status $st"
grep -q "no answer for 1 s (stall timeout" "$work/err" || fail "stall: message"
[ $(( $(date +%s) - t0 )) -le 10 ] || fail "stall: took too long"
rm "$work/cfg/mixel/config.json"

# 9. Ctrl-C: the request stops at once (exit 130) and the server sees the client go
"$MIXEL" run --remote "$U" --remote-model slow -p x >"$work/out" 2>"$work/err" & rp=$!
pids="$pids $rp"
i=0
until grep -q tick2 "$work/out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "slow: no text"
    sleep 0.05
done
kill -INT $rp
i=0
while kill -0 $rp 2>/dev/null; do # at once: libcurl's progress callback polls the flag
    i=$((i + 1)); [ $i -gt 60 ] && { kill $rp; fail "SIGINT: still running after 3 s"; }
    sleep 0.05
done
wait $rp; st=$?
[ $st -eq 130 ] || fail "SIGINT: exit status $st"
grep -q "interrupted" "$work/err" || fail "SIGINT: message"
i=0
until grep -q '"event": "disconnected", "model": "slow"' "$work/open.log"; do
    i=$((i + 1)); [ $i -gt 60 ] && fail "SIGINT: the server did not see the disconnect"
    sleep 0.05
done
echo "remote run: streaming, non-streaming, fields, models, errors, key, session, retry, stall, cancel"
