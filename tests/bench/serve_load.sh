#!/bin/sh
# serve_load.sh - a bounded load test of `mixel serve` (issue 19): the server on 127.0.0.1 (a free
# port) with MODEL, then CLIENTS concurrent streaming clients sending REQUESTS chat completions of
# MAX_TOKENS tokens in all (tests/bench/serve_load.py); prints latency percentiles (time to first
# token, total), tokens/s, errors, and the server's resident memory before and after (VmRSS) and
# at its peak (VmHWM). The queue is sized so that no request is refused.
#   tests/bench/serve_load.sh MIXEL [MODEL] [CLIENTS] [REQUESTS] [MAX_TOKENS]
# defaults: ../shared/models/tiny-mixtral-f32.gguf, 8 clients, 64 requests, 64 tokens.
set -eu
MIXEL=${1:?usage: serve_load.sh MIXEL [MODEL] [CLIENTS] [REQUESTS] [MAX_TOKENS]}
here=$(cd "$(dirname "$0")" && pwd)
MODEL=${2:-$here/../../../shared/models/tiny-mixtral-f32.gguf}
CLIENTS=${3:-8}
REQUESTS=${4:-64}
MAX_TOKENS=${5:-64}
T=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
"$MIXEL" serve -m "$MODEL" --port 0 --queue "$CLIENTS" 2>"$T/log" &
PID=$!
i=0
until grep -q 'listening on' "$T/log"; do
    kill -0 "$PID" 2>/dev/null || { cat "$T/log"; exit 1; }
    i=$((i + 1)); [ $i -gt 300 ] && { echo "no start in 30 s"; exit 1; }
    sleep 0.1
done
PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/log")
rss() { awk -v k="$1:" '$1 == k { print $2 / 1024 " MiB" }' "/proc/$PID/status"; }
echo "model $(basename "$MODEL"), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server RSS before: $(rss VmRSS)"
st=0
python3 "$here/serve_load.py" "$PORT" "$CLIENTS" "$REQUESTS" "$MAX_TOKENS" || st=$?
echo "server RSS after: $(rss VmRSS), peak (VmHWM): $(rss VmHWM)"
echo "server log lines: $(grep -c ' POST /v1/chat/completions 200 ' "$T/log") answered 200"
kill -TERM "$PID"
wait "$PID" || st=1
PID=
exit $st
