#!/usr/bin/python3
"""tok_clip_ref.py MIXEL VOCAB [SEED N] - `mixel tokenize` on CLIP against a Python reference:
OpenAI CLIP's bpe() loop (merge every occurrence of the lowest-ranked pair, repeat) over the
vocabulary built from bpe_simple_vocab_16e6.txt as simple_tokenizer.py builds it, with
stable-diffusion.cpp's text handling (ASCII whitespace clean-up and lower-casing, its regex on
bytes). Random prompts of words, digits, punctuation, contractions and non-ASCII letters must
give the same ids. Exit 0 / 1."""
import random
import re
import subprocess
import sys

PAT = re.compile(rb"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-zA-Z]+|[0-9]|"
                 rb"[^ \t\n\r\f\va-zA-Z0-9]+", re.IGNORECASE)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Clip:
    def __init__(self, path):
        merges = open(path, encoding="utf-8").read().split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        self.be = bytes_to_unicode()
        vocab = list(self.be.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.enc = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(self, text):
        text = b" ".join(text.split()).lower()  # bytes.split/lower: ASCII only, like sd.cpp
        out = []
        for m in PAT.finditer(text):
            tok = "".join(self.be[b] for b in m.group())
            out += [self.enc.get(w, 0) for w in self.bpe(tok)]
        return out


WORDS = ["a", "photo", "of", "cat", "Dog", "PAINTING", "highly", "detailed", "photorealistic",
         "octane", "render", "4k", "8K", "trending", "artstation", "by", "greg", "rutkowski",
         "it's", "don't", "we'll", "they're", "I'd", "(", ")", "[", "]", ":1.2", ",", ".", "!!",
         "caf\u00e9", "\u00fcber", "\u65e5\u672c", "\U0001F642", "ultra-wide", "f/1.8", "1990s",
         "sci-fi", "x", "  ", "\t", "\n", "<|endoftext|>", "antidisestablishmentarianism"]


def main():
    mixel, vocab = sys.argv[1], sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    clip = Clip(vocab)
    bad = 0
    for _ in range(n):
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 15)))
        if rng.random() < 0.3:
            s = s.replace(" ", "")
        got = subprocess.run([mixel, "tokenize", "-m", vocab, "--no-bos", "-f", "-"],
                             input=s.encode(), capture_output=True, check=True).stdout
        got = [int(x) for x in got.decode().strip("[]\n").split(",") if x.strip()]
        want = clip.encode(s.encode())
        if got != want:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH {s!r}:\n  got  {got}\n  want {want}")
    print(f"CLIP: {n} prompts compared with the reference, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
