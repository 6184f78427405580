#!/usr/bin/python3
"""make_models.py - the small IQ-quantized random MoE models of tests/iq_logits_peer.sh, and the
peer's logits for them.

Models: ../shared/tools/make_tiny_mixtral.py's random Mixtral (F32 master weights, seed 42) with
dim 256 (IQ types need rows of 256), 2 layers, 4 experts top-2; every 2-D/3-D weight (token_embd
and output included) quantized by ggml's own ggml_quantize_chunk (libggml-base of the peer,
node-llama-cpp 3.21.1 / ggml 0.23.0) to the file's type, 1-D norms and the router kept F32, as
in the shared tiny models. IQ2_XS needs an importance matrix in ggml: every tensor gets the
deterministic one qw[i] = 1 + (i % 7) / 7 (IQ3_S and IQ4_XS get the same, which exercises
ggml's weighted path; the weights do not change what the file format is).

  tiny-mixtral-d256-iq4_xs.gguf, -iq3_s.gguf, -iq2_xs.gguf

Peer logits (with --llref PATH/llref): `llref MODEL evalids -n 16 -kv f32 -c 512` on the ids of
prompts.txt (one prompt of ids per line): peer-<type>.txt.gz, the driver's output as is (TOK,
LOGITS per prompt position, GEN id top1 top2 per greedy step).

Run: /usr/bin/python3 make_models.py --shared ../../../../shared \
        --ggml .../bins/linux-x64/libggml-base.so [--llref /tmp/peer21/llref] [--types A,B]
"""
import argparse
import ctypes
import gzip
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# ggml type, llama ftype (ggml.h's enum ggml_type, llama.h's enum llama_ftype)
TYPES = {"IQ4_XS": (23, 30), "IQ3_S": (21, 26), "IQ2_XS": (17, 20), "IQ2_XXS": (16, 19),
         "IQ2_S": (22, 28), "IQ3_XXS": (18, 23), "IQ1_S": (19, 24), "IQ1_M": (29, 31),
         "IQ4_NL": (20, 25)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "../../../../shared"))
    ap.add_argument("--ggml", required=True)
    ap.add_argument("--llref")
    ap.add_argument("--types", default=",".join(TYPES),
                    help="comma-separated subset of the types to (re)make")
    ap.add_argument("--dim", type=int, default=256,
                    help="model and expert width (a multiple of 256; beyond 256 every matmul "
                         "row holds several IQ blocks); files of another width than 256 are "
                         "named d<dim>- in both the model and the peer file")
    ap.add_argument("--experts", type=int, default=4)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.shared, "tools"))
    import ggml_quants
    import make_tiny_mixtral as mtm

    lib = ctypes.CDLL(a.ggml)
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    for name in a.types.split(","):
        tid, ftype = TYPES[name]
        ggml_quants.TYPE_IDS.setdefault(name, tid)
        tag = name.lower() if a.dim == 256 else "d%d-%s" % (a.dim, name.lower())
        args = argparse.Namespace(
            out="tiny-mixtral-d%d-%s.gguf" % (a.dim, name.lower()), type="F32", dim=a.dim,
            layers=2, heads=8, kv_heads=2, experts=a.experts, top_k=2, ffn=a.dim, ctx=2048,
            rope_base=1e6,
            router_gain=2.0, out_gain=4.0, seed=42, name=None,
            vocab_from=os.path.join(a.shared, "models", "stories260K.gguf"))
        g, _ = mtm.build(args)
        g.kv = [(k, t, ftype if k == "general.file_type" else v, e) for k, t, v, e in g.kv]
        out = []
        for tname, ne, qt, data in g.tensors:
            if len(ne) == 1 or tname.endswith("ffn_gate_inp.weight"):
                out.append((tname, ne, qt, data))
                continue
            x = np.frombuffer(data, dtype="<f4").astype(np.float32)
            n_per_row = ne[0]
            nrows = x.size // n_per_row
            qw = (1.0 + (np.arange(n_per_row) % 7) / 7.0).astype(np.float32)
            size = lib.ggml_row_size(tid, n_per_row) * nrows
            buf = ctypes.create_string_buffer(size)
            got = lib.ggml_quantize_chunk(tid, x.ctypes.data, buf, 0, nrows, n_per_row,
                                          qw.ctypes.data)
            assert got == size
            out.append((tname, ne, name, buf.raw))
        g.tensors = out
        path = os.path.join(HERE, args.out)
        g.write(path)
        print("wrote %s (%d bytes)" % (args.out, os.path.getsize(path)))
        if a.llref:
            recs = b""
            for line in open(os.path.join(HERE, "prompts.txt"), "rb"):
                line = line.strip()
                if line:
                    recs += b"%d\n%s\n" % (len(line), line)
            r = subprocess.run([a.llref, path, "evalids", "-n", "16", "-kv", "f32", "-c", "512",
                                "-t", "2"], input=recs, stdout=subprocess.PIPE, check=True)
            with gzip.GzipFile(os.path.join(HERE, "peer-%s.txt.gz" % tag), "wb",
                               mtime=0) as f:
                f.write(r.stdout)
            print("  peer logits: %d bytes" % len(r.stdout))


if __name__ == "__main__":
    main()
