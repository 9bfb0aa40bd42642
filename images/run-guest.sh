#!/usr/bin/env bash
# Boots a test guest (images/build-guest.sh) in QEMU 11 from the trixie root
# (images/build-qemu-root.sh), with one of two display devices:
#
#   --reference            QEMU's own qxl-vga + libspice-server on 127.0.0.1:PORT (the reference)
#   --vfio-user SOCKET     a vfio-user-pci device served by SOCKET (the spice-bridge daemon);
#                          guest RAM is a shared memfd, -vga none. [--no-mmap] only tags the log:
#                          the daemon decides whether BARs are mmap-able.
#
# or none (-vga none) when only --vhost-user-console is given (the guest's "vdiport" test).
#
# Options:
#   --dist bookworm|trixie   guest kernel (default bookworm)
#   --test NAME              spice_test=NAME for the guest /init (default bind); see images/guest/init
#   --append "k=v ..."       more kernel parameters (spice_hold=S, spice_frames=N, ...)
#   --spice-port N           reference server port (default 5930)
#   --log FILE               guest serial console log (default RUNDIR/serial.log); QEMU's own
#                            stderr goes to FILE.qemu
#   --timeout S              kill the guest after S seconds (default 600); exit status 124 then
#   --accel auto|kvm|tcg     auto (default): KVM if a probe boot reaches /init within 6 s, else TCG
#   --mem MB                 guest RAM (default 512)
#   --allow-reboot           a guest reboot restarts it (default: QEMU exits on reboot)
#   --agent                  (reference) a virtio-serial port com.redhat.spice.0 bound to the Spice
#                            agent channel; the guest's "modes" test runs a minimal agent on it
#   --taskset CPUS           pin QEMU (taskset -c CPUS), e.g. the CPU the daemon is pinned to
#   --qemu-arg ARG           extra QEMU argument (repeatable), e.g. --qemu-arg -trace --qemu-arg 'vfio_*'
#   --pidfile FILE           write QEMU's pid there
#   --disk IMAGE             a raw disk image as virtio-blk /dev/vda, opened with snapshot=on (the
#                            guest's writes go to a temporary overlay), e.g. build-xorg-root.sh's
#   --disk2 IMAGE            a second raw disk image, /dev/vdb, read-only (the agent test's .deb of
#                            spice-agent: tests/lib/agent.sh agent_deb_disk)
#   --input-socket PATH      (repeatable) a vhost-user-input-pci device whose backend listens on the
#                            unix socket PATH (the daemon's keyboard, tablet or mouse): each adds
#                            -chardev socket,id=inN,path=PATH -device vhost-user-input-pci,chardev=inN.
#                            Guest RAM is always a share=on memfd, which vhost-user needs.
#   --usb-tablet             a qemu-xhci controller with QEMU's usb-tablet: an absolute pointer, so
#                            the reference spice-server offers client mouse mode. Without it the
#                            reference has the pc machine's PS/2 keyboard and mouse only (server
#                            mouse mode), as the display tests always had.
#   --vhost-user-console SOCK[:NUM_VQS]
#                            a virtio-console (virtio id 3) whose vhost-user backend listens on the
#                            unix socket SOCK (the daemon's --vdi-socket, the VDI port): -chardev
#                            socket,id=vdi,path=SOCK -device vhost-user-test-device-pci,chardev=vdi,
#                            virtio-id=3,num_vqs=NUM_VQS,config_size=12,vq_size=128. NUM_VQS is
#                            2 x (ports + 2): 6 for the agent port alone (the default), 8 with one
#                            --vdi-port (the daemon logs its number at start)
#   --virtio-input LIST      QEMU's own virtio-input devices, LIST a comma list of keyboard, tablet,
#                            mouse (virtio-keyboard-pci, virtio-tablet-pci, virtio-mouse-pci): with
#                            --reference, QEMU's spice input on the guest's virtio_input driver, the
#                            driver the daemon's vhost-user devices meet. QEMU offers client mouse
#                            mode only while the pointer device it routes to first is absolute:
#                            with both tablet and mouse, the one the guest driver activated last
#                            wins, so give tablet or mouse, not both, for a known mouse mode.
#   --vdi-socket PATH        the same as --vhost-user-console PATH (the agent port alone, 6 queues)
#   --qmp PATH               a QMP socket on the unix socket PATH that QEMU listens on (tests/lib/qmp.py);
#                            with --agent the port has id agentport on bus vser.0, so a test can
#                            unplug and plug it back
#   --ctl PATH               a second serial port (ttyS1) on a unix socket PATH that QEMU listens
#                            on: the guest's "agent" test serves its control port there
#                            (images/guest/init; tests/lib/agent_ctl.py talks to it)
#
# The input devices are what the guest's "input" test reads (images/guest/init); the PS/2
# keyboard (i8042, atkbd) is always there on the pc machine.
#
# Runs in the foreground until QEMU exits; kills QEMU on exit, INT or TERM (and QEMU gets SIGKILL
# if this script is killed outright). Prints the accelerator it chose on stderr as
# "run-guest: accel=tcg|kvm". Needs root (chroot, private mount namespace).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rig_need_root

