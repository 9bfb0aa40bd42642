#!/usr/bin/env python3
"""Writes the test picture that draw.sh shows with xwud: an XWD file (ZPixmap, depth 24, 32 bpp,
TrueColor, LSB first) of W x H pixels whose colour encodes its position, with a few sharp edges.

    make-pattern.py OUT.xwd [W H]
"""
import struct
import sys


def pixel(x: int, y: int) -> int:
    r = (x * 255) // 255 & 0xFF
    g = (y * 3) & 0xFF
    b = ((x ^ y) * 7) & 0xFF
    if (x // 16 + y // 16) % 5 == 0:
        r, g, b = 255 - r, 255 - g, 255 - b
    return r << 16 | g << 8 | b


def main() -> None:
    out = sys.argv[1]
    w, h = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (256, 192)
    name = b"spice-rs pattern\0"
    fields = [
        100 + len(name), 7, 2, 24, w, h, 0, 0,  # header_size version ZPixmap depth w h xoff LSBFirst
        32, 0, 32, 32, w * 4, 4,  # unit bit_order pad bpp bytes_per_line TrueColor
        0xFF0000, 0x00FF00, 0x0000FF, 8, 0, 0,  # masks bits_per_rgb colormap_entries ncolors
        w, h, 0, 0, 0,  # window w h x y border
    ]
    data = bytearray(struct.pack(">25I", *fields) + name)
    for y in range(h):
        data += b"".join(struct.pack("<I", pixel(x, y)) for x in range(w))
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
