# shellcheck shell=bash
# Helpers for the keyboard and mouse tests: remote-viewer under Xvfb driven with xdotool, against a
# guest running the "input" test (images/guest/init; `qxltest input` prints QXL-TEST: input DEVICE,
# READY, EV and LED lines on the serial console; tests/lib/input_check.py reads them). Source it
# after tests/lib/rig.sh and tests/lib/daemon.sh (xvfb_start, kill_wait). They work on any Spice
# server: QEMU's own (tests/e2e/reference-input.sh) or the spice-bridge daemon.
#
#   input_boot LOG WANT [RUN-GUEST ARGS...]   (INPUT_APPEND: more guest parameters, e.g.
#                          "spice_input_reboot=1" with --allow-reboot)
#                          boot the "input" test (rig_start_guest), wait for the qxl bind and for
#                          "input READY" with every device kind in WANT (comma separated:
#                          keyboard,tablet,mouse); INPUT_WHY says what went wrong
#   input_viewer_start DIR PORT [TITLE]
#                          Xvfb 1280x1024 + `remote-viewer --spice-debug spice://127.0.0.1:PORT`
#                          (log DIR/remote-viewer.log); sets INPUT_RV_PID INPUT_RV_LOG;
#                          INPUT_KEYPRESS_DELAY=MS sets spice-gtk's SPICE_KEYPRESS_DELAY (default
#                          100 ms: a key press is held back that long to pair it with its release)
#   input_viewer_locate SECS
#                          wait until the guest picture "fb" (the input test draws it first) shows
#                          1:1 in remote-viewer's window: sets INPUT_OX INPUT_OY (guest pixel x,y is
#                          at screen INPUT_OX+x, INPUT_OY+y) and INPUT_W INPUT_H (guest screen size)
#   input_viewer_focus     pointer onto the guest screen (guest pixel 512,384 or the middle), keyboard
#                          focus on remote-viewer's window (no window manager: XSetInputFocus)
#   input_viewer_stop      stop remote-viewer (by pid) and its Xvfb
#   input_mouse_mode client|server
#                          remote-viewer's mouse mode (its debug log) is that one, within 10 s
#   input_mark             the guest log's size: a MARK for input_expect
#   input_expect MARK WHAT ARGS...
#                          tests/lib/input_check.py expect on the guest log (text, keys, click,
#                          buttons, wheel, rel, led; see its header); prints its OK/FAIL line
#   input_type TEXT        xdotool type TEXT; expect the guest's key events to spell TEXT
#   input_keys SPEC...     xdotool key for each SPEC "KEY=CODE" (KEY an X keysym or a numeric X
#                          keycode, CODE the Linux key code the guest must see as CODE 1, CODE 0)
#   input_click X Y BUTTON xdotool moves to guest pixel X,Y and clicks X button BUTTON (1 left,
#                          2 middle, 3 right): the guest's tablet reports that button at X,Y (+-1)
#   input_wheel N...       xdotool clicks 4 (up, REL_WHEEL +1) or 5 (down, -1) for each N (1 or -1)
#   input_server_grab      server mouse mode: a click in the guest screen makes spice-gtk grab the
#                          pointer; waits until relative motion reaches the guest (prime moves,
#                          retried and counted in INPUT_RETRIES)
#   input_rel DX DY        xdotool mousemove_relative DX DY: the guest's REL_X/REL_Y add up to DX,DY
#   input_led_viewer [NAME-REGEX]
#                          xdotool key F12 (the guest toggles Caps Lock LED on): the guest prints
#                          "LED caps=1" for the keyboard the key came from (its name matching
#                          NAME-REGEX when given), remote-viewer's inputs channel reads key-modifiers with caps
#                          (its spice-gtk-session debug line "guest_modifiers:0x4"), and, its own
#                          Caps Lock being off, it sends the guest a Caps Lock press and release
#                          (KEY_CAPSLOCK 58 1, 0), which is how spice-gtk keeps the two in step
#   input_led_probe PORT V,V,...
#                          tests/lib/spice_inputs_probe.py (no remote-viewer: one client at a time on
#                          QEMU's server): key-modifiers at connection is caps=V1, then for each
#                          next V an F12 press from the probe makes key-modifiers caps=V
#   input_step LABEL HELPER ARGS...
#                          run one of the helpers above, print "ok LABEL (ms): result" or FAIL;
#                          on failure calls input_on_fail LABEL (define it in the test; default
#                          rig_fail)
#   INPUT_KEYS, INPUT_TEXT the key list (for input_keys) and the text (for input_type) both the
#                          reference and the daemon tests send
# Each returns non-zero with INPUT_WHY set; INPUT_LAST holds the last check's OK line.
#
# A daemon test calls them as reference-input.sh does, on the daemon's sockets and port (this
# sequence passed against spice-bridge 2e1e0e7, keyboard + tablet, and keyboard + mouse):
#   daemon_start "$OUT/d" --disable-ticketing --qxl-no-mmap \
#       --keyboard-socket "$OUT/d/kbd.sock" --tablet-socket "$OUT/d/tablet.sock"
#   input_boot "$OUT/g.log" keyboard,tablet --vfio-user "$DAEMON_SOCK" --no-mmap \
#       --input-socket "$OUT/d/kbd.sock" --input-socket "$OUT/d/tablet.sock"
#   input_viewer_start "$OUT/x" "$DAEMON_PORT" && input_viewer_locate 60 && input_viewer_focus
#   input_mouse_mode client && input_type 'Hello, World!' && input_keys Up=103 105=97 KP_Enter=96
#   input_click 100 200 1 && input_wheel 1 -1 && input_led_viewer 'spice-rs keyboard'
#   input_viewer_stop && input_led_probe "$DAEMON_PORT" 1,0,1
# With --mouse-socket instead of the tablet: input_boot ... keyboard,mouse, input_mouse_mode
# server, input_server_grab, input_rel 30 20, input_expect "$(input_mark)" buttons ... after clicks.
# Scan codes come from remote-viewer's keymap; Linux key codes from the guest kernel's driver
# (atkbd for PS/2, hid-input for usb-tablet buttons, virtio_input for virtio devices).

