#!/usr/bin/python3
"""make_images.py - regenerates the test images in tests/data (stdlib only: zlib, struct).

A 64x48 picture of four flat quadrants (colours below) in several PNG flavours, plus corrupt
files for the error paths. quadrants.jpg is made once with ImageMagick
(`convert quadrants.png -quality 95 -sampling-factor 1x1 quadrants.jpg`) and patched here into
bad_*.jpg. Run from tests/data: /usr/bin/python3 make_images.py
"""
import struct
import zlib

W, H = 64, 48
TL, TR, BL, BR = (220, 40, 40), (40, 200, 70), (40, 70, 220), (240, 220, 40)
GREYS = (20, 100, 180, 250)  # TL TR BL BR of the grey variant


def quadrant(x, y):
    return (x >= W // 2) + 2 * (y >= H // 2)


def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, depth, ctype, rows, extra=b"", interlace=0):
    """rows: list of raw scanline bytes (without the filter byte), or for interlace a callable."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def rgb_rows():
    cols = (TL, TR, BL, BR)
    return [bytes(v for x in range(W) for v in cols[quadrant(x, y)]) for y in range(H)]


def main():
    rgb = rgb_rows()
    open("quadrants.png", "wb").write(png(W, H, 8, 2, rgb))
    # 16-bit RGB: every sample v stored as v*257
    rows16 = [b"".join(struct.pack(">H", v * 257) for v in r) for r in rgb]
    open("quadrants_rgb16.png", "wb").write(png(W, H, 16, 2, rows16))
    # 16-bit grey
    g16 = [b"".join(struct.pack(">H", GREYS[quadrant(x, y)] * 257) for x in range(W))
           for y in range(H)]
    open("quadrants_gray16.png", "wb").write(png(W, H, 16, 0, g16))
    # 2-bit palette: index = quadrant
    plte = chunk(b"PLTE", bytes(v for c in (TL, TR, BL, BR) for v in c))
    prow = []
    for y in range(H):
        idx = [quadrant(x, y) for x in range(W)]
        prow.append(bytes((idx[i] << 6) | (idx[i + 1] << 4) | (idx[i + 2] << 2) | idx[i + 3]
                          for i in range(0, W, 4)))
    open("quadrants_palette.png", "wb").write(png(W, H, 2, 3, prow, extra=plte))
    # RGBA: the bottom-right quadrant is half transparent (alpha 128), composited over black
    cols = (TL, TR, BL, BR)
    rgba = [bytes(v for x in range(W) for v in cols[quadrant(x, y)] +
                  ((128,) if quadrant(x, y) == 3 else (255,))) for y in range(H)]
    open("quadrants_rgba.png", "wb").write(png(W, H, 8, 6, rgba))
    # Adam7 interlaced RGB
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes:
        for y in range(y0, H, dy):
            xs = range(x0, W, dx)
            if len(xs):
                raw += b"\0" + bytes(v for x in xs for v in cols[quadrant(x, y)])
    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 1)
    open("quadrants_interlaced.png", "wb").write(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) +
        chunk(b"IEND", b""))

    good = open("quadrants.png", "rb").read()
    open("bad_truncated.png", "wb").write(good[:len(good) // 2])
    bad = bytearray(good)
    idat = bad.index(b"IDAT")
    idat_len = struct.unpack(">I", bad[idat - 4:idat])[0]
    bad[idat + 4 + idat_len] ^= 0x55  # the IDAT chunk's CRC no longer matches its data
    open("bad_crc.png", "wb").write(bytes(bad))
    # Valid CRCs, absurd sizes: 100000x100000 (beyond 16384 a side) and 16000x16000 (256 Mpx)
    # ... and 8000x8000 (within the caps) claimed by a 70-byte file: cannot hold 192 MB of pixels
    for name, w, h in (("bad_huge.png", 100000, 100000), ("bad_giant.png", 16000, 16000),
                       ("bad_liar.png", 8000, 8000)):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        open(name, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                               chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))

    try:
        jpg = open("quadrants.jpg", "rb").read()
    except OSError:
        return
    open("bad_truncated.jpg", "wb").write(jpg[:len(jpg) * 2 // 3])
    j = bytearray(jpg)
    sof = j.index(b"\xff\xc0")
    j[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    open("bad_huge.jpg", "wb").write(bytes(j))
    j[sof + 5:sof + 9] = struct.pack(">HH", 8000, 8000)  # within the caps, but 371 bytes
    open("bad_liar.jpg", "wb").write(bytes(j))

    # EXIF orientation (an APP1 segment after SOI): 6 = shown rotated 90 degrees clockwise
    # (big-endian TIFF), 8 = 90 counter-clockwise (little-endian); a broken IFD offset is ignored
    def exif(orient, little, ifd_off=8):
        e = "<" if little else ">"
        tiff = (b"II*\0" if little else b"MM\0*") + struct.pack(e + "I", ifd_off)
        tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1)
        tiff += struct.pack(e + "H", orient) + b"\0\0" + struct.pack(e + "I", 0)
        body = b"Exif\0\0" + tiff
        return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    for name, seg in (("quadrants_exif6.jpg", exif(6, False)),
                      ("quadrants_exif8.jpg", exif(8, True)),
                      ("quadrants_exifbad.jpg", exif(6, False, ifd_off=60000))):
        open(name, "wb").write(jpg[:2] + seg + jpg[2:])


if __name__ == "__main__":
    main()
