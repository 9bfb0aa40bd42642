#!/usr/bin/env python3
"""Connect/disconnect soak of a real Spice client against the daemon serving a redrawing guest.

Each cycle runs spicy-screenshot (spice-gtk 0.42) once: it links main and display, gets the
guest's current picture and disconnects. Cycles alternate between the plain port and the TLS
port (when --tls-port is given). The guest runs `qxltest redraw`, whose frame f has red
(x + f) & 255 at column x, so the first pixel of each picture tells which frame the client saw.

Prints a table of the daemon's resident memory and open descriptors every --every cycles and
exits non-zero when:
  - a cycle fails twice in a row (one retry per cycle is allowed for the guest's timing; each
    retry is printed and counted),
  - a picture has the wrong size,
  - the daemon's open descriptors at the end exceed those after the first window by more than 2,
  - its resident memory grows by more than --max-rss-growth-kib from the end of the first window
    to the end,
  - a window of --every cycles sees no new guest frame (the guest stalled).
"""
import argparse
import os
import subprocess
import sys
import time


def proc_figures(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def shot(args, tls, out):
    cmd = ["spicy-screenshot", "-h", "127.0.0.1", "-o", out]
    env = dict(os.environ)
    if tls:
        cmd += ["-s", str(args.tls_port)]
        env["SSL_CERT_FILE"] = args.ca
    else:
        cmd += ["-p", str(args.port)]
    try:
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=30)
    except subprocess.TimeoutExpired:
        return None, "timed out after 30 s"
    if r.returncode != 0:
        return None, r.stderr.decode(errors="replace").strip().splitlines()[-1:] or "failed"
    with open(out, "rb") as f:
        data = f.read()
    fields = data.split(maxsplit=4)
    w, h = int(fields[1]), int(fields[2])
    pix = fields[4] if len(fields) > 4 else b""
    return (w, h, pix[0] if pix else -1), None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int)
    p.add_argument("--ca")
    p.add_argument("--pid", type=int, required=True, help="the daemon's pid")
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--size", required=True, help="WxH of the guest's mode")
    p.add_argument("--out", required=True, help="scratch file for the pictures")
    p.add_argument("--max-rss-growth-kib", type=int, default=4096)
    args = p.parse_args()
    want = tuple(int(v) for v in args.size.split("x"))
    failures, retries = [], 0
    rows = [("cycle", "secs", "RSS KiB", "fds", "guest frame (mod 256)")]
    t0 = time.monotonic()
    rss0, fds0 = proc_figures(args.pid)
    rows.append(("0", "0", str(rss0), str(fds0), "-"))
    base = None
    window_frames = set()
    last_frame = None
    for c in range(1, args.cycles + 1):
        tls = args.tls_port is not None and c % 2 == 0
        got, err = shot(args, tls, args.out)
        if got is None:
            retries += 1
            print(f"soak: cycle {c} ({'tls' if tls else 'plain'}) failed ({err}); retrying once "
                  "(guest timing)", file=sys.stderr)
            got, err = shot(args, tls, args.out)
            if got is None:
                failures.append(f"cycle {c}: {err}")
                break
        w, h, red0 = got
        if (w, h) != want:
            failures.append(f"cycle {c}: picture {w}x{h}, guest mode {want[0]}x{want[1]}")
            break
        if red0 != last_frame:
            window_frames.add(red0)
        last_frame = red0
        if c % args.every == 0:
            rss, fds = proc_figures(args.pid)
            rows.append((str(c), f"{time.monotonic() - t0:.0f}", str(rss), str(fds),
                         f"{len(window_frames)} new, last {red0}"))
            if len(window_frames) == 0:
                failures.append(f"cycles {c - args.every + 1}..{c}: no new guest frame (stalled)")
            window_frames = set()
            if base is None:
                base = (rss, fds)
    rss1, fds1 = proc_figures(args.pid)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  " + " | ".join(v.rjust(widths[i]) for i, v in enumerate(r)))
    print(f"  {args.cycles} cycles in {time.monotonic() - t0:.0f} s, {retries} retried "
          f"({'alternating plain and TLS' if args.tls_port else 'plain'})")
    if base is not None:
        if fds1 > base[1] + 2:
            failures.append(f"descriptors grew from {base[1]} to {fds1}")
        if rss1 - base[0] > args.max_rss_growth_kib:
            failures.append(f"RSS grew by {rss1 - base[0]} KiB (limit {args.max_rss_growth_kib})")
    for f in failures:
        print(f"soak FAIL: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
