#!/usr/bin/python3
"""tok_split_regex.py DRIVER [SEED N] - the pre-tokenizer splitters of core/text/tok_split.c and
(tekken) the regex engine of core/text/tok_regex.c against the real regexes (Python's `regex` module, which has \\p{..} classes):
random strings from a pool of tricky characters (case, digits, every kind of space, CR LF,
contractions, combining marks, Lm/Lt/Lo/Nl/No letters and numbers, CJK, emoji) are split by both
and must give the same pieces. CLIP's splitter is checked against stable-diffusion.cpp's
std::regex (ASCII classes, on bytes) with Python's `re`. Exit 0 all equal, 1 a mismatch."""
import random
import re
import subprocess
import sys

import regex

TAIL = r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
# tekken as llama.cpp adapts it for std::regex (its splits are what the models run with): an
# "upper" letter is any letter but a-z, a "lower" one any letter but A-Z
UP, LO = r"""(?:(?=\p{L})[^a-z])""", r"""(?:(?=\p{L})[^A-Z])"""
BPE = {
    0: r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    1: r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
       r"""| ?[^\s\p{L}\p{N}]+[\r\n]*""" + TAIL,
    2: r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
       r"""| ?[^\s\p{L}\p{N}]+[\r\n]*""" + TAIL,
    3: r"""[^\r\n\p{L}\p{N}]?""" + UP + "*" + LO + "+|" + r"""[^\r\n\p{L}\p{N}]?""" + UP + "+"
       + LO + "*" + r"""|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*""" + TAIL,
}
CLIP = re.compile(rb"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-zA-Z]+|[0-9]|"
                  rb"[^ \t\n\r\f\va-zA-Z0-9]+", re.IGNORECASE)
POOL = list("aAbBzZsStTmMdDlLrReEvV019 \t\n\r'.,!?/-_()[]<>\"#") + [
    "'s", "'t", "'re", "'ve", "'LL", "'D", "  ", "\r\n", "\u00e9", "\u00c9", "\u0301", "\u65e5",
    "\u672c", "\uac00", "\u0416", "\u0436", "\U0001F642", "\u02b0", "\u01c5", "\u2167", "\u00bd",
    "\u00a0", "\u2003", "\u3000", "\u0085", "\u0660", "\u05d0", "\u0915", "\u093e", "\u00df",
    "\ufb01", "\u200d", "\u2028"]
CLIP_POOL = [b"a", b"B", b"z", b"'", b"'s", b"'T", b"'re", b"'ll", b"1", b"9", b" ", b"\t", b"\n",
             b",", b"!", b"<|endoftext|>", b"<|startoftext|>", b"<|", b"\xc3\xa9", b"\xff", b"("]


def main():
    drv = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    cases = []
    for _ in range(n):
        s = "".join(rng.choice(POOL) for _ in range(rng.randint(0, 25)))
        for pre in BPE:
            want = [len(s[:m.end()].encode()) for m in regex.finditer(BPE[pre], s)]
            cases.append((pre, s.encode(), " ".join(map(str, want))))
        b = b"".join(rng.choice(CLIP_POOL) for _ in range(rng.randint(0, 20)))
        cases.append((4, b, " ".join(f"{m.start()}:{m.end()}" for m in CLIP.finditer(b))))
    inp = "".join(f"{pre} {s.hex()}\n" for pre, s, _ in cases).encode()
    out = subprocess.run([drv], input=inp, capture_output=True, check=True).stdout.decode()
    bad = 0
    for (pre, s, want), got in zip(cases, out.split("\n")):
        if got.strip() != want:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH pre {pre} {s!r}:\n  got  {got.strip()}\n  want {want}")
    print(f"{len(cases)} splits compared with the regexes, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
