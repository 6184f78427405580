#!/bin/sh
# imatrix_quantize.sh - `mixel quantize --imatrix` from the command line: option errors exit
# 2; the types llama-quantize only makes with an imatrix (IQ2_XXS, IQ1_S, ...) are refused (exit
# 1) with that reason, with or without one; a bad or missing imatrix file exits 1 naming it and
# leaves no output. With ../shared: a deterministic imatrix (tests/golden/quant/make_imatrix.py,
# legacy .dat, one tensor family left out) gives exactly the tensors llama.cpp's
# llama_model_quantize writes with that imatrix (hashes below: tests/golden/quant/llama_quantize.c
# with the .dat as 4th argument; "noim": without; "full": an imatrix with every weight's entry)
# for 36 (model, type) pairs, MoE experts, fallbacks, IQ2_XXS, IQ2_XS, IQ3_S, IQ3_M, IQ2_S, IQ2_M,
# IQ1_S, IQ1_M, IQ3_XXS, IQ3_XS and Q2_K_S among them, five of them (IQ1_S, IQ2_M, IQ3_XXS, IQ3_XS,
# Q2_K_S) of a generated 8-layer dense model (make_tiny_mixtral.py, no experts: the low-bit mixes'
# attn_v, attn_output and first-ffn_down rules, IQ3_XS's middle-layer gate/up rule); an IQ2_XXS or
# IQ1_M tensor without an imatrix entry is
# refused, and a Q2_K one in a Q2_K_S file;
# the same importance in the GGUF imatrix format gives the same bytes; --exclude-weights changes
# them; the results (IQ2_XXS, IQ1_M, IQ2_M among them) load in `mixel logits` with finite logits.
# A case that cannot run (no python3; a shared model that is not the golden's file) is counted
# and the test ends as a SKIP (exit 77, refused in CI) instead of a PASS.
set -u
MIXEL=${MIXEL:-./mixel}
SRC=${MX_SRCDIR:-.}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mx_imq.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
skipped=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }

# option errors: exit 2
"$MIXEL" quantize a.gguf b.gguf Q4_K_M --imatrix >/dev/null 2>&1; [ $? -eq 2 ] &&
    ok "--imatrix without a file -> 2" || bad "--imatrix without a file"
"$MIXEL" quantize a.gguf b.gguf Q4_K_M --imatrix i.dat --include-weights a \
    --exclude-weights b >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'cannot be used together' "$tmp/err" && ok "include + exclude -> 2" ||
    bad "include + exclude ($rc)"
"$MIXEL" quantize a.gguf b.gguf Q4_K_M --exclude-weights b >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'need --imatrix' "$tmp/err" && ok "--exclude-weights alone -> 2" ||
    bad "--exclude-weights alone ($rc)"
"$MIXEL" quantize --help | grep -q -- '--imatrix FILE' && ok "help shows --imatrix" ||
    bad "help lacks --imatrix"

# imatrix-only types: refused with the reason
"$MIXEL" quantize a.gguf b.gguf IQ2_XXS >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'IQ2_XXS needs an importance matrix (--imatrix' "$tmp/err" &&
    ok "IQ2_XXS without an imatrix refused" || bad "IQ2_XXS ($rc: $(cat "$tmp/err"))"
"$MIXEL" quantize a.gguf b.gguf 24 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'IQ1_S needs an importance matrix' "$tmp/err" &&
    ok "IQ1_S by number refused" || bad "IQ1_S by number ($rc: $(cat "$tmp/err"))"
for t in iq1_m IQ2_S iq2_m iq3_xxs iq3_xs Q2_K_S; do
    "$MIXEL" quantize a.gguf b.gguf $t >/dev/null 2>"$tmp/err"; rc=$?
    T=$(echo $t | tr a-z A-Z)
    [ $rc -eq 1 ] && grep -q "$T needs an importance matrix" "$tmp/err" &&
        ok "$t without an imatrix refused" || bad "$t ($rc: $(cat "$tmp/err"))"
done

# bad imatrix files: exit 1 naming the file, no output
printf 'GGUF' >"$tmp/trunc.gguf"
printf '\001\000\000\000\005\000\000\000abc' >"$tmp/trunc.dat"
for f in absent.dat trunc.dat trunc.gguf; do
    "$MIXEL" quantize "$SRC/tests/golden/quant/inputs.bin" "$tmp/o.gguf" Q4_0 \
        --imatrix "$tmp/$f" >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "$f" "$tmp/err" && [ ! -e "$tmp/o.gguf" ] &&
        ok "bad imatrix $f -> 1: $(cat "$tmp/err")" || bad "bad imatrix $f ($rc: $(cat "$tmp/err"))"
