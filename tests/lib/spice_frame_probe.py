#!/usr/bin/python3
"""Count what a real spice-gtk client (SpiceClientGLib, run with /usr/bin/python3) receives on the
display channel: for the redraw benchmark, side by side for the reference server and ours.

    spice_frame_probe.py --port N [--host 127.0.0.1] [--seconds S] [--idle-stop S]

Connects, then counts "display-invalidate" signals (each is one area the client redrew) for
--seconds after the first one, or until no invalidate arrived for --idle-stop seconds (default 3).
Prints one line:
  FRAMES invalidates=N full_frames=F secs=T fps=F/T display_bytes=B bytes_per_full_frame=B/F
         first_after_connect_ms=M
where full_frames counts invalidates covering the whole primary surface. Exit 1 if nothing came.
"""
import argparse
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

on = GObject.Object.connect  # Session/Channel.connect() hide GObject.connect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--idle-stop", type=float, default=3)
    a = ap.parse_args()

    loop = GLib.MainLoop()
    st = {"n": 0, "full": 0, "first": None, "last": None, "size": (0, 0), "display": None,
          "connect": time.monotonic(), "bytes0": 0}

    def on_primary(_ch, _fmt, w, h, _stride, _shmid, _data):
        st["size"] = (w, h)

    def on_invalidate(ch, x, y, w, h):
        now = time.monotonic()
        if st["first"] is None:
            st["first"] = now
            st["bytes0"] = ch.props.total_read_bytes
        st["n"] += 1
        st["last"] = now
        if (x, y) == (0, 0) and (w, h) == st["size"]:
            st["full"] += 1

    def on_channel(_s, ch):
        if isinstance(ch, SpiceClientGLib.DisplayChannel):
            st["display"] = ch
            on(ch, "display-primary-create", on_primary)
            on(ch, "display-invalidate", on_invalidate)
        ch.connect()

    def tick():
        now = time.monotonic()
        if st["first"] is not None:
            if now - st["first"] >= a.seconds or now - st["last"] >= a.idle_stop:
                loop.quit()
                return False
        elif now - st["connect"] > a.seconds + 30:
            loop.quit()
            return False
        return True

    session = SpiceClientGLib.Session()
    session.props.host = a.host
    session.props.port = str(a.port)
    on(session, "channel-new", on_channel)
    if not session.connect():
        print("ERROR cannot start the Spice session", flush=True)
        return 1
    GLib.timeout_add(100, tick)
    loop.run()
    total = st["display"].props.total_read_bytes if st["display"] else 0
    session.disconnect()
    if st["first"] is None:
        print("FRAMES invalidates=0 (nothing drawn)", flush=True)
        return 1
    secs = max(st["last"] - st["first"], 1e-6)
    nbytes = total - st["bytes0"]
    full = st["full"]
    print(f"FRAMES invalidates={st['n']} full_frames={full} secs={secs:.2f} "
          f"fps={full / secs:.2f} display_bytes={nbytes} "
          f"bytes_per_full_frame={nbytes // full if full else 0} "
          f"first_after_connect_ms={(st['first'] - st['connect']) * 1000:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
