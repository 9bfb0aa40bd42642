#!/usr/bin/env python3
"""Input latency probe for tests/bench/input-latency.sh: client-side input event to the guest
reading it, measured as a round trip on the host clock.

    input_latency.py keys|motion LOG --display :N --count N [--keycode 38 --code 30]
                     [--origin OX OY] [--gap-ms 60] [--timeout 5] [--client-log RV.LOG]

For each sample it takes t0 = CLOCK_MONOTONIC, injects one X input event through the XTEST
extension (libXtst via ctypes, one persistent connection, XFlush: what xdotool does, without
spawning a process per event), then polls the guest's serial log (every 0.5 ms) for the
guest's echo of that event: `qxltest input` prints a "QXL-TEST: input EV ..." line as soon as
read() on /dev/input/eventN returns it, and QEMU appends the serial output to the log file.
t1 = when the line is seen. Latency = t1 - t0 covers: X server -> remote-viewer (spice-gtk) ->
Spice inputs channel -> server -> emulated device -> guest driver -> evdev -> the guest program
-> serial console -> QEMU's chardev -> log file -> this poll.

    keys    presses and releases key KEYCODE (X keycode; default 38 = 'a'), waits for the guest's
            EV_KEY CODE 1 (press; the figure) and CODE 0 (release; reported too)
    motion  moves the pointer to alternating points inside the guest screen (screen origin
            --origin OX OY, client mouse mode), waits for the guest's EV_ABS ABS_X line

With --client-log (remote-viewer --spice-debug output), the keys mode also reports when
spice-gtk's key handler logged the press ("key_event press", wall clock, 1 ms resolution): the
client's share of the latency.

Prints one line per sample (SAMPLE i ms) and a summary line:
    RESULT what=keys n=N lost=L min=.. median=.. p90=.. p99=.. max=.. mean=.. devices=eventN,..
           [release_median=..] [client_median=.. client_p99=..]   (ms; client: 1 ms resolution)
"""
import argparse
import ctypes
import os
import re
import sys
import time
from datetime import datetime


class X:
    def __init__(self, display):
        self.x11 = ctypes.CDLL("libX11.so.6")
        self.xtst = ctypes.CDLL("libXtst.so.6")
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x11.XFlush.argtypes = [ctypes.c_void_p]
        self.x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        self.xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                                   ctypes.c_ulong]
        self.dpy = self.x11.XOpenDisplay(display.encode())
        if not self.dpy:
            raise OSError(f"cannot open X display {display}")

    def key(self, keycode, down):
        self.xtst.XTestFakeKeyEvent(self.dpy, keycode, 1 if down else 0, 0)
        self.x11.XFlush(self.dpy)

    def motion(self, x, y):
        self.xtst.XTestFakeMotionEvent(self.dpy, -1, x, y, 0)
        self.x11.XFlush(self.dpy)

    def sync(self):
        self.x11.XSync(self.dpy, 0)


class Follower:
    """Reads lines appended to the serial log."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.f.seek(0, os.SEEK_END)
        self.buf = b""
        self.dev = None

    def wait(self, regex, timeout):
        """Time (CLOCK_MONOTONIC) at which a line matching regex was read; the device of the
        last match goes to self.dev."""
        end = time.monotonic() + timeout
        while True:
            data = self.f.read()
            if data:
                self.buf += data
                *lines, self.buf = self.buf.split(b"\n")
                for ln in lines:
                    m = regex.search(ln)
                    if m:
                        self.dev = m.group(1).decode()
                        return time.monotonic()
            elif time.monotonic() > end:
                return None
            else:
                time.sleep(0.0005)

    def drain(self):
        self.buf += self.f.read()
        self.buf = self.buf.rsplit(b"\n", 1)[-1]


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    k = (len(sorted_v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_v) - 1)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (k - lo)


def client_times(path):
    """Wall-clock times (epoch seconds) of spice-gtk's "key_event press" debug lines."""
    out = []
    if not path or not os.path.exists(path):
        return out
    today = datetime.now().strftime("%Y-%m-%d")
    for m in re.finditer(r"GSpice-DEBUG: (\d\d:\d\d:\d\d\.\d+): \S+ \S+ key_event press",
                         open(path, errors="replace").read()):
        out.append(datetime.strptime(f"{today} {m.group(1)}", "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("keys", "motion"))
    ap.add_argument("log")
    ap.add_argument("--display", default=os.environ.get("DISPLAY", ":0"))
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--keycode", type=int, default=38)
    ap.add_argument("--code", type=int, default=30)
    ap.add_argument("--origin", type=int, nargs=2, default=(0, 0))
    ap.add_argument("--gap-ms", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--client-log")
    a = ap.parse_args()

    x = X(a.display)
    fol = Follower(a.log)
    lat, rel, wall0, lost = [], [], [], 0
    c0 = len(client_times(a.client_log))
    press = re.compile(rb"QXL-TEST: input EV (event\d+) 1 %d 1 " % a.code)
    release = re.compile(rb"QXL-TEST: input EV (event\d+) 1 %d 0 " % a.code)
    absx = re.compile(rb"QXL-TEST: input EV (event\d+) 3 0 ")
    devs = set()
    for i in range(a.count):
        fol.drain()
        if a.what == "keys":
            w = time.time()
            t0 = time.monotonic()
            x.key(a.keycode, True)
            t1 = fol.wait(press, a.timeout)
            t2 = time.monotonic()
            x.key(a.keycode, False)
            t3 = fol.wait(release, a.timeout)
            devs.add(fol.dev)
            if t1 is None or t3 is None:
                lost += 1
                print(f"SAMPLE {i} lost", flush=True)
            else:
                lat.append((t1 - t0) * 1e3)
                rel.append((t3 - t2) * 1e3)
                wall0.append(w)
                print(f"SAMPLE {i} {lat[-1]:.2f} release {rel[-1]:.2f}", flush=True)
        else:
            px = a.origin[0] + 100 + (i % 2) * 400 + (i % 13)
            py = a.origin[1] + 150 + (i % 2) * 300 + (i % 11)
            t0 = time.monotonic()
            x.motion(px, py)
            t1 = fol.wait(absx, a.timeout)
            devs.add(fol.dev)
            if t1 is None:
                lost += 1
                print(f"SAMPLE {i} lost", flush=True)
            else:
                lat.append((t1 - t0) * 1e3)
                print(f"SAMPLE {i} {lat[-1]:.2f}", flush=True)
        time.sleep(a.gap_ms / 1e3)
    s = sorted(lat)
    line = (f"RESULT what={a.what} n={len(s)} lost={lost} min={pct(s, 0):.2f} median={pct(s, 50):.2f} "
            f"p90={pct(s, 90):.2f} p99={pct(s, 99):.2f} max={pct(s, 100):.2f} "
            f"mean={(sum(s) / len(s)) if s else float('nan'):.2f} devices={','.join(sorted(d for d in devs if d))}")
    if rel:
        line += f" release_median={pct(sorted(rel), 50):.2f}"
    if a.what == "keys" and a.client_log:
        time.sleep(0.5)
        ct = client_times(a.client_log)[c0:]
        if len(ct) == len(wall0) and ct:
            d = sorted((c - w) * 1e3 for c, w in zip(ct, wall0))
            line += f" client_median={pct(d, 50):.2f} client_p99={pct(d, 99):.2f}"
        else:
            line += f" client=unmatched({len(ct)}/{len(wall0)})"
    print(line, flush=True)
    return 0 if s and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
