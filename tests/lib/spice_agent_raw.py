#!/usr/bin/env python3
"""A hostile Spice client for the guest agent: links the main channel (plain TCP, ticketing
disabled), starts the agent channel, and sends agent messages spice-gtk never would.

    spice_agent_raw.py xfer --port N --name NAME [--data TEXT] [--host H] [--timeout S]
    spice_agent_raw.py garbage --port N [--host H] [--timeout S]

xfer: announces client capabilities (by-demand clipboard, selection, detailed file-transfer
errors), sends FILE_XFER_START with NAME as the file name (any bytes: "../x", "/tmp/x", "a/b")
and the size of --data (default "spice-rs\\n"); if the agent answers CAN_SEND_DATA, sends the data.
Prints each FILE_XFER_STATUS the agent returns, "STATUS <id> <result> <name> [detail hex]", and
exits 0 once it has a final status (anything but CAN_SEND_DATA), 1 on timeout.

garbage: malformed agent messages the server passes through (a CLIPBOARD_REQUEST with a bad
selection, a FILE_XFER_DATA declaring 1 TiB, a FILE_XFER_DATA for no transfer; the server itself
checks MONITORS_CONFIG and message types),
then a well-formed FILE_XFER_START the agent must still answer: prints "ALIVE <status>" (exit 0)
or "FAIL ..." (exit 1). What each malformed message gets (REPLY ERROR, ...) is printed as
"GOT <type> <hex>".
"""
import argparse
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# main channel
SET_ACK, PING, INIT, AGENT_CONNECTED, AGENT_DATA, AGENT_TOKEN, AGENT_CONNECTED_TOKENS = 3, 4, 103, 107, 109, 110, 115
ACK_SYNC, PONG, ATTACH_CHANNELS, AGENT_START, C_AGENT_DATA = 1, 3, 104, 106, 107
COMMON_CAPS = (1 << 0) | (1 << 1) | (1 << 3)
# agent
MONITORS_CONFIG, REPLY, CLIPBOARD_REQUEST, ANNOUNCE = 2, 3, 8, 6
XFER_START, XFER_STATUS, XFER_DATA = 10, 11, 12
STATUS_NAMES = {0: "CAN_SEND_DATA", 1: "CANCELLED", 2: "ERROR", 3: "SUCCESS", 4: "NOT_ENOUGH_SPACE",
                5: "SESSION_LOCKED", 6: "VDAGENT_NOT_CONNECTED", 7: "DISABLED"}
CLIENT_CAPS = (1 << 5) | (1 << 6) | (1 << 14) | (1 << 2)  # BY_DEMAND, SELECTION, DETAILED_ERRORS, REPLY


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            return None
        b += d
    return b


