#!/usr/bin/env python3
"""Host-side checks for the guest's "input" test (images/guest/init, `qxltest input` in
images/guest/qxltest.c), which prints to the serial log:

    QXL-TEST: input SCREEN WxH
    QXL-TEST: input DEVICE eventN name="..." bus=0x.. vendor=0x.. product=0x.. version=0x..
              kind=keyboard|tablet|mouse|other abs_x=MIN..MAX|none abs_y=MIN..MAX|none
              rel=x,y,wheel|none led=caps,num,scroll|none grab=yes|no
    QXL-TEST: input READY devices=N [missing=KIND,..]
    QXL-TEST: input EV eventN TYPE CODE VALUE SEC.USEC       (Linux input event, decimal)
    QXL-TEST: input LED caps=0|1 devices=eventN,..|none

Usage (every "expect" reads the log from byte offset MARK, taken with `mark` before the action,
and polls it until the expectation holds or --timeout seconds pass; exit 0 on success, 1 with
the events it saw on failure, 2 on bad usage):

    input_check.py mark LOG
        print the log's current size (the MARK for the next expect)
    input_check.py locate XWD W H
        where the guest picture "fb" (W x H, tests/lib/qxlpic.py; every pixel's colour names its
        own coordinates) sits 1:1 on the X screen (Xvfb -fbdir frame buffer): prints "OX OY",
        so guest pixel (x, y) is at screen (OX + x, OY + y); exit 1 when it is not on screen
    input_check.py expect LOG MARK text STRING
        the keyboard events spell STRING (US layout; Shift state at each key press decides the
        case), every pressed key is released, and no other key is pressed
    input_check.py expect LOG MARK keys CODE [CODE...]
        the keyboard's EV_KEY events are exactly CODE 1, CODE 0 for each CODE, in order
    input_check.py expect LOG MARK click X Y BUTTON
        BUTTON (272 BTN_LEFT, 273 BTN_RIGHT, 274 BTN_MIDDLE) pressed then released on a tablet
        whose position at the press, scaled from its abs range to the SCREEN size, is guest
        pixel (X, Y) within one pixel
    input_check.py expect LOG MARK buttons CODE [CODE...]
        pointer button events (any tablet or mouse) are exactly CODE 1, CODE 0 for each CODE
    input_check.py expect LOG MARK wheel V [V...]
        the REL_WHEEL values, in order (+1 up, -1 down)
    input_check.py expect LOG MARK rel DX DY
        the REL_X and REL_Y values of the mouse add up to DX and DY
    input_check.py expect LOG MARK led CAPS [NAME-REGEX]
        the guest set its Caps Lock LED to CAPS ("LED caps=CAPS devices=..."), on a device whose
        name matches NAME-REGEX when given
    input_check.py events LOG [MARK]
        print the parsed events (for reports and debugging)

Options for expect: --timeout S (default 10), --settle S (after success, wait S seconds and check
again, so that extra events fail the check; default 0.3).
"""
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EV_KEY, EV_REL, EV_ABS, EV_LED = 1, 2, 3, 0x11
REL_X, REL_Y, REL_WHEEL = 0, 1, 8
ABS_X, ABS_Y = 0, 1
BTN_MISC = 0x100
KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 42, 54
BUTTON_NAMES = {272: "BTN_LEFT", 273: "BTN_RIGHT", 274: "BTN_MIDDLE", 275: "BTN_SIDE", 276: "BTN_EXTRA"}

# US layout: Linux key code -> (unshifted, shifted) character
US = {}
for codes, lo, hi in (
    (range(2, 14), "1234567890-=", "!@#$%^&*()_+"),
    (range(16, 28), "qwertyuiop[]", "QWERTYUIOP{}"),
    (range(30, 42), "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (range(44, 54), "zxcvbnm,./", "ZXCVBNM<>?"),
):
    for c, a, b in zip(codes, lo, hi):
        US[c] = (a, b)
US[43] = ("\\", "|")
US[57] = (" ", " ")

RE_EV = re.compile(r"QXL-TEST: input EV event(\d+) (\d+) (\d+) (-?\d+) (\d+\.\d+)")
RE_DEV = re.compile(r'QXL-TEST: input DEVICE event(\d+) name="([^"]*)" .*?kind=(\w+) abs_x=(\S+) abs_y=(\S+)')
RE_SCREEN = re.compile(r"QXL-TEST: input SCREEN (\d+)x(\d+)")
RE_LED = re.compile(r"QXL-TEST: input LED caps=(\d) devices=(\S+)")


class Log:
    """The guest serial log: devices and screen from the whole file, events after MARK."""

    def __init__(self, path, mark=0):
        data = open(path, "rb").read().decode("utf-8", "replace")
        self.devices = {}  # num -> dict(name, kind, abs_x=(min,max)|None, abs_y=...)
        self.screen = None
        for m in RE_DEV.finditer(data):
            rng = [tuple(int(v) for v in s.split("..")) if ".." in s else None for s in (m.group(4), m.group(5))]
            self.devices[int(m.group(1))] = {"name": m.group(2), "kind": m.group(3), "abs_x": rng[0], "abs_y": rng[1]}
        for m in RE_SCREEN.finditer(data):
            self.screen = (int(m.group(1)), int(m.group(2)))
        tail = open(path, "rb").read()[mark:].decode("utf-8", "replace")
        # (dev, type, code, value, time)
        self.events = [
            (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5)))
            for m in RE_EV.finditer(tail)
        ]
        # (caps, [device numbers])
        self.leds = [(int(m.group(1)), [int(d) for d in re.findall(r"event(\d+)", m.group(2))])
                     for m in RE_LED.finditer(tail)]

    def kind(self, dev):
        return self.devices.get(dev, {}).get("kind", "?")

    def keyboard_keys(self):
        """(code, value) of keyboard keys (codes below BTN_MISC) from keyboard devices; repeats
        (value 2) are counted, not listed."""
        keys, repeats = [], 0
        for dev, typ, code, val, _t in self.events:
            if typ != EV_KEY or code >= BTN_MISC or self.kind(dev) != "keyboard":
                continue
            if val == 2:
                repeats += 1
            else:
                keys.append((code, val))
        return keys, repeats


