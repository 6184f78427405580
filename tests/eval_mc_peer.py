#!/usr/bin/env python3
"""eval_mc_peer.py - `mixel eval mc`'s per-choice log-likelihoods against llama.cpp's logits.

Usage: eval_mc_peer.py MIXEL MODEL GOLDEN.json WORKDIR

The longest golden prompt of ../shared/refs/llm/logits-<model>.json (85 tokens, llama.cpp's
logits at every position) is cut at word boundaries into tasks whose right choice continues the
golden text, so the log-probability of every one of its tokens is in the golden file: llama.cpp's
number. The wrong choices are other words (their scores are not compared). The tasks are written
as HellaSwag text, JSONL (arc) and Winogrande CSV; mixel scores them with --json-items, and this
script recomputes each right choice's score from the golden logits with llama-perplexity's rules
(the span after the choices' common prefix; Winogrande's partial evaluation), using mixel's own
tokenizer (`mixel tokenize`, itself checked against llama.cpp by tok_spm_ref.sh) for the token
counts. Prints one line per compared choice and exits 1 on a mismatch.
"""
import json, math, os, subprocess, sys

TOL = 5e-4  # a sum of up to ~20 log-probs; the F32 model's logits match llama.cpp to ~1e-5


def tokenize(mixel, model, text):
    out = subprocess.run([mixel, "tokenize", "-m", model, text], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def logp(row, tok):
    m = max(row)
    return row[tok] - m - math.log(sum(math.exp(x - m) for x in row))


def common(seqs):
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


def main():
    mixel, model, golden, work = sys.argv[1:5]
    case = max(json.load(open(golden))["cases"], key=lambda c: len(c["prompt_ids"]))
    text, ids, rows = case["prompt"], case["prompt_ids"], case["prompt_logits"]

    def span_sum(a, b):  # golden sum of log p(ids[j]) for j in [a, b)
        return sum(logp(rows[j - 1], ids[j]) for j in range(a, b))

    words = text.split(" ")
    distract = ["purple", "seven tables", "under the quiet spoon", "jumped"]
    # HellaSwag / arc tasks: context = the first w words, right ending = the next 3-9 words
    tasks = []
    for t, w in enumerate([3, 6, 10, 14, 20, 25]):
        n_end = 3 + (t * 2) % 7
        ctx, right = " ".join(words[:w]), " ".join(words[w:w + n_end])
        endings = [right] + distract[:3]
        label = t % 4
        endings[0], endings[label] = endings[label], endings[0]
        tasks.append((ctx, endings, label))
    with open(os.path.join(work, "peer_hs.txt"), "w") as f:
        for ctx, endings, label in tasks:
            f.write("\n".join([ctx, str(label)] + endings) + "\n")
    with open(os.path.join(work, "peer_arc.jsonl"), "w") as f:
        for ctx, endings, label in tasks:
            f.write(json.dumps({"question": ctx, "choices": endings, "answer": label}) + "\n")
    # Winogrande: the blank holds word w; long and short tails (partial evaluation on and off)
    wino = []
    for w, n_tail in [(4, 8), (9, 12), (12, 2), (18, 6), (7, 0), (15, 1)]:
        tail = "".join(" " + x for x in words[w + 1:w + 1 + n_tail])
        first, choice = " ".join(words[:w]) + " ", words[w]
        wino.append((first, choice, tail))
    with open(os.path.join(work, "peer_wino.csv"), "w") as f:
        for i, (first, choice, tail) in enumerate(wino):
            s = (first + "_" + tail).replace('"', '""')
            f.write('%d,"%s",%s,%s,%d\n' % (i, s, choice, "zebra", 1))

    bad = 0

    def check(what, got_sum, got_n, want_sum, want_n):
        nonlocal bad
        ok = got_n == want_n and abs(got_sum - want_sum) <= TOL
        bad += not ok
        print("%s %s: mixel %.6f over %d tokens, llama.cpp %.6f over %d" %
              ("ok  " if ok else "FAIL", what, got_sum, got_n, want_sum, want_n))

    for fname, fmt in [("peer_hs.txt", "hellaswag"), ("peer_arc.jsonl", "arc")]:
        items = run(mixel, model, os.path.join(work, fname), fmt, work)
        for it in items:  # HellaSwag's are in llama.cpp's random order
            ctx, endings, label = tasks[it["task"]]
            seqs = [tokenize(mixel, model, ctx + " " + e) for e in endings]
            full = seqs[label]
            if full != ids[:len(full)]:
                sys.exit("tokenization of a right choice is not a prefix of the golden ids")
            cp = common(seqs)
            check("%s task %d" % (fmt, it["task"]), it["logprob_sum"][label],
                  it["tokens"][label], span_sum(cp, len(full)), len(full) - cp)
    items = run(mixel, model, os.path.join(work, "peer_wino.csv"), "winogrande", work)
    for it in items:
        first, choice, tail = wino[it["task"]]
        seqs = [tokenize(mixel, model, first + c + tail) for c in (choice, "zebra")]
        full = seqs[0]
        if full != ids[:len(full)]:
            sys.exit("tokenization of a Winogrande sentence is not a prefix of the golden ids")
        cp = common(seqs)
        skip = len(seqs[0]) - cp > 3 and len(seqs[1]) - cp > 3
        base = len(tokenize(mixel, model, first + choice)) if skip else cp
        last = 1 if len(full) - base > 1 else 0
        check("winogrande task %d (%s)" % (it["task"], "partial" if skip else "whole"),
              it["logprob_sum"][0], it["tokens"][0], span_sum(base, len(full) - last),
              len(full) - last - base)
    sys.exit(1 if bad else 0)


def run(mixel, model, path, fmt, work):
    items = os.path.join(work, "items.jsonl")
    subprocess.run([mixel, "eval", "mc", "-m", model, "-f", path, "--format", fmt, "-t", "2",
                    "--kv-type", "f32", "-q", "--json-items", items], check=True,
                   stdout=subprocess.DEVNULL)
    return [json.loads(l) for l in open(items)]


if __name__ == "__main__":
    main()
