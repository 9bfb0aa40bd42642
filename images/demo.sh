#!/usr/bin/env bash
# README command 1: build what is missing, boot the demo guest with a QXL display, print the
# spice:// URI to open with remote-viewer. Runs until Ctrl-C (or the guest powers off).
#
#   images/demo.sh [--dist bookworm|trixie] [--port N] [--reference | --desktop]
#
#   (default)    the spice-bridge daemon: QEMU's vfio-user-pci device served by spice-bridge, with
#                a keyboard and a tablet (virtio-input over vhost-user, vhost-user-input-pci) so
#                what you type in remote-viewer reaches the guest's shell and the pointer is not
#                grabbed (client mouse mode), and the VDI port (virtio-console over vhost-user,
#                vhost-user-test-device-pci): the guest sees the Spice agent port
#                com.redhat.spice.0 (/sys/class/virtio-ports), which an agent in the guest opens
#   --desktop    the spice-bridge daemon with a bookworm Xorg desktop (a terminal to type into) and
#                our guest agent (agent/, its .deb installed in the guest at boot): the shared
#                clipboard, client mouse mode, the guest resolution following remote-viewer's
#                window, files dropped on the window arriving in /tmp/Downloads
#   --reference  the reference stack: QEMU's own qxl-vga + libspice-server
set -euo pipefail
cd "$(dirname "$0")/.."
. images/lib.sh

DIST=bookworm PORT=5930 DAEMON=1 DESKTOP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --dist) DIST=$2; shift ;;
    --port) PORT=$2; shift ;;
    --daemon) DAEMON=1 ;;
    --reference) DAEMON=0 ;;
    --desktop) DAEMON=1 DESKTOP=1 ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
rig_need_root

# demo_daemon_start INPUT-FLAG...: the spice-bridge daemon (release build) on 127.0.0.1:PORT with
# the QXL device, the VDI port and the given input sockets in WORK; waits for its sockets
demo_daemon_start() {
    echo "demo: building spice-bridge (release)" >&2
    cargo build --release -q -p spice-bridge --bin spice-bridge
    LOG=$WORK/serial.log
    "$PWD/target/release/spice-bridge" --spice-addr "127.0.0.1:$PORT" --disable-ticketing --qxl-no-mmap \
        --qxl-socket "$WORK/qxl.sock" --control-socket "$WORK/control.sock" \
        --vdi-socket "$WORK/vdi.sock" "$@" 2>"$WORK/daemon.log" &
    DPID=$!
    trap 'kill $RUN $DPID 2>/dev/null; wait $RUN $DPID 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM
    RUN=""
    for _ in $(seq 1 100); do [ -S "$WORK/qxl.sock" ] && [ -S "$WORK/vdi.sock" ] && break; sleep 0.1; done
    [ -S "$WORK/qxl.sock" ] && [ -S "$WORK/vdi.sock" ] || { cat "$WORK/daemon.log" >&2; echo "demo: the daemon did not start" >&2; exit 1; }
    # tests/e2e/daemon-input.sh reads the serial log path from this line ("guest serial log PATH,")
    echo "demo: spice-bridge is serving; daemon log $WORK/daemon.log, guest serial log $LOG, control socket $WORK/control.sock" >&2
}

