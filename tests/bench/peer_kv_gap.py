#!/usr/bin/env python3
"""peer_kv_gap.py - how far a KV cache type moves the logits, for llama.cpp (the peer) or mixel:
the figures behind test_llama's KV-cache bounds.

    peer_kv_gap.py LLREF|MIXEL MODEL GOLDEN KV        KV: f32, f16 or q8_0

Teacher-forces every case of GOLDEN (a ../shared/refs/llm logits file, made with an F32 cache)
on prompt + greedy ids and compares, like test_llama's check_ggml_quant: prompt rows by max
|diff| over the vocabulary, generated steps by max |diff| over the golden's top 5; prints the
median and worst of each and of all rows, and the rows within 0.05.

LLREF is ../shared/tools/peer-llama's driver (build.sh); llama.cpp needs flash attention for a
quantized V cache, used here for every cache but f32. Its -kv option knows f32 and f16; for q8_0
build a copy whose make_ctx() sets type_k = type_v = GGML_TYPE_Q8_0 when -kv q8_0 is given (two
lines). MIXEL is the mixel binary (mixel logits --all --kv-type KV).

Measured 2026-12-07 on commit 3449ed3's build (AMD EPYC, 2 threads), tiny-mixtral-d256-q4_k:
  llref kv q8_0: all 421 rows median 0.142, worst 5.37, 12 within 0.05
  mixel kv q8_0: the same to 3 digits
llama.cpp refuses a Q8_0 cache for stories260K and tiny-mixtral (head dims 8 and 16 do not hold
a block of 32).
"""
import json
import statistics
import subprocess
import sys

who, model, golden, kv = sys.argv[1:5]
g = json.load(open(golden))
cases = []
for c in g["cases"]:
    ids = c["prompt_ids"] + c["gen_ids"][:-1]
    if who.endswith("llref"):
        r = " ".join(map(str, ids)).encode()
        out = subprocess.run([who, model, "evalids", "-n", "0", "-kv", kv, "-fa",
                              "0" if kv == "f32" else "1", "-t", "2"],
                             input=b"%d\n%s\n" % (len(r), r), capture_output=True,
                             check=True).stdout.decode().splitlines()
        cases.append([[float(x) for x in ln.split()[2:]] for ln in out if ln.startswith("LOGITS")])
    else:
        out = subprocess.run([who, "logits", "-m", model, "--ids", ",".join(map(str, ids)),
                              "--all", "--kv-type", kv, "-c", "2048"], capture_output=True,
                             check=True).stdout
        cases.append(json.loads(out)["logits"])
p, q = [], []
for c, rows in zip(g["cases"], cases):
    n = len(c["prompt_ids"])
    for i in range(n - 1):
        p.append(max(abs(a - b) for a, b in zip(rows[i], c["prompt_logits"][i])))
    for k, t5 in enumerate(c["gen_top5"]):
        q.append(max(abs(rows[n - 1 + k][int(i)] - v) for i, v in t5))
allr = sorted(p + q)
name = who.split("/")[-1]
print("%s kv %s: prompt rows median %.3g worst %.3g; gen steps median %.3g worst %.3g" %
      (name, kv, statistics.median(p), max(p), statistics.median(q), max(q)))
print("%s kv %s: all %d rows median %.3g worst %.3g, %d within 0.05" %
      (name, kv, len(allr), allr[len(allr) // 2], allr[-1], sum(x <= 0.05 for x in allr)))
