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
    "mxfp4": (39, 32, 17, "quantize_row_mxfp4_ref"),
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
        write_iq_goldens(lib, cases)
        write_weighted_goldens(lib, cases)


def random_blocks(rng, name, nb):
    """nb random blocks of a type whose fp16 fields (d, m, dmin) are finite, moderate halves."""
    tid, bs, bb, _ = GGML_TYPES[name]
    raw = bytearray(rng.integers(0, 256, nb * bb, dtype=np.uint8).tobytes())
    half_at = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
               "q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208]}
    for b in range(nb):
        if name == "mxfp4":   # E8M0 exponent byte: 2^-28..2^12 keeps 12 * d finite
            raw[b * bb] = int(rng.integers(100, 140))
            continue
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
                 "q6_K", "q8_K", "mxfp4"]:
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


# IQ types: (ggml id, block bytes, fp16 offsets, grid entries, indices per block)
IQ_TYPES = {
    "iq2_xxs": (16, 66, [0], 256, 32), "iq2_xs": (17, 74, [0], 512, 32),
    "iq2_s": (22, 82, [0], 1024, 32), "iq3_xxs": (18, 98, [0], 256, 64),
    "iq3_s": (21, 110, [0], 512, 64), "iq1_s": (19, 50, [0], 2048, 32),
    "iq1_m": (29, 56, [], 2048, 32), "iq4_nl": (20, 18, [0], 16, 32),
    "iq4_xs": (23, 136, [0], 16, 256),
}


