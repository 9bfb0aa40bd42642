#!/usr/bin/env python3
"""Holds a connection flood against a Spice port: N idle TCP connections (not a byte sent) and
N that sent the first 8 bytes of a link header ("REDQ" and the major version) and stopped.
Writes "ready N in S s, K slow" to --ready once all are open: K counts connects that took a
second or more, the sign of a SYN the server's kernel dropped (its accept queue overflowed).
Holds them until killed (SIGTERM) or --hold seconds, then closes them. Raises its own
descriptor limit as needed."""
import argparse
import resource
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--idle", type=int, default=1000)
p.add_argument("--half", type=int, default=1000)
p.add_argument("--hold", type=float, default=120)
p.add_argument("--ready", required=True)
a = p.parse_args()
need = a.idle + a.half + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
held = []
slow = 0
t0 = time.monotonic()
for i in range(a.idle + a.half):
    c0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", a.port))
    if time.monotonic() - c0 >= 0.9:
        slow += 1
    if i >= a.idle:
        s.sendall(b"REDQ\x02\x00\x00\x00")
    held.append(s)
with open(a.ready, "w") as f:
    f.write(f"ready {len(held)} in {time.monotonic() - t0:.2f} s, {slow} slow\n")
time.sleep(a.hold)
