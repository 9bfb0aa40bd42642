#!/usr/bin/env python3
"""The known pictures the guest test program draws (images/guest/qxltest.c), and a pixel-exact
comparison of a client's screenshot (binary PPM, P6) against them.

    qxlpic.py compare PICTURE FILE.ppm [--size WxH] [--expected-out FILE.ppm]
    qxlpic.py write PICTURE WxH FILE.ppm

PICTURE: fb | kms | kms0 | redraw:F | scroll:K:F | text:F | photo:F | video:F | movie:F | file:PATH.ppm
(the frame the guest's `qxltest redraw --workload ...` shows after drawing frames 0..F, so F is
the frame count minus one) (an expected picture made elsewhere, e.g.
the xorg test's scene drawn by Xvfb; its size must be the screenshot's). Exit 0 when every pixel matches, 1 otherwise (with a
message saying how many pixels differ and where the first ones are), 2 on bad input.
"""
import sys


def pic_fb(x, y):
    b = ((x >> 8) * 64 + (y >> 8) * 16 + ((x ^ y) & 15)) & 255
    return (x & 255, y & 255, b)


def pic_kms0(x, y):
    return ((x + 2 * y) & 255, ((3 * x + y) >> 2) & 255, 0x80 ^ ((x >> 4) & 15) ^ (y & 0xF0))


def pic_kms1(x, y):
    r, g, b = pic_kms0(x, y)
    return (r ^ 255, g ^ 255, b ^ 255)


