#!/usr/bin/env python3
"""A minimal QMP client: runs commands on a QEMU's QMP unix socket (run-guest.sh --qmp).

    qmp.py SOCKET replug-agent-port [--timeout S]

replug-agent-port: device_del of the Spice agent port (id agentport, run-guest.sh --agent), waits
for QEMU's DEVICE_DELETED event, then device_add of the same virtserialport on the same chardev:
the guest sees its /dev/virtio-ports/com.redhat.spice.0 go away and come back. Prints
"REPLUGGED in N.NN s" (exit 0) or "FAIL ..." (exit 1).
"""
import argparse
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.events = []
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise SystemExit("FAIL QMP connection closed")
        return json.loads(line)

    def cmd(self, command, **args):
        self.f.write(json.dumps({"execute": command, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            m = self.read()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise SystemExit(f"FAIL {command}: {m['error'].get('desc')}")
            return m.get("return")

    def wait_event(self, name, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events:
                if e["event"] == name and pred(e.get("data", {})):
                    return e
            self.events.append(self.read())
        raise SystemExit(f"FAIL no {name} event within {timeout:.0f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("cmd", choices=["replug-agent-port"])
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    q = Qmp(a.socket, a.timeout)
    t0 = time.monotonic()
    q.cmd("device_del", id="agentport")
    q.wait_event("DEVICE_DELETED", lambda d: d.get("device") == "agentport", a.timeout)
    time.sleep(1.0)  # the guest's udev removes the link before the port comes back
    q.cmd("device_add", driver="virtserialport", id="agentport", bus="vser.0", chardev="vdagent",
          name="com.redhat.spice.0")
    print(f"REPLUGGED in {time.monotonic() - t0:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
