#!/usr/bin/env python3
"""A counting TCP proxy for Spice (plain TCP): put it between a real client and a server to log
what the server sends, message by message, without changing a byte.

    daemon_spiceproxy.py --listen PORT --upstream PORT --events FILE [--connect-timeout S] [--log-up]
                         [--dump DIR]

Each client connection gets its own upstream connection (retried for --connect-timeout seconds,
default 120, so a client may connect before the server listens). The proxy reads the link
exchange (channel type from the client's SpiceLinkMess, mini-header capability of both sides),
then splits the server->client stream into messages and appends one line per message to FILE:

    CHANNEL TIME KIND TYPE WIRE_BYTES [EXTRA]

CHANNEL: main display inputs cursor ... ; TIME: time.time() when the message was complete;
KIND: link (the link reply + result), draw (display DRAW_* messages; EXTRA = box WxH),
surface (SURFACE_CREATE; EXTRA = WxH), frame (STREAM_DATA, one video frame), msg (anything
else); WIRE_BYTES: header + body.
With --dump DIR, every lossy picture the display channel carries is written to DIR as it came:
the JPEG of each STREAM_DATA as NNNNNN-stream-S-WxH+X+Y.jpg (S the stream id, the box from its
STREAM_CREATE; a VP8 stream's frames as .vp8) and of each DRAW_COPY with a JPEG image as NNNNNN-image-WxH+X+Y.jpg, so the lossy
pictures of both servers can be compared with what the guest drew (examples/frame_psnr.rs).
A line "CHANNEL TIME closed" marks the end of a connection. With --log-up, every read from the
client after the link message adds "CHANNEL TIME up BYTES" (client->server bytes on the wire).

    daemon_spiceproxy.py summary FILE --size WxH [--from T] [--to T]

prints, for the display channel: full-screen draws (box = WxH), all draws, updates (bursts of
draw or stream-frame messages: a gap of over 10 ms starts a new one, so each is one picture
change the client shows), stream frames, display bytes, and the time of the first surface of that size and of the first draw
after it.
"""
import argparse
import socket
import struct
import sys
import threading
import time

CHANNELS = {1: "main", 2: "display", 3: "inputs", 4: "cursor", 5: "playback", 6: "record",
            7: "tunnel", 8: "smartcard", 9: "usbredir", 10: "port", 11: "webdav"}
DRAW_TYPES = set(range(302, 314)) | {318}
MINI_HEADER_CAP = 1 << 3

lock = threading.Lock()


def log_line(f, line):
    with lock:
        f.write(line + "\n")
        f.flush()


def recv_exact(sock, n, sink):
    """Read exactly n bytes from sock, forwarding them to sink; None on EOF."""
    buf = bytearray()
    while len(buf) < n:
        d = sock.recv(min(65536, n - len(buf)))
        if not d:
            return None
        sink.sendall(d)
        buf += d
    return bytes(buf)


def caps_word0(body, caps_offset, num_common):
    if num_common == 0:
        return 0
    o = caps_offset
    if o + 4 > len(body):
        return 0
    return struct.unpack_from("<I", body, o)[0]


STREAM_CREATE, STREAM_DATA, DRAW_COPY = 122, 123, 304
SPICE_IMAGE_JPEG = 105


def jpeg_of_draw_copy(body):
    """The JPEG bytes and box (w, h, x, y) of a DRAW_COPY whose image is JPEG, else None."""
    _sid, top, left, bottom, right = struct.unpack_from("<Iiiii", body, 0)
    o = 20
    clip_type = body[o]
    o += 1
    if clip_type == 1:
        n = struct.unpack_from("<I", body, o)[0]
        o += 4 + 16 * n
    img = struct.unpack_from("<I", body, o)[0]
    if img == 0 or img + 18 + 4 > len(body) or body[img + 8] != SPICE_IMAGE_JPEG:
        return None
    size = struct.unpack_from("<I", body, img + 18)[0]
    return body[img + 22 : img + 22 + size], (right - left, bottom - top, left, top)


