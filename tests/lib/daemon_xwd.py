#!/usr/bin/env python3
"""Xvfb frame buffer (XWD file written by `Xvfb -fbdir DIR`, 24/32 bpp TrueColor) tools for the
daemon end-to-end tests. The file holds what the X server scans out, the cursor sprite included
(an `import -window root` capture leaves the cursor out).

    daemon_xwd.py ppm XWD OUT.ppm
        convert the frame buffer to a binary PPM
    daemon_xwd.py find-kms0 XWD W H
        find where the guest picture "kms0" (W x H, tests/lib/qxlpic.py) sits on the X screen,
        1:1, and print "X Y" of its top-left corner; exit 1 when it is not on screen
    daemon_xwd.py cursor XWD PICX PICY CX CY
        with the guest picture's top-left at screen (PICX, PICY), check that the guest's 64x64
        "cursor" picture (images/guest/qxltest.c pic_cursor, hot spot 0,0) is drawn with its
        hot spot at screen (CX, CY) over the "kms0" picture: every opaque cursor pixel has the
        cursor's colour, every transparent one shows kms0. Prints a summary; exit 0 on a match.
    daemon_xwd.py find-pic XWD PICTURE W H
        find where PICTURE (any tests/lib/qxlpic.py picture, W x H) sits on the X screen, 1:1
        and pixel for pixel, and print "X Y"; exit 1 ("NOTFOUND", or the closest place and how
        many pixels differ there) when it is not on screen
    daemon_xwd.py psnr-pic XWD PICTURE W H
        for lossy pictures: find where PICTURE sits allowing every probed pixel to be off by up to
        48 per channel, and print "X Y DB" (PSNR of the whole picture there, "inf" when equal);
        exit 1 ("NOTFOUND") when no place is close enough

Exit status 2 on bad input.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qxlpic  # noqa: E402


def read_xwd(path):
    data = open(path, "rb").read()

    def be(o):
        return int.from_bytes(data[o : o + 4], "big")

    header_size = be(0)
    if be(4) != 7:
        raise ValueError(f"{path}: not an XWD version 7 file")
    w, h = be(16), be(20)
    byte_order = be(28)
    bpp = be(44)
    bytes_per_line = be(48)
    ncolors = be(76)
    if bpp != 32:
        raise ValueError(f"{path}: {bpp} bits per pixel, only 32 handled")
    off = header_size + ncolors * 12
    need = off + bytes_per_line * h
    if len(data) < need:
        raise ValueError(f"{path}: truncated ({len(data)} < {need})")
    return w, h, byte_order, bytes_per_line, data, off


class Frame:
    def __init__(self, path):
        self.w, self.h, self.order, self.bpl, self.data, self.off = read_xwd(path)

    def px(self, x, y):
        o = self.off + y * self.bpl + x * 4
        b = self.data[o : o + 4]
        v = int.from_bytes(b, "little" if self.order == 0 else "big")
        return ((v >> 16) & 255, (v >> 8) & 255, v & 255)

    def ppm(self):
        out = bytearray()
        for y in range(self.h):
            for x in range(self.w):
                out += bytes(self.px(x, y))
        return bytes(out)


def cursor_px(x, y):
    """qxltest.c pic_cursor: None where transparent, else (r, g, b)."""
    if x + y >= 48:
        return None
    return ((4 * x) & 255, (4 * y) & 255, 0x40)


def find_kms0(fr, w, h):
    # kms0 is not periodic in a small window: a 4x4 block match pins the offset. Scan a sparse
    # grid of screen points, and for each try every guest (gx, gy) consistent with the colour.
    want = {}
    for gy in range(h):
        for gx in range(w):
            want.setdefault(qxlpic.pic_kms0(gx, gy), []).append((gx, gy))
    for sy in range(0, fr.h, 7):
        for sx in range(0, fr.w, 7):
            for gx, gy in want.get(fr.px(sx, sy), ()):
                ox, oy = sx - gx, sy - gy
                if ox < 0 or oy < 0 or ox + w > fr.w or oy + h > fr.h:
                    continue
                ok = all(
                    fr.px(ox + x, oy + y) == qxlpic.pic_kms0(x, y)
                    for x, y in ((1, 1), (w - 2, 1), (1, h - 2), (w - 2, h - 2), (w // 2, h // 3), (w // 3, h // 2))
                )
                if ok:
                    return ox, oy
    return None


def find_pic(fr, name, w, h):
    """(x, y, differing pixels) of the best place PICTURE was found at, or None."""
    want = qxlpic.picture(name, w, h)
    # channel planes of each expected row, to compare with slices of the XWD rows
    rows = [(want[y * w * 3 + 0 : (y + 1) * w * 3 : 3], want[y * w * 3 + 1 : (y + 1) * w * 3 : 3], want[y * w * 3 + 2 : (y + 1) * w * 3 : 3]) for y in range(h)]
    r_at, g_at, b_at = (2, 1, 0) if fr.order == 0 else (1, 2, 3)
    probes = [(w * i // 5 + 3, h * j // 5 + 3) for i in range(5) for j in range(5)]
    probes = [(x, y, want[(y * w + x) * 3 : (y * w + x) * 3 + 3]) for x, y in probes if x < w and y < h]
    def row_at(ox, oy, y):
        o = fr.off + (oy + y) * fr.bpl + ox * 4
        row = fr.data[o : o + w * 4]
        return row[r_at::4], row[g_at::4], row[b_at::4]

    # Every place the probes match is tried for an exact match (stopping at its first differing
    # row): a picture with large plain areas (a terminal) passes the probes at many places.
    # Without one, the first 20 such places are rated by differing pixels.
    candidates = []
    for oy in range(fr.h - h + 1):
        for ox in range(fr.w - w + 1):
            if any(bytes(fr.px(ox + x, oy + y)) != c for x, y, c in probes):
                continue
            if all(row_at(ox, oy, y) == rows[y] for y in range(h)):
                return ox, oy, 0
            candidates.append((ox, oy))
    best = None
    for ox, oy in candidates[:20]:
        bad = 0
        for y in range(h):
            r, g, b = row_at(ox, oy, y)
            if (r, g, b) != rows[y]:
                bad += sum(1 for i in range(w) if (r[i], g[i], b[i]) != (rows[y][0][i], rows[y][1][i], rows[y][2][i]))
        if best is None or bad < best[2]:
            best = (ox, oy, bad)
    return best


def psnr_pic(fr, name, w, h, tol=48):
    """(x, y, PSNR dB) of PICTURE on screen allowing lossy pixels, or None. Smooth pictures also
    pass the probes a few pixels off, so the offsets within 8 pixels of the first match are rated
    on 400 sample pixels and the best one is rated in full."""
    import math

    want = qxlpic.picture(name, w, h)
    probes = [(w * i // 7 + 3, h * j // 7 + 3) for i in range(7) for j in range(7)]
    probes = [(x, y, want[(y * w + x) * 3 : (y * w + x) * 3 + 3]) for x, y in probes if x < w and y < h]
    r_at, g_at, b_at = (2, 1, 0) if fr.order == 0 else (1, 2, 3)

    def sq_err(ox, oy, step):
        se = 0
        for y in range(0, h, step):
            o = fr.off + (oy + y) * fr.bpl + ox * 4
            row = fr.data[o : o + w * 4]
            exp = want[y * w * 3 : (y + 1) * w * 3]
            for ch, at in enumerate((r_at, g_at, b_at)):
                se += sum((a - b) * (a - b) for a, b in zip(row[at::4], exp[ch::3]))
        return se

    def first():
        for oy in range(fr.h - h + 1):
            for ox in range(fr.w - w + 1):
                if all(max(abs(a - b) for a, b in zip(fr.px(ox + x, oy + y), c)) <= tol for x, y, c in probes):
                    return ox, oy
        return None

    at = first()
    if at is None:
        return None
    # 400 sample pixels spread over the picture rate each offset within 8 pixels of the match
    samples = [((i * 7919) % w, (i * 104729) % h) for i in range(400)]
    samples = [(x, y, want[(y * w + x) * 3 : (y * w + x) * 3 + 3]) for x, y in samples]

    def sample_err(p):
        return sum(sum((a - b) * (a - b) for a, b in zip(fr.px(p[0] + x, p[1] + y), c)) for x, y, c in samples)

    near = [(at[0] + dx, at[1] + dy) for dy in range(-8, 9) for dx in range(-8, 9)]
    near = [(x, y) for x, y in near if 0 <= x <= fr.w - w and 0 <= y <= fr.h - h]
    ox, oy = min(near, key=sample_err)
    se = sq_err(ox, oy, 1)
    db = float("inf") if se == 0 else 10 * math.log10(255 * 255 * w * h * 3 / se)
    return ox, oy, db


def check_cursor(fr, picx, picy, cx, cy):
    bad, opaque, first = 0, 0, []
    for y in range(64):
        for x in range(64):
            sx, sy = cx + x, cy + y
            if sx >= fr.w or sy >= fr.h:
                continue
            c = cursor_px(x, y)
            if c is None:
                gx, gy = sx - picx, sy - picy
                want = qxlpic.pic_kms0(gx, gy)
            else:
                want = c
                opaque += 1
            got = fr.px(sx, sy)
            if got != want:
                bad += 1
                if len(first) < 5:
                    first.append(f"cursor ({x},{y}) screen ({sx},{sy}) got {got} want {want}")
    return bad, opaque, first


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "ppm":
            fr = Frame(argv[1])
            qxlpic.write_ppm(argv[2], fr.w, fr.h, fr.ppm())
            return 0
        if len(argv) == 4 and argv[0] == "find-kms0":
            fr = Frame(argv[1])
            r = find_kms0(fr, int(argv[2]), int(argv[3]))
            if r is None:
                print("NOTFOUND")
                return 1
            print(f"{r[0]} {r[1]}")
            return 0
        if len(argv) == 5 and argv[0] == "find-pic":
            fr = Frame(argv[1])
            r = find_pic(fr, argv[2], int(argv[3]), int(argv[4]))
            if r is None:
                print("NOTFOUND")
                return 1
            if r[2]:
                print(f"{r[0]} {r[1]} differ={r[2]}")
                return 1
            print(f"{r[0]} {r[1]}")
            return 0
        if len(argv) == 5 and argv[0] == "psnr-pic":
            fr = Frame(argv[1])
            r = psnr_pic(fr, argv[2], int(argv[3]), int(argv[4]))
            if r is None:
                print("NOTFOUND")
                return 1
            print(f"{r[0]} {r[1]} {r[2]:.2f}")
            return 0
        if len(argv) == 6 and argv[0] == "cursor":
            fr = Frame(argv[1])
            picx, picy, cx, cy = (int(a) for a in argv[2:])
            bad, opaque, first = check_cursor(fr, picx, picy, cx, cy)
            if bad == 0:
                print(f"OK cursor 64x64 ({opaque} opaque pixels) at screen ({cx},{cy}) matches pixel for pixel")
                return 0
            print(f"FAIL cursor at screen ({cx},{cy}): {bad} of 4096 pixels differ; first: " + "; ".join(first))
            return 1
    except (ValueError, OSError) as e:
        print(f"ERROR {e}")
        return 2
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
