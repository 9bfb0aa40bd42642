#!/usr/bin/env bash
# README command 2: install everything the tests need on a fresh Debian bookworm machine (root)
# and run every test, the end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n=== %s\n' "$*" >&2; }

log "installing Debian packages"
bash images/install-host-deps.sh

log "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (unit, driver-model and in-process client tests)"
cargo test --workspace 2>&1 | tee target/cargo-test.log

# End-to-end suites: each script exits non-zero when a piece of the rig is missing.
for t in tests/e2e/*.sh; do
    [ -e "$t" ] || continue
    log "e2e: $t"
    bash "$t"
done
log "all tests passed"