INPUT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Keys whose Linux codes the guest must see (X keysym, or X keycode for modifiers: xdotool presses
# Control_L along with the Control_R keysym, so right Ctrl/Alt go by keycode, 105/108 = evdev
# KEY_RIGHTCTRL/KEY_RIGHTALT + 8). F11 is remote-viewer's full-screen hot key and never reaches
# the guest; F12 is the guest's LED key (input_led_*), F9 its reboot key (spice_input_reboot=1).
# shellcheck disable=SC2034 # used by the tests that source this file
INPUT_KEYS=(Up=103 Down=108 Left=105 Right=106 105=97 108=100 Super_L=125 Home=102 End=107 Prior=104
    Next=109 Insert=110 Delete=111 KP_Enter=96 KP_Add=78 KP_Subtract=74 KP_Multiply=55 KP_Divide=98
    KP_End=79 Escape=1 Tab=15 BackSpace=14 Return=28 F1=59 F10=68)
# shellcheck disable=SC2034
INPUT_TEXT='Hello, World! 0123 ~{}|:"<>? qwerty_+'

input_on_fail() { rig_fail "$1: $INPUT_WHY"; }

input_step() {
    local label=$1 t
    shift
    t=$(rig_now_ms)
    if "$@"; then
        rig_step "  ok   $label ($(($(rig_now_ms) - t)) ms): ${INPUT_LAST:-done}"
        INPUT_LAST=""
    else
        rig_step "  FAIL $label"
        input_on_fail "$label"
    fi
}
INPUT_RV_PID="" INPUT_RV_LOG="" INPUT_OX="" INPUT_OY="" INPUT_W="" INPUT_H="" INPUT_WHY="" INPUT_LAST=""
INPUT_RETRIES=0
INPUT_XDO_DELAY=${INPUT_XDO_DELAY:-40} # ms between typed keys

input_boot() {
    local log=$1 want=$2 t0
    shift 2
    t0=$(rig_now_ms)
    rig_start_guest "$log" --test input --append "spice_hold=300 spice_input_want=$want${INPUT_APPEND:+ $INPUT_APPEND}" --timeout 400 "$@"
    rig_wait_marker "$log" 'QXL-TEST: (bind (PASS|FAIL)|END)' 120 || { INPUT_WHY="guest did not reach the qxl bind"; return 1; }
    grep -qa 'QXL-TEST: bind PASS' "$log" || { INPUT_WHY="qxl did not bind"; return 1; }
    rig_wait_marker "$log" 'QXL-TEST: (input READY|input FAIL|END)' 90 || { INPUT_WHY="no 'input READY' line"; return 1; }
    grep -qa 'QXL-TEST: input READY' "$log" || { INPUT_WHY="$(grep -a 'QXL-TEST: input FAIL' "$log" | head -1)"; return 1; }
    if grep -qa 'QXL-TEST: input READY.*missing=' "$log"; then
        INPUT_WHY="guest input devices missing: $(grep -ao 'missing=.*' "$log" | head -1)"
        return 1
    fi
    rig_step "input: $(grep -ao 'input READY.*' "$log" | tr -d '\r') $(($(rig_now_ms) - t0)) ms after start; devices:"
    grep -ao 'input DEVICE.*' "$log" | tr -d '\r' | sed 's/^/    /' >&2
}

input_viewer_start() {
    local dir=$1 port=$2 title=${3:-e2e-input}
    xvfb_start "$dir" 1280 1024 || { INPUT_WHY="Xvfb did not start"; return 1; }
    INPUT_RV_LOG=$dir/remote-viewer.log
    # INPUT_KEYPRESS_DELAY (ms), when set, becomes spice-gtk's SPICE_KEYPRESS_DELAY: by default
    # (100 ms) its widget holds a key press back that long, to send it together with a quick
    # release.
    env DISPLAY="$XVFB_DISPLAY" ${INPUT_KEYPRESS_DELAY:+SPICE_KEYPRESS_DELAY="$INPUT_KEYPRESS_DELAY"} \
        remote-viewer --spice-debug -t "$title" "spice://127.0.0.1:$port" >"$INPUT_RV_LOG" 2>&1 &
    INPUT_RV_PID=$!
    bg_track "$INPUT_RV_PID"
}

input_viewer_locate() {
    local secs=$1 i pos geom
    geom=$(grep -ao 'QXL-TEST: input SCREEN [0-9]*x[0-9]*' "$RIG_GUEST_LOG" | head -1 | awk '{print $4}')
    [ -n "$geom" ] || { INPUT_WHY="no 'input SCREEN WxH' line in the guest log"; return 1; }
    INPUT_W=${geom%x*} INPUT_H=${geom#*x}
    for i in $(seq $((secs * 2))); do
        pos=$(python3 "$INPUT_LIB/input_check.py" locate "$XVFB_FB" "$INPUT_W" "$INPUT_H" 2>/dev/null) && break
        pos=""
        kill -0 "$INPUT_RV_PID" 2>/dev/null || { INPUT_WHY="remote-viewer exited: $(tail -3 "$INPUT_RV_LOG")"; return 1; }
        sleep 0.5
    done
    [ -n "$pos" ] || { INPUT_WHY="the guest picture fb (${geom}) did not appear 1:1 in remote-viewer's window"; return 1; }
    INPUT_OX=${pos% *} INPUT_OY=${pos#* }
}

input_xdo() { DISPLAY=$XVFB_DISPLAY xdotool "$@"; }

input_viewer_focus() {
    local win
    win=$(input_xdo search --pid "$INPUT_RV_PID" --onlyvisible 2>/dev/null | tail -1)
    [ -n "$win" ] || { INPUT_WHY="no remote-viewer window"; return 1; }
    input_xdo mousemove $((INPUT_OX + INPUT_W / 2)) $((INPUT_OY + INPUT_H / 2)) || return 1
    input_xdo windowfocus --sync "$win" || { INPUT_WHY="xdotool windowfocus failed"; return 1; }
    sleep 0.5
}

input_viewer_stop() {
    [ -z "$INPUT_RV_PID" ] || kill_wait "$INPUT_RV_PID"
    INPUT_RV_PID=""
    [ -z "$XVFB_PID" ] || kill_wait "$XVFB_PID"
    XVFB_PID=""
}

input_mouse_mode() {
    local want=$1 i got=""
    for i in $(seq 50); do
        got=$(grep -o 'mouse mode [0-9] ([a-z]*)' "$INPUT_RV_LOG" | tail -1)
        case $got in *"($want)") return 0 ;; esac
        sleep 0.2
    done
    INPUT_WHY="remote-viewer is not in $want mouse mode (${got:-no mouse mode line in $INPUT_RV_LOG})"
    return 1
}

input_mark() { python3 "$INPUT_LIB/input_check.py" mark "$RIG_GUEST_LOG"; }

input_expect() {
    local out
    if out=$(python3 "$INPUT_LIB/input_check.py" expect "$RIG_GUEST_LOG" "$@"); then
        INPUT_LAST=$out
        return 0
    fi
    INPUT_WHY=$out
    return 1
}

input_type() {
    local m
    m=$(input_mark)
    input_xdo type --delay "$INPUT_XDO_DELAY" "$1" || { INPUT_WHY="xdotool type failed"; return 1; }
    input_expect "$m" text "$1"
}

input_keys() {
    local m spec keys=() codes=()
    for spec in "$@"; do
        keys+=("${spec%%=*}")
        codes+=("${spec#*=}")
    done
    m=$(input_mark)
    input_xdo key --delay $((INPUT_XDO_DELAY * 2)) "${keys[@]}" || { INPUT_WHY="xdotool key failed"; return 1; }
    input_expect "$m" keys "${codes[@]}"
}

input_click() {
    local x=$1 y=$2 b=$3 m code
    case $b in 1) code=272 ;; 2) code=274 ;; 3) code=273 ;; *) INPUT_WHY="button $b?"; return 1 ;; esac
    m=$(input_mark)
    input_xdo mousemove $((INPUT_OX + x)) $((INPUT_OY + y)) || return 1
    sleep 0.2 # the position reaches the guest before the press (as a user's pointer would)
    input_xdo click "$b" || return 1
    input_expect "$m" click "$x" "$y" "$code"
}

