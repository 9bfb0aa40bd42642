#!/usr/bin/env bash
# Builds (once, cached) a Debian trixie root filesystem holding QEMU >= 10.1 from trixie-backports
# (vfio-user-pci) plus qemu-system-modules-spice (QEMU's own qxl + spice, the reference stack).
# Prints the root's path on stdout. Run QEMU as `chroot ROOT qemu-system-x86_64 ...`.
#
# The mirror is the one this machine's apt already uses; nothing under the host's /etc/apt changes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rig_need_root

ROOT=$(rig_qemu_root)
PKGS="qemu-system-x86 qemu-system-modules-spice"

verify() {
    local r=$1
    chroot "$r" qemu-system-x86_64 -device vfio-user-pci,help >/dev/null 2>&1 ||
        { rig_log "verify: no vfio-user-pci in $r"; return 1; }
    chroot "$r" qemu-system-x86_64 -device help 2>/dev/null | grep -q '"qxl-vga"' ||
        { rig_log "verify: no qxl-vga in $r"; return 1; }
}

rig_lock qemu-root
if [ -f "$ROOT/.spice-rs-ready" ] && verify "$ROOT"; then
    printf '%s\n' "$ROOT"
    exit 0
fi

command -v mmdebstrap >/dev/null || rig_die "mmdebstrap missing: run images/install-host-deps.sh"
MIRROR=$(rig_mirror)
rig_log "building trixie root with QEMU from trixie-backports (mirror from this machine's apt sources)"
start=$(date +%s)
TMP="$ROOT.tmp.$$"
rm -rf "$TMP" "$ROOT"
trap 'rm -rf "$TMP"' EXIT
# Package lists stay in the root (--skip=cleanup/apt/lists): build-guest.sh trixie downloads the
# trixie kernel package with the root's own apt.
mmdebstrap --variant=minbase --mode=root --quiet \
    --skip=cleanup/apt/lists \
    --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="chroot \"\$1\" apt-get install -y -q --no-install-recommends -t trixie-backports $PKGS" \
    trixie "$TMP" "deb $MIRROR trixie main" "deb $MIRROR trixie-backports main" >&2
verify "$TMP" || rig_die "the new trixie root has no working vfio-user-pci/qxl-vga"
chroot "$TMP" qemu-system-x86_64 --version | head -1 >"$TMP/.spice-rs-ready"
mv "$TMP" "$ROOT"
trap - EXIT
rig_log "trixie root ready in $(($(date +%s) - start)) s: $(cat "$ROOT/.spice-rs-ready")"
printf '%s\n' "$ROOT"
