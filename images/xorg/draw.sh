#!/bin/sh
# The xorg test's scene, drawn by ordinary X clients on $DISPLAY. The guest runs it on Xorg with
# xf86-video-qxl (every pixel reaches the screen as QXL commands the device renders); the host runs
# it on Xvfb (the X server's own software rendering) for the expected picture. 1024x768.
#   1. xsetroot: the root window filled with one colour
#   2. xwud: a 256x192 picture put at (100,80) (PutImage)
#   3. xterm (core font "fixed"): 60 lines printed into 20, so it scrolls (CopyArea) and draws text
#   4. xterm with DejaVu Sans Mono through Xft: anti-aliased glyphs (RENDER Composite)
# DIR (default: this script's directory) holds pattern.xwd.
set -eu
exec 3>&2 # wait_for silences its command's stderr; errors that end the wait go to fd 3
DIR=${DIR:-$(dirname "$0")}
done_flag=${TMPDIR:-/tmp}/xterm-done.$$
rm -f "$done_flag"
wait_for() { # wait_for SECS COMMAND...: retry COMMAND every 0.2 s
    n=$(($1 * 5))
    shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || { echo "draw.sh: timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}
xsetroot -solid '#2a5f8c'
xwud -in "$DIR/pattern.xwd" -geometry +100+80 &
wait_for 240 xwininfo -name "xwud: spice-rs pattern"
xterm -geometry 60x20+420+300 -fn fixed -title spice-xterm -xrm 'XTerm*cursorBlink: false' \
    -e sh -c "seq 1 60; touch $done_flag; exec sleep 100000" &
xterm_pid=$!
xterm_done() {
    kill -0 $xterm_pid 2>/dev/null || { echo "draw.sh: xterm exited" >&3; exit 1; }
    test -e "$done_flag"
}
wait_for 300 xterm_done
rm -f "$done_flag"
# 4. xterm with an anti-aliased Xft font: glyphs composited through a mask (RENDER)
xterm -geometry 40x4+420+620 -fa 'DejaVu Sans Mono' -fs 12 -title spice-xft \
    -xrm 'XTerm*cursorBlink: false' -e sh -c "echo 'Spice QXL: anti-aliased glyphs'; touch $done_flag.xft; exec sleep 100000" &
xft_pid=$!
xft_done() {
    kill -0 $xft_pid 2>/dev/null || { echo "draw.sh: xterm (Xft) exited" >&3; exit 1; }
    test -e "$done_flag.xft"
}
wait_for 300 xft_done
rm -f "$done_flag.xft"
# Let the clients finish their last requests, then round-trip the server.
sleep 2
xwininfo -root >/dev/null