done

if [ -z "${MX_SHARED:-}" ] || [ ! -d "$MX_SHARED/models" ]; then
    echo "SKIP: the conversions need ../shared (MX_SHARED); it is absent here"
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
if [ -z "$PY" ]; then
    echo "SKIP: the conversions need python3 (make_imatrix.py, hashes)"
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
M=$MX_SHARED/models
export MX_SHARED_TOOLS="$MX_SHARED/tools"
MKIM="$SRC/tests/golden/quant/make_imatrix.py"

# sha of the written tensors (name, type, bytes; in name order), as in tests/quantize.sh
cat >"$tmp/hash.py" <<'EOF2'
import sys, hashlib
sys.path.insert(0, sys.argv[1])
from gguf_writer import read_gguf
from ggml_quants import TYPE_IDS
BS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
      10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
      16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
      21: (256, 110), 22: (256, 82), 23: (256, 136), 29: (256, 56)}
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
hash() { "$PY" "$tmp/hash.py" "$MX_SHARED/tools" "$1"; }

# the dense model: 8 layers (llama.cpp's first-eighth ffn_down rule), 2 heads sharing 1 KV head
# (n_gqa 2), no experts; numpy's seeded generator makes the same file everywhere (else: skip)
DENSE=$tmp/dense8.gguf
"$PY" "$MX_SHARED/tools/make_tiny_mixtral.py" "$DENSE" --type F16 --dim 256 --layers 8 \
    --heads 2 --kv-heads 1 --experts 0 --ffn 256 --seed 16 >/dev/null 2>&1 || rm -f "$DENSE"

while read -r model ftype insha want how; do
    mfile=$M/$model.gguf
    [ "$model" = dense8 ] && mfile=$DENSE
    have=$(sha256sum "$mfile" 2>/dev/null | cut -c1-16)
    if [ "$have" != "$insha" ]; then
        skip "golden $model $ftype: the shared model is not the golden's file (sha256 $have...)"
        continue
    fi
    im="$tmp/$model.dat"
    leave_out=attn_output
    [ "$model" = dense8 ] && leave_out=attn_v   # dense: its attn_output takes IQ2_XXS
    if [ "$how" = full ]; then                   # every weight has its entry
        im="$tmp/$model-full.dat"
        leave_out=token_embd
    fi
    [ -e "$im" ] || "$PY" "$MKIM" "$mfile" "$im" $leave_out ||
        { bad "make_imatrix.py $model"; continue; }
    opt="--imatrix $im"
    [ "$how" = noim ] && opt=""    # IQ3_S / IQ3_M are made without an imatrix too
    # shellcheck disable=SC2086
    "$MIXEL" quantize -q "$mfile" "$tmp/g.gguf" "$ftype" $opt \
        >"$tmp/out" 2>"$tmp/err" || { bad "golden $model $ftype: $(cat "$tmp/err")"; continue; }
    got=$(hash "$tmp/g.gguf")
    [ "$got" = "$want" ] && ok "golden ${how:-with imatrix}: $model $ftype == llama.cpp" ||
        bad "golden $model $ftype ${how:-}: $got, llama.cpp $want"
    [ "$model" = tiny-mixtral-d256-q4_k ] && [ -z "$how" ] && cp "$tmp/g.gguf" "$tmp/$ftype.gguf"
