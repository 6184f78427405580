#!/usr/bin/python3
"""taesd_ref.py - an independent numpy restatement of the TAESD decoder (madebyollin/taesd
taesd.py Decoder), in float64, checked against mixel's decode of the same latent.

usage: taesd_ref.py TAESD.safetensors LW LH LATENT.f32 MIXEL_OUT.f32 [MAX_REL_RMS]

Reads the safetensors file itself (json header + raw data; F32/F16), either key layout
("N.weight" with the clamp at index 0, or "decoder.layers.N.weight"), runs
tanh(z/3)*3 -> conv -> relu -> blocks / nearest x2 / bias-free conv ... -> conv, and compares:
relative RMS error (||mixel - ref|| / ||ref||) must be <= MAX_REL_RMS (default 1e-4: f32 math on
both sides; ../shared/refs/sd/README.md allows 1e-2 for a VAE decoder's output). Prints what it
measured; exit 0 when within, 1 when not.
"""
import json
import struct
import sys

import numpy as np


def load(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16}[t["dtype"]]
        out[name] = np.frombuffer(data[base + a:base + b], dtype=dt).astype(np.float64).reshape(
            t["shape"])
    return out


def conv3(x, w, b):
    """x [C, H, W], w [O, C, 3, 3]: a 3x3 convolution with zero padding 1 (cross-correlation)."""
    c, h, wd = x.shape
    p = np.zeros((c, h + 2, wd + 2))
    p[:, 1:-1, 1:-1] = x
    y = np.zeros((w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            y += np.tensordot(w[:, :, ky, kx], p[:, ky:ky + h, kx:kx + wd], axes=([1], [0]))
    if b is not None:
        y += b[:, None, None]
    return y


def main():
    path, lw, lh, zpath, opath = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], \
        sys.argv[5]
    tol = float(sys.argv[6]) if len(sys.argv) > 6 else 1e-4
    t = load(path)
    if "decoder.layers.0.weight" in t:
        pre, off = "decoder.layers.", 0
    else:
        pre, off = "", 1

    def W(i, sub=""):
        return t[f"{pre}{i + off}{sub}.weight"]

    def B(i, sub=""):
        return t.get(f"{pre}{i + off}{sub}.bias")

    def block(i, x):
        h = np.maximum(conv3(x, W(i, ".conv.0"), B(i, ".conv.0")), 0)
        h = np.maximum(conv3(h, W(i, ".conv.2"), B(i, ".conv.2")), 0)
        h = conv3(h, W(i, ".conv.4"), B(i, ".conv.4"))
        return np.maximum(h + x, 0)

    z = np.fromfile(zpath, dtype=np.float32).astype(np.float64).reshape(4, lh, lw)
    x = np.tanh(z / 3) * 3
    x = np.maximum(conv3(x, W(0), B(0)), 0)
    i = 2
    for stage in range(4):
        for _ in range(3 if stage < 3 else 1):
            x = block(i, x)
            i += 1
        if stage == 3:
            break
        x = x.repeat(2, axis=1).repeat(2, axis=2)  # nn.Upsample(scale_factor=2): nearest
        i += 1
        x = conv3(x, W(i), None)
        i += 1
    x = conv3(x, W(i), B(i))
    got = np.fromfile(opath, dtype=np.float32).astype(np.float64).reshape(x.shape)
    rel = np.sqrt(np.sum((got - x) ** 2) / np.sum(x ** 2))
    print(f"taesd: {x.shape[2]}x{x.shape[1]} output, ref range [{x.min():.3f}, {x.max():.3f}], "
          f"max abs diff {np.abs(got - x).max():.3g}, rel RMS {rel:.3g} (bar {tol:g})")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
