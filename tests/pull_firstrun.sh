#!/bin/sh
# pull_firstrun.sh - a new user's first `mixel`: no model anywhere (HOME, XDG and hub-cache folders
# empty, run from an empty folder) shows the first-run screen in the TUI, not an error: what a
# model is, this machine's RAM, the picks with their sizes and exact `mixel pull` commands, and
# --remote. Enter downloads the first pick from a loopback mock hub (tests/pull_hub.py, paced so
# the progress shows), Esc stops it with a resumable .partial, Enter again resumes it (Range),
# and the chat opens with the model and answers. The "model" the mock serves under the real
# TinyLlama path is a copy of ../shared/models/tiny-mixtral-f32.gguf, so the chat really runs.
set -u
. "$MX_SRCDIR/tests/tui_lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 not found (the mock hub)"; exit 77; }
tiny="$MX_SHARED/models/tiny-mixtral-f32.gguf"
[ -f "$tiny" ] || { echo "SKIP: $tiny not found (../shared is absent)"; exit 77; }

repo="TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"
file="tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"
mkdir -p "$work/hub/$repo" "$work/home" "$work/empty"
cp "$tiny" "$work/hub/$repo/$file"
# ~14 MB at 4 MB/s: a few seconds, long enough to see the bar and press Esc
python3 "$MX_SRCDIR/tests/pull_hub.py" --root "$work/hub" --port-file "$work/port" \
    --log "$work/log" --rate 4000000 &
hub_pid=$!
trap 'kill $hub_pid 2>/dev/null; cleanup' EXIT
i=0
while [ ! -s "$work/port" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "the mock hub did not start"
    sleep 0.05
done

n_start=$((n_start + 1)); T="tmux -S $work/tmux.$n_start"
$T -f /dev/null new-session -d -s t -x 80 -y 30 \
    "cd '$work/empty' && env HOME='$work/home' XDG_DATA_HOME='$work/data' \
     XDG_CONFIG_HOME='$work/cfg' XDG_CACHE_HOME='$work/cache' HF_HOME='$work/hf' \
     HF_ENDPOINT='http://127.0.0.1:$(cat "$work/port")' TERM=xterm-256color \
     '$MIXEL' chat --db '$work/h.db' -n 8 --seed 1; echo EXITED \$?; sleep 30"

# the screen: what a model is, the RAM, the first pick with its size and whole command
wait_for "no model was found on this machine" || fail "no first-run screen"
screen=$($T capture-pane -p -J -t t)
echo "$screen" | grep -q 'A model is the file of weights' || fail "no explanation"
echo "$screen" | grep -qE 'This machine: [0-9.]+ GB of RAM, [0-9.]+ (GB|MB) free now' \
    || fail "no RAM figures"
echo "$screen" | grep -q '> TinyLlama 1.1B Chat v1.0, Q4_K_M · 670 MB' || fail "first pick"
# the command wraps at 80 columns: joined again (the indent of its second row dropped), it is
# the exact command
echo "$screen" | sed 's/^     //' | tr -d '\n' | grep -qF "mixel pull hf://$repo/$file" \
    || fail "pull command"
echo "$screen" | grep -q 'Stable Diffusion 1.5' || fail "no SD pick"
echo "$screen" | tr -d '\n' | grep -q 'mixel chat --remote *http://HOST:8000/v1' \
    || fail "no --remote"

# Enter: the download with its progress; Esc stops it and keeps the .partial
$T send-keys -t t Enter
wait_for_re '[0-9]+%  [0-9.]+ MB / 13.8 MB' 10 || fail "no progress bar"
wait_for "Esc stops the download" 5 || fail "no Esc hint"
$T send-keys -t t Escape
wait_for "download stopped" 10 || fail "Esc did not stop the download"
[ -s "$work/home/models/$file.partial" ] || fail "no .partial after Esc"
[ ! -e "$work/home/models/$file" ] || fail "a file in place after Esc"

# Enter again: resumed with a Range request, verified, loaded; the chat answers
$T send-keys -t t Enter
wait_for "loaded tiny-mixtral-f32" 30 || fail "the model was not loaded after the download"
grep -q '"range": "bytes=' "$work/log" || fail "the second download did not resume (no Range)"
cmp -s "$work/home/models/$file" "$tiny" || fail "the downloaded file differs"
say "Hello" 30 || fail "no answer from the downloaded model"
quit
echo "pull_firstrun: all steps passed"
