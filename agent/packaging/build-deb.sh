#!/bin/bash
# Builds the spice-agent .deb with dpkg-deb (no cargo-deb, no debhelper) and prints its path:
#   agent/packaging/build-deb.sh        -> <target>/debian/spice-agent_<version>_<arch>.deb
# Environment: SPICE_AGENT_DEB_VERSION overrides the version (default: the crate's).
#
# Layout (merged /usr, as Debian bookworm and trixie are; /lib is a symlink to /usr/lib there, so
# /lib/systemd/system/... and /lib/udev/rules.d/... name the same files):
#   /usr/sbin/spice-agentd, /usr/bin/spice-agent
#   /usr/lib/systemd/system/spice-agentd.service, /usr/lib/systemd/user/spice-agent.service
#   /usr/lib/udev/rules.d/70-spice-agent.rules, /etc/xdg/autostart/spice-agent.desktop (conffile)
#   /usr/share/doc/spice-agent/{copyright,README}
# It installs beside spice-vdagent (no Conflicts:) so one guest image can carry both for
# comparison; only one daemon can hold the port; spice-agentd waits for it while it is busy.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
die() {
    echo "build-deb: ERROR: $*" >&2
    exit 1
}
for tool in cargo dpkg-deb dpkg strip python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

cd "$REPO"
echo "build-deb: cargo build --release -p spice-agent" >&2
cargo build --release -q -p spice-agent >&2

TARGET=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
VERSION=${SPICE_AGENT_DEB_VERSION:-$(cargo pkgid -p spice-agent | sed 's/.*[#@]//')}
ARCH=$(dpkg --print-architecture)
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "bad version '$VERSION'"
for b in spice-agentd spice-agent; do
    [ -x "$TARGET/release/$b" ] || die "$TARGET/release/$b was not built"
done

OUT="$TARGET/debian"
STAGE="$OUT/stage"
rm -rf "$STAGE"
mkdir -p "$OUT"
install -d -m 0755 "$STAGE/DEBIAN"
install -D -m 0755 "$TARGET/release/spice-agentd" "$STAGE/usr/sbin/spice-agentd"
install -D -m 0755 "$TARGET/release/spice-agent" "$STAGE/usr/bin/spice-agent"
strip --strip-unneeded "$STAGE/usr/sbin/spice-agentd" "$STAGE/usr/bin/spice-agent"
install -D -m 0644 "$HERE/spice-agentd.service" "$STAGE/usr/lib/systemd/system/spice-agentd.service"
install -D -m 0644 "$HERE/spice-agent.service" "$STAGE/usr/lib/systemd/user/spice-agent.service"
install -D -m 0644 "$HERE/70-spice-agent.rules" "$STAGE/usr/lib/udev/rules.d/70-spice-agent.rules"
install -D -m 0644 "$HERE/spice-agent.desktop" "$STAGE/etc/xdg/autostart/spice-agent.desktop"
install -D -m 0644 "$HERE/copyright" "$STAGE/usr/share/doc/spice-agent/copyright"
install -D -m 0644 "$HERE/README" "$STAGE/usr/share/doc/spice-agent/README"
install -m 0755 "$HERE/debian/postinst" "$HERE/debian/prerm" "$HERE/debian/postrm" "$STAGE/DEBIAN/"
echo /etc/xdg/autostart/spice-agent.desktop >"$STAGE/DEBIAN/conffiles"

# Depends from the binaries' ELF NEEDED entries and the host's symbols files. dpkg-shlibdeps
# wants to run in a source tree, so give it a minimal one.
DEPENDS=""
if command -v dpkg-shlibdeps >/dev/null; then
    SHL=$(mktemp -d)
    mkdir -p "$SHL/debian"
    printf 'Source: spice-agent\n\nPackage: spice-agent\nArchitecture: any\n' >"$SHL/debian/control"
    if out=$(cd "$SHL" && dpkg-shlibdeps -O -e"$STAGE/usr/sbin/spice-agentd" -e"$STAGE/usr/bin/spice-agent" 2>"$SHL/err"); then
        DEPENDS=$(sed -n 's/^shlibs:Depends=//p' <<<"$out")
    else
        echo "build-deb: dpkg-shlibdeps failed:" >&2
        cat "$SHL/err" >&2
    fi
    rm -rf "$SHL"
fi
if [ -z "$DEPENDS" ]; then
    DEPENDS="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
    echo "build-deb: WARNING: using the stated Depends: $DEPENDS" >&2
fi

SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: spice-agent
Version: $VERSION
Architecture: $ARCH
Maintainer: spice-rs developers <spice-rs@localhost>
Installed-Size: $SIZE
Depends: $DEPENDS
Suggests: xdg-user-dirs
Section: admin
Priority: optional
Description: Spice guest agent for Linux (Rust)
 Runs inside a virtual machine displayed over Spice. spice-agentd (system service) owns the
 Spice VDI port and /dev/uinput and injects the client's pointer; spice-agent (one per
 graphical session) shares the clipboard, follows the client's window size and receives
 files dropped on the client into the user's download folder.
 .
 It can be installed beside spice-vdagent, but only one of the two daemons can use the port
 at a time.
CONTROL

DEB="$OUT/spice-agent_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >&2
echo "$DEB"
