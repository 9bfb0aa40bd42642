# shellcheck shell=bash
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
#   rig_picture_test LABEL PORT TEST PICTURE [RUN-GUEST ARGS...]
#                                      boot a guest running TEST (fb | kms), check the qxl bind,
#                                      wait for DRAWN, screenshot the Spice server at PORT and
#                                      compare with PICTURE pixel for pixel (3 tries); stops the
#                                      guest; rig_fail on any failure
#   rig_cursor_test LABEL PORT [RUN-GUEST ARGS...]
#                                      boot the "cursor" test, watch the cursor channel with
#                                      spice-gtk (spice_cursor_probe.py): shape and 3 moves
#   rig_modes_test LABEL PORT WxH [RUN-GUEST ARGS...]
#                                      boot the "modes" test (with an agent port: reference runs
#                                      pass --agent), request WxH from a spice-gtk client
#                                      (spice_monitor_request.py) and expect the guest connector's
#                                      preferred mode to become WxH
#   rig_redraw_bench LABEL PORT FRAMES [RUN-GUEST ARGS...]
#                                      boot the "redraw" test with a spice-gtk client counting
#                                      frames (spice_frame_probe.py); prints one line:
#                                      "LABEL: guest <DONE line> | client <FRAMES line>"
# RIG_OUT (a directory) receives logs and screenshots; rig_step prints progress.

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

