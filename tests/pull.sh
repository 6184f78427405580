#!/bin/sh
# pull.sh - `mixel pull` against a loopback stand-in for the Hugging Face hub (tests/pull_hub.py):
# the resolve URL's 302 to a CDN path with the LFS headers, the full and short (:QUANT) forms,
# an ambiguous quant refused with the candidates, a connection dropped mid-file then resumed with
# Range (a second pull, and a retry within one pull), a wrong SHA-256 refused with the .partial
# kept, a 404, a gated repo (401 without HF_TOKEN, success with it, the token never printed), an
# existing different file not overwritten and the same one "already there", a server without
# Range support (restart, said), Ctrl-C leaving a resumable .partial, and the default folders
# (~/models; A1111's checkpoint folder for .safetensors when it exists).
set -u
# every refusal must exit 1: a crash or a sanitizer report (another status) fails the test too
fail() { echo "FAIL: $*"; [ -f "$dir/out" ] && sed 's/^/  out: /' "$dir/out"; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 not found (the mock hub)"; exit 77; }
dir=$(mktemp -d /tmp/mx-pull-XXXXXX) || { echo "FAIL: mktemp"; exit 1; }
hub_pid=
cleanup() { [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# the hub's files: random bytes (pull does not look inside), sizes in the 100 KB - 2 MB range
root="$dir/hub"
mk() { # mk REPO PATH KB
    mkdir -p "$(dirname "$root/alice/$1/$2")"
    head -c "$(($3 * 1024))" /dev/urandom >"$root/alice/$1/$2"
}
mk tiny-GGUF tiny-Q4_K_M.gguf 300
mk tiny-GGUF tiny-Q4_K_S.gguf 280
mk tiny-GGUF tiny-Q8_0.gguf 500
mk tiny-GGUF README.md 1
mk amb-GGUF a-Q4_0.gguf 100
mk amb-GGUF b-Q4_0.gguf 100
mk drop-GGUF big.gguf 2048
mk drop-GGUF big2.gguf 1024
mk badsha-GGUF x.gguf 200
mk gated-GGUF g.gguf 150
mk norange-GGUF n.gguf 400
mk slow-GGUF s.gguf 2048
mk sd-v1 v1-5-pruned-emaonly.safetensors 300
sha() { sha256sum "$1" | cut -d' ' -f1; }

python3 "$MX_SRCDIR/tests/pull_hub.py" --root "$root" --port-file "$dir/port" \
    --log "$dir/log" --token hf_test_secret &
hub_pid=$!
i=0
while [ ! -s "$dir/port" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "the mock hub did not start"
    kill -0 "$hub_pid" 2>/dev/null || fail "the mock hub exited"
    sleep 0.05
done
export HF_ENDPOINT="http://127.0.0.1:$(cat "$dir/port")"
unset HF_TOKEN
export HOME="$dir/home"
mkdir -p "$HOME"
out="$dir/dl"

# 1. the full form: through the 302, verified, into --dir; the path on stdout
"$MIXEL" pull "hf://alice/tiny-GGUF/tiny-Q4_K_M.gguf" --dir "$out" >"$dir/stdout" 2>"$dir/out" \
    || fail "full form"
[ "$(cat "$dir/stdout")" = "$out/tiny-Q4_K_M.gguf" ] || fail "stdout is not the path"
[ "$(sha "$out/tiny-Q4_K_M.gguf")" = "$(sha "$root/alice/tiny-GGUF/tiny-Q4_K_M.gguf")" ] \
    || fail "full form: wrong bytes"
grep -q 'verified' "$dir/out" || fail "full form: no verification said"
grep -q '"GET", "path": "/cdn/alice/tiny-GGUF/tiny-Q4_K_M.gguf"' "$dir/log" \
    || fail "the redirect to the CDN path was not followed"
[ ! -e "$out/tiny-Q4_K_M.gguf.partial" ] || fail ".partial left after success"

# 2. the short form picks the quant (Q4_K_M, not Q4_K_S) into the default folder ~/models
"$MIXEL" pull "hf://alice/tiny-GGUF:q4_k_s" >"$dir/stdout" 2>"$dir/out" || fail "short form"
[ "$(cat "$dir/stdout")" = "$HOME/models/tiny-Q4_K_S.gguf" ] || fail "short form: wrong file"
cmp -s "$HOME/models/tiny-Q4_K_S.gguf" "$root/alice/tiny-GGUF/tiny-Q4_K_S.gguf" \
    || fail "short form: wrong bytes"
grep -q '/api/models/alice/tiny-GGUF' "$dir/log" || fail "short form: no listing asked"
# ... ambiguous: refused, both candidates named
"$MIXEL" pull "hf://alice/amb-GGUF:Q4_0" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] || fail "ambiguous accepted"
grep -q 'ambiguous' "$dir/out" && grep -q 'a-Q4_0.gguf' "$dir/out" && grep -q 'b-Q4_0.gguf' \
    "$dir/out" || fail "ambiguous: candidates not listed"
# ... no such quant: the repo's files listed
"$MIXEL" pull "hf://alice/tiny-GGUF:Q5_K_M" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] || fail "missing quant"
grep -q 'no GGUF file for Q5_K_M' "$dir/out" && grep -q 'tiny-Q8_0.gguf' "$dir/out" \
    || fail "missing quant: files not listed"

# 3. a connection dropped mid-file, no retries: a .partial of about half; the next pull resumes
# it with a Range request and the result verifies
"$MIXEL" pull "hf://alice/drop-GGUF/big.gguf" --dir "$out" --retries 0 >"$dir/out" 2>&1; [ $? = 1 ] \
    || fail "a dropped connection succeeded"
grep -q 'resumable' "$dir/out" || fail "dropped: no resume hint"
psize=$(stat -c %s "$out/big.gguf.partial" 2>/dev/null) || fail "dropped: no .partial"
[ "$psize" -gt 0 ] && [ "$psize" -lt $((2048 * 1024)) ] || fail "dropped: .partial size $psize"
"$MIXEL" pull "hf://alice/drop-GGUF/big.gguf" --dir "$out" >"$dir/out" 2>&1 || fail "resume"
grep -q "\"range\": \"bytes=$psize-\"" "$dir/log" || fail "resume: no Range from $psize"
grep -q 'resuming big.gguf' "$dir/out" || fail "resume not said"
[ "$(sha "$out/big.gguf")" = "$(sha "$root/alice/drop-GGUF/big.gguf")" ] || fail "resume: sha256"
# ... the same within one pull: retried after a second, resumed from where it stopped
"$MIXEL" pull "hf://alice/drop-GGUF/big2.gguf" --dir "$out" >"$dir/out" 2>&1 || fail "retry"
grep -q 'retrying in 1 s' "$dir/out" || fail "retry not said"
[ "$(grep -c '"GET", "path": "/cdn/alice/drop-GGUF/big2.gguf", "range": "bytes=' "$dir/log")" \
    = 1 ] || fail "retry: no Range request"
cmp -s "$out/big2.gguf" "$root/alice/drop-GGUF/big2.gguf" || fail "retry: wrong bytes"

# 4. a wrong SHA-256: refused, kept as .partial, nothing in place
"$MIXEL" pull "hf://alice/badsha-GGUF/x.gguf" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] || fail "bad sha ok"
grep -q 'SHA-256 mismatch' "$dir/out" || fail "bad sha: no message"
[ -f "$out/x.gguf.partial" ] && [ ! -e "$out/x.gguf" ] || fail "bad sha: .partial not kept"

# 5. 404s: a missing file and a missing repo
"$MIXEL" pull "hf://alice/tiny-GGUF/nope.gguf" --dir "$out" >"$dir/out" 2>&1; rc=$?
[ $rc = 1 ] && grep -q 'not found (404)' "$dir/out" || fail "404 file: rc $rc"
"$MIXEL" pull "hf://alice/nothere:Q4_K_M" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] || fail "404 repo ok"
grep -q 'not found (404)' "$dir/out" || fail "404 repo: message"

# 6. a gated repo: 401 and the HF_TOKEN hint without a token; with it, success; never printed
"$MIXEL" pull "hf://alice/gated-GGUF/g.gguf" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] || fail "gated ok"
grep -q '401' "$dir/out" && grep -q 'HF_TOKEN' "$dir/out" || fail "gated: no token hint"
HF_TOKEN=wrong "$MIXEL" pull "hf://alice/gated-GGUF/g.gguf" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] \
    || fail "gated with a wrong token ok"
