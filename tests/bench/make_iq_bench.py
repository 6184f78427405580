#!/usr/bin/python3
"""make_iq_bench.py - an IQ2_XS (or IQ3_S) benchmark model from bench-moe-f16.gguf with ggml's own
quantizer, for `tests/bench/vs_llama.sh` (mixel's IQ kernels against llama.cpp's).

llama.cpp needs an importance matrix for IQ2_XS; the random bench model has none, so every
tensor gets the same deterministic one (1 + (i % 7) / 7), which changes the values, not the speed.
Mix: every 2-D/3-D weight of the source (token_embd included) in the IQ type, output.weight
Q6_K (llama.cpp's usual output type), norms and the router F32. Not llama-quantize's IQ2_XS mix
(that one puts attention in Q4_K/Q5_K); this one times the IQ kernels.

usage: make_iq_bench.py SRC.gguf OUT.gguf IQ2_XS|IQ3_S LIBGGML_BASE [THREADS]
(needs numpy and ../shared/tools/gguf_writer.py; a 1.8 B model takes minutes per thread)
"""
import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../shared/tools"))
sys.path.insert(0, "/work/shared/tools")
import ggml_quants  # noqa: E402
from gguf_writer import GGUFWriter, read_gguf  # noqa: E402

IDS = {"IQ2_XS": (17, 20), "IQ3_S": (21, 26), "Q6_K": (14, None)}


def main():
    src, out, qname, libpath = sys.argv[1:5]
    nthreads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    lib = ctypes.CDLL(libpath)
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    for name, (tid, _) in IDS.items():
        ggml_quants.TYPE_IDS.setdefault(name, tid)
        lib.ggml_quantize_init(tid)
    kv, tensors = read_gguf(src)
    raw = np.memmap(src, dtype=np.uint8, mode="r")
    g = GGUFWriter()
    skip = {"GGUF.version"}
    for k, v in kv.items():
        if k in skip:
            continue
        if k == "general.file_type":
            g.add(k, IDS[qname][1], "u32")
        elif isinstance(v, list):
            g.add(k, v, "arr", "str" if v and isinstance(v[0], str) else
                  "i32" if v and isinstance(v[0], int) else "f32")
        elif isinstance(v, float):
            g.add(k, v, "f32")
        else:
            g.add(k, v)
    for name, t in tensors.items():
        ne = t["ne"]
        data = raw[t["offset"]:t["offset"] + t["nbytes"]]
        if len([d for d in ne if d > 1]) < 2 or "norm" in name or "ffn_gate_inp" in name:
            g.add_raw_tensor(name, ne, t["type"], bytes(data))
            continue
        qt = "Q6_K" if name == "output.weight" else qname
        tid = IDS[qt][0]
        x = np.frombuffer(bytes(data), dtype="<f2").astype(np.float32)
        n_per_row = ne[0]
        nrows = x.size // n_per_row
        qw = (1.0 + (np.arange(n_per_row) % 7) / 7.0).astype(np.float32)
        rs = lib.ggml_row_size(tid, n_per_row)
        buf = ctypes.create_string_buffer(rs * nrows)
        step = (nrows + nthreads - 1) // nthreads

        def part(r0):
            r1 = min(nrows, r0 + step)
            xp = x[r0 * n_per_row:r1 * n_per_row]
            dst = ctypes.addressof(buf) + r0 * rs
            lib.ggml_quantize_chunk(tid, xp.ctypes.data, dst, 0, r1 - r0, n_per_row,
                                    qw.ctypes.data)
        with ThreadPoolExecutor(nthreads) as ex:
            list(ex.map(part, range(0, nrows, step)))
        g.add_raw_tensor(name, ne, qt, buf.raw)
        print(name, qt, flush=True)
    g.write(out)
    print("wrote", out, os.path.getsize(out))


if __name__ == "__main__":
    main()
