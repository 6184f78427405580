#!/usr/bin/python3
"""make_strings.py - writes strings.rec, the texts tests/tok_peer.sh tokenizes with every
llama.cpp vocabulary: hand-picked cases (digits, fractions, CJK, emoji, code, whitespace runs,
contractions, case changes, combining marks, special-token texts, other scripts) and seeded
random mixtures of tricky pieces. Records are "<byte length>\\n<bytes>\\n", the input format of
the peer's tokenize mode. Deterministic: rerunning gives the same file.

Usage: /usr/bin/python3 tests/golden/tok/make_strings.py > tests/golden/tok/strings.rec"""
import random
import sys

FIXED = [
    "ied 4 \u00bd months", "\u00bc cup and \u215e inch", "3\u00bd", "1/2 + 3/4 = 5/4",
    "Hello world", " Hello world", "Hello World!", "hello   world", "Hello, world!\n",
    "I'm sure we'LL see, don't you? They've, she'd, it's", "WE'RE DONE'S",
    "1", "12", "123", "1234", "12345", "1234567", "3.14159", "1,000,000", "0x1F", "v2.0.1",
    "2024-01-31 12:34:56", "$99.99", "\u0661\u0662\u0663 \u0967\u0968", "\u2167 and \u2460",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587\u5b57\u7b26\u4e32",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3002",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u30ab\u30bf\u30ab\u30ca\uff8a\uff9d\uff76\uff78",
    "\U0001f999", "\U0001f44d\U0001f3fd", "\U0001f1eb\U0001f1f7",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "emoji \U0001f642 in text \U0001f680!",
    "def f(x):\n    return x ** 2\n", "int main(void) {\n\treturn 0;\n}\n",
    "{\"key\": [1, 2, 3], \"b\": null}", "for (i = 0; i < n; i++) a[i] += b[i];",
    "https://example.com/path?q=1&r=2#frag", "<div class=\"x\">text</div>", "a->b::c",
    "   ", "\t", "\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n \n", "a  b   c    d", "x\t\ty",
    "line1\nline2\r\nline3", "  leading", "trailing  ", "\u00a0non\u00a0breaking\u00a0",
    "ideographic\u3000space", "em\u2003space", "next\u0085line", "\u2028sep\u2029",
    "<s>", "</s>", "<s>hello</s>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>", "<bos><start_of_turn>",
    "<|eot_id|>", "<unk>", "[INST] hi [/INST]", "<|user|>hi<|end|>",
    "HelloWorld", "iPhone", "McDonald's", "\u00c9COLE \u00e9cole", "\u0130stanbul",
    "CamelCaseIdentifier", "ALLCAPS", "\u0394\u03b5\u03bb\u03c4\u03b1 \u03b1\u03b2\u03b3",
    "e\u0301", "cafe\u0301 na\u0308ive", "\u0915\u094d\u0937\u093f", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u00dcbergr\u00f6\u00dfe \u00c4pfel",
    "\ufb01nance \u1e9e", "\u01c5 \u02b0", "!!!???", "...", "\u2026", "\u00ab\u00bb \u201c\u201d",
    "a.b,c;d:e", "--- *** ===", "((()))", "\\\\", "@user #tag", "100%", "~/path/to file",
    "\u0000nul", "x\u200by", "\ufeffbom", "\U0001d400\U0001d401", "\u00b2\u00b3\u00b9",
    "", " ", "a", "A", "'", "''", "' s", "'s", "'S", "\u00bd",
]

POOL = list("aAbBzZsStTmMdDlLrReEvV0123456789 \t\n\r'.,!?/-_()[]<>\"#$%^&*+=|~`@{};:") + [
    "'s", "'t", "'re", "'ve", "'LL", "'D", "  ", "   ", "\r\n", "\n\n", "\u00e9", "\u00c9",
    "\u0301", "\u65e5", "\u672c", "\u306e", "\u30c6", "\uac00", "\u0416", "\u0436",
    "\U0001F642", "\U0001f999", "\u02b0", "\u01c5", "\u2167", "\u00bd", "\u00a0", "\u2003",
    "\u3000", "\u0085", "\u0660", "\u05d0", "\u0915", "\u093e", "\u00df", "\ufb01", "\u200d",
    "\u2028", "\u2026", "\u3002", "\uff0c", "\u0964", "\u06d4", "\u060c", "hello", "World",
    "123", "4567", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "\u00b5", "\u1f7d",
    "\u0e01", "\u1780", "\uff21",
]


def main():
    rng = random.Random(16)
    texts = list(FIXED)
    while len(texts) < 300:
        texts.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 16))))
    out = sys.stdout.buffer
    for t in texts:
        b = t.encode("utf-8")
        out.write(b"%d\n" % len(b) + b + b"\n")


if __name__ == "__main__":
    main()
