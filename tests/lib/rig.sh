# Helpers for the end-to-end tests that boot real guests (source it). See images/README.md.
#
#   rig_free_port                      a free TCP port on 127.0.0.1
#   rig_start_guest LOG ARGS...        images/run-guest.sh --log LOG ARGS... in the background;
#                                      sets RIG_GUEST_PID; its stderr goes to LOG.run
#   rig_wait_marker LOG REGEX SECS     wait until a line of LOG matches REGEX (grep -E); fails when
#                                      SECS pass, or the guest ends without it
#   rig_stop_guest                     stop the guest started last (QEMU is killed by run-guest.sh)
#   rig_screenshot PORT OUT.ppm [SECS] spicy-screenshot from 127.0.0.1:PORT into OUT.ppm
#   rig_fail MSG                       print "FAIL: MSG" with the guest log's tail, and exit 1
#   rig_now_ms                         milliseconds since the epoch

RIG_TESTS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG_REPO=$(cd "$RIG_TESTS_LIB/../.." && pwd)
RIG_GUEST_PID=""
RIG_GUEST_LOG=""

rig_now_ms() { echo $(($(date +%s%N) / 1000000)); }

rig_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rig_start_guest() {
    RIG_GUEST_LOG=$1
    shift
    : >"$RIG_GUEST_LOG"
    bash "$RIG_REPO/images/run-guest.sh" --log "$RIG_GUEST_LOG" "$@" 2>"$RIG_GUEST_LOG.run" &
    RIG_GUEST_PID=$!
}

rig_wait_marker() {
    local log=$1 re=$2 secs=$3 end
    end=$(($(date +%s) + secs))
    while [ "$(date +%s)" -lt "$end" ]; do
        grep -qE "$re" "$log" 2>/dev/null && return 0
        if [ -n "$RIG_GUEST_PID" ] && ! kill -0 "$RIG_GUEST_PID" 2>/dev/null; then
            grep -qE "$re" "$log" 2>/dev/null && return 0
            return 1
        fi
        sleep 0.2
    done
    return 1
}

rig_stop_guest() {
    [ -n "$RIG_GUEST_PID" ] || return 0
    if kill -0 "$RIG_GUEST_PID" 2>/dev/null; then
        kill "$RIG_GUEST_PID" 2>/dev/null || true
    fi
    wait "$RIG_GUEST_PID" 2>/dev/null || true
    RIG_GUEST_PID=""
}

rig_screenshot() {
    local port=$1 out=$2 secs=${3:-30}
    rm -f "$out"
    timeout "$secs" spicy-screenshot -h 127.0.0.1 -p "$port" -o "$out" >"$out.log" 2>&1 && [ -s "$out" ]
}

rig_fail() {
    echo "FAIL: $*" >&2
    if [ -n "$RIG_GUEST_LOG" ] && [ -f "$RIG_GUEST_LOG" ]; then
        echo "--- guest serial log (last 30 lines): $RIG_GUEST_LOG" >&2
        tail -30 "$RIG_GUEST_LOG" >&2
        echo "--- run-guest.sh / QEMU stderr" >&2
        cat "$RIG_GUEST_LOG.run" "$RIG_GUEST_LOG.qemu" 2>/dev/null | tail -15 >&2
    fi
    exit 1
}
