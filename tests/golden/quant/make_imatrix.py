#!/usr/bin/python3
"""make_imatrix.py - a deterministic importance matrix for a GGUF model, in llama-imatrix's legacy
.dat format, for tests/imatrix_quantize.sh and its llama.cpp golden hashes.

usage: make_imatrix.py [--gguf] MODEL.gguf OUT [SKIP_SUBSTRING]

One entry per 2-D/3-D "*.weight" tensor except token_embd (llama-imatrix never sees it: it is a
row lookup) and except names containing SKIP_SUBSTRING (to test tensors the imatrix lacks). Each
entry holds ne[0] * ne[2] values (one row per expert), ncall 1:
    v[i] = 0.05 + ((i * 37 + 11 * len(name) + ord(name[-8])) % 29) / 7      (as float32)
plus the optional trailer (chunk count 3, dataset "make_imatrix.py"). Pure Python: no numpy, so
the bytes do not depend on a library version. Reads the model with ../shared/tools/gguf_writer.
With --gguf the same importance in llama.cpp's GGUF imatrix format: <name>.in_sum2 = 4 * v
(ne = (ne[0], ne[2])), <name>.counts = 4 per expert, and the imatrix.* metadata; the values
normalise (sum / count) to exactly the .dat's, so both files must quantize to the same bytes.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("MX_SHARED_TOOLS", os.path.join(HERE, "../../../../shared/tools")))
from gguf_writer import read_gguf  # noqa: E402


def main():
    args = sys.argv[1:]
    as_gguf = bool(args) and args[0] == "--gguf"
    if as_gguf:
        args = args[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    skip = args[2] if len(args) == 3 else None
    _, ts = read_gguf(args[0])
    entries = []
    for name in sorted(ts):
        ne = list(ts[name]["ne"]) + [1, 1, 1]
        dims = sum(1 for x in ne[1:4] if x > 1) + 1
        if not name.endswith(".weight") or dims < 2 or name.startswith("token_embd"):
            continue
        if "_norm" in name or "ffn_gate_inp" in name or (skip and skip in name):
            continue
        n = ne[0] * ne[2]
        k = 11 * len(name) + ord(name[-8])
        vals = [0.05 + ((i * 37 + k) % 29) / 7.0 for i in range(n)]
        entries.append((name, vals, ne[0], ne[2]))
    if as_gguf:
        write_gguf(args[1], entries)
        return
    out = struct.pack("<i", len(entries))
    for name, vals, _, _ in entries:
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", 1, len(vals))
        out += struct.pack("<%df" % len(vals), *vals)
    ds = b"make_imatrix.py"
    out += struct.pack("<ii", 3, len(ds)) + ds
    with open(args[1], "wb") as f:
        f.write(out)


def write_gguf(path, entries):
    from gguf_writer import GGUFWriter
    w = GGUFWriter()
    w.add("general.type", "imatrix")
    w.add("imatrix.datasets", ["make_imatrix.py"], "arr", "str")
    w.add("imatrix.chunk_count", 3)
    w.add("imatrix.chunk_size", 512)
    for name, vals, ne0, n_mat in entries:
        sums = struct.pack("<%df" % len(vals), *[struct.unpack("<f", struct.pack("<f", v))[0] * 4
                                                  for v in vals])
        w.add_raw_tensor(name + ".in_sum2", (ne0, n_mat), "F32", sums)
        w.add_raw_tensor(name + ".counts", (1, n_mat), "F32", struct.pack("<%df" % n_mat,
                                                                          *[4.0] * n_mat))
    w.write(path)


if __name__ == "__main__":
    main()
