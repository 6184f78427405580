#!/bin/sh
# sd_cli.sh - `mixel image` as a user meets it: bad input gets one clear line and a non-zero
# exit (never a crash); the PNG carries an A1111 "parameters" chunk that a reader written to
# A1111's rules (parse_generation_parameters) parses back to the settings used; --from-png
# regenerates the same pixels; --batch N writes N images with seeds S, S+1, ...
set -eu
: "${MIXEL:?}" "${MX_SRCDIR:?}"
ckpt=$("$MX_SRCDIR/tests/sd_ckpt.sh") || exit $?
diff_tool=${MX_BUILDDIR:-.}/tests/sd_png_diff
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" # the model-hash cache
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_err STATUS TEXT ARGS...: mixel image ARGS exits STATUS with TEXT in its one-line message
expect_err() {
    want=$1 text=$2
    shift 2
    set +e
    "$MIXEL" image -q "$@" > "$tmp/out" 2> "$tmp/err"
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        fail "image $*: exit $got, expected $want ($(cat "$tmp/err"))"
    elif ! grep -qF -- "$text" "$tmp/err"; then
        fail "image $*: message lacks '$text': $(cat "$tmp/err")"
    elif [ "$(wc -l < "$tmp/err")" -ne 1 ]; then
        fail "image $*: more than one line: $(cat "$tmp/err")"
    else
        echo "ok: $text"
    fi
}
small="-W 64 -H 64 --steps 1 -o $tmp/x.png"
expect_err 2 "no checkpoint" -p cat
expect_err 2 "no prompt" -d "$ckpt"
expect_err 1 "No such file" -d "$tmp/none.safetensors" -p cat
printf 'not a model' > "$tmp/junk.safetensors"
expect_err 1 "junk.safetensors" -d "$tmp/junk.safetensors" -p cat
expect_err 2 "multiples of 8" -d "$ckpt" -p cat -W 70 -H 64 --steps 1 -o "$tmp/x.png"
expect_err 2 "multiples of 64" -d "$ckpt" -p cat -W 72 -H 64 --steps 1 -o "$tmp/x.png"
expect_err 2 "'999999' is not a whole number" -d "$ckpt" -p cat -W 999999 -o "$tmp/x.png"
expect_err 2 "--steps" -d "$ckpt" -p cat --steps 0 -o "$tmp/x.png"
expect_err 2 "--sampler" -d "$ckpt" -p cat --sampler bogus $small
expect_err 2 "--rng" -d "$ckpt" -p cat --rng bogus $small
expect_err 2 "--cfg" -d "$ckpt" -p cat --cfg abc $small
expect_err 2 "--strength needs --init-img" -d "$ckpt" -p cat --strength 0.5 $small
expect_err 1 "--init-img" -d "$ckpt" -p cat --init-img "$tmp/missing.png" $small
printf 'PNG?' > "$tmp/bad.png"
expect_err 1 "--init-img" -d "$ckpt" -p cat --init-img "$tmp/bad.png" $small
init=${MX_SHARED:-$MX_SRCDIR/../shared}/refs/sd/inputs/init_64.png
if [ -f "$init" ]; then
    "$MIXEL" image -q -d "$ckpt" -p "a grey square" -W 128 -H 128 --steps 1 --seed 1 \
        -o "$tmp/big.png" > /dev/null
    expect_err 2 "same size" -d "$ckpt" -p cat --init-img "$init" --mask "$tmp/big.png" $small
fi
expect_err 1 "2400 tokens" -d "$ckpt" -p "$(awk 'BEGIN { for (i = 0; i < 2000; i++) printf "cat, " }')" $small

# the parameters chunk, read back by a reader of A1111's format
neg='ugly, (bad:1.2)'
"$MIXEL" image -q -t 2 -d "$ckpt" -p 'a (red:1.2) fox' -n "$neg" -W 64 -H 64 --steps 2 \
    --cfg 6.5 --sampler "DPM++ 2M Karras" --seed 7 --clip-skip 2 -o "$tmp/a.png" > "$tmp/a.out"
