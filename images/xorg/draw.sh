#!/bin/sh
# The xorg test's scene, drawn by ordinary X clients on $DISPLAY. The guest runs it on Xorg with
# xf86-video-qxl (every pixel reaches the screen as QXL commands the device renders); the host runs
# it on Xvfb (the X server's own software rendering) for the expected picture. 1024x768.
#   1. xsetroot: the root window filled with one colour
#   2. xwud: a 256x192 picture put at (100,80) (PutImage)
#   3. xterm (core font "fixed"): 60 lines printed into 20, so it scrolls (CopyArea) and draws text
#   4. xterm with DejaVu Sans Mono through Xft: anti-aliased glyphs (RENDER)
# DIR (default: this script's directory) holds pattern.xwd.
set -eu
exec 3>&2 # wait_for silences its command's stderr; errors that end the wait go to fd 3
DIR=${DIR:-$(dirname "$0")}
wait_for() { # wait_for SECS COMMAND...: retry COMMAND every 0.2 s
    n=$(($1 * 5))
    shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || { echo "draw.sh: timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}
# term TEXT-COMMAND XTERM-ARGS...: an xterm that runs TEXT-COMMAND and stays open; returns once
# the command has run (a flag file), fails if the xterm exits first.
term() {
    cmd=$1
    shift
    flag=${TMPDIR:-/tmp}/draw-term.$$
    rm -f "$flag"
    xterm -xrm 'XTerm*cursorBlink: false' "$@" -e sh -c "$cmd; touch $flag; exec sleep 100000" &
    term_pid=$!
    wait_for 300 term_ran
    rm -f "$flag"
}
term_ran() {
    kill -0 $term_pid 2>/dev/null || { echo "draw.sh: xterm exited" >&3; exit 1; }
    test -e "$flag"
}
xsetroot -solid '#2a5f8c'
xwud -in "$DIR/pattern.xwd" -geometry +100+80 &
wait_for 240 xwininfo -name "xwud: spice-rs pattern"
term "seq 1 60" -geometry 60x20+420+300 -fn fixed -title spice-xterm
term "echo 'Spice QXL: anti-aliased glyphs'" -geometry 40x4+420+620 -fa 'DejaVu Sans Mono' -fs 12 \
    -title spice-xft
# Let the clients finish their last requests, then round-trip the server.
sleep 2
xwininfo -root >/dev/null
