#!/bin/sh
# quantize.sh - `mixel quantize` from the command line: usage errors exit 2, bad input / same
# path / unwritable output exit 1 with a message and leave no output, the per-tensor lines and
# the summary are printed; with ../shared, stories260K (F32, dim 64: every weight on a fallback
# type) and tiny-mixtral-d256-q4_k (requantized K-quants, 8 experts) are converted, their types
# checked, the results load in `mixel run` / `mixel logits` with finite logits, and the
# conversions below (IQ4_NL / IQ4_XS, MXFP4_MOE with its F16 fallback for 172-long expert rows
# among them) give exactly the tensors llama.cpp's llama_model_quantize wrote (hashes below).
# A case that cannot run (no python3; a shared model that is not the golden's file) is counted
# and the test ends as a SKIP (exit 77, refused in CI) instead of a PASS.
set -u
MIXEL=${MIXEL:-./mixel}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mx_quantize.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
skipped=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }

# usage errors: exit 2
"$MIXEL" quantize >/dev/null 2>&1; [ $? -eq 2 ] && ok "no args -> 2" || bad "no args"
"$MIXEL" quantize a.gguf b.gguf >/dev/null 2>&1; [ $? -eq 2 ] && ok "two args -> 2" || bad "2 args"
"$MIXEL" quantize --bogus a b Q4_0 >/dev/null 2>&1; [ $? -eq 2 ] && ok "bad option" || bad "opt"
"$MIXEL" quantize a.gguf b.gguf Q9_X 2>"$tmp/err" >/dev/null; rc=$?
[ $rc -eq 2 ] && grep -q "unknown type 'Q9_X'" "$tmp/err" && grep -q Q4_K_M "$tmp/err" &&
    ok "unknown type -> 2 with the list" || bad "unknown type ($rc: $(cat "$tmp/err"))"
"$MIXEL" quantize a.gguf b.gguf Q4_0 -t 0 >/dev/null 2>&1; [ $? -eq 2 ] && ok "-t 0" || bad "-t 0"
"$MIXEL" quantize a.gguf b.gguf Q4_0 x >/dev/null 2>&1; [ $? -eq 2 ] && ok "bad nthreads" ||
    bad "bad nthreads"
"$MIXEL" quantize --help | grep -q 'Q4_K_M' && ok "help lists types" || bad "help"

# runtime errors: exit 1, a message naming the file, no output left behind
"$MIXEL" quantize "$tmp/absent.gguf" "$tmp/o.gguf" Q4_K_M >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q absent.gguf "$tmp/err" && ok "missing input" || bad "missing ($rc)"
printf 'not a model at all\n' >"$tmp/readme.txt"
"$MIXEL" quantize "$tmp/readme.txt" "$tmp/o.gguf" q4_k_m >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'not a GGUF file' "$tmp/err" && ok "foreign input" ||
    bad "foreign input ($rc: $(cat "$tmp/err"))"
[ -e "$tmp/o.gguf" ] && bad "output left after failures"

if [ -z "${MX_SHARED:-}" ] || [ ! -d "$MX_SHARED/models" ]; then
    echo "SKIP: the model conversions need ../shared (MX_SHARED); it is absent here"
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
M=$MX_SHARED/models
cp "$M/stories260K.gguf" "$tmp/in.gguf"
sum0=$(cksum <"$tmp/in.gguf")
"$MIXEL" quantize "$tmp/in.gguf" "$tmp/in.gguf" Q4_0 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'output is the input' "$tmp/err" && ok "same path refused" ||
    bad "same path ($rc)"
"$MIXEL" quantize "$tmp/in.gguf" "$tmp/./in.gguf" Q4_0 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'output is the input' "$tmp/err" && ok "same file, other spelling" ||
    bad "same file other spelling ($rc)"
[ "$(cksum <"$tmp/in.gguf")" = "$sum0" ] && ok "input untouched" || bad "input changed"
"$MIXEL" quantize "$tmp/in.gguf" "$tmp/no/dir/o.gguf" Q4_0 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'cannot create the output file' "$tmp/err" && ok "unwritable output" ||
    bad "unwritable ($rc: $(cat "$tmp/err"))"

# stories260K: dim 64, FFN 172 -> Q4_K rows fall back to Q5_0, ffn_down (172) to F16, output
# (Q6_K wanted, 64 not a multiple of 256) to Q8_0; use_more_bits attn_v of 5 layers (2, 4) Q8_0.
"$MIXEL" quantize "$tmp/in.gguf" "$tmp/s-q4km.gguf" q4_k_m -t 3 >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 0 ] && ok "stories260K -> Q4_K_M" || bad "stories260K ($rc: $(tail -3 "$tmp/out"))"
grep -q 'blk.0.attn_q.weight  *f32   -> q5_0' "$tmp/out" && ok "per-tensor line" ||
    bad "per-tensor line: $(sed -n 3p "$tmp/out")"
