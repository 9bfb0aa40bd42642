#!/usr/bin/python3
"""A Spice inputs-channel client with the real spice-gtk client library (SpiceClientGLib, Debian
package gir1.2-spiceclientglib-2.0; run with the system /usr/bin/python3, which has gi). It
reads the client's view of the guest's keyboard LEDs: the inputs channel's `key-modifiers`
property, which the server sets from the guest's LED state (SPICE_MSG_INPUTS_INIT and
SPICE_MSG_INPUTS_KEY_MODIFIERS), and can press a key to ask the guest to change it.

    spice_inputs_probe.py --port N [--host H] [--press SCANCODE] [--expect-caps V,V,...]
                          [--wait S] [--timeout S] [--mouse-mode client|server]

Prints "MODIFIERS 0xM caps=C num=N scroll=S (initial|changed)" for the state at connection and
for every change, and "MOUSE-MODE client|server" when the main channel reports one. With
--expect-caps, the first value is the state expected at connection; then for each further value
it presses and releases SCANCODE (PC scan code set 1, default 0x58 = F12, the guest input test's
LED key) and waits up to --wait seconds (default 10) for caps to become that value. Exit 0 when
every expected value was seen in order, 1 otherwise; without --expect-caps it watches until
--timeout (default 30) and exits 0.
"""
import argparse
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

on = GObject.Object.connect  # Session and Channel have a connect() of their own
CAPS, NUM, SCROLL = 4, 2, 1  # SPICE_INPUTS_CAPS_LOCK, _NUM_LOCK, _SCROLL_LOCK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--press", type=lambda s: int(s, 0), default=0x58)
    ap.add_argument("--expect-caps", default="")
    ap.add_argument("--wait", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--mouse-mode", choices=("client", "server"))
    a = ap.parse_args()
    want = [int(v) for v in a.expect_caps.split(",") if v != ""]

    loop = GLib.MainLoop()
    st = {"inputs": None, "seen": [], "step": 0, "ok": not want, "timer": None, "channels": []}

    def show(mods, why):
        print(f"MODIFIERS {mods:#x} caps={int(bool(mods & CAPS))} num={int(bool(mods & NUM))} "
              f"scroll={int(bool(mods & SCROLL))} ({why})", flush=True)

    def arm(secs, fn):
        if st["timer"]:
            GLib.source_remove(st["timer"])
        st["timer"] = GLib.timeout_add(int(secs * 1000), fn)

    def give_up():
        st["timer"] = None
        print(f"TIMEOUT waiting for caps={want[st['step']]} (seen {st['seen']})", flush=True)
        loop.quit()
        return False

    def advance():
        """The current expectation is met: press the key for the next one, or finish."""
        st["step"] += 1
        if st["step"] >= len(want):
            st["ok"] = True
            loop.quit()
            return
        inputs = st["inputs"]
        inputs.key_press(a.press)
        inputs.key_release(a.press)
        print(f"PRESSED {a.press:#x} (want caps={want[st['step']]})", flush=True)
        arm(a.wait, give_up)

    def check(mods):
        caps = int(bool(mods & CAPS))
        st["seen"].append(caps)
        if want and st["step"] < len(want) and caps == want[st["step"]]:
            # let the state settle a moment before pressing again (the guest's LED write and
            # the server's KEY_MODIFIERS are asynchronous)
            arm(0.3, lambda: (advance(), False)[1])

    def on_modifiers(ch):
        mods = ch.props.key_modifiers
        show(mods, "changed")
        check(mods)

    def on_event(ch, event):
        if event == SpiceClientGLib.ChannelEvent.OPENED and isinstance(ch, SpiceClientGLib.InputsChannel):
            # INPUTS_INIT (the LED state at connection) is handled before OPENED is emitted
            GLib.timeout_add(200, lambda: (initial(ch), False)[1])
        elif event in (SpiceClientGLib.ChannelEvent.ERROR_CONNECT, SpiceClientGLib.ChannelEvent.ERROR_IO,
                       SpiceClientGLib.ChannelEvent.ERROR_LINK, SpiceClientGLib.ChannelEvent.CLOSED):
            print(f"CHANNEL-EVENT {event.value_nick}", flush=True)
            loop.quit()

    def initial(ch):
        st["inputs"] = ch
        mods = ch.props.key_modifiers
        show(mods, "initial")
        if want:
            if int(bool(mods & CAPS)) == want[0]:
                st["seen"].append(want[0])
                advance()
            else:
                print(f"initial caps={int(bool(mods & CAPS))}, want {want[0]}", flush=True)
                loop.quit()

    def on_mouse_mode(ch, _pspec):
        mode = ch.props.mouse_mode
        print(f"MOUSE-MODE {'client' if mode == 2 else 'server' if mode == 1 else mode}", flush=True)

    def on_channel(_session, ch):
        st["channels"].append(ch)
        if isinstance(ch, SpiceClientGLib.InputsChannel):
            on(ch, "inputs-modifiers", on_modifiers)
            on(ch, "channel-event", on_event)
        elif isinstance(ch, SpiceClientGLib.MainChannel):
            on(ch, "notify::mouse-mode", on_mouse_mode)
            if a.mouse_mode:
                mode = 2 if a.mouse_mode == "client" else 1
                GLib.timeout_add(500, lambda: (ch.request_mouse_mode(mode), False)[1])
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
    ok = st["ok"]
    print(f"{'OK' if ok else 'FAIL'} caps seen {st['seen']}" + (f" (want {want})" if want else ""), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
