#!/usr/bin/env python3
"""infotext_ref.py - mx_sd_infotext_parse against AUTOMATIC1111's parse rules on random text.

The oracle below restates A1111's parse_generation_parameters (modules/infotext_utils.py,
v1.10) with the same regex and the same json-based unquote, minus what mixel keeps differently
on purpose: "WxH" values of keys other than Size stay as one string (A1111 splits them into
key-1/key-2), and the typed fields (Steps, Seed, Size, ...) are read into numbers. Inputs are
random mixes of prompt lines, "Negative prompt:" lines and parameter lines built from tricky
keys, separators, quoted/broken-quoted values and junk, in valid UTF-8 with characters whose
Unicode classes C approximates the same way (see core/diffusion/infotext.h).

usage: infotext_ref.py DRIVER SEED COUNT
"""
import json
import random
import re
import struct
import subprocess
import sys

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def a1111_parse(x):
    """prompt, negative and the ordered key -> value dict, by A1111's rules."""
    prompt, negative, done = "", "", False
    *lines, last = x.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res = {}
    for k, v in RE_PARAM.findall(last):
        if len(v) == 0:
            continue  # A1111: v[0] raises IndexError, the pair is dropped
        if v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        res[k] = v
    return prompt, negative, res


def typed(key, v):
    """The canonical text of a typed field's value, or None when it does not read as one."""
    if key in ("Steps", "Clip skip"):
        m = re.fullmatch(r"[ \t\n\r\f\v\x1c-\x1f]*([+-]?[0-9]+)[ \t\n\r\f\v\x1c-\x1f]*", v)
        if m and 1 <= int(m.group(1)) <= 0x7FFFFFFF:
            return str(int(m.group(1)))
        return None
    if key == "Seed":
        m = re.fullmatch(r"[ \t\n\r\f\v\x1c-\x1f]*([0-9]+)[ \t\n\r\f\v\x1c-\x1f]*", v)
        if m and int(m.group(1)) < 2**64:
            return str(int(m.group(1)))
        return None
    if key == "Size":
        m = re.fullmatch(r"([0-9]+)x([0-9]+)\n?", v)
        if m and int(m.group(1)) <= 0x7FFFFFFF and int(m.group(2)) <= 0x7FFFFFFF:
            return "%dx%d" % (int(m.group(1)), int(m.group(2)))
        return None
    return "str"


STR_FIELDS = ("Sampler", "Schedule type", "Model hash", "Model", "RNG", "Version")


def expected(x):
    prompt, negative, res = a1111_parse(x)
    fields, extra = {}, []
    for k, v in res.items():
        if k in ("Steps", "Seed", "Size", "Clip skip"):
            t = typed(k, v)
            if t is not None:
                fields[k] = t
                continue
        elif k in STR_FIELDS:
            fields[k] = v
            continue
        extra.append([k, v])
    return {"prompt": prompt, "negative": negative, "fields": fields, "extra": extra}


KEYS = ["Steps", "Seed", "Size", "Model", "Sampler", "Clip skip", "Ab", "Key x", "A-b/c", "x",
        "Lora hashes", "caf\u00e9 \u732b", "_k", "9lives", "Hires resize", "Ab", "Ab"]
SEPS = [": ", ":", " : ", ":  ", ":\t", ": ,"]
JOINS = [", ", ",", " ,", "", ",,", "; ", " "]
WORDS = ["20", "7", "512x768", "0", "-3", " 8 ", "abc", "Euler a", "v1-5", "x:y", "a\"b",
         "\"q\"", "\"a\\qb\"", "\"\"", "\"", "\"a\"b\"", "\"unterminated", "\\", "a\\\"b",
         "\u732b", "64x64 ", "1e3", "\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\"", "18446744073709551616"]
JUNK = [" ", "\t", "!", ":", ",", "\"", "\\", "-", "/", "x", "\u00e9", "\r"]
PROMPT_BITS = ["a cat", "oil, painting", "Negative prompt:", "Negative prompt: ugly",
               "  spaced  ", "", "Steps: 1, Seed: 2", "k: v, k2: v2, k3: v3", "\u732b\u00e9",
               "(x:1.2)", "\r", "\t"]


def rand_value(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(WORDS)
    if r < 0.75:
        s = "".join(rng.choice("ab ,:\"\\\n\t\u00e9\u732b") for _ in range(rng.randint(0, 8)))
        return json.dumps(s, ensure_ascii=rng.random() < 0.5)
    return "".join(rng.choice(WORDS + JUNK) for _ in range(rng.randint(0, 4)))


def rand_params(rng):
    parts = []
    used = set()
    for _ in range(rng.randint(0, 8)):
        k = rng.choice(KEYS)
        if k in ("Steps", "Seed", "Size", "Clip skip"):
            if k in used:  # typed keys once: mixel keeps typed fields out of the extras order
                continue
            used.add(k)
        parts.append(k + rng.choice(SEPS) + rand_value(rng))
        if rng.random() < 0.15:
            parts.append("".join(rng.choice(JUNK) for _ in range(rng.randint(1, 4))))
    out = ""
    for i, p in enumerate(parts):
        out += (rng.choice(JOINS) if i else "") + p
    return out


def rand_text(rng):
    lines = [rng.choice(PROMPT_BITS) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.8:
        lines.append(rand_params(rng))
    text = "\n".join(lines)
    if rng.random() < 0.3:
        text = rng.choice([" ", "\n", "\r\n", "\t"]) + text + rng.choice([" ", "\n", "\r\n"])
    return text


def main():
    drv, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    texts = [rand_text(rng) for _ in range(count)]
    data = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    out = subprocess.run([drv], input=data, stdout=subprocess.PIPE, check=True).stdout
    got = [json.loads(line) for line in out.decode().splitlines()]
    if len(got) != len(texts):
        print("FAIL: driver gave %d results for %d texts" % (len(got), len(texts)))
        return 1
    bad = 0
    n_params = 0
    for t, g in zip(texts, got):
        want = expected(t)
        n_params += len(want["fields"]) + len(want["extra"]) >= 3
        if g != want:
            bad += 1
            if bad <= 5:
                print("MISMATCH for %r\n  want %s\n  got  %s" % (t, json.dumps(want),
                                                                json.dumps(g)))
    print("%d texts (%d with a parameters line), %d mismatches" % (count, n_params, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
