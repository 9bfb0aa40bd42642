#!/usr/bin/env bash
# Benchmark (issue 4 "Figures to report"): the spice-bridge daemon (QXL over vfio-user, release
# build, --qxl-no-mmap) against QEMU's own `-vga qxl -spice` (Debian's libspice-server), same
# guest, same workload, same client:
#
#   guest    bookworm 6.1, real qxl driver, guest test "redraw": N full-screen frames drawn into a
#            KMS dumb buffer, each flushed with DIRTYFB (images/guest/qxltest.c)
#   client   remote-viewer under Xvfb, connected through tests/lib/daemon_spiceproxy.py, a proxy
#            that forwards every byte unchanged and logs each server message with its time
#
# Figures, per side:
#   boot->1st frame  QEMU start to the first draw message the client receives on the guest's
#                    native mode surface (the first picture after the qxl driver's modeset)
#   client fps       full-screen draw messages the client received during the loop / their span
#   frames rx        full-screen draws received (of N drawn by the guest)
#   guest fps        the guest's own loop rate (from its DONE line)
#   KiB/frame        display-channel bytes (headers included) during the loop / frames received
#   CPU s/100 fr     display side CPU during the loop per 100 received frames: the daemon's whole
#                    process; for the reference, QEMU's non-vCPU threads (libspice-server's worker
#                    thread + main loop; QXL's I/O handlers run on the vCPU thread under TCG)
#   QEMU CPU s/100   all of QEMU's CPU during the loop per 100 received frames, for scale
#
# The reference draws --ref-frames frames (default 300), the daemon --frames (default 30): the
# reference's guest loop runs ~100x faster under TCG and needs more frames to last long enough to
# measure; every figure is per frame.
#
# --scroll K: the guest's frames are a text page scrolling K rows per frame instead (each frame
# repeats the previous one shifted); the daemon then sends COPY_BITS and the new rows, not whole
# frames, so compare "display bytes per guest frame" (all display bytes of the loop / frames the
# guest drew) rather than the per-full-frame figures.
#
# --workload NAME: qxltest redraw --workload (redraw, scroll, text, photo, video, movie; see
# images/guest/qxltest.c); --interval-ms M: the guest pauses M ms after each frame (both sides).
# --workload xterm: the Xorg guest (images/build-xorg-root.sh, Xorg with xf86-video-qxl) instead,
# where an xterm scrolls through a file of --frames lines, one line a scroll
# (images/xorg/xterm-scroll.sh); its final picture is the same script's on the host's Xvfb.
#
# After the loop each side's final picture in remote-viewer's window (the Xvfb frame buffer) is
# compared with the guest's last frame (tests/lib/qxlpic.py), pixel for pixel ("final picture").
# --kv FILE appends each side's figures as KEY=VALUE lines (tests/bench/workloads.sh reads them).
#
# Lossless by default on both sides (daemon: --jpeg-wan-compression never --streaming-video off;
# reference: jpeg-wan-compression=never, streaming-video=off). --lossy: both with their lossy
# settings (daemon: --jpeg-wan-compression always --streaming-video filter; reference the same
# QEMU options); the proxy then dumps every JPEG (stream frames, JPEG images) and
# spice-bridge/examples/frame_psnr.rs gives their PSNR against the guest's frames (photo and
# video workloads).
#
# Usage: tests/bench/daemon-vs-reference.sh [--frames N] [--ref-frames N] [--scroll K]
#        [--workload NAME] [--interval-ms M] [--image-compression MODE] [--lossy] [--out FILE.md]
#        [--kv FILE] [--video-codecs LIST]
#        (--video-codecs: the daemon's, with --lossy; e.g. "vpx:vp8;spice:mjpeg" for VP8 streams
#        against the reference's MJPEG, QEMU's default list)
#        (--image-compression: the daemon's flag, default auto_glz, as the daemon's; the reference keeps QEMU's default)
#        (root; about 3 minutes; CARGO_TARGET_DIR is honoured)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/rig.sh
. tests/lib/daemon.sh

