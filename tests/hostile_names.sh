#!/bin/sh
# hostile_names.sh - no command lets a file name, session title or model string drive the
# terminal: a model file named with an OSC title sequence, a BEL, a CSI colour and a C1 CSI, and a
# session with such a title, go through run, run --session, bench (table and --json), logits,
# inspect, tokenize, detokenize, sessions list/show/search, doctor, list, show, quantize, chat's
# messages before the TUI and the unknown-command/option errors, with and without the file there
# (error messages quote paths too). No ESC, BEL or C1 control byte may reach stdout or stderr.
# (`sessions export` is the session's data, raw by design: tests/sessions_cli.sh.)
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: hostile_names.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
EVIL=$(printf 'm\033]0;OWNED\007x\033[31mred\302\233Kc1')
mkdir -p "$T/home/models" "$T/data"
M="$T/home/models/$EVIL.gguf"
cp "$MX_SHARED/models/stories260K.gguf" "$M" || fail "copy"
GONE="$T/$EVIL-missing.gguf"
export HOME="$T/home" XDG_DATA_HOME="$T/data" XDG_CONFIG_HOME="$T/config"
DB="$T/h.db"
esc=$(printf '\033')
bel=$(printf '\007')
c1=$(printf '\302[\200-\237]')
n=0
# runs one command (stdin empty), then checks what it printed
try() {
    n=$((n + 1))
    "$MIXEL" "$@" </dev/null >"$T/out.$n" 2>&1
    echo "$?" >"$T/rc.$n"
    if LC_ALL=C grep -q "[$esc$bel]" "$T/out.$n" || LC_ALL=C grep -q "$c1" "$T/out.$n"; then
        fail "command $n ($(echo "$*" | od -c | head -2)): a control byte reached the output:
$(od -c "$T/out.$n" | head)"
    fi
}
try run -m "$M" -p "Once upon a time" -n 4 --temp 0
grep -q 'generated 4 tokens' "$T/out.$n" || fail "run did not run: $(cat "$T/out.$n")"
try run -m "$GONE" -p x
grep -q 'OWNED' "$T/out.$n" || fail "the error does not name the file: $(cat "$T/out.$n")"
try run -m "$M" -p "hello" -n 4 --session "$EVIL" --db "$DB"
grep -q 'session 1' "$T/out.$n" || fail "run --session: $(cat "$T/out.$n")"
try run -m "$M" -p "hello" -n 4 --session "$EVIL" --db "$GONE/h.db"
try run -m "$M" -p "hello" -n 4 --session x --chat-template "$EVIL" --db "$DB"
try sessions list --db "$DB"
grep -q 'OWNED' "$T/out.$n" || fail "sessions list: $(cat "$T/out.$n")"
try sessions show "$EVIL" --db "$DB"
try sessions show 1 --db "$DB"
try sessions show "$EVIL-none" --db "$DB"
try sessions search hello --db "$DB"
try sessions rm "$EVIL-none" --db "$DB"
try bench -m "$M" -p 4 -n 2 -r 1 --mem-mib 8 -t 1
grep -q 'OWNED' "$T/out.$n" || fail "bench does not name the model: $(cat "$T/out.$n")"
try bench -m "$M" -p 4 -n 2 -r 1 --mem-mib 8 -t 1 --json
try bench -m "$GONE"
try logits -m "$M" --ids 1,2
try logits -m "$GONE" --ids 1
try inspect "$M"
try inspect "$GONE"
try tokenize -m "$M" hello
try tokenize -m "$GONE" hello
try detokenize -m "$M" 1 403
try detokenize -m "$GONE" 1
try doctor
grep -q 'OWNED' "$T/out.$n" || fail "doctor does not list the model: $(cat "$T/out.$n")"
try list
grep -q 'OWNED' "$T/out.$n" || fail "list: $(cat "$T/out.$n")"
try models
try show "$GONE" --graphics none
try show "$M" --graphics none
try quantize "$M" "$T/$EVIL-q8.gguf" q8_0 1
try quantize "$GONE" "$T/out.gguf" q8_0
try quantize "$M" "$T/o.gguf" "$EVIL"
try chat -m "$GONE"
try chat --theme
try "$EVIL"
try "--$EVIL"
try run "--$EVIL"
try run -m "$M" -p x --temp "$EVIL"
try chat "$EVIL"
# on a terminal (script(1) gives a pty): chat's own messages before the TUI starts (loading,
# then the error), and run's output (--echo writes the prompt through the same path as the
# answer: inert on a terminal); into a pipe the echoed prompt stays raw data
pty() { # pty NAME ARGS...: runs mixel ARGS on a pty, output in $T/out.$n
    n=$((n + 1))
    what=$1
    shift
    printf 'exec "$MIXEL" "$@"\n' >"$T/pty.sh"
    MIXEL="$MIXEL" timeout 20 script -qec "sh '$T/pty.sh' $(printf "'%s' " "$@")" /dev/null \
        </dev/null >"$T/out.$n" 2>&1
    if LC_ALL=C grep -q "[$esc$bel]" "$T/out.$n" || LC_ALL=C grep -q "$c1" "$T/out.$n"; then
        fail "$what on a terminal: $(od -c "$T/out.$n" | head)"
    fi
}
if command -v script >/dev/null 2>&1; then
    pty "chat -m" chat -m "$GONE"
    grep -q 'loading' "$T/out.$n" || fail "chat on a pty: $(cat "$T/out.$n")"
    pty "run --echo" run -m "$M" -p "$EVIL" --echo -n 2 --temp 0
    grep -q 'OWNED' "$T/out.$n" || fail "run --echo on a pty: $(cat "$T/out.$n")"
    "$MIXEL" run -m "$M" -p "$EVIL" --echo -n 2 --temp 0 -q >"$T/raw" 2>/dev/null
    LC_ALL=C grep -q "$esc" "$T/raw" || fail "run into a pipe lost the prompt's raw bytes"
fi
echo "ok ($n commands)"
