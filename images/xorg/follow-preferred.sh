#!/bin/sh
# The agent test guest's stand-in for a desktop environment's display handling: when the qxl
# DRM driver reports a hotplug (a client monitors config reached the QXL device: the connector's
# preferred mode is now the client's window size), set the first connected output to its
# preferred mode, as mutter does for connectors with hotplug_mode_update. spice-vdagent does not
# do this itself: with a QXL device that takes client monitors configs, spice-server hands them
# to the device, not to the agent. Runs in the Xorg root with DISPLAY set; logs to stdout.
set -u
apply() {
    # `xrandr` (not --current) makes the server re-probe the outputs
    xrandr 2>/dev/null | awk '
        / connected/ { if (out == "") { out = $1; mine = 1 } else mine = 0; next }
        /^[^ ]/ { mine = 0; next }
        mine && $1 ~ /^[0-9]+x[0-9]+/ {
            if ($0 ~ /\*/) cur = $1
            if ($0 ~ /\+/ && pref == "") pref = $1
        }
        END { print out, (cur == "" ? "none" : cur), pref }' | {
        read -r out cur pref
        if [ -n "$out" ] && [ -n "$pref" ] && [ "$pref" != "$cur" ]; then
            echo "follow-preferred: $out $cur -> $pref"
            xrandr --output "$out" --mode "$pref" || echo "follow-preferred: xrandr --mode $pref failed"
        fi
    }
}
apply
SYSTEMD_IGNORE_CHROOT=1 udevadm monitor --kernel --subsystem-match=drm | while read -r line; do
    case $line in *" change "*) apply ;; esac
done
