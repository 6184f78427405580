# sd_lora_lib.sh - shared by the LoRA tests of `mixel image` (tests/sd_lora.sh, sdxl_lora.sh):
# small images, picture comparisons and one-line refusals. Sourced, not run; the test sets
# MIXEL, bin (the built tests/ folder) and tmp, and reads $fails at its end.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
gen() { # gen OUT CKPT ARGS...: a 64x64 image, 2 euler_a steps unless ARGS say otherwise
    out=$1 model=$2
    shift 2
    "$MIXEL" image -q -t 2 -d "$model" -W 64 -H 64 --steps 2 --cfg 5 --seed 3 -o "$out" "$@" \
        > /dev/null
}
# close A B MAXMEAN MAXMAX WHAT: the pictures differ by at most these
close() {
    d=$("$bin/sd_png_diff" "$1" "$2") || { fail "$5: $d"; return; }
    echo "$5: $d"
    echo "$d" | awk -v m="$3" -v x="$4" '{ exit !($2 <= m && $4 <= x) }' || fail "$5: $d"
}
far() { # far A B WHAT: the pictures differ clearly (mean > 2)
    d=$("$bin/sd_png_diff" "$1" "$2") || { fail "$3: $d"; return; }
    echo "$3: $d"
    echo "$d" | awk '{ exit !($2 > 2) }' || fail "$3: the LoRA changed nothing ($d)"
}
expect_err() { # expect_err TEXT CKPT ARGS...: mixel image exits 1 with TEXT in one line
    text=$1 model=$2
    shift 2
    set +e
    gen "$tmp/x.png" "$model" "$@" 2> "$tmp/err"
    got=$?
    set -e
    if [ "$got" -ne 1 ] || ! grep -qF -- "$text" "$tmp/err" || [ "$(wc -l < "$tmp/err")" -ne 1 ]
    then
        fail "$*: exit $got, wanted 1 and '$text': $(cat "$tmp/err")"
    else
        echo "ok: $(cat "$tmp/err")"
    fi
}
