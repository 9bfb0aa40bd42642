#!/usr/bin/env bash
# End-to-end proof of the input rig with the reference stack: QEMU 11's own spice-server input
# (PS/2 keyboard, usb-tablet, PS/2 mouse, and QEMU's own virtio-keyboard/tablet/mouse), the real
# Linux input drivers of a Debian guest (atkbd, usbhid + hid-generic, psmouse, virtio_input, read
# through evdev by `qxltest input`), and the real client: remote-viewer under Xvfb, driven with
# xdotool. The same helpers (tests/lib/input.sh) drive the daemon's vhost-user input devices.
#
# Cases (RIG_INPUT_CASES="usb ps2 virtio" by default; each one guest boot):
#   usb     bookworm 6.1, PS/2 keyboard + usb-tablet (client mouse mode):
#           typed text with shifted characters arrives as the exact Linux key codes (decoded
#           back to the same text); arrows, right Ctrl, right Alt, Super, navigation keys, keypad
#           keys, Escape/Tab/BackSpace/Return, F1/F10 arrive as CODE 1, CODE 0 each; left, right
#           and middle clicks at three guest pixels arrive at that absolute position (+-1 px) on
#           the tablet; wheel up/down; F12 makes the guest set its Caps Lock LED and
#           remote-viewer's inputs channel reports it (key-modifiers caps, then its lock resync);
#           then a spice-gtk client (spice_inputs_probe.py) sees key-modifiers follow the guest's
#           LED: on, off, on
#   ps2     bookworm 6.1, PS/2 keyboard + mouse only (server mouse mode): after the click that
#           makes remote-viewer grab the pointer, relative moves arrive as REL_X/REL_Y adding up
#           to the move; buttons and wheel through the PS/2 mouse
#   virtio  trixie 6.12, QEMU's own virtio-keyboard-pci + virtio-tablet-pci (the guest driver the
#           daemon's vhost-user-input devices meet): text, keys, a click at a guest pixel, wheel,
#           Caps Lock LED through the virtio status queue to the client
#
# Exit status 0 only when every check passed; a missing piece of the rig is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh # xvfb_start, kill_wait, bg_track, daemon_cleanup
. tests/lib/input.sh

[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
for tool in remote-viewer Xvfb xdotool python3 gcc mmdebstrap; do
    command -v "$tool" >/dev/null || rig_fail "$tool missing: run images/install-host-deps.sh"
done
/usr/bin/python3 -c 'import gi; gi.require_version("SpiceClientGLib", "2.0")' 2>/dev/null ||
    rig_fail "spice-gtk's GObject bindings missing (python3-gi, gir1.2-spiceclientglib-2.0): run images/install-host-deps.sh"
RIG_OUT=$(mktemp -d /tmp/reference-input.XXXXXX)
RIG_NAME=reference-input
KEEP=0
trap 'input_viewer_stop; daemon_cleanup; [ $KEEP = 1 ] || rm -rf "$RIG_OUT"' EXIT
t_start=$(rig_now_ms)
step() { rig_step "$@"; }
input_on_fail() { # input_step's failure: keep the work dir, fail loudly
    KEEP=1
    rig_fail "$1: $INPUT_WHY (work dir $RIG_OUT kept)"
}
check() { input_step "$@"; }

CASES=${RIG_INPUT_CASES:-usb ps2 virtio}
step "building the rig (cached under ${SPICE_RS_CACHE:-~/.cache/spice-rs})"
t0=$(rig_now_ms)
bash images/build-qemu-root.sh >/dev/null || rig_fail "images/build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || rig_fail "images/build-guest.sh bookworm failed"
case " $CASES " in *" virtio "*) bash images/build-guest.sh trixie >/dev/null || rig_fail "images/build-guest.sh trixie failed" ;; esac
step "rig ready in $(($(rig_now_ms) - t0)) ms"

# keyboard_checks: text and keys through remote-viewer
keyboard_checks() {
    check "typed text" input_type "$INPUT_TEXT"
    check "special keys" input_keys "${INPUT_KEYS[@]}"
}

