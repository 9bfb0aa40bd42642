#!/usr/bin/python3
"""Count what a real spice-gtk client (SpiceClientGLib, run with /usr/bin/python3) receives on the
display channel: for the redraw benchmark, side by side for the reference server and ours.

    spice_frame_probe.py --port N [--host 127.0.0.1] [--seconds S] [--idle-stop S]

Connects, then counts "display-invalidate" signals (each is one area the client redrew) for
--seconds after the first one, or until no invalidate arrived for --idle-stop seconds (default 3).
Prints one line:
  FRAMES invalidates=N full_frames=F burst_frames=K secs=T fps=(K-1)/T display_bytes=B
         bytes_per_frame=Bk/(K-1) first_after_connect_ms=M
full_frames counts invalidates covering the whole primary surface; the burst is the last run of
full frames less than 2 s apart (the redraw loop, without the picture sent on connect), and
fps/bytes_per_frame are measured over it. Exit 1 if nothing came.
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
          "connect": time.monotonic(), "bytes0": 0, "fulls": []}

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
            st["fulls"].append((now, ch.props.total_read_bytes))

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
    nbytes = total - st["bytes0"]
    fulls = st["fulls"]
    start = 0
    for i in range(1, len(fulls)):
        if fulls[i][0] - fulls[i - 1][0] >= 2.0:
            start = i
    burst = fulls[start:]
    k = len(burst)
    secs = burst[-1][0] - burst[0][0] if k >= 2 else 0.0
    fps = (k - 1) / secs if secs > 0 else 0.0
    per = (burst[-1][1] - burst[0][1]) // (k - 1) if k >= 2 else 0
    print(f"FRAMES invalidates={st['n']} full_frames={st['full']} burst_frames={k} secs={secs:.2f} "
          f"fps={fps:.2f} display_bytes={nbytes} bytes_per_frame={per} "
          f"first_after_connect_ms={(st['first'] - st['connect']) * 1000:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
