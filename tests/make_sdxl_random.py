#!/usr/bin/python3
"""Write a deterministic random-weight SDXL base 1.0 checkpoint (SGM single-file layout).

The full checkpoint has the tensor names and shapes of Stability AI's
sd_xl_base_1.0.safetensors:

  model.diffusion_model.*                           UNet (channels 320 x (1, 2, 4), no
                                                    attention at level 0, transformer depth
                                                    2 / 10, linear proj_in/out, context 2048,
                                                    label_emb from 2816)
  first_stage_model.*                               VAE (the SD VAE; scale factor 0.13025)
  conditioner.embedders.0.transformer.text_model.*  CLIP ViT-L/14 (HF names, + position_ids)
  conditioner.embedders.1.model.*                   OpenCLIP ViT-bigG/14 text tower (fused
                                                    in_proj, text_projection, logit_scale)

No DDPM schedule buffers (the SGM file has none). Weights F16 (logit_scale and position_ids
as in the original: F16 [] and I64 [1, 77]). About 6.9 GB.

--small writes the SAME KEY NAMES (same layer counts, same blocks) at reduced widths, for
fast tests of a loader that reads every width from the shapes: UNet channels 64 x (1, 2, 3)
(heads of 64: 1/2/3), CLIP-L width 64 (1 head, MLP 256), bigG width 128 (2 heads, MLP 512),
text_projection 128 -> 128, so context 192 and label_emb input 128 + 6 x 256 = 1664; the VAE
at its real size (mixel's VAE has SD's fixed widths). About 330 MB.

Values: every tensor has its own PCG64 stream seeded with SeedSequence([seed, crc32(name)]),
N(0, 1) float32 draws scaled as ../shared/tools/make_sd15_random.py does (conv/linear
1/sqrt(fan_in), norms 1 +- 0.02, embeddings 0.02 / 0.01, biases 0.01), rounded to F16, with
the same kind of calibration (an identity path through the UNet's first/last blocks so eps
tracks the noise, and a small VAE posterior std): see CALIBRATION. text_projection is made
symmetric (P = (A + A^T) / sqrt(2)): OpenCLIP computes x @ P while stable-diffusion.cpp
multiplies by P as a linear weight (P x); a symmetric P makes both readings equal, so the
peer comparison checks everything else.

Usage:
  /usr/bin/python3 tests/make_sdxl_random.py --seed 1 --out sdxl_random_s1.safetensors
  /usr/bin/python3 tests/make_sdxl_random.py --small --seed 1 --out sdxl_small_s1.safetensors
  /usr/bin/python3 tests/make_sdxl_random.py --list [--small]
Needs python3 + numpy (Debian: python3-numpy).
"""

import argparse
import json
import math
import os
import struct
import sys
import zlib

import numpy as np

U = "model.diffusion_model."
V = "first_stage_model."
CL = "conditioner.embedders.0.transformer.text_model."
CG = "conditioner.embedders.1.model."

FULL = dict(ch=(320, 640, 1280), depth=(0, 2, 10), nres=2, ctx_l=768, ff_l=3072, layers_l=12,
            ctx_g=1280, ff_g=5120, layers_g=32, proj=1280, vae_ch=128)
SMALL = dict(ch=(64, 128, 192), depth=(0, 2, 10), nres=2, ctx_l=64, ff_l=256, layers_l=12,
             ctx_g=128, ff_g=512, layers_g=32, proj=128, vae_ch=128)
VOCAB = 49408
NTOK = 77
SIZE_EMB = 256
VAE_MULT = (1, 2, 4, 4)

B = ("b",)
G = ("g",)
BETA = ("beta",)


class Spec:
    """The tensor list: (name, shape, kind)."""

    def __init__(self):
        self.items = []

    def add(self, name, shape, kind):
        self.items.append((name, tuple(int(s) for s in shape), kind))

    def norm(self, p, c):
        self.add(p + ".weight", (c,), G)
        self.add(p + ".bias", (c,), BETA)

    def conv(self, p, cout, cin, k, gain=1.0):
        self.add(p + ".weight", (cout, cin, k, k), ("w", gain))
        self.add(p + ".bias", (cout,), B)

    def linear(self, p, cout, cin, bias=True, gain=1.0):
        self.add(p + ".weight", (cout, cin), ("w", gain))
        if bias:
            self.add(p + ".bias", (cout,), B)