def fmt_keys(keys):
    return " ".join(f"{c}{'+' if v else '-'}" for c, v in keys) or "(none)"


# --- checks: each returns (ok, message) -------------------------------------------------------
def check_text(log, want):
    keys, repeats = log.keyboard_keys()
    held, shift, text, bad = set(), 0, "", []
    for code, val in keys:
        if val == 1:
            held.add(code)
        else:
            held.discard(code)
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            continue
        if val == 1:
            if code in US:
                text += US[code][1 if held & {KEY_LEFTSHIFT, KEY_RIGHTSHIFT} else 0]
            else:
                text += f"<{code}>"
                bad.append(code)
    ok = text == want and not held and not bad
    msg = f"decoded {text!r} (want {want!r}), {len(keys)} key events, still held {sorted(held) or 'none'}"
    if repeats:
        msg += f", {repeats} autorepeats ignored"
    if not ok:
        msg += f"; events: {fmt_keys(keys)}"
    return ok, msg


def check_keys(log, codes):
    keys, repeats = log.keyboard_keys()
    want = [(c, v) for c in codes for v in (1, 0)]
    ok = keys == want
    msg = f"{len(keys)} key events" + (f", {repeats} autorepeats ignored" if repeats else "")
    msg += f": {fmt_keys(keys)}" + ("" if ok else f" (want {fmt_keys(want)})")
    return ok, msg


def pointer_state(log):
    """Walk the events: per device, current ABS_X/ABS_Y; returns button events with the
    position each press happened at, the wheel values and the REL_X/REL_Y sums."""
    pos, presses, buttons, wheel, rel = {}, [], [], [], [0, 0]
    for dev, typ, code, val, _t in log.events:
        kind = log.kind(dev)
        if typ == EV_ABS and code in (ABS_X, ABS_Y):
            pos.setdefault(dev, [None, None])[code] = val
        elif typ == EV_KEY and code >= BTN_MISC and kind in ("tablet", "mouse") and val in (0, 1):
            buttons.append((code, val))
            if val == 1:
                presses.append((dev, code, tuple(pos.get(dev, [None, None]))))
        elif typ == EV_REL and code == REL_WHEEL:
            wheel.append(val)
        elif typ == EV_REL and code in (REL_X, REL_Y) and kind == "mouse":
            rel[code] += val
    return presses, buttons, wheel, rel


def to_pixel(log, dev, axis, value):
    d = log.devices.get(dev, {})
    rng = d.get("abs_x" if axis == 0 else "abs_y")
    if rng is None or value is None or log.screen is None:
        return None
    lo, hi = rng
    return (value - lo) * log.screen[axis] / (hi - lo + 1)


def check_click(log, x, y, button):
    presses, buttons, _w, _r = pointer_state(log)
    want_b = [(button, 1), (button, 0)]
    if log.screen is None:
        return False, "no 'input SCREEN WxH' line in the guest log"
    for dev, code, (ax, ay) in presses:
        if code != button:
            continue
        if log.kind(dev) != "tablet":
            return False, f"{BUTTON_NAMES.get(code, code)} came from event{dev} ({log.kind(dev)}), not a tablet"
        px, py = to_pixel(log, dev, 0, ax), to_pixel(log, dev, 1, ay)
        if px is None or py is None:
            return False, f"{BUTTON_NAMES.get(code, code)} pressed before any absolute position (abs={ax},{ay})"
        ok = abs(px - x) <= 1 and abs(py - y) <= 1 and buttons == want_b
        msg = (f"{BUTTON_NAMES.get(code, code)} on event{dev} at abs ({ax},{ay}) = guest pixel "
               f"({px:.2f},{py:.2f}) on {log.screen[0]}x{log.screen[1]}, want ({x},{y}) +-1; "
               f"buttons {fmt_keys(buttons)}")
        return ok, msg
    return False, f"no {BUTTON_NAMES.get(button, button)} press yet; buttons {fmt_keys(buttons)}"


