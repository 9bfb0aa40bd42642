#!/usr/bin/env bash
# End-to-end: the spice-bridge daemon's VDI port (a virtio-console with MULTIPORT served over
# vhost-user: --vdi-socket, plus one named port --vdi-port org.spice-space.test.0=SOCK) driven by
# the real Linux virtio_console driver, a Spice client on the daemon's main channel and an echo
# peer on the named port's host socket. The daemon runs with no QXL device (--vdi-socket only).
#
# Cases (VDIPORT_CASES="uml qemu" by default):
#   uml   User-Mode Linux 6.1 (Debian's linux.uml, images/run-uml.sh): virtio_uml.device=SOCK:3;
#         the client advertises AGENT_CONNECTED_TOKENS (as spice-gtk does)
#   qemu  QEMU 11 (images/run-guest.sh, TCG or KVM as the rig picks), Debian bookworm 6.1 guest:
#         vhost-user-test-device-pci,virtio-id=3,num_vqs=8,config_size=12,vq_size=128; the
#         client leaves AGENT_CONNECTED_TOKENS out (the server must send AGENT_CONNECTED)
#
# Each case checks (the guest side is images/guest/vdiport.sh; "PASS"/"FAIL" per check):
#   ports     /dev/virtio-ports/com.redhat.spice.0 and /dev/virtio-ports/org.spice-space.test.0 in
#             the guest (links made from sysfs, as udev would), device numbers right
#   agent     the guest opens com.redhat.spice.0, holds it 2 s, closes it: the client
#             (tests/lib/spice_main_probe.py) receives AGENT_CONNECTED(_TOKENS) then
#             AGENT_DISCONNECTED; again after the flood and after the driver reload
#   stream    10 MiB of random bytes written by the guest into the named port reach the peer
#             (tests/lib/vdiport_peer.py) unchanged (peer sha256 == guest sha256) and come back
#             unchanged (guest sha256 of what it read); rates printed, never asserted; 1 MiB again
#             after the flood
#   flood     the guest opens and closes the agent port 50 times in a loop; the daemon logs all 53
#             opens and closes; the client sees connections and disconnections strictly alternating
#             (at most 53 pairs: the VDI port folds an open the daemon has not taken yet with the
#             close that follows it, so a quick loop may show fewer), the daemon keeps serving
#             (the checks after it pass, the daemon is alive and stops cleanly)
#   reload    the guest unloads virtio_console (the driver resets the device) and loads it again:
#             the ports come back, the agent port's open/close reaches the client, 64 KiB go
#             through the named port and back (the peer stays connected through the reset)
#
# Exit status 0 only when every check passed; a missing piece of the rig is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh

export RIG_NAME=vdiport
[ "$(id -u)" = 0 ] || rig_fail "needs root (chroot for QEMU)"
CASES=${VDIPORT_CASES:-uml qemu}
for c in $CASES; do
    case $c in uml | qemu) ;; *) rig_fail "unknown case $c (VDIPORT_CASES: uml qemu)" ;; esac
done
for tool in python3 cargo cpio gzip; do
    command -v "$tool" >/dev/null || rig_fail "$tool missing: run images/install-host-deps.sh"
done
case " $CASES " in *" uml "*) [ -x /usr/bin/linux.uml ] || rig_fail "/usr/bin/linux.uml missing: run images/install-host-deps.sh (user-mode-linux)" ;; esac
case " $CASES " in *" qemu "*) command -v mmdebstrap >/dev/null || rig_fail "mmdebstrap missing: run images/install-host-deps.sh" ;; esac

RIG_OUT=$(mktemp -d /tmp/vdiport.XXXXXX)
KEEP=0
trap 'daemon_cleanup; [ $KEEP = 1 ] || rm -rf "$RIG_OUT"' EXIT
step() { rig_step "$@"; }
fail() { # infrastructure failure: stop here
    KEEP=1
    [ -z "$DAEMON_LOG" ] || { echo "--- daemon log (tail)" >&2; tail -20 "$DAEMON_LOG" >&2; }
    rig_fail "$* (work dir $RIG_OUT kept)"
}
NFAIL=0 NPASS=0 SUMMARY=()
check() { # check CASE NAME OK(0|1) DETAIL
    if [ "$3" = 1 ]; then
        NPASS=$((NPASS + 1))
        step "$1: PASS $2: $4"
    else
        NFAIL=$((NFAIL + 1))
        KEEP=1
        step "$1: FAIL $2: $4"
    fi
    SUMMARY+=("$1 $([ "$3" = 1 ] && echo PASS || echo FAIL) $2")
}

PORT_NAME=org.spice-space.test.0
BYTES=10485760 BYTES2=1048576 BYTES3=65536 FLOOD=50 HOLD=2
OPENS=$((FLOOD + 3)) # AGENT1, the flood, AGENT2, AGENT3
APPEND="spice_vdi_port=$PORT_NAME spice_vdi_bytes=$BYTES spice_vdi_bytes2=$BYTES2 spice_vdi_bytes3=$BYTES3"
APPEND+=" spice_vdi_flood=$FLOOD spice_vdi_hold=$HOLD"

