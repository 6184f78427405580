#!/bin/sh
# load_flags.sh - --no-mmap and --mlock from the outside: every logit (all positions) and the
# greedy text are the same bytes as with the mapped file, on a dense model and on a Q4_0 MoE
# (whose matrices are repacked at load and whose experts are gathered: the paths that copy out
# of the file); run, chat, bench and serve list both options; a failed lock (RLIMIT_MEMLOCK
# below the file, without CAP_IPC_LOCK; needs capsh when run as root) is a warning naming the
# limit, and the model still answers (not under ASan, whose mlock does nothing).
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: load_flags.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
for m in stories260K tiny-mixtral-q4_0; do
    M="$MX_SHARED/models/$m.gguf"
    "$MIXEL" logits -m "$M" -p "Once upon a time there was" --all >"$T/l0" 2>"$T/err" ||
        fail "$m: logits: $(cat "$T/err")"
    for f in --no-mmap --mlock "--no-mmap --mlock"; do
        # shellcheck disable=SC2086
        "$MIXEL" logits -m "$M" -p "Once upon a time there was" --all $f >"$T/l1" 2>"$T/err" ||
            fail "$m $f: logits: $(cat "$T/err")"
        cmp -s "$T/l0" "$T/l1" || fail "$m $f: logits differ from the mapped file's"
    done
    "$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 24 -q >"$T/t0" 2>&1 || fail "$m run"
    "$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 24 -q --no-mmap >"$T/t1" 2>&1 ||
        fail "$m run --no-mmap: $(cat "$T/t1")"
    cmp -s "$T/t0" "$T/t1" || fail "$m: --no-mmap text differs"
done
for c in run chat bench serve; do
    "$MIXEL" $c --help >"$T/h" 2>&1
    grep -q -- '--no-mmap' "$T/h" && grep -q -- '--mlock' "$T/h" || fail "$c --help: no --no-mmap/--mlock"
done
# a lock the limit refuses: a warning with the limit, the answer still comes
M="$MX_SHARED/models/tiny-mixtral-q4_0.gguf"
lockrun() { "$MIXEL" run -m "$M" -p "Once upon a time" --temp 0 -n 24 --mlock >"$T/t2" 2>"$T/err"; }
if [ -n "${MX_SANITIZE:-}" ]; then
    # AddressSanitizer's mlock interceptor does nothing: no lock can fail there
    echo "(sanitizer build: mlock is a no-op under ASan, the failed-lock warning is not checked)"
    echo ok; exit 0
elif [ "$(id -u)" != 0 ]; then
    (ulimit -l 64 && lockrun) || fail "--mlock under a small limit: $(cat "$T/err")"
elif command -v capsh >/dev/null 2>&1; then
    export MIXEL M T
    capsh --drop=cap_ipc_lock -- -c "ulimit -l 64 && \"\$MIXEL\" run -m \"\$M\" -p 'Once upon a time' --temp 0 -n 24 --mlock >\"\$T/t2\" 2>\"\$T/err\"" ||
        fail "--mlock under a small limit: $(cat "$T/err")"
else
    echo "(root without capsh: the failed-lock warning is not checked)"; echo ok; exit 0
fi
grep -q "tiny-mixtral-q4_0.gguf: --mlock: cannot lock 1970656 bytes (.*); RLIMIT_MEMLOCK is 65536 bytes: raise it" "$T/err" ||
    fail "no warning with the limit: $(cat "$T/err")"
[ -s "$T/t2" ] || fail "no answer after a failed lock"
echo ok
