#!/usr/bin/env python3
"""make_sd_seeds.py - writes the seed corpus of fuzz_sd_model (the Stable Diffusion checkpoint
loader): tiny checkpoints the loader accepts, one per source layout and feature.

Run from anywhere: python3 tests/fuzz/make_sd_seeds.py. Plain Python (struct, json) only; the
output is deterministic and committed in tests/fuzz/corpus/fuzz_sd_model/. Shapes are as small as
detection allows (the cross-attention key must be 768 or 1024 wide), so every seed stays a few KB.
"""
import json
import os
import struct

from make_seeds import SIZES, gguf, STR

HERE = os.path.dirname(os.path.abspath(__file__))
U = "model.diffusion_model."
V = "first_stage_model."
T = "cond_stage_model.transformer.text_model."
OC = "cond_stage_model.model."


def alphas():
    out, prod = [], 1.0
    for i in range(1000):
        b = (0.00085 ** 0.5 + (0.012 ** 0.5 - 0.00085 ** 0.5) * i / 999) ** 2
        prod *= 1 - b
        out.append(prod)
    return struct.pack("<1000f", *out)


def st(tensors, meta=None):
    """tensors: (name, dtype, shape outermost first[, data])."""
    hdr, off, blobs = {}, 0, []
    if meta is not None:
        hdr["__metadata__"] = meta
    for t in tensors:
        name, dtype, shape = t[:3]
        n = SIZES[dtype]
        for d in shape:
            n *= d
        data = t[3] if len(t) > 3 else bytes((i * 13 + 5) & 0x3f for i in range(n))
        assert len(data) == n, name
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        blobs.append(data)
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def unet(ctx, cin=4):
    return [(U + "input_blocks.0.0.weight", "F16", [1, cin, 3, 3]),
            (U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "F16", [1, ctx]),
            (U + "out.2.weight", "F16", [4, 1, 3, 3])]


def vae():
    return [(V + "decoder.conv_in.weight", "F16", [1, 4, 3, 3]),
            (V + "decoder.conv_out.weight", "F16", [3, 1, 1, 1]),
            (V + "post_quant_conv.weight", "F16", [4, 4, 1, 1]),
            (V + "decoder.mid.attn_1.q.weight", "F16", [2, 2, 1, 1])]


def seeds():
    sd1 = unet(768) + vae() + [
        (T + "embeddings.token_embedding.weight", "F16", [1, 768]),
        (T + "embeddings.position_ids", "I64", [1, 3]),
        ("alphas_cumprod", "F32", [1000], alphas()),
        ("betas", "F32", [4]),
        ("model_ema.decay", "F32", [])]
    sd2 = unet(1024, 9) + [
        (OC + "token_embedding.weight", "F16", [1, 1024]),
        (OC + "positional_embedding", "F16", [3, 2]),
        (OC + "transformer.resblocks.0.attn.in_proj_weight", "F16", [6, 2]),
        (OC + "transformer.resblocks.0.attn.in_proj_bias", "F16", [6]),
        (OC + "transformer.resblocks.0.ln_1.weight", "F16", [2]),
        (OC + "transformer.resblocks.0.mlp.c_fc.weight", "F16", [2, 2]),
        (OC + "text_projection", "F16", [2, 2])]
    bf16 = [(n, "BF16", s) for n, _, s in unet(768)] + [(V + "decoder.conv_in.weight", "BF16",
                                                        [1, 4, 3, 3])]
    # sd.cpp GGUF (ne innermost first): q8_0 matrices and norm vectors, F16 convs, fused in_proj
    g = gguf([], [(U + "input_blocks.0.0.weight", [3, 3, 4, 1], 1),
                  (U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", [768, 1], 1),
                  (U + "input_blocks.1.0.in_layers.0.weight", [32], 8),
                  (U + "input_blocks.1.1.proj_in.weight", [32, 2], 8),
                  (V + "decoder.conv_in.weight", [3, 3, 4, 1], 1),
                  (V + "decoder.conv_out.weight", [1, 1, 1, 3], 1),
                  (V + "decoder.mid.attn_1.k.weight", [32, 32], 8),
                  (T + "encoder.layers.0.self_attn.in_proj.weight", [32, 3], 8),
                  (T + "encoder.layers.0.self_attn.in_proj.bias", [3], 0)])
    return {
        "sd1_ldm.safetensors": st(sd1, {"format": "pt"}),
        "sd2_openclip_inpaint_v.safetensors": st(sd2, {"modelspec.prediction_type": "v"}),
        "v_pred_marker.safetensors": st(unet(1024) + [("v_pred", "F16", [1])]),
        "bf16_conv.safetensors": st(bf16),
        "sdcpp_q8_0.gguf": g,
        "llm.gguf": gguf([("general.architecture", STR, "llama")], [("token_embd.weight", [4], 0)]),
    }


def main():
    d = os.path.join(HERE, "corpus", "fuzz_sd_model")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds().items():
        assert len(data) < 16384, name
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
