#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the rig need. Idempotent.
set -euo pipefail
PKGS=(
    # real Spice clients and an X server to run them in; GStreamer's vp8dec, with which
    # spice-gtk announces and plays VP8 streams
    spice-client-gtk virt-viewer xvfb xdotool xclip x11-apps imagemagick gstreamer1.0-plugins-good
    # the VP8 stream encoder (vpx-codec links the system libvpx, found with pkg-config)
    libvpx-dev pkg-config
    # the xorg test's expected picture: the guest's X clients and fonts, drawn on Xvfb
    x11-xserver-utils x11-utils xterm xfonts-base fonts-dejavu-core
    # guest images, the Xorg root file system and the trixie root that carries QEMU >= 10.1
    mmdebstrap busybox-static cpio gzip xz-utils e2fsprogs
    # the User-Mode Linux guest of the VDI port test (/usr/bin/linux.uml, its modules)
    user-mode-linux
    # guest test programs (gcc -static) and the picture comparison (python3)
    gcc libc6-dev python3
    # spice-gtk's GObject bindings for the cursor-channel probe (run with /usr/bin/python3)
    python3-gi gir1.2-spiceclientglib-2.0
    # helpers used by tests (python3-cryptography: the raw Spice client's RSA ticket)
    netcat-openbsd procps psmisc python3-cryptography
    # the guest agent's .deb (dpkg-shlibdeps computes its Depends)
    dpkg-dev
    # the agent's Mutter DisplayConfig test (agent/tests/mutter_display.rs): mutter --headless
    # on a private bus from dbus-run-session (package dbus-daemon), checked with gdbus
    mutter dbus dbus-daemon libglib2.0-bin
    # the agent's Wayland clipboard test (agent/tests/wayland_clipboard.rs): a headless
    # compositor with wlr-data-control (sway 1.7, wlroots 0.15) and wl-copy/wl-paste
    sway wl-clipboard
    # the WebSocket test (tests/e2e/spice-html5.sh): the spice-html5 client in headless chromium,
    # driven by playwright-core from npm (tests/browser; Node.js >= 18)
    chromium spice-html5 nodejs
)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# npm: Debian's package, unless the installed Node.js brings its own (NodeSource's does)
if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends npm
fi
