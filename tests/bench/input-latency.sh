#!/usr/bin/env bash
# Benchmark: input latency from the Spice client to the guest kernel's input device, per stack.
#
#   client   remote-viewer under Xvfb (tests/lib/input.sh); X input events injected through XTEST
#            (tests/bench/input_latency.py: libXtst over one persistent connection -- what
#            xdotool does, without a process spawn per event)
#   guest    the "input" test (images/guest/init, `qxltest input`): evdev reader that prints
#            each event on the serial console the moment read() returns it
#
# Method (host and guest clocks differ, so it is a round trip on the host clock): t0 just before
# the XTEST event is flushed to the X server; t1 when the guest's "QXL-TEST: input EV" line for
# that event appears in the serial log file (polled every 0.5 ms). t1 - t0 = X server ->
# remote-viewer -> Spice inputs channel -> server -> emulated device -> guest driver -> evdev ->
# guest program -> serial console (16550, TCG) -> QEMU chardev -> file. The serial leg is part of
# every figure; it is the same on every stack. "client" = XTEST to spice-gtk's key handler
# (remote-viewer's --spice-debug "key_event press" line, 1 ms wall-clock resolution).
#
# Key presses are measured twice: with spice-gtk's default keypress-delay (its widget holds a
# press back 100 ms to send it together with a quick release; every real user has it) and with
# SPICE_KEYPRESS_DELAY=0, which leaves the path the server and the guest are responsible for.
# The key is 'a' (X keycode 38, KEY_A 30), pressed, then released once the guest has the press.
#
# Stacks:
#   reference PS/2 + usb-tablet   QEMU's own spice-server, the pc machine's PS/2 keyboard (atkbd)
#                                 and QEMU's usb-tablet on qemu-xhci (client mouse mode)
#   reference virtio-input        QEMU's own virtio-keyboard-pci + virtio-tablet-pci: the guest
#                                 driver the daemon's vhost-user devices meet (like for like)
#   daemon vhost-user-input       --daemon / --daemon-only: spice-bridge (release build, or
#                                 --daemon-bin PATH) serving QXL over vfio-user and a virtio-input
#                                 keyboard + tablet over vhost-user ("DAEMON SLOT" below)
#
# Usage: tests/bench/input-latency.sh [--count N] [--gap-ms M] [--no-virtio] [--daemon |
#        --daemon-only] [--daemon-bin PATH] [--out FILE.md]
#        (root; about 1.5 minutes for the reference rows with the default N=150, +1 min daemon)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/rig.sh
. tests/lib/daemon.sh
. tests/lib/input.sh

COUNT=150 GAP=60 VIRTIO=1 DAEMON=0 REFERENCE=1 DAEMON_BIN_OPT="" OUTMD=""
while [ $# -gt 0 ]; do
    case "$1" in
    --count) COUNT=$2; shift ;;
    --gap-ms) GAP=$2; shift ;;
    --no-virtio) VIRTIO=0 ;;
    --daemon) DAEMON=1 ;;
    --daemon-only) DAEMON=1 REFERENCE=0 ;;
    --daemon-bin) DAEMON_BIN_OPT=$2; shift ;;
    --out) OUTMD=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { printf '[input-latency %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for t in python3 remote-viewer Xvfb xdotool; do command -v $t >/dev/null || die "$t missing (images/install-host-deps.sh)"; done

RIG_OUT=$(mktemp -d /tmp/input-latency.XXXXXX)
RIG_NAME=input-latency
trap 'input_viewer_stop; daemon_cleanup; [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$RIG_OUT"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash images/build-qemu-root.sh >/dev/null || die "build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || die "build-guest.sh failed"

ROWS=()
declare -A BASE=() # path -> median of the first stack measured on it (the ratio's reference)
# measure SLUG LABEL DEVICE-TEXT WHAT PATH: run input_latency.py, append a table row
measure() {
    local slug=$1 label=$2 dev=$3 what=$4 path=$5 out res extra=()
    out="$RIG_OUT/$slug-$what.txt"
    [ "$what" = keys ] && extra=(--client-log "$INPUT_RV_LOG")
    [ "$what" = motion ] && extra=(--origin "$INPUT_OX" "$INPUT_OY")
    python3 tests/bench/input_latency.py "$what" "$RIG_GUEST_LOG" --display "$XVFB_DISPLAY" \
        --count "$COUNT" --gap-ms "$GAP" "${extra[@]}" >"$out" 2>&1
    res=$(grep '^RESULT' "$out") || die "$label $what: no result ($(tail -3 "$out"))"
    say "$label $what: $res"
    v() { echo "$res" | grep -o "\b$1=[^ ]*" | cut -d= -f2; }
    # the device(s) the measured events came from, by name
    local d names=""
    for d in $(v devices | tr , ' '); do
        names+="${names:+, }$(grep -ao "input DEVICE $d name=\"[^\"]*\"" "$RIG_GUEST_LOG" | head -1 | sed 's/.*name=//')"
    done
    dev=${names:-$dev}
    local med ratio
    med=$(v median)
    [ -n "${BASE[$path]:-}" ] || BASE[$path]=$med
    ratio=$(awk -v a="$med" -v b="${BASE[$path]}" 'BEGIN{ if (b > 0) printf "%.2fx", a / b; else print "-" }')
    ROWS+=("| $label | $dev | $path | $(v n) | $(v lost) | $(v min) | $med | $ratio | $(v p90) | $(v p99) | $(v max) | $(v release_median) | $(v client_median) |")
}

