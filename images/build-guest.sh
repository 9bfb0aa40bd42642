#!/usr/bin/env bash
# Builds (once, cached) a test guest: Debian's stock amd64 kernel plus an initramfs with static
# busybox, the qxl module and its dependencies, the guest test program (images/guest/qxltest.c,
# compiled here with gcc -static) and images/guest/init.
#
#   images/build-guest.sh [bookworm|trixie]      (default bookworm)
#
# Prints the guest directory on stdout; it holds `vmlinuz`, `initrd.gz` and `info` (KVER=, PKG=).
# bookworm's kernel package comes from the host's apt; trixie's from the trixie root's apt
# (images/build-qemu-root.sh, built on demand). Rebuilt only when an input changes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DIST=${1:-bookworm}
case "$DIST" in bookworm | trixie) ;; *) rig_die "usage: build-guest.sh [bookworm|trixie]" ;; esac
OUT=$(rig_guest_dir "$DIST")
DEBS="$SPICE_RS_CACHE/debs"
# Wanted modules; "?" marks one that may be built in (then it is not in the package).
# virtio_pci + virtio_console carry the Spice agent port for the monitors-config tests.
MODS="drm drm_kms_helper ttm drm_ttm_helper qxl virtio_pci? virtio_console?"
# virtio_blk + ext4 (which wants crc32c) mount the Xorg root file system of the xorg test; only that
# test loads them (xorg-load-order). The qxl driver leaks its IRQ handler on rmmod (images/README.md,
# "Known driver behaviour"); with these modules loaded too, the stale handler of trixie's 6.12 takes
# the reloaded driver's interrupts or faults, on QEMU's own qxl as on ours.
XORG_MODS="virtio_blk? crc32c_generic? ext4?"
# Input devices, loaded by the input test only (input-load-order): evdev (/dev/input/event*),
# virtio_input (QEMU's virtio-keyboard/tablet/mouse-pci and vhost-user-input-pci, the daemon's),
# psmouse (the pc machine's PS/2 mouse: relative motion in server mouse mode; the PS/2 keyboard,
# atkbd + i8042, is built into Debian's kernels), and QEMU's usb-tablet on a qemu-xhci host
# (xhci_pci -> xhci_hcd -> usbcore, then usbhid + hid_generic bind the tablet); uinput for the
# agent test (spice-vdagentd's tablet for client mouse mode, /dev/uinput).
INPUT_MODS="evdev virtio_input? psmouse? xhci_pci? usbhid? hid_generic? uinput?"
# The VDI port test (vdiport-load-order, its whole closure: that test loads no qxl): virtio_pci and
# virtio_console, built into trixie's kernel (then the list is empty).
VDIPORT_MODS="virtio_pci? virtio_console?"

# --- which kernel package -------------------------------------------------------------------
# The apt that resolves and downloads the kernel: the host's (bookworm) or the trixie root's.
apt_run() {
    if [ "$DIST" = bookworm ]; then
        (cd "$1" && shift && "$@")
    else
        local root dir
        root=$(rig_qemu_root)
        dir=$(mktemp -d "$root/tmp/dl.XXXXXX")
        (chroot "$root" sh -c "cd /tmp/${dir##*/} && \"\$@\"" sh "${@:2}") || { rm -rf "$dir"; return 1; }
        find "$dir" -maxdepth 1 -name '*.deb' -exec mv {} "$1/" \;
        rm -rf "$dir"
    fi
}

resolve_pkg() {
    apt_run /tmp apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1
}

if [ "$DIST" = trixie ]; then
    rig_need_root
    bash "$RIG_IMAGES_DIR/build-qemu-root.sh" >/dev/null
fi

rig_lock "guest-$DIST"
mkdir -p "$DEBS"

# A previous build pinned its package; reuse it while its .deb is in the cache (offline rebuilds).
PKG=""
if [ -f "$OUT/info" ]; then
    PKG=$(sed -n 's/^PKG=//p' "$OUT/info")
    ls "$DEBS/${PKG}_"*.deb >/dev/null 2>&1 || PKG=""
fi
if [ -z "$PKG" ]; then
    PKG=$(resolve_pkg)
    if [ -z "$PKG" ]; then
        rig_log "refreshing package lists to find the $DIST kernel"
        if [ "$DIST" = bookworm ]; then apt-get update -q >&2; else chroot "$(rig_qemu_root)" apt-get update -q >&2; fi
        PKG=$(resolve_pkg)
    fi
    [ -n "$PKG" ] || rig_die "cannot resolve linux-image-amd64 for $DIST"
fi

DEB=$(ls "$DEBS/${PKG}_"*.deb 2>/dev/null | head -1 || true)
if [ -z "$DEB" ]; then
    rig_log "downloading $PKG ($DIST)"
    if ! apt_run "$DEBS" apt-get download -q "$PKG" >&2; then
        rig_log "download failed; refreshing package lists and retrying"
        if [ "$DIST" = bookworm ]; then apt-get update -q >&2; else chroot "$(rig_qemu_root)" apt-get update -q >&2; fi
        apt_run "$DEBS" apt-get download -q "$PKG" >&2
    fi
    DEB=$(ls "$DEBS/${PKG}_"*.deb | head -1)
