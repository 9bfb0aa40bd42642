#!/usr/bin/env bash
# Benchmark: clipboard transfers through the Spice agent, the spice-bridge daemon vs QEMU's own
# spice-server, in the same run, with the same guest and client as tests/e2e/*-agent.sh:
#
#   guest    bookworm Xorg with Debian's spice-vdagent (images/guest/init, test "agent"); xclip
#            sets and reads its CLIPBOARD through the guest's control port (tests/lib/agent.sh)
#   client   remote-viewer under Xvfb, connected through tests/lib/daemon_spiceproxy.py --log-up,
#            which forwards every byte and logs them (both directions) by channel and time
#   payload  N bytes of text, lines "bench-RUNID-DIR %d" (seq), made on the sending side before
#            the clock starts; arrival is verified by size and SHA-256 on the receiving side
#
#   host -> guest   t0: the host's xclip takes the CLIPBOARD on Xvfb (spice-gtk grabs the guest's
#                   clipboard for it); the guest then reads it with xclip -o until it gets N bytes
#                   (a read that still gets the previous, tiny, content is repeated); t1: the
#                   guest's answer (size, SHA-256) reaches the host. The guest's control port
#                   round trip (serial line, about 0.1-0.3 s under TCG: the "control port"
#                   line) is part of the figure.
#   guest -> host   t0: the guest's xclip takes its CLIPBOARD (spice-vdagent grabs the client's);
#                   the host reads with xclip -o until it gets N bytes; t1: that read completes.
#   bytes           what the proxy saw on the main channel (both directions: AGENT_DATA, tokens,
#                   grabs and requests) from t0 to t1.
#
# Stacks: reference = QEMU 11 qxl-vga + libspice-server with the agent on a virtio-serial port
# (spicevmc); daemon = spice-bridge (release build, or --daemon-bin PATH) with the vfio-user QXL,
# a vhost-user keyboard and relative mouse and the VDI port (--vdi-socket).
#
# Usage: tests/bench/clipboard.sh [--sizes "1 10"] (MiB) [--daemon-bin PATH] [--reference-only |
#        --daemon-only] [--out FILE.md]          (root; about 6 minutes here, TCG)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/rig.sh
. tests/lib/daemon.sh
. tests/lib/input.sh
. tests/lib/agent.sh

SIZES="1 10" DAEMON_BIN_OPT="" REFERENCE=1 DAEMON=1 OUTMD=""
while [ $# -gt 0 ]; do
    case "$1" in
    --sizes) SIZES=$2; shift ;;
    --daemon-bin) DAEMON_BIN_OPT=$2; shift ;;
    --reference-only) DAEMON=0 ;;
    --daemon-only) REFERENCE=0 ;;
    --out) OUTMD=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { printf '[clipboard-bench %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() {
    echo "FAIL: $*" >&2
    [ -n "$AGENT_CTL" ] && [ -S "$AGENT_CTL" ] && agent_dump_logs
    exit 1
}
[ "$(id -u)" = 0 ] || die "needs root"
for t in python3 remote-viewer Xvfb xdotool xclip sha256sum; do command -v $t >/dev/null || die "$t missing (images/install-host-deps.sh)"; done

RIG_OUT=$(mktemp -d /tmp/clipboard-bench.XXXXXX)
RIG_NAME=clipboard-bench
PROXY_PID=""
trap 'input_viewer_stop; [ -z "$PROXY_PID" ] || kill_wait "$PROXY_PID"; daemon_cleanup; [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$RIG_OUT"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash images/build-qemu-root.sh >/dev/null || die "build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || die "build-guest.sh failed"
bash images/build-xorg-root.sh >/dev/null || die "build-xorg-root.sh failed"
RUNID=$(date +%s)-$RANDOM
declare -A SECS=() BYTES=()
EVENTS=""

# main_bytes T0 T1: main-channel bytes (both directions) the proxy logged between T0 and T1
main_bytes() {
    awk -v a="$1" -v b="$2" '$1 == "main" && $2 >= a && $2 <= b {
        if ($3 == "up") n += $4; else if ($3 == "msg") n += $5 } END { printf "%d\n", n }' "$EVENTS"
}
now() { date +%s.%N; }

