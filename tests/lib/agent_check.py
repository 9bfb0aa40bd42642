#!/usr/bin/env python3
"""Finds the agent test guest's screen in a client window (tests/lib/agent.sh).

    agent_check.py locate XWD [RRGGBB]
        the bounding box of the pixels of colour RRGGBB (default 3c8c5a: the agent test guest's
        root window, images/guest/init) in an Xvfb frame buffer (XWD, 32 bpp): prints
        "X Y W H", or exit 1 when no pixel has that colour
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_xwd  # noqa: E402


def locate(path, rgb):
    w, h, order, bpl, data, off = daemon_xwd.read_xwd(path)
    r, g, b = (rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255
    pat = bytes((b, g, r)) if order == 0 else bytes((r, g, b))
    shift = 0 if order == 0 else 1  # big endian: the pad byte comes first
    x0 = y0 = None
    x1 = y1 = -1
    for y in range(h):
        row = data[off + y * bpl : off + y * bpl + w * 4]
        i = row.find(pat)
        first = None
        while i >= 0:
            if (i - shift) % 4 == 0:
                first = (i - shift) // 4
                break
            i = row.find(pat, i + 1)
        if first is None:
            continue
        j = row.rfind(pat)
        last = first
        while j >= 0:
            if (j - shift) % 4 == 0:
                last = (j - shift) // 4
                break
            j = row.rfind(pat, 0, j + len(pat) - 1)
        x0 = first if x0 is None else min(x0, first)
        x1 = max(x1, last)
        y0 = y if y0 is None else y0
        y1 = y
    if x0 is None:
        return None
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def main(argv):
    if len(argv) in (2, 3) and argv[0] == "locate":
        r = locate(argv[1], int(argv[2] if len(argv) == 3 else "3c8c5a", 16))
        if r is None:
            print("NOTFOUND")
            return 1
        print("%d %d %d %d" % r)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
