#!/usr/bin/python3
"""make_imatrix.py - a deterministic importance matrix for a GGUF model, in llama-imatrix's legacy
.dat format, for tests/test_imatrix_quantize.sh and its llama.cpp golden hashes.

usage: make_imatrix.py MODEL.gguf OUT.dat [SKIP_SUBSTRING]

One entry per 2-D/3-D "*.weight" tensor except token_embd (llama-imatrix never sees it: it is a
row lookup) and except names containing SKIP_SUBSTRING (to test tensors the imatrix lacks). Each
entry holds ne[0] * ne[2] values (one row per expert), ncall 1:
    v[i] = 0.05 + ((i * 37 + 11 * len(name) + ord(name[-8])) % 29) / 7      (as float32)
plus the optional trailer (chunk count 3, dataset "make_imatrix.py"). Pure Python: no numpy, so
the bytes do not depend on a library version. Reads the model with ../shared/tools/gguf_writer.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("MX_SHARED_TOOLS", os.path.join(HERE, "../../../../shared/tools")))
from gguf_writer import read_gguf  # noqa: E402


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    skip = sys.argv[3] if len(sys.argv) == 4 else None
    _, ts = read_gguf(sys.argv[1])
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
        entries.append((name, vals))
    out = struct.pack("<i", len(entries))
    for name, vals in entries:
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", 1, len(vals))
        out += struct.pack("<%df" % len(vals), *vals)
    ds = b"make_imatrix.py"
    out += struct.pack("<ii", 3, len(ds)) + ds
    with open(sys.argv[2], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
