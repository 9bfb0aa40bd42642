#!/usr/bin/env bash
# Benchmark: what the guest agent costs the guest, our spice-agent vs Debian's spice-vdagent
# 0.22.1, in the same run, same guest (bookworm Xorg, images/guest/init test "agent"), same server
# (QEMU 11's own spice-server, agent on virtio-serial) and same client (remote-viewer under Xvfb):
#
#   idle        the agent's processes (spice-vdagentd + spice-vdagent, or spice-agentd +
#               spice-agent) with a client connected and nothing happening for --idle seconds:
#               resident memory (VmRSS, summed) and CPU time (utime + stime from /proc/PID/stat)
#   10 MiB      a 10 MiB text clipboard host -> guest, then guest -> host (as tests/bench/
#               clipboard.sh moves it: xclip on both sides, arrival checked by SHA-256): the
#               agent's CPU time over the transfer, its peak memory (VmHWM, summed) afterwards,
#               and the transfer's wall time (the control port round trip included)
#
# CPU times are the guest's (TCG here: emulated, so compare the ratio, not the absolute).
# Usage: tests/bench/agent-resources.sh [--mib N] [--idle S] [--out FILE.md]   (root; ~8 min)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/rig.sh
. tests/lib/daemon.sh
. tests/lib/input.sh
. tests/lib/agent.sh

MIB=10 IDLE=30 OUTMD=""
while [ $# -gt 0 ]; do
    case "$1" in
    --mib) MIB=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --out) OUTMD=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
agent_setup agent-resources cargo dpkg-deb mke2fs
agent_deb_disk
declare -A R=()

# usage NAMES: "rss_kib hwm_kib cpu_ticks" summed over the guest processes named NAMES
usage() {
    agent_guest --timeout 30 "for p in \$(pidof $1); do awk '/^VmRSS/ { r = \$2 } /^VmHWM/ { h = \$2 } END { printf \"%d %d \", r, h }' /proc/\$p/status; awk '{ print \$14 + \$15 }' /proc/\$p/stat; done" |
        awk '{ r += $1; h += $2; c += $3 } END { printf "%d %d %d\n", r, h, c }'
}
hz() { agent_guest --timeout 10 'getconf CLK_TCK 2>/dev/null || echo 100' | tail -1; }

payload() { seq -f "agent-bench-$1 %.0f" 1 $((MIB * 1048576 / 16 + 16)) | head -c $((MIB * 1048576)); }

