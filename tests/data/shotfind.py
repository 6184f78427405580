#!/usr/bin/python3
"""shotfind.py - finds a given image (a generated PNG) in a terminal screenshot, drawn SIZE px
square at a cell position, and checks that it is there. Python stdlib only (shotcheck.py's PNG
reader).

usage: shotfind.py SHOT.png IMAGE.png SIZE CELL_W CELL_H [MAX_MAE]

The image scaled to SIZE x SIZE is compared, at 24 x 24 sample points (the centres of its cells,
away from resampled edges), with the screenshot at every cell position; the best position's mean
absolute difference (over samples and channels) must be below MAX_MAE (default 24: sixel
palettes and the terminal's own scaling move colours by a few levels, a wrong place or a missing
image by far more), and there the Pearson correlation of the image's colours with the
screenshot's (3x3 means, undoing the sixel dithering) must be above 0.6 in each channel: a flat
area of the right tint is close on average but has none of the picture's structure (the same
image mirrored or flipped scores about 0.1). The image must not be flat (a flat one would match
any flat area: the test would prove nothing). Prints what it measured; exits 0 when found, 1 when
not.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shotcheck import read_png  # noqa: E402


def block(rows, x, y):
    """The mean colour of the 3x3 pixels around (x, y): undoes the sixel encoder's dithering."""
    acc = [0, 0, 0]
    for yy in (y - 1, y, y + 1):
        for xx in (x - 1, x, x + 1):
            c = rows[yy][xx]
            acc[0] += c[0]
            acc[1] += c[1]
            acc[2] += c[2]
    return [v / 9 for v in acc]


def corr(a, b):
    """Pearson correlation of two equally long lists (0 when either is flat)."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return 0.0
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (va * vb) ** 0.5


def main():
    shot, img = sys.argv[1], sys.argv[2]
    size, cw, ch = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    max_mae = float(sys.argv[6]) if len(sys.argv) > 6 else 24.0
    sw, sh, srows = read_png(shot)
    iw, ih, irows = read_png(img)
    n = 24
    pts = []  # (dx, dy, colour) in display pixels
    for j in range(n):
        for i in range(n):
            u, v = (i + 0.5) / n, (j + 0.5) / n
            pts.append((int(u * size), int(v * size), irows[int(v * ih)][int(u * iw)]))
    mean = [sum(p[2][k] for p in pts) / len(pts) for k in range(3)]
    spread = sum(abs(p[2][k] - mean[k]) for p in pts for k in range(3)) / (3 * len(pts))
    if spread < 8:
        print("the image is flat (mean deviation %.1f): nothing to find" % spread)
        return 1
    best = None
    for y in range(0, sh - size + 1, ch):
        for x in range(0, sw - size + 1, cw):
            d = 0
            for dx, dy, c in pts:
                s = srows[y + dy][x + dx]
                d += abs(s[0] - c[0]) + abs(s[1] - c[1]) + abs(s[2] - c[2])
            mae = d / (3 * len(pts))
            if best is None or mae < best[0]:
                best = (mae, x, y)
    # at the best place: the picture's structure must be there, not only its average colour
    # (a flat area of the right tint has a small difference too, but no correlation)
    got = [block(srows, best[1] + min(max(dx, 1), size - 2), best[2] + min(max(dy, 1), size - 2))
           for dx, dy, _ in pts]
    r = min(corr([p[2][k] for p in pts], [g[k] for g in got]) for k in range(3))
    print("best match at (%d, %d): mean difference %.1f, correlation %.2f (image spread %.1f)" %
          (best[1], best[2], best[0], r, spread))
    return 0 if best[0] < max_mae and r > 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