def check_buttons(log, codes):
    _p, buttons, _w, _r = pointer_state(log)
    want = [(c, v) for c in codes for v in (1, 0)]
    return buttons == want, f"buttons {fmt_keys(buttons)}" + ("" if buttons == want else f" (want {fmt_keys(want)})")


def check_wheel(log, values):
    _p, _b, wheel, _r = pointer_state(log)
    return wheel == values, f"REL_WHEEL {wheel} (want {values})"


def check_rel(log, dx, dy):
    _p, _b, _w, rel = pointer_state(log)
    n = sum(1 for e in log.events if e[1] == EV_REL and e[2] in (REL_X, REL_Y))
    return rel == [dx, dy], f"REL_X/REL_Y sums ({rel[0]},{rel[1]}) over {n} events (want ({dx},{dy}))"


def check_led(log, caps, name_re=None):
    if not log.leds:
        return False, f"no 'LED caps=' line yet (want caps={caps})"
    last, devs = log.leds[-1]
    names = [log.devices.get(d, {}).get("name", f"event{d}") for d in devs]
    ok = last == caps and bool(devs)
    if name_re:
        ok = ok and all(re.search(name_re, n) for n in names)
    return ok, (f"guest set Caps Lock LED {last} on {', '.join(names) or 'no device'} "
                f"(want {caps}{' on ' + name_re if name_re else ''})")


# --- locate the guest picture "fb" on the X screen ---------------------------------------------
def fb_decode(r, g, b):
    """Inverse of qxlpic.pic_fb for x, y < 1024: r = x & 255, g = y & 255,
    b = 64 (x >> 8) + 16 (y >> 8) + ((x ^ y) & 15)."""
    if (b & 15) != ((r ^ g) & 15):
        return None
    return (b >> 6) * 256 + r, ((b >> 4) & 3) * 256 + g


def locate(xwd, w, h):
    import daemon_xwd
    import qxlpic

    fr = daemon_xwd.Frame(xwd)
    votes = {}
    for sy in range(0, fr.h, 13):
        for sx in range(0, fr.w, 13):
            g = fb_decode(*fr.px(sx, sy))
            if g and g[0] < w and g[1] < h:
                o = (sx - g[0], sy - g[1])
                votes[o] = votes.get(o, 0) + 1
    for (ox, oy), _n in sorted(votes.items(), key=lambda kv: -kv[1])[:5]:
        if ox < 0 or oy < 0 or ox + w > fr.w or oy + h > fr.h:
            continue
        pts = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w // 2, h // 3), (w // 3, h // 2), (1, 1)]
        if all(fr.px(ox + x, oy + y) == qxlpic.pic_fb(x, y) for x, y in pts):
            return ox, oy
    return None


CHECKS = {
    "text": (lambda log, a: check_text(log, a[0]), 1),
    "keys": (lambda log, a: check_keys(log, [int(v) for v in a]), -1),
    "click": (lambda log, a: check_click(log, int(a[0]), int(a[1]), int(a[2])), 3),
    "buttons": (lambda log, a: check_buttons(log, [int(v) for v in a]), -1),
    "wheel": (lambda log, a: check_wheel(log, [int(v) for v in a]), -1),
    "rel": (lambda log, a: check_rel(log, int(a[0]), int(a[1])), 2),
    "led": (lambda log, a: check_led(log, int(a[0]), a[1] if len(a) > 1 else None), -1),
}


def expect(path, mark, what, args, timeout, settle):
    fn, nargs = CHECKS[what]
    if (nargs >= 0 and len(args) != nargs) or (nargs < 0 and not args):
        raise ValueError(f"expect {what}: wrong number of arguments")
    end = time.monotonic() + timeout
    while True:
        ok, msg = fn(Log(path, mark), args)
        if ok:
            if settle > 0:
                time.sleep(settle)
                ok, msg = fn(Log(path, mark), args)
            break
        if time.monotonic() >= end:
            break
        time.sleep(0.1)
    print(f"{'OK' if ok else 'FAIL'} {what}: {msg}", flush=True)
    return 0 if ok else 1


def main(argv):
    opts = {"--timeout": 10.0, "--settle": 0.3}
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = float(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    try:
        if len(rest) == 2 and rest[0] == "mark":
            print(os.path.getsize(rest[1]))
            return 0
        if len(rest) == 4 and rest[0] == "locate":
            r = locate(rest[1], int(rest[2]), int(rest[3]))
            if r is None:
                print("NOTFOUND")
                return 1
            print(f"{r[0]} {r[1]}")
            return 0
        if len(rest) >= 4 and rest[0] == "expect" and rest[3] in CHECKS:
            return expect(rest[1], int(rest[2]), rest[3], rest[4:], opts["--timeout"], opts["--settle"])
        if len(rest) in (2, 3) and rest[0] == "events":
            log = Log(rest[1], int(rest[2]) if len(rest) == 3 else 0)
            for num, d in sorted(log.devices.items()):
                print(f"event{num}: {d['kind']} {d['name']!r} abs_x={d['abs_x']} abs_y={d['abs_y']}")
            for dev, typ, code, val, t in log.events:
                print(f"{t:.6f} event{dev} type={typ} code={code} value={val}")
            return 0
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
