#!/bin/sh
# cli.sh - the binary's front door: --help/--version, unknown commands, and doctor with no tty
# (it must finish quickly and say the queries were skipped).
set -u
fail() { echo "FAIL: $*"; exit 1; }
"$MIXEL" --help >out.help 2>&1 || fail "--help exited non-zero"
grep -q '^usage: mixel' out.help || fail "--help has no usage line"
for c in chat run image sessions bench doctor; do
    grep -q "^  $c " out.help || fail "--help does not list '$c'"
done
"$MIXEL" --version | grep -q '^mixel [0-9]' || fail "--version"
"$MIXEL" no-such-command >/dev/null 2>out.err && fail "unknown command exited 0"
grep -q "unknown command 'no-such-command'" out.err || fail "unknown command message"
# doctor with stdin/stdout not a terminal: no hang (bounded by timeout), queries skipped
timeout 10 "$MIXEL" doctor </dev/null >out.doctor 2>&1 || fail "doctor failed or hung"
grep -q 'queries skipped' out.doctor || fail "doctor did not skip terminal queries"
grep -q '^cpu ' out.doctor || fail "doctor has no cpu line"
grep -q '^blas ' out.doctor || fail "doctor has no blas line"
grep -q '^cuda ' out.doctor || fail "doctor has no cuda line"
# the SIMD line must agree with /proc/cpuinfo's flags
if grep -qw avx2 /proc/cpuinfo; then grep -q 'SIMD.*AVX2' out.doctor || fail "AVX2 not reported"; fi
if grep -qw f16c /proc/cpuinfo; then grep -q 'SIMD.*F16C' out.doctor || fail "F16C not reported"; fi
if ! grep -qw avx512f /proc/cpuinfo; then grep -q 'AVX-512F' out.doctor && fail "AVX-512 wrongly reported"; fi
XDG_DATA_HOME=/nonexistent-mx "$MIXEL" doctor </dev/null | grep -q 'data: /nonexistent-mx/mixel' \
    || fail "doctor ignores XDG_DATA_HOME"
rm -f out.help out.err out.doctor
echo "ok"
