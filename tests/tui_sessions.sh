#!/bin/sh
# tui_sessions.sh - conversations persist: quit and resume, a regenerated answer is a branch
# (◂ 2/2 ▸, Alt-Left goes back), kill -9 mid-answer keeps the partial answer, the sessions list
# opens another session, settings persist per session (/temp set before a quit is still in force
# after --resume).
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"

# sampling KEY: the first session's stored sampling setting KEY (history database)
sampling() {
    /usr/bin/python3 - "$work/h.db" "$1" <<'EOF'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = c.execute("SELECT sampling FROM sessions ORDER BY id LIMIT 1").fetchone()
print(json.loads(r[0]).get(sys.argv[2]) if r else "no session")
EOF
}

# 1. a conversation survives /quit and --resume
start echo
$T send-keys -t t "first question" Enter
wait_for "You said: first question" || fail "no answer"
$T send-keys -t t "/temp 0.25" Enter
wait_for "/temp = 0.25" || fail "/temp"
quit
start echo 0 --resume
wait_for "You said: first question" || fail "--resume did not bring the conversation back"
$T capture-pane -p -t t | grep -q "first question" || fail "user message missing after resume"
$T capture-pane -p -t t | grep -q "first question · scripted" || fail "title not shown"
# the resumed session uses the /temp set before the quit: storing another setting writes all of
# them back, so a temperature not loaded on resume would come back as the default
[ "$(sampling temp)" = 0.25 ] || fail "/temp 0.25 not stored (temp: $(sampling temp))"
$T send-keys -t t "/top-p 0.5" Enter
wait_for "/top-p = 0.5" || fail "/top-p"
i=0
until [ "$(sampling top_p)" = 0.5 ]; do
    i=$((i + 1)); [ $i -lt 40 ] || fail "/top-p 0.5 not stored"; sleep 0.05
done
[ "$(sampling temp)" = 0.25 ] || fail "/temp 0.25 lost after --resume (temp: $(sampling temp))"

# 2. /regen makes a sibling answer; Alt-Left/Alt-Right move between the branches
$T send-keys -t t "/regen" Enter
wait_for "2/2" || fail "regenerated answer is not shown as branch 2/2"
$T send-keys -t t M-Left
wait_for "1/2" || fail "Alt-Left did not go to branch 1/2"
$T send-keys -t t M-Right
wait_for "2/2" || fail "Alt-Right did not go back to branch 2/2"

# 3. a second session; the sidebar lists both and opens the first
$T send-keys -t t "/new" Enter
wait_for "new conversation" || fail "/new"
$T send-keys -t t "second topic" Enter
wait_for "You said: second topic" || fail "second session answer"
$T send-keys -t t F2
wait_for "Sessions (F2)" || fail "F2 did not open the sessions list"
wait_for "first question" || fail "first session not listed"
$T send-keys -t t Down Enter
wait_for "resumed: first question" || fail "Enter did not open the first session"
wait_for "You said: first question" || fail "first session content not shown"
quit

# 4. kill -9 while an answer streams: on resume the partial answer is there, marked stopped
awk 'BEGIN { for (i = 0; i < 100000; i++) printf "tok%d ", i }' > "$work/long.txt"
start "$work/long.txt" 2000
$T send-keys -t t "stream please" Enter
wait_for_re "tok3[0-9]{3} " 20 || fail "answer did not stream for long"
pkill -9 -f "^$MIXEL chat --db $work/h.db" || fail "could not kill mixel"
wait_for "EXITED" || fail "mixel did not die"   # (the status may wrap at the pane edge)
# what was committed before the kill: the partial answer, still marked as streaming
"$MIXEL" sessions export "stream please" --format json --db "$work/h.db" > "$work/s.json" \
    || fail "export after kill failed"
grep -q '"state": *"streaming"' "$work/s.json" || fail "interrupted answer not marked"
grep -q 'tok1000 ' "$work/s.json" || fail "partial answer text lost"
start echo 0 --resume
wait_for_re "tok[0-9]+ " || fail "partial answer not shown after resume"
$T send-keys -t t "/export $work/out.md" Enter
wait_for "exported to" || fail "/export"
grep -q "Assistant (stopped)" "$work/out.md" || fail "resumed partial answer not marked stopped"
quit
echo ok
