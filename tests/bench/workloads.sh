#!/usr/bin/env bash
# Workload benchmark (issue 11): the spice-bridge daemon against QEMU 11's own `-vga qxl -spice`
# (Debian's libspice-server, its defaults: auto_glz, lossless on a LAN), same guest, same client
# (remote-viewer under Xvfb behind a counting proxy), one run of each workload per side, through
# tests/bench/daemon-vs-reference.sh. The guest's `qxltest redraw --workload` draws:
#
#   text     a console: one 16-row text line a frame, top to bottom, the page cleared when full
#   scroll   a text page moving 16 rows a frame (each frame repeats the last one shifted)
#   photo    a slideshow of full-screen photo-like pictures (gradients, rings, noise)
#   video    a 480x270 photo-like area changing every frame in the middle of a still screen
#            (fresh grain in every frame: nothing for a codec's motion search to find)
#   movie    the same area as a camera pan over a still photo-like picture (3 columns right,
#            1 row down a frame; its grain moves with it), what VP8's inter frames are for
#   xterm    the Xorg guest (Xorg + xf86-video-qxl): an xterm scrolling through a file of
#            --xterm-lines lines (default 200), one line a scroll (images/xorg/xterm-scroll.sh);
#            "frames" are its lines
#
# Columns, per side: display-channel bytes on the wire during the loop; updates the client got
# (bursts of draw messages, of the frames the guest drew); display-side CPU seconds during the
# loop (daemon: every thread but its vfio-user BAR server; reference: QEMU's non-vCPU threads);
# the final picture in remote-viewer's window against the guest's last frame, pixel for pixel.
# Then the byte ratio daemon / reference (issue 11's goal: at most 0.5 on lossless workloads).
#
# --lossy: both sides with their lossy settings (JPEG always, video streams on; see
# daemon-vs-reference.sh): extra columns give the lossy pictures each side sent (JPEG stream
# frames and images) and their PSNR against the guest's frames (mean and worst, dB).
#
# Usage: tests/bench/workloads.sh [--frames N] [--interval-ms M] [--only "text photo"] [--xterm-lines L]
#        [--image-compression MODE (the daemon's; default auto_glz, its own default)] [--lossy]
#        [--out FILE.md] [--video-codecs LIST (the daemon's, with --lossy)]
#        (root; about 4 minutes a workload, 10 for xterm)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
FRAMES=40 INTERVAL=100 ONLY="text scroll photo video movie xterm" OUTMD="" COMPRESSION=auto_glz LOSSY=() CODECS=() XTERM_LINES=200
while [ $# -gt 0 ]; do
    case "$1" in
    --frames) FRAMES=$2; shift ;;
    --interval-ms) INTERVAL=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --xterm-lines) XTERM_LINES=$2; shift ;;
    --image-compression) COMPRESSION=$2; shift ;;
    --lossy) LOSSY=(--lossy) ;;
    --video-codecs) CODECS=(--video-codecs "$2"); shift ;;
    --out) OUTMD=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=$(mktemp -d /tmp/workloads.XXXXXX)
for w in $ONLY; do
    n=$([ "$w" = xterm ] && echo "$XTERM_LINES" || echo "$FRAMES")
    echo "[workloads $(date -u +%T)] === $w: $n frames, $INTERVAL ms apart" >&2
    bash tests/bench/daemon-vs-reference.sh --workload "$w" --frames "$n" --ref-frames "$n" \
        --interval-ms "$INTERVAL" --image-compression "$COMPRESSION" "${LOSSY[@]}" "${CODECS[@]}" --kv "$OUT/$w.kv" --out "$OUT/$w.md" >&2 ||
        echo "[workloads] $w: the run failed (see above)" >&2
done

# kv FILE KEY: the value of KEY in FILE (empty when missing)
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -1; }
{
    echo "Workloads: $(date -u +'%F %T') UTC, $(nproc) CPUs; $FRAMES frames each, $INTERVAL ms apart (xterm: $XTERM_LINES lines as fast as it prints them); $([ ${#LOSSY[@]} = 0 ] && echo "lossless on both sides" || echo "LOSSY on both sides (JPEG always, video streams)"); daemon --image-compression $COMPRESSION, reference QEMU's default (auto_glz)"
    echo
    printf '| %-8s | %-12s | %12s | %14s | %8s | %-8s | %9s | %15s |\n' workload side "KiB on wire" "updates/frames" "CPU s" "final" "bytes d/r" "JPEG n, dB mean/min"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- -------------- -------------- ---------------- ---------- ---------- ----------- -----------------
    for w in $ONLY; do
        f=$OUT/$w.kv
        db=$(kv "$f" daemon.bytes) rb=$(kv "$f" reference.bytes)
        ratio=$([ -n "$db" ] && [ -n "$rb" ] && [ "$rb" != 0 ] && python3 -c "print(f'{$db / $rb:.2f}x')" || echo "-")
        for side in daemon reference; do
            b=$(kv "$f" $side.bytes)
            printf '| %-8s | %-12s | %12s | %14s | %8s | %-8s | %9s | %15s |\n' "$w" \
                "$([ $side = daemon ] && echo spice-bridge || echo "QEMU+libspice")" \
                "$([ -n "$b" ] && python3 -c "print(f'{$b / 1024:,.0f}')" || echo "failed")" \
                "$(kv "$f" $side.updates)/$(kv "$f" $side.frames)" \
                "$(kv "$f" $side.cpu | xargs printf '%.2f' 2>/dev/null)" \
                "$(kv "$f" $side.final | cut -d' ' -f1)" \
                "$([ $side = daemon ] && echo "$ratio" || echo "")" \
                "$(n=$(kv "$f" $side.jpeg_pictures); [ -n "$n" ] && echo "$n, $(kv "$f" $side.jpeg_mean_db)/$(kv "$f" $side.jpeg_min_db)" || echo "-")"
        done
    done
    echo
    echo "accelerator: $(kv "$OUT/$(echo $ONLY | cut -d' ' -f1).kv" daemon.accel); screen $(kv "$OUT/$(echo $ONLY | cut -d' ' -f1).kv" daemon.mode); per-workload tables: $OUT/*.md"
} | tee "$OUT/workloads.md"
[ -z "$OUTMD" ] || cp "$OUT/workloads.md" "$OUTMD"
