#!/usr/bin/env bash
# End-to-end proof of the rig with the reference stack: QEMU 11's own qxl-vga + libspice-server,
# the real Linux qxl driver in a Debian guest, the real spice-gtk client (spicy-screenshot).
#
#   1. build what is missing (trixie root with QEMU, guest kernel + initramfs; cached)
#   2. boot the guest: the qxl driver binds ("[drm] Initialized qxl", /dev/dri/card0, /dev/fb0)
#   3. guest test "fb": a known picture written to /dev/fb0 comes back from spicy-screenshot
#      pixel for pixel
#   4. guest test "kms": a picture shown through a KMS dumb buffer and updated with DIRTYFB clips
#      comes back pixel for pixel
#   5. guest test "cursor": the 64x64 ARGB cursor set with DRM_IOCTL_MODE_CURSOR reaches the
#      client's cursor channel pixel for pixel, and its 3 moves arrive (spice-gtk via GObject)
#   6. guest test "modes" with a minimal agent: a spice-gtk client asks for 800x600 (monitors
#      config); QEMU's qxl raises CLIENT_MONITORS_CONFIG and the guest connector's preferred mode
#      becomes 800x600
#   7. guest test "xorg" (bookworm): Xorg with xf86-video-qxl draws images/xorg/draw.sh's scene;
#      the client's picture equals the same X clients' picture on the host's Xvfb, pixel for pixel
#      (the same check as daemon-qxl.sh's xorg case, here against the reference stack)
#
# Env: RIG_DISTS="bookworm trixie" to run the guests of both kernels (default: bookworm).
# Exit status 0 only when every check passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh # xvfb_start, xorg_expected

[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
for tool in spicy-screenshot python3 gcc mmdebstrap Xvfb xterm xsetroot xwud xwininfo mke2fs; do
    command -v "$tool" >/dev/null || rig_fail "$tool missing: run images/install-host-deps.sh"
done
/usr/bin/python3 -c 'import gi; gi.require_version("SpiceClientGLib", "2.0")' 2>/dev/null ||
    rig_fail "spice-gtk's GObject bindings missing (python3-gi, gir1.2-spiceclientglib-2.0): run images/install-host-deps.sh"
RIG_OUT=$(mktemp -d /tmp/reference-qxl.XXXXXX)
RIG_NAME=reference-qxl
trap 'rig_stop_guest; daemon_cleanup' EXIT
t_start=$(rig_now_ms)
step() { rig_step "$@"; }

step "building the rig (cached under ${SPICE_RS_CACHE:-~/.cache/spice-rs})"
t0=$(rig_now_ms)
bash images/build-qemu-root.sh >/dev/null || rig_fail "images/build-qemu-root.sh failed"
DISTS=${RIG_DISTS:-bookworm}
for d in $DISTS; do
    bash images/build-guest.sh "$d" >/dev/null || rig_fail "images/build-guest.sh $d failed"
done
step "rig ready in $(($(rig_now_ms) - t0)) ms"

for d in $DISTS; do
    for t in fb kms; do
        port=$(rig_free_port)
        rig_picture_test "$d-$t" "$port" "$t" "$t" --dist "$d" --reference --spice-port "$port"
    done
    port=$(rig_free_port)
    rig_cursor_test "$d-cursor" "$port" --dist "$d" --reference --spice-port "$port"
    port=$(rig_free_port)
    rig_modes_test "$d-modes" "$port" 800x600 --dist "$d" --reference --agent --spice-port "$port"
done
# Xorg + xf86-video-qxl on QEMU's qxl: same scene, same expected picture as the daemon's xorg case.
xorg_img=$(bash images/build-xorg-root.sh) || rig_fail "images/build-xorg-root.sh failed"
xorg_expected "$RIG_OUT/xorg-ref" "$RIG_OUT/xorg-expected.ppm" || rig_fail "xorg: the expected scene could not be drawn on Xvfb"
port=$(rig_free_port)
t0=$(rig_now_ms)
log="$RIG_OUT/bookworm-xorg.log"
rig_start_guest "$log" --reference --spice-port "$port" --test xorg --append "spice_hold=300" \
    --timeout 600 --disk "$xorg_img" --mem 768
rig_wait_marker "$log" "QXL-TEST: xorg (DRAWN|FAIL)" 300 || rig_fail "xorg: the guest did not draw"
grep -q "QXL-TEST: xorg DRAWN" "$log" || rig_fail "xorg: $(grep -a 'QXL-TEST: xorg FAIL' "$log")"
step "xorg: $(grep -a 'QXL-TEST: xorg STARTED' "$log" | tr -d '\r'), $(grep -a 'QXL-TEST: xorg DRAWN' "$log" | tr -d '\r')"
ok=0
for i in 1 2 3 4 5 6; do
    shot="$RIG_OUT/xorg-$i.ppm"
    if rig_screenshot "$port" "$shot" 30 &&
        python3 "$RIG_TESTS_LIB/qxlpic.py" compare "file:$RIG_OUT/xorg-expected.ppm" "$shot" >"$shot.cmp"; then
        ok=1
        break
    fi
    step "xorg: attempt $i: $(cut -c1-160 "$shot.cmp" 2>/dev/null)"
    sleep 2
done
[ $ok = 1 ] || rig_fail "xorg: the client's picture differs from Xvfb's (see $RIG_OUT)"
step "xorg: $(cat "$shot.cmp") ($(($(rig_now_ms) - t0)) ms after start)"
rig_stop_guest

rm -rf "$RIG_OUT"
step "PASS in $(($(rig_now_ms) - t_start)) ms"
