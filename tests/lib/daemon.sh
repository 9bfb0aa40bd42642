# shellcheck shell=bash
# Helpers for the tests that run the spice-bridge daemon against a real guest (source it after
# tests/lib/rig.sh). Everything started here is recorded so daemon_cleanup can stop it.
#
#   daemon_build [--release]           cargo build the daemon; sets DAEMON_BIN
#   daemon_start DIR [FLAGS...]        start it: vfio-user socket DIR/qxl.sock, control socket
#                                      DIR/ctl.sock, Spice on a free 127.0.0.1 port, log DIR/daemon.log;
#                                      sets DAEMON_PID DAEMON_PORT DAEMON_SOCK DAEMON_CTL DAEMON_LOG.
#                                      DAEMON_NO_QXL=1: no --qxl-socket and no control socket (it
#                                      needs the QXL device): DAEMON_SOCK and DAEMON_CTL empty, ready
#                                      when the daemon logs its spice:// address; FLAGS must give
#                                      another device socket, e.g. --vdi-socket
#   daemon_alive                       the daemon process still runs
#   daemon_stop                        SIGTERM, wait (SIGKILL after 5 s); checks the socket is gone
#   daemon_ctl LINE                    one control-socket command; prints the reply line
#   daemon_wait_log REGEX SECS         wait for a daemon log line
#   daemon_wait_log_count REGEX N SECS wait until N daemon log lines match REGEX
#   xvfb_start DIR W H [ARGS...]       an Xvfb with its frame buffer file under DIR; sets XVFB_PID,
#                                      XVFB_DISPLAY, XVFB_FB (the XWD file, cursor sprite included)
#   xorg_expected DIR OUT.ppm [SCRIPT] the xorg test's scene drawn on Xvfb (the expected picture)
#   xvfb_settle DIR                    wait until the Xvfb's picture stops changing
#   bg_track PID                       remember a background process for daemon_cleanup
#   daemon_cleanup                     stop everything started through these helpers
#   wait_count LOG REGEX N SECS        wait until N lines of LOG match REGEX (guest must stay alive)

DAEMON_PID="" DAEMON_PORT="" DAEMON_SOCK="" DAEMON_CTL="" DAEMON_LOG="" DAEMON_BIN=""
XVFB_PID="" XVFB_DISPLAY="" XVFB_FB=""
DAEMON_BG=()

daemon_build() {
    local profile=debug args=()
    if [ "${1:-}" = --release ]; then profile=release args=(--release); fi
    local tdir=${CARGO_TARGET_DIR:-$RIG_REPO/target}
    (cd "$RIG_REPO" && CARGO_TARGET_DIR=$tdir cargo build -q -p spice-bridge --bin spice-bridge "${args[@]}") ||
        return 1
    DAEMON_BIN=$tdir/$profile/spice-bridge
    [ -x "$DAEMON_BIN" ]
}

