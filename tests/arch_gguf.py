#!/usr/bin/env python3
"""arch_gguf.py - seeded random-weight GGUFs of the llama-like MoE architectures mixel runs
besides 'llama': qwen2moe, qwen3moe, olmoe, granitemoe, with llama.cpp's exact tensor names and
metadata keys (llama.cpp src/llama-arch.cpp, src/models/<arch>.cpp, convert_hf_to_gguf.py).

For tests/arch_peer.sh: the same file goes to mixel and to llama.cpp (the peer), whose logits
are the goldens in tests/golden/arch/. The float32 master weights depend only on the arch and
the seed (numpy PCG64), so the F32 and quantized variants encode the same model. Shapes are tiny
(2 layers, n_embd 64) but keep what distinguishes each arch:
  qwen2moe    q/k/v biases; experts of expert_feed_forward_length 32 next to a shared expert of
              expert_shared_feed_forward_length 96 with its sigmoid gate ffn_gate_inp_shexp
  qwen3moe    attention.key_length 32 with n_embd / n_head = 16 (q is 128 wide, not 64);
              per-head attn_q_norm / attn_k_norm [32]; 16 experts, top-4, renormalised
  olmoe       attn_q_norm / attn_k_norm over the whole 64-wide q and k; top-2 of 8, not
              renormalised
  granitemoe  embedding_scale / residual_scale / attention.scale / logit_scale, GQA, a shared
              expert without a gate (Granite MoE "shared")
  llama       Mixtral-style MoE plus Llama 3.1's rope_freqs.weight (llama3 rope scaling factors,
              computed as convert_hf_to_gguf.py does, with rope base 10000 so that most of the
              8 rotated pairs of a 16-wide head are rescaled)
Vocabulary: the tok512 SentencePiece vocab inside ../shared/models/stories260K.gguf (512 tokens:
the embedding and output stay small). 1-D tensors and routers stay F32 in every variant, as
llama.cpp's quantizer keeps them.

usage: arch_gguf.py ARCH OUT.gguf [--type F32|Q8_0|Q4_0] [--seed N] [--shared DIR] [--counts]
                   [--break arch|no-experts|no-qnorm|no-logit-scale|shexp-shape|kq-norm-shape]
  --counts  print "TOTAL ACTIVE" parameter counts (active: all but the unused experts' share;
            shared experts run for every token) instead of writing OUT
"""
import argparse
import os
import sys

ARCHS = {
    # name: (heads, kv heads, head_dim, n_ff, experts, top-k, expert ff, shared ff)
    "qwen2moe": dict(heads=4, kv=2, hd=16, ff=96, experts=8, topk=2, ff_exp=32, ff_sh=96),
    "qwen3moe": dict(heads=4, kv=2, hd=32, ff=192, experts=16, topk=4, ff_exp=64, ff_sh=0),
    "olmoe": dict(heads=4, kv=4, hd=16, ff=64, experts=8, topk=2, ff_exp=0, ff_sh=0),
    "granitemoe": dict(heads=4, kv=2, hd=16, ff=64, experts=8, topk=2, ff_exp=0, ff_sh=64),
    "llama": dict(heads=4, kv=2, hd=16, ff=64, experts=4, topk=2, ff_exp=0, ff_sh=0),
}


def llama3_rope_factors(hd, base, factor=8.0, low=1.0, high=4.0, orig_ctx=64):
    """Llama 3.1 rope_freqs: per rotated pair, 1 (fast), factor (slow) or a smooth mix between
    (the formula of convert_hf_to_gguf.py's LlamaModel; orig_ctx is tiny so that the tiny
    head's wavelengths fall on all three branches)."""
    import math
    freqs = [1.0 / base ** (i / hd) for i in range(0, hd, 2)]
    low_wl, high_wl = orig_ctx / low, orig_ctx / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (orig_ctx / wl - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out
FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}
DIM, LAYERS, CTX = 64, 2, 2048


BREAKS = ("arch", "no-experts", "no-qnorm", "no-logit-scale", "shexp-shape", "kq-norm-shape")


