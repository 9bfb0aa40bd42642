#!/usr/bin/python3
"""Send files to the guest's agent the way a file dropped on a spice-gtk window is sent: the real
spice-gtk client library (SpiceClientGLib; run with /usr/bin/python3), MainChannel.file_copy_async,
the call remote-viewer makes for a drop.

    spice_file_copy.py --port N FILE... [--host 127.0.0.1] [--timeout S]

Waits until the main channel reports an agent, copies the files, and prints "DONE N file(s)" and
exits 0 when spice-gtk reports the transfer finished, or "FAIL <spice-gtk's error>" and exits 1
(also when no agent showed up within --timeout, default 60 s).
"""
import argparse
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import Gio, GLib, GObject, SpiceClientGLib  # noqa: E402

on = GObject.Object.connect  # Session/Channel.connect() hide GObject.connect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    loop = GLib.MainLoop()
    st = {"started": False, "main": None, "result": None}

    def done(main, result, _data=None):
        try:
            main.file_copy_finish(result)
            st["result"] = f"DONE {len(a.files)} file(s)"
        except GLib.Error as e:
            st["result"] = f"FAIL spice-gtk: {e.message}"
        loop.quit()

    def try_start(*_args):
        main = st["main"]
        if st["started"] or main is None or not main.props.agent_connected:
            return
        st["started"] = True
        sources = [Gio.File.new_for_path(f) for f in a.files]
        main.file_copy_async(sources, Gio.FileCopyFlags.NONE, None, None, None, done, None)

    def on_channel(_s, ch):
        if isinstance(ch, SpiceClientGLib.MainChannel):
            st["main"] = ch
            on(ch, "main-agent-update", try_start)
            on(ch, "notify::agent-connected", try_start)
        ch.connect()

    session = SpiceClientGLib.Session()
    session.props.host = a.host
    session.props.port = str(a.port)
    on(session, "channel-new", on_channel)
    if not session.connect():
        print("FAIL cannot start the Spice session", flush=True)
        return 1
    GLib.timeout_add(int(a.timeout * 1000), loop.quit)
    # agent capabilities may arrive a moment after agent-connected
    GLib.timeout_add(500, lambda: (try_start(), not st["started"])[1])
    loop.run()
    session.disconnect()
    if st["result"] is None:
        why = "no agent connected" if not st["started"] else "the transfer did not finish"
        print(f"FAIL {why} within {a.timeout:.0f} s", flush=True)
        return 1
    print(st["result"], flush=True)
    return 0 if st["result"].startswith("DONE") else 1


if __name__ == "__main__":
    sys.exit(main())
