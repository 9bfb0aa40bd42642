#!/usr/bin/env bash
# End-to-end tests of spice-bridge's WebSocket transport against the real spice-html5 client
# (Debian's spice-html5 in headless Debian chromium, driven by playwright-core from
# tests/browser, pinned in its package-lock.json). Fails (never skips) when a piece is missing.
#
#   1. in-process server (spice-bridge/tests/spice_html5.rs): a scene pixel for pixel, a key and
#      a click reaching the server; a wrong ticket refused; plain Spice on the same port
#   2. the real stack: the spice-bridge daemon serving QXL (vfio-user) and a keyboard and tablet
#      (vhost-user) to a QEMU 11 bookworm guest running `qxltest input`; spice-html5 connects
#      to the daemon's Spice port over WebSocket; the guest's picture ("fb", every pixel's
#      colour names its coordinates) is in the canvas pixel for pixel, and the key typed and the
#      click made in the browser arrive in the guest's evdev (tests/lib/input_check.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for p in /usr/bin/chromium /usr/share/spice-html5/spice_auto.html; do
    [ -e "$p" ] || { echo "FAIL: $p is missing (images/install-host-deps.sh)" >&2; exit 1; }
done
for bin in node npm; do
    command -v "$bin" >/dev/null || { echo "FAIL: $bin is not installed (images/install-host-deps.sh)" >&2; exit 1; }
done

echo "== playwright-core (npm ci in tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund)

echo "== spice-html5 in chromium: the scene pixel for pixel, key and click; wrong ticket; plain Spice on the same port"
cargo test -p spice-bridge --test spice_html5 -- --ignored --test-threads=1
echo "PASS: spice-html5 against the in-process server (screenshot: target/spice-html5/spice-html5.png)"

. tests/lib/rig.sh
. tests/lib/daemon.sh
. tests/lib/input.sh
[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
RIG_OUT=$(mktemp -d /tmp/spice-html5.XXXXXX)
RIG_NAME=spice-html5
KEEP=0
trap 'daemon_cleanup; [ $KEEP = 1 ] || rm -rf "$RIG_OUT"' EXIT
fail() {
    KEEP=1
    [ -z "$DAEMON_LOG" ] || { echo "--- daemon log (tail)" >&2; tail -20 "$DAEMON_LOG" >&2; }
    rig_fail "$* (work dir $RIG_OUT kept)"
}
input_on_fail() { fail "$1: $INPUT_WHY"; }

rig_step "== spice-html5 in chromium against the daemon and a real guest (keyboard + tablet)"
bash images/build-qemu-root.sh >/dev/null || rig_fail "images/build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || rig_fail "images/build-guest.sh bookworm failed"
daemon_build || rig_fail "cargo build -p spice-bridge --bin spice-bridge failed"
D=$RIG_OUT/guest
mkdir -p "$D"
daemon_start "$D" --disable-ticketing --qxl-no-mmap \
    --keyboard-socket "$D/kbd.sock" --tablet-socket "$D/tablet.sock" || fail "the daemon did not start"
input_boot "$D/guest.log" keyboard,tablet --vfio-user "$DAEMON_SOCK" --no-mmap \
    --input-socket "$D/kbd.sock" --input-socket "$D/tablet.sock" || fail "guest: $INPUT_WHY"
geom=$(grep -ao 'QXL-TEST: input SCREEN [0-9]*x[0-9]*' "$RIG_GUEST_LOG" | head -1 | awk '{print $4}')
[ -n "$geom" ] || fail "no 'input SCREEN WxH' line in the guest log"
W=${geom%x*} H=${geom#*x}
python3 tests/lib/qxlpic.py write fb "$geom" "$D/expected.ppm" || fail "qxlpic.py write fb $geom"
CX=$((W / 3)) CY=$((H * 2 / 3))
m=$(input_mark)
t0=$(rig_now_ms)
json=$(cd tests/browser && timeout 120 node spice-html5.mjs view "$DAEMON_PORT" "$D/expected.ppm" "$W" "$H" "$D" "$CX" "$CY") ||
    fail "the browser driver failed: $json"
rig_step "  driver ($(($(rig_now_ms) - t0)) ms): $json"
case $json in
*'"diff":0,'*) rig_step "  ok   the guest's ${geom} picture in spice-html5's canvas, pixel for pixel ($D/spice-html5.png)" ;;
*) fail "spice-html5's canvas differs from the guest's picture: $json (canvas.rgb and spice-html5.png in $D)" ;;
esac
input_step "the key typed in the browser (KeyA) reaches the guest" input_expect "$m" text a
input_step "the click in the browser at ($CX,$CY) reaches the guest's tablet" input_expect "$m" click "$CX" "$CY" 272
stats=$(daemon_ctl stats) || fail "control socket: stats"
ws=$(grep -o 'websocket_connections=[0-9]*' <<<"$stats")
[ "${ws#*=}" -ge 4 ] 2>/dev/null || fail "expected main, display, inputs and cursor over WebSocket: $stats"
rig_step "  ok   the daemon counted $ws (main, display, inputs, cursor)"
# spice-html5 cannot decode LZ_PLT (few-colour pictures as palette indices): none may reach it.
grep -q ' palette_images=0 ' <<<"$stats" || fail "LZ_PLT images went to spice-html5: $stats"
rig_step "  ok   no LZ_PLT image went to spice-html5 ($(grep -o 'images_sent=[0-9]*' <<<"$stats"))"
rig_stop_guest
daemon_stop || fail "the daemon did not stop cleanly"
echo "PASS: spice-html5 against the daemon and a real guest (retries: $INPUT_RETRIES)"