def build(arch, qtype, seed, shared, brk=None):
    sys.path.insert(0, os.path.join(shared, "tools"))
    import numpy as np
    from gguf_writer import GGUFWriter, read_gguf
    from vocab_tools import add_spm_tokenizer

    a = ARCHS[arch]
    kv, _ = read_gguf(os.path.join(shared, "models", "stories260K.gguf"))
    pieces = kv["tokenizer.ggml.tokens"]
    n_vocab = len(pieces)
    # a fixed stream per arch (adding an arch must not change the others' weights)
    stream = {"granitemoe": 0, "olmoe": 1, "qwen2moe": 2, "qwen3moe": 3, "llama": 4}[arch]
    rng = np.random.default_rng([seed, stream])
    f32 = np.float32
    d, hd = DIM, a["hd"]
    qd, kvd = a["heads"] * hd, a["kv"] * hd
    ffe = a["ff_exp"] or a["ff"]

    def mat(*shape, gain=1.0):
        return (rng.standard_normal(shape) * (gain / np.sqrt(shape[-1]))).astype(f32)

    def vec(n, lo=0.8, hi=1.2):
        return rng.uniform(lo, hi, n).astype(f32)

    W = {"token_embd.weight": rng.standard_normal((n_vocab, d)).astype(f32)}
    for i in range(LAYERS):
        p = "blk.%d." % i
        W[p + "attn_norm.weight"] = vec(d)
        W[p + "attn_q.weight"] = mat(qd, d)
        W[p + "attn_k.weight"] = mat(kvd, d)
        W[p + "attn_v.weight"] = mat(kvd, d)
        if arch == "qwen2moe":
            W[p + "attn_q.bias"] = vec(qd, -0.5, 0.5)
            W[p + "attn_k.bias"] = vec(kvd, -0.5, 0.5)
            W[p + "attn_v.bias"] = vec(kvd, -0.5, 0.5)
        if arch == "qwen3moe":
            W[p + "attn_q_norm.weight"] = vec(hd)
            W[p + "attn_k_norm.weight"] = vec(hd)
        if arch == "olmoe":
            W[p + "attn_q_norm.weight"] = vec(qd)
            W[p + "attn_k_norm.weight"] = vec(kvd)
        W[p + "attn_output.weight"] = mat(d, qd)
        W[p + "ffn_norm.weight"] = vec(d)
        W[p + "ffn_gate_inp.weight"] = mat(a["experts"], d, gain=2.0)
        W[p + "ffn_gate_exps.weight"] = mat(a["experts"], ffe, d)
        W[p + "ffn_down_exps.weight"] = mat(a["experts"], d, ffe)
        W[p + "ffn_up_exps.weight"] = mat(a["experts"], ffe, d)
        if a["ff_sh"]:
            if arch == "qwen2moe":
                W[p + "ffn_gate_inp_shexp.weight"] = mat(d, gain=2.0)
            W[p + "ffn_gate_shexp.weight"] = mat(a["ff_sh"], d)
            W[p + "ffn_down_shexp.weight"] = mat(d, a["ff_sh"])
            W[p + "ffn_up_shexp.weight"] = mat(a["ff_sh"], d)
    W["output_norm.weight"] = vec(d)
    W["output.weight"] = mat(n_vocab, d, gain=4.0)
    if brk == "no-qnorm":
        del W["blk.1.attn_q_norm.weight"]
    if brk == "shexp-shape":
        W["blk.0.ffn_gate_inp_shexp.weight"] = mat(2, d)
    if brk == "kq-norm-shape":
        W["blk.0.attn_k_norm.weight"] = vec(hd + 2)
    if arch == "llama":
        W["rope_freqs.weight"] = np.array(llama3_rope_factors(hd, 10000.0), dtype=f32)
    exps = sum(t.size for n, t in W.items() if "_exps." in n)
    counts = (sum(t.size for t in W.values()),
              sum(t.size for t in W.values()) - exps + exps * a["topk"] // a["experts"])

    g = GGUFWriter()
    g.add("general.architecture", "qwen35moe" if brk == "arch" else arch)
    g.add("general.name", "tiny-%s-%s" % (arch, qtype.lower()))
    g.add("general.file_type", FILE_TYPE[qtype], "u32")
    g.add(arch + ".vocab_size", n_vocab, "u32")
    g.add(arch + ".context_length", CTX, "u32")
    g.add(arch + ".embedding_length", d, "u32")
    g.add(arch + ".block_count", LAYERS, "u32")
    g.add(arch + ".feed_forward_length", a["ff"], "u32")
    g.add(arch + ".attention.head_count", a["heads"], "u32")
    g.add(arch + ".attention.head_count_kv", a["kv"], "u32")
    if arch == "qwen3moe":  # head_dim != n_embd / n_head, as in Qwen3-30B-A3B (128 vs 64)
        g.add(arch + ".attention.key_length", hd, "u32")
        g.add(arch + ".attention.value_length", hd, "u32")
    g.add(arch + ".rope.dimension_count", hd, "u32")
    g.add(arch + ".rope.freq_base", 1e6 if arch.startswith("qwen") else 10000.0, "f32")
    g.add(arch + ".attention.layer_norm_rms_epsilon", 1e-6, "f32")
    g.add(arch + ".expert_count", 0 if brk == "no-experts" else a["experts"], "u32")
    g.add(arch + ".expert_used_count", 0 if brk == "no-experts" else a["topk"], "u32")
    if a["ff_exp"]:
        g.add(arch + ".expert_feed_forward_length", a["ff_exp"], "u32")
    if a["ff_sh"]:
        g.add(arch + ".expert_shared_feed_forward_length", a["ff_sh"], "u32")
    if arch == "granitemoe":  # granite-3.0-1b-a400m's multipliers (config.json)
        g.add(arch + ".embedding_scale", 12.0, "f32")
        g.add(arch + ".residual_scale", 0.22, "f32")
        g.add(arch + ".attention.scale", 0.015625, "f32")
        if brk != "no-logit-scale":
            g.add(arch + ".logit_scale", 6.0, "f32")
    add_spm_tokenizer(g, pieces, kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"],
                      bos=kv.get("tokenizer.ggml.bos_token_id", 1),
                      eos=kv.get("tokenizer.ggml.eos_token_id", 2),
                      unk=kv.get("tokenizer.ggml.unknown_token_id", 0),
                      add_space_prefix=kv.get("tokenizer.ggml.add_space_prefix", True))
    for name, t in W.items():
        keep_f32 = t.ndim == 1 or name.endswith("ffn_gate_inp.weight")
        g.add_tensor(name, t, "F32" if keep_f32 else qtype)
    return g, counts


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=sorted(ARCHS))
    ap.add_argument("out")
    ap.add_argument("--type", default="F32", choices=sorted(FILE_TYPE))
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--shared", default=os.environ.get("MX_SHARED",
                                                       os.path.join(here, "..", "..", "shared")))
    ap.add_argument("--counts", action="store_true")
    ap.add_argument("--break", dest="brk", choices=BREAKS,
                    help="write a broken file that mixel must refuse (tests/arch_peer.sh)")
    a = ap.parse_args()
    g, counts = build(a.arch, a.type, a.seed, a.shared, a.brk)
    if a.counts:
        print("%d %d" % counts)
    else:
        g.write(a.out)


if __name__ == "__main__":
    main()