def kms_rects(w, h):
    """Dirty rectangles (x1, y1, x2, y2), exclusive ends, as in qxltest.c kms_rects()."""
    return [
        (w * 2 // 16, h * 2 // 16, w * 6 // 16, h * 6 // 16),
        (w * 8 // 16, h * 5 // 16, w * 13 // 16, h * 13 // 16),
        (5, 7, 21, 23),
    ]


def pic_kms_factory(w, h):
    rects = kms_rects(w, h)

    def f(x, y):
        for x1, y1, x2, y2 in rects:
            if x1 <= x < x2 and y1 <= y < y2:
                return pic_kms1(x, y)
        return pic_kms0(x, y)

    return f


def pic_redraw_factory(frame):
    def f(x, y):
        return ((x + frame) & 255, (y + 3 * frame) & 255, (x ^ y ^ (5 * frame)) & 255)

    return f


M32 = 0xFFFFFFFF


def pic_page(x, row):
    """qxltest.c pic_page: 16-row text lines, black glyph cells on white."""
    line, r, cell = row // 16, row % 16, x // 8
    if r < 2 or r >= 14:
        return (255, 255, 255)
    h = ((line * 2654435761) ^ (cell * 40503)) & M32
    h ^= h >> 13
    h = (h * 0x5BD1E995) & M32
    h ^= h >> 15
    if h & 7 == 0:
        return (255, 255, 255)
    on = (h >> (((r - 2) // 3) * 4 + (x & 7) // 2)) & 1
    return (0x20, 0x20, 0x20) if on else (255, 255, 255)


def tri(v):
    v &= 511
    return v if v < 256 else 511 - v


def pic_photo(x, y, f):
    """qxltest.c pic_photo: gradients, rings and noise (uint32 arithmetic)."""
    a = tri(x + (y >> 1) + 37 * f)
    b = tri((x >> 1) + y + (y >> 1) + 11 * f)
    c = tri((((x * x + y * y) & M32) >> 9) + 23 * f)
    h = ((x * 73856093) ^ (y * 19349663) ^ (f * 83492791)) & M32
    h ^= h >> 13
    h = (h * 0x5BD1E995) & M32
    h ^= h >> 15
    n = h & 7
    return (min((2 * a + c) // 3 + n, 255), min((b + 2 * c) // 3 + n, 255), min((a + b) // 2 + (n >> 1), 255))


def workload_factory(name, w, h):
    """The last frame of a `qxltest redraw --workload` loop (see qxltest.c cmd_redraw)."""
    kind, *args = name.split(":")
    if kind == "scroll":
        k, f = int(args[0]), int(args[1])
        return lambda x, y: pic_page(x, y + f * k)
    f = int(args[0])
    if kind == "text":
        lines = h // 16
        first = f - f % lines  # the line at the top of the current page

        def text(x, y):
            n = first + y // 16
            if y < lines * 16 and n <= f:
                return pic_page(x, n * 16 + y % 16)
            return (255, 255, 255)

        return text
    if kind == "photo":
        return lambda x, y: pic_photo(x, y, f)
    if kind in ("video", "movie"):
        vw, vh = min(w, 480), min(h, 270)
        x1, y1 = (w - vw) // 2, (h - vh) // 2
        # movie: a window onto the still pic_photo(0) panning 3 columns and 1 row a frame
        px, py, pf = (3 * f, f, 0) if kind == "movie" else (0, 0, f)

        def video(x, y):
            if x1 <= x < x1 + vw and y1 <= y < y1 + vh:
                return pic_photo(x - x1 + px, y - y1 + py, pf)
            return pic_kms0(x, y)

        return video
    raise ValueError(f"unknown picture {name!r}")


def picture(name, w, h):
    if name.startswith("file:"):
        fw, fh, px = read_ppm(name[len("file:") :])
        if (fw, fh) != (w, h):
            raise ValueError(f"{name}: {fw}x{fh}, the screenshot is {w}x{h}")
        return px
    if name == "fb":
        f = pic_fb
    elif name == "kms0":
        f = pic_kms0
    elif name == "kms":
        f = pic_kms_factory(w, h)
    elif name.startswith("redraw:"):
        f = pic_redraw_factory(int(name.split(":", 1)[1]))
    elif name.split(":")[0] in ("scroll", "text", "photo", "video", "movie"):
        f = workload_factory(name, w, h)
    else:
        raise ValueError(f"unknown picture {name!r}")
    out = bytearray(w * h * 3)
    i = 0
    for y in range(h):
        for x in range(w):
            out[i : i + 3] = bytes(f(x, y))
            i += 3
    return bytes(out)


def read_ppm(path):
    data = open(path, "rb").read()
    # header: P6 <ws> W <ws> H <ws> MAXVAL <single ws> pixels; comments start with '#'
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] != b"\n":
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise ValueError(f"{path}: truncated PPM header")
        fields.append(data[start:pos])
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path}: not a binary 8-bit PPM (P6, maxval 255)")
    w, h = int(fields[1]), int(fields[2])
    pixels = data[pos + 1 : pos + 1 + w * h * 3]
    if len(pixels) != w * h * 3:
        raise ValueError(f"{path}: {len(pixels)} pixel bytes, expected {w * h * 3}")
    return w, h, pixels


def write_ppm(path, w, h, pixels):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(pixels)


def parse_size(s):
    w, h = s.lower().split("x")
    return int(w), int(h)


def compare(name, path, size=None, expected_out=None):
    w, h, got = read_ppm(path)
    if size and (w, h) != size:
        print(f"FAIL {path}: screenshot is {w}x{h}, the guest drew {size[0]}x{size[1]}")
        return 1
    want = picture(name, w, h)
    if expected_out:
        write_ppm(expected_out, w, h, want)
    if got == want:
        print(f"OK {path}: {w}x{h} picture {name!r} matches pixel for pixel")
        return 0
    bad, first = 0, []
    for i in range(0, len(want), 3):
        if got[i : i + 3] != want[i : i + 3]:
            bad += 1
            if len(first) < 5:
                p = i // 3
                first.append(f"({p % w},{p // w}) got {tuple(got[i:i+3])} want {tuple(want[i:i+3])}")
    print(f"FAIL {path}: {bad} of {w * h} pixels differ from picture {name!r}; first: " + "; ".join(first))
    return 1


def main(argv):
    try:
        if len(argv) >= 3 and argv[0] == "compare":
            size = expected_out = None
            rest = argv[3:]
            while rest:
                if rest[0] == "--size" and len(rest) > 1:
                    size = parse_size(rest[1])
                elif rest[0] == "--expected-out" and len(rest) > 1:
                    expected_out = rest[1]
                else:
                    raise ValueError(f"unknown option {rest[0]}")
                rest = rest[2:]
            return compare(argv[1], argv[2], size, expected_out)
        if len(argv) == 4 and argv[0] == "write":
            w, h = parse_size(argv[2])
            write_ppm(argv[3], w, h, picture(argv[1], w, h))
            return 0
    except (ValueError, OSError) as e:
        print(f"ERROR {e}")
        return 2
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
