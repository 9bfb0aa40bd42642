#!/usr/bin/env python3
"""A minimal Spice client for the main channel: link handshake (plain TCP, ticketing disabled on
the server), then it prints every main-channel message the server sends, as a client receives it.

    spice_main_probe.py watch --port N [--host H] [--seconds S] [--no-tokens-cap]
    spice_main_probe.py agent-check LOG --opens N --held K --hold S --connect-type 107|115

watch: links the main channel advertising the common caps AUTH_SELECTION, AUTH_SPICE and
MINI_HEADER and the main caps spice-gtk sends (SEMI_SEAMLESS_MIGRATE, NAME_AND_UUID,
AGENT_CONNECTED_TOKENS, SEAMLESS_MIGRATE; --no-tokens-cap leaves AGENT_CONNECTED_TOKENS out, so a
server announces an agent with AGENT_CONNECTED instead). It behaves like spice-gtk where the
server could notice: ATTACH_CHANNELS after MAIN_INIT, AGENT_START after every agent connection
(and at MAIN_INIT when an agent is already there), PONG for every PING, ACK_SYNC and ACKs for a
SET_ACK window. Lines (time = time.monotonic() of the host):

    LINKED time caps=COMMON/MAIN mini=0|1
    MSG time TYPE NAME [fields]        e.g. "MSG 12.345678 115 AGENT_CONNECTED_TOKENS tokens=10"
    CLOSED time | END time (after --seconds, default 300, or SIGTERM)

agent-check: reads a watch LOG and checks what a client saw of the guest's agent port, which the
guest opened and closed --opens times, --held of them held open --hold seconds (the others in a
quick loop): MAIN_INIT with agent_connected=0, then agent connections, each announced with
--connect-type (107 AGENT_CONNECTED or 115 AGENT_CONNECTED_TOKENS) and each followed by
AGENT_DISCONNECTED (108) before the next, at most --opens of them; exactly --held lasted at least
0.75 x --hold seconds, the first and the last among them. (The VDI port folds an open the daemon
has not taken yet with the close that follows it, so a quick loop may show fewer connections
than opens: vdi-port's `Port::push_state`.) Prints "OK ..." or "FAIL ..." (exit 0 / 1).
"""
import argparse
import signal
import socket
import struct
import sys
import time

MAIN_MSGS = {
    1: "MIGRATE", 2: "MIGRATE_DATA", 3: "SET_ACK", 4: "PING", 5: "WAIT_FOR_CHANNELS",
    6: "DISCONNECTING", 7: "NOTIFY", 8: "LIST", 101: "MIGRATE_BEGIN", 102: "MIGRATE_CANCEL",
    103: "INIT", 104: "CHANNELS_LIST", 105: "MOUSE_MODE", 106: "MULTI_MEDIA_TIME",
    107: "AGENT_CONNECTED", 108: "AGENT_DISCONNECTED", 109: "AGENT_DATA", 110: "AGENT_TOKEN",
    111: "MIGRATE_SWITCH_HOST", 112: "MIGRATE_END", 113: "NAME", 114: "UUID",
    115: "AGENT_CONNECTED_TOKENS", 116: "MIGRATE_BEGIN_SEAMLESS", 117: "MIGRATE_DST_SEAMLESS_ACK",
    118: "MIGRATE_DST_SEAMLESS_NACK",
}
AGENT_CONNECTED, AGENT_DISCONNECTED, AGENT_CONNECTED_TOKENS = 107, 108, 115
# client -> server
ACK_SYNC, ACK, PONG, ATTACH_CHANNELS, AGENT_START = 1, 2, 3, 104, 106
COMMON_CAPS = (1 << 0) | (1 << 1) | (1 << 3)  # AUTH_SELECTION, AUTH_SPICE, MINI_HEADER
MINI_HEADER = 1 << 3


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            return None
        buf += d
    return bytes(buf)


