#!/usr/bin/python3
"""Watch a Spice server's cursor channel with the real spice-gtk client library (SpiceClientGLib,
Debian package gir1.2-spiceclientglib-2.0; run with the system /usr/bin/python3, which has gi).

    spice_cursor_probe.py --port N [--host 127.0.0.1] [--timeout S] [--expect-moves N]

Prints one line per event: "CURSOR-SET WxH hot=X,Y type=T match=yes|no", "CURSOR-MOVE X Y",
"CURSOR-HIDE". With the guest's "cursor" test (images/guest/qxltest.c) the shape must equal the
picture "cursor" (64x64 ARGB; opaque a=255,r=4x,g=4y,b=0x40 where x+y<48, transparent elsewhere)
and the last position must be 300,200. Exit 0 when a matching shape was seen and at least
--expect-moves moves arrived (default 0), 1 otherwise (after --timeout, default 30 s).
"""
import argparse
import ctypes
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

# Session and Channel have a connect() method of their own that hides GObject.connect.
on = GObject.Object.connect


def expected_cursor():
    """The guest's cursor picture in the byte order spice-gtk hands out: R, G, B, A per pixel
    (the guest wrote 32-bit ARGB words; alpha is 0 or 255, so premultiplying changes nothing)."""
    out = bytearray()
    for y in range(64):
        for x in range(64):
            out += bytes((4 * x, 4 * y, 0x40, 255)) if x + y < 48 else bytes(4)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--expect-moves", type=int, default=0)
    a = ap.parse_args()

    loop = GLib.MainLoop()
    state = {"shape_ok": False, "moves": 0, "last": None, "channels": []}
    want = expected_cursor()

    def done_check():
        if state["shape_ok"] and state["moves"] >= a.expect_moves:
            loop.quit()

    def on_cursor_set(_ch, w, h, hot_x, hot_y, rgba):
        # the (deprecated but still emitted) "cursor-set" signal: the shape's pixels, RGBA bytes
        data = b""
        if rgba and 0 < w * h <= 512 * 512:
            data = ctypes.string_at(rgba, w * h * 4)
        ok = (w, h) == (64, 64) and data == want
        bad = sum(1 for i in range(0, min(len(data), len(want)), 4) if data[i:i + 4] != want[i:i + 4])
        if bad and data:
            idx = [i for i in range(0, len(want), 4) if data[i:i + 4] != want[i:i + 4]][:3]
            print("  first differences: " + "; ".join(
                f"({i // 4 % 64},{i // 4 // 64}) got {data[i:i + 4].hex()} want {want[i:i + 4].hex()}"
                for i in idx), flush=True)
        print(f"CURSOR-SET {w}x{h} hot={hot_x},{hot_y} differing_pixels={bad} "
              f"match={'yes' if ok else 'no'}", flush=True)
        if ok:
            state["shape_ok"] = True
        done_check()

    def on_move(_ch, x, y):
        state["moves"] += 1
        state["last"] = (x, y)
        print(f"CURSOR-MOVE {x} {y}", flush=True)
        done_check()

    def on_hide(_ch):
        print("CURSOR-HIDE", flush=True)

    def on_channel(_session, ch):
        state["channels"].append(ch)
        if isinstance(ch, SpiceClientGLib.CursorChannel):
            on(ch, "cursor-set", on_cursor_set)
            on(ch, "cursor-move", on_move)
            on(ch, "cursor-hide", on_hide)
        ch.connect()

    session = SpiceClientGLib.Session()
    session.props.host = a.host
    session.props.port = str(a.port)
    on(session, "channel-new", on_channel)
    if not session.connect():
        print("ERROR cannot start the Spice session", flush=True)
        return 1
    GLib.timeout_add(int(a.timeout * 1000), loop.quit)
    loop.run()
    session.disconnect()
    ok = state["shape_ok"] and state["moves"] >= a.expect_moves
    print(f"{'OK' if ok else 'FAIL'} shape_match={state['shape_ok']} moves={state['moves']} "
          f"last={state['last']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
