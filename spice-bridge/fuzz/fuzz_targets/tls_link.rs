//! The TLS port: handshake garbage and truncated records (byte 0 even), or the link stage
//! behind a completed TLS handshake (odd); the server must keep completing TLS links and no
//! server task may panic. Seeds: `corpus/tls_link/`.
//! Body: `spice_bridge::fuzzing::tls_link` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::tls_link(data);
});
