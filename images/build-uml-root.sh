#!/usr/bin/env bash
# Builds (once, cached) the initramfs of the User-Mode Linux test guest: static busybox,
# images/uml/init, images/guest/vdiport.sh (the VDI port checks, shared with the QEMU guest) and
# the virtio_console module of Debian's UML kernel (package user-mode-linux: /usr/bin/linux.uml,
# modules in /usr/lib/uml/modules/KVER; left out when the kernel has it built in).
#
#   images/build-uml-root.sh
#
# Prints the output directory on stdout; it holds `initrd.gz` and `info` (KVER=, UML=, HASH=).
# Boot it with images/run-uml.sh. Rebuilt only when an input changes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT="$SPICE_RS_CACHE/uml-root"
UML=/usr/bin/linux.uml
BUSYBOX=/bin/busybox
[ -x "$UML" ] || rig_die "$UML missing: run images/install-host-deps.sh (user-mode-linux)"
[ -x "$BUSYBOX" ] && ! readelf -l "$BUSYBOX" 2>/dev/null | grep -q 'INTERP' ||
    rig_die "static busybox missing: run images/install-host-deps.sh (busybox-static)"
KVER=$("$UML" --version 2>/dev/null | head -1)
[ -n "$KVER" ] || rig_die "$UML --version printed nothing"
MODDIR=/usr/lib/uml/modules/$KVER

# virtio_console: built in (modules.builtin lists it), or the module (it depends on nothing
# beyond the built-in virtio core; checked below).
KO=""
if ! grep -qs '/virtio_console\.ko$' "$MODDIR/modules.builtin"; then
    KO=$(find "$MODDIR" -name 'virtio_console.ko*' | head -1)
    [ -n "$KO" ] || rig_die "virtio_console is neither built into $UML nor in $MODDIR"
    deps=$(modinfo -F depends "$KO" 2>/dev/null || sed -n 's|^kernel/drivers/char/virtio_console\.ko: *||p' "$MODDIR/modules.dep")
    [ -z "$deps" ] || rig_die "virtio_console needs modules ($deps) this script does not pack"
fi

SRC=$RIG_IMAGES_DIR
HASH=$(cat "$0" "$SRC/uml/init" "$SRC/guest/vdiport.sh" "$BUSYBOX" ${KO:+"$KO"} <(echo "$KVER $UML") |
    sha256sum | cut -c1-16)
rig_lock uml-root
if [ -f "$OUT/info" ] && grep -qx "HASH=$HASH" "$OUT/info" && [ -f "$OUT/initrd.gz" ]; then
    printf '%s\n' "$OUT"
    exit 0
fi

start=$(date +%s)
mkdir -p "$SPICE_RS_CACHE"
WORK=$(mktemp -d "$SPICE_RS_CACHE/build-uml.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp,lib/modules/"$KVER"}
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
install -m 0755 "$SRC/uml/init" "$R/init"
install -m 0755 "$SRC/guest/vdiport.sh" "$R/vdiport.sh"
if [ -n "$KO" ]; then
    # busybox insmod wants a plain .ko
    case "$KO" in
    *.xz) xz -dc "$KO" ;; *.zst) zstd -dcq "$KO" ;; *.gz) gzip -dc "$KO" ;; *) cat "$KO" ;;
    esac >"$R/lib/modules/$KVER/virtio_console.ko"
fi
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) |
    gzip -6 >"$WORK/initrd.gz"
mkdir -p "$OUT"
mv "$WORK/initrd.gz" "$OUT/initrd.gz.new"
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
{
    echo "KVER=$KVER"
    echo "UML=$UML"
    echo "VIRTIO_CONSOLE=${KO:-built-in}"
    echo "HASH=$HASH"
} >"$OUT/info"
rig_log "UML root ready in $(($(date +%s) - start)) s: kernel $KVER, virtio_console ${KO:-built in}, initrd $(du -h "$OUT/initrd.gz" | cut -f1)"
printf '%s\n' "$OUT"