if [ "$DESKTOP" = 1 ]; then
    # ---- the daemon with the Xorg desktop and our agent --------------------------------------
    command -v mmdebstrap >/dev/null && command -v gcc >/dev/null && pkg-config --exists vpx 2>/dev/null && command -v mke2fs >/dev/null &&
        command -v dpkg-shlibdeps >/dev/null || bash images/install-host-deps.sh
    bash images/build-qemu-root.sh >/dev/null
    bash images/build-guest.sh bookworm >/dev/null
    XROOT=$(bash images/build-xorg-root.sh)
    WORK=$(mktemp -d /tmp/spice-rs-demo.XXXXXX)
    echo "demo: building the spice-agent .deb" >&2
    mkdir -p "$WORK/deb"
    cp "$(bash agent/packaging/build-deb.sh | tail -1)" "$WORK/deb/spice-agent.deb"
    mke2fs -q -t ext2 -d "$WORK/deb" "$WORK/deb.img" $(($(du -sm "$WORK/deb" | cut -f1) + 8))M
    # a relative mouse for server mode; the agent's uinput tablet gives client mouse mode
    demo_daemon_start --keyboard-socket "$WORK/keyboard.sock" --mouse-socket "$WORK/mouse.sock"
    echo "demo: booting the bookworm Xorg guest (Xorg takes a minute or two under TCG)" >&2
    bash images/run-guest.sh --vfio-user "$WORK/qxl.sock" --no-mmap --test agent --disk "$XROOT" \
        --disk2 "$WORK/deb.img" --mem 768 --append "spice_agent=rs spice_desktop=1 spice_hold=86400" \
        --input-socket "$WORK/keyboard.sock" --input-socket "$WORK/mouse.sock" \
        --vhost-user-console "$WORK/vdi.sock" --timeout 86400 --log "$LOG" &
    RUN=$!
    for _ in $(seq 1 3000); do
        grep -qaE 'QXL-TEST: (agent (READY|FAIL)|xorg FAIL|END)' "$LOG" 2>/dev/null && break
        kill -0 $RUN 2>/dev/null || break
        sleep 0.2
    done
    grep -qa 'QXL-TEST: agent READY' "$LOG" || { grep -a 'QXL-TEST' "$LOG" >&2; echo "demo: the desktop did not come up; see $LOG" >&2; exit 1; }
    echo "demo: ready. Open:  remote-viewer spice://127.0.0.1:$PORT     (Ctrl-C here stops everything)"
    echo "spice://127.0.0.1:$PORT"
    wait $RUN
    exit 0
fi

if [ "$DAEMON" = 1 ]; then
    # ---- the spice-bridge daemon: QEMU's vfio-user-pci device served by spice-bridge ---------
    command -v mmdebstrap >/dev/null && command -v gcc >/dev/null && pkg-config --exists vpx 2>/dev/null || bash images/install-host-deps.sh
    bash images/build-qemu-root.sh >/dev/null
    bash images/build-guest.sh "$DIST" >/dev/null
    WORK=$(mktemp -d /tmp/spice-rs-demo.XXXXXX)
    demo_daemon_start --keyboard-socket "$WORK/keyboard.sock" --tablet-socket "$WORK/tablet.sock"
    echo "demo: booting the $DIST guest with the QXL device over vfio-user" >&2
    bash images/run-guest.sh --dist "$DIST" --vfio-user "$WORK/qxl.sock" --no-mmap --test demo \
        --input-socket "$WORK/keyboard.sock" --input-socket "$WORK/tablet.sock" \
        --vhost-user-console "$WORK/vdi.sock" --timeout 86400 --log "$LOG" &
    RUN=$!
    echo "spice://127.0.0.1:$PORT"
    echo "demo: open it now with:  remote-viewer spice://127.0.0.1:$PORT   (the guest's console appears once its qxl driver binds; Ctrl-C stops everything)" >&2
    wait $RUN
    exit 0
fi

command -v mmdebstrap >/dev/null && command -v gcc >/dev/null && pkg-config --exists vpx 2>/dev/null || bash images/install-host-deps.sh
bash images/build-qemu-root.sh >/dev/null
bash images/build-guest.sh "$DIST" >/dev/null
LOG=$(mktemp /tmp/spice-rs-demo.XXXXXX.log)
echo "demo: booting the $DIST guest with QEMU's qxl-vga + libspice-server (reference stack)" >&2
echo "demo: guest serial log: $LOG" >&2
bash images/run-guest.sh --dist "$DIST" --reference --usb-tablet --spice-port "$PORT" --test demo \
    --timeout 86400 --log "$LOG" &
RUN=$!
trap 'kill $RUN 2>/dev/null; wait $RUN 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 600); do
    grep -q 'QXL-TEST: demo READY' "$LOG" 2>/dev/null && break
    kill -0 $RUN 2>/dev/null || { echo "demo: the guest stopped; see $LOG" >&2; exit 1; }
    sleep 0.2
done
grep -q 'QXL-TEST: demo READY' "$LOG" || { echo "demo: the guest did not come up; see $LOG" >&2; exit 1; }
echo "demo: ready. Open:  remote-viewer spice://127.0.0.1:$PORT     (Ctrl-C here stops the guest)"
echo "spice://127.0.0.1:$PORT"
wait $RUN