grep -q 'HF_TOKEN was refused' "$dir/out" || fail "gated: wrong token message"
grep -q 'wrong' "$dir/out" && fail "the token was printed"
HF_TOKEN=hf_test_secret "$MIXEL" pull "hf://alice/gated-GGUF/g.gguf" --dir "$out" \
    >"$dir/out" 2>&1 || fail "gated with the token"
grep -q hf_test_secret "$dir/out" && fail "the token was printed"
cmp -s "$out/g.gguf" "$root/alice/gated-GGUF/g.gguf" || fail "gated: wrong bytes"

# 7. a different file at the destination is never overwritten; the same one is "already there"
echo "my own file" >"$out/tiny-Q8_0.gguf"
"$MIXEL" pull "hf://alice/tiny-GGUF/tiny-Q8_0.gguf" --dir "$out" >"$dir/out" 2>&1; [ $? = 1 ] \
    || fail "overwrote a different file"
grep -q 'not overwritten' "$dir/out" || fail "different file: message"
[ "$(cat "$out/tiny-Q8_0.gguf")" = "my own file" ] || fail "different file: changed"
n_get=$(grep -c '"GET"' "$dir/log")
"$MIXEL" pull "hf://alice/tiny-GGUF/tiny-Q4_K_M.gguf" --dir "$out" >"$dir/out" 2>&1 \
    || fail "same file: exit"
