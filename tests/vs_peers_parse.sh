#!/bin/sh
# vs_peers_parse.sh - tests/bench/vs_peers.sh without peers: its parsers (peers_parse.sh) on
# recorded output of mixel bench --json, llama.cpp's llref bench (with and without -d) and
# ik_llama.cpp's llama-bench -o json (tests/golden/bench), its median/ratio table on known
# rounds, and one whole run with stand-in peers that print the recorded output (mixel itself
# runs on the tiny model), so the arguments each peer gets are checked too.
set -u
fail() { echo "FAIL: $*"; exit 1; }
S=${MX_SRCDIR:-.}
G="$S/tests/golden/bench"
. "$S/tests/bench/peers_parse.sh"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
eq() { [ "$1" = "$2" ] || fail "$3: '$1', want '$2'"; }

eq "$(mixel_tps pp <"$G/mixel.json")" 27638.673 "mixel pp"
eq "$(mixel_tps tg <"$G/mixel.json")" 15374.504 "mixel tg"
eq "$(mixel_tps pp_depth <"$G/mixel.json")" 27454.850 "mixel pp_depth"
eq "$(mixel_tps tg_depth <"$G/mixel.json")" 12524.677 "mixel tg_depth"
eq "$(echo '{"pp": {"n": 0, "tokens_per_s": 0.000}}' | mixel_tps tg_depth)" - "mixel absent"
eq "$(llref_field BENCH pp_median <"$G/llref.txt")" 16822.591 "llref pp"
eq "$(llref_field BENCH tg_median <"$G/llref.txt")" 12617.262 "llref tg"
eq "$(llref_field BENCH_DEPTH tg_median <"$G/llref_depth.txt")" 4565.890 "llref tg depth"
eq "$(llref_field BENCH_DEPTH tg_median <"$G/llref.txt")" - "llref depth absent"
eq "$(ik_tps pp16 <"$G/ik.json")" 24226.2 "ik pp"
eq "$(ik_tps tg8 <"$G/ik.json")" 15798.9 "ik tg"
eq "$(ik_tps tg8@pp64 <"$G/ik.json")" 1896.31 "ik tg at depth"
eq "$(ik_tps pp512 <"$G/ik.json")" - "ik absent test"
eq "$(ik_tps pp16 </dev/null)" - "ik no output"

# the table: medians over rounds, ratios, n/a where a side is missing
printf '%s\n' "pp512 300 100 250" "tg128 100 80 -" "pp512 330 110 300" "tg128 120 90 -" \
    "pp512 310 - 280" "tg128@16384 60 20 40" >"$T/rounds"
peers_table <"$T/rounds" >"$T/table"
grep -q '^pp512  *310\.0  *105\.0  *280\.0  *2\.95x  *1\.11x$' "$T/table" \
    || fail "table pp512: $(cat "$T/table")"
grep -q '^tg128  *110\.0  *85\.0  *n/a  *1\.29x  *n/a$' "$T/table" \
    || fail "table tg128: $(cat "$T/table")"
grep -q '^tg128@16384  *60\.0  *20\.0  *40\.0  *3\.00x  *1\.50x$' "$T/table" \
    || fail "table depth: $(cat "$T/table")"

# a whole run: mixel for real, peers replaced by the recordings (they check their arguments)
M="${MX_SHARED:-}/models/stories260K.gguf"
if [ -z "${MX_SHARED:-}" ] || [ ! -f "$M" ]; then
    echo "SKIP: the whole run needs \$MX_SHARED/models/stories260K.gguf (parsers checked)"
    exit 77
fi
cat >"$T/llref" <<EOS
#!/bin/sh
case " \$* " in *" -fa 1 "*) ;; *) echo "no -fa 1: \$*" >&2; exit 1 ;; esac
case " \$* " in
*" -d 64 "*) cat "$G/llref_depth.txt" ;;
*" -p 16 "*) cat "$G/llref.txt" ;;
*) exit 1 ;;
esac
EOS
cat >"$T/ik" <<EOS
#!/bin/sh
case " \$* " in
*" -rtr 1 -fmoe 1 -fa 1 -p 16 -n 8 -gp 64,8 "*) cat "$G/ik.json" ;;
*) exit 1 ;;
esac
EOS
chmod +x "$T/llref" "$T/ik"
BENCH_LOG="$T/log" REPS=1 sh "$S/tests/bench/vs_peers.sh" "$MIXEL" "$T/llref" "$T/ik" "$M" 1 1 \
    16 8 64 >"$T/out" 2>"$T/err" || fail "vs_peers.sh: $(cat "$T/err" "$T/out")"
grep -q '^pp16  *[1-9][0-9.]*  *16822\.6  *24226\.2  *[0-9.]*x  *[0-9.]*x$' "$T/out" \
    || fail "run pp16: $(cat "$T/out")"
grep -q '^tg8  *[1-9][0-9.]*  *12617\.3  *15798\.9 ' "$T/out" || fail "run tg8: $(cat "$T/out")"
grep -q '^pp16@64  *[1-9][0-9.]*  *n/a  *n/a  *n/a  *n/a$' "$T/out" \
    || fail "run pp16@64: $(cat "$T/out")"
grep -q '^tg8@64  *[1-9][0-9.]*  *4565\.9  *1896\.3 ' "$T/out" \
    || fail "run tg8@64: $(cat "$T/out")"
grep -q '^# command: tests/bench/vs_peers.sh ' "$T/log" || fail "log: $(cat "$T/log")"
grep -q '^round 0: ' "$T/log" || fail "log rounds: $(cat "$T/log")"
# a peer given as "-" is skipped: its columns n/a
BENCH_LOG="$T/log2" REPS=1 sh "$S/tests/bench/vs_peers.sh" "$MIXEL" - - "$M" 1 1 16 8 \
    >"$T/out" 2>"$T/err" || fail "vs_peers.sh without peers: $(cat "$T/err")"
grep -q '^pp16  *[1-9][0-9.]*  *n/a  *n/a  *n/a  *n/a$' "$T/out" || fail "no peers: $(cat "$T/out")"
# bad arguments: exit 2 with a message
sh "$S/tests/bench/vs_peers.sh" "$MIXEL" - - "$M" x >/dev/null 2>"$T/err"
[ $? -eq 2 ] && grep -q "not a whole number" "$T/err" || fail "bad THREADS: $(cat "$T/err")"
echo ok
