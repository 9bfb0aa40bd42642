#!/bin/bash
# Installs the spice-agent .deb into Debian bookworm and trixie roots and checks it:
#   agent/packaging/test-deb.sh [path/to/spice-agent_*.deb]   (default: runs build-deb.sh)
# Needs root (chroot, mount). Per root: dpkg -i, files in place (also through the /lib alias),
# units enabled, both binaries' --help exit 0, the units verified by systemd-analyze (the host's,
# with --root, and the root's own in the chroot), the udev rule by `udevadm verify` where the
# root's udev has it, then dpkg -r (only the conffile stays) and dpkg -P (nothing stays).
# Prints PASS/FAIL per root; exits non-zero if any root fails.
#
# Roots: mmdebstrap --variant=minbase plus systemd and udev (so the maintainer scripts meet
# systemctl and udevadm with no systemd running, as in an image build), cached as tarballs under
# $SPICE_RS_CACHE (default ~/.cache/spice-rs). The mirror is the machine's own (rig_mirror).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../images/lib.sh
source "$REPO/images/lib.sh"

rig_need_root
for tool in mmdebstrap dpkg-deb tar chroot mount umount systemd-analyze mktemp flock; do
    command -v "$tool" >/dev/null || rig_die "$tool is missing (apt-get install mmdebstrap dpkg systemd)"
done

SUITES=${SPICE_AGENT_TEST_SUITES:-"bookworm trixie"}
ROOT_VERSION=1 # bump when the root's package set changes
ROOT_PKGS=systemd,udev

DEB=${1:-}
if [ -z "$DEB" ]; then
    DEB=$("$HERE/build-deb.sh" | tail -n 1)
fi
[ -f "$DEB" ] || rig_die "no .deb at '$DEB'"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
rig_log "testing $DEB"

root_tar() {
    local suite=$1 tar="$SPICE_RS_CACHE/deb-test-root-$1-v$ROOT_VERSION.tar"
    if [ ! -s "$tar" ]; then
        rig_lock "deb-test-root-$suite"
        if [ ! -s "$tar" ]; then
            local mirror
            mirror=$(rig_mirror)
            rig_log "creating the $suite root (mmdebstrap minbase + $ROOT_PKGS)"
            rm -f "$tar.tmp.tar"
            mmdebstrap --variant=minbase --mode=root --quiet --include="$ROOT_PKGS" \
                "$suite" "$tar.tmp.tar" "deb $mirror $suite main" >&2
            mv "$tar.tmp.tar" "$tar"
        fi
    fi
    printf '%s\n' "$tar"
}

# Files the package puts in place, as /usr paths; each is also checked through the /lib alias.
FILES=(
    /usr/sbin/spice-agentd
    /usr/bin/spice-agent
    /usr/lib/systemd/system/spice-agentd.service
    /usr/lib/systemd/user/spice-agent.service
    /usr/lib/udev/rules.d/70-spice-agent.rules
    /etc/xdg/autostart/spice-agent.desktop
    /usr/share/doc/spice-agent/copyright
)
LINKS=(
    /etc/systemd/system/multi-user.target.wants/spice-agentd.service
    /etc/systemd/user/graphical-session.target.wants/spice-agent.service
)

WORK=""
cleanup() {
    if [ -n "$WORK" ]; then
        umount "$WORK/root/proc" 2>/dev/null || true
        rm -rf "$WORK"
    fi
    WORK=""
}
trap cleanup EXIT

