#!/usr/bin/env bash
# End-to-end: keyboard and mouse from a real Spice client into a real Linux guest through the
# spice-bridge daemon. The daemon serves QXL over vfio-user and virtio-input devices (vdi-port)
# over vhost-user; QEMU 11 attaches them with vhost-user-input-pci; the guest's own virtio_input
# driver reads them and `qxltest input` prints what evdev delivers (images/guest/init, test
# "input"); remote-viewer under Xvfb, driven with xdotool, is the client. The helpers are the
# ones tests/e2e/reference-input.sh proves on QEMU's own spice-server (tests/lib/input.sh).
#
# Cases (DAEMON_INPUT_CASES="client server demo" by default):
#   client  bookworm 6.1, daemon keyboard + tablet (client mouse mode): typed text with shifted
#           characters arrives as the exact Linux key codes; arrows, right Ctrl/Alt, Super,
#           navigation, keypad and function keys as CODE 1, CODE 0; left, right and middle
#           clicks land at their guest pixel (+-1 px) on the tablet; wheel; F12 makes the guest
#           set its Caps Lock LED through the virtio status queue and remote-viewer's inputs
#           channel reports it (KEY_MODIFIERS). Then the guest reboots (F9 in the client; the
#           virtio devices are reset by the guest and brought up again by the rebooted driver):
#           text and a click work again in the same client. A second client (spice-gtk probe)
#           sees the LED follow the rebooted guest: off, on, off. Then the VMM goes away and comes back
#           (QEMU stops, a new QEMU connects to the same vhost-user sockets): text and a click
#           work again.
#   server  trixie 6.12, daemon keyboard + relative mouse (server mouse mode): after the grab
#           click, relative moves add up to the move; buttons and wheel; text, the special keys
#           and the Caps Lock LED as in the client case, on the 6.12 driver
#   demo    the README main job (images/demo.sh) as a new user runs it: a command typed in
#           remote-viewer runs in the demo guest's shell (its output, computed by the guest,
#           reaches the serial log), and remote-viewer is in client mouse mode (no grab)
#
# Exit status 0 only when every check passed; a missing piece of the rig is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh
. tests/lib/input.sh

[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
for tool in remote-viewer Xvfb xdotool python3 gcc mmdebstrap cargo; do
    command -v "$tool" >/dev/null || rig_fail "$tool missing: run images/install-host-deps.sh"
done
/usr/bin/python3 -c 'import gi; gi.require_version("SpiceClientGLib", "2.0")' 2>/dev/null ||
    rig_fail "spice-gtk's GObject bindings missing (python3-gi, gir1.2-spiceclientglib-2.0): run images/install-host-deps.sh"
RIG_OUT=$(mktemp -d /tmp/daemon-input.XXXXXX)
RIG_NAME=daemon-input
KEEP=0 DEMO_PID=""
demo_stop() {
    [ -n "$DEMO_PID" ] || return 0
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    kill_wait "$DEMO_PID"
    DEMO_PID=""
}
trap 'input_viewer_stop; demo_stop; daemon_cleanup; [ $KEEP = 1 ] || rm -rf "$RIG_OUT"' EXIT
t_start=$(rig_now_ms)
step() { rig_step "$@"; }
fail() {
    KEEP=1
    [ -z "$DAEMON_LOG" ] || { echo "--- daemon log (tail)" >&2; tail -20 "$DAEMON_LOG" >&2; }
    rig_fail "$* (work dir $RIG_OUT kept)"
}
input_on_fail() { fail "$1: $INPUT_WHY"; }
check() { input_step "$@"; }

CASES=${DAEMON_INPUT_CASES:-client server demo}
step "building the rig and the daemon"
t0=$(rig_now_ms)
bash images/build-qemu-root.sh >/dev/null || rig_fail "images/build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || rig_fail "images/build-guest.sh bookworm failed"
case " $CASES " in *" server "*) bash images/build-guest.sh trixie >/dev/null || rig_fail "images/build-guest.sh trixie failed" ;; esac
daemon_build || rig_fail "cargo build -p spice-bridge --bin spice-bridge failed"
step "ready in $(($(rig_now_ms) - t0)) ms"

