#!/bin/sh
# remote_serve.sh - mixel in front of mixel: `mixel run --remote` against `mixel serve -m
# tiny-mixtral-f32.gguf` prints exactly what the local `mixel run` prints with the same seed
# (sampled and greedy), and a scripted chat over the remote backend (tmux: two turns and a
# /regen) stores the same conversation as the same chat on the local model.
set -u
M="${MX_SHARED:-}/models/tiny-mixtral-f32.gguf"
[ -f "$M" ] || { echo "SKIP: needs ../shared/models/tiny-mixtral-f32.gguf (set MX_SHARED)"; exit 77; }
"$MIXEL" serve --help 2>/dev/null | grep -q "/v1/chat/completions" ||
    { echo "SKIP: mixel serve is not in this build (branch serve)"; exit 77; }
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
unset MIXEL_API_KEY OPENAI_API_KEY MIXEL_CONFIG
"$MIXEL" serve -m "$M" --port 0 -t 1 >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; cleanup' EXIT
i=0
until grep -q "listening on http://127.0.0.1:" "$work/serve.err"; do
    i=$((i + 1)); [ $i -gt 200 ] && { cat "$work/serve.err"; fail "mixel serve did not start"; }
    sleep 0.05
done
U="http://127.0.0.1:$(grep -o '127.0.0.1:[0-9]*' "$work/serve.err" | head -n 1 | cut -d: -f2)/v1"

# 1. run: byte for byte the local answer, for sampled and greedy settings
for args in "--seed 7" "--seed 1234 --temp 1.2 --top-k 0 --top-p 0.9" "--temp 0"; do
    # shellcheck disable=SC2086
    "$MIXEL" run -m "$M" -t 1 -p "Once upon a time" -n 24 $args >"$work/local" 2>/dev/null ||
        fail "local run ($args)"
    # shellcheck disable=SC2086
    "$MIXEL" run --remote "$U" -p "Once upon a time" -n 24 $args >"$work/remote" \
        2>"$work/err" || { cat "$work/err"; fail "remote run ($args)"; }
    [ -s "$work/local" ] && cmp -s "$work/local" "$work/remote" ||
        fail "run $args: remote '$(cat "$work/remote")' != local '$(cat "$work/local")'"
done

# 2. the chat: the same conversation, local and over the server
answers() { sqlite3 "$1" "SELECT role || ': ' || content FROM messages ORDER BY id"; }
wait_n() { # wait_n DB N: until N answers are stored complete
    i=0
    while [ "$(sqlite3 "$1" "SELECT count(*) FROM messages WHERE role = 'assistant' AND \
               state = 'complete'" 2>/dev/null)" != "$2" ]; do
        i=$((i + 1)); [ $i -gt 600 ] && fail "answer $2 was not stored complete"
        sleep 0.05
    done
}
chat() { # chat DB ARGS...: two turns and a /regen
    db=$1; shift
    $T kill-server 2>/dev/null
    n_start=$((n_start + 1)); T="tmux -S $work/tmux.$n_start"
    $T -f /dev/null new-session -d -s t -x 120 -y 30 \
        "env HOME='$work/home' XDG_DATA_HOME='$work/data' XDG_CONFIG_HOME='$work/cfg' \
         TERM=xterm-256color '$MIXEL' chat --db '$db' --seed 11 -n 16 $*; echo EXITED \$?; sleep 30"
    wait_for "────────" 20 || fail "the TUI did not start ($*)"
    $T send-keys -t t "Tell me a story" Enter
    wait_n "$db" 1
    $T send-keys -t t "And then?" Enter
    wait_n "$db" 2
    $T send-keys -t t "/regen" Enter
    wait_n "$db" 3
    quit
}
# --no-tools: the server's chat does not describe tools to the model (yet), the local one
# would (generate_image), and the prompts must be the same
chat "$work/local.db" -m "$M" -t 1 --no-tools
chat "$work/remote.db" --remote "$U"
answers "$work/local.db" >"$work/local.txt"
answers "$work/remote.db" >"$work/remote.txt"
[ "$(grep -c '^assistant: ..' "$work/local.txt")" -eq 3 ] || fail "local chat: 3 answers expected"
diff "$work/local.txt" "$work/remote.txt" >"$work/diff" ||
    { cat "$work/diff"; fail "the chat over mixel serve differs from the local chat"; }
echo "remote serve: run and a chat over mixel serve equal the local ones"
