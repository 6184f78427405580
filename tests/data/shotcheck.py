#!/usr/bin/python3
"""shotcheck.py - finds the quadrants test image (tests/data/quadrants.png) in a terminal
screenshot and checks its size and colours. Python stdlib only (zlib): /usr/bin/python3 has no PIL.

usage: shotcheck.py SHOT.png WIDTH HEIGHT TOL [IGNORE_BOTTOM_PX [R,G,B|- [X,Y]]]

Pixels within 64 (max over channels) of one of the four quadrant colours are "image"; the bounding
box of the rows and columns holding at least 16 of them (above the last IGNORE_BOTTOM_PX rows,
where tmux's status line is) must be WIDTH x HEIGHT within 3 px and start in the first column; the
mean colour of each quadrant's interior (15 % inset, away from resampled edges) must be within TOL
of the source colour.
R,G,B replaces the bottom-right quadrant's expected colour (quadrants_rgba.png composited over
the terminal's background); X,Y is where the image's top-left pixel must be (within 2 px)
instead of the first column. Prints what it measured; exits 0 when it matches, 1 when not, 2 on
a bad PNG.
"""
import struct
import sys
import zlib

QUADS = ((220, 40, 40), (40, 200, 70), (40, 70, 220), (240, 220, 40))


def read_png(path):
    """Returns (w, h, rows) with rows as lists of (r, g, b); 8-bit or palette PNGs, no interlace."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, plte = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            plte = [tuple(body[i:i + 3]) for i in range(0, len(body), 3)]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if inter:
        raise ValueError("interlaced PNG not supported")
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bits = depth * chans
    stride = (w * bits + 7) // 8
    bpp = max(1, bits // 8)
    raw = zlib.decompress(idat)
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        px = []
        for x in range(w):
            if depth == 16:
                s = [line[(x * chans + k) * 2] for k in range(chans)]
            elif depth == 8:
                s = list(line[x * chans:(x + 1) * chans])
            else:  # palette or grey below 8 bits
                bit = x * depth
                s = [(line[bit // 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1)]
            if ctype == 3:
                px.append(plte[s[0]])
            elif ctype in (0, 4):
                v = s[0] if depth >= 8 else s[0] * 255 // ((1 << depth) - 1)
                px.append((v, v, v))
            else:
                px.append(tuple(s[:3]))
        rows.append(px)
    return w, h, rows


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    path, ew, eh, tol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ignore = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    quads = list(QUADS)
    if len(sys.argv) > 6 and sys.argv[6] != "-":
        quads[3] = tuple(int(v) for v in sys.argv[6].split(","))
    at = tuple(int(v) for v in sys.argv[7].split(",")) if len(sys.argv) > 7 else None
    try:
        w, h, rows = read_png(path)
    except (OSError, ValueError, KeyError, zlib.error) as e:
        print("%s: cannot read: %s" % (path, e))
        return 2
    # rows and columns with at least 16 image-coloured pixels: colour fringes of anti-aliased
    # text (mlterm) have a few such pixels, never 16 in a line
    row_n, col_n = [0] * h, [0] * w
    for y in range(h - ignore):
        for x, p in enumerate(rows[y]):
            if any(max(abs(p[k] - q[k]) for k in range(3)) <= 64 for q in quads):
                row_n[y] += 1
                col_n[x] += 1
    ys = [y for y in range(h) if row_n[y] >= 16]
    xs = [x for x in range(w) if col_n[x] >= 16]
    x0, y0, x1, y1 = (xs[0], ys[0], xs[-1], ys[-1]) if xs and ys else (w, h, -1, -1)
    if x1 < 0:
        print("%s: no image colours found in %dx%d" % (path, w, h))
        return 1
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    print("%s: image at (%d,%d) size %dx%d (want %dx%d)" % (path, x0, y0, bw, bh, ew, eh))
    if at:
        print("  top-left (%d,%d), want (%d,%d)" % (x0, y0, at[0], at[1]))
        ok = abs(bw - ew) <= 3 and abs(bh - eh) <= 3 and abs(x0 - at[0]) <= 2 and \
            abs(y0 - at[1]) <= 2
    else:
        ok = abs(bw - ew) <= 3 and abs(bh - eh) <= 3 and x0 <= 4
    for q in range(4):
        qx0 = x0 + (q & 1) * bw // 2
        qy0 = y0 + (q >> 1) * bh // 2
        qw, qh = bw // 2, bh // 2
        ix, iy = qx0 + qw * 15 // 100, qy0 + qh * 15 // 100
        iw, ih = qw * 70 // 100, qh * 70 // 100
        s = [0, 0, 0]
        for y in range(iy, iy + ih):
            for x in range(ix, ix + iw):
                for k in range(3):
                    s[k] += rows[y][x][k]
        m = [v / float(iw * ih) for v in s]
        good = all(abs(m[k] - quads[q][k]) <= tol for k in range(3))
        ok = ok and good
        print("  quadrant %d mean (%.1f, %.1f, %.1f) want %s +- %g: %s" %
              (q, m[0], m[1], m[2], quads[q], tol, "ok" if good else "WRONG"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
