#!/bin/sh
# The VDI port checks (busybox sh), run once virtio_console is loaded by the QEMU guest's /init
# (images/guest/init, spice_test=vdiport) and by the User-Mode Linux root's /init
# (images/build-uml-root.sh). The device is the spice-bridge daemon's virtio-console
# (--vdi-socket): port com.redhat.spice.0 (the Spice agent) and one named port (--vdi-port
# NAME=SOCK) whose host end is an echo peer (tests/lib/vdiport_peer.py). The host test
# (tests/e2e/vdiport.sh) watches a Spice client and the peer while this runs.
#
# Kernel parameters (init gets them as variables):
#   spice_vdi_port=NAME    the named port (default org.spice-space.test.0)
#   spice_vdi_bytes=N      bytes of the first stream (default 10485760)
#   spice_vdi_bytes2=N     bytes of the second stream, after the flood (default 1048576)
#   spice_vdi_flood=N      open/close cycles of the agent port (default 50)
#   spice_vdi_hold=S       seconds the agent port stays open in AGENT (default 2)
#   spice_vdi_wait=S       seconds to wait for the ports to appear (default 30)
#   spice_vdi_bytes3=N     bytes of the third stream, after the driver reload (default 65536)
#
# Lines for the host, "QXL-TEST: vdiport <STEP> PASS|FAIL ..." (and a few progress lines):
#   PORTS    both names in /sys/class/virtio-ports/vport*/name; /dev/virtio-ports/NAME links made
#            here (no udev) from each port's sysfs dev numbers and checked against them
#   AGENT1   com.redhat.spice.0 opened ("AGENT OPENED 1"), held spice_vdi_hold s, closed
#            ("AGENT CLOSED 1"); the host checks its Spice client saw AGENT_CONNECTED(_TOKENS)
#            and then AGENT_DISCONNECTED
#   STREAM1  spice_vdi_bytes random bytes written into the named port while a reader takes as
#            many back (the peer echoes): sha256 written == sha256 read back; prints the rate.
#            The line carries the written sha256 for the host to compare with the peer's.
#   FLOOD    the agent port opened and closed spice_vdi_flood times in a quick loop
#   AGENT2   as AGENT1, after the flood (the daemon still serves)
#   STREAM2  as STREAM1 with spice_vdi_bytes2 bytes, on the same open named port
#   RELOAD   every port closed, rmmod virtio_console (the driver resets the device), insmod: the
#            ports come back (links made again)
#   AGENT3   as AGENT1, with the reloaded driver
#   STREAM3  as STREAM1 with spice_vdi_bytes3 bytes, the named port opened again (the host's peer
#            stayed connected through the reset)
# The last line is "QXL-TEST: vdiport DONE pass=P fail=F".
: "${spice_vdi_port:=org.spice-space.test.0}" "${spice_vdi_bytes:=10485760}"
: "${spice_vdi_bytes2:=1048576}" "${spice_vdi_bytes3:=65536}" "${spice_vdi_flood:=50}" "${spice_vdi_hold:=2}" "${spice_vdi_wait:=30}"
AGENT=com.redhat.spice.0
PASS=0 FAIL=0
vsay() { echo "QXL-TEST: vdiport $*"; }
ok() {
    PASS=$((PASS + 1))
    vsay "$1 PASS $2"
}
bad() {
    FAIL=$((FAIL + 1))
    vsay "$1 FAIL $2"
}
done_exit() {
    vsay "DONE pass=$PASS fail=$FAIL"
    exit 0
}
now() { cut -d' ' -f1 /proc/uptime; }
port_of() { # NAME -> vportXpY (empty if absent)
    for n in /sys/class/virtio-ports/*/name; do
        [ -r "$n" ] && [ "$(cat "$n")" = "$1" ] && {
            v=${n%/name}
            echo "${v##*/}"
            return
        }
    done
}

# --- PORTS ---------------------------------------------------------------------------------------
# ports_check STEP: wait for both ports, make the links, check them; exits when they are not there.
ports_check() {
    i=0
    while [ -z "$(port_of $AGENT)" ] || [ -z "$(port_of "$spice_vdi_port")" ]; do
        i=$((i + 1))
        [ $i -gt $((spice_vdi_wait * 10)) ] && break
        sleep 0.1
    done
    rm -rf /dev/virtio-ports
    mkdir -p /dev/virtio-ports
    list="" perr=""
    for v in /sys/class/virtio-ports/*; do
        [ -d "$v" ] || continue
        p=${v##*/} name=$(cat "$v/name" 2>/dev/null) want=$(cat "$v/dev")
        list="$list $p=${name:-<unnamed>}"
        [ -n "$name" ] || continue
        # udev's job (50-udev-default.rules): /dev/virtio-ports/NAME -> ../vportXpY. devtmpfs makes
        # the node itself; create it from the sysfs dev numbers if it did not.
        [ -c "/dev/$p" ] || mknod "/dev/$p" c "${want%:*}" "${want#*:}"
        ln -sf "../$p" "/dev/virtio-ports/$name"
        got=$(stat -L -c '%t:%T' "/dev/virtio-ports/$name" 2>/dev/null) # hex major:minor
        [ -n "$got" ] && [ "$((0x${got%:*})):$((0x${got#*:}))" = "$want" ] || perr="$perr $name(sysfs $want, node ${got:-none})"
    done
    AP=$(port_of $AGENT) XP=$(port_of "$spice_vdi_port")
    if [ -n "$AP" ] && [ -n "$XP" ] && [ -z "$perr" ]; then
        ok "$1" "ports:$list links=/dev/virtio-ports/$AGENT,/dev/virtio-ports/$spice_vdi_port at=$(now)"
    else
        bad "$1" "ports:${list:- none} (wanted $AGENT and $spice_vdi_port within ${spice_vdi_wait}s)${perr:+ bad nodes:$perr}"
        done_exit
    fi
}
ports_check PORTS
A=/dev/virtio-ports/$AGENT P=/dev/virtio-ports/$spice_vdi_port

