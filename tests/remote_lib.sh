# remote_lib.sh - shared by the TUI tests of remote engines (after tests/tui_lib.sh): starts a
# python3 mock server on 127.0.0.1 and waits for the port it chose. Sourced, not run.
command -v python3 >/dev/null 2>&1 || { echo "SKIP: needs python3 for the mock server"; exit 77; }

# start_mock SCRIPT LOG [ARGS...]: runs tests/SCRIPT in the background (killed at exit with the
# tmux server), waits up to 10 s for its port file; sets mock_pid and P (the port).
start_mock() {
    _script=$1 _log=$2
    shift 2
    python3 "$MX_SRCDIR/tests/$_script" --port-file "$work/port" --log "$_log" "$@" &
    mock_pid=$!
    trap 'kill $mock_pid 2>/dev/null; cleanup' EXIT
    _i=0
    while [ ! -s "$work/port" ]; do
        _i=$((_i + 1)); [ $_i -gt 200 ] && fail "the mock server did not start"
        sleep 0.05
    done
    P=$(cat "$work/port")
}
