#!/usr/bin/env python3
"""make_seeds.py - writes the small seed corpora of the GGUF and safetensors fuzz targets.

Run from anywhere: python3 tests/fuzz/make_seeds.py. Plain Python (struct, json) only; the output
is deterministic and committed in tests/fuzz/corpus/<target>/. Each seed is a valid file that
exercises one feature (every metadata type, nested arrays, alignments, quant types, dtypes).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- GGUF ----------------------------------------------------------------------------------
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
       U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id -> (block size, bytes per block)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
         24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<Q", len(b)) + b


def val(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(val(et, x) for x in items)
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors=(), version=3, align=32):
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        head += s(k) + struct.pack("<I", t) + val(t, v)
    off, datas = 0, []
    for name, ne, typ in tensors:
        bs, ts = TYPES[typ]
        n = ne[0] // bs * ts
        for d in ne[1:]:
            n *= d
        head += s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        head += struct.pack("<IQ", typ, off)
        data = bytes((i * 37 + 11) & 0xff for i in range(n))
        datas.append(data + b"\0" * (-n % align))
        off += len(datas[-1])
    head += b"\0" * (-len(head) % align)
    return head + b"".join(datas)


def gguf_seeds():
    arch = [("general.architecture", STR, "llama"), ("general.name", STR, "seed"),
            ("llama.block_count", U32, 1), ("llama.embedding_length", U32, 32),
            ("llama.expert_count", U32, 4), ("llama.expert_used_count", U32, 2)]
    scalars = [("t.u8", U8, 200), ("t.i8", I8, -5), ("t.u16", U16, 60000), ("t.i16", I16, -3),
               ("t.u32", U32, 4000000000), ("t.i32", I32, -7), ("t.f32", F32, 0.5),
               ("t.bool", BOOL, 1), ("t.str", STR, "h\xe9llo"), ("t.empty", STR, ""),
               ("t.u64", U64, 2**64 - 1), ("t.i64", I64, -2**63), ("t.f64", F64, 1e-300)]
    arrays = [("a.u8", ARR, (U8, [1, 2, 3])), ("a.i32", ARR, (I32, [-1, 0, 1])),
              ("a.f32", ARR, (F32, [0.25, -1.0])), ("a.bool", ARR, (BOOL, [0, 1])),
              ("a.str", ARR, (STR, ["<unk>", "", "\u2581the"])), ("a.empty", ARR, (U64, [])),
              ("a.nested", ARR, (ARR, [(U8, [7]), (STR, ["x"]), (ARR, [(I16, [])])]))]
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(8)] + ["\u2581a", "b"]
    tok = [("tokenizer.ggml.model", STR, "llama"), ("tokenizer.ggml.tokens", ARR, (STR, toks)),
           ("tokenizer.ggml.scores", ARR, (F32, [float(-i) for i in range(len(toks))])),
           ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [6] * 8 + [1, 1])),
           ("tokenizer.chat_template", STR, "{% for m in messages %}{{ m.content }}\n{% endfor %}")]
    return {
        "empty_v3": gguf([]),
        "empty_v2": gguf([], version=2),
        "scalars_v2": gguf(scalars, version=2),
        "arrays": gguf(arrays),
        "tokenizer": gguf(arch + tok),
        "f32_tensors": gguf(arch, [("token_embd.weight", [32, 4], 0), ("norm", [32], 0)]),
        "quant_tensors": gguf(arch[:2], [("q4_0", [32, 2], 2), ("q8_0", [64], 8),
                                         ("f16", [3, 2], 1), ("bf16", [5], 30)]),
        "kquant": gguf(arch[:1], [("q4_K", [256], 12), ("q6_K", [256], 14), ("q2_K", [256], 10)]),
        "moe": gguf(arch, [("blk.0.ffn_up_exps.weight", [32, 2, 4], 0),
                           ("blk.0.ffn_gate_inp.weight", [32, 4], 0)]),
        "align64": gguf([("general.alignment", U32, 64)] + arch[:1],
                        [("a", [3], 0), ("b", [5, 1, 1, 2], 26)], align=64),
        "align1": gguf([("general.alignment", U32, 1)], [("a", [3], 24), ("b", [2], 25)],
                       align=1),
        "zero_size": gguf([], [("z", [0, 4], 0), ("y", [2], 0)]),
    }


# ---- safetensors ---------------------------------------------------------------------------
SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
         "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def st(tensors, meta=None):
    hdr, off, blobs = {}, 0, []
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        blobs.append(bytes((i * 13 + 5) & 0xff for i in range(n)))
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def st_seeds():
    return {
        "empty": st([]),
        "meta_only": st([], {"format": "pt", "note": "h\u00e9"}),
        "dtypes": st([(d.lower(), d, [2, 1]) for d in SIZES]),
        "ranks": st([("scalar", "F32", []), ("r1", "F16", [3]), ("r4", "BF16", [2, 1, 2, 1]),
                     ("r8", "U8", [1, 2, 1, 2, 1, 1, 1, 2]), ("zero", "F32", [0, 7])]),
        "sd_names": st([
            ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
             "F16", [4, 6]),
            ("first_stage_model.decoder.conv_in.weight", "F16", [2, 1, 3, 3]),
            ("cond_stage_model.transformer.text_model.embeddings.position_ids", "I64", [1, 7])],
            {"format": "pt"}),
    }


def main():
    for target, seeds in (("fuzz_gguf", gguf_seeds()), ("fuzz_safetensors", st_seeds())):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            assert len(data) < 4096, name  # libFuzzer's default -max_len
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (target, len(seeds)))


if __name__ == "__main__":
    main()
