//! The QUIC encoder: decode(encode(x)) == x for arbitrary small pictures built from the input
//! (4 header bytes, then pixels repeated cyclically; seeds: `corpus/quic_roundtrip/`).
//! Body: `spice_bridge::fuzzing::quic_roundtrip` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::quic_roundtrip(data);
});
