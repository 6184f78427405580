#!/bin/sh
# layers.sh - the house rules of ../shared/DESIGN.md, read from the #include lines: each folder
# includes only the layers below it. Fails naming file, line and the broken arrow.
#
#   cli -> tui, net, app;  tui -> app, history;  net -> app;  app -> history, core, kernels;
#   history -> core/base;  core -> kernels;  kernels -> core/base only.
#
# Arrows are transitive (cli may use what app uses), core/base is the ground floor every folder
# may include, and above kernels/ only its public headers (kernels/*.h: backend, devices,
# devinfo) may be included: kernels/cpu/ and kernels/cuda/ are private to kernels/. config.h
# (generated) is allowed everywhere. tests/ is not checked: tests may reach into any layer.
#
# Before checking the tree, the checker is run on a small planted tree that breaks each kind of
# rule, and must fail there with the planted file and line: a checker that passes everything
# fails this test.
set -u
src=${MX_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}

# layer_of PATH: the layer a source path belongs to ("" for a path outside the layered folders).
# Written as an awk function below; this table is its single source.
check_tree() {
    root=$1
    find "$root/core" "$root/kernels" "$root/history" "$root/app" "$root/cli" "$root/tui" \
        "$root/net" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) 2>/dev/null |
        sort | while read -r f; do
            rel=${f#"$root"/}
            grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
                sed "s|^|$rel:|"
        done |
        awk -F: '
        function layer(p) {
            if (p ~ /^core\/base\//) return "base"
            if (p ~ /^core\//) return "core"
            if (p ~ /^kernels\//) return "kernels"
            if (p ~ /^history\//) return "history"
            if (p ~ /^app\//) return "app"
            if (p ~ /^tui\//) return "tui"
            if (p ~ /^net\//) return "net"
            if (p ~ /^cli\//) return "cli"
            return ""
        }
        BEGIN {
            # allowed[from] = the layers "from" may include (transitive closure of the arrows)
            allowed["base"] = " base "
            allowed["kernels"] = " kernels base "
            allowed["core"] = " core kernels base "
            allowed["history"] = " history base "
            allowed["app"] = " app history core kernels base "
            allowed["tui"] = " tui app history core kernels base "
            allowed["net"] = " net app history core kernels base "
            allowed["cli"] = " cli tui net app history core kernels base "
            bad = 0
        }
        {
            file = $1; line = $2
            text = $0; sub(/^[^:]*:[^:]*:/, "", text)
            inc = text; sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
            if (inc == "config.h") next
            from = layer(file); to = layer(inc)
            if (from == "") next
            if (to == "") {
                printf "%s:%s: includes \"%s\", which is in no layer\n", file, line, inc
                bad = 1; next
            }
            if (index(allowed[from], " " to " ") == 0) {
                printf "%s:%s: %s may not include %s (\"%s\"): see DESIGN.md layers\n", \
                    file, line, from, to, inc
                bad = 1; next
            }
            if (from != "kernels" && to == "kernels" && inc ~ /^kernels\/.*\//) {
                printf "%s:%s: \"%s\" is private to kernels/; use kernels/*.h\n", file, line, inc
                bad = 1
            }
        }
        END { exit bad }'
}

# ---- the checker must catch planted breaks ---------------------------------------------------
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
plant() { # plant DIR FILE INCLUDE: a tree whose only source is FILE including INCLUDE
    mkdir -p "$1/$(dirname "$2")"
    printf '#include <stdio.h>\n\n#include "%s"\n' "$3" >"$1/$2"
}
n=0
for case in \
    'kernels/cpu/matmul.c core/llm/llama.h' \
    'core/llm/llama.c history/db.h' \
    'history/db.c tui/theme.h' \
    'history/db.c kernels/backend.h' \
    'app/engine_llm.c tui/app.h' \
    'app/engine_llm.c kernels/cpu/cpu.h' \
    'core/base/util.c core/format/gguf.h' \
    'tui/app.c cli/cmd.h' \
    'tui/app.c nowhere/x.h'; do
    n=$((n + 1))
    set -- $case
    plant "$tmp/t$n" "$1" "$2"
    out=$(check_tree "$tmp/t$n") && {
        echo "FAIL: the checker let $1 include \"$2\" through"
        exit 1
    }
    case "$out" in
        "$1:3: "*) ;;
        *) echo "FAIL: planted $1 -> $2 reported as: $out"; exit 1 ;;
    esac
done
plant "$tmp/ok" cli/cmd_x.c core/base/err.h
plant "$tmp/ok" tui/x.c kernels/devices.h
check_tree "$tmp/ok" >/dev/null || { echo "FAIL: the checker refused allowed includes"; exit 1; }
echo "layers: the checker catches $n planted breaks"

# ---- the tree ------------------------------------------------------------------------------------
if ! check_tree "$src"; then
    echo "FAIL: includes break the layers (see above)"
    exit 1
fi
echo "layers: every #include follows the arrows"