FRAMES=30 REF_FRAMES=300 OUTMD="" SCROLL=0 WORKLOAD="" INTERVAL=0 KV="" COMPRESSION=auto_glz LOSSY=0 VIDEO_CODECS=spice:mjpeg
while [ $# -gt 0 ]; do
    case "$1" in
    --frames) FRAMES=$2; shift ;;
    --ref-frames) REF_FRAMES=$2; shift ;;
    --out) OUTMD=$2; shift ;;
    --scroll) SCROLL=$2; shift ;;
    --workload) WORKLOAD=$2; shift ;;
    --interval-ms) INTERVAL=$2; shift ;;
    --kv) KV=$2; shift ;;
    --image-compression) COMPRESSION=$2; shift ;;
    --lossy) LOSSY=1 ;;
    --video-codecs) VIDEO_CODECS=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { printf '[bench %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for t in cargo python3 remote-viewer Xvfb xdotool; do command -v $t >/dev/null || die "$t missing (images/install-host-deps.sh)"; done

OUT=$(mktemp -d /tmp/bench.XXXXXX)
trap 'daemon_cleanup; [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$OUT"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building (release daemon, rig)"
daemon_build --release || die "cargo build --release failed"
if [ $LOSSY = 1 ]; then
    (cd "$RIG_REPO" && cargo build -q --release -p spice-bridge --example frame_psnr) || die "frame_psnr build failed"
    DAEMON_LOSSY=(--jpeg-wan-compression always --streaming-video filter --video-codecs "$VIDEO_CODECS")
    export RIG_SPICE_LOSSY=1
else
    DAEMON_LOSSY=(--jpeg-wan-compression never --streaming-video off)
fi
bash images/build-qemu-root.sh >/dev/null || die "build-qemu-root.sh failed"
bash images/build-guest.sh bookworm >/dev/null || die "build-guest.sh failed"
if [ "$WORKLOAD" = xterm ]; then
    XORG_IMG=$(bash images/build-xorg-root.sh) || die "build-xorg-root.sh failed"
    # the expected final picture: the same script on the host's Xvfb (before the client's Xvfb,
    # as xorg_expected starts and stops one of its own)
    xorg_expected "$OUT/xterm-ref" "$OUT/xterm-expected.ppm" xterm-scroll.sh "$FRAMES" ||
        die "the xterm workload could not be drawn on Xvfb (see $OUT/xterm-ref)"
fi
xvfb_start "$OUT/x" 1280 1024 || die "Xvfb did not start"

# cpu_ticks PID [all|nonvcpu|novfio|vfio]: utime+stime of the process, or of some of its threads:
# nonvcpu = QEMU's threads not named "CPU n/TCG"; novfio = the daemon's threads but "vfio-user"
# (its BAR-access server); vfio = that thread alone.
cpu_ticks() {
    local pid=$1 mode=${2:-all} t sum=0 comm
    if [ "$mode" = all ]; then
        awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0
        return
    fi
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        case "$mode:$comm" in nonvcpu:CPU\ * | novfio:vfio-user) continue ;; vfio:vfio-user) ;; vfio:*) continue ;; esac
        sum=$((sum + $(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "$t/stat" 2>/dev/null || echo 0)))
    done
    echo $sum
}
threads() { for t in /proc/"$1"/task/*; do printf '%s ' "$(tr ' ' _ <"$t/comm")"; done; }
HZ=$(getconf CLK_TCK)
calc() { python3 -c "print($1)"; }

# run_side NAME: sets R_* figures
run_side() {
    local side=$1 upstream pport log qpid proxy rv t0 i
    log="$OUT/$side.log"
    rm -f "$OUT/$side.events"
    pport=$(rig_free_port)
    local nframes=$FRAMES
    [ "$side" = reference ] && nframes=$REF_FRAMES
    local guest_args=(--test redraw --append "spice_frames=$nframes spice_hold=30 spice_scroll=$SCROLL spice_interval_ms=$INTERVAL${WORKLOAD:+ spice_workload=$WORKLOAD}" --timeout 900 --pidfile "$OUT/$side.qpid")
    # the markers of the loop's start and end in the guest's log, and how long to wait for them
    local m_start='QXL-TEST: redraw (START|FAIL)' m_ok='QXL-TEST: redraw START' m_done='QXL-TEST: redraw DONE' t_wait=240
    if [ "$WORKLOAD" = xterm ]; then
        guest_args=(--test xorg --disk "$XORG_IMG" --mem 768 --timeout 1200 --pidfile "$OUT/$side.qpid"
            --append "spice_xorg_workload=xterm spice_frames=$nframes spice_hold=30")
        m_start='QXL-TEST: xorg(: START| FAIL)' m_ok='QXL-TEST: xorg: START' m_done='QXL-TEST: xorg: DONE' t_wait=480
    fi
    if [ "$side" = daemon ]; then
        mkdir -p "$OUT/d"
        daemon_start "$OUT/d" --disable-ticketing --qxl-no-mmap --image-compression "$COMPRESSION" "${DAEMON_LOSSY[@]}" || die "daemon did not start"
        upstream=$DAEMON_PORT
        guest_args+=(--vfio-user "$DAEMON_SOCK" --no-mmap)
    else
        upstream=$(rig_free_port)
        guest_args+=(--reference --spice-port "$upstream")
    fi
    mkdir -p "$OUT/$side.dump"
    python3 tests/lib/daemon_spiceproxy.py --listen "$pport" --upstream "$upstream" \
        --events "$OUT/$side.events" --dump "$OUT/$side.dump" >"$OUT/$side.proxy.log" 2>&1 &
    proxy=$!
    bg_track $proxy
    sleep 0.5
    t0=$(date +%s.%N)
    rig_start_guest "$log" "${guest_args[@]}"
    DISPLAY=$XVFB_DISPLAY remote-viewer -t "bench-$side" "spice://127.0.0.1:$pport" >"$OUT/$side.rv.log" 2>&1 &
    rv=$!
    bg_track $rv
    rig_wait_marker "$log" "$m_start" $t_wait || die "$side: no loop START (see $log)"
    grep -qaE "$m_ok" "$log" || die "$side: $(grep -a FAIL "$log")"
    local t_start c0_all c0_sel mode
    t_start=$(date +%s.%N)
    qpid=$(cat "$OUT/$side.qpid")
    local c0_proc=0 c0_vfio=0 c1_proc=0 c1_vfio=0
    if [ "$side" = daemon ]; then
        c0_sel=$(cpu_ticks "$DAEMON_PID" novfio) c0_proc=$(cpu_ticks "$DAEMON_PID") c0_vfio=$(cpu_ticks "$DAEMON_PID" vfio)
    else
        c0_sel=$(cpu_ticks "$qpid" nonvcpu)
    fi
    c0_all=$(cpu_ticks "$qpid")
    mode=$(sed -n 's/^QXL-TEST: redraw START frames=[0-9]* \([0-9]*x[0-9]*\).*/\1/p' "$log" | head -1)
    [ "$WORKLOAD" = xterm ] && mode=1024x768 # images/xorg/xorg.conf
    rig_wait_marker "$log" "$m_done" 900 || die "$side: no loop DONE"
    # let the last frames reach the client (it may lag behind the guest); lossy: also what a
    # server sends when a stream stops (the daemon resends the last frame losslessly after 1 s)
    # xterm: the guest's picture may trail its DONE (Xorg and the qxl driver under TCG), so the
    # client's stream must have been quiet for 3 s
    local n_prev=-1 n_now quiet=0 need=1
    [ "$WORKLOAD" = xterm ] && need=6
    for i in $(seq 60); do
        sleep 0.5
        n_now=$(wc -l <"$OUT/$side.events")
        if [ "$n_now" = "$n_prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        [ $quiet -ge $need ] && [ $LOSSY = 0 ] && break
        [ $quiet -ge $need ] && [ "$i" -gt 4 ] && break
        n_prev=$n_now
    done
    local t_end c1_all c1_sel
    t_end=$(date +%s.%N)
    # the client's final picture: the guest's last frame, 1:1 in remote-viewer's window
    local last=$((nframes - 1)) pic
    case ${WORKLOAD:-$([ "$SCROLL" != 0 ] && echo scroll || echo redraw)} in
    scroll) pic=scroll:$([ "$SCROLL" != 0 ] && echo "$SCROLL" || echo 16):$last ;;
    xterm) pic=file:$OUT/xterm-expected.ppm ;;
    *) pic=${WORKLOAD:-redraw}:$last ;;
    esac
    DISPLAY=$XVFB_DISPLAY xdotool mousemove 1279 1023 2>/dev/null || true
    sleep 0.3
    R_FINAL=$(python3 tests/lib/daemon_xwd.py find-pic "$XVFB_FB" "$pic" "${mode%x*}" "${mode#*x}") &&
        R_FINAL="equal ($pic)" || R_FINAL="DIFFERS ($pic: $R_FINAL)"
    # lossy: how close the final picture is (JPEG pictures that were never resent stay lossy)
    if [ $LOSSY = 1 ] && [ "${R_FINAL%% *}" = DIFFERS ]; then
        local near
        near=$(python3 tests/lib/daemon_xwd.py psnr-pic "$XVFB_FB" "$pic" "${mode%x*}" "${mode#*x}") &&
            R_FINAL="$(echo "$near" | awk '{print $3}')dB ($pic)"
    fi
    say "$side: final picture $R_FINAL"
    python3 tests/lib/daemon_xwd.py ppm "$XVFB_FB" "$OUT/$side.final.ppm" || true # kept with BENCH_KEEP=1
    if [ "$side" = daemon ]; then
        c1_sel=$(cpu_ticks "$DAEMON_PID" novfio) c1_proc=$(cpu_ticks "$DAEMON_PID") c1_vfio=$(cpu_ticks "$DAEMON_PID" vfio)
        say "daemon threads: $(threads "$DAEMON_PID")"
    else
        c1_sel=$(cpu_ticks "$qpid" nonvcpu)
        say "reference QEMU threads: $(threads "$qpid")"
    fi
    c1_all=$(cpu_ticks "$qpid")
    local s_all s_loop
    s_all=$(python3 tests/lib/daemon_spiceproxy.py summary "$OUT/$side.events" --size "$mode")
    s_loop=$(python3 tests/lib/daemon_spiceproxy.py summary "$OUT/$side.events" --size "$mode" --from "$t_start" --to "$t_end")
    say "$side: all: $s_all"
    say "$side: loop: $s_loop"
    # shellcheck disable=SC2046
    eval $(echo "$s_all" | tr ' ' '\n' | sed 's/^/A_/')
    # shellcheck disable=SC2046
    eval $(echo "$s_loop" | tr ' ' '\n' | sed 's/^/L_/')
    R_ACCEL=$(grep -o 'accel=[a-z]*' "$log.run" | head -1 | cut -d= -f2)
    R_MODE=$mode
    R_BOOT=$(calc "$A_t_first_draw - $t0")
    R_FRAMES=$L_full_draws
    R_FPS=$(calc "($L_full_draws - 1) / ($L_t_last_full - $L_t_first_full) if $L_t_last_full > $L_t_first_full else 0")
    R_GFPS=$(sed -n 's/.*redraw DONE .* fps=\([0-9.]*\).*/\1/p' "$log")
    [ "$WORKLOAD" = xterm ] && R_GFPS=$(sed -n 's/.*xorg: DONE secs=\([0-9.]*\).*/\1/p' "$log" | awk -v n="$nframes" '$1 > 0 { printf "%.2f", n / $1 }')
    R_KIB=$(calc "$L_display_bytes / $L_full_draws / 1024 if $L_full_draws > 0 else 0")
    R_CPU=$(calc "($c1_sel - $c0_sel) / $HZ / $L_full_draws * 100 if $L_full_draws > 0 else 0")
    R_QCPU=$(calc "($c1_all - $c0_all) / $HZ / $L_full_draws * 100 if $L_full_draws > 0 else 0")
    R_PCPU=$(calc "($c1_proc - $c0_proc) / $HZ / $L_full_draws * 100 if $L_full_draws > 0 else 0")
    R_VCPU=$(calc "($c1_vfio - $c0_vfio) / $HZ / $L_full_draws * 100 if $L_full_draws > 0 else 0")
    R_NFRAMES=$nframes
    R_KIB_GUEST=$(calc "$L_display_bytes / $nframes / 1024")
    R_UPDATES=$L_updates R_BYTES=$L_display_bytes R_CPUS=$(calc "($c1_sel - $c0_sel) / $HZ")
    # the lossy pictures this side sent (JPEG stream frames and images) against the guest's frames
    R_JPEG=""
    if [ -n "$(ls "$OUT/$side.dump")" ]; then
        local origin=0,0 pan=()
        case $WORKLOAD in video | movie) origin="$(((${mode%x*} - 480) / 2)),$(((${mode#*x} - 270) / 2))" ;; esac
        [ "$WORKLOAD" = movie ] && pan=(--movie)
        R_JPEG=$("${CARGO_TARGET_DIR:-$RIG_REPO/target}/release/examples/frame_psnr" "${pan[@]}" --frames "$nframes" --origin "$origin" "$OUT/$side.dump")
        say "$side: lossy pictures: $R_JPEG"
    fi
    [ -z "$KV" ] || printf '%s\n' "$side.bytes=$R_BYTES" "$side.updates=$R_UPDATES" "$side.frames=$nframes" \
        "$side.cpu=$R_CPUS" "$side.final=$R_FINAL" "$side.accel=$R_ACCEL" "$side.mode=$mode" \
        $(for kv in $R_JPEG; do echo "$side.jpeg_$kv"; done) >>"$KV"
    say "$side: boot->first frame ${R_BOOT}s, ${R_FRAMES} frames rx, client fps $R_FPS, guest fps $R_GFPS, KiB/frame $R_KIB, CPU/100 $R_CPU, QEMU CPU/100 $R_QCPU"
    kill_wait $rv
    rig_stop_guest
    kill_wait $proxy
    [ "$side" = daemon ] && daemon_stop
    return 0
}