# agent_check STEP N: open the agent port, hold it, close it.
agent_check() {
    if command exec 4<>"$A" 2>/dev/null; then
        vsay "AGENT OPENED $2 $AP at=$(now)"
        sleep "$spice_vdi_hold"
        exec 4>&-
        vsay "AGENT CLOSED $2 $AP at=$(now)"
        ok "$1" "opened $A, held ${spice_vdi_hold}s, closed"
    else
        bad "$1" "cannot open $A"
    fi
}

# stream_check STEP N: N random bytes out on fd 3 (the named port), the echo back, concurrently.
stream_check() {
    n=$2
    head -c "$n" /dev/urandom >/tmp/out
    sha_out=$(sha256sum /tmp/out | cut -c1-64)
    vsay "$1 START bytes=$n at=$(now)"
    t0=$(now)
    timeout 120 head -c "$n" <&3 >/tmp/in &
    rpid=$!
    dd if=/tmp/out bs=32768 2>/tmp/dd.err >&3
    wrc=$?
    wait $rpid
    rrc=$?
    t1=$(now)
    got=$(wc -c </tmp/in)
    sha_in=$(sha256sum /tmp/in | cut -c1-64)
    rm -f /tmp/out /tmp/in
    rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{d=b-a; if (d<=0) d=0.01; printf "secs=%.2f MBps=%.1f", d, n/d/1048576}')
    line="bytes=$n read=$got wrote_sha256=$sha_out read_sha256=$sha_in $rate"
    if [ $wrc = 0 ] && [ $rrc = 0 ] && [ "$got" = "$n" ] && [ "$sha_in" = "$sha_out" ]; then
        ok "$1" "$line"
    else
        bad "$1" "$line write_rc=$wrc read_rc=$rrc (143: timed out) $(head -c 200 /tmp/dd.err | tr '\n' ' ')"
    fi
}

agent_check AGENT1 1

if ! command exec 3<>"$P" 2>/dev/null; then
    bad STREAM1 "cannot open $P"
    done_exit
fi
stream_check STREAM1 "$spice_vdi_bytes"

# --- FLOOD: open/close the agent port in a quick loop ---------------------------------------------
t0=$(now) i=0 errs=0
while [ $i -lt "$spice_vdi_flood" ]; do
    i=$((i + 1))
    if command exec 4<>"$A" 2>/dev/null; then exec 4>&-; else errs=$((errs + 1)); fi
done
secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')
if [ $errs = 0 ]; then
    ok FLOOD "opened and closed $A $spice_vdi_flood times in ${secs}s"
else
    bad FLOOD "$errs of $spice_vdi_flood opens of $A failed (${secs}s)"
fi
sleep 1

agent_check AGENT2 2
stream_check STREAM2 "$spice_vdi_bytes2"
exec 3>&-

# --- RELOAD: the driver goes away and comes back --------------------------------------------------
ko=$(find /lib/modules/"$(uname -r)" -name 'virtio_console.ko' | head -1)
if [ -z "$ko" ] || ! grep -q '^virtio_console ' /proc/modules; then
    bad RELOAD "virtio_console is not a loaded module here (built in?): cannot reload it"
    done_exit
fi
# busybox timeout's watcher (a child polling once a second) may hold the named port a moment
# after the stream's reader ended: rmmod fails with EAGAIN (module in use) meanwhile.
t0=$(now) tries=0
while ! rmmod virtio_console 2>/dev/null; do
    tries=$((tries + 1))
    [ $tries -ge 50 ] && break
    sleep 0.1
done
if [ $tries -ge 50 ]; then
    bad RELOAD "rmmod virtio_console failed for 5 s: $(rmmod virtio_console 2>&1)"
    done_exit
fi
if [ -n "$(port_of $AGENT)" ]; then
    bad RELOAD "the ports are still in sysfs after rmmod virtio_console"
    done_exit
fi
if ! insmod "$ko"; then
    bad RELOAD "insmod $ko failed"
    done_exit
fi
vsay "RELOADED at=$(now) (rmmod: ports gone; rmmod retries $tries)"
ports_check RELOAD
agent_check AGENT3 3
if ! command exec 3<>"$P" 2>/dev/null; then
    bad STREAM3 "cannot open $P after the reload"
    done_exit
fi
stream_check STREAM3 "$spice_vdi_bytes3"
exec 3>&-
done_exit
