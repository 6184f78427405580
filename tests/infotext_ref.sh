#!/bin/sh
# infotext_ref.sh - mx_sd_infotext_parse against AUTOMATIC1111's parse rules (restated in
# tests/infotext_ref.py with A1111's regex and json unquote) on random tricky text. Needs
# /usr/bin/python3 (standard library only); skips otherwise.
PY=/usr/bin/python3
if ! "$PY" -c 'import json, re' 2>/dev/null; then
    echo "SKIP: infotext_ref.sh needs $PY"
    exit 77
fi
exec "$PY" "$MX_SRCDIR/tests/infotext_ref.py" "$MX_BUILDDIR/tests/infotext_drv" 1 5000