# test_root SUITE: runs every check, printing "  ok ..." / "  FAIL ..."; returns the failures.
test_root() {
    local suite=$1 tar root fails=0 f out
    # (set -e does not apply here: the caller tests this function's status.)
    tar=$(root_tar "$suite") || { echo "  FAIL creating the $suite root"; return 1; }
    WORK=$(mktemp -d /tmp/agent-debtest.XXXXXX) || return 1
    root="$WORK/root"
    mkdir "$root" || return 1
    tar -xf "$tar" -C "$root" || { echo "  FAIL extracting $tar"; return 1; }
    mount -t proc proc "$root/proc" || { echo "  FAIL mounting /proc"; return 1; }
    cp "$DEB" "$root/tmp/spice-agent.deb" || return 1

    check() { # check DESCRIPTION COMMAND...
        local what=$1
        shift
        if out=$("$@" 2>&1); then
            echo "  ok   $what"
        else
            echo "  FAIL $what"
            # shellcheck disable=SC2001
            sed 's/^/       | /' <<<"$out" | tail -n 20
            fails=$((fails + 1))
        fi
    }
    # shellcheck disable=SC2317 # called through check
    exists() { [ -e "$root$1" ] || [ -L "$root$1" ]; }
    # shellcheck disable=SC2317
    absent() { ! exists "$1"; }
    # shellcheck disable=SC2317
    run_help() { chroot "$root" "$1" --help; }
    # shellcheck disable=SC2317
    quiet() { # systemd-analyze verify exits 0 on unknown keys; any message counts as a failure
        local o
        o=$("$@" 2>&1) || { printf '%s\n' "$o"; return 1; }
        [ -z "$o" ] || { printf '%s\n' "$o"; return 1; }
    }
    # shellcheck disable=SC2317
    about_ours() { # an older host systemd also complains about the root's newer units: only
        # messages naming our units count
        local o rc=0
        o=$("$@" 2>&1) || rc=$?
        if grep -Eq 'spice-agentd?\.service|70-spice-agent' <<<"$o"; then
            grep -E 'spice-agentd?\.service|70-spice-agent' <<<"$o"
            return 1
        fi
        [ "$rc" = 0 ] || echo "(exit $rc, from other units only)"
    }
    alias_path() { # /usr/lib/x -> /lib/x ; others unchanged
        case $1 in /usr/lib/*) printf '%s\n' "${1#/usr}" ;; *) printf '%s\n' "$1" ;; esac
    }

    check "dpkg -i" chroot "$root" dpkg -i /tmp/spice-agent.deb
    check "dpkg -s: installed" bash -c "chroot '$root' dpkg -s spice-agent | grep -qx 'Status: install ok installed'"
    for f in "${FILES[@]}"; do
        check "file $f" exists "$f"
        [ "$(alias_path "$f")" = "$f" ] || check "file $(alias_path "$f") (alias)" exists "$(alias_path "$f")"
    done
    for f in "${LINKS[@]}"; do
        check "enabled: $f" exists "$f"
    done
    check "spice-agentd --help" run_help /usr/sbin/spice-agentd
    check "spice-agent --help" run_help /usr/bin/spice-agent
    # The host's systemd-analyze takes --root only for system units ("--user --root" is refused),
    # so the user unit is verified by the root's own systemd-analyze, in the chroot.
    check "host systemd-analyze verify (system unit)" \
        about_ours systemd-analyze verify --root="$root" /usr/lib/systemd/system/spice-agentd.service
    check "$suite systemd-analyze verify (system unit)" \
        quiet chroot "$root" systemd-analyze verify /usr/lib/systemd/system/spice-agentd.service
    mkdir -p "$root/tmp/xdg-runtime"
    check "$suite systemd-analyze --user verify (user unit)" \
        quiet chroot "$root" env XDG_RUNTIME_DIR=/tmp/xdg-runtime systemd-analyze --user verify /usr/lib/systemd/user/spice-agent.service
    if chroot "$root" udevadm verify --help >/dev/null 2>&1; then
        check "$suite udevadm verify" chroot "$root" udevadm verify /usr/lib/udev/rules.d/70-spice-agent.rules
    else
        echo "  skip $suite udevadm verify (this udevadm has no verify)"
    fi

    check "dpkg -r" chroot "$root" dpkg -r spice-agent
    for f in "${FILES[@]}" "${LINKS[@]}"; do
        [ "$f" = /etc/xdg/autostart/spice-agent.desktop ] && continue
        check "removed: $f" absent "$f"
    done
    check "conffile kept after -r" exists /etc/xdg/autostart/spice-agent.desktop
    check "dpkg -P" chroot "$root" dpkg -P spice-agent
    check "purged: conffile" absent /etc/xdg/autostart/spice-agent.desktop
    check "purged: no dpkg record" bash -c "! chroot '$root' dpkg -s spice-agent >/dev/null 2>&1"
    check "no stray files" bash -c "! find '$root/usr' '$root/etc' '$root/run' -name '*spice-agent*' | grep ."

    cleanup
    return "$fails"
}

failed=0
for suite in $SUITES; do
    echo "== $suite"
    if test_root "$suite"; then
        echo "PASS $suite"
    else
        echo "FAIL $suite ($? checks failed)"
        failed=1
    fi
done
exit "$failed"
