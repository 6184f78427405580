#!/bin/sh
# tui_tools.sh - tool calls in the chat, with a scripted model output in Mistral's syntax
# ([TOOL_CALLS] [...]; MIXEL_SCRIPTED_REPLY lists one file per round): a user command from
# config.json waits for y / n / a and never runs before the answer (n: the model is told the
# user declined; y: it runs, its output goes back as a tool message and the answer goes on;
# a: later calls of that tool run without asking); a call with an argument the tool does not
# declare is refused without asking and without running; shell syntax in an argument is data
# (the program gets it as JSON on stdin; no shell runs it); read_file outside the allowed
# folder fails; calls and results are stored in the session (history schema 2) and shown folded
# ("⚙ f(x=…) → 12 B") on resume as when they were made; /tools lists the tools; --yes runs
# calls without asking; --no-tools offers none.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: sqlite3 is not installed"; exit 77; }
q() { sqlite3 "$work/h.db" "$1"; }
# wait_q SQL VALUE [SECONDS]: polls the database until the query gives VALUE
wait_q() {
    i=0; limit=$(( ${3:-10} * 20 ))
    while [ "$(q "$1" 2>/dev/null)" != "$2" ]; do
        i=$((i + 1)); [ $i -lt $limit ] || return 1; sleep 0.05
    done
}
# answers: the complete assistant messages without calls (the answers after the tools)
answers() { wait_q "SELECT count(*) FROM messages WHERE role = 'assistant' AND tool_calls = ''
                    AND state = 'complete'" "$1" 10; }
mark="$work/mark"
# wait_mark: until the command's trace appears (10 s): the command runs on the worker after the
# answer that called it is stored, so the trace is polled rather than checked once
wait_mark() {
    _i=0
    while [ ! -e "$mark" ]; do
        _i=$((_i + 1)); [ $_i -gt 100 ] && return 1
        sleep 0.1
    done
}
mkdir -p "$work/cfg/mixel" "$work/allowed"
echo "hello from a note" > "$work/allowed/note.txt"
# touch_mark: a command that leaves a trace; echo_json: /bin/cat (prints its stdin)
cat > "$work/cfg/mixel/config.json" <<EOF
{"tools": [
  {"name": "touch_mark", "description": "touches a file", "command": ["/usr/bin/touch", "$mark"]},
  {"name": "echo_json", "description": "echoes its arguments",
   "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
   "command": ["/bin/cat"]}
]}
EOF
# round 1 calls a tool, round 2 answers with its result in the conversation
call() { printf 'Calling it.\n[TOOL_CALLS] [{"name": "%s", "arguments": %s}]' "$1" "$2"; }
call touch_mark '{}' > "$work/touch.txt"
call touch_mark '{"evil": 1}' > "$work/undeclared.txt"
call echo_json "{\"q\": \"x; touch $mark; \$(touch $mark) \`touch $mark\`\"}" > "$work/shell.txt"
call read_file '{"path": "/etc/passwd"}' > "$work/outside.txt"
call read_file '{"path": "note.txt"}' > "$work/inside.txt"
printf 'Done with the tool.' > "$work/after.txt"

# --- n: declined, nothing ran, the model hears it and goes on
start "$work/touch.txt:$work/after.txt" 0 --allow-dir "$work/allowed"
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "touch it" Enter
wait_for "run it? y yes · n no · a always (this session)" 10 || fail "no confirmation asked"
wait_for "the model calls touch_mark(): run it? y yes, n no, a always for touch_mark" 5 ||
    fail "no notice with the call"
[ -e "$mark" ] && fail "the command ran before the user answered"
$T send-keys -t t "x" # not an answer: the question stays
wait_for "the model waits for your answer" 5 || fail "another key was not refused"
$T send-keys -t t "n"
wait_for "Done with the tool." 10 || fail "the answer did not go on after n"
wait_for "⚙ touch_mark() → declined" 5 || fail "the folded line does not say declined"
[ -e "$mark" ] && fail "a declined command ran"
q "SELECT content FROM messages WHERE role = 'tool'" | grep -qx "the user declined this call" ||
    fail "the declined result is not stored: $(q 'SELECT role, content FROM messages')"

# --- y: it runs, its (empty) output goes back, the answer goes on
$T send-keys -t t "touch it again" Enter
wait_for "the model calls touch_mark()" 10 || fail "second call not asked"
$T send-keys -t t "y"
answers 2 || fail "no answer after y"
wait_for_re "⚙ touch_mark\(\) → 0 B" 10 || fail "the run is not on the folded line"
wait_mark || fail "the approved command did not run"
rm -f "$mark"
# the calls and their results are stored: ids match
[ "$(q "SELECT count(*) FROM messages WHERE tool_calls LIKE '%touch_mark%'")" = 2 ] ||
    fail "the calls are not stored: $(q 'SELECT id, role, tool_calls FROM messages')"
[ "$(q "SELECT count(*) FROM messages m WHERE role = 'tool' AND EXISTS (SELECT 1 FROM messages
    c WHERE c.tool_calls LIKE '%\"' || m.tool_call_id || '\"%')")" = 2 ] ||
    fail "the results do not name their calls: $(q 'SELECT id, role, tool_call_id FROM messages')"

# --- a: runs, and later calls of that tool do not ask
$T send-keys -t t "and again" Enter
wait_for "the model calls touch_mark()" 10 || fail "third call not asked"
$T send-keys -t t "a"
answers 3 || fail "no answer after a"
wait_mark || fail "the command did not run after a"
rm -f "$mark"
$T send-keys -t t "/tools" Enter
wait_for "touch_mark: runs /usr/bin/touch (no shell, 10 s, 65536 bytes) (always allowed" 5 ||
    fail "/tools does not list the tool as always allowed"
wait_for "read_file: reads text files in $(cd "$work/allowed" && pwd -P)" 5 ||
    fail "/tools does not list read_file's folder"
# no checkpoint anywhere (an empty HOME, no --sd-model): generate_image is not offered
$T capture-pane -p -t t | grep -q "generate_image" && fail "/tools: generate_image without an image model"
$T send-keys -t t "once more" Enter
answers 4 || fail "an 'a' tool asked again"
wait_mark || fail "an 'a' tool did not run"
$T capture-pane -p -t t | grep -q "run it? y yes" && fail "an always-allowed tool asked"
quit

# --- resume: the same folded lines, the results hidden, nothing asked or run
rm -f "$mark"
start "$work/touch.txt:$work/after.txt" 0 --resume
$T resize-window -t t -x 140 -y 60
wait_for "⚙ touch_mark() → declined" 10 || fail "resume: the declined call is not folded"
wait_for "⚙ touch_mark() → 0 B" 5 || fail "resume: the run call is not folded"
$T capture-pane -p -t t | grep -q "the user declined this call" &&
    fail "resume: a tool result is shown unfolded"
$T capture-pane -p -t t | grep -q "^Tool" && fail "resume: a tool message has a header"
[ -e "$mark" ] && fail "resume ran a tool"
quit

# --- the session with calls and results goes on in `mixel run --session` (the real mistral-v3
# template replays the calls with their ids and the results; tiny-mixtral, 2 tokens)
M="${MX_SHARED:-}/models/tiny-mixtral-f32.gguf"
if [ -f "$M" ]; then
    sid=$(q "SELECT session FROM messages LIMIT 1")
    HOME="$work/home" XDG_DATA_HOME="$work/data" "$MIXEL" run -m "$M" --chat-template mistral-v3 \
        --db "$work/h.db" --session "$sid" -p "and now?" -n 2 --temp 0 >"$work/run.out" 2>"$work/run.err" ||
        fail "run --session on a session with tool calls: $(cat "$work/run.err")"
    [ "$(q "SELECT role FROM messages ORDER BY id DESC LIMIT 1")" = assistant ] ||
        fail "run --session did not store its answer"
else
    echo "(tiny-mixtral-f32.gguf absent: run --session on a session with tool calls not run)"
fi

# --- undeclared argument: refused, not asked, not run
start "$work/undeclared.txt:$work/after.txt" 0
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "sneak" Enter
wait_for "Done with the tool." 10 || fail "the answer did not go on after a refused call"
wait_for_re "⚙ touch_mark\(evil=1\) → failed" 5 || fail "the refused call is not marked failed"
q "SELECT content FROM messages WHERE role = 'tool'" |
    grep -q "error: touch_mark: argument 'evil' is not declared" ||
    fail "the model was not told why: $(q "SELECT content FROM messages WHERE role = 'tool'")"
[ -e "$mark" ] && fail "a call with an undeclared argument ran"
quit

# --- shell syntax in an argument is data; --yes runs without asking
rm -f "$work/h.db"
start "$work/shell.txt:$work/after.txt" 0 --yes
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "inject" Enter
wait_for "Done with the tool." 10 || fail "--yes: the call did not run without asking"
q "SELECT content FROM messages WHERE role = 'tool'" | grep -qF "{\"q\":\"x; touch $mark; \$(touch $mark) \`touch $mark\`\"}" ||
    fail "the command did not get the arguments as JSON: $(q "SELECT content FROM messages WHERE role = 'tool'")"
[ -e "$mark" ] && fail "shell syntax in an argument ran"
quit

# --- read_file: inside the allowed folder it reads, outside it fails
rm -f "$work/h.db"
start "$work/inside.txt:$work/after.txt" 0 --yes --allow-dir "$work/allowed"
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "read the note" Enter
wait_for '⚙ read_file(path="note.txt") → 18 B' 10 || fail "read_file inside: no result"
q "SELECT content FROM messages WHERE role = 'tool'" | grep -qx "hello from a note" ||
    fail "read_file inside: $(q "SELECT content FROM messages WHERE role = 'tool'")"
quit
rm -f "$work/h.db"
start "$work/outside.txt:$work/after.txt" 0 --yes --allow-dir "$work/allowed"
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "read passwd" Enter
wait_for '⚙ read_file(path="/etc/passwd") → failed' 10 || fail "read_file outside did not fail"
q "SELECT content FROM messages WHERE role = 'tool'" | grep -q "outside the allowed folders" ||
    fail "read_file outside: $(q "SELECT content FROM messages WHERE role = 'tool'")"
quit

# --- while the answer streams (paced), the call in the making never shows: only its words
rm -f "$work/h.db" "$mark"
start "$work/touch.txt:$work/after.txt" 25
$T resize-window -t t -x 140 -y 40
$T send-keys -t t "touch it slowly" Enter
i=0
while ! $T capture-pane -p -t t | grep -qF "run it? y yes"; do
    $T capture-pane -p -t t | grep -qE 'TOOL_CALLS|"arguments"|"name"' &&
        fail "the call's text showed while it streamed"
    i=$((i + 1)); [ $i -lt 400 ] || fail "no confirmation after a paced answer"
    sleep 0.02
done
$T send-keys -t t "y"
answers 1 || fail "no answer after the paced call"
quit
rm -f "$mark"

# --- --no-tools: the answer's call stays text, nothing is asked
rm -f "$work/h.db"
start "$work/touch.txt" 0 --no-tools
$T send-keys -t t "touch" Enter
wait_for "Calling it." 10 || fail "--no-tools: no answer"
$T capture-pane -p -t t | grep -q "run it?" && fail "--no-tools asked"
[ -e "$mark" ] && fail "--no-tools ran a tool"
quit
echo ok
