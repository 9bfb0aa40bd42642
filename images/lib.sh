# shellcheck shell=bash
# Shared helpers for the rig scripts in images/ and tests/. Source it; do not run it.
#
# Cache: everything built lives under $SPICE_RS_CACHE (default ~/.cache/spice-rs), outside the
# work tree, so fresh clones (CI) on the same machine reuse it. Delete the folder to rebuild.

RIG_IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export RIG_REPO_DIR
RIG_REPO_DIR=$(cd "$RIG_IMAGES_DIR/.." && pwd)
SPICE_RS_CACHE=${SPICE_RS_CACHE:-${HOME:-/root}/.cache/spice-rs}
export SPICE_RS_CACHE

rig_log() { printf '[rig %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
rig_die() {
    printf '[rig] ERROR: %s\n' "$*" >&2
    exit 1
}

rig_need_root() {
    [ "$(id -u)" = 0 ] || rig_die "this step needs root (chroot, mmdebstrap, bind mounts)"
}

# The Debian mirror this machine already uses (never hard-coded in the repo): the first non-security
# URI of /etc/apt/sources.list.d/debian.sources, or the first `deb` line of /etc/apt/sources.list.
rig_mirror() {
    local m=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(sed -n '/^URIs:/{s/^URIs:[[:space:]]*//;/security/!{p;q}}' /etc/apt/sources.list.d/debian.sources |
            awk '{print $1}')
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || rig_die "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    printf '%s\n' "${m%/}"
}

# Path of the trixie root with QEMU >= 10.1 (built by build-qemu-root.sh).
RIG_QEMU_ROOT_VERSION=1
rig_qemu_root() { printf '%s\n' "$SPICE_RS_CACHE/qemu-root-trixie-v$RIG_QEMU_ROOT_VERSION"; }

# A guest's build output dir: kernel, initramfs, metadata.
rig_guest_dir() { printf '%s\n' "$SPICE_RS_CACHE/guest-$1"; }

# Lock a cache step so that two concurrent runs do not build the same thing twice.
rig_lock() {
    mkdir -p "$SPICE_RS_CACHE"
    exec {RIG_LOCK_FD}>"$SPICE_RS_CACHE/.lock-$1"
    flock "$RIG_LOCK_FD"
}

# rig_wait_exit NAME PID SECS: waits until PID (a child of this shell) exits and returns its
# status, or returns 124 (logged as NAME) once SECS have passed with PID still running.
rig_wait_exit() {
    local deadline=$(($(date +%s) + $3))
    while kill -0 "$2" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "$1: timeout after ${3}s" >&2
            return 124
        fi
        sleep 0.3
    done
    wait "$2"
}
