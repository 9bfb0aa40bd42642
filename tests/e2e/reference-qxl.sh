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
#
# Env: RIG_DISTS="bookworm trixie" to run the guests of both kernels (default: bookworm).
# Exit status 0 only when every check passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh

[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
for tool in spicy-screenshot python3 gcc mmdebstrap; do
    command -v "$tool" >/dev/null || rig_fail "$tool missing: run images/install-host-deps.sh"
done
/usr/bin/python3 -c 'import gi; gi.require_version("SpiceClientGLib", "2.0")' 2>/dev/null ||
    rig_fail "spice-gtk's GObject bindings missing (python3-gi, gir1.2-spiceclientglib-2.0): run images/install-host-deps.sh"
RIG_OUT=$(mktemp -d /tmp/reference-qxl.XXXXXX)
RIG_NAME=reference-qxl
trap 'rig_stop_guest' EXIT
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
rm -rf "$RIG_OUT"
step "PASS in $(($(rig_now_ms) - t_start)) ms"