daemon_start() {
    local dir=$1
    shift
    DAEMON_SOCK=$dir/qxl.sock DAEMON_CTL=$dir/ctl.sock DAEMON_LOG=$dir/daemon.log
    local qxl=(--qxl-socket "$DAEMON_SOCK" --control-socket "$DAEMON_CTL")
    [ "${DAEMON_NO_QXL:-0}" = 1 ] && DAEMON_SOCK="" DAEMON_CTL="" qxl=()
    DAEMON_PORT=$(rig_free_port)
    : >>"$DAEMON_LOG"
    echo "--- daemon start $(date -u +%T) port $DAEMON_PORT flags: ${qxl[*]} $*" >>"$DAEMON_LOG"
    # DAEMON_X509=DIR: a TLS port too (DAEMON_TLS_PORT), certificates from DIR (QEMU's x509-dir)
    local tls=()
    if [ -n "${DAEMON_X509:-}" ]; then
        DAEMON_TLS_PORT=$(rig_free_port)
        tls=(--tls-addr "127.0.0.1:$DAEMON_TLS_PORT" --x509-dir "$DAEMON_X509")
    fi
    RUST_LOG=${DAEMON_RUST_LOG:-info} NO_COLOR=1 "$DAEMON_BIN" "${qxl[@]}" --spice-addr "127.0.0.1:$DAEMON_PORT" "${tls[@]}" "$@" >>"$DAEMON_LOG" 2>&1 &
    DAEMON_PID=$!
    local i
    for i in $(seq 100); do
        if [ -n "$DAEMON_SOCK" ]; then
            [ -S "$DAEMON_SOCK" ] && [ -S "$DAEMON_CTL" ] && return 0
        else
            grep -q "spice://127.0.0.1:$DAEMON_PORT" "$DAEMON_LOG" && return 0
        fi
        kill -0 "$DAEMON_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

daemon_alive() { [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; }

daemon_stop() {
    [ -n "$DAEMON_PID" ] || return 0
    local i rc=0
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        echo "daemon did not exit 5 s after SIGTERM" >>"$DAEMON_LOG"
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        rc=1
    fi
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    [ -z "$DAEMON_SOCK" ] || [ ! -e "$DAEMON_SOCK" ] || { echo "socket $DAEMON_SOCK left behind" >>"$DAEMON_LOG"; rc=1; }
    return $rc
}

daemon_ctl() {
    python3 - "$DAEMON_CTL" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode(errors="replace").strip())
EOF
}

daemon_wait_log() {
    local re=$1 secs=$2 end
    end=$(($(date +%s) + secs))
    while [ "$(date +%s)" -lt "$end" ]; do
        grep -qE "$re" "$DAEMON_LOG" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

xvfb_start() {
    local dir=$1 w=$2 h=$3 n i
    shift 3
    mkdir -p "$dir"
    rm -f "$dir/displayfd"
    Xvfb -displayfd 3 -screen 0 "${w}x${h}x24" -fbdir "$dir" -nolisten tcp "$@" 3>"$dir/displayfd" \
        >"$dir/xvfb.log" 2>&1 &
    XVFB_PID=$!
    for i in $(seq 100); do
        n=$(head -1 "$dir/displayfd" 2>/dev/null)
        [ -n "$n" ] && break
        sleep 0.1
    done
    [ -n "$n" ] || return 1
    export XVFB_DISPLAY=:$n XVFB_FB=$dir/Xvfb_screen0
    for i in $(seq 50); do [ -s "$XVFB_FB" ] && return 0; sleep 0.1; done
    return 1
}

# daemon_wait_log_count REGEX N SECS: wait until N lines of the daemon log match REGEX.
daemon_wait_log_count() {
    local end=$(($(date +%s) + $3))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(grep -cE "$1" "$DAEMON_LOG" 2>/dev/null)" -ge "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

# xorg_expected DIR OUT.ppm [SCRIPT [ARG...]]: the xorg test's scene (images/xorg/draw.sh, or
# SCRIPT of images/xorg/ with its ARGs) drawn by the host's X clients on an Xvfb in DIR, at the
# guest Xorg's settings (96 dpi, no cursor, no server reset).
xorg_expected() {
    local dir=$1 out=$2 rc=0 script=${3:-draw.sh}
    shift 2
    shift $(($# > 0 ? 1 : 0))
    mkdir -p "$dir"
    python3 "$RIG_REPO/images/xorg/make-pattern.py" "$dir/pattern.xwd" || return 1
    xvfb_start "$dir" 1024 768 -noreset -nocursor -dpi 96 || return 1
    DISPLAY=$XVFB_DISPLAY DIR=$dir TMPDIR=$dir timeout 600 sh "$RIG_REPO/images/xorg/$script" "$@" \
        >"$dir/draw.out" 2>"$dir/draw.log" || rc=1
    [ $rc = 0 ] && xvfb_settle "$dir" && python3 "$RIG_REPO/tests/lib/daemon_xwd.py" ppm "$XVFB_FB" "$out" || rc=1
    kill_wait "$XVFB_PID"
    XVFB_PID=""
    return $rc
}

# xvfb_settle DIR: wait until the Xvfb's picture has not changed for 3 s (at most 30 s). An X
# client may still draw after draw.sh returns: an xterm draws its cursor after its output, and on
# a loaded host that came seconds late (CI: the xft xterm's cursor missing from the expected
# picture while the guest showed it). Says on stderr when the picture changed after draw.sh.
xvfb_settle() {
    local last="" sum same=0 changes=-1 i
    for i in $(seq 60); do
        sum=$(md5sum <"$XVFB_FB")
        if [ "$sum" = "$last" ]; then
            same=$((same + 1))
            if [ $same -ge 6 ]; then
                [ $changes -gt 0 ] && echo "xvfb_settle: Xvfb's picture changed $changes time(s) after draw.sh ended; used the one stable for 3 s" >&2
                return 0
            fi
        else
            same=0 last=$sum changes=$((changes + 1))
        fi
        sleep 0.5
    done
    echo "xvfb_settle: Xvfb's picture in $1 still changed after 30 s" >&2
    return 1
}

bg_track() { DAEMON_BG+=("$1"); }

# kill_wait PID: TERM, then KILL after 3 s.
kill_wait() {
    local pid=$1
    # (a reaped child's status is not this function's: errexit callers must not trip on it)
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

daemon_cleanup() {
    local p
    rig_stop_guest
    for p in "${DAEMON_BG[@]}"; do kill_wait "$p"; done
    DAEMON_BG=()
    [ -z "$XVFB_PID" ] || kill_wait "$XVFB_PID"
    XVFB_PID=""
    daemon_stop || true
}

wait_count() {
    local log=$1 re=$2 n=$3 secs=$4 end
    end=$(($(date +%s) + secs))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(grep -cE "$re" "$log" 2>/dev/null)" -ge "$n" ] && return 0
        if [ -n "$RIG_GUEST_PID" ] && ! kill -0 "$RIG_GUEST_PID" 2>/dev/null; then
            [ "$(grep -cE "$re" "$log" 2>/dev/null)" -ge "$n" ]
            return
        fi
        sleep 0.2
    done
    return 1
}