def unet_res(s, p, cin, cout, temb):
    s.norm(p + ".in_layers.0", cin)
    s.conv(p + ".in_layers.2", cout, cin, 3)
    s.linear(p + ".emb_layers.1", cout, temb)
    s.norm(p + ".out_layers.0", cout)
    s.conv(p + ".out_layers.3", cout, cout, 3)
    if cin != cout:
        s.conv(p + ".skip_connection", cout, cin, 1)


def unet_st(s, p, c, depth, ctx):
    s.norm(p + ".norm", c)
    s.linear(p + ".proj_in", c, c)  # SDXL: linear projections
    for d in range(depth):
        t = p + ".transformer_blocks.%d" % d
        for a, kv in (("attn1", c), ("attn2", ctx)):
            s.linear(t + "." + a + ".to_q", c, c, bias=False)
            s.linear(t + "." + a + ".to_k", c, kv, bias=False)
            s.linear(t + "." + a + ".to_v", c, kv, bias=False)
            s.linear(t + "." + a + ".to_out.0", c, c)
        s.linear(t + ".ff.net.0.proj", c * 8, c)  # GEGLU
        s.linear(t + ".ff.net.2", c, c * 4)
        for i in (1, 2, 3):
            s.norm(t + ".norm%d" % i, c)
    s.linear(p + ".proj_out", c, c)


def build_unet(s, a):
    ch, depth, nres = a["ch"], a["depth"], a["nres"]
    ctx = a["ctx_l"] + a["ctx_g"]
    temb = 4 * ch[0]
    s.linear(U + "time_embed.0", temb, ch[0])
    s.linear(U + "time_embed.2", temb, temb)
    s.linear(U + "label_emb.0.0", temb, a["proj"] + 6 * SIZE_EMB)
    s.linear(U + "label_emb.0.2", temb, temb)
    s.conv(U + "input_blocks.0.0", ch[0], 4, 3)
    chans, c, idx = [ch[0]], ch[0], 1
    for level, out in enumerate(ch):
        for _ in range(nres):
            unet_res(s, U + "input_blocks.%d.0" % idx, c, out, temb)
            c = out
            if depth[level]:
                unet_st(s, U + "input_blocks.%d.1" % idx, c, depth[level], ctx)
            chans.append(c)
            idx += 1
        if level != len(ch) - 1:
            s.conv(U + "input_blocks.%d.0.op" % idx, c, c, 3)
            chans.append(c)
            idx += 1
    unet_res(s, U + "middle_block.0", c, c, temb)
    unet_st(s, U + "middle_block.1", c, depth[-1], ctx)
    unet_res(s, U + "middle_block.2", c, c, temb)
    idx = 0
    for level in reversed(range(len(ch))):
        for i in range(nres + 1):
            skip = chans.pop()
            unet_res(s, U + "output_blocks.%d.0" % idx, c + skip, ch[level], temb)
            c = ch[level]
            sub = 1
            if depth[level]:
                unet_st(s, U + "output_blocks.%d.1" % idx, c, depth[level], ctx)
                sub = 2
            if level != 0 and i == nres:
                s.conv(U + "output_blocks.%d.%d.conv" % (idx, sub), c, c, 3)
            idx += 1
    s.norm(U + "out.0", c)
    s.conv(U + "out.2", 4, c, 3, gain=0.15)
    return idx - 1  # the last output block


def vae_res(s, p, cin, cout):
    s.norm(p + ".norm1", cin)
    s.conv(p + ".conv1", cout, cin, 3)
    s.norm(p + ".norm2", cout)
    s.conv(p + ".conv2", cout, cout, 3)
    if cin != cout:
        s.conv(p + ".nin_shortcut", cout, cin, 1)


def vae_attn(s, p, c):
    s.norm(p + ".norm", c)
    for n in ("q", "k", "v", "proj_out"):
        s.conv(p + "." + n, c, c, 1)


