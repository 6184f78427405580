#!/usr/bin/python3
"""tok_spm_ref.py MIXEL MODEL [SEED N] - an independent SentencePiece-BPE reference (the
algorithm of llama2.c's run.c encode(): merge the best-scoring adjacent pair, leftmost on ties,
until none is a token; then byte fallback <0xNN>) plus llama.cpp's special-token partition and
space-prefix rule, written from scratch in Python over the GGUF's tokenizer arrays. Random
strings (spaces of all kinds, newlines, accents, CJK, emoji, <s>/</s>/<unk>, U+2581) are
tokenized by both, with and without BOS and parse_special; the ids must be equal. Exit 0 / 1."""
import random
import struct
import subprocess
import sys


def read_gguf_kv(path):
    """The metadata of a GGUF file (v2/v3) as a dict; tensor infos are not read."""
    f = open(path, "rb")
    magic, version = f.read(4), struct.unpack("<I", f.read(4))[0]
    assert magic == b"GGUF" and version in (2, 3)
    _, n_kv = struct.unpack("<QQ", f.read(16))
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
              10: "<Q", 11: "<q", 12: "<d"}

    def rstr():
        n = struct.unpack("<Q", f.read(8))[0]
        return f.read(n)

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = struct.unpack("<IQ", f.read(12))
            return [rval(et) for _ in range(n)]
        fmt = scalar[t]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    kv = {}
    for _ in range(n_kv):
        key = rstr().decode()
        kv[key] = rval(struct.unpack("<I", f.read(4))[0])
    return kv


class Spm:
    def __init__(self, kv):
        self.tokens = kv["tokenizer.ggml.tokens"]
        self.scores = kv.get("tokenizer.ggml.scores", [0.0] * len(self.tokens))
        self.types = kv.get("tokenizer.ggml.token_type", [1] * len(self.tokens))
        self.ids = {}
        for i, t in enumerate(self.tokens):
            self.ids[t] = i  # later ids win, as llama.cpp
        self.bos = kv.get("tokenizer.ggml.bos_token_id", 1)
        self.eos = kv.get("tokenizer.ggml.eos_token_id", 2)
        self.unk = kv.get("tokenizer.ggml.unknown_token_id", 0)
        self.add_bos = kv.get("tokenizer.ggml.add_bos_token", True)
        self.prefix = kv.get("tokenizer.ggml.add_space_prefix", True)
        # control (3), user-defined (4), unknown (2) texts, longest first
        self.special = sorted((i for i, ty in enumerate(self.types) if ty in (2, 3, 4)
                               and self.tokens[i]), key=lambda i: (-len(self.tokens[i]), i))

    def merge(self, text):
        """llama2.c: characters, then best-scoring pair merges; bytes for the leftovers."""
        syms, i = [], 0
        while i < len(text):
            n = [1] * 12 + [2, 2, 3, 4]
            k = min(n[text[i] >> 4], len(text) - i)
            syms.append(text[i:i + k])
            i += k
        while True:
            best, at = None, -1
            for j in range(len(syms) - 1):
                cand = syms[j] + syms[j + 1]
                if cand in self.ids:
                    sc = self.scores[self.ids[cand]]
                    if best is None or sc > best:
                        best, at = sc, j
            if at < 0:
                break
            syms[at:at + 2] = [syms[at] + syms[at + 1]]
        out = []
        for s in syms:
            if s in self.ids:
                out.append(self.ids[s])
            else:
                for b in s:
                    out.append(self.ids.get(b"<0x%02X>" % b, self.ids.get(bytes([b]), self.unk)))
        return out

    def encode(self, text, add_special, parse_special):
        frags = [text] if text else []
        for sid in self.special:
            if not parse_special and self.types[sid] != 4:
                continue
            st, nf = self.tokens[sid], []
            for fr in frags:
                if isinstance(fr, int):
                    nf.append(fr)
                    continue
                parts = fr.split(st)
                for k, p in enumerate(parts):
                    if k:
                        nf.append(sid)
                    if p:
                        nf.append(p)
            frags = nf
        out = [self.bos] if add_special and self.add_bos else []
        prev_special = True
        for fr in frags:
            if isinstance(fr, int):
                out.append(fr)
                prev_special = True
            else:
                t = (b" " if self.prefix and prev_special else b"") + fr
                out += self.merge(t.replace(b" ", "\u2581".encode()))
                prev_special = False
        return out


POOL = ["a", "b", "the", "The", " ", "  ", "\n", "\t", "\r\n", ".", ",", "!", "'s", "1", "42",
        "Hello", "world", "once", "upon", "time", "Lily", "caf\u00e9", "na\u00efve", "\u00fc",
        "\u65e5\u672c", "\ud55c", "\u0416", "\U0001F642", "\u200d", "<s>", "</s>", "<unk>",
        "<0x41>", "\u2581", "x<s", "s>", "\u00a0", "(", ")", "-", "\"", "\u00df", "\u0301"]


def main():
    mixel, model = sys.argv[1], sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 150
    spm = Spm(read_gguf_kv(model))
    bad = 0
    for _ in range(n):
        s = "".join(rng.choice(POOL) for _ in range(rng.randint(0, 12)))
        for flags in ([], ["--no-bos"], ["--parse-special"]):
            got = subprocess.run([mixel, "tokenize", "-m", model, "-f", "-"] + flags,
                                 input=s.encode(), capture_output=True, check=True).stdout
            got = [int(x) for x in got.decode().strip("[]\n").split(",") if x.strip()]
            want = spm.encode(s.encode(), "--no-bos" not in flags, "--parse-special" in flags)
            if got != want:
                bad += 1
                if bad <= 5:
                    print(f"MISMATCH {flags} {s!r}:\n  got  {got}\n  want {want}")
    print(f"{model.split('/')[-1]}: {n * 3} encodings compared with the reference, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