DIST=bookworm MODE="" SOCK="" NOMMAP=0 TEST=bind APPEND="" PORT=5930 LOG="" TIMEOUT=600
ACCEL=auto MEM=512 REBOOT=0 AGENT=0 TASKSET="" PIDFILE="" DISK="" DISK2="" EXTRA=() INSOCKS=()
USBTABLET=0 VIRTIOINPUT="" VUCONSOLE="" CTLSOCK="" QMPSOCK=""
while [ $# -gt 0 ]; do
    case "$1" in
    --reference) MODE=reference ;;
    --vfio-user) MODE=vfio-user SOCK=$2; shift ;;
    --no-mmap) NOMMAP=1 ;;
    --dist) DIST=$2; shift ;;
    --test) TEST=$2; shift ;;
    --append) APPEND=$2; shift ;;
    --spice-port) PORT=$2; shift ;;
    --log) LOG=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --accel) ACCEL=$2; shift ;;
    --mem) MEM=$2; shift ;;
    --allow-reboot) REBOOT=1 ;;
    --agent) AGENT=1 ;;
    --taskset) TASKSET=$2; shift ;;
    --qemu-arg) EXTRA+=("$2"); shift ;;
    --pidfile) PIDFILE=$2; shift ;;
    --disk) DISK=$2; shift ;;
    --disk2) DISK2=$2; shift ;;
    --input-socket) INSOCKS+=("$2"); shift ;;
    --usb-tablet) USBTABLET=1 ;;
    --virtio-input) VIRTIOINPUT=$2; shift ;;
    --vhost-user-console | --vdi-socket) VUCONSOLE=$2; shift ;;
    --ctl) CTLSOCK=$2; shift ;;
    --qmp) QMPSOCK=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) rig_die "run-guest.sh: unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -n "$MODE" ] || [ -n "$VUCONSOLE" ] ||
    rig_die "run-guest.sh: give --reference, --vfio-user SOCKET or --vhost-user-console SOCK"
VUC_SOCK="" VUC_VQS=6
if [ -n "$VUCONSOLE" ]; then
    VUC_SOCK=${VUCONSOLE%%:*}
    [ "$VUC_SOCK" = "$VUCONSOLE" ] || VUC_VQS=${VUCONSOLE#*:}
    case "$VUC_VQS" in '' | *[!0-9]*) rig_die "--vhost-user-console SOCK[:NUM_VQS]: bad NUM_VQS '$VUC_VQS'" ;; esac
fi
case "$ACCEL" in auto | kvm | tcg) ;; *) rig_die "--accel auto|kvm|tcg" ;; esac

ROOT=$(bash "$RIG_IMAGES_DIR/build-qemu-root.sh")
GUEST=$(bash "$RIG_IMAGES_DIR/build-guest.sh" "$DIST")
RUNDIR=$(mktemp -d /tmp/spice-rs-guest.XXXXXX)
LOG=${LOG:-$RUNDIR/serial.log}
: >"$LOG"
LOG=$(realpath "$LOG")
# Mount points inside the root; each run binds its own dirs there in a private mount namespace,
# so concurrent runs do not see each other's mounts and nothing is left mounted afterwards.
mkdir -p "$ROOT/spice-rs/guest" "$ROOT/spice-rs/sock" "$ROOT/spice-rs/log"
# The PVH-bootable ELF kernel when build-guest.sh could make one (5 s faster under TCG).
KERNEL=vmlinuz
[ -f "$GUEST/vmlinux" ] && KERNEL=vmlinux
ln -f "$GUEST/$KERNEL" "$RUNDIR/$KERNEL" 2>/dev/null || cp "$GUEST/$KERNEL" "$RUNDIR/$KERNEL"
ln -f "$GUEST/initrd.gz" "$RUNDIR/initrd.gz" 2>/dev/null || cp "$GUEST/initrd.gz" "$RUNDIR/initrd.gz"