class Client:
    def __init__(self, host, port):
        s = socket.create_connection((host, port), timeout=10)
        mess = struct.pack("<IBBIII", 0, 1, 0, 1, 1, 18) + struct.pack("<II", COMMON_CAPS, 0x0F)
        s.sendall(b"REDQ" + struct.pack("<III", 2, 2, len(mess)) + mess)
        hdr = recv_exact(s, 16)
        if hdr is None or hdr[:4] != b"REDQ":
            raise SystemExit(f"FAIL bad link header {hdr!r}")
        body = recv_exact(s, struct.unpack_from("<I", hdr, 12)[0])
        if struct.unpack_from("<I", body, 0)[0]:
            raise SystemExit("FAIL link error")
        ncommon, _nchan, off = struct.unpack_from("<III", body, 166)
        scommon = struct.unpack_from("<I", body, off)[0] if ncommon else 0
        if scommon & 1:
            s.sendall(struct.pack("<I", 1))
        # The ticket: an empty password ("\0") RSA-OAEP(SHA-1)-encrypted with the server's key,
        # as spice-gtk sends it (libspice-server checks the decryption even without ticketing).
        key = serialization.load_der_public_key(body[4:166])
        s.sendall(key.encrypt(b"\0", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)))
        res = recv_exact(s, 4)
        if res is None or struct.unpack("<I", res)[0] != 0:
            raise SystemExit(f"FAIL link result {res!r}")
        self.s, self.mini, self.serial = s, bool(scommon & 8), 0
        self.tokens, self.agent, self.buf, self.abuf = 0, False, bytearray(), bytearray()
        self.messages = []  # (type, data) from the agent
        s.settimeout(0.2)

    def send(self, mtype, payload=b""):
        if self.mini:
            self.s.sendall(struct.pack("<HI", mtype, len(payload)) + payload)
        else:
            self.serial += 1
            self.s.sendall(struct.pack("<QHII", self.serial, mtype, len(payload), 0) + payload)

    def agent_send(self, atype, data):
        msg = struct.pack("<IIQI", 1, atype, 0, len(data)) + data
        for i in range(0, len(msg), 2048):
            while self.tokens == 0:
                self.pump(0.5)
            self.tokens -= 1
            self.send(C_AGENT_DATA, msg[i:i + 2048])

    def pump(self, secs):
        end = time.monotonic() + secs
        hlen = 6 if self.mini else 18
        while time.monotonic() < end:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise SystemExit("FAIL the server closed the connection")
            self.buf += d
            while len(self.buf) >= hlen:
                if self.mini:
                    mtype, size = struct.unpack_from("<HI", self.buf, 0)
                else:
                    _s, mtype, size, _u = struct.unpack_from("<QHII", self.buf, 0)
                if len(self.buf) < hlen + size:
                    break
                m = bytes(self.buf[hlen:hlen + size])
                del self.buf[:hlen + size]
                self.handle(mtype, m)

    def handle(self, mtype, m):
        if mtype == INIT:
            _sid, _d, _mm, _cm, agent, tokens = struct.unpack_from("<6I", m, 0)
            self.tokens = tokens
            self.send(ATTACH_CHANNELS)
            if agent:
                self.start_agent()
        elif mtype == AGENT_CONNECTED_TOKENS:
            self.tokens = struct.unpack_from("<I", m, 0)[0]
            self.start_agent()
        elif mtype == AGENT_CONNECTED:
            self.start_agent()
        elif mtype == AGENT_TOKEN:
            self.tokens += struct.unpack_from("<I", m, 0)[0]
        elif mtype == SET_ACK:
            self.send(ACK_SYNC, m[:4])
        elif mtype == PING:
            self.send(PONG, m[:12])
        elif mtype == AGENT_DATA:
            self.abuf += m
            while len(self.abuf) >= 20:
                _p, atype, _o, size = struct.unpack_from("<IIQI", self.abuf, 0)
                if len(self.abuf) < 20 + size:
                    break
                self.messages.append((atype, bytes(self.abuf[20:20 + size])))
                del self.abuf[:20 + size]

    def start_agent(self):
        self.send(AGENT_START, struct.pack("<I", 0xFFFFFFFF))
        self.agent = True

    def wait_agent(self, timeout):
        end = time.monotonic() + timeout
        while not self.agent and time.monotonic() < end:
            self.pump(0.3)
        if not self.agent:
            raise SystemExit("FAIL no agent connected")
        self.agent_send(ANNOUNCE, struct.pack("<II", 1, CLIENT_CAPS))
        self.pump(1.0)

    def take(self, atype, pred=lambda d: True):
        for i, (t, d) in enumerate(self.messages):
            if t == atype and pred(d):
                del self.messages[i]
                return d
        return None


def keyfile(name, size):
    return b"[vdagent-file-xfer]\nname=" + name + b"\nsize=" + str(size).encode() + b"\n\0"


def xfer(c, xid, name, data, timeout):
    c.agent_send(XFER_START, struct.pack("<I", xid) + keyfile(name, len(data)))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c.pump(0.3)
        d = c.take(XFER_STATUS, lambda d: struct.unpack_from("<I", d, 0)[0] == xid)
        if d is None:
            continue
        _id, result = struct.unpack_from("<II", d, 0)
        print(f"STATUS {xid} {result} {STATUS_NAMES.get(result, '?')} {d[8:].hex()}".rstrip(), flush=True)
        if result != 0:
            return result
        c.agent_send(XFER_DATA, struct.pack("<IQ", xid, len(data)) + data)
    print(f"FAIL no final FILE_XFER_STATUS for transfer {xid} within {timeout:.0f} s", flush=True)
    return None


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("xfer", "garbage"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--timeout", type=float, default=30)
        if name == "xfer":
            p.add_argument("--name", required=True)
            p.add_argument("--data", default="spice-rs\n")
    a = ap.parse_args()
    c = Client(a.host, a.port)
    c.wait_agent(a.timeout)
    if a.cmd == "xfer":
        r = xfer(c, 1, a.name.encode(), a.data.encode(), a.timeout)
        return 0 if r is not None else 1
    bad = [
        (CLIPBOARD_REQUEST, struct.pack("<BxxxI", 9, 1)),
        (XFER_DATA, struct.pack("<IQ", 77, 1 << 40) + b"x"),
        (XFER_DATA, struct.pack("<IQ", 78, 3) + b"abc"),
    ]
    for t, d in bad:
        c.agent_send(t, d)
    c.pump(3.0)
    for t, d in c.messages:
        print(f"GOT {t} {d.hex()}", flush=True)
    c.messages.clear()
    r = xfer(c, 5, b"alive-check.txt", b"ok\n", a.timeout)
    if r is None:
        print("FAIL the agent did not answer a well-formed FILE_XFER_START after the garbage", flush=True)
        return 1
    print(f"ALIVE {STATUS_NAMES.get(r, r)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
