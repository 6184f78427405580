#!/usr/bin/python3
"""make_imatrix_seeds.py - seed inputs for fuzz_imatrix in corpus/fuzz_imatrix/: small legacy
.dat imatrices (with and without the trailer, MoE-sized entries) and GGUF ones (made with
make_seeds.py's GGUF encoder), valid and a few broken ones. Run from this folder."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_seeds import s, val, U32, STR, ARR  # noqa: E402


def gguf(kvs, tensors, align=32):
    """A GGUF v3 file with F32 tensors (name, ne, float values): valid importance data."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        head += s(k) + struct.pack("<I", t) + val(t, v)
    off, datas = 0, []
    for name, ne, vals in tensors:
        head += s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        head += struct.pack("<IQ", 0, off)
        data = struct.pack("<%df" % len(vals), *vals)
        datas.append(data + b"\0" * (-len(data) % align))
        off += len(datas[-1])
    head += b"\0" * (-len(head) % align)
    return head + b"".join(datas)


def dat(entries, trailer=True):
    out = struct.pack("<i", len(entries))
    for name, ncall, vals in entries:
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, len(vals))
        out += struct.pack("<%df" % len(vals), *vals)
    if trailer:
        out += struct.pack("<ii", 10, 4) + b"wiki"
    return out


def main():
    d = os.path.join(HERE, "corpus", "fuzz_imatrix")
    os.makedirs(d, exist_ok=True)
    meta = [("imatrix.datasets", ARR, (STR, ["wiki.txt"])), ("imatrix.chunk_count", U32, 10),
            ("imatrix.chunk_size", U32, 512)]
    seeds = {
        "dat_two": dat([("blk.0.ffn_up.weight", 2, [1.0, 2.0, 3.0, 4.0]),
                        ("output.weight", 0, [0.5] * 8)]),
        "dat_no_trailer": dat([("blk.0.attn_q.weight", 1, [1.0] * 32)], trailer=False),
        "dat_moe": dat([("blk.0.ffn_down_exps.weight", 3, [float(i % 7) for i in range(64)])]),
        "dat_dup": dat([("a", 1, [1.0]), ("a", 1, [2.0])]),
        "dat_nan": dat([("a", 1, [float("nan")])]),
        "gguf_one": gguf(meta, [("blk.0.ffn_up.weight.in_sum2", [8, 1], [float(i) for i in range(8)]),
                                ("blk.0.ffn_up.weight.counts", [1, 1], [4.0])]),
        "gguf_moe": gguf(meta, [("blk.0.ffn_up_exps.weight.in_sum2", [8, 4], [1.5] * 32),
                                ("blk.0.ffn_up_exps.weight.counts", [1, 4], [3.0, 0.0, 1.0, 2.0]),
                                ("output.weight.in_sum2", [16, 1], [2.0] * 16),
                                ("output.weight.counts", [1, 1], [2.0])]),
        "gguf_no_meta": gguf([], [("w.in_sum2", [4, 1], [1.0] * 4), ("w.counts", [1, 1], [1.0])]),
        "gguf_bad_counts": gguf(meta, [("w.in_sum2", [4, 2], [1.0] * 8),
                                       ("w.counts", [1, 3], [1.0] * 3)]),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