done <<'EOF3'
tiny-mixtral-d256-q4_k Q4_0 6f656fea6465042f 9c9ec42f85e54d75383649bc28975c71
tiny-mixtral-d256-q4_k Q4_1 6f656fea6465042f 2312eba73381741c8430d42d4dfd9dec
tiny-mixtral-d256-q4_k Q5_0 6f656fea6465042f e42090a3674ad50f054a0a3747f2dcba
tiny-mixtral-d256-q4_k Q5_1 6f656fea6465042f 2f44e5303ede40347ed1a378455f1cea
tiny-mixtral-d256-q4_k Q2_K 6f656fea6465042f 05cd8d334ce9bf62271168f67d5b2be7
tiny-mixtral-d256-q4_k Q3_K_M 6f656fea6465042f 8f9028ed3e2bc9dc22e8494a74ed642f
tiny-mixtral-d256-q4_k Q4_K_M 6f656fea6465042f 8b8cd0c973dad704963618112713242b
tiny-mixtral-d256-q4_k Q5_K_M 6f656fea6465042f b84edb6c2dadf206f499059a0040722b
tiny-mixtral-d256-q4_k Q6_K 6f656fea6465042f 45df04796cd1a5bb1869f67c23c3d673
tiny-mixtral-d256-q4_k IQ4_NL 6f656fea6465042f 74f25e20a2e385c07c2fbaef5480398a
tiny-mixtral-d256-q4_k IQ4_XS 6f656fea6465042f 8d94040770b29980a0b8ba5791615176
tiny-mixtral-f32 Q4_K_M f2801cbd3380f937 d17e1633d25e243898b284a234318a4b
tiny-mixtral-f32 Q5_1 f2801cbd3380f937 9f4f08f15335b1c1258f62a60aba644d
stories260K-moe8 Q4_0 5eaa4c0c27506d77 5ee5eb63a54275adf4c1cdcce38125df
tiny-mixtral-d256-q4_k IQ2_XXS 6f656fea6465042f f58772f8c969b55bb3002d94c043fa49
tiny-mixtral-f32 IQ2_XXS f2801cbd3380f937 cd2168b436ddffbe7b31236179a23f9d
stories260K IQ2_XXS e7c5b4c1d79632fe 90c33ae9dd43c183d3ca8ee0dd690adf
tiny-mixtral-d256-q4_k IQ2_XS 6f656fea6465042f 43e9937629e9e146608cd2e59244cbe6
tiny-mixtral-f32 IQ2_XS f2801cbd3380f937 56af7b1ca55b6d8e96172f44987318ba
tiny-mixtral-d256-q4_k IQ3_S 6f656fea6465042f a27604fc1f747d2ebf6e70ca194e3871
tiny-mixtral-d256-q4_k IQ3_S 6f656fea6465042f a465d14ae50a50292a48d557fb667fa3 noim
tiny-mixtral-d256-q4_k IQ3_M 6f656fea6465042f febf2648d674b77bdf476530ab468745
tiny-mixtral-f32 IQ3_M f2801cbd3380f937 70c65e956b90235219deef2ca8f91d56
tiny-mixtral-f32 IQ3_M f2801cbd3380f937 97281685b74e565128e398a0addf3bcd noim
stories260K IQ3_S e7c5b4c1d79632fe c40fcf472814a53ceef18bfdb72a1cfd
tiny-mixtral-d256-q4_k IQ2_S 6f656fea6465042f f6dda96411eea9cf164fe8399d3d2865
tiny-mixtral-d256-q4_k IQ2_M 6f656fea6465042f 3140e3a28510eee1a3e175b5094a0bf7
tiny-mixtral-d256-q4_k IQ1_S 6f656fea6465042f d767ccd21f203762fa26c49f66195b51
tiny-mixtral-d256-q4_k IQ1_M 6f656fea6465042f ee2508056029529dc3bd2f70e9388bcd
dense8 IQ1_S ea2e0e038ecc29ea 07aeed03c978c034b0e0ea30f0c73d41
dense8 IQ2_M ea2e0e038ecc29ea a897f9fe0b05230315c7d35cfd0ba321
tiny-mixtral-d256-q4_k IQ3_XXS 6f656fea6465042f de58e6d3d5dc575869d067e6473acc0b
dense8 IQ3_XXS ea2e0e038ecc29ea e89398c39b8c106e1c9832aedb626920 full
dense8 Q2_K_S ea2e0e038ecc29ea 197446173d623d5055ff66d18dea8e53 full
tiny-mixtral-d256-q4_k IQ3_XS 6f656fea6465042f 246e4db74eb8cdc69f076c6482df5b70
dense8 IQ3_XS ea2e0e038ecc29ea 021363069a046f1880a1cd0ef43d8750
EOF3

