#!/usr/bin/env bash
# README command 2: install everything the tests need on a fresh Debian bookworm machine (root)
# and run every test, the end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

START=$SECONDS
log() { printf '\n=== [%d s] %s\n' "$((SECONDS - START))" "$*" >&2; }

log "installing Debian packages"
bash images/install-host-deps.sh

log "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (unit, driver-model and in-process client tests)"
# Into a file, not a pipe: a process a failed test leaves behind would keep a pipe open and hang
# the reader. The whole log is printed afterwards; a hung test ends at the timeout.
mkdir -p target
status=0
timeout --kill-after=30 40m cargo test --workspace >target/cargo-test.log 2>&1 || status=$?
cat target/cargo-test.log
[ "$status" -eq 0 ] || { echo "cargo test failed (status $status)" >&2; exit 1; }

# End-to-end suites: each script exits non-zero when a piece of the rig is missing.
for t in tests/e2e/*.sh; do
    [ -e "$t" ] || continue
    log "e2e: $t"
    timeout --kill-after=60 30m bash "$t"
done
log "all tests passed"
