#!/bin/sh
# The xterm workload of tests/bench/workloads.sh (issue 11): an xterm (core font "fixed", 100x50
# at the top left) scrolls through a long text file, one line at a time (+j: no jump scroll, so
# every line is one scroll on both stacks whatever their speed), as a user paging through a log
# sees it. The guest runs it on Xorg with xf86-video-qxl (images/guest/init, spice_xorg_workload);
# the host runs it on Xvfb for the expected final picture. 1024x768.
#
#   xterm-scroll.sh [LINES]   (default 200) prints "START lines=N" when the xterm is ready and
#                             the file starts, "DONE secs=S" once the xterm has taken it all in
set -eu
N=${1:-200}
T=${TMPDIR:-/tmp}
wait_for() { # wait_for SECS FILE: until FILE exists, polled every 0.2 s
    n=$(($1 * 5))
    while [ ! -e "$2" ]; do
        n=$((n - 1))
        [ $n -gt 0 ] || { echo "xterm-scroll.sh: timed out waiting for $2" >&2; exit 1; }
        kill -0 "$term_pid" 2>/dev/null || { echo "xterm-scroll.sh: xterm exited" >&2; exit 1; }
        sleep 0.2
    done
}
# The long file: numbered lines of pseudo-random words of varied length (integer arithmetic only,
# so mawk in the guest and the host's awk write the same bytes).
awk -v n="$N" 'BEGIN {
    split("spice qxl surface stream channel client guest display cursor monitor agent ring", w, " ")
    s = 4321
    for (i = 1; i <= n; i++) {
        line = sprintf("%5d", i)
        k = 3 + s % 11
        for (j = 0; j < k; j++) { s = (s * 75 + 74) % 65537; line = line " " w[1 + s % 12] }
        print line
    }
}' >"$T/long.txt"
rm -f "$T/go" "$T/ready" "$T/done"
# What runs in the xterm. "done" must mean the xterm has taken in every line, not that cat has
# written them (the xterm reads its pty behind cat): a cursor position report (ESC [ 6 n) is
# answered only once the xterm has parsed everything before it.
cat >"$T/inner.sh" <<END
touch $T/ready
while [ ! -e $T/go ]; do sleep 0.1; done
cat $T/long.txt
stty -echo -icanon min 1
printf '\033[6n'
while c=\$(dd bs=1 count=1 2>/dev/null) && [ "\$c" != R ]; do :; done
stty echo icanon
touch $T/done
exec sleep 100000
END
xsetroot -solid '#2a5f8c'
xterm -xrm 'XTerm*cursorBlink: false' +j -fn fixed -geometry 100x50+0+0 -title spice-scroll \
    -e sh "$T/inner.sh" &
term_pid=$!
wait_for 300 "$T/ready"
sleep 2 # the xterm's first picture (its window, the empty page) before the clock starts
echo "START lines=$N"
t0=$(cut -d' ' -f1 /proc/uptime)
touch "$T/go"
wait_for 3000 "$T/done"
xwininfo -root >/dev/null # a round trip: the X server has taken the xterm's last requests
echo "DONE secs=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')"
