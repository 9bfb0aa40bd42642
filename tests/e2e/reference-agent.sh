#!/usr/bin/env bash
# End-to-end proof of the guest agents with the reference stack: QEMU 11's own spice-server with
# the agent on a virtio-serial port (run-guest.sh --reference --agent: virtserialport
# com.redhat.spice.0 on a spicevmc chardev), the bookworm Xorg guest (images/guest/init, test
# "agent") and remote-viewer under Xvfb on the host, run twice: once with Debian's spice-vdagent
# (spice-vdagentd + the session agent), once with our spice-agent (its .deb installed in the guest
# with dpkg -i; spice-agentd + spice-agent). The guest has the pc machine's PS/2 keyboard and
# mouse only, so client mouse mode comes from the agent. The same checks (tests/lib/agent.sh) run
# against the spice-bridge daemon in tests/e2e/daemon-agent.sh:
#   (a) clipboard host -> guest   unique text set with xclip on the host display is what xclip
#                                 reads from the guest's CLIPBOARD
#   (b) clipboard guest -> host   the other way
#   (c) window resize             xdotool resizes remote-viewer's window to 900x700: spice-gtk
#                                 sends a monitors config of its display area (890x644), and the
#                                 guest's X screen (xrandr) becomes exactly that size. (QEMU's qxl
#                                 takes the config: the guest's qxl driver makes it the connector's
#                                 preferred mode and reports a hotplug. With spice-vdagent the
#                                 guest's follow-preferred.sh sets that mode, as a desktop would;
#                                 our agent does it itself.) Then the client must show the guest
#                                 screen at that size.
#   (d) client mouse              the host pointer over two guest pixels of the client window:
#                                 the guest's X pointer (xdotool getmouselocation) is there (+-2 px)
#   (e) clipboard image           a PNG both ways, byte for byte
#   (f) file transfer             a file sent with spice-gtk's file_copy_async (what a drop on
#                                 remote-viewer's window calls) is in the guest, same SHA-256
#   (g) traversal                 FILE_XFER_START names "../x", "/tmp/x", "sub/x" refused, no
#                                 file written anywhere (tests/lib/spice_agent_raw.py)
#   (h) malformed messages        the agent keeps serving after them
#   (j) two monitors              a spice-gtk client enables two displays (800x600, 640x480 side
#                                 by side): the guest's X screen has both outputs there (xrandr);
#                                 the heads the client's display channel reports are printed
#   (i) port replug               QMP device_del + device_add of the virtserialport: the guest's
#                                 port goes away and comes back; a new remote-viewer gets client
#                                 mouse mode and the clipboard works both ways again
#
# Prints a table of what each agent passes. Exit status 0 only when our agent passed every check
# and spice-vdagent passed (a)-(d) (the rest is spice-vdagent's to fail: the table says what).
# AGENT_IMPLS="rs" (or "vdagent") runs one. A missing piece of the rig is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh # xvfb_start, kill_wait, bg_track, daemon_cleanup
. tests/lib/input.sh  # remote-viewer under Xvfb, xdotool
. tests/lib/agent.sh

agent_setup reference-agent cargo dpkg-deb mke2fs
IMPLS=${AGENT_IMPLS:-vdagent rs}
case " $IMPLS " in *" rs "*) agent_deb_disk ;; esac

hard_failed=0
tables=()
for AGENT_IMPL in $IMPLS; do
    export AGENT_IMPL
    AGENT_FAILED=0
    AGENT_RESULTS=()
    AGENT_TABLE_FILE=$RIG_OUT/results.$AGENT_IMPL
    : >"$AGENT_TABLE_FILE"
    tables+=("$AGENT_IMPL=$AGENT_TABLE_FILE")
    port=$(rig_free_port)
    rig_step "QEMU qxl-vga + spice-server, virtio-serial agent port, PS/2 only; bookworm Xorg + agent $AGENT_IMPL"
    qmp=$RIG_OUT/qmp.$AGENT_IMPL.sock
    agent_boot "$RIG_OUT/guest.$AGENT_IMPL.log" --reference --agent --spice-port "$port" --qmp "$qmp" || fail "$AGENT_WHY"
    agent_viewer_start "$RIG_OUT/x.$AGENT_IMPL" "$port" || fail "$AGENT_WHY"
    agent_checks
    base_failed=$AGENT_FAILED
    agent_image_checks
    # spice-gtk clients below replace remote-viewer on the server (one client at a time)
    input_viewer_stop
    agent_monitors_check "$port"
    agent_more_checks "$port"
    # (i) last: the port comes back, a new remote-viewer connects
    agent_check "(i) the agent port unplugged and plugged back (QMP): clipboard both ways again" agent_replug "$qmp" "$port"
    if [ "$AGENT_FAILED" != 0 ]; then
        KEEP=1
        agent_dump_logs
    fi
    rig_stop_guest
    rig_step "$AGENT_IMPL: ${#AGENT_RESULTS[@]} checks, $AGENT_FAILED failed (no retries)"
    if [ "$AGENT_IMPL" = rs ]; then
        hard_failed=$((hard_failed + AGENT_FAILED))
    else
        hard_failed=$((hard_failed + base_failed))
    fi
done
agent_table "Agents against QEMU 11's spice-server (remote-viewer / spice-gtk 0.42 clients):" "${tables[@]}"
rig_step "$(($(rig_now_ms) - t_start)) ms in all"
[ "$hard_failed" = 0 ] || rig_fail "reference agent: $hard_failed required check(s) failed (work dir $RIG_OUT kept)"
rig_step "PASS"
