#!/usr/bin/python3
"""iq_logits_peer.py - mixel's logits on the IQ-quantized tiny models of tests/golden/iq against
llama.cpp's (the committed peer-<type>.txt.gz, or recomputed with llref when given).

usage: iq_logits_peer.py MIXEL GOLDEN_DIR TYPE MEDIAN MIN_CLOSE WORST [LLREF]

Per prompt of GOLDEN_DIR/prompts.txt, teacher-forced on the peer's 16 greedy ids: mixel's rows
(`mixel logits --all`, F32 KV cache like the peer's) against the peer's full prompt rows and its
top-1 logit at each generation step. The rule is tests/test_llama.c's check_ggml_quant (README
of ../shared/refs/llm, "robust checks": the random tiny MoE is chaotic once activations are
rounded): the median row's max |diff| under MEDIAN, at least MIN_CLOSE of the rows within 0.05,
no row off by WORST or more, and the argmax equal to the peer's wherever its top-1/top-2 margin
exceeds 0.5 (all but 3 % of those steps). Exit 0 pass, 1 fail.
"""
import gzip
import json
import os
import subprocess
import sys


def parse_peer(text):
    """[(ids, prompt rows, [(gen id, top1, top2)])] from llref eval output."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "TOK":
            out.append(([int(v) for v in f[1:]], [], []))
        elif f[0] == "LOGITS":
            out[-1][1].append([float(v) for v in f[2:]])
        elif f[0] == "GEN":
            out[-1][2].append((int(f[1]), float(f[2]), float(f[3])))
    return out


def main():
    mixel, gdir, qtype = sys.argv[1], sys.argv[2], sys.argv[3]
    max_median, min_close, max_worst = (float(v) for v in sys.argv[4:7])
    llref = sys.argv[7] if len(sys.argv) > 7 else None
    # "iq2_s": the 256-wide model; "d512-iq2_s": a wider one (tests/golden/iq/make_models.py)
    model = os.path.join(gdir, "tiny-mixtral-%s.gguf"
                         % (qtype if qtype.startswith("d") else "d256-" + qtype))
    with gzip.open(os.path.join(gdir, "peer-%s.txt.gz" % qtype), "rt") as f:
        golden = f.read()
    if llref:
        recs = b""
        for line in open(os.path.join(gdir, "prompts.txt"), "rb"):
            if line.strip():
                recs += b"%d\n%s\n" % (len(line.strip()), line.strip())
        now = subprocess.run([llref, model, "evalids", "-n", "16", "-kv", "f32", "-c", "512",
                              "-t", "2"], input=recs, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, check=True).stdout.decode()
        a, b = parse_peer(golden), parse_peer(now)
        # the peer's own kernels are chaotic across CPUs too: its rows must match the golden's
        # within the same rule's worst bound, its ids exactly where the margin is clear
        for (ia, ra, ga), (ib, rb, gb) in zip(a, b):
            assert ia == ib
            for x, y in zip(ra, rb):
                if max(abs(p - q) for p, q in zip(x, y)) >= max_worst:
                    sys.exit("peer now differs from its golden by >= %g" % max_worst)
        print("peer recomputed: agrees with its golden within %g" % max_worst)
    cases = parse_peer(golden)
    diffs, n_margin, n_margin_ok = [], 0, 0
    for ids, rows, gen in cases:
        n = len(ids)
        all_ids = ids + [g[0] for g in gen[:-1]]
        r = subprocess.run([mixel, "logits", "-m", model, "--ids",
                            ",".join(str(i) for i in all_ids), "--all", "--kv-type", "f32",
                            "-c", "512", "-t", "2", "-q"], stdout=subprocess.PIPE, check=True)
        got = json.loads(r.stdout)["logits"]
        assert len(got) == len(all_ids)
        for i, l in enumerate(got):
            if i < n - 1:
                d = max(abs(p - q) for p, q in zip(l, rows[i]))
            else:
                gid, top1, top2 = gen[i - (n - 1)]
                d = abs(l[gid] - top1)
                if top1 - top2 > 0.5:
                    n_margin += 1
                    n_margin_ok += max(range(len(l)), key=lambda k: (l[k], -k)) == gid
            diffs.append(d)
    s = sorted(diffs)
    median, worst = s[len(s) // 2], s[-1]
    close = sum(d <= 0.05 for d in diffs)
    print("%s: %d rows, median max|diff| %.3g, worst %.3g, %d within 0.05, argmax %d/%d where "
          "margin > 0.5" % (qtype, len(diffs), median, worst, close, n_margin_ok, n_margin))
    ok = True
    if not median < max_median:
        print("FAIL: median %.3g >= %g" % (median, max_median)); ok = False
    if close < min_close * len(diffs):
        print("FAIL: only %d of %d rows within 0.05" % (close, len(diffs))); ok = False
    if worst >= max_worst:
        print("FAIL: worst row %.3g >= %g" % (worst, max_worst)); ok = False
    if n_margin_ok < n_margin - n_margin * 3 // 100:
        print("FAIL: argmax differs where the margin is clear"); ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