measure() {
    local impl=$1 names=$2 port t0 t1 u0 u1 want got tick out
    port=$(rig_free_port)
    AGENT_IMPL=$impl agent_boot "$RIG_OUT/guest.$impl.log" --reference --agent --spice-port "$port" || fail "$impl: $AGENT_WHY"
    agent_viewer_start "$RIG_OUT/x.$impl" "$port" || fail "$impl: $AGENT_WHY"
    agent_check "$impl warm-up host -> guest" agent_clip_to_guest
    agent_check "$impl warm-up guest -> host" agent_clip_to_host
    [ "$AGENT_FAILED" = 0 ] || fail "$impl: the clipboard does not work"
    tick=$(hz)
    read -r _ _ u0 <<<"$(usage "$names")"
    sleep "$IDLE"
    read -r R[$impl.rss] _ u1 <<<"$(usage "$names")"
    R[$impl.idle_cpu]=$(awk -v a="$u0" -v b="$u1" -v t="$tick" -v s="$IDLE" 'BEGIN { printf "%.2f", 100 * (b - a) / t / s }')
    # host -> guest
    payload h2g-$impl >"$RIG_OUT/h2g"
    want=$(sha256sum <"$RIG_OUT/h2g" | cut -c1-64)
    read -r _ _ u0 <<<"$(usage "$names")"
    t0=$(date +%s.%N)
    input_xdo_env xclip -selection clipboard -i <"$RIG_OUT/h2g" >/dev/null 2>&1 || fail "$impl: host xclip"
    out=$(agent_guest --timeout 300 "i=0; while [ \$i -lt 600 ]; do timeout 120 xclip -o -selection clipboard >/tmp/got 2>/dev/null; [ \$(stat -c %s /tmp/got) -ge $((MIB * 1048576)) ] && break; i=\$((i + 1)); sleep 0.05; done; sha256sum </tmp/got | cut -c1-64")
    t1=$(date +%s.%N)
    [ "$(tail -1 <<<"$out")" = "$want" ] || fail "$impl: host -> guest $MIB MiB arrived damaged"
    read -r _ R[$impl.h2g_hwm] u1 <<<"$(usage "$names")"
    R[$impl.h2g_cpu]=$(awk -v a="$u0" -v b="$u1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }')
    R[$impl.h2g_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    # guest -> host
    got=$(agent_guest --timeout 120 "seq -f 'agent-bench-g2h-$impl %.0f' 1 $((MIB * 1048576 / 16 + 16)) | head -c $((MIB * 1048576)) >/tmp/clip; sha256sum </tmp/clip | cut -c1-64")
    want=$(payload g2h-$impl | sha256sum | cut -c1-64)
    [ "$got" = "$want" ] || fail "$impl: the guest's payload differs"
    read -r _ _ u0 <<<"$(usage "$names")"
    t0=$(date +%s.%N)
    agent_guest "xclip -selection clipboard -i </tmp/clip >/dev/null 2>&1" >/dev/null || fail "$impl: guest xclip"
    for _ in $(seq 3000); do
        input_xdo_env timeout 120 xclip -o -selection clipboard >"$RIG_OUT/got" 2>/dev/null
        [ "$(stat -c %s "$RIG_OUT/got")" -ge $((MIB * 1048576)) ] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    [ "$(sha256sum <"$RIG_OUT/got" | cut -c1-64)" = "$want" ] || fail "$impl: guest -> host $MIB MiB arrived damaged"
    read -r _ R[$impl.g2h_hwm] u1 <<<"$(usage "$names")"
    R[$impl.g2h_cpu]=$(awk -v a="$u0" -v b="$u1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }')
    R[$impl.g2h_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    rig_step "$impl: idle ${R[$impl.rss]} KiB, ${R[$impl.idle_cpu]} % CPU; h2g ${R[$impl.h2g_s]} s ${R[$impl.h2g_cpu]} CPU s peak ${R[$impl.h2g_hwm]} KiB; g2h ${R[$impl.g2h_s]} s ${R[$impl.g2h_cpu]} CPU s peak ${R[$impl.g2h_hwm]} KiB"
    input_viewer_stop
    rig_stop_guest
}

measure vdagent "spice-vdagentd spice-vdagent"
measure rs "spice-agentd spice-agent"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
row() { echo "| $1 | ${R[vdagent.$2]} | ${R[rs.$2]} | $(ratio "${R[rs.$2]}" "${R[vdagent.$2]}") |"; }
{
    echo "Guest agent cost: spice-agent (ours) vs spice-vdagent 0.22.1 (Debian bookworm), both agent"
    echo "processes summed, bookworm Xorg guest under $(grep -o 'accel=[a-z]*' "$RIG_OUT"/*.log.run | head -1 | cut -d= -f2 | tr a-z A-Z),"
    echo "QEMU 11 spice-server, remote-viewer $(remote-viewer --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1). $(nproc) host cores, load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| figure | spice-vdagent | spice-agent | ours/theirs |"
    echo "|---|---|---|---|"
    row "idle RSS, KiB" rss
    row "idle CPU over ${IDLE} s, %" idle_cpu
    row "$MIB MiB host -> guest: CPU s" h2g_cpu
    row "$MIB MiB host -> guest: peak RSS (VmHWM), KiB" h2g_hwm
    row "$MIB MiB host -> guest: wall s" h2g_s
    row "$MIB MiB guest -> host: CPU s" g2h_cpu
    row "$MIB MiB guest -> host: peak RSS (VmHWM), KiB" g2h_hwm
    row "$MIB MiB guest -> host: wall s" g2h_s
} | tee "${OUTMD:-/dev/null}"