grep -q '^quant size:' "$tmp/out" && grep -q 'converted' "$tmp/out" && ok "summary" ||
    bad "summary"
"$MIXEL" quantize "$tmp/in.gguf" "$tmp/s-q8.gguf" Q8_0 2 -q >"$tmp/out8" 2>&1 &&
    ! grep -q 'blk.0' "$tmp/out8" && ok "stories260K -> Q8_0 (quiet, trailing nthreads)" ||
    bad "Q8_0 quiet"
"$MIXEL" quantize "$M/tiny-mixtral-d256-q4_k.gguf" "$tmp/t-q4km.gguf" Q4_K_M >"$tmp/outt" 2>&1 &&
    ok "tiny-mixtral-d256-q4_k -> Q4_K_M" || bad "tiny-mixtral ($(tail -3 "$tmp/outt"))"

if [ -n "$PY" ]; then
    "$PY" - "$MX_SHARED/tools" "$tmp" <<'EOF' && ok "types and metadata" || bad "types"
import sys
sys.path.insert(0, sys.argv[1])
from gguf_writer import read_gguf
from ggml_quants import TYPE_IDS
d = sys.argv[2]
kv_in, t_in = read_gguf(d + "/in.gguf")
kv, ts = read_gguf(d + "/s-q4km.gguf")
def types(ts):
    # type ids: read_gguf names the types it knows and gives the others' ids as strings
    return {k: TYPE_IDS[v["type"]] if v["type"] in TYPE_IDS else int(v["type"])
            for k, v in ts.items()}
ty = types(ts)
Q8_0, Q5_0, F16, F32, Q6_K, Q4_K, Q5_K = 8, 6, 1, 0, 14, 12, 13
want = {"output.weight": Q8_0, "output_norm.weight": F32, "token_embd.weight": Q5_0}
for il in range(5):
    b = "blk.%d." % il
    want[b + "attn_norm.weight"] = F32
    want[b + "ffn_norm.weight"] = F32
    want[b + "ffn_down.weight"] = F16
    for k in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        want[b + k + ".weight"] = Q5_0
    want[b + "attn_v.weight"] = Q8_0 if il in (2, 4) else Q5_0
bad = [(k, ty.get(k), v) for k, v in want.items() if ty.get(k) != v]
assert not bad and len(ty) == len(want), bad
assert kv["general.file_type"] == 15 and kv["general.quantization_version"] == 2
for k, v in kv_in.items():
    assert k in ("general.file_type", "GGUF.version") or kv[k] == v, k
kv, ts = read_gguf(d + "/t-q4km.gguf")
ty = types(ts)
for k, v in ty.items():
    exp = (F32 if k.endswith("norm.weight") or "ffn_gate_inp" in k else
           Q6_K if k == "output.weight" or k == "blk.1.ffn_down_exps.weight" else
           Q8_0 if "attn_k." in k or "attn_v." in k else
           Q5_K if "attn_output" in k else Q4_K)
    assert v == exp, (k, v, exp)
EOF
else
    skip "types and metadata: no python3"
fi

# llama.cpp golden: the tensors (name, type, bytes; in name order) of llama_model_quantize's
# output (node-llama-cpp 3.21.1's libllama, no imatrix; tests/golden/quant/llama_quantize.c
# calls it) hashed; mixel's output must hash the same.
# A case is skipped (and counted) when the shared model is not the file the golden was made from.
if [ -z "$PY" ]; then
    skip "llama.cpp goldens: no python3"
else
    while read -r model ftype insha want; do
        have=$(sha256sum "$M/$model.gguf" 2>/dev/null | cut -c1-16)
        if [ "$have" != "$insha" ]; then
            skip "golden $model $ftype: the shared model is not the golden's file (sha256 $have...)"
            continue
        fi
        "$MIXEL" quantize -q "$M/$model.gguf" "$tmp/g.gguf" "$ftype" >/dev/null 2>"$tmp/err" ||
            { bad "golden $model $ftype: $(cat "$tmp/err")"; continue; }
        got=$("$PY" - "$MX_SHARED/tools" "$tmp/g.gguf" <<'EOF2'
import sys, hashlib
sys.path.insert(0, sys.argv[1])
from gguf_writer import read_gguf
from ggml_quants import TYPE_IDS
BS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
      10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
      20: (32, 18), 23: (256, 136), 39: (32, 17)}
