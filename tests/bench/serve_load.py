#!/usr/bin/env python3
"""serve_load.py - a bounded load test of `mixel serve` on 127.0.0.1: CLIENTS threads each send
REQUESTS/CLIENTS streamed /v1/chat/completions (max_tokens MAX_TOKENS, distinct seeds) one after
another; prints time to first token and total latency percentiles, tokens/s, errors. Standard
library only.

  serve_load.py PORT CLIENTS REQUESTS MAX_TOKENS
"""
import http.client
import json
import sys
import threading
import time


def pct(v, p):
    """The p-th percentile (nearest rank) of the sorted list v."""
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def one(port, seed, max_tokens):
    """One streamed chat request: (ttft s, total s, completion tokens) or raises."""
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"messages": [{"role": "user", "content": "Tell me a story number %d" % seed}],
            "max_tokens": max_tokens, "seed": seed, "stream": True}
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type":
                                                                  "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("status %d: %s" % (r.status, r.read()[:200]))
    ttft, usage, buf, done = None, None, b"", False
    while not done:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        payload = line[6:]
        if payload == b"[DONE]":
            done = True
            break
        ev = json.loads(payload)
        if ttft is None and ev["choices"][0]["delta"].get("content"):
            ttft = time.time() - t0
        if "usage" in ev:
            usage = ev["usage"]
    c.close()
    if not done or usage is None:
        raise RuntimeError("stream ended without [DONE] or usage")
    return ttft if ttft is not None else time.time() - t0, time.time() - t0, \
        usage["completion_tokens"]


def main():
    port, clients, requests, max_tokens = (int(a) for a in sys.argv[1:5])
    per = requests // clients
    ttfts, totals, errors, tokens = [], [], [], [0]
    lock = threading.Lock()

    def client(ci):
        for k in range(per):
            try:
                a, b, n = one(port, 1000 * ci + k, max_tokens)
                with lock:
                    ttfts.append(a)
                    totals.append(b)
                    tokens[0] += n
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    errors.append(repr(e)[:200])
    t0 = time.time()
    th = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.time() - t0
    ttfts.sort()
    totals.sort()
    print("requests %d (%d clients x %d), max_tokens %d, errors %d, wall %.2f s"
          % (per * clients, clients, per, max_tokens, len(errors), wall))
    print("time to first token s: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f"
          % (pct(ttfts, 50), pct(ttfts, 90), pct(ttfts, 99), ttfts[-1] if ttfts else 0))
    print("total latency s:       p50 %.3f  p90 %.3f  p99 %.3f  max %.3f"
          % (pct(totals, 50), pct(totals, 90), pct(totals, 99), totals[-1] if totals else 0))
    print("generated tokens %d, %.1f tokens/s over the run" % (tokens[0], tokens[0] / wall))
    for e in errors[:5]:
        print("error: " + e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