row() { printf '| %-58s | %14s | %14s |\n' "$1" "$2" "$3"; }
declare -A D R
for side in daemon reference; do
    say "=== $side"
    run_side $side
    declare -n X=$([ $side = daemon ] && echo D || echo R)
    X[accel]=$R_ACCEL X[mode]=$R_MODE X[boot]=$(printf '%.1f' "$R_BOOT") X[frames]="$R_FRAMES / $R_NFRAMES"
    X[pcpu]=$(printf '%.2f' "$R_PCPU") X[vcpu]=$(printf '%.2f' "$R_VCPU")
    X[fps]=$(printf '%.2f' "$R_FPS") X[gfps]=$R_GFPS X[kib]=$(printf '%.0f' "$R_KIB")
    X[cpu]=$(printf '%.2f' "$R_CPU") X[qcpu]=$(printf '%.2f' "$R_QCPU")
    X[kibg]=$(printf '%.1f' "$R_KIB_GUEST") X[final]=${R_FINAL%% (*}
    unset -n X
done

{
    echo "Benchmark: $(date -u +'%F %T') UTC, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "Guest: bookworm $(sed -n 's/^KVER=//p' "${SPICE_RS_CACHE:-$HOME/.cache/spice-rs}/guest-bookworm/info" 2>/dev/null), test redraw (full-screen ${D[mode]} frames: daemon $FRAMES, reference $REF_FRAMES$([ "$SCROLL" != 0 ] && echo ", a text page scrolling $SCROLL rows per frame")); client: remote-viewer (spice-gtk 0.42) under Xvfb via a counting proxy; daemon: release build, --qxl-no-mmap"
    echo
    row "" "spice-bridge" "QEMU qxl+spice"
    row "----------------------------------------------------------" "--------------" "--------------"
    row "accelerator" "${D[accel]}" "${R[accel]}"
    row "guest boot -> first frame at client (s)" "${D[boot]}" "${R[boot]}"
    row "frames received (of drawn)" "${D[frames]}" "${R[frames]}"
    row "client frames per second" "${D[fps]}" "${R[fps]}"
    row "guest loop frames per second" "${D[gfps]}" "${R[gfps]}"
    row "bytes on the wire per frame (KiB)" "${D[kib]}" "${R[kib]}"
    row "display bytes per guest frame drawn (KiB)" "${D[kibg]}" "${R[kibg]}"
    row "final picture in the client" "${D[final]}" "${R[final]}"
    row "display-side CPU s per 100 frames (1)" "${D[cpu]}" "${R[cpu]}"
    row "device BAR-access serving CPU s per 100 frames (2)" "${D[vcpu]}" "(in vCPU)"
    row "daemon process CPU s per 100 frames" "${D[pcpu]}" "-"
    row "QEMU process CPU s per 100 frames" "${D[qcpu]}" "${R[qcpu]}"
    echo
    echo "(1) daemon: every thread but vfio-user (qxl-worker: rings, decode, render; bridge; Spice"
    echo "    server + encoders); reference: QEMU's non-vCPU threads (libspice-server worker + main loop)."
    echo "(2) daemon's vfio-user thread, which serves each trapped guest BAR access; in the reference"
    echo "    the BARs are guest RAM and QXL's port I/O runs on the vCPU thread."
} | tee "$OUT/table.md"
[ -n "$OUTMD" ] && cp "$OUT/table.md" "$OUTMD"
exit 0