for c in $CASES; do
    port=$(rig_free_port)
    t0=$(rig_now_ms)
    case $c in
    usb)
        step "case usb: PS/2 keyboard + usb-tablet (client mouse mode), bookworm"
        input_boot "$RIG_OUT/usb.log" keyboard,tablet --reference --spice-port "$port" --usb-tablet ||
            rig_fail "usb: $INPUT_WHY"
        input_viewer_start "$RIG_OUT/x-usb" "$port" || rig_fail "usb: $INPUT_WHY"
        input_viewer_locate 30 || rig_fail "usb: $INPUT_WHY"
        step "  guest screen ${INPUT_W}x${INPUT_H} at ($INPUT_OX,$INPUT_OY) in remote-viewer's window, 1:1"
        input_viewer_focus || rig_fail "usb: $INPUT_WHY"
        input_mouse_mode client || rig_fail "usb: $INPUT_WHY"
        keyboard_checks
        check "left click at (100,200)" input_click 100 200 1
        check "right click at ($((INPUT_W - 24)),$((INPUT_H - 68)))" input_click $((INPUT_W - 24)) $((INPUT_H - 68)) 3
        check "middle click at (512,384)" input_click 512 384 2
        check "wheel" input_wheel 1 1 -1
        check "Caps Lock LED (F12) -> remote-viewer" input_led_viewer 'AT Translated'
        input_viewer_stop # QEMU's spice-server takes one client at a time
        check "Caps Lock LED -> key-modifiers (spice-gtk probe)" input_led_probe "$port" 1,0,1
        ;;
    ps2)
        step "case ps2: PS/2 keyboard + mouse (server mouse mode), bookworm"
        input_boot "$RIG_OUT/ps2.log" keyboard,mouse --reference --spice-port "$port" || rig_fail "ps2: $INPUT_WHY"
        input_viewer_start "$RIG_OUT/x-ps2" "$port" || rig_fail "ps2: $INPUT_WHY"
        input_viewer_locate 30 || rig_fail "ps2: $INPUT_WHY"
        input_viewer_focus || rig_fail "ps2: $INPUT_WHY"
        input_mouse_mode server || rig_fail "ps2: $INPUT_WHY"
        check "server-mode pointer grab" input_server_grab
        check "relative move (30,20)" input_rel 30 20
        check "relative move (-45,17)" input_rel -45 17
        check "relative move (120,-80)" input_rel 120 -80
        m=$(input_mark)
        input_xdo click 1 click 3 click 2
        check "buttons left, right, middle" input_expect "$m" buttons 272 273 274
        check "wheel" input_wheel -1 1
        ;;
    virtio)
        step "case virtio: QEMU's virtio-keyboard-pci + virtio-tablet-pci (client mouse mode), trixie"
        input_boot "$RIG_OUT/virtio.log" keyboard,tablet --reference --spice-port "$port" \
            --dist trixie --virtio-input keyboard,tablet || rig_fail "virtio: $INPUT_WHY"
        input_viewer_start "$RIG_OUT/x-virtio" "$port" || rig_fail "virtio: $INPUT_WHY"
        input_viewer_locate 30 || rig_fail "virtio: $INPUT_WHY"
        input_viewer_focus || rig_fail "virtio: $INPUT_WHY"
        input_mouse_mode client || rig_fail "virtio: $INPUT_WHY"
        keyboard_checks
        check "left click at (300,500)" input_click 300 500 1
        check "wheel" input_wheel -1
        check "Caps Lock LED (F12, virtio status queue) -> remote-viewer" input_led_viewer 'Virtio Keyboard'

        ;;
    *) rig_fail "unknown case $c (RIG_INPUT_CASES: usb ps2 virtio)" ;;
    esac
    input_viewer_stop
    rig_stop_guest
    step "case $c: PASS in $(($(rig_now_ms) - t0)) ms"
done

step "PASS in $(($(rig_now_ms) - t_start)) ms (retries: $INPUT_RETRIES)"