if [ -n "$DISK" ]; then
    [ -f "$DISK" ] || rig_die "run-guest.sh: --disk $DISK: no such file"
    ln -f "$DISK" "$RUNDIR/disk.img" 2>/dev/null || cp "$DISK" "$RUNDIR/disk.img"
fi
if [ -n "$DISK2" ]; then
    [ -f "$DISK2" ] || rig_die "run-guest.sh: --disk2 $DISK2: no such file"
    ln -f "$DISK2" "$RUNDIR/disk2.img" 2>/dev/null || cp "$DISK2" "$RUNDIR/disk2.img"
fi

QPID=""
cleanup() {
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill "$QPID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$QPID" 2>/dev/null || true
    fi
    rm -rf "$RUNDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Socket folders: the vfio-user socket's folder is bound at /spice-rs/sock, each other folder of an
# --input-socket or the --vhost-user-console socket at /spice-rs/sock1, sock2, ... (sock_in_root maps a host path to its root path).
SOCKDIRS=()
[ -n "$SOCK" ] && SOCKDIRS+=("$(dirname "$(realpath "$SOCK")")")
[ -n "$SOCK" ] || SOCKDIRS+=(/nonexistent)
for s in "${INSOCKS[@]}" ${VUC_SOCK:+"$VUC_SOCK"} ${CTLSOCK:+"$CTLSOCK"} ${QMPSOCK:+"$QMPSOCK"}; do
    d=$(dirname "$(realpath "$s")")
    known=0
    for k in "${SOCKDIRS[@]}"; do [ "$k" = "$d" ] && known=1; done
    [ $known = 1 ] || SOCKDIRS+=("$d")
done
for i in "${!SOCKDIRS[@]}"; do [ "$i" = 0 ] || mkdir -p "$ROOT/spice-rs/sock$i"; done
sock_in_root() {
    local d i
    d=$(dirname "$(realpath "$1")")
    for i in "${!SOCKDIRS[@]}"; do
        if [ "${SOCKDIRS[$i]}" = "$d" ]; then
            if [ "$i" = 0 ]; then echo "/spice-rs/sock/$(basename "$1")"; else echo "/spice-rs/sock$i/$(basename "$1")"; fi
            return
        fi
    done
}

# qemu_run LOGFILE ARGS...: QEMU inside the root, in the foreground of a private mount namespace.
qemu_run() {
    local log=$1
    shift
    local pre=()
    [ -n "$TASKSET" ] && pre=(taskset -c "$TASKSET")
    "${pre[@]}" unshare --mount --propagation private -- sh -c '
        root=$1 rundir=$2 logdir=$3 nsock=$4; shift 4
        mount --rbind /dev "$root/dev" &&
        mount --bind "$rundir" "$root/spice-rs/guest" &&
        mount --bind "$logdir" "$root/spice-rs/log" || exit 1
        i=0
        while [ $i -lt "$nsock" ]; do
            if [ -d "$1" ]; then
                if [ $i = 0 ]; then m=sock; else m=sock$i; fi
                mount --bind "$1" "$root/spice-rs/$m" || exit 1
            fi
            shift
            i=$((i + 1))
        done
        exec setpriv --pdeathsig KILL chroot "$root" qemu-system-x86_64 "$@"' sh "$ROOT" "$RUNDIR" "$(dirname "$log")" \
        "${#SOCKDIRS[@]}" "${SOCKDIRS[@]}" "$@" </dev/null 2>"$log.qemu" &
    QPID=$!
}

CMDLINE="console=ttyS0 panic=-1 quiet vt.global_cursor_default=0"
common_args() { # $1 = accel, $2 = serial log name inside /spice-rs/log
    echo "-accel $1 -machine pc,memory-backend=mem -m $MEM -smp 1"
    echo "-object memory-backend-memfd,id=mem,size=${MEM}M,share=on"
    echo "-nic none -display none -monitor none -serial file:/spice-rs/log/$2"
    echo "-kernel /spice-rs/guest/$KERNEL -initrd /spice-rs/guest/initrd.gz"
}

# --- accelerator: KVM only if a probe boot reaches /init quickly (cached per host boot) ---------
probe_kvm() {
    [ -c /dev/kvm ] || { echo "no /dev/kvm"; return 1; }
    local cache="$SPICE_RS_CACHE/kvm-probe" boot
    boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
    if [ -f "$cache" ] && [ "$(sed -n 1p "$cache")" = "$boot" ]; then
        sed -n 2p "$cache"
        [ "$(sed -n 3p "$cache")" = ok ]
        return
    fi
    local plog="$RUNDIR/probe.log" t0 ok=fail why
    : >"$plog"
    t0=$(date +%s%N)
    # shellcheck disable=SC2046
    qemu_run "$plog" $(common_args kvm probe.log) -vga none -no-reboot -append "$CMDLINE spice_test=probe"
    for _ in $(seq 1 60); do
        grep -q 'QXL-TEST: BOOT' "$plog" 2>/dev/null && { ok=ok; break; }
        kill -0 "$QPID" 2>/dev/null || break
        sleep 0.1
    done
    why="kvm probe: reached /init in $((($(date +%s%N) - t0) / 1000000)) ms"
    [ $ok = ok ] || why="kvm probe: guest did not reach /init within 6 s ($(head -c 200 "$plog.qemu" | tr '\n' ' '))"
    kill "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null || true
    QPID=""
    printf '%s\n%s\n%s\n' "$boot" "$why" "$ok" >"$cache"
    echo "$why"
    [ $ok = ok ]
}

if [ "$ACCEL" = auto ]; then
    if why=$(probe_kvm); then ACCEL=kvm; else ACCEL=tcg; fi
    echo "run-guest: accel=$ACCEL ($why)" >&2
else
    echo "run-guest: accel=$ACCEL (forced)" >&2
fi

# --- the run -----------------------------------------------------------------------------------
# shellcheck disable=SC2207
ARGS=($(common_args "$ACCEL" "$(basename "$LOG")"))
[ $REBOOT = 1 ] || ARGS+=(-no-reboot)
if [ "$MODE" = reference ]; then
    # Lossless, no video streaming: what the client shows must equal the guest's pixels.
    # RIG_SPICE_LOSSY=1 (the lossy benchmark): JPEG always and video streams, as a WAN user sets.
    lossy="jpeg-wan-compression=never,zlib-glz-wan-compression=never,streaming-video=off"
    [ "${RIG_SPICE_LOSSY:-0}" = 1 ] && lossy="jpeg-wan-compression=always,zlib-glz-wan-compression=never,streaming-video=filter"
    ARGS+=(-vga qxl
        -spice "port=$PORT,addr=127.0.0.1,disable-ticketing=on,image-compression=auto_glz,$lossy")
    # shellcheck disable=SC2054 # commas belong to QEMU option values
    [ $AGENT = 1 ] && ARGS+=(-device virtio-serial-pci,id=vser -chardev spicevmc,id=vdagent,name=vdagent
        -device virtserialport,id=agentport,bus=vser.0,chardev=vdagent,name=com.redhat.spice.0)
    echo "run-guest: reference qxl-vga + spice://127.0.0.1:$PORT, guest $DIST ($(sed -n 's/^KVER=//p' "$GUEST/info")), test=$TEST" >&2
elif [ "$MODE" = vfio-user ]; then
    [ -S "$SOCK" ] || echo "run-guest: warning: $SOCK is not a socket (yet)" >&2
    # x-msg-timeout: QEMU fails a BAR read that waits longer than this behind posted writes
    # and hands the guest all-ones (device/README.md, "All-zero (NULL) ring entries"); 5 s by
    # default, raised so a loaded CI machine cannot turn a slow reply into a lost command.
    ARGS+=(-vga none -device "{\"driver\":\"vfio-user-pci\",\"x-msg-timeout\":30000,\"socket\":{\"path\":\"/spice-rs/sock/$(basename "$SOCK")\",\"type\":\"unix\"}}")
    echo "run-guest: vfio-user-pci at $SOCK$([ $NOMMAP = 1 ] && echo ' (no-mmap)'), guest $DIST ($(sed -n 's/^KVER=//p' "$GUEST/info")), test=$TEST" >&2
else
    ARGS+=(-vga none)
    echo "run-guest: no display device, guest $DIST ($(sed -n 's/^KVER=//p' "$GUEST/info")), test=$TEST" >&2
fi
[ -n "$DISK" ] && ARGS+=(-drive file=/spice-rs/guest/disk.img,if=virtio,format=raw,snapshot=on)
[ -n "$DISK2" ] && ARGS+=(-drive file=/spice-rs/guest/disk2.img,if=virtio,format=raw,readonly=on)
# Input devices (the guest's "input" test). usb-tablet on qemu-xhci: xHCI completes the tablet's
# interrupt transfers when there is data, where UHCI would poll a 1 ms frame timer under TCG.
# shellcheck disable=SC2054 # commas belong to QEMU option values
[ $USBTABLET = 1 ] && ARGS+=(-device qemu-xhci,id=xhci -device usb-tablet,bus=xhci.0)
# shellcheck disable=SC2054
for v in ${VIRTIOINPUT//,/ }; do
    case $v in
    keyboard | tablet | mouse) ARGS+=(-device "virtio-$v-pci") ;;
    *) rig_die "--virtio-input: $v is not keyboard, tablet or mouse" ;;
    esac
