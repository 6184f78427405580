#!/usr/bin/python3
"""make_goldens.py - golden bytes for tests/test_quant.c (quantize -> bytes must be identical).

Writes, next to this script:
  inputs.bin    the float32 test rows: "MXQG", u32 version 1, u32 ncases, then per case
                u32 n and n float32 values (little endian)
  <type>.bin    for each type: the quantized bytes of every case whose n is a whole number of
                blocks of that type, concatenated in case order (the test applies the same rule)

F16, Q8_0, Q4_0, Q4_K and Q6_K come from ../shared/tools/ggml_quants.py (numpy, verified
byte-identical to ggml). With --ggml PATH/libggml-base.so (ggml's own reference quantizers, e.g.
from the npm package @node-llama-cpp/linux-x64@3.21.1, ggml 0.23.0) the script also checks those
five against ggml and writes goldens for BF16, Q4_1, Q5_0, Q5_1, Q8_1, Q2_K, Q3_K, Q5_K and Q8_K
from ggml's quantize_row_*_ref, and dq_<type>.bin for every block type ggml dequantizes: 4
random blocks (scales made finite halves) then ggml's dequantize_row_* floats for them. The test
skips a type whose golden file is absent.

Run with Debian's numpy:  /usr/bin/python3 make_goldens.py [--shared DIR] [--ggml LIB]
"""
import argparse
import ctypes
import os
import struct
import sys

import numpy as np

F32 = np.float32
HERE = os.path.dirname(os.path.abspath(__file__))

# (name, values): fixed seed; each case pokes at one corner of the quantizers.
def make_cases():
    rng = np.random.default_rng(20261126)
    g = lambda n: rng.standard_normal(n).astype(F32)
    cases = []
    cases.append(("gauss", (g(1280) * F32(0.02)).astype(F32)))            # typical weights
    cases.append(("uniform", rng.uniform(-1, 1, 768).astype(F32)))
    x = g(1024)
    idx = rng.choice(1024, 12, replace=False)
    x[idx] *= F32(100)                                                    # outliers
    cases.append(("outliers", x.astype(F32)))
    cases.append(("zeros", np.zeros(512, F32)))
    cases.append(("tiny_1e-6", (g(256) * F32(1e-6)).astype(F32)))         # fp16 subnormal d
    cases.append(("tiny_1e-20", (g(256) * F32(1e-20)).astype(F32)))       # below GROUP_MAX_EPS
    cases.append(("constant", np.full(256, 0.5, F32)))                   # max == min
    x = g(1024)
    for k in range(64):                                                   # per-group scales
        x[16 * k:16 * k + 16] *= F32(10.0 ** ((k % 13) / 2.0 - 3.0))
        if k % 9 == 4:
            x[16 * k:16 * k + 16] = 0
    cases.append(("mixed_groups", x.astype(F32)))
    cases.append(("ties", ((np.arange(256) % 17 - 8) * 0.5).astype(F32)))  # exact .5 multiples
    cases.append(("large", (g(256) * F32(1e4)).astype(F32)))
    cases.append(("positive", np.abs(g(512)).astype(F32) + F32(1)))      # min > 0
    cases.append(("odd_96", g(96)))                                       # 3 blocks of 32 only
    cases.append(("odd_160", g(160)))                                     # 5 blocks of 32 only
    return cases