def watch(a):
    def out(line):
        print(line, flush=True)

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    s = socket.create_connection((a.host, a.port), timeout=10)
    main_caps = 0x0F & ~(0 if not a.no_tokens_cap else 1 << 2)
    mess = struct.pack("<IBBIII", 0, 1, 0, 1, 1, 18) + struct.pack("<II", COMMON_CAPS, main_caps)
    s.sendall(b"REDQ" + struct.pack("<III", 2, 2, len(mess)) + mess)
    hdr = recv_exact(s, 16)
    if hdr is None or hdr[:4] != b"REDQ":
        out(f"FAIL bad link header {hdr!r}")
        return 1
    body = recv_exact(s, struct.unpack_from("<I", hdr, 12)[0])
    err = struct.unpack_from("<I", body, 0)[0]
    if err:
        out(f"FAIL link error {err}")
        return 1
    ncommon, nchan, off = struct.unpack_from("<III", body, 166)
    scommon = struct.unpack_from("<I", body, off)[0] if ncommon else 0
    smain = struct.unpack_from("<I", body, off + 4 * ncommon)[0] if nchan else 0
    # The ticket: the server has ticketing disabled and does not decrypt it.
    if scommon & 1:
        s.sendall(struct.pack("<I", 1))
    s.sendall(bytes(128))
    res = recv_exact(s, 4)
    if res is None or struct.unpack("<I", res)[0] != 0:
        out(f"FAIL link result {res!r}")
        return 1
    mini = bool(scommon & MINI_HEADER)
    out(f"LINKED {time.monotonic():.6f} caps={scommon:#x}/{smain:#x} mini={int(mini)}")
    serial = [0]

    def send(mtype, payload=b""):
        if mini:
            s.sendall(struct.pack("<HI", mtype, len(payload)) + payload)
        else:
            serial[0] += 1
            s.sendall(struct.pack("<QHII", serial[0], mtype, len(payload), 0) + payload)

    def agent_start():
        send(AGENT_START, struct.pack("<I", 0xFFFFFFFF))

    end = time.monotonic() + a.seconds
    s.settimeout(0.5)
    hlen = 6 if mini else 18
    window, received = 0, 0
    buf = bytearray()
    while True:
        if stop["flag"] or time.monotonic() > end:
            out(f"END {time.monotonic():.6f}")
            return 0
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            out(f"CLOSED {time.monotonic():.6f}")
            return 1
        buf += d
        while True:
            if len(buf) < hlen:
                break
            if mini:
                mtype, size = struct.unpack_from("<HI", buf, 0)
            else:
                _ser, mtype, size, _sub = struct.unpack_from("<QHII", buf, 0)
            if len(buf) < hlen + size:
                break
            m = bytes(buf[hlen:hlen + size])
            del buf[:hlen + size]
            t = time.monotonic()
            name = MAIN_MSGS.get(mtype, "?")
            extra = ""
            if mtype == 103 and len(m) >= 24:
                sid, _disp, _modes, _cur, agent, tokens = struct.unpack_from("<6I", m, 0)
                extra = f" session={sid:#x} agent_connected={agent} tokens={tokens}"
                send(ATTACH_CHANNELS)
                if agent:
                    agent_start()
            elif mtype == AGENT_CONNECTED_TOKENS and len(m) >= 4:
                extra = f" tokens={struct.unpack_from('<I', m, 0)[0]}"
                agent_start()
            elif mtype == AGENT_CONNECTED:
                agent_start()
            elif mtype == AGENT_DISCONNECTED and len(m) >= 4:
                extra = f" error={struct.unpack_from('<I', m, 0)[0]}"
            elif mtype == 105 and len(m) >= 4:
                sup, cur = struct.unpack_from("<HH", m, 0)
                extra = f" supported={sup} current={cur}"
            elif mtype == 3 and len(m) >= 8:  # SET_ACK
                gen, window = struct.unpack_from("<II", m, 0)
                received = 0
                send(ACK_SYNC, struct.pack("<I", gen))
                extra = f" generation={gen} window={window}"
            elif mtype == 4 and len(m) >= 12:  # PING
                send(PONG, m[:12])
            elif mtype in (109, 110):
                extra = f" bytes={len(m)}"
            out(f"MSG {t:.6f} {mtype} {name}{extra}")
            received += 1
            if window and received % window == 0:
                send(ACK)


def agent_check(a):
    init = None
    events = []  # (time, type)
    with open(a.log) as f:
        for line in f:
            w = line.split()
            if len(w) < 4 or w[0] != "MSG":
                continue
            t, mtype = float(w[1]), int(w[2])
            if mtype == 103 and init is None:
                init = line.strip()
            elif mtype in (AGENT_CONNECTED, AGENT_CONNECTED_TOKENS, AGENT_DISCONNECTED):
                events.append((t, mtype))

    def fail(why):
        seq = " ".join(str(m) for _, m in events[:12])
        print(f"FAIL {why} (agent messages: {len(events)}, first: {seq or 'none'})")
        return 1

    if init is None:
        return fail("the client got no MAIN_INIT")
    if "agent_connected=0" not in init:
        return fail(f"MAIN_INIT already reported an agent: {init}")
    pairs = []
    for i, (t, m) in enumerate(events):
        want_connect = i % 2 == 0
        if want_connect and m != a.connect_type:
            return fail(f"agent message {i + 1} is {m} {MAIN_MSGS.get(m)}, "
                        f"expected {a.connect_type} {MAIN_MSGS.get(a.connect_type)}")
        if not want_connect and m != AGENT_DISCONNECTED:
            return fail(f"agent message {i + 1} is {m} {MAIN_MSGS.get(m)}, expected 108 AGENT_DISCONNECTED")
        if not want_connect:
            pairs.append((events[i - 1][0], t))
    if len(events) % 2:
        return fail("the last agent connection was never followed by AGENT_DISCONNECTED")
    if not pairs or len(pairs) > a.opens:
        return fail(f"{len(pairs)} connect/disconnect pairs for {a.opens} opens in the guest")
    long = [i for i, (t0, t1) in enumerate(pairs) if t1 - t0 >= 0.75 * a.hold]
    durs = ", ".join(f"{pairs[i][1] - pairs[i][0]:.2f}" for i in long)
    if len(long) != a.held or long[0] != 0 or long[-1] != len(pairs) - 1:
        return fail(f"connections {[i + 1 for i in long]} of {len(pairs)} lasted >= {0.75 * a.hold:.2f} s "
                    f"({durs} s); expected {a.held}, the first and the last among them")
    print(f"OK {len(pairs)} x {a.connect_type} {MAIN_MSGS[a.connect_type]} then 108 AGENT_DISCONNECTED "
          f"for {a.opens} opens, alternating; the {a.held} held opens lasted {durs} s "
          f"(guest held the port {a.hold} s)")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--seconds", type=float, default=300)
    w.add_argument("--no-tokens-cap", action="store_true")
    c = sub.add_parser("agent-check")
    c.add_argument("log")
    c.add_argument("--opens", type=int, required=True)
    c.add_argument("--held", type=int, required=True)
    c.add_argument("--hold", type=float, required=True)
    c.add_argument("--connect-type", type=int, choices=(AGENT_CONNECTED, AGENT_CONNECTED_TOKENS), required=True)
    a = ap.parse_args()
    return watch(a) if a.cmd == "watch" else agent_check(a)


if __name__ == "__main__":
    sys.exit(main())