done
n=0
for s in "${INSOCKS[@]}"; do
    [ -S "$s" ] || echo "run-guest: warning: input socket $s is not a socket (yet)" >&2
    ARGS+=(-chardev "socket,id=in$n,path=$(sock_in_root "$s")" -device "vhost-user-input-pci,chardev=in$n")
    n=$((n + 1))
done
if [ -n "$VUC_SOCK" ]; then
    [ -S "$VUC_SOCK" ] || echo "run-guest: warning: console socket $VUC_SOCK is not a socket (yet)" >&2
    ARGS+=(-chardev "socket,id=vdi,path=$(sock_in_root "$VUC_SOCK")"
        -device "vhost-user-test-device-pci,chardev=vdi,virtio-id=3,num_vqs=$VUC_VQS,config_size=12,vq_size=128")
    echo "run-guest: vhost-user virtio-console at $VUC_SOCK, $VUC_VQS queues" >&2
fi
if [ -n "$CTLSOCK" ]; then
    rm -f "$CTLSOCK"
    ARGS+=(-chardev "socket,id=ctl,path=$(sock_in_root "$CTLSOCK"),server=on,wait=off" -serial chardev:ctl)
fi
if [ -n "$QMPSOCK" ]; then
    rm -f "$QMPSOCK"
    ARGS+=(-qmp "unix:$(sock_in_root "$QMPSOCK"),server=on,wait=off")
