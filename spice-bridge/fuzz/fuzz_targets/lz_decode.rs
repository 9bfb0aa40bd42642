//! The LZ and LZ4 image decoders must never panic and never allocate beyond their limits,
//! whatever the bytes. Input: an LZ stream (seeds: `corpus/lz_decode/`, written by the
//! `write_fuzz_seeds` unit test). The same bytes are also fed to the LZ4 payload decoder with a
//! geometry taken from the first bytes.
//! Body: `spice_bridge::fuzzing::lz_decode` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::lz_decode(data);
});