def build_vae(s, a):
    vc = a["vae_ch"]
    e = V + "encoder."
    s.conv(e + "conv_in", vc, 3, 3)
    c = vc
    for level, mult in enumerate(VAE_MULT):
        for j in range(2):
            vae_res(s, e + "down.%d.block.%d" % (level, j), c, vc * mult)
            c = vc * mult
        if level != len(VAE_MULT) - 1:
            s.conv(e + "down.%d.downsample.conv" % level, c, c, 3)
    vae_res(s, e + "mid.block_1", c, c)
    vae_attn(s, e + "mid.attn_1", c)
    vae_res(s, e + "mid.block_2", c, c)
    s.norm(e + "norm_out", c)
    s.conv(e + "conv_out", 8, c, 3)
    s.conv(V + "quant_conv", 8, 8, 1, gain=8.0)
    s.conv(V + "post_quant_conv", 4, 4, 1)
    d = V + "decoder."
    c = vc * VAE_MULT[-1]
    s.conv(d + "conv_in", c, 4, 3, gain=0.25)
    vae_res(s, d + "mid.block_1", c, c)
    vae_attn(s, d + "mid.attn_1", c)
    vae_res(s, d + "mid.block_2", c, c)
    for level in reversed(range(len(VAE_MULT))):
        for j in range(3):
            vae_res(s, d + "up.%d.block.%d" % (level, j), c, vc * VAE_MULT[level])
            c = vc * VAE_MULT[level]
        if level != 0:
            s.conv(d + "up.%d.upsample.conv" % level, c, c, 3)
    s.norm(d + "norm_out", c)
    s.conv(d + "conv_out", 3, c, 3, gain=0.5)


def build_clip_l(s, a):
    w, f = a["ctx_l"], a["ff_l"]
    s.add(CL + "embeddings.token_embedding.weight", (VOCAB, w), ("emb", 0.02))
    s.add(CL + "embeddings.position_embedding.weight", (NTOK, w), ("emb", 0.01))
    s.add(CL + "embeddings.position_ids", (1, NTOK), ("i64",))
    for i in range(a["layers_l"]):
        p = CL + "encoder.layers.%d." % i
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s.linear(p + "self_attn." + n, w, w)
        s.norm(p + "layer_norm1", w)
        s.norm(p + "layer_norm2", w)
        s.linear(p + "mlp.fc1", f, w)
        s.linear(p + "mlp.fc2", w, f)
    s.norm(CL + "final_layer_norm", w)


def build_clip_g(s, a):
    w, f = a["ctx_g"], a["ff_g"]
    s.add(CG + "token_embedding.weight", (VOCAB, w), ("emb", 0.02))
    s.add(CG + "positional_embedding", (NTOK, w), ("emb", 0.01))
    for i in range(a["layers_g"]):
        p = CG + "transformer.resblocks.%d." % i
        s.norm(p + "ln_1", w)
        s.add(p + "attn.in_proj_weight", (3 * w, w), ("w", 1.0))
        s.add(p + "attn.in_proj_bias", (3 * w,), B)
        s.linear(p + "attn.out_proj", w, w)
        s.norm(p + "ln_2", w)
        s.linear(p + "mlp.c_fc", f, w)
        s.linear(p + "mlp.c_proj", w, f)
    s.norm(CG + "ln_final", w)
    s.add(CG + "text_projection", (w, a["proj"]), ("sym",))
    s.add(CG + "logit_scale", (), ("const", math.log(1 / 0.07)))


def build_spec(a):
    s = Spec()
    last = build_unet(s, a)
    build_vae(s, a)
    build_clip_l(s, a)
    build_clip_g(s, a)
    return s.items, last


# ---------------------------------------------------------------------------
# Calibration (as make_sd15_random.py, for SDXL's block numbering): the first NID channels of
# level 0 (GroupNorm group 0 at 32 groups) carry the latent through: conv_in rows copy input
# channel k % 4; the last output block's skip_connection rows pick the concatenated conv_in
# skip (channel C + k) and its out_layers.3 rows are zero (SDXL has no transformer there);
# out.0 group 0 gamma 1 beta 6 (SiLU nearly linear), out.2 takes channel o (o < 4 and o < NID)
# with 1/silu'(6) and bias -silu(6)/silu'(6). VAE: quant_conv logvar rows gain 1 and bias -6.
# ---------------------------------------------------------------------------

def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


_B = 6.0
_SILU_B = _B * _sig(_B)
_DSILU_B = _sig(_B) + _B * _sig(_B) * (1.0 - _sig(_B))