fi
INPUTS=""
[ $USBTABLET = 1 ] && INPUTS+=" usb-tablet"
[ -n "$VIRTIOINPUT" ] && INPUTS+=" virtio-input ($VIRTIOINPUT)"
[ ${#INSOCKS[@]} -gt 0 ] && INPUTS+=" vhost-user-input x${#INSOCKS[@]} (${INSOCKS[*]})"
[ -n "$INPUTS" ] && echo "run-guest: input devices: PS/2 keyboard+mouse$INPUTS" >&2
qemu_run "$LOG" "${ARGS[@]}" "${EXTRA[@]}" -append "$CMDLINE spice_test=$TEST $APPEND"
[ -n "$PIDFILE" ] && echo "$QPID" >"$PIDFILE"
echo "run-guest: qemu pid $QPID, serial log $LOG" >&2

rc=0 deadline=$(($(date +%s) + TIMEOUT))
while kill -0 "$QPID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "run-guest: timeout after ${TIMEOUT}s" >&2
        rc=124
        break
    fi
    sleep 0.3
done
if [ $rc = 0 ]; then
    wait "$QPID" || rc=$?
    QPID=""
    [ $rc = 0 ] || { echo "run-guest: qemu exited with $rc:" >&2; tail -5 "$LOG.qemu" >&2; }
fi
exit $rc
