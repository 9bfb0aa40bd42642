//! The QUIC image decoder must never panic and never allocate beyond its limit, whatever the
//! bytes. Input: QUIC data (seeds: `corpus/quic_decode/`, written by the `write_quic_fuzz_seeds`
//! unit test).
//! Body: `spice_bridge::fuzzing::quic_decode` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::quic_decode(data);
});
