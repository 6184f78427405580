#!/bin/sh
# tok_split_regex.sh - the BPE/CLIP pre-tokenizer splitters against the real regexes, on random
# tricky strings (tests/tok_split_regex.py). Needs /usr/bin/python3 with the `regex` module
# (Debian: python3-regex); skips otherwise.
PY=/usr/bin/python3
if ! "$PY" -c 'import regex' 2>/dev/null; then
    echo "SKIP: tok_split_regex.sh needs $PY with the regex module (apt-get install python3-regex)"
    exit 77
fi
exec "$PY" "$MX_SRCDIR/tests/tok_split_regex.py" "$MX_BUILDDIR/tests/tok_split_drv" 1 2000