class Dumper:
    """Writes the lossy pictures of one display connection to a directory (--dump)."""

    seq = 0

    def __init__(self, d):
        self.dir = d
        self.streams = {}

    def write(self, name, data, ext="jpg"):
        with lock:
            Dumper.seq += 1
            n = Dumper.seq
        with open(f"{self.dir}/{n:06d}-{name}.{ext}", "wb") as f:
            f.write(data)

    def message(self, mtype, body):
        if mtype == STREAM_CREATE and len(body) >= 50:
            _sid, sid = struct.unpack_from("<II", body, 0)
            codec = body[9]
            top, left, bottom, right = struct.unpack_from("<iiii", body, 34)
            self.streams[sid] = (right - left, bottom - top, left, top, codec)
        elif mtype == STREAM_DATA and len(body) >= 12:
            sid, _mm, size = struct.unpack_from("<III", body, 0)
            w, h, x, y, codec = self.streams.get(sid, (0, 0, 0, 0, 1))
            # MJPEG (1) frames are JPEG files, VP8 (2) frames raw VP8 frames (.vp8)
            ext = "vp8" if codec == 2 else "jpg"
            self.write(f"stream-{sid}-{w}x{h}+{x}+{y}", body[12 : 12 + size], ext)
        elif mtype == DRAW_COPY:
            r = jpeg_of_draw_copy(body)
            if r is not None:
                data, (w, h, x, y) = r
                self.write(f"image-{w}x{h}+{x}+{y}", data)


class Conn:
    def __init__(self, client, upstream, events, log_up=False, dump=None):
        self.c, self.u, self.ev = client, upstream, events
        self.log_up = log_up
        self.dump = dump
        self.chan = "unknown"
        self.client_caps = 0
        self.ready = threading.Event()

    def client_to_server(self):
        try:
            hdr = recv_exact(self.c, 16, self.u)
            if hdr is None or hdr[:4] != b"REDQ":
                return
            size = struct.unpack_from("<I", hdr, 12)[0]
            body = recv_exact(self.c, size, self.u)
            if body is None:
                return
            _conn_id, ctype, _cid, ncommon, _nchan, caps_off = struct.unpack_from("<IBBIII", body, 0)
            self.chan = CHANNELS.get(ctype, f"chan{ctype}")
            self.client_caps = caps_word0(body, caps_off, ncommon)
            self.ready.set()
            while True:
                d = self.c.recv(65536)
                if not d:
                    break
                self.u.sendall(d)
                if self.log_up:
                    log_line(self.ev, f"{self.chan} {time.time():.6f} up {len(d)}")
        except OSError:
            pass
        finally:
            self.ready.set()
            for s in (self.u, self.c):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def server_to_client(self):
        try:
            hdr = recv_exact(self.u, 16, self.c)
            if hdr is None:
                return
            size = struct.unpack_from("<I", hdr, 12)[0]
            body = recv_exact(self.u, size, self.c)
            if body is None:
                return
            self.ready.wait(10)
            err = struct.unpack_from("<I", body, 0)[0]
            ncommon, _nchan, caps_off = struct.unpack_from("<III", body, 4 + 162)
            server_caps = caps_word0(body, caps_off, ncommon)
            mini = bool(server_caps & MINI_HEADER_CAP) and bool(self.client_caps & MINI_HEADER_CAP)
            if err != 0:
                log_line(self.ev, f"{self.chan} {time.time():.6f} link error {err}")
                return
            res = recv_exact(self.u, 4, self.c)
            if res is None:
                return
            log_line(self.ev, f"{self.chan} {time.time():.6f} link {struct.unpack('<I', res)[0]} {16 + size + 4} {'mini' if mini else 'full'}")
            hlen = 6 if mini else 18
            dumper = Dumper(self.dump) if self.dump and self.chan == "display" else None
            while True:
                h = recv_exact(self.u, hlen, self.c)
                if h is None:
                    break
                if mini:
                    mtype, msize = struct.unpack("<HI", h)
                else:
                    _serial, mtype, msize, _sub = struct.unpack("<QHII", h)
                # Forward the body in pieces; keep only the first 64 bytes for parsing (the whole
                # body of the messages --dump reads).
                keep_all = dumper is not None and mtype in (STREAM_CREATE, STREAM_DATA, DRAW_COPY)
                head = bytearray()
                left = msize
                while left > 0:
                    d = self.u.recv(min(262144, left))
                    if not d:
                        return
                    self.c.sendall(d)
                    if keep_all:
                        head += d
                    elif len(head) < 64:
                        head += d[: 64 - len(head)]
                    left -= len(d)
                if keep_all:
                    try:
                        dumper.message(mtype, bytes(head))
                    except (struct.error, IndexError, OSError) as e:
                        print(f"dump: message {mtype}: {e}", flush=True)
                t = time.time()
                wire = hlen + msize
                kind, extra = "msg", ""
                if self.chan == "display" and mtype in DRAW_TYPES and len(head) >= 20:
                    _sid, top, left_, bottom, right = struct.unpack_from("<Iiiii", head, 0)
                    kind, extra = "draw", f" {right - left_}x{bottom - top}"
                elif self.chan == "display" and mtype == STREAM_DATA:
                    kind = "frame"
                elif self.chan == "display" and mtype == 314 and len(head) >= 12:
                    _sid, w, hh = struct.unpack_from("<III", head, 0)
                    kind, extra = "surface", f" {w}x{hh}"
                log_line(self.ev, f"{self.chan} {t:.6f} {kind} {mtype} {wire}{extra}")
        except (OSError, struct.error):
            pass
        finally:
            log_line(self.ev, f"{self.chan} {time.time():.6f} closed")
            for s in (self.u, self.c):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass


