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
OUT=$(mktemp -d /tmp/reference-qxl.XXXXXX)
trap 'rig_stop_guest' EXIT
t_start=$(rig_now_ms)

step() { printf '[reference-qxl] %s\n' "$*" >&2; }

step "building the rig (cached under ${SPICE_RS_CACHE:-~/.cache/spice-rs})"
t0=$(rig_now_ms)
bash images/build-qemu-root.sh >/dev/null || rig_fail "images/build-qemu-root.sh failed"
DISTS=${RIG_DISTS:-bookworm}
for d in $DISTS; do
    bash images/build-guest.sh "$d" >/dev/null || rig_fail "images/build-guest.sh $d failed"
done
step "rig ready in $(($(rig_now_ms) - t0)) ms"

# run_picture_test DIST TEST PICTURE: boot, wait for the drawing, screenshot, compare.
run_picture_test() {
    local dist=$1 test=$2 pic=$3 port log t0 geom shot i ok=0
    port=$(rig_free_port)
    log="$OUT/$dist-$test.log"
    t0=$(rig_now_ms)
    rig_start_guest "$log" --dist "$dist" --reference --spice-port "$port" --test "$test" --timeout 300
    rig_wait_marker "$log" 'QXL-TEST: bind (PASS|FAIL)' 120 || rig_fail "$dist: guest did not reach the qxl bind check"
    grep -q 'QXL-TEST: bind PASS' "$log" || rig_fail "$dist: qxl did not bind"
    grep -qE '\[drm\] Initialized qxl ' "$log" || rig_fail "$dist: no '[drm] Initialized qxl' line"
    step "$dist/$test: qxl bound ($(grep -o 'driver=qxl card0 fb0' "$log")) $(($(rig_now_ms) - t0)) ms after start, $(grep 'run-guest: accel=' "$log.run" | cut -d' ' -f2)"
    rig_wait_marker "$log" "QXL-TEST: $test (DRAWN|FAIL)" 120 || rig_fail "$dist/$test: guest did not draw"
    grep -q "QXL-TEST: $test DRAWN" "$log" || rig_fail "$dist/$test: guest test failed"
    geom=$(sed -n "s/^QXL-TEST: $test DRAWN picture=[a-z0-9]* \([0-9]*x[0-9]*\).*/\1/p" "$log" | head -1)
    [ -n "$geom" ] || rig_fail "$dist/$test: no geometry in the DRAWN line"
    step "$dist/$test: guest drew picture '$pic' ($geom) $(($(rig_now_ms) - t0)) ms after start"
    # spicy-screenshot saves the first draw after the primary surface is created; a client that
    # connects after the guest drew gets the whole current surface. Retry in case a flush was late.
    for i in 1 2 3; do
        shot="$OUT/$dist-$test-$i.ppm"
        if ! rig_screenshot "$port" "$shot" 30; then
            step "$dist/$test: screenshot attempt $i failed: $(tail -1 "$shot.log" 2>/dev/null)"
            sleep 1
            continue
        fi
        if python3 tests/lib/qxlpic.py compare "$pic" "$shot" --size "$geom" \
            --expected-out "$OUT/$dist-$test-expected.ppm" >"$shot.cmp"; then
            ok=1
            break
        fi
        step "$dist/$test: attempt $i: $(cat "$shot.cmp")"
        sleep 1
    done
    [ $ok = 1 ] || rig_fail "$dist/$test: the client's picture differs from the guest's (see $OUT)"
    step "$dist/$test: $(cat "$shot.cmp") ($(($(rig_now_ms) - t0)) ms after start)"
    rig_stop_guest
}

for d in $DISTS; do
    run_picture_test "$d" fb fb
    run_picture_test "$d" kms kms
done
rm -rf "$OUT"
step "PASS in $(($(rig_now_ms) - t_start)) ms"
