//! The WebSocket transport must survive any client bytes (upgrade request, then frames) without
//! panicking, with bounded output, and masked frames built from random payloads must decode to
//! the same bytes (and our frames carry them back). Byte 0 picks the mode and the read size.
//! Seeds: `corpus/websocket/`.
//! Body: `spice_bridge::fuzzing::websocket` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::websocket(data);
});