# the GGUF imatrix format, same importance: same bytes; the summary counts weighted tensors
D256=tiny-mixtral-d256-q4_k
if [ -e "$tmp/$D256.dat" ]; then
    "$PY" "$MKIM" --gguf "$M/$D256.gguf" "$tmp/im.gguf" attn_output ||
        bad "make_imatrix.py --gguf"
    "$MIXEL" quantize "$M/$D256.gguf" "$tmp/gg.gguf" Q4_K_M --imatrix "$tmp/im.gguf" \
        >"$tmp/out" 2>"$tmp/err" || bad "GGUF imatrix: $(cat "$tmp/err")"
    [ "$(hash "$tmp/gg.gguf")" = 8b8cd0c973dad704963618112713242b ] &&
        ok "GGUF imatrix == legacy .dat == llama.cpp" || bad "GGUF imatrix bytes"
    grep -q 'GGUF format, 13 entries' "$tmp/out" &&
        grep -q 'importance weights: 6 tensors weighted, 2 without an entry' "$tmp/out" &&
        grep -q 'blk.1.ffn_down_exps.weight .*(imatrix)' "$tmp/out" && ok "summary lines" ||
        bad "summary: $(grep -i imatrix "$tmp/out")"
    "$MIXEL" quantize -q "$M/$D256.gguf" "$tmp/ex.gguf" Q4_K_M --imatrix "$tmp/im.gguf" \
        --exclude-weights ffn_down >"$tmp/out" 2>&1 &&
        grep -q 'importance weights: 5 tensors weighted, 3 without' "$tmp/out" &&
        [ "$(hash "$tmp/ex.gguf")" != 8b8cd0c973dad704963618112713242b ] &&
        ok "--exclude-weights ffn_down" || bad "--exclude-weights: $(tail -3 "$tmp/out")"
    "$PY" "$MKIM" "$M/$D256.gguf" "$tmp/noup.dat" ffn_up || bad "make_imatrix.py ffn_up"
    "$MIXEL" quantize -q "$M/$D256.gguf" "$tmp/x.gguf" IQ2_XXS --imatrix "$tmp/noup.dat" \
        >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "tensor 'blk.0.ffn_up_exps.weight': no importance matrix entry" \
        "$tmp/err" && [ ! -e "$tmp/x.gguf" ] && ok "IQ2_XXS tensor without an entry refused" ||
        bad "IQ2_XXS without an entry ($rc: $(cat "$tmp/err"))"
    "$MIXEL" quantize -q "$M/$D256.gguf" "$tmp/x.gguf" IQ1_M --imatrix "$tmp/noup.dat" \
        >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "tensor 'blk.0.ffn_up_exps.weight': no importance matrix entry" \
        "$tmp/err" && grep -q 'iq1_m cannot be quantized without one' "$tmp/err" &&
        [ ! -e "$tmp/x.gguf" ] && ok "IQ1_M tensor without an entry refused" ||
        bad "IQ1_M without an entry ($rc: $(cat "$tmp/err"))"
    "$MIXEL" quantize -q "$M/$D256.gguf" "$tmp/x.gguf" Q2_K_S --imatrix "$tmp/$D256.dat" \
        >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "tensor 'blk.0.attn_output.weight': no importance matrix entry" \
        "$tmp/err" && grep -q 'q2_K cannot be quantized without one' "$tmp/err" &&
        [ ! -e "$tmp/x.gguf" ] && ok "Q2_K_S: a Q2_K tensor without an entry refused" ||
        bad "Q2_K_S without an entry ($rc: $(cat "$tmp/err"))"
    "$MIXEL" quantize -q "$M/$D256.gguf" "$tmp/iq2.gguf" IQ2_XXS --imatrix "$tmp/im.gguf" \
        >/dev/null 2>"$tmp/err" || bad "IQ2_XXS: $(cat "$tmp/err")"
    for f in gg iq2 IQ1_M IQ2_M; do   # IQ1_M, IQ2_M: the golden conversions above
    "$MIXEL" logits -m "$tmp/$f.gguf" --ids 1,300,42,7,99 --all >"$tmp/l.json" 2>"$tmp/err" &&
        "$PY" -c '
import json, math, sys
rows = json.load(open(sys.argv[1]))["logits"]
assert len(rows) == 5 and all(math.isfinite(x) for r in rows for x in r)
assert max(abs(x) for r in rows for x in r) > 0
' "$tmp/l.json" && ok "the imatrix $f model loads, finite logits" ||
        bad "logits $f ($(tail -2 "$tmp/err"))"
    done
else
    skip "GGUF imatrix / logits: $D256 is not the golden's file"
fi
[ $fail -eq 0 ] || exit 1
if [ $skipped -gt 0 ]; then
    echo "SKIP: $skipped case(s) above could not run"
    exit 77
fi
exit 0