def calibration(a, last):
    c0 = a["ch"][0]
    nid = c0 // 32

    def conv_in_w(w):
        w[:nid] = 0
        for k in range(nid):
            w[k, k % 4, 1, 1] = 1.0

    def skip_w(w):
        w[:nid] = 0
        for k in range(nid):
            w[k, c0 + k, 0, 0] = 1.0

    def zero_rows(v):
        v[:nid] = 0

    def out0_w(g):
        g[:nid] = 1.0

    def out0_b(b):
        b[:nid] = _B

    def out2_w(w):
        w[:, :nid] = 0
        for o in range(min(4, nid)):
            w[o, o, 1, 1] = 1.0 / _DSILU_B

    def out2_b(b):
        b[:min(4, nid)] = -_SILU_B / _DSILU_B

    def quant_w(w):
        w[4:] *= 1.0 / 8.0

    def quant_b(b):
        b[4:] = -6.0

    ob = U + "output_blocks.%d.0." % last
    return {
        U + "input_blocks.0.0.weight": conv_in_w,
        U + "input_blocks.0.0.bias": zero_rows,
        ob + "skip_connection.weight": skip_w,
        ob + "skip_connection.bias": zero_rows,
        ob + "out_layers.3.weight": zero_rows,
        ob + "out_layers.3.bias": zero_rows,
        U + "out.0.weight": out0_w,
        U + "out.0.bias": out0_b,
        U + "out.2.weight": out2_w,
        U + "out.2.bias": out2_b,
        V + "quant_conv.weight": quant_w,
        V + "quant_conv.bias": quant_b,
    }


def make_values(seed, name, shape, kind, calib):
    k = kind[0]
    if k == "i64":
        return np.arange(shape[-1], dtype=np.int64).reshape(shape)
    if k == "const":
        return np.array(kind[1], dtype=np.float16).reshape(shape)
    n = int(np.prod(shape))
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    g = np.random.Generator(np.random.PCG64(ss))
    x = g.standard_normal(n, dtype=np.float32)
    if k == "w":
        x *= np.float32(kind[1] / math.sqrt(int(np.prod(shape[1:]))))
    elif k == "sym":
        m = x.reshape(shape[0], shape[1])
        x = ((m + m.T) * np.float32(1.0 / math.sqrt(2.0 * shape[0]))).reshape(-1)
    elif k == "b":
        x *= np.float32(0.01)
    elif k == "g":
        x *= np.float32(0.02)
        x += np.float32(1.0)
    elif k == "beta":
        x *= np.float32(0.02)
    elif k == "emb":
        x *= np.float32(kind[1])
    else:
        raise ValueError(kind)
    x = x.reshape(shape)
    fix = calib.get(name)
    if fix is not None:
        fix(x)
    return x.astype(np.float16)


def write_safetensors(path, spec, metadata, produce):
    entries = sorted(spec, key=lambda e: e[0])
    header, off = {}, 0
    for name, shape, kind in entries:
        isz = 8 if kind[0] == "i64" else 2
        nbytes = int(np.prod(shape)) * isz if len(shape) else isz
        header[name] = {"dtype": "I64" if kind[0] == "i64" else "F16", "shape": list(shape),
                        "data_offsets": [off, off + nbytes]}
        off += nbytes
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, kind in entries:
            a = produce(name, shape, kind)
            assert tuple(a.shape) == tuple(shape), (name, a.shape, shape)
            f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
                    .tobytes())
    os.replace(tmp, path)
    return off + 8 + len(hb)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--small", action="store_true", help="reduced widths, same key names")
    ap.add_argument("--list", action="store_true", help="print 'name shape' and exit")
    args = ap.parse_args()
    a = SMALL if args.small else FULL
    spec, last = build_spec(a)
    assert len(spec) == len(set(n for n, _, _ in spec))
    if args.list:
        for n, shape, _ in sorted(spec):
            print(n, list(shape))
        nparam = sum(int(np.prod(s)) for n, s, k in spec if k[0] != "i64")
        print("# %d tensors, %d parameters" % (len(spec), nparam), file=sys.stderr)
        return
    if not args.out:
        ap.error("--out is required")
    calib = calibration(a, last)
    meta = {"format": "pt", "generator": "mixel tests/make_sdxl_random.py",
            "generator_seed": args.seed,
            "architecture": "stable-diffusion-xl-v1-base (random weights%s)" %
                            (", reduced widths" if args.small else "")}
    size = write_safetensors(args.out, spec, meta,
                             lambda n, s, k: make_values(args.seed, n, s, k, calib))
    print("wrote %s: %d tensors, %d bytes" % (args.out, len(spec), size))


if __name__ == "__main__":
    main()
