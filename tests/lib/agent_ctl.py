#!/usr/bin/env python3
"""Runs one shell command in the agent test guest through its control port (images/guest/init,
test "agent": a loop on ttyS1, which run-guest.sh --ctl PATH puts on the unix socket PATH).

    agent_ctl.py SOCKET [--timeout S] COMMAND

Sends "ID COMMAND\\n" (ID unique per call); the guest runs COMMAND with sh in the Xorg root on
DISPLAY=:0 and answers "ID LINE" per output line (stdout and stderr), then "ID END RC".
Prints the output lines (without the ID) and exits with RC; 124 when no END arrives within S
seconds (default 60), 2 when the socket does not answer. Lines of other IDs (an earlier
command that timed out) are skipped.
"""
import argparse
import os
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("command")
    a = ap.parse_args()
    if "\n" in a.command:
        print("agent_ctl.py: the command must be one line", file=sys.stderr)
        return 2
    end = time.time() + a.timeout
    s = None
    while s is None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(a.socket)
        except OSError as e:
            s = None
            if time.time() > end:
                print(f"agent_ctl.py: {a.socket}: {e}", file=sys.stderr)
                return 2
            time.sleep(0.2)
    cid = f"c{os.getpid()}x{time.time_ns() % 10**9}"
    s.sendall(f"{cid} {a.command}\n".encode())
    buf = b""
    prefix = (cid + " ").encode()
    while True:
        left = end - time.time()
        if left <= 0:
            print(f"agent_ctl.py: no answer within {a.timeout} s", file=sys.stderr)
            return 124
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            print("agent_ctl.py: the control port closed", file=sys.stderr)
            return 2
        buf += d
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.startswith(prefix):
                continue
            rest = line[len(prefix):]
            if rest.startswith(b"END "):
                sys.stdout.flush()
                return int(rest[4:].strip() or b"1")
            sys.stdout.buffer.write(rest + b"\n")


if __name__ == "__main__":
    sys.exit(main())
