#!/bin/sh
# run_test.sh - Automake's LOG_COMPILER for every test (compiled and shell): runs one test under
# a time limit and applies the skip policy, so that a green CI run means every test ran.
#
#   run_test.sh [INTERPRETER...] TEST
#
# Time limit: $MX_TEST_TIMEOUT seconds (default 600; times 4 under MX_SANITIZE=1, where ASan
# slows everything). A test that runs past it is killed with its process group and reported as
# "TIMEOUT: <test> ..." and a FAIL, so a hang names itself instead of stalling the run.
#
# Skips (exit 77): in developer mode (no CI=true) they stay skips. In CI mode (CI=true) a skip
# is accepted only when tests/allowed_skips lists the test for the pass that is running; any
# other skip is turned into a FAIL ("SKIP refused in CI: ..."), whatever the reason printed.
set -u

name=
for a in "$@"; do name=$a; done
[ -n "$name" ] || { echo "run_test.sh: no test given" >&2; exit 99; }
# The name tests/allowed_skips uses: shell tests come as $(srcdir)/tests/x.sh, compiled ones as
# tests/x, so keep the part from tests/ on.
base=${name#./}
case $base in */tests/*) base=tests/${base##*/tests/} ;; esac

limit=${MX_TEST_TIMEOUT:-600}
[ -z "${MX_SANITIZE:-}" ] || limit=$((limit * 4))

# timeout(1) puts the test in its own process group and signals all of it; -k makes sure a
# test that ignores SIGTERM still goes.
timeout -k 10 "$limit" "$@"
rc=$?
case $rc in
124)
    echo "TIMEOUT: $base did not finish in $limit s (MX_TEST_TIMEOUT); killed"
    exit 1
    ;;
137)
    echo "KILLED: $base got SIGKILL (past the $limit s limit and deaf to SIGTERM, or out of memory)"
    exit 1
    ;;
77) ;;
*) exit $rc ;;
esac

[ "${CI:-}" = true ] || exit 77

# CI mode: is this skip one of the few that are allowed?
pass=normal
[ -z "${MX_SANITIZE:-}" ] || pass=sanitize
list="${MX_SRCDIR:-$(dirname "$0")/..}/tests/allowed_skips"
why=$(awk -v t="$base" -v p="$pass" \
    '!/^#/ && NF >= 3 && $1 == t && $2 == p { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' \
    "$list" 2>/dev/null)
if [ -n "$why" ]; then
    echo "SKIP allowed in CI ($pass pass): $base: $why"
    exit 77
fi
echo "SKIP refused in CI: $base skipped in the $pass pass and tests/allowed_skips does not" \
     "allow that; in CI every test must run (is ../shared or a package missing?)"
exit 1
