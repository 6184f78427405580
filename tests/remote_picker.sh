#!/bin/sh
# remote_picker.sh - the server's models in the chat's model picker (tests/remote_mock.py on
# 127.0.0.1 serving two models): in a chat over --remote, /model with no argument lists both
# under the server's heading with the one in use marked, and a GGUF found on this machine in its
# own section below; Enter on the other switches to it (status bar, the next request asks for
# it, the answer comes from it); a server that fails /v1/models gives a notice, not a hang, and
# the local files stay offered.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
. "$MX_SRCDIR/tests/remote_lib.sh"
start_mock remote_mock.py "$work/mock.log" --models chunky,echo --models-fail "$work/fail"
U="http://127.0.0.1:$P/v1"
# a local model for the second section (only its header: it is listed, never loaded)
mkdir -p "$work/home/models"
printf 'GGUF\003\000\000\000' >"$work/home/models/local-tiny.gguf"
head -c 2048 /dev/zero >>"$work/home/models/local-tiny.gguf" # discovery skips < 1 KiB

start "" 0 --remote "$U" --remote-model chunky
$T resize-window -t t -x 120 -y 30
wait_for "remote: 127.0.0.1:$P / chunky" || fail "status bar"
$T send-keys -t t "/model" Enter
wait_for "On the server:" 5 || fail "/model: no picker with the server's models"
wait_for "* chunky  · $U" || fail "/model: chunky not listed as the model in use"
wait_for "  echo  · $U" || fail "/model: echo not listed"
wait_for "On this machine:" || fail "/model: no local section"
wait_for "local-tiny.gguf" || fail "/model: the local GGUF not listed"
$T send-keys -t t Down Enter
wait_for "remote: 127.0.0.1:$P / echo" || fail "Enter: the status bar does not show echo"
wait_for "loaded remote: 127.0.0.1:$P / echo" || fail "Enter: no load notice"
$T send-keys -t t "Who answers?" Enter
wait_for '"model": "echo"' || fail "the answer does not come from echo"
tail -n 1 "$work/mock.log" | grep -q '"model": "echo"' || fail "the request did not ask for echo"
# the picker again: echo is now the one in use
$T send-keys -t t "/model" Enter
wait_for "* echo  · $U" || fail "/model again: echo not marked"
$T send-keys -t t Escape
wait_gone "On the server:" || fail "Esc does not close the picker"

# the server fails to list its models: a notice at once, the local files still offered
touch "$work/fail"
$T send-keys -t t "/model" Enter
wait_for "model registry unavailable" 8 || fail "a failing /v1/models gives no notice"
wait_for "local-tiny.gguf" || fail "a failing /v1/models: the local files are not offered"
$T send-keys -t t Escape
wait_gone "local-tiny.gguf" || fail "Esc does not close the picker"
quit

# the server gone: a notice within the timeouts, the screen alive
start "" 0 --remote "$U" --remote-model chunky
$T resize-window -t t -x 120 -y 30
wait_for "remote: 127.0.0.1:$P / chunky" || fail "status bar (2)"
kill $mock_pid; wait $mock_pid 2>/dev/null
$T send-keys -t t "/model" Enter
wait_for_re "127\.0\.0\.1.*(refused|connect)" 8 || fail "a dead server gives no notice"
# a server that takes the connection and never answers: the stall timeout (3 s) ends the wait
python3 -c "
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $P)); s.listen(8); open(sys.argv[1], 'w').write('up'); time.sleep(60)
" "$work/silent" &
mock_pid=$!
i=0
while [ ! -s "$work/silent" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "the silent server did not start"
    sleep 0.05
done
t0=$(date +%s)
$T send-keys -t t "/model" Enter
wait_for "no answer for 3 s" 10 || fail "a silent server gives no notice"
t1=$(date +%s)
[ $((t1 - t0)) -le 6 ] || fail "a silent server froze the screen for $((t1 - t0)) s"
echo "a silent server: notice after about $((t1 - t0)) s"
$T send-keys -t t Escape
wait_gone "local-tiny.gguf" 3 || fail "after a silent server: the screen does not answer keys"
kill $mock_pid 2>/dev/null
quit

# without a server the picker is unchanged: /model says which model answers
start "" 0
wait_for "local-tiny.gguf" || fail "without a server: the start-up picker"
$T send-keys -t t Escape
wait_gone "local-tiny.gguf" || fail "without a server: Esc does not close the picker"
$T send-keys -t t "/model" Enter
wait_for "/model PATH loads another" || fail "without a server: /model changed"
quit
echo "remote picker: both models listed and marked, local section, Enter switches, failures are notices"