fi

# --- inputs hash: rebuild the initramfs only when something changed ---------------------------
GUEST_SRC="$RIG_IMAGES_DIR/guest"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && ! readelf -l "$BUSYBOX" 2>/dev/null | grep -q 'INTERP' ||
    rig_die "static busybox missing: run images/install-host-deps.sh (busybox-static)"
command -v gcc >/dev/null || rig_die "gcc missing: run images/install-host-deps.sh"
HASH=$(cat "$0" "$GUEST_SRC/init" "$GUEST_SRC/vdiport.sh" "$GUEST_SRC/qxltest.c" "$BUSYBOX" <(echo "$DEB $MODS $XORG_MODS $INPUT_MODS $VDIPORT_MODS") | sha256sum | cut -c1-16)
if [ -f "$OUT/info" ] && grep -qx "HASH=$HASH" "$OUT/info" && [ -f "$OUT/initrd.gz" ] && [ -f "$OUT/vmlinuz" ]; then
    printf '%s\n' "$OUT"
    exit 0
fi

start=$(date +%s)
WORK=$(mktemp -d "$SPICE_RS_CACHE/build-$DIST.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- unpack the kernel: vmlinuz, then the wanted modules and their `depends=` closure ----------
# (Debian's package has no modules.dep, depmod writes it at install; the host needs no kmod: the
# dependencies come from each module's .modinfo section.)
rig_log "unpacking $(basename "$DEB")"
dpkg-deb --fsys-tarfile "$DEB" >"$WORK/k.tar"
tar -tf "$WORK/k.tar" >"$WORK/k.list"
tar -xf "$WORK/k.tar" -C "$WORK" "$(grep -E '/vmlinuz-[^/]+$' "$WORK/k.list" | head -1)"
VMLINUZ=$(find "$WORK" -name 'vmlinuz-*' -type f | head -1)
[ -n "$VMLINUZ" ] || rig_die "no vmlinuz in $DEB"
KVER=${VMLINUZ##*/vmlinuz-}
KVER_RE=$(printf "%s" "$KVER" | sed "s/[+.]/\\\\&/g")
ko_path() { # module name -> archive path (names use _ where file names may use -)
    local re=${1//_/[-_]}
    grep -E "/lib/modules/$KVER_RE/.*/$re\.ko(\.xz|\.zst)?$" "$WORK/k.list" | head -1
}
ko_depends() { # archive path -> its depends= list, comma separated
    local f="$WORK/$1"
    [ -f "$f" ] || tar -xf "$WORK/k.tar" -C "$WORK" "$1"
    case "$f" in
    *.xz) xz -dc "$f" ;; *.zst) zstd -dcq "$f" ;; *) cat "$f" ;;
    esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -1
}
declare -A path_of=() deps_of=()
ORDER=() # load order: dependencies before dependents
visit() {
    local m=$1 p d
    [ -n "${path_of[$m]:-}" ] && return 0
    p=$(ko_path "$m")
    [ -n "$p" ] || rig_die "module $m not found in $DEB"
    path_of[$m]=$p
    deps_of[$m]=$(ko_depends "$p")
    for d in ${deps_of[$m]//,/ }; do visit "${d//-/_}"; done
    ORDER+=("$m")
}
visit_list() {
    local m
    for m in "$@"; do
        case "$m" in
        *\?) if [ -n "$(ko_path "${m%\?}")" ]; then visit "${m%\?}"; fi ;;
        *) visit "$m" ;;
        esac
    done
}
visit_list $MODS
N_BASE=${#ORDER[@]} # ORDER[0..N_BASE) is qxl-load-order
visit_list $XORG_MODS $INPUT_MODS
rm -f "$WORK/k.tar"
# A later list's load order: the closure of its wanted modules, dependencies first, without the
# modules of qxl-load-order (always loaded first; --all: with them, for a test that loads no qxl).
# Each list gets its whole closure, so a dependency shared by the xorg and the input lists is in
# both.
list_order() {
    local -A seen=()
    local m out=()
    if [ "$1" = --all ]; then shift; else for m in "${ORDER[@]:0:N_BASE}"; do seen[$m]=1; done; fi
    walk() {
        local m=$1 d
        [ -n "${seen[$m]:-}" ] && return 0
        seen[$m]=1
        for d in ${deps_of[$m]//,/ }; do walk "${d//-/_}"; done
        out+=("$m")
    }
    for m in "$@"; do
        m=${m%\?}
        if [ -n "${path_of[$m]:-}" ]; then walk "$m"; fi
    done
    echo "${out[*]}"
}
XORG_ORDER=$(list_order $XORG_MODS)
INPUT_ORDER=$(list_order $INPUT_MODS)
VDIPORT_ORDER=$(list_order --all $VDIPORT_MODS)
rig_log "modules (load order): ${ORDER[*]:0:N_BASE} | xorg: $XORG_ORDER | input: $INPUT_ORDER | vdiport: $VDIPORT_ORDER"

# --- initramfs tree -----------------------------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,dev,proc,sys,tmp,lib/modules/"$KVER"}
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
gcc -static -O2 -Wall -Wextra -Werror -o "$R/bin/qxltest" "$GUEST_SRC/qxltest.c"
strip "$R/bin/qxltest"
install -m 0755 "$GUEST_SRC/init" "$R/init"
install -m 0755 "$GUEST_SRC/vdiport.sh" "$R/vdiport.sh"

# Modules decompressed (busybox insmod wants plain .ko), a modules.dep in kmod's format (for
# busybox modprobe) and qxl-load-order, xorg-load-order, input-load-order (one module per line,
# dependencies first).
MD="$R/lib/modules/$KVER"
rel_of() { local p=${path_of[$1]#*/lib/modules/"$KVER"/}; p=${p%.xz}; echo "${p%.zst}"; }
for m in "${ORDER[@]}"; do
    src="$WORK/${path_of[$m]#./}"
    [ -f "$src" ] || src="$WORK/${path_of[$m]}"
    dst="$MD/$(rel_of "$m")"
    mkdir -p "$(dirname "$dst")"
    case "$src" in
    *.xz) xz -dc "$src" >"$dst" ;;
    *.zst) zstd -dcq "$src" >"$dst" ;;
    *) cp "$src" "$dst" ;;
    esac
done
printf '%s\n' "${ORDER[@]:0:N_BASE}" >"$MD/qxl-load-order"
printf '%s\n' $XORG_ORDER >"$MD/xorg-load-order"
printf '%s\n' $INPUT_ORDER >"$MD/input-load-order"
printf '%s\n' $VDIPORT_ORDER >"$MD/vdiport-load-order"
sed -i '/^$/d' "$MD/xorg-load-order" "$MD/input-load-order" "$MD/vdiport-load-order"
closure() { # all dependencies of $1, dependents first (kmod order: the last is loaded first)
    local m=$1 d
    for d in ${deps_of[$m]//,/ }; do
        d=${d//-/_}
        echo "$d"
        closure "$d"
    done
}
for m in "${ORDER[@]}"; do
    deps=""
    # keep the last occurrence of each dependency so that deeper ones come later
    for d in $(closure "$m" | tac | awk '!seen[$0]++' | tac); do deps+=" $(rel_of "$d")"; done
    echo "$(rel_of "$m"):$deps"
done >"$MD/modules.dep"
: >"$MD/modules.builtin"
: >"$MD/modules.order"

(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) |
    gzip -6 >"$WORK/initrd.gz"

# The uncompressed ELF kernel: QEMU boots it through its PVH entry note, which skips the real-mode
# setup and the in-guest decompressor (about 5 s under TCG here).
unpack_vmlinux() {
    local magic off
    for magic in '\xfd7zXZ\x00' '\x28\xb5\x2f\xfd'; do
        off=$(LC_ALL=C grep -obUaP -m1 "$magic" "$VMLINUZ" | head -1 | cut -d: -f1)
        [ -n "$off" ] || continue
        case "$magic" in
        *7zXZ*) tail -c +$((off + 1)) "$VMLINUZ" | xz -dcq --single-stream >"$1" 2>/dev/null || true ;;
        *) tail -c +$((off + 1)) "$VMLINUZ" | zstd -dcq >"$1" 2>/dev/null || true ;;
        esac
        [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && return 0
    done
    return 1
}
mkdir -p "$OUT"
if unpack_vmlinux "$WORK/vmlinux" && readelf -n "$WORK/vmlinux" 2>/dev/null | grep -q '(0x00000012)'; then
    mv "$WORK/vmlinux" "$OUT/vmlinux.new"
    mv "$OUT/vmlinux.new" "$OUT/vmlinux"
else
    rig_log "no PVH-bootable vmlinux in $(basename "$DEB"); guests boot the bzImage"
    rm -f "$OUT/vmlinux"
fi
cp "$VMLINUZ" "$OUT/vmlinuz.new"
mv "$WORK/initrd.gz" "$OUT/initrd.gz.new"
mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
{
    echo "DIST=$DIST"
    echo "PKG=$PKG"
    echo "DEB=$(basename "$DEB")"
    echo "KVER=$KVER"
    echo "MODULES=${ORDER[*]}"
    echo "HASH=$HASH"
} >"$OUT/info"
rig_log "guest $DIST ready in $(($(date +%s) - start)) s: kernel $KVER, initrd $(du -h "$OUT/initrd.gz" | cut -f1)"
printf '%s\n' "$OUT"
