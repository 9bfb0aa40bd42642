#!/usr/bin/python3
"""Ask a Spice server for a monitor size the way a resized client window does, with the real
spice-gtk client library (SpiceClientGLib; run with /usr/bin/python3).

    spice_monitor_request.py --port N --size WxH [--size WxH ...] [--host 127.0.0.1]
                             [--timeout S] [--stay S]

Waits until the main channel reports an agent with capabilities (spice-gtk sends monitor configs
only then), enables display 0 at the first WxH (and display 1, 2, ... at the next ones, laid out
left to right, as a client with several monitors does) and sends VD_AGENT_MONITORS_CONFIG; stays
connected --stay seconds (default 5) so the server can deliver it. Prints "SENT WxH[,WxH...]" and
exits 0, or "FAIL ..." and exits 1 when no agent showed up within --timeout (default 30 s).
Run with SPICE_DEBUG=1 to see what the server's display channel reports back (what the client
shows, one window per monitor): spice-gtk logs each head as "monitor id: N, surface id: S,
+X+Y-WxH" (tests/lib/agent.sh reads those lines).
"""
import argparse
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

on = GObject.Object.connect  # Session/Channel.connect() hide GObject.connect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", required=True, action="append")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--stay", type=float, default=5)
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.size]
    label = ",".join(f"{w}x{h}" for w, h in sizes)

    loop = GLib.MainLoop()
    st = {"sent": False, "main": None, "why": "no agent connected"}

    def try_send(*_args):
        main = st["main"]
        if st["sent"] or main is None or not main.props.agent_connected:
            return
        x = 0
        for i, (w, h) in enumerate(sizes):
            main.update_display_enabled(i, True, False)
            main.update_display(i, x, 0, w, h, False)
            x += w
        if main.send_monitor_config():
            st["sent"] = True
            print(f"SENT {label}", flush=True)
            GLib.timeout_add(int(a.stay * 1000), loop.quit)
        else:
            st["why"] = "send_monitor_config refused"

    def on_channel(_s, ch):
        if isinstance(ch, SpiceClientGLib.MainChannel):
            st["main"] = ch
            on(ch, "main-agent-update", try_send)
            on(ch, "notify::agent-connected", try_send)
        ch.connect()

    session = SpiceClientGLib.Session()
    session.props.host = a.host
    session.props.port = str(a.port)
    on(session, "channel-new", on_channel)
    if not session.connect():
        print("FAIL cannot start the Spice session", flush=True)
        return 1
    GLib.timeout_add(int(a.timeout * 1000), loop.quit)
    GLib.timeout_add(500, lambda: (try_send(), not st["sent"])[1])
    loop.run()
    session.disconnect()
    if not st["sent"]:
        print(f"FAIL {st['why']}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
