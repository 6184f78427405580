#!/usr/bin/env python3
"""eval_ppl_peer.py - llama-perplexity's numbers computed from the peer's logits (llama.cpp via
../shared/tools/peer-llama's llref), to check `mixel eval ppl` against.

    eval_ppl_peer.py LLREF MODEL TEXT N_CTX [--base BASE_MODEL] [--chunks N]

prints one JSON line {"ppl", "ppl_stderr", "scored_tokens", "chunks", "n_ctx", "n_tokens"} (and
with --base: "kld", "kld_stderr", "top1_pct", "ppl_base", "dppl").

The method is llama.cpp's tools/perplexity/perplexity.cpp, recomputed here from logits rather
than run (node-llama-cpp ships libllama, not the llama-perplexity tool): the text is tokenized
by the peer with BOS (llref tokenize), cut into N_CTX-token chunks, each chunk's first token set
to BOS and evaluated from an empty cache in one batch with F32 KV (llref evalids: logits at every
position), and the rows first = N_CTX/2 .. N_CTX-2 are scored against the next tokens; the sums
are llama.cpp's (nll, nll^2; ppl = exp(mean), stderr = ppl * sqrt(var / (N - 1))). With --base,
the base model's rows are encoded as llama.cpp's --kl-divergence-base file does (16-bit
log-probabilities over the top 16 nats) and compared as its kl_divergence() does, except that
PPL(base) comes from the base's exact log-probabilities, as mixel's file keeps them (app/eval.h).
"""
import json
import subprocess
import sys

import numpy as np


def run_llref(llref, model, mode, records, extra=()):
    data = b"".join(b"%d\n%s\n" % (len(r), r) for r in records)
    out = subprocess.run([llref, model, mode, *extra], input=data, capture_output=True,
                         check=True).stdout.decode()
    return out.splitlines()


def tokenize(llref, model, text):
    for line in run_llref(llref, model, "tokenize", [text]):
        if line.startswith("BOS"):
            return [int(x) for x in line.split()[1:]]
    raise SystemExit("llref tokenize gave no BOS line")


def chunk_logits(llref, model, chunks, n_ctx):
    """Logits [n_chunks, n_ctx, n_vocab] (float32) for each chunk, one record each."""
    recs = [" ".join(str(t) for t in c).encode() for c in chunks]
    lines = run_llref(llref, model, "evalids",
                      recs, ["-n", "0", "-c", str(n_ctx), "-kv", "f32", "-t", "2"])
    out, cur = [], []
    for line in lines:
        if line.startswith("LOGITS "):
            cur.append(np.array(line.split()[2:], dtype=np.float32))
        elif line == "END":
            out.append(np.stack(cur))
            cur = []
    return np.stack(out)


def log_softmax_nll(row, tok):
    """-log p(tok) as llama.cpp: float max, expf of the shifted logits summed in double."""
    mx = row.max()
    s = np.exp((row - mx).astype(np.float32)).astype(np.float64).sum()
    return -(float(row[tok] - mx) - np.log(s))


def encode_base(row):
    """llama.cpp's 16-bit row: (scale, min_log_prob, q[])."""
    mx, mn = row.max(), row.min()
    mn = np.float32(max(mn, mx - np.float32(16)))
    s = np.exp((row - mx).astype(np.float32)).astype(np.float64).sum()
    lse = np.float32(np.log(s))
    min_lp = np.float32(mn - mx - lse)
    scale = np.float32((mx - mn) / np.float32(65535))
    if scale > 0:
        q = np.where(row > mn, np.rint(np.float32(1) / scale * (row - mn)), 0).astype(np.float64)
    else:
        q = np.zeros(row.shape)
    return float(scale), float(min_lp), q


def main():
    args = sys.argv[1:]
    base = chunks_max = None
    if "--base" in args:
        i = args.index("--base")
        base = args[i + 1]
        del args[i:i + 2]
    if "--chunks" in args:
        i = args.index("--chunks")
        chunks_max = int(args[i + 1])
        del args[i:i + 2]
    llref, model, text_path, n_ctx = args[0], args[1], args[2], int(args[3])
    text = open(text_path, "rb").read()
    toks = tokenize(llref, model, text)
    n_chunk = len(toks) // n_ctx
    if chunks_max:
        n_chunk = min(n_chunk, chunks_max)
    first = n_ctx // 2
    chunks = []
    for c in range(n_chunk):
        ids = toks[c * n_ctx:(c + 1) * n_ctx]
        chunks.append([toks[0]] + ids[1:])  # BOS (the text's first token) replaces the first
    logits = chunk_logits(llref, model, chunks, n_ctx)
    nll = nll2 = 0.0
    count = 0
    for c in range(n_chunk):
        orig = toks[c * n_ctx:(c + 1) * n_ctx]
        for i in range(first, n_ctx - 1):
            v = log_softmax_nll(logits[c, i], orig[i + 1])
            nll += v
            nll2 += v * v
            count += 1
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = float(np.exp(mean))
    res = {"ppl": ppl, "ppl_stderr": float(np.sqrt(var / (count - 1)) * ppl),
           "scored_tokens": count, "chunks": n_chunk, "n_ctx": n_ctx, "n_tokens": len(toks)}
    if base:
        blog = chunk_logits(llref, base, chunks, n_ctx)
        kld, nb, same = [], [], 0
        for c in range(n_chunk):
            orig = toks[c * n_ctx:(c + 1) * n_ctx]
            for i in range(first, n_ctx - 1):
                scale, min_lp, q = encode_base(blog[c, i])
                lpb = scale * q + min_lp
                row = logits[c, i].astype(np.float64)
                mx = row.max()
                lse = np.log(np.exp(row - mx).sum())
                lpq = row - mx - lse
                keep = lpb > -16
                kld.append(float((np.exp(lpb[keep]) * (lpb[keep] - lpq[keep])).sum()))
                nb.append(log_softmax_nll(blog[c, i], orig[i + 1]))
                same += int(np.argmax(row) == np.argmax(lpb))
        kld = np.array(kld)
        n = len(kld)
        ppl_b = float(np.exp(np.mean(nb)))
        res.update({"kld": float(kld.mean()), "kld_stderr": float(kld.std() / np.sqrt(n - 1)),
                    "top1_pct": 100.0 * same / n, "ppl_base": ppl_b, "dppl": ppl - ppl_b})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
