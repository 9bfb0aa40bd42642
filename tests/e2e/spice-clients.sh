#!/usr/bin/env bash
# End-to-end tests of spice-bridge against the real spice-gtk 0.42 clients.
# Fails (never skips) when a client binary is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for bin in spicy-screenshot remote-viewer Xvfb xdotool; do
    command -v "$bin" >/dev/null || { echo "FAIL: $bin is not installed (images/install-host-deps.sh)" >&2; exit 1; }
done

echo "== spice-bridge real-client tests (spicy-screenshot, remote-viewer under Xvfb)"
cargo test -p spice-bridge --test real_clients -- --ignored --test-threads=1

echo "== wrong password: spicy-screenshot fails and the server log says why"
cargo build -q -p spice-bridge --example spice-test-server
tmp=$(mktemp -d)
trap 'kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$((20000 + RANDOM % 20000))
RUST_LOG=info NO_COLOR=1 "$CARGO_TARGET_DIR/debug/examples/spice-test-server" "$port" odd 'Pa55word' >"$tmp/server.log" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$tmp/server.log" && break; sleep 0.1; done
if timeout 30 spicy-screenshot -h 127.0.0.1 -p "$port" -w wrong -o "$tmp/wrong.ppm" >/dev/null 2>&1; then
    echo "FAIL: spicy-screenshot succeeded with a wrong password" >&2; exit 1
fi
for _ in $(seq 50); do grep -q "link refused: permission denied: wrong password" "$tmp/server.log" && break; sleep 0.1; done
grep -q "link refused: permission denied: wrong password" "$tmp/server.log" || {
    echo "FAIL: server did not log the refused password" >&2; cat "$tmp/server.log" >&2; exit 1; }
timeout 30 spicy-screenshot -h 127.0.0.1 -p "$port" -w 'Pa55word' -o "$tmp/right.ppm" >/dev/null 2>&1 || {
    echo "FAIL: spicy-screenshot failed with the right password" >&2; cat "$tmp/server.log" >&2; exit 1; }
head -c 15 "$tmp/right.ppm" | grep -q "333 211" || { echo "FAIL: unexpected screenshot size" >&2; exit 1; }
grep "link refused" "$tmp/server.log" | sed 's/^/  server log: /'
echo "PASS: spice-bridge real-client tests"
