#!/usr/bin/env python3
"""Writes the small benchmark files of tests/data/eval/ (committed; rerun to regenerate).

Every multiple-choice task pairs a short TinyStories-style context with its natural
continuation (the right answer) and distractors made of the same words in a shuffled order,
so a model that learned English (stories260K) beats chance clearly and a random-weight model
(tiny-mixtral) does not. The same tasks are written in every format mixel eval mc reads.
"""
import json, random, struct, os

STORIES = [
    ("Once upon a time, there was a little girl named Lily.", "She loved to play outside in the park."),
    ("One day, a little boy named Tim went to the park.", "He saw a big red ball on the grass."),
    ("The cat sat on the mat.", "It was a sunny day and the cat was happy."),
    ("Lily wanted to go outside.", "Her mom said she could play in the garden."),
    ("Tom had a small dog.", "The dog liked to run and jump with Tom."),
    ("Sue found a pretty flower.", "She gave the flower to her mom."),
    ("The bird was in the tree.", "It sang a happy song all day."),
    ("Ben wanted to play with his toy car.", "He looked for it under the bed."),
    ("Mia and her friend went to the beach.", "They built a big sand castle."),
    ("The sun was hot.", "Tim and Lily went to get some ice cream."),
    ("Once upon a time, there was a big bear.", "The bear lived in a big forest."),
    ("Anna had a red hat.", "She wore it every day to school."),
    ("The little fish swam in the sea.", "It was looking for a friend to play with."),
    ("Max was a happy dog.", "He liked to play with his ball in the yard."),
    ("One day, Lily saw a cat.", "The cat was sad because it was lost."),
    ("Tim liked to eat apples.", "His mom gave him a big red apple."),
    ("It was a cold day.", "Sara put on her warm coat and went outside."),
    ("The boy had a new kite.", "He went to the park to fly it."),
    ("Lucy had a big box of toys.", "She shared her toys with her friend."),
    ("The frog sat on a log.", "It jumped into the pond with a big splash."),
]

def shuffles(words, rng, n):
    out = []
    while len(out) < n:
        w = words[:]
        rng.shuffle(w)
        s = " ".join(w)
        if w != words and s not in out:
            out.append(s)
    return out

def tasks(seed=7):
    rng = random.Random(seed)
    res = []
    for ctx, right in STORIES:
        words = right.rstrip(".").split(" ")
        wrong = [s + "." for s in shuffles(words, rng, 3)]
        label = rng.randrange(4)
        endings = wrong[:label] + [right] + wrong[label:]
        res.append((ctx, endings, label))
    return res

def bstr(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    T = tasks()
    with open(os.path.join(here, "hellaswag.txt"), "w") as f:
        for ctx, endings, label in T:
            f.write("\n".join([ctx, str(label)] + endings) + "\n")
    with open(os.path.join(here, "arc.jsonl"), "w") as f:
        for ctx, endings, label in T:
            f.write(json.dumps({"question": ctx, "choices": endings, "answer": label}) + "\n")
    # llama.cpp's multiple-choice binary: n, offsets, then question, mc1, mc2 per task
    blobs = []
    for ctx, endings, label in T:
        b = bstr(ctx) + struct.pack("<I", len(endings)) + b"".join(bstr(e) for e in endings)
        b += struct.pack("<%di" % len(endings), *[int(i == label) for i in range(len(endings))])
        b += struct.pack("<I", 0)  # mc2: no answers
        blobs.append(b)
    pos, offs = 4 + 4 * len(blobs), []
    for b in blobs:
        offs.append(pos)
        pos += len(b)
    with open(os.path.join(here, "mc.bin"), "wb") as f:
        f.write(struct.pack("<I", len(blobs)) + struct.pack("<%dI" % len(offs), *offs))
        f.write(b"".join(blobs))
    # MMLU CSV (quoted fields with commas and a newline, as Hendrycks' files have)
    letters = "ABCD"
    def q(s):
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s
    with open(os.path.join(here, "stories_test.csv"), "w") as f:
        for i, (ctx, endings, label) in enumerate(T):
            question = ctx + ("\nWhat comes next?" if i % 5 == 0 else " What comes next?")
            f.write(",".join(q(x) for x in [question] + endings + [letters[label]]) + "\n")
    # Winogrande: the right name in the blank is the one the story is about
    wino = [
        ("Lily had a red ball. Lily played with _ all day.", "the ball", "the sky", 1),
        ("Tim was hungry. Tim ate _ for lunch.", "the rock", "an apple", 2),
        ("The dog saw a cat. The dog ran after _ in the park.", "the cat", "the cloud", 1),
        ("Mia went to the beach. Mia swam in _ with her mom.", "the book", "the sea", 2),
        ("Ben had a toy car. Ben played with _ on the floor.", "his car", "his sun", 1),
        ("Anna was cold. Anna put on _ and felt warm.", "a bird", "her coat", 2),
    ]
    with open(os.path.join(here, "winogrande.csv"), "w") as f:
        f.write("index,sentence,option1,option2,answer\n")
        for i, (s, a, b, ans) in enumerate(wino):
            f.write("%d,%s,%s,%s,%d\n" % (i, q(s), a, b, ans))
    # GSM8K-style questions (answers end with #### N)
    gsm = [
        ("Tom has 3 apples and buys 4 more. How many apples does he have?", "3 + 4 = 7\n#### 7"),
        ("A box holds 1,200 pens. How many pens are in 2 boxes?", "1,200 * 2 = 2,400\n#### 2,400"),
        ("Lily had 10 sweets and ate 4. How many are left?", "10 - 4 = 6\n#### 6"),
    ]
    with open(os.path.join(here, "gsm8k.jsonl"), "w") as f:
        for question, answer in gsm:
            f.write(json.dumps({"question": question, "answer": answer}) + "\n")

if __name__ == "__main__":
    main()