NUMPY_TYPES = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_K": "Q4_K", "q6_K": "Q6_K"}
# name: (ggml type id, block size, block bytes, quantize_row_*_ref symbol)
GGML_TYPES = {
    "f16": (1, 1, 2, None), "bf16": (30, 1, 2, "ggml_fp32_to_bf16_row_ref"),
    "q4_0": (2, 32, 18, "quantize_row_q4_0_ref"), "q4_1": (3, 32, 20, "quantize_row_q4_1_ref"),
    "q5_0": (6, 32, 22, "quantize_row_q5_0_ref"), "q5_1": (7, 32, 24, "quantize_row_q5_1_ref"),
    "q8_0": (8, 32, 34, "quantize_row_q8_0_ref"), "q8_1": (9, 32, 36, "quantize_row_q8_1_ref"),
    "q2_K": (10, 256, 84, "quantize_row_q2_K_ref"),
    "q3_K": (11, 256, 110, "quantize_row_q3_K_ref"),
    "q4_K": (12, 256, 144, "quantize_row_q4_K_ref"),
    "q5_K": (13, 256, 176, "quantize_row_q5_K_ref"),
    "q6_K": (14, 256, 210, "quantize_row_q6_K_ref"), "q8_K": (15, 256, 292, "quantize_row_q8_K_ref"),
}


def ggml_quantize(lib, name, x):
    tid, bs, bb, sym = GGML_TYPES[name]
    out = ctypes.create_string_buffer(len(x) // bs * bb)   # zeroed: see Q8_K's bsums
    xp = np.ascontiguousarray(x, F32)
    if name == "f16":
        fn = lib.ggml_fp32_to_fp16_row
    else:
        fn = getattr(lib, sym)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    fn(xp.ctypes.data, out, len(x))
    return out.raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "../../../../shared"))
    ap.add_argument("--ggml", help="path to libggml-base.so (optional oracle)")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.shared, "tools"))
    import ggml_quants as gq

    cases = make_cases()
    with open(os.path.join(HERE, "inputs.bin"), "wb") as f:
        f.write(b"MXQG" + struct.pack("<II", 1, len(cases)))
        for _, x in cases:
            f.write(struct.pack("<I", len(x)) + x.astype("<f4").tobytes())

    lib = ctypes.CDLL(a.ggml) if a.ggml else None
    names = list(GGML_TYPES) if lib else list(NUMPY_TYPES)
    for name in names:
        bs = GGML_TYPES[name][1]
        blob = b""
        for cname, x in cases:
            if len(x) % bs:
                continue
            if name in NUMPY_TYPES:
                q = gq.quantize(x, NUMPY_TYPES[name])
                if lib and ggml_quantize(lib, name, x) != q:
                    sys.exit("numpy and ggml differ: %s on %s" % (name, cname))
            else:
                q = ggml_quantize(lib, name, x)
            blob += q
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(blob)
        print("%-5s %6d bytes%s" % (name, len(blob),
                                    " (numpy%s)" % (" = ggml" if lib else "")
                                    if name in NUMPY_TYPES else " (ggml)"))
    if lib:
        write_dequant_goldens(lib)


def random_blocks(rng, name, nb):
    """nb random blocks of a type whose fp16 fields (d, m, dmin) are finite, moderate halves."""
    tid, bs, bb, _ = GGML_TYPES[name]
    raw = bytearray(rng.integers(0, 256, nb * bb, dtype=np.uint8).tobytes())
    half_at = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
               "q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208]}
    for b in range(nb):
        if name == "q8_K":
            raw[b * bb:b * bb + 4] = struct.pack("<f", float(rng.uniform(-1, 1)))
            continue
        for off in half_at[name]:
            h = np.float16(rng.uniform(-2, 2) * 10.0 ** rng.integers(-4, 2)).view(np.uint16)
            raw[b * bb + off:b * bb + off + 2] = struct.pack("<H", int(h))
    return bytes(raw)


def write_dequant_goldens(lib):
    rng = np.random.default_rng(7)
    for name in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K",
                 "q6_K", "q8_K"]:
        tid, bs, bb, _ = GGML_TYPES[name]
        nb = 4
        raw = random_blocks(rng, name, nb)
        y = np.zeros(nb * bs, F32)
        fn = getattr(lib, "dequantize_row_" + name)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        fn(raw, y.ctypes.data, nb * bs)
        with open(os.path.join(HERE, "dq_%s.bin" % name), "wb") as f:
            f.write(raw + y.astype("<f4").tobytes())
        print("dq_%-5s %d blocks (ggml)" % (name, nb))


if __name__ == "__main__":
    main()