input_wheel() {
    local m n args=()
    for n in "$@"; do
        case $n in 1) args+=(click 4) ;; -1) args+=(click 5) ;; *) INPUT_WHY="wheel step $n?"; return 1 ;; esac
    done
    m=$(input_mark)
    input_xdo "${args[@]}" || return 1
    input_expect "$m" wheel "$@"
}

input_server_grab() {
    local m i
    # spice-gtk eats the first click in server mode: it grabs the pointer (and warps it to the
    # middle of the widget) instead of sending the button.
    input_xdo mousemove $((INPUT_OX + INPUT_W / 2)) $((INPUT_OY + INPUT_H / 2)) click 1 || return 1
    for i in 1 2 3 4 5; do
        # the first motion after the grab only brings the pointer back into the widget (spice-gtk
        # sees a grab leave/enter); the next ones are relative moves
        sleep 0.3
        input_xdo mousemove_relative -- 1 1 || return 1
        sleep 0.3
        m=$(input_mark)
        input_xdo mousemove_relative -- 3 3 || return 1
        if python3 "$INPUT_LIB/input_check.py" expect "$RIG_GUEST_LOG" "$m" rel 3 3 --timeout 3 --settle 0.3 >/dev/null; then
            INPUT_LAST="pointer grabbed, relative motion reaches the guest (prime move $i)"
            return 0
        fi
        INPUT_RETRIES=$((INPUT_RETRIES + 1))
        rig_step "input: server-mode grab: prime move $i did not reach the guest yet (retry, $INPUT_RETRIES so far)"
        input_xdo click 1 || return 1
    done
    INPUT_WHY="no relative motion reached the guest after a click in server mouse mode (mouse mode: $(grep -ao 'mouse mode [0-9] ([a-z]*)' "$INPUT_RV_LOG" | tail -1))"
    return 1
}

