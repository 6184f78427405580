#!/usr/bin/env python3
"""make_harmony.py - what gpt-oss's published chat template renders, for tests/test_gptoss_harmony.c.

usage: python3 make_harmony.py TEMPLATE.jinja > harmony_renders.txt
  TEMPLATE: openai/gpt-oss-120b's chat_template.jinja (llama.cpp ships it as
  models/templates/openai-gpt-oss-120b.jinja; the 20b one is the same text).

Renders a fixed set of conversations with jinja2 as Hugging Face's apply_chat_template does
(trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now pinned to 2026-12-07
so the output does not depend on the day). Output: per case a header line
"CASE <name> <add_generation_prompt 0/1> <reasoning_effort or ->" and the messages as
"MSG <role> <json string>" lines, then "RENDER <json string>"; the C test parses the same file.
"""
import json
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

SYS = "You are a helpful assistant"
CASES = [
    ("user_only", True, None, [("user", "Hello")]),
    ("full_high", True, "high", [("system", SYS), ("user", "Hello"), ("assistant", "Hi there"),
                                 ("user", "Who are you?")]),
    ("training_low", False, "low", [("system", SYS), ("user", "Hello"),
                                    ("assistant", "Hi there")]),
    ("empty_system", True, "medium", [("system", ""), ("user", "2+2?"), ("assistant", "4"),
                                      ("user", "And\n  3+3?  ")]),
    ("unicode", True, None, [("user", "Grüße, 世界 🎉 <b>x</b>")]),
]


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def main():
    src = open(sys.argv[1], encoding="utf-8").read()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "2026-12-07"
    t = env.from_string(src)
    for name, gen, effort, msgs in CASES:
        kw = {"messages": [{"role": r, "content": c} for r, c in msgs],
              "add_generation_prompt": gen, "bos_token": "<|startoftext|>",
              "eos_token": "<|return|>"}
        if effort:
            kw["reasoning_effort"] = effort
        out = t.render(**kw)
        print("CASE %s %d %s" % (name, int(gen), effort or "-"))
        for r, c in msgs:
            print("MSG %s %s" % (r, json.dumps(c, ensure_ascii=False)))
        print("RENDER %s" % json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