kv, ts = read_gguf(sys.argv[2])
data = open(sys.argv[2], "rb").read()
h = hashlib.sha256()
for k in sorted(ts):
    v = ts[k]
    t = TYPE_IDS[v["type"]] if v["type"] in TYPE_IDS else int(v["type"])
    n = 1
    for x in v["ne"]:
        n *= x
    nb = n // BS[t][0] * BS[t][1]
    h.update(k.encode() + b"\0" + str(t).encode() + b"\0" + data[v["offset"]:v["offset"] + nb])
print(h.hexdigest()[:32])
EOF2
)
        [ "$got" = "$want" ] && ok "golden: $model $ftype == llama.cpp" ||
            bad "golden $model $ftype: $got, llama.cpp $want"
    done <<'EOF3'
stories260K Q4_K_M e7c5b4c1d79632fe 310291dbdaaff81751dd80abe994bbd1
stories260K Q4_0 e7c5b4c1d79632fe 68bd812458aa16bebcc782a5840f35a3
tiny-mixtral-f32 Q4_K_M f2801cbd3380f937 076332b71f4b528131a487d2696059dd
tiny-mixtral-d256-q4_k Q4_K_M 6f656fea6465042f 8c19076b2e363cc4337cec55fcace023
tiny-mixtral-d256-q6_k Q5_K_M cda625cd6b1e162a f816869b5253616df842e6005b219dd4
tiny-mixtral-q8_0 F16 0f817f4c0e8094c1 73138beb4e041d52a5960e9da0a53d45
tiny-mixtral-d256-q4_k IQ4_NL 6f656fea6465042f 002f65240248d2895a4f8cd99445626c
tiny-mixtral-d256-q4_k IQ4_XS 6f656fea6465042f 4d59943d1e6348ba0f2813de50333658
tiny-mixtral-f32 IQ4_NL f2801cbd3380f937 afc6a176341d40f5c884c67436e91460
tiny-mixtral-f32 IQ4_XS f2801cbd3380f937 add9159de93eb4ac3ff5a393ffa44a7b
tiny-mixtral-d256-q4_k Q2_K 6f656fea6465042f 55668bd706f17d89c68fef2ea53c3fdf
tiny-mixtral-d256-q4_k Q3_K_S 6f656fea6465042f 9ad53ec53f7380c5a9a9618957f72973
tiny-mixtral-d256-q4_k Q3_K_M 6f656fea6465042f 8b27aa00c0e3477e759c01f69b90c2d2
tiny-mixtral-d256-q4_k Q3_K_L 6f656fea6465042f ce9d0704cfdcc47b481a0ab3d01e6011
tiny-mixtral-f32 Q3_K_M f2801cbd3380f937 3c9eb7af9a2e6b46f74b379bd78381fb
stories260K Q3_K_L e7c5b4c1d79632fe abc63774283e574524e4facf0b78792d
stories260K Q3_K_M e7c5b4c1d79632fe 6e31cfac29b860a2692b7590b19ee712
tiny-mixtral-d256-q4_k MXFP4_MOE 6f656fea6465042f 61f93d03ffaecf1a80e1142983282ecf
stories260K-moe8 MXFP4_MOE 5eaa4c0c27506d77 c7199d8eb44737872cb7410bc52ba2ef
EOF3
fi

# the results load and run
"$MIXEL" run -m "$tmp/s-q4km.gguf" -p "Once upon a time" -n 16 --seed 1 >"$tmp/run" 2>"$tmp/err" &&
    [ -s "$tmp/run" ] && ok "mixel run loads the Q4_K_M stories260K" ||
    bad "run ($(tail -2 "$tmp/err"))"
for f in s-q4km s-q8 t-q4km; do
    "$MIXEL" logits -m "$tmp/$f.gguf" --ids 1,300,42,7,99 --all >"$tmp/$f.json" 2>"$tmp/err" ||
        { bad "logits $f ($(tail -2 "$tmp/err"))"; continue; }
    if [ -z "$PY" ]; then
        skip "logits $f finite: no python3"
    else
        "$PY" -c '
import json, math, sys
j = json.load(open(sys.argv[1]))
rows = j["logits"]
assert len(rows) == 5 and all(math.isfinite(x) for r in rows for x in r)
assert max(abs(x) for r in rows for x in r) > 0
' "$tmp/$f.json" && ok "logits $f finite" || bad "logits $f"
    fi
done
[ $fail -eq 0 ] || exit 1
if [ $skipped -gt 0 ]; then
    echo "SKIP: $skipped case(s) above could not run"
    exit 77
fi
exit 0
