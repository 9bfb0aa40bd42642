#!/usr/bin/env bash
# End-to-end proof of the agent rig with the reference stack: QEMU 11's own spice-server with the
# agent on a virtio-serial port (run-guest.sh --reference --agent: virtserialport
# com.redhat.spice.0 on a spicevmc chardev), Debian's spice-vdagent (spice-vdagentd + the session
# agent) in the bookworm Xorg guest (images/guest/init, test "agent"), and remote-viewer under
# Xvfb on the host. The guest has the pc machine's PS/2 keyboard and mouse only, so client mouse
# mode comes from the agent. The same checks (tests/lib/agent.sh) run against the spice-bridge
# daemon in tests/e2e/daemon-agent.sh:
#   (a) clipboard host -> guest   unique text set with xclip on the host display is what xclip
#                                 reads from the guest's CLIPBOARD
#   (b) clipboard guest -> host   the other way
#   (c) window resize             xdotool resizes remote-viewer's window to 900x700: spice-gtk
#                                 sends a monitors config of its display area (890x644), and the
#                                 guest's X screen (xrandr) becomes exactly that size. (QEMU's qxl
#                                 takes the config: the guest's qxl driver makes it the connector's
#                                 preferred mode and reports a hotplug; the guest's
#                                 follow-preferred.sh sets that mode, as a desktop would.) Then the
#                                 client must show the guest screen at that size.
#   (d) client mouse              the host pointer over two guest pixels of the client window:
#                                 the guest's X pointer (xdotool getmouselocation) is there (+-2 px)
#
# Each check prints PASS or FAIL; exit status 0 only when all passed. A missing piece of the rig
# is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rig.sh
. tests/lib/daemon.sh # xvfb_start, kill_wait, bg_track, daemon_cleanup
. tests/lib/input.sh  # remote-viewer under Xvfb, xdotool
. tests/lib/agent.sh

agent_setup reference-agent

port=$(rig_free_port)
rig_step "QEMU qxl-vga + spice-server, virtio-serial agent port, PS/2 only; bookworm Xorg + spice-vdagent"
agent_boot "$RIG_OUT/guest.log" --reference --agent --spice-port "$port" || fail "$AGENT_WHY"
agent_viewer_start "$RIG_OUT/x" "$port" || fail "$AGENT_WHY"
agent_checks
if [ "$AGENT_FAILED" != 0 ]; then
    KEEP=1
    agent_dump_logs
fi
input_viewer_stop
rig_stop_guest
rig_step "${#AGENT_RESULTS[@]} checks, $AGENT_FAILED failed, $(($(rig_now_ms) - t_start)) ms (no retries)"
[ "$AGENT_FAILED" = 0 ] || rig_fail "reference agent: $AGENT_FAILED check(s) failed (work dir $RIG_OUT kept)"
rig_step "PASS"