# to_guest STACK MIB: one host -> guest transfer; sets SECS and BYTES for "STACK h2g MIB"
to_guest() {
    local stack=$1 mib=$2 n f want got t0 t1 out
    n=$((mib * 1048576)) f=$RIG_OUT/h2g-$stack-$mib.txt
    seq -f "bench-$RUNID-h2g-$mib %.0f" 1 $((n / 16 + 16)) | head -c "$n" >"$f"
    want=$(sha256sum <"$f" | cut -d' ' -f1)
    # the guest's clipboard first holds something tiny (a stale big one would be re-read)
    agent_guest "printf small | xclip -selection clipboard -i >/dev/null 2>&1" >/dev/null || die "$stack: guest xclip"
    sleep 1
    t0=$(now)
    input_xdo_env xclip -selection clipboard -i <"$f" >/dev/null 2>&1 || die "$stack: host xclip -i"
    out=$(agent_guest --timeout 300 "i=0; while [ \$i -lt 600 ]; do timeout 120 xclip -o -selection clipboard >/tmp/got 2>/dev/null; [ \$(stat -c %s /tmp/got) -ge $n ] && break; i=\$((i + 1)); sleep 0.05; done; stat -c %s /tmp/got; sha256sum </tmp/got | cut -d' ' -f1")
    t1=$(now)
    got=$(echo "$out" | tail -1)
    [ "$got" = "$want" ] || die "$stack host->guest $mib MiB: the guest got $(echo "$out" | head -1) bytes, sha256 $got (want $want)"
    SECS["$stack h2g $mib"]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    BYTES["$stack h2g $mib"]=$(main_bytes "$t0" "$t1")
    say "$stack host -> guest $mib MiB: ${SECS["$stack h2g $mib"]} s, ${BYTES["$stack h2g $mib"]} bytes on the main channel, sha256 ok"
}

# to_host STACK MIB: one guest -> host transfer
to_host() {
    local stack=$1 mib=$2 n f want got t0 t1 i
    n=$((mib * 1048576)) f=$RIG_OUT/g2h-$stack-$mib.txt
    seq -f "bench-$RUNID-g2h-$mib %.0f" 1 $((n / 16 + 16)) | head -c "$n" >"$f"
    want=$(sha256sum <"$f" | cut -d' ' -f1)
    got=$(agent_guest --timeout 120 "seq -f 'bench-$RUNID-g2h-$mib %.0f' 1 $((n / 16 + 16)) | head -c $n >/tmp/clip; sha256sum </tmp/clip | cut -d' ' -f1")
    [ "$got" = "$want" ] || die "$stack: the guest's payload differs from the host's ($got)"
    printf small | input_xdo_env xclip -selection clipboard -i >/dev/null 2>&1
    sleep 1
    t0=$(now)
    agent_guest "xclip -selection clipboard -i </tmp/clip >/dev/null 2>&1" >/dev/null || die "$stack: guest xclip -i"
    for i in $(seq 3000); do
        input_xdo_env timeout 120 xclip -o -selection clipboard >"$RIG_OUT/got" 2>/dev/null
        [ "$(stat -c %s "$RIG_OUT/got")" -ge "$n" ] && break
        sleep 0.05
    done
    t1=$(now)
    got=$(sha256sum <"$RIG_OUT/got" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "$stack guest->host $mib MiB: the host got $(stat -c %s "$RIG_OUT/got") bytes, sha256 $got (want $want)"
    SECS["$stack g2h $mib"]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    BYTES["$stack g2h $mib"]=$(main_bytes "$t0" "$t1")
    say "$stack guest -> host $mib MiB: ${SECS["$stack g2h $mib"]} s, ${BYTES["$stack g2h $mib"]} bytes on the main channel, sha256 ok"
}

# stack NAME SERVER-PORT RUN-GUEST-ARGS...: boot, client through the proxy, the transfers
CTL_RTT=()
stack() {
    local name=$1 sport=$2 pport t0 t1 mib
    shift 2
    agent_boot "$RIG_OUT/$name.log" "$@" || die "$name: $AGENT_WHY"
    pport=$(rig_free_port)
    EVENTS=$RIG_OUT/$name.events
    python3 tests/lib/daemon_spiceproxy.py --listen "$pport" --upstream "$sport" --events "$EVENTS" --log-up \
        >"$RIG_OUT/$name.proxy.log" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 50); do grep -q '^proxy' "$RIG_OUT/$name.proxy.log" 2>/dev/null && break; sleep 0.1; done
    agent_viewer_start "$RIG_OUT/x-$name" "$pport" || die "$name: $AGENT_WHY"
    # warm-up: both directions once, small
    agent_check "$name warm-up host -> guest" agent_clip_to_guest
    agent_check "$name warm-up guest -> host" agent_clip_to_host
    [ "$AGENT_FAILED" = 0 ] || die "$name: the clipboard does not work"
    t0=$(now)
    agent_guest true >/dev/null
    t1=$(now)
    CTL_RTT+=("$name $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s")
    for mib in $SIZES; do
        to_guest "$name" "$mib"
        to_host "$name" "$mib"
    done
    input_viewer_stop
    kill_wait "$PROXY_PID"
    PROXY_PID=""
    rig_stop_guest
}

