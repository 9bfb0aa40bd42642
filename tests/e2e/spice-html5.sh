#!/usr/bin/env bash
# End-to-end tests of spice-bridge's WebSocket transport against the real spice-html5 client
# (Debian's spice-html5 in headless Debian chromium, driven by playwright-core from
# tests/browser, pinned in its package-lock.json). Fails (never skips) when a piece is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for p in /usr/bin/chromium /usr/share/spice-html5/spice_auto.html; do
    [ -e "$p" ] || { echo "FAIL: $p is missing (images/install-host-deps.sh)" >&2; exit 1; }
done
for bin in node npm; do
    command -v "$bin" >/dev/null || { echo "FAIL: $bin is not installed (images/install-host-deps.sh)" >&2; exit 1; }
done

echo "== playwright-core (npm ci in tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund)

echo "== spice-html5 in chromium: the scene pixel for pixel, key and click; wrong ticket; plain Spice on the same port"
cargo test -p spice-bridge --test spice_html5 -- --ignored --test-threads=1
echo "PASS: spice-html5 tests (screenshot: target/spice-html5/spice-html5.png)"
