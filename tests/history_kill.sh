#!/bin/sh
# history_kill.sh - "a crash loses at most the last second of an answer": runs history_writer
# (streams answers with a commit per chunk) and kills it with SIGKILL at 50 random moments, all
# on one database; after each kill history_check must find the database intact
# (integrity_check, FTS index), every message exactly its generated text or a prefix of it, and
# every commit the writer logged still there. Delays come from a fixed awk seed.
set -u
fail() { echo "FAIL: $*"; exit 1; }
W="$MX_BUILDDIR/tests/history_writer"
C="$MX_BUILDDIR/tests/history_check"
[ -x "$W" ] && [ -x "$C" ] || { echo "SKIP: history_writer/history_check not built"; exit 77; }
dir=$(mktemp -d /tmp/mx-kill-XXXXXX) || fail "mktemp"
trap 'rm -rf "$dir"' EXIT
db="$dir/data/history.db"
log="$dir/commits.log"
kills=50
i=1
while [ "$i" -le "$kills" ]; do
    # 5 ms .. 205 ms: sometimes during open/migration, mostly mid-answer
    delay=$(awk -v s="$i" 'BEGIN { srand(s * 7919); printf "%.3f", 0.005 + rand() * 0.2 }')
    "$W" "$db" "$log" "$i" &
    pid=$!
    sleep "$delay"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    "$C" "$db" "$log" >"$dir/check.out" 2>&1 || { cat "$dir/check.out"; fail "after kill $i"; }
    i=$((i + 1))
done
cat "$dir/check.out"
# the test means something only if the writer got far enough to be killed mid-answer often
n=$(grep -c . "$log")
[ "$n" -ge 200 ] || fail "only $n commits logged in $kills runs: the kills hit nothing"
[ "$(stat -c %a "$db")" = 600 ] || fail "database mode $(stat -c %a "$db")"
[ "$(stat -c %a "$dir/data")" = 700 ] || fail "folder mode $(stat -c %a "$dir/data")"
echo "ok: $kills kills, $n commits logged, database intact"