input_rel() {
    local m
    m=$(input_mark)
    input_xdo mousemove_relative -- "$1" "$2" || return 1
    input_expect "$m" rel "$1" "$2"
}

input_led_viewer() {
    local m r0 led
    m=$(input_mark)
    r0=$(wc -l <"$INPUT_RV_LOG")
    input_xdo key F12 || return 1
    input_expect "$m" led 1 ${1:+"$1"} || return 1
    led=$INPUT_LAST
    local i
    for i in $(seq 50); do
        tail -n +$((r0 + 1)) "$INPUT_RV_LOG" | grep -q 'guest_modifiers:0x[0-9a-f]*[4567cdef]\b' && break
        sleep 0.2
    done
    tail -n +$((r0 + 1)) "$INPUT_RV_LOG" | grep -q 'guest_modifiers:0x[0-9a-f]*[4567cdef]\b' ||
        { INPUT_WHY="remote-viewer did not see the guest's Caps Lock (no guest_modifiers with caps in $INPUT_RV_LOG)"; return 1; }
    INPUT_LAST="${led#OK led: }; remote-viewer: $(tail -n +$((r0 + 1)) "$INPUT_RV_LOG" | grep -o 'inputs-[0-9:]*: client_modifiers.*' | tail -1)"
    # its own (Xvfb's) Caps Lock is off: spice-gtk asks the server to set the guest's lock keys back,
    # which arrives as a Caps Lock press and release
    local keys
    for i in $(seq 25); do
        keys=$(python3 "$INPUT_LIB/input_check.py" events "$RIG_GUEST_LOG" "$m" | grep -c 'type=1 code=58 ')
        [ "$keys" -ge 2 ] && break
        sleep 0.2
    done
    [ "$keys" -ge 2 ] || { INPUT_WHY="remote-viewer's lock-key resync (KEY_CAPSLOCK press+release) did not reach the guest"; return 1; }
    INPUT_LAST="$INPUT_LAST; guest then got KEY_CAPSLOCK 1,0 from the client's resync"
}

input_led_probe() {
    local port=$1 want=$2 out
    out=$(timeout 60 /usr/bin/python3 "$INPUT_LIB/spice_inputs_probe.py" --port "$port" --expect-caps "$want" --timeout 45 2>&1)
    if echo "$out" | grep -q '^OK '; then
        INPUT_LAST=$(echo "$out" | grep -E '^(MODIFIERS|OK)' | tr '\n' ';')
        return 0
    fi
    INPUT_WHY="spice_inputs_probe: $(echo "$out" | tr '\n' ';')"
    return 1
}