grep -qx "$tmp/a.png" "$tmp/a.out" || fail "stdout does not name the written file"
want_hash=$(sha256sum "$ckpt" | cut -c1-10)
/usr/bin/python3 - "$tmp/a.png" "$want_hash" "$neg" <<'PY' || fail "parameters chunk"
import re, struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, text = 8, None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"tEXt" and body.startswith(b"parameters\0"):
        text = body[len(b"parameters\0"):].decode("latin-1")
    pos += 12 + n
assert text is not None, "no tEXt parameters chunk"
# A1111 modules/infotext_utils.py parse_generation_parameters: the last line holds the
# key: value pairs; "Negative prompt:" starts the negative prompt; the rest is the prompt.
re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
*lines, last = text.strip().split("\n")
assert len(re_param.findall(last)) >= 3, last
prompt, negative, done_with_prompt = "", "", False
for line in lines:
    line = line.strip()
    if line.startswith("Negative prompt:"):
        done_with_prompt = True
        line = line[16:].strip()
    if done_with_prompt:
        negative += ("" if negative == "" else "\n") + line
    else:
        prompt += ("" if prompt == "" else "\n") + line
res = {}
for k, v in re_param.findall(last):
    if v[:1] == '"' and v[-1:] == '"':
        v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    res[k] = v
want = {"Steps": "2", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "6.5",
        "Seed": "7", "Size": "64x64", "Model hash": sys.argv[2], "Model": "sd15_random_s1",
        "Clip skip": "2"}
for k, v in want.items():
    assert res.get(k) == v, f"{k}: {res.get(k)!r} != {v!r} in {last!r}"
assert prompt == "a (red:1.2) fox", prompt
assert negative == sys.argv[3], negative
print("ok: parameters chunk:", last)
PY

# --from-png: the same settings, the same pixels
"$MIXEL" image -q -t 2 -d "$ckpt" --from-png "$tmp/a.png" -o "$tmp/b.png" > /dev/null
stats=$("$diff_tool" "$tmp/a.png" "$tmp/b.png")
case $stats in "mean 0.0000 max 0 "*) echo "ok: --from-png: $stats" ;; *) fail "--from-png differs: $stats" ;; esac

# --batch 2: seeds 7 and 8; the second equals a single run with seed 8
"$MIXEL" image -q -t 2 -d "$ckpt" -p fox -W 64 -H 64 --steps 1 --seed 7 --batch 2 \
    -o "$tmp/c.png" > "$tmp/c.out"
[ "$(wc -l < "$tmp/c.out")" -eq 2 ] && [ -f "$tmp/c_2.png" ] || fail "--batch 2 wrote: $(cat "$tmp/c.out")"
"$MIXEL" image -q -t 2 -d "$ckpt" -p fox -W 64 -H 64 --steps 1 --seed 8 -o "$tmp/d.png" > /dev/null
stats=$("$diff_tool" "$tmp/c_2.png" "$tmp/d.png")
case $stats in "mean 0.0000 max 0 "*) echo "ok: --batch seed+1" ;; *) fail "--batch image 2 is not seed 8: $stats" ;; esac
stats=$("$diff_tool" "$tmp/c.png" "$tmp/d.png")
case $stats in "mean 0.0000 max 0 "*) fail "--batch images 1 and 2 are equal" ;; *) echo "ok: --batch images differ" ;; esac
# -d NAME: a checkpoint in A1111's folder, named as A1111 users do (no extension)
fake=$tmp/home
mkdir -p "$fake/stable-diffusion-webui/models/Stable-diffusion"
ln -s "$ckpt" "$fake/stable-diffusion-webui/models/Stable-diffusion/my-model.safetensors"
data=${XDG_DATA_HOME:-$HOME/.local/share} # the installed CLIP vocabulary stays where it is
(cd "$tmp" && HOME=$fake XDG_DATA_HOME=$data "$MIXEL" image -q -t 2 -d my-model -p fox -W 64 \
    -H 64 --steps 1 --seed 8 -o "$tmp/e.png" > /dev/null) || fail "-d my-model not found"
stats=$("$diff_tool" "$tmp/e.png" "$tmp/d.png")
case $stats in "mean 0.0000 max 0 "*) echo "ok: -d NAME" ;; *) fail "-d NAME gave another image: $stats" ;; esac
[ "$fails" -eq 0 ]
