#!/bin/sh
# remote_tools.sh - tool calls through a remote engine (tests/remote_mock.py, model "tools", on
# 127.0.0.1): the chat request carries the "tools" definitions (read_file's name, description
# and parameters schema); the server's streamed call (fragments across events) is asked about in
# the TUI; y runs read_file, and the next request carries the tool message with the file's
# content and the tool_call_id of the assistant call before it, and the server's final answer
# (quoting the result) shows; n sends the declined result instead and nothing is read; a call
# whose arguments are not JSON is a notice quoting the server's text, the answer's text stays.
set -u
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: needs the sqlite3 shell"; exit 77; }
. "$MX_SRCDIR/tests/tui_lib.sh"
. "$MX_SRCDIR/tests/remote_lib.sh"
start_mock remote_mock.py "$work/mock.log"
U="http://127.0.0.1:$P/v1"
mkdir -p "$work/allowed"
echo "hello from a note" > "$work/allowed/note.txt"
# last_post PYTHON-EXPR: the expression on the last chat request's body (b)
last_post() {
    python3 - "$work/mock.log" "$1" <<'PY'
import json, sys
posts = [json.loads(l) for l in open(sys.argv[1]) if '"/v1/chat/completions"' in l]
b = posts[-1]["body"]
print(eval(sys.argv[2]))
PY
}
n_posts() { grep -c '"path": "/v1/chat/completions"' "$work/mock.log"; }

# --- y: the call runs, its result goes back with the call's id, the answer shows
start "" 0 --remote "$U" --remote-model tools --allow-dir "$work/allowed"
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "read my note" Enter
wait_for "run it? y yes · n no · a always (this session)" 10 || fail "no confirmation asked"
wait_for "the model calls read_file(" 5 || fail "the notice does not name the call"
[ "$(last_post '"read_file" in [t["function"]["name"] for t in b.get("tools", [])]')" = True ] ||
    fail "the request did not carry the tools: $(last_post 'b.get("tools")')"
[ "$(last_post '[(t["type"], t["function"]["parameters"]["required"], bool(t["function"]["description"]))
     for t in b["tools"] if t["function"]["name"] == "read_file"] == [("function", ["path"], True)]')" = True ] ||
    fail "the tool definition is incomplete: $(last_post 'b["tools"]')"
[ "$(n_posts)" -eq 1 ] || fail "a request went out before the answer y/n"
$T send-keys -t t "y"
wait_for "The tool said:" 10 || fail "the final answer does not show"
wait_for "hello from a note" 5 || fail "the final answer does not quote the file"
[ "$(last_post '[m for m in b["messages"] if m["role"] == "tool"][-1]["content"]')" != "" ] ||
    fail "no tool message"
last_post '[m for m in b["messages"] if m["role"] == "tool"][-1]["content"]' |
    grep -q "hello from a note" || fail "the tool message lacks the file's content"
[ "$(last_post '([m for m in b["messages"] if m["role"] == "tool"][-1]["tool_call_id"] ==
     [m for m in b["messages"] if m.get("tool_calls")][-1]["tool_calls"][0]["id"])')" = True ] ||
    fail "tool_call_id does not match the call: $(last_post 'b["messages"]')"
[ "$(last_post '[m for m in b["messages"] if m.get("tool_calls")][-1]["tool_calls"][0]["function"]')" \
  = "{'name': 'read_file', 'arguments': '{\"path\": \"note.txt\"}'}" ] ||
    fail "the call went back changed: $(last_post 'b["messages"]')"
$T capture-pane -p -t t | grep -qF "tool_call_id mismatch" && fail "the mock saw another id"
quit

# --- n: declined, nothing read, the model is told
start "" 0 --remote "$U" --remote-model tools --allow-dir "$work/allowed"
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "read it again" Enter
wait_for "run it? y yes · n no · a always (this session)" 10 || fail "n: no confirmation asked"
$T send-keys -t t "n"
wait_for "The tool said: " 10 || fail "n: the answer did not go on"
last_post '[m for m in b["messages"] if m["role"] == "tool"][-1]["content"]' |
    grep -q "declined" || fail "n: the declined result was not sent"
last_post '[m for m in b["messages"] if m["role"] == "tool"][-1]["content"]' |
    grep -q "hello from a note" && fail "n: the file was read"

# --- arguments that are not JSON: a notice with the server's text, nothing asked, no crash
$T send-keys -t t "something broken" Enter
wait_for 'the arguments of read_file are not a JSON object: {"path": oops' 10 ||
    fail "no notice for arguments that are not JSON"
wait_for "Trying." 5 || fail "the answer's text is gone"
$T capture-pane -p -t t | grep -qF "run it? y yes" && fail "a broken call was asked about"
quit
echo "remote tools: definitions sent, streamed call confirmed, y runs and sends the result with its id, n declines, bad arguments a notice"