def iq_set_index(name, blk, k, idx):
    """Writes grid index idx as the k-th index of one block (bytearray), leaving sign bits."""
    def u16(off, v, mask):
        old = struct.unpack_from("<H", blk, off)[0]
        struct.pack_into("<H", blk, off, (old & ~mask & 0xffff) | (v & mask))
    if name == "iq2_xxs":                       # byte l of the first u32 of each 8-byte group
        blk[2 + 8 * (k // 4) + k % 4] = idx
    elif name == "iq2_xs":                      # low 9 bits of qs[k]
        u16(2 + 2 * k, idx, 511)
    elif name == "iq2_s":                       # qs[k] + 2 bits of qh[k / 4]
        blk[2 + k] = idx & 255
        sh = 2 * (k % 4)
        blk[66 + k // 4] = (blk[66 + k // 4] & ~(3 << sh)) | ((idx >> 8) << sh)
    elif name == "iq3_xxs":
        blk[2 + k] = idx
    elif name == "iq3_s":                       # qs[k] + bit k % 8 of qh[k / 8]
        blk[2 + k] = idx & 255
        b = 66 + k // 8
        blk[b] = (blk[b] & ~(1 << (k % 8))) | ((idx >> 8) << (k % 8))
    elif name == "iq1_s":                       # qs[k] + 3 bits of qh[k / 4]
        blk[2 + k] = idx & 255
        u16(34 + 2 * (k // 4), (idx >> 8) << (3 * (k % 4)), 7 << (3 * (k % 4)))
    elif name == "iq1_m":                       # qs[k] + 3 bits of qh[k / 2]
        blk[k] = idx & 255
        sh = 4 * (k % 2)
        blk[32 + k // 2] = (blk[32 + k // 2] & ~(7 << sh)) | ((idx >> 8) << sh)


def write_iq_goldens(lib, cases):
    """dq_<iq type>.bin: random blocks whose grid indices run through the whole grid (so every
    table entry is checked), then ggml's dequantize_row_*; IQ4 quantizer goldens (see README)."""
    rng = np.random.default_rng(16)
    for name, (tid, bb, halves, ngrid, per) in IQ_TYPES.items():
        bs = 32 if name == "iq4_nl" else 256
        nb = max(4, ngrid // per)
        raw = bytearray(rng.integers(0, 256, nb * bb, dtype=np.uint8).tobytes())
        for b in range(nb):
            blk = raw[b * bb:(b + 1) * bb]
            for off in halves:
                h = np.float16(rng.uniform(-2, 2) * 10.0 ** rng.integers(-4, 2)).view(np.uint16)
                struct.pack_into("<H", blk, off, int(h))
            if name == "iq1_m":                 # fp16 scale in the top nibbles of 4 u16
                h = int(np.float16(rng.uniform(-2, 2) * 10.0 ** rng.integers(-4, 2))
                        .view(np.uint16))
                for i in range(4):
                    v = struct.unpack_from("<H", blk, 48 + 2 * i)[0] & 0x0fff
                    struct.pack_into("<H", blk, 48 + 2 * i, v | (((h >> (4 * i)) & 15) << 12))
            if ngrid > 16:
                for k in range(per):
                    iq_set_index(name, blk, k, (b * per + k) % ngrid)
            raw[b * bb:(b + 1) * bb] = blk
        raw = bytes(raw)
        y = np.zeros(nb * bs, F32)
        fn = getattr(lib, "dequantize_row_" + name)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        fn(raw, y.ctypes.data, nb * bs)
        with open(os.path.join(HERE, "dq_%s.bin" % name), "wb") as f:
            f.write(raw + y.astype("<f4").tobytes())
        print("dq_%-7s %d blocks (ggml)" % (name, nb))
    for name in ["iq4_nl", "iq4_xs"]:
        tid, bb, _, _, bs = IQ_TYPES[name]
        ref = getattr(lib, "quantize_row_%s_ref" % name)
        ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        ref.restype = None
        full = getattr(lib, "quantize_" + name)
        full.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p]
        full.restype = ctypes.c_size_t
        blob, wblob = b"", b""
        for cname, x in cases:
            if len(x) % bs:
                continue
            xp = np.ascontiguousarray(x, F32)
            out = ctypes.create_string_buffer(len(x) // bs * bb)
            # ggml's IQ4_NL _ref leaves a group of all |x| < 1e-15 with uninitialised indices
            if name == "iq4_xs" or np.abs(x).reshape(-1, 32).max(axis=1).min() >= 1e-15:
                ref(xp.ctypes.data, out, len(x))
                blob += out.raw
            qw = (0.25 + (np.arange(len(x)) % 11) / 4.0).astype(F32)
            for w in (None, qw):
                out = ctypes.create_string_buffer(len(x) // bs * bb)
                full(xp.ctypes.data, out, 1, len(x), None if w is None else w.ctypes.data)
                wblob += out.raw
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(blob)
        with open(os.path.join(HERE, name + "_w.bin"), "wb") as f:
            f.write(wblob)
        print("%-7s %6d bytes, %s_w %d bytes (ggml)" % (name, len(blob), name, len(wblob)))


WEIGHTED_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]


def importance_rows(n):
    """The two importance-weight rows of the _w goldens for a row of n values: a fixed ramp, and
    imatrix-like values (squared gaussians, a few exact zeros: columns no token ever lit)."""
    ramp = (0.25 + (np.arange(n) % 11) / 4.0).astype(F32)
    rng = np.random.default_rng(1600 + n)
    act = (rng.standard_normal(n) ** 2 * 3.0).astype(F32)
    act[rng.choice(n, max(1, n // 50), replace=False)] = 0
    return ramp, act


def write_weighted_goldens(lib, cases):
    """<type>_w.bin for the types llama-quantize quantizes with --imatrix weights: per case that
    is whole blocks, ggml's quantize_<type>(x, 1 row, n, qw) for the two rows of
    importance_rows(n) (quantize_row_*_impl), concatenated in that order; imatrix_rows.bin: the
    second (random) row of every case, float32, in case order (the first is a formula)."""
    with open(os.path.join(HERE, "imatrix_rows.bin"), "wb") as f:
        for cname, x in cases:       # the second weight row of each case, for the C test
            f.write(importance_rows(len(x))[1].astype("<f4").tobytes())
    for name in WEIGHTED_TYPES:
        tid, bs, bb, _ = GGML_TYPES[name]
        fn = getattr(lib, "quantize_" + name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_void_p]
        fn.restype = ctypes.c_size_t
        blob = b""
        for cname, x in cases:
            if len(x) % bs:
                continue
            xp = np.ascontiguousarray(x, F32)
            for w in importance_rows(len(x)):
                out = ctypes.create_string_buffer(len(x) // bs * bb)
                fn(xp.ctypes.data, out, 1, len(x), w.ctypes.data)
                blob += out.raw
        with open(os.path.join(HERE, name + "_w.bin"), "wb") as f:
            f.write(blob)
        print("%-5s_w %6d bytes (ggml quantize_%s with weights)" % (name, len(blob), name))
    # IQ2_XXS, IQ2_XS, IQ1_S (only with weights), IQ3_XXS, IQ3_S, IQ2_S, IQ1_M: ggml builds its
    # grid-neighbour tables in ggml_quantize_init
    init = lib.ggml_quantize_init
    init.argtypes = [ctypes.c_int]
    init.restype = None
    for name, tid, bb in (("iq2_xxs", 16, 66), ("iq2_xs", 17, 74), ("iq3_xxs", 18, 98),
                          ("iq3_s", 21, 110), ("iq2_s", 22, 82), ("iq1_s", 19, 50),
                          ("iq1_m", 29, 56)):
        init(tid)
        fn = getattr(lib, "quantize_" + name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_void_p]
        fn.restype = ctypes.c_size_t
        blob = b""
        for cname, x in cases:
            if len(x) % 256:
                continue
            xp = np.ascontiguousarray(x, F32)
            for w in importance_rows(len(x)):
                out = ctypes.create_string_buffer(len(x) // 256 * bb)
                fn(xp.ctypes.data, out, 1, len(x), w.ctypes.data)
                blob += out.raw
        with open(os.path.join(HERE, name + "_w.bin"), "wb") as f:
            f.write(blob)
        print("%s_w %6d bytes (ggml quantize_%s with weights)" % (name, len(blob), name))
        if name in ("iq3_xxs", "iq3_s", "iq2_s", "iq1_m"):   # these also quantize without
            # weights (x^2-based: the _ref); IQ1_S, IQ2_XXS, IQ2_XS assert weights
            blob = b""
            for cname, x in cases:
                if len(x) % 256 == 0:
                    xp = np.ascontiguousarray(x, F32)
                    out = ctypes.create_string_buffer(len(x) // 256 * bb)
                    fn(xp.ctypes.data, out, 1, len(x), None)
                    blob += out.raw
            with open(os.path.join(HERE, name + ".bin"), "wb") as f:
                f.write(blob)
            print("%s %6d bytes (ggml quantize_%s without weights)" % (name, len(blob), name))


if __name__ == "__main__":
    main()
