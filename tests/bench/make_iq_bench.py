#!/usr/bin/python3
"""make_iq_bench.py - speed-only benchmark models (every IQ type, MXFP4, the K and legacy types)
with the shape and the F32 tensors of bench-moe-f16.gguf, for tests/bench/vs_llama.sh.

Quantizing the 1.8 B bench model with ggml's IQ2_XS search takes hours on this shared 2-core
machine, and speed does not depend on the values: the kernels have no data-dependent
branches. So each quantized tensor is random bytes (seed 16) with every block's fp16 scale set
to a fixed moderate value: valid blocks of the type, finite activations in both engines. The
norms and the router (ffn_gate_inp) are the source's F32 tensors, so the routing is the source
model's; output.weight is Q6_K (llama.cpp's usual output type, random the same way), every other
2-D/3-D weight (token_embd included) the type (MXFP4_MOE: experts MXFP4, the rest Q8_0). The
logits are meaningless; never use these files for accuracy.

usage: make_iq_bench.py SRC.gguf OUT.gguf TYPE  (IQ4_XS IQ4_NL IQ3_S IQ3_XXS IQ2_XS IQ2_XXS IQ2_S
       IQ1_S IQ1_M MXFP4 MXFP4_MOE Q2_K Q3_K Q4_1 Q5_0 Q5_1 Q8_0)
(numpy and ../shared/tools/gguf_writer.py; a few seconds)
"""
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../shared/tools"))
import ggml_quants  # noqa: E402
from gguf_writer import GGUFWriter, read_gguf  # noqa: E402

# name: ggml type id, llama ftype, values per block, bytes per block, fp16 scale offset (None:
# IQ1_M's scale in the top nibbles of its 4 scale words at 48; "e8m0": MXFP4's exponent byte at
# 0), scale (ggml.h's ggml_type, llama.h's llama_ftype)
TYPES = {"IQ4_XS": (23, 30, 256, 136, 0, 1e-5), "IQ4_NL": (20, 25, 32, 18, 0, 1e-3),
         "IQ3_S": (21, 26, 256, 110, 0, 1e-3), "IQ2_XS": (17, 20, 256, 74, 0, 2e-3),
         "IQ3_XXS": (18, 23, 256, 98, 0, 1e-3), "IQ2_XXS": (16, 19, 256, 66, 0, 2e-3),
         "IQ2_S": (22, 28, 256, 82, 0, 2e-3), "IQ1_S": (19, 24, 256, 50, 0, 2e-3),
         "IQ1_M": (29, 31, 256, 56, None, 2e-3), "MXFP4": (39, 38, 32, 17, "e8m0", 2.0 ** -10),
         "Q6_K": (14, None, 256, 210, 208, 1e-5), "Q8_0": (8, 7, 32, 34, 0, 1e-3),
         # the K and legacy types of the SIMD work, one type throughout (no llama-quantize mix);
         # a tuple: both fp16 fields (the scale and dmin / m) set
         "Q2_K": (10, 10, 256, 84, (80, 82), 1e-4), "Q3_K": (11, 11, 256, 110, 108, 1e-4),
         "Q4_1": (3, 3, 32, 20, (0, 2), 1e-3), "Q5_0": (6, 8, 32, 22, 0, 1e-3),
         "Q5_1": (7, 9, 32, 24, (0, 2), 1e-3)}
# gpt-oss's mix (llama.cpp's MXFP4_MOE file type): the expert tensors MXFP4, other matrices Q8_0
MIXES = {"MXFP4_MOE": ("MXFP4", "Q8_0", 38)}


def random_blocks(rng, qt, n):
    tid, _, bs, bb, off, d = TYPES[qt]
    nb = n // bs
    raw = rng.integers(0, 256, nb * bb, dtype=np.uint8).reshape(nb, bb)
    if off == "e8m0":  # 2^(e - 127) = d
        raw[:, 0] = 127 + int(round(np.log2(d)))
    elif off is None:  # IQ1_M: fp16 bits k*4..k*4+3 in the top nibble of scale word k
        hb = int(np.frombuffer(np.float16(d).tobytes(), dtype="<u2")[0])
        for k in range(4):
            raw[:, 48 + 2 * k + 1] = (raw[:, 48 + 2 * k + 1] & 0x0f) | (((hb >> (4 * k)) & 15) << 4)
    else:
        h = np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)
        for o in off if isinstance(off, tuple) else (off,):
            raw[:, o:o + 2] = h
    return raw.tobytes()


def main():
    src, out, qname = sys.argv[1:4]
    exps_t, other_t, ftype = MIXES.get(qname, (qname, qname, TYPES[qname][1]))
    rng = np.random.default_rng(16)
    for name, t in TYPES.items():
        ggml_quants.TYPE_IDS.setdefault(name, t[0])
    kv, tensors = read_gguf(src)
    raw = np.memmap(src, dtype=np.uint8, mode="r")
    g = GGUFWriter()
    for k, v in kv.items():
        if k == "GGUF.version":
            continue
        if k == "general.file_type":
            g.add(k, ftype, "u32")
        elif k == "general.name":
            g.add(k, "bench-moe-%s-random" % qname.lower())
        elif isinstance(v, list):
            g.add(k, v, "arr", "str" if v and isinstance(v[0], str) else
                  "i32" if v and isinstance(v[0], int) else "f32")
        elif isinstance(v, float):
            g.add(k, v, "f32")
        else:
            g.add(k, v)
    for name, t in tensors.items():
        ne = t["ne"]
        if len([d for d in ne if d > 1]) < 2 or "norm" in name or "ffn_gate_inp" in name:
            g.add_raw_tensor(name, ne, t["type"], bytes(raw[t["offset"]:t["offset"] + t["nbytes"]]))
            continue
        qt = "Q6_K" if name == "output.weight" else exps_t if "_exps" in name else other_t
        n = 1
        for d in ne:
            n *= d
        g.add_raw_tensor(name, ne, qt, random_blocks(rng, qt, n))
    g.write(out)
    print("wrote %s (%d bytes)" % (out, os.path.getsize(out)))


if __name__ == "__main__":
    main()