if [ $REFERENCE = 1 ]; then
    port=$(rig_free_port)
    say "reference: QEMU qxl-vga + spice-server, agent on virtio-serial (spicevmc), PS/2 only"
    stack reference "$port" --reference --agent --spice-port "$port"
fi
if [ $DAEMON = 1 ]; then
    if [ -n "$DAEMON_BIN_OPT" ]; then
        DAEMON_BIN=$DAEMON_BIN_OPT
    else
        say "building the daemon (cargo build --release)"
        daemon_build --release || die "cargo build --release failed"
    fi
    D=$RIG_OUT/d
    mkdir -p "$D"
    daemon_start "$D" --disable-ticketing --qxl-no-mmap --keyboard-socket "$D/kbd.sock" \
        --mouse-socket "$D/mouse.sock" --vdi-socket "$D/vdi.sock" ||
        die "the daemon did not start: $(tail -3 "$D/daemon.log")"
    say "daemon: spice-bridge ($DAEMON_BIN), vfio-user QXL, vhost-user keyboard + mouse + VDI port"
    stack daemon "$DAEMON_PORT" --vfio-user "$DAEMON_SOCK" --no-mmap --input-socket "$D/kbd.sock" \
        --input-socket "$D/mouse.sock" --vdi-socket "$D/vdi.sock"
    daemon_stop || say "daemon: unclean stop (see $D/daemon.log)"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
{
    echo "Clipboard through the Spice agent (spice-vdagent 0.22.1 in a bookworm Xorg guest, remote-viewer"
    echo "$(remote-viewer --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1) / spice-gtk under Xvfb), seconds from set to verified arrival and main-channel bytes"
    echo "(both directions) through a counting proxy. $(nproc) cores, $(grep -o 'accel=[a-z]*' "$RIG_OUT"/*.log.run | head -1 | cut -d= -f2 | tr a-z A-Z),"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg). Control port round trip (part of host -> guest): ${CTL_RTT[*]}."
    echo
    echo "| transfer | reference s | daemon s | daemon/reference | reference bytes | daemon bytes | daemon/reference |"
    echo "|---|---|---|---|---|---|---|"
    for mib in $SIZES; do
        for dir in h2g g2h; do
            label="$mib MiB $([ $dir = h2g ] && echo 'host -> guest' || echo 'guest -> host')"
            rs=${SECS["reference $dir $mib"]:-} ds=${SECS["daemon $dir $mib"]:-}
            rb=${BYTES["reference $dir $mib"]:-} db=${BYTES["daemon $dir $mib"]:-}
            echo "| $label | ${rs:--} | ${ds:--} | $(ratio "$ds" "$rs") | ${rb:--} | ${db:--} | $(ratio "$db" "$rb") |"
        done
    done
} | tee "${OUTMD:-/dev/null}"
