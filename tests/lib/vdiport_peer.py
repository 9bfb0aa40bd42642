#!/usr/bin/env python3
"""The host end of a spice-bridge VDI port (--vdi-port NAME=SOCKET): connects to SOCKET and echoes
every byte back, checksumming what it receives.

    vdiport_peer.py --socket PATH --segments N[,N...] [--timeout S] [--connect-timeout S]

The received stream is cut into segments of the given byte counts (the guest's streams, one after
the other); for each complete segment it prints

    SEGMENT i bytes=N sha256=HEX secs=T MBps=R      (T: first byte of the segment to its last)

then keeps echoing until the daemon closes the connection ("EOF total=N") or --timeout seconds
(default 300) have passed since it connected ("TIMEOUT ..."). Prints "CONNECTED" once connected
(retrying for --connect-timeout seconds, default 30, until the socket accepts). Exit 0 when every
segment was complete, 1 otherwise. SIGTERM ends it like EOF.
"""
import argparse
import hashlib
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--segments", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--connect-timeout", type=float, default=30)
    a = ap.parse_args()
    segs = [int(v) for v in a.segments.split(",") if v]

    def out(line):
        print(line, flush=True)

    stop = {"flag": False}

    def on_term(_sig, _frm):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)

    end = time.monotonic() + a.connect_timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(a.socket)
            break
        except OSError as e:
            s.close()
            if time.monotonic() > end:
                out(f"FAIL cannot connect to {a.socket}: {e}")
                return 1
            time.sleep(0.1)
    out("CONNECTED")
    deadline = time.monotonic() + a.timeout
    s.settimeout(0.5)
    seg, left = 0, (segs[0] if segs else 0)
    h, t_first, total = hashlib.sha256(), None, 0
    while True:
        if stop["flag"]:
            out(f"STOPPED total={total}")
            break
        if time.monotonic() > deadline:
            out(f"TIMEOUT after {a.timeout:.0f}s: total={total}, segment {seg + 1} of {len(segs)} "
                f"has {(segs[seg] - left) if seg < len(segs) else 0} bytes")
            break
        try:
            d = s.recv(1 << 16)
        except socket.timeout:
            continue
        except OSError as e:
            out(f"ERROR recv: {e}")
            break
        if not d:
            out(f"EOF total={total}")
            break
        total += len(d)
        # account the bytes to the segments before echoing them
        v = memoryview(d)
        while len(v) and seg < len(segs):
            if t_first is None:
                t_first = time.monotonic()
            take = min(left, len(v))
            h.update(v[:take])
            v = v[take:]
            left -= take
            if left == 0:
                secs = max(time.monotonic() - t_first, 1e-6)
                out(f"SEGMENT {seg + 1} bytes={segs[seg]} sha256={h.hexdigest()} secs={secs:.2f} "
                    f"MBps={segs[seg] / secs / 1048576:.1f}")
                seg += 1
                left = segs[seg] if seg < len(segs) else 0
                h, t_first = hashlib.sha256(), None
        try:
            s.settimeout(max(deadline - time.monotonic(), 0.1))
            s.sendall(d)
            s.settimeout(0.5)
        except OSError as e:
            out(f"ERROR send: {e}")
            break
    s.close()
    return 0 if seg == len(segs) else 1


if __name__ == "__main__":
    sys.exit(main())