# viewer DIR: remote-viewer on the daemon, the guest screen located and focused
viewer() {
    input_viewer_start "$RIG_OUT/$1" "$DAEMON_PORT" || fail "$1: $INPUT_WHY"
    input_viewer_locate 60 || fail "$1: $INPUT_WHY"
    step "  guest screen ${INPUT_W}x${INPUT_H} at ($INPUT_OX,$INPUT_OY) in remote-viewer's window, 1:1"
    input_viewer_focus || fail "$1: $INPUT_WHY"
}

# connections SOCKET-NAME: vhost-user connections the daemon accepted on that socket so far
connections() { grep -c "frontend connected path=.*/$1" "$DAEMON_LOG" || true; }

for c in $CASES; do
    t0=$(rig_now_ms)
    case $c in
    client)
        step "case client: daemon keyboard + tablet over vhost-user (client mouse mode), bookworm"
        D=$RIG_OUT/client
        mkdir -p "$D"
        daemon_start "$D" --disable-ticketing --qxl-no-mmap \
            --keyboard-socket "$D/kbd.sock" --tablet-socket "$D/tablet.sock" ||
            fail "the daemon did not start"
        INPUT_APPEND=spice_input_reboot=1 input_boot "$D/guest1.log" keyboard,tablet --allow-reboot \
            --vfio-user "$DAEMON_SOCK" --no-mmap \
            --input-socket "$D/kbd.sock" --input-socket "$D/tablet.sock" || fail "client: $INPUT_WHY"
        viewer x1
        input_mouse_mode client || fail "client: $INPUT_WHY"
        check "typed text" input_type "$INPUT_TEXT"
        check "special keys" input_keys "${INPUT_KEYS[@]}"
        check "left click at (100,200)" input_click 100 200 1
        check "right click at ($((INPUT_W - 1)),$((INPUT_H - 1)))" input_click $((INPUT_W - 1)) $((INPUT_H - 1)) 3
        check "middle click at (512,384)" input_click 512 384 2
        check "wheel" input_wheel 1 1 -1
        check "Caps Lock LED (F12, virtio status queue) -> remote-viewer" input_led_viewer 'spice-rs keyboard'

        step "  the guest reboots (F9); the same client stays connected"
        input_xdo key F9
        rig_wait_marker "$RIG_GUEST_LOG" 'QXL-TEST: input REBOOTING' 30 || fail "the guest did not take F9 as its reboot key"
        wait_count "$RIG_GUEST_LOG" 'QXL-TEST: input READY' 2 180 || fail "no 'input READY' after the guest's reboot"
        input_viewer_locate 60 || fail "after the reboot: $INPUT_WHY"
        input_viewer_focus || fail "after the reboot: $INPUT_WHY"
        check "typed text after the guest rebooted" input_type 'Rebooted: Yes!'
        check "left click at (200,300) after the guest rebooted" input_click 200 300 1
        input_viewer_stop
        # The rebooted guest starts with Caps Lock off: off, then on and off again through F12.
        check "a new client: Caps Lock LED -> key-modifiers (spice-gtk probe)" input_led_probe "$DAEMON_PORT" 0,1,0

        step "  the VMM disconnects (QEMU stops) and a new one connects to the same sockets"
        rig_stop_guest
        daemon_alive || fail "the daemon died when the VMM went away"
        input_boot "$D/guest2.log" keyboard,tablet --vfio-user "$DAEMON_SOCK" --no-mmap \
            --input-socket "$D/kbd.sock" --input-socket "$D/tablet.sock" || fail "client, second VMM: $INPUT_WHY"
        [ "$(connections kbd.sock)" -ge 2 ] && [ "$(connections tablet.sock)" -ge 2 ] ||
            fail "expected a second vhost-user connection on each socket (daemon log: $DAEMON_LOG)"
        viewer x2
        input_mouse_mode client || fail "client, second VMM: $INPUT_WHY"
        check "typed text after the VMM reconnected" input_type 'again: Reconnected!'
        check "left click at (640,480) after the VMM reconnected" input_click 640 480 1
        input_viewer_stop
        rig_stop_guest
        daemon_stop || fail "daemon did not stop cleanly"
        ;;
    server)
        step "case server: daemon keyboard + relative mouse over vhost-user (server mouse mode), trixie"
        D=$RIG_OUT/server
        mkdir -p "$D"
        daemon_start "$D" --disable-ticketing --qxl-no-mmap \
            --keyboard-socket "$D/kbd.sock" --mouse-socket "$D/mouse.sock" ||
            fail "the daemon did not start"
        input_boot "$D/guest.log" keyboard,mouse --dist trixie --vfio-user "$DAEMON_SOCK" --no-mmap \
            --input-socket "$D/kbd.sock" --input-socket "$D/mouse.sock" || fail "server: $INPUT_WHY"
        viewer xs
        input_mouse_mode server || fail "server: $INPUT_WHY"
        check "server-mode pointer grab" input_server_grab
        check "relative move (30,20)" input_rel 30 20
        check "relative move (-45,17)" input_rel -45 17
        check "relative move (120,-80)" input_rel 120 -80
        m=$(input_mark)
        input_xdo click 1 click 3 click 2
        check "buttons left, right, middle" input_expect "$m" buttons 272 273 274
        check "wheel" input_wheel -1 1
        check "typed text" input_type 'Server mode: ok?'
        check "special keys" input_keys "${INPUT_KEYS[@]}"
        check "Caps Lock LED (F12, virtio status queue) -> remote-viewer" input_led_viewer 'spice-rs keyboard'
        input_viewer_stop
        rig_stop_guest
        daemon_stop || fail "daemon did not stop cleanly"
        ;;
    demo)
        step "case demo: README command 1 (bash images/demo.sh), a command typed in remote-viewer"
        D=$RIG_OUT/demo
        mkdir -p "$D"
        port=$(rig_free_port)
        setsid bash images/demo.sh --port "$port" >"$D/demo.out" 2>"$D/demo.err" &
        DEMO_PID=$! # stopped by demo_stop (here and in the EXIT trap)
        log=""
        for _ in $(seq 1800); do # demo.sh builds the release daemon first
            log=$(sed -n 's/.*guest serial log \([^,]*\),.*/\1/p' "$D/demo.err" | head -1)
            [ -n "$log" ] && grep -qa 'QXL-TEST: demo READY' "$log" 2>/dev/null && break
            kill -0 "$DEMO_PID" 2>/dev/null || fail "demo.sh stopped: $(tail -5 "$D/demo.err")"
            sleep 0.2
        done
        [ -n "$log" ] && grep -qa 'QXL-TEST: demo READY' "$log" || fail "the demo guest did not come up: $(tail -5 "$D/demo.err")"
        grep -qx "spice://127.0.0.1:$port" "$D/demo.out" || fail "demo.sh did not print spice://127.0.0.1:$port"
        grep -qa 'QXL-TEST: demo ports: .*com\.redhat\.spice\.0' "$log" ||
            fail "the demo guest has no Spice agent port (VDI port): $(grep -a 'demo ports' "$log")"
        step "  ok   the demo guest sees the VDI port's agent port: $(grep -ao 'demo ports: .*' "$log" | head -1)"
        RIG_GUEST_LOG=$log
        input_viewer_start "$RIG_OUT/xd" "$port" || fail "demo: $INPUT_WHY"
        input_mouse_mode client || fail "demo: $INPUT_WHY"
        # The shell's picture has no locator; the window sits at the screen's top left.
        INPUT_OX=0 INPUT_OY=0 INPUT_W=1024 INPUT_H=768
        input_viewer_focus || fail "demo: $INPUT_WHY"
        # The guest computes the marker, so it appears only if the shell ran the command.
        cmd='echo typed-in-remote-viewer-$((6*7)) >/dev/ttyS0'
        ok=0
        for try in 1 2 3; do
            input_xdo type --delay "$INPUT_XDO_DELAY" "$cmd"
            input_xdo key Return
            for _ in $(seq 100); do
                grep -qa 'typed-in-remote-viewer-42' "$log" && { ok=1; break; }
                sleep 0.2
            done
            [ $ok = 1 ] && break
            # The shell may still be starting on tty1 when the first line is typed.
            INPUT_RETRIES=$((INPUT_RETRIES + 1))
            step "  retry $try: the command's output did not reach the serial log within 20 s"
        done
        [ $ok = 1 ] || fail "the command typed in remote-viewer did not run in the demo guest's shell"
        step "  ok   '$cmd' typed in remote-viewer ran in the guest's shell: $(grep -ao 'typed-in-remote-viewer-42' "$log" | head -1)"
        input_viewer_stop
        demo_stop
        ;;
    *) rig_fail "unknown case $c (DAEMON_INPUT_CASES: client server demo)" ;;
    esac
    step "case $c: PASS in $(($(rig_now_ms) - t0)) ms"
done

step "PASS in $(($(rig_now_ms) - t_start)) ms (retries: $INPUT_RETRIES)"
