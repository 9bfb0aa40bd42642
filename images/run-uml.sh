#!/usr/bin/env bash
# Boots the User-Mode Linux test guest (Debian's /usr/bin/linux.uml with images/build-uml-root.sh's
# initramfs) with a virtio-console whose vhost-user backend listens on a unix socket (the
# spice-bridge daemon's --vdi-socket): virtio_uml.device=SOCK:3 on the UML command line.
#
#   --vhost-user-console SOCK   the backend socket (required)
#   --test NAME                 spice_test=NAME for the UML /init (default vdiport; see images/uml/init)
#   --append "k=v ..."          more kernel parameters (spice_vdi_bytes=N, ...)
#   --log FILE                  the console output (default RUNDIR/console.log)
#   --timeout S                 kill UML after S seconds (default 600); exit status 124 then
#   --mem MB                    guest RAM (default 256)
#   --pidfile FILE              write UML's pid there
#
# Guest RAM: linux.uml maps its physical memory from an unlinked file it creates in $TMPDIR, and
# virtio_uml hands that file's descriptor to the backend (SET_MEM_TABLE), which maps it MAP_SHARED
# too. Here TMPDIR is a fresh folder on /dev/shm (or under $SPICE_RS_UML_TMPDIR). Seen here: a
# folder on a disk file system (ext4) works as well (both map the same page cache; linux.uml
# warns "tempdir ... is not on tmpfs"), but the guest's RAM then gets written back to the disk;
# this script warns too and goes on.
#
# Runs in the foreground until UML powers off; kills UML (its whole process group: UML runs every
# guest process as a host process) on exit, INT, TERM or timeout. Exit status: UML's, or 124.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SOCK="" TEST=vdiport APPEND="" LOG="" TIMEOUT=600 MEM=256 PIDFILE=""
while [ $# -gt 0 ]; do
    case "$1" in
    --vhost-user-console) SOCK=$2; shift ;;
    --test) TEST=$2; shift ;;
    --append) APPEND=$2; shift ;;
    --log) LOG=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --mem) MEM=$2; shift ;;
    --pidfile) PIDFILE=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) rig_die "run-uml.sh: unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -n "$SOCK" ] || rig_die "run-uml.sh: give --vhost-user-console SOCK"
command -v setsid >/dev/null || rig_die "setsid missing (util-linux)"

ROOT=$(bash "$RIG_IMAGES_DIR/build-uml-root.sh")
UML=$(sed -n 's/^UML=//p' "$ROOT/info")
MEMDIR=${SPICE_RS_UML_TMPDIR:-/dev/shm}
[ -d "$MEMDIR" ] || rig_die "run-uml.sh: $MEMDIR (the guest RAM file's folder) does not exist"
[ "$(stat -f -c %T "$MEMDIR" 2>/dev/null)" = tmpfs ] ||
    echo "run-uml: warning: $MEMDIR is not a tmpfs: the guest RAM file is backed by disk" >&2
RUNDIR=$(mktemp -d /tmp/spice-rs-uml.XXXXXX)
MEMTMP=$(mktemp -d "$MEMDIR/spice-rs-uml.XXXXXX")
LOG=${LOG:-$RUNDIR/console.log}
: >"$LOG"

UPID=""
cleanup() {
    if [ -n "$UPID" ] && kill -0 "$UPID" 2>/dev/null; then
        kill -TERM -- "-$UPID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$UPID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$UPID" 2>/dev/null || true
    fi
    rm -rf "$RUNDIR" "$MEMTMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -S "$SOCK" ] || echo "run-uml: warning: $SOCK is not a socket (yet)" >&2
# con0 (the boot console, /dev/console for init) writes to stdout, the other consoles and serial
# lines are off; uml_dir keeps UML's pid file and management socket in RUNDIR.
# shellcheck disable=SC2054 # commas belong to the parameters
ARGS=(mem="${MEM}M" initrd="$ROOT/initrd.gz" "virtio_uml.device=$(realpath "$SOCK"):3"
    con=null con0=null,fd:1 ssl=null uml_dir="$RUNDIR" umid=uml quiet panic=-1
    "spice_test=$TEST")
# shellcheck disable=SC2206 # kernel parameters are words
ARGS+=($APPEND)
echo "run-uml: $UML ($(sed -n 's/^KVER=//p' "$ROOT/info")), virtio_console $(sed -n 's/^VIRTIO_CONSOLE=//p' "$ROOT/info"), console socket $SOCK, RAM file in $MEMTMP, test=$TEST" >&2
TMPDIR=$MEMTMP setsid "$UML" "${ARGS[@]}" </dev/null >"$LOG" 2>&1 &
UPID=$!
[ -n "$PIDFILE" ] && echo "$UPID" >"$PIDFILE"
echo "run-uml: pid $UPID, console log $LOG" >&2

rc=0
rig_wait_exit run-uml "$UPID" "$TIMEOUT" || rc=$?
[ $rc = 124 ] || UPID="" # reaped: the exit trap has nothing to kill
exit $rc