grep -q 'already there' "$dir/out" || fail "same file: not 'already there'"
[ "$(grep -c '"GET"' "$dir/log")" = "$n_get" ] || fail "same file: downloaded again"

# 8. a server without Range support: the .partial is downloaded again from the start, said so
head -c 1000 /dev/zero >"$out/n.gguf.partial"
"$MIXEL" pull "hf://alice/norange-GGUF/n.gguf" --dir "$out" >"$dir/out" 2>&1 || fail "norange"
grep -q 'does not support resuming' "$dir/out" || fail "norange: restart not said"
cmp -s "$out/n.gguf" "$root/alice/norange-GGUF/n.gguf" || fail "norange: wrong bytes"

# 9. Ctrl-C: exit 130, a resumable .partial; the next pull finishes it
"$MIXEL" pull "hf://alice/slow-GGUF/s.gguf" --dir "$out" >"$dir/out" 2>&1 &
pid=$!
i=0
while [ "$(stat -c %s "$out/s.gguf.partial" 2>/dev/null || echo 0)" -lt 100000 ]; do
    i=$((i + 1)); [ $i -gt 400 ] && fail "Ctrl-C: the slow download did not start"
    sleep 0.02
done
kill -INT $pid
wait $pid; rc=$?
[ $rc = 130 ] || fail "Ctrl-C: exit $rc, not 130"
grep -q 'stopped' "$dir/out" || fail "Ctrl-C: not said"
[ -f "$out/s.gguf.partial" ] && [ ! -e "$out/s.gguf" ] || fail "Ctrl-C: .partial not kept"
"$MIXEL" pull "hf://alice/slow-GGUF/s.gguf" --dir "$out" -q >"$dir/out" 2>&1 || fail "Ctrl-C resume"
cmp -s "$out/s.gguf" "$root/alice/slow-GGUF/s.gguf" || fail "Ctrl-C resume: wrong bytes"

# 10. SD checkpoints: ~/models by default, A1111's folder when it exists
"$MIXEL" pull "hf://alice/sd-v1" -q >"$dir/stdout" 2>"$dir/out" || fail "sd"
[ "$(cat "$dir/stdout")" = "$HOME/models/v1-5-pruned-emaonly.safetensors" ] || fail "sd: folder"
a1111="$HOME/stable-diffusion-webui/models/Stable-diffusion"
mkdir -p "$a1111"
"$MIXEL" pull "hf://alice/sd-v1/v1-5-pruned-emaonly.safetensors" -q >"$dir/stdout" \
    2>"$dir/out" || fail "sd a1111"
[ "$(cat "$dir/stdout")" = "$a1111/v1-5-pruned-emaonly.safetensors" ] || fail "sd: a1111 folder"

# 11. bad input: clear messages, exit 2 for usage, 1 for a bad reference; no network needed
"$MIXEL" pull >"$dir/out" 2>&1; [ $? = 2 ] || fail "no argument: not exit 2"
"$MIXEL" pull hf://alice/tiny-GGUF/x.gguf --retries >"$dir/out" 2>&1; [ $? = 2 ] \
    || fail "--retries without a value"
for bad in "https://x/y" "hf://alice" "hf://alice/../x.gguf" "hf://alice/r/../../etc/passwd" \
    "hf://alice/r:" "hf://a b/r/f.gguf" "hf://alice/tiny-GGUF/README.md"; do
    "$MIXEL" pull "$bad" --dir "$out" >"$dir/out" 2>&1; rc=$?
    [ $rc = 1 ] || fail "'$bad': exit $rc"
    grep -q 'mixel pull: ' "$dir/out" || fail "'$bad': no message"
done
"$MIXEL" pull hf://alice/tiny-GGUF/x.gguf --endpoint "http://127.0.0.1:9/" --retries 0 \
    >"$dir/out" 2>&1; [ $? = 1 ] || fail "connection refused: not exit 1"
grep -qi "connect" "$dir/out" || fail "connection refused: no message"
echo "pull: all cases passed"