t_start=$(rig_now_ms)
step "building the rig and the daemon"
case " $CASES " in *" uml "*) bash images/build-uml-root.sh >/dev/null || fail "images/build-uml-root.sh failed" ;; esac
case " $CASES " in *" qemu "*)
    bash images/build-qemu-root.sh >/dev/null || fail "images/build-qemu-root.sh failed"
    bash images/build-guest.sh bookworm >/dev/null || fail "images/build-guest.sh bookworm failed"
    ;;
esac
daemon_build || fail "cargo build -p spice-bridge --bin spice-bridge failed"
step "ready in $(($(rig_now_ms) - t_start)) ms"

# guest_line STEP: the guest's "vdiport STEP PASS|FAIL ..." line (empty if none)
guest_line() { grep -a "QXL-TEST: vdiport $1 \(PASS\|FAIL\)" "$RIG_GUEST_LOG" | head -1 | sed 's/^.*QXL-TEST: vdiport //'; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; } # field NAME LINE

# stream_checks CASE STEP SEGMENT: the guest's round trip and the peer's checksum of segment N
stream_checks() {
    local c=$1 s=$2 n=$3 g p gsha psha
    g=$(guest_line "$s")
    p=$(grep "^SEGMENT $n " "$PEER_LOG" | head -1 || true)
    gsha=$(field wrote_sha256 "$g")
    psha=$(field sha256 "$p")
    if [ -n "$p" ] && [ -n "$gsha" ] && [ "$psha" = "$gsha" ]; then
        check "$c" "$s guest -> host" 1 "the peer received $(field bytes "$p") bytes, sha256 $psha = the guest's; $(field MBps "$p") MB/s at the peer"
    else
        check "$c" "$s guest -> host" 0 "peer: '${p:-nothing}', guest wrote sha256 '${gsha:-?}'"
    fi
    case "$g" in
    "$s PASS "*) check "$c" "$s host -> guest" 1 "the guest read the echo back unchanged (sha256 equal), round trip $(field bytes "$g") bytes in $(field secs "$g") s = $(field MBps "$g") MB/s" ;;
    *) check "$c" "$s host -> guest" 0 "guest: '${g:-no $s line}'" ;;
    esac
}