# rig_screenshot_tls TLS-PORT CA-FILE OUT [SECS]: the same over the TLS port only, trusting CA-FILE
# (spicy-screenshot has no --spice-ca-file; spice-gtk then uses OpenSSL's default trust store,
# which SSL_CERT_FILE replaces)
rig_screenshot_tls() {
    local port=$1 ca=$2 out=$3 secs=${4:-30}
    rm -f "$out"
    SSL_CERT_FILE=$ca timeout "$secs" spicy-screenshot -h 127.0.0.1 -s "$port" -o "$out" >"$out.log" 2>&1 && [ -s "$out" ]
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

RIG_OUT=${RIG_OUT:-/tmp}
rig_step() { printf '[%s] %s\n' "${RIG_NAME:-rig}" "$*" >&2; }

# Wait for the guest's qxl bind check and the driver's init line.
rig_expect_bind() {
    local label=$1 log=$2 t0=$3
    rig_wait_marker "$log" 'QXL-TEST: bind (PASS|FAIL)' 120 || rig_fail "$label: guest did not reach the qxl bind check"
    grep -q 'QXL-TEST: bind PASS' "$log" || rig_fail "$label: qxl did not bind"
    grep -qE '\[drm\] Initialized qxl ' "$log" || rig_fail "$label: no '[drm] Initialized qxl' line in the guest log"
    rig_step "$label: qxl bound (card0, fb0) $(($(rig_now_ms) - t0)) ms after start, $(grep -o 'accel=[a-z]*' "$log.run" | head -1)"
}

rig_picture_test() {
    local label=$1 port=$2 test=$3 pic=$4 log t0 geom shot i ok=0
    shift 4
    log="$RIG_OUT/$label.log"
    t0=$(rig_now_ms)
    rig_start_guest "$log" --test "$test" --timeout 300 "$@"
    rig_expect_bind "$label" "$log" "$t0"
    rig_wait_marker "$log" "QXL-TEST: $test (DRAWN|FAIL)" 120 || rig_fail "$label: guest did not draw"
    grep -q "QXL-TEST: $test DRAWN" "$log" || rig_fail "$label: guest test failed"
    geom=$(sed -n "s/^QXL-TEST: $test DRAWN picture=[a-z0-9]* \([0-9]*x[0-9]*\).*/\1/p" "$log" | head -1)
    [ -n "$geom" ] || rig_fail "$label: no geometry in the DRAWN line"
    rig_step "$label: guest drew picture '$pic' ($geom) $(($(rig_now_ms) - t0)) ms after start"
    # spicy-screenshot saves the first draw after the primary surface is created; a client that
    # connects after the guest drew gets the whole current surface. Retry in case a flush was late.
    for i in 1 2 3; do
        shot="$RIG_OUT/$label-$i.ppm"
        if ! rig_screenshot "$port" "$shot" 30; then
            rig_step "$label: screenshot attempt $i failed: $(tail -1 "$shot.log" 2>/dev/null)"
            sleep 1
            continue
        fi
        if python3 "$RIG_TESTS_LIB/qxlpic.py" compare "$pic" "$shot" --size "$geom" \
            --expected-out "$RIG_OUT/$label-expected.ppm" >"$shot.cmp"; then
            ok=1
            break
        fi
        rig_step "$label: attempt $i: $(cat "$shot.cmp")"
        sleep 1
    done
    [ $ok = 1 ] || rig_fail "$label: the client's picture differs from the guest's (see $RIG_OUT)"
    rig_step "$label: $(cat "$shot.cmp") ($(($(rig_now_ms) - t0)) ms after start)"
    rig_stop_guest
}

rig_cursor_test() {
    local label=$1 port=$2 log t0 out
    shift 2
    log="$RIG_OUT/$label.log"
    out="$RIG_OUT/$label.cursor"
    t0=$(rig_now_ms)
    rig_start_guest "$log" --test cursor --timeout 300 "$@"
    rig_expect_bind "$label" "$log" "$t0"
    rig_wait_marker "$log" "QXL-TEST: cursor (SHOWN|FAIL)" 120 || rig_fail "$label: guest did not show its picture"
    # the guest waits 2 s after SHOWN before it sets the cursor: connect now
    timeout 60 /usr/bin/python3 "$RIG_TESTS_LIB/spice_cursor_probe.py" --port "$port" --timeout 40 \
        --expect-moves 3 >"$out" 2>&1 || { cat "$out" >&2; rig_fail "$label: the client did not see the guest's cursor"; }
    grep -q 'QXL-TEST: cursor PASS' "$log" || rig_fail "$label: guest cursor test failed"
    grep -q '^OK .*last=(300, 200)' "$out" || { cat "$out" >&2; rig_fail "$label: the client's last cursor position is not 300,200"; }
    rig_step "$label: client saw $(grep -c CURSOR-SET "$out") cursor shape(s) matching the guest's and $(grep -c CURSOR-MOVE "$out") moves, last at 300,200 ($(($(rig_now_ms) - t0)) ms after start)"
    rig_stop_guest
}

rig_modes_test() {
    local label=$1 port=$2 size=$3 log t0 out
    shift 3
    log="$RIG_OUT/$label.log"
    out="$RIG_OUT/$label.client"
    t0=$(rig_now_ms)
    rig_start_guest "$log" --test modes --append "spice_watch=40" --timeout 300 "$@"
    rig_expect_bind "$label" "$log" "$t0"
    rig_wait_marker "$log" "QXL-TEST: modes (WATCH|FAIL)" 120 || rig_fail "$label: guest did not list its modes"
    grep -q "QXL-TEST: modes WATCH" "$log" || rig_fail "$label: guest modes test failed"
    timeout 60 /usr/bin/python3 "$RIG_TESTS_LIB/spice_monitor_request.py" --port "$port" --size "$size" \
        --stay 3 >"$out" 2>&1 || { cat "$out" >&2; rig_fail "$label: the client could not send a monitor config"; }
    rig_wait_marker "$log" "QXL-TEST: modes PREFERRED-CHANGED connector=[0-9]+ $size " 30 ||
        rig_fail "$label: the guest connector's preferred mode did not become $size"
    rig_step "$label: client asked for $size, guest: $(grep -o 'PREFERRED-CHANGED.*' "$log" | head -1) ($(($(rig_now_ms) - t0)) ms after start)"
    rig_stop_guest
}

rig_redraw_bench() {
    local label=$1 port=$2 frames=$3 log t0 out
    shift 3
    log="$RIG_OUT/$label.log"
    out="$RIG_OUT/$label.frames"
    t0=$(rig_now_ms)
    # the guest waits 3 s after its first full-screen picture so that the client is connected
    rig_start_guest "$log" --test redraw --append "spice_frames=$frames spice_hold=5" --timeout 600 "$@"
    rig_expect_bind "$label" "$log" "$t0"
    timeout 300 /usr/bin/python3 "$RIG_TESTS_LIB/spice_frame_probe.py" --port "$port" --seconds 240 \
        --idle-stop 4 >"$out" 2>&1 || { cat "$out" >&2; rig_fail "$label: the client counted no frames"; }
    rig_wait_marker "$log" "QXL-TEST: redraw (DONE|FAIL)" 120 || rig_fail "$label: the redraw loop did not finish"
    echo "$label: guest $(grep -o 'DONE.*' "$log" | head -1) | client $(grep -o 'FRAMES.*' "$out")"
    rig_stop_guest
}