def connect_upstream(port, timeout):
    end = time.time() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.05)


def serve(args):
    ev = open(args.events, "a")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen))
    ls.listen(16)
    print(f"proxy 127.0.0.1:{args.listen} -> 127.0.0.1:{args.upstream}", flush=True)

    def handle(c):
        try:
            u = connect_upstream(args.upstream, args.connect_timeout)
        except OSError as e:
            print(f"upstream: {e}", flush=True)
            c.close()
            return
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(c, u, ev, args.log_up, args.dump)
        threading.Thread(target=conn.client_to_server, daemon=True).start()
        conn.server_to_client()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def summary(args):
    w, h = (int(v) for v in args.size.lower().split("x"))
    full = draws = dbytes = updates = frames = 0
    t_surface = t_first = t_last = t_prev_draw = None
    t_first_full = None
    for line in open(args.file):
        p = line.split()
        if len(p) < 4 or p[0] != "display":
            continue
        t = float(p[1])
        if p[2] == "surface" and p[5] == f"{w}x{h}" and t_surface is None:
            t_surface = t
        if args.t_from is not None and t < args.t_from:
            continue
        if args.t_to is not None and t > args.t_to:
            continue
        if p[2] in ("msg", "draw", "surface", "frame"):
            dbytes += int(p[4])
        if p[2] == "frame":
            frames += 1
            if t_prev_draw is None or t - t_prev_draw > 0.010:
                updates += 1
            t_prev_draw = t
        if p[2] == "draw":
            draws += 1
            if t_prev_draw is None or t - t_prev_draw > 0.010:
                updates += 1
            t_prev_draw = t
            if t_surface is not None and t_first is None and t >= t_surface:
                t_first = t
            if p[5] == f"{w}x{h}":
                full += 1
                t_first_full = t_first_full or t
                t_last = t
    print(f"full_draws={full} draws={draws} updates={updates} stream_frames={frames} display_bytes={dbytes} "
          f"t_surface={t_surface or 0:.6f} t_first_draw={t_first or 0:.6f} "
          f"t_first_full={t_first_full or 0:.6f} t_last_full={t_last or 0:.6f}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "summary":
        ap = argparse.ArgumentParser(prog="daemon_spiceproxy.py summary")
        ap.add_argument("file")
        ap.add_argument("--size", required=True)
        ap.add_argument("--from", dest="t_from", type=float)
        ap.add_argument("--to", dest="t_to", type=float)
        summary(ap.parse_args(sys.argv[2:]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--connect-timeout", type=float, default=120)
    ap.add_argument("--log-up", action="store_true")
    ap.add_argument("--dump", help="directory for the JPEG pictures (stream frames, JPEG images)")
    try:
        serve(ap.parse_args())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
