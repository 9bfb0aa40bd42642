//! Whatever the picture, LZ and LZ4 encodings decode back to it (the pixels the client shows).
//! Input: 4 header bytes (width-1, height-1, format, row padding) then pixel bytes, repeated
//! cyclically when too short. Seeds: `corpus/lz_roundtrip/`.
//! Body: `spice_bridge::fuzzing::lz_roundtrip` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::lz_roundtrip(data);
});
