#!/usr/bin/env bash
# Builds (once, cached) the root file system of the xorg test guest: Debian bookworm with Xorg,
# xf86-video-qxl (xserver-xorg-video-qxl), xterm, xwud, xsetroot and xwininfo, plus images/xorg/ (xorg.conf,
# draw.sh and the picture draw.sh shows) in /spice-test. An ext2 image that the guest mounts from
# virtio-blk (run-guest.sh --disk; QEMU opens it with snapshot=on, so it is never written).
# The agent test (images/guest/init, test "agent") runs Debian's spice-vdagent (spice-vdagentd + the
# session agent) on the same root: udev (systemd-udevd, already a dependency of xserver-xorg-core)
# hot-plugs the uinput tablet spice-vdagentd creates into Xorg through xserver-xorg-input-libinput
# (images/xorg/xorg-agent.conf), and xclip, xdotool and xrandr (x11-xserver-utils) answer the
# host's questions on the control port.
#
#   images/build-xorg-root.sh            prints the image's path on stdout
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rig_need_root
command -v mmdebstrap >/dev/null || rig_die "mmdebstrap missing: run images/install-host-deps.sh"
command -v mke2fs >/dev/null || rig_die "mke2fs missing: run images/install-host-deps.sh (e2fsprogs)"

OUT="$SPICE_RS_CACHE/xorg-root"
PKGS=xserver-xorg-core,xserver-xorg-video-qxl,x11-xserver-utils,x11-utils,x11-apps,xterm,xfonts-base,fonts-dejavu-core
PKGS+=,spice-vdagent,xserver-xorg-input-libinput,xclip,xdotool
HASH=$(cat "$0" "$RIG_IMAGES_DIR"/xorg/* <(echo "$PKGS") | sha256sum | cut -c1-16)
if [ -f "$OUT/root.img" ] && [ "$(cat "$OUT/hash" 2>/dev/null)" = "$HASH" ]; then
    printf '%s\n' "$OUT/root.img"
    exit 0
fi
rig_lock xorg-root
start=$(date +%s)
mkdir -p "$OUT"
WORK=$(mktemp -d "$SPICE_RS_CACHE/build-xorg.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rig_log "building the Xorg root (bookworm: $PKGS)"
mmdebstrap --variant=minbase --mode=root --quiet --include="$PKGS" \
    bookworm "$WORK/root.tar" "$(rig_mirror)" >&2
mkdir "$WORK/root"
tar -xf "$WORK/root.tar" -C "$WORK/root"
rm -f "$WORK/root.tar"
mkdir -p "$WORK/root/spice-test"
cp "$RIG_IMAGES_DIR/xorg/xorg.conf" "$RIG_IMAGES_DIR/xorg/xorg-agent.conf" "$RIG_IMAGES_DIR/xorg/follow-preferred.sh" \
    "$RIG_IMAGES_DIR/xorg/draw.sh" "$RIG_IMAGES_DIR/xorg/xterm-scroll.sh" \
    "$WORK/root/spice-test/"
python3 "$RIG_IMAGES_DIR/xorg/make-pattern.py" "$WORK/root/spice-test/pattern.xwd"
size=$(($(du -sm "$WORK/root" | cut -f1) + 128))
mke2fs -q -t ext2 -L xroot -d "$WORK/root" "$WORK/root.img" "${size}M" >&2
mv "$WORK/root.img" "$OUT/root.img"
echo "$HASH" >"$OUT/hash"
rig_log "Xorg root ready in $(($(date +%s) - start)) s: $OUT/root.img (${size} MiB)"
printf '%s\n' "$OUT/root.img"