# viewer SLUG LABEL DELAY: (re)start remote-viewer with SPICE_KEYPRESS_DELAY=DELAY ("" = its default)
viewer() {
    input_viewer_stop
    INPUT_KEYPRESS_DELAY=$3 input_viewer_start "$RIG_OUT/x-$1-${3:-default}" "$PORT" || die "$2: $INPUT_WHY"
    input_viewer_locate 30 || die "$2: $INPUT_WHY"
    input_viewer_focus || die "$2: $INPUT_WHY"
    # warm-up: the first events after connecting also carry the client's lock-key sync
    input_type "warm" || die "$2: typing does not reach the guest: $INPUT_WHY"
}

# stack SLUG LABEL WANT [RUN-GUEST ARGS...]: boot; key presses with spice-gtk's default keypress
# delay and with none; pointer motion (client mouse mode) when WANT has a tablet
stack() {
    local slug=$1 label=$2 want=$3 kbd tab
    shift 3
    input_boot "$RIG_OUT/$slug.log" "$want" "$@" || die "$label: $INPUT_WHY"
    kbd=$(grep -ao 'input DEVICE .*kind=keyboard' "$RIG_GUEST_LOG" | grep -o 'name="[^"]*"' | tr '\n' ' ')
    tab=$(grep -ao 'input DEVICE .*kind=tablet' "$RIG_GUEST_LOG" | grep -o 'name="[^"]*"' | head -1)
    viewer "$slug" "$label" ""
    measure "$slug-default" "$label" "${kbd% }" keys "key press, keypress-delay 100 (default)"
    viewer "$slug" "$label" 0
    measure "$slug-0" "$label" "${kbd% }" keys "key press, SPICE_KEYPRESS_DELAY=0"
    case $want in
    *tablet*)
        input_mouse_mode client || die "$label: $INPUT_WHY"
        measure "$slug" "$label" "$tab" motion "pointer motion (client mode)"
        ;;
    esac
    input_viewer_stop
    rig_stop_guest
}

if [ $REFERENCE = 1 ]; then
    PORT=$(rig_free_port)
    say "reference: QEMU spice-server, PS/2 keyboard + usb-tablet (bookworm, TCG)"
    stack ref-ps2 "reference PS/2 + usb-tablet" keyboard,tablet --reference --spice-port "$PORT" --usb-tablet
fi
if [ $REFERENCE = 1 ] && [ $VIRTIO = 1 ]; then
    PORT=$(rig_free_port)
    say "reference: QEMU spice-server, QEMU's virtio-keyboard-pci + virtio-tablet-pci"
    stack ref-virtio "reference virtio-input" keyboard,tablet --reference --spice-port "$PORT" --virtio-input keyboard,tablet
fi

# ---- DAEMON SLOT -------------------------------------------------------------------------------
# The spice-bridge daemon: QXL over vfio-user (--qxl-no-mmap, the fast mode under TCG) plus a
# virtio-input keyboard and tablet over vhost-user (run-guest.sh --input-socket, one
# vhost-user-input-pci each). Keyboard + tablet only: a mouse next to the tablet makes the mouse
# mode depend on which device the guest activated last (as with QEMU's own virtio devices), and
# the motion row wants client mode. The integrating engineer owns the daemon flags: if they
# change, this is the place (daemon_start passes --qxl-socket, --control-socket, --spice-addr).
if [ $DAEMON = 1 ]; then
    if [ -n "$DAEMON_BIN_OPT" ]; then
        DAEMON_BIN=$DAEMON_BIN_OPT
    else
        say "building the daemon (cargo build --release)"
        daemon_build --release || die "cargo build --release failed"
    fi
    "$DAEMON_BIN" --help 2>&1 | grep -q -- '--keyboard-socket' ||
        die "$DAEMON_BIN has no --keyboard-socket: this daemon serves no vhost-user input"
    mkdir -p "$RIG_OUT/d"
    daemon_start "$RIG_OUT/d" --disable-ticketing --qxl-no-mmap \
        --keyboard-socket "$RIG_OUT/d/kbd.sock" --tablet-socket "$RIG_OUT/d/tablet.sock" ||
        die "the daemon did not start: $(tail -3 "$RIG_OUT/d/daemon.log")"
    PORT=$DAEMON_PORT
    say "daemon: spice-bridge $("$DAEMON_BIN" --version 2>/dev/null) ($DAEMON_BIN), vhost-user keyboard + tablet"
    stack daemon "daemon vhost-user-input" keyboard,tablet --vfio-user "$DAEMON_SOCK" --no-mmap \
        --input-socket "$RIG_OUT/d/kbd.sock" --input-socket "$RIG_OUT/d/tablet.sock"
    daemon_stop || say "daemon: unclean stop (see $RIG_OUT/d/daemon.log)"
fi

{
    echo "Input latency, client event (XTEST) to the guest's evdev read, echoed on the serial console;"
    echo "round trip on the host clock, ms. $(nproc) cores, $(grep -o 'accel=[a-z]*' "$RIG_OUT"/*.log.run | head -1 | cut -d= -f2 | tr a-z A-Z),"
    echo "guest $(grep -aho 'BOOT kernel=[^ ]*' "$RIG_OUT"/*.log | head -1 | cut -d= -f2), N=$COUNT per row, ${GAP} ms between events, load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "release = key release to the guest's KEY 0 line; client = XTEST to spice-gtk's key handler"
    echo "(remote-viewer's debug log, 1 ms wall-clock resolution, so it can read slightly negative)."
    echo "ratio = median / the median of the first stack measured on that path (the reference)."
    echo
    echo "| stack | guest device | path | n | lost | min | median | ratio | p90 | p99 | max | release median | client median |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "${OUTMD:-/dev/null}"