for c in $CASES; do
    t0=$(rig_now_ms)
    D=$RIG_OUT/$c
    mkdir -p "$D"
    step "case $c: daemon with --vdi-socket and --vdi-port $PORT_NAME=$D/test.sock (no QXL)"
    DAEMON_NO_QXL=1 daemon_start "$D" --disable-ticketing --vdi-socket "$D/vdi.sock" \
        --vdi-port "$PORT_NAME=$D/test.sock" || fail "$c: the daemon did not start"
    daemon_wait_log 'vhost-user VDI port ready.* num_vqs=8' 10 || fail "$c: the daemon did not report its VDI port with 8 queues"
    for _ in $(seq 50); do [ -S "$D/vdi.sock" ] && [ -S "$D/test.sock" ] && break; sleep 0.1; done
    [ -S "$D/vdi.sock" ] && [ -S "$D/test.sock" ] || fail "$c: the daemon did not create $D/vdi.sock and $D/test.sock"

    # The Spice client, linked before the guest exists (MAIN_INIT: no agent yet).
    PROBE_LOG=$D/client.log
    if [ "$c" = uml ]; then tokens=(); ctype=115; else tokens=(--no-tokens-cap); ctype=107; fi
    python3 tests/lib/spice_main_probe.py watch --port "$DAEMON_PORT" --seconds 300 "${tokens[@]}" \
        >"$PROBE_LOG" 2>&1 &
    bg_track $!
    PROBE_PID=$!
    # The echo peer on the named port's host socket.
    PEER_LOG=$D/peer.log
    python3 tests/lib/vdiport_peer.py --socket "$D/test.sock" --segments "$BYTES,$BYTES2,$BYTES3" --timeout 300 \
        >"$PEER_LOG" 2>&1 &
    bg_track $!
    PEER_PID=$!
    for _ in $(seq 100); do
        grep -q '^MSG .* 103 INIT' "$PROBE_LOG" && grep -q '^CONNECTED' "$PEER_LOG" && break
        sleep 0.1
    done
    grep -q '^MSG .* 103 INIT' "$PROBE_LOG" || fail "$c: the Spice client did not link: $(tail -3 "$PROBE_LOG")"
    grep -q '^CONNECTED' "$PEER_LOG" || fail "$c: the echo peer could not connect: $(tail -3 "$PEER_LOG")"
    step "$c: client linked ($(grep -o 'agent_connected=[0-9]*' "$PROBE_LOG")), peer connected"

    RIG_GUEST_LOG=$D/guest.log
    : >"$RIG_GUEST_LOG"
    if [ "$c" = uml ]; then
        bash images/run-uml.sh --vhost-user-console "$D/vdi.sock" --log "$RIG_GUEST_LOG" --timeout 150 \
            --append "$APPEND" 2>"$RIG_GUEST_LOG.run" &
        RIG_GUEST_PID=$!
    else
        rig_start_guest "$RIG_GUEST_LOG" --test vdiport --vhost-user-console "$D/vdi.sock:8" \
            --append "$APPEND" --timeout 150
    fi
    rig_wait_marker "$RIG_GUEST_LOG" 'QXL-TEST: vdiport DONE|QXL-TEST: END' 150 ||
        fail "$c: the guest did not finish its checks within 150 s"
    boot=$(grep -a 'QXL-TEST: BOOT' "$RIG_GUEST_LOG" | head -1 | sed 's/.*BOOT //')
    how=$(grep -o 'accel=[a-z]*' "$RIG_GUEST_LOG.run" | head -1 || true)
    step "$c: guest $boot${how:+, $how}, checks done at uptime $(grep -a 'QXL-TEST: vdiport AGENT CLOSED 3' "$RIG_GUEST_LOG" | sed -n 's/.*at=//p')"
    grep -qa 'QXL-TEST: vdiport DONE' "$RIG_GUEST_LOG" || fail "$c: the guest's checks stopped early: $(grep -a 'QXL-TEST' "$RIG_GUEST_LOG" | tail -3)"

    # 1. the ports
    g=$(guest_line PORTS)
    case "$g" in "PORTS PASS "*) check "$c" ports 1 "${g#PORTS PASS }" ;; *) check "$c" ports 0 "${g:-no PORTS line}" ;; esac

    # 2. the streams through the named port
    stream_checks "$c" STREAM1 1

    # 3. agent open/close as the client sees it (the last disconnection may still be on its way)
    for _ in $(seq 50); do
        [ "$(grep '^MSG .* 10[78] \|^MSG .* 115 ' "$PROBE_LOG" | tail -1 | cut -d' ' -f3)" = 108 ] && break
        sleep 0.1
    done
    for s in AGENT1 FLOOD AGENT2 RELOAD AGENT3; do
        g=$(guest_line $s)
        case "$g" in "$s PASS "*) check "$c" "guest $s" 1 "${g#"$s" PASS }" ;; *) check "$c" "guest $s" 0 "${g:-no $s line}" ;; esac
    done
    if r=$(python3 tests/lib/spice_main_probe.py agent-check "$PROBE_LOG" --opens "$OPENS" --held 3 \
        --hold "$HOLD" --connect-type "$ctype"); then
        check "$c" "client sees agent open/close (before, during, after the flood, after the reload)" 1 "${r#OK }"
    else
        check "$c" "client sees agent open/close (before, during, after the flood, after the reload)" 0 "${r#FAIL }; client log $PROBE_LOG"
    fi
    opens=$(grep -c 'guest opened port.*name=com.redhat.spice.0' "$DAEMON_LOG" || true)
    closes=$(grep -c 'guest closed port.*name=com.redhat.spice.0' "$DAEMON_LOG" || true)
    check "$c" "daemon log" "$([ "$opens" = "$OPENS" ] && [ "$closes" = "$OPENS" ] && echo 1 || echo 0)" \
        "$opens 'guest opened port' and $closes 'guest closed port' lines for com.redhat.spice.0 (want $OPENS each)"

    # 4. after the flood and after the driver reload: more streams, the daemon alive, a clean
    # guest power-off
    stream_checks "$c" STREAM2 2
    stream_checks "$c" STREAM3 3
    check "$c" "client still connected" "$(kill -0 "$PROBE_PID" 2>/dev/null && ! grep -q '^CLOSED' "$PROBE_LOG" && echo 1 || echo 0)" \
        "main channel open after $(grep -c '^MSG' "$PROBE_LOG") messages"
    if rig_wait_marker "$RIG_GUEST_LOG" 'QXL-TEST: END' 10; then
        wait "$RIG_GUEST_PID" 2>/dev/null && grc=0 || grc=$?
    else
        rig_stop_guest
        grc="none (no END line within 10 s; stopped)"
    fi
    RIG_GUEST_PID=""
    check "$c" "guest powered off" "$([ $grc = 0 ] && echo 1 || echo 0)" "$([ "$c" = uml ] && echo run-uml.sh || echo run-guest.sh) exit status $grc"
    if daemon_alive; then
        kill_wait "$PEER_PID"
        kill_wait "$PROBE_PID"
        if daemon_stop; then
            check "$c" "daemon alive and stops cleanly" 1 "SIGTERM: exited, sockets removed"
        else
            check "$c" "daemon alive and stops cleanly" 0 "see $DAEMON_LOG"
        fi
    else
        check "$c" "daemon alive and stops cleanly" 0 "the daemon died: $(tail -3 "$DAEMON_LOG")"
    fi
    daemon_cleanup
    DAEMON_LOG=""
    step "case $c: done in $(($(rig_now_ms) - t0)) ms"
done

step "summary:"
for l in "${SUMMARY[@]}"; do step "  $l"; done
if [ $NFAIL -gt 0 ]; then
    step "FAIL: $NFAIL of $((NPASS + NFAIL)) checks failed (work dir $RIG_OUT kept)"
    exit 1
fi
step "PASS: $NPASS checks in $(($(rig_now_ms) - t_start)) ms"
