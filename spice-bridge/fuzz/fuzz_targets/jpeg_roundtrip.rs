//! Whatever the picture, the JPEG encoding (lossy) is a picture of the same size a JPEG decoder
//! reads, close to the source on smooth pictures. Input: as `quic_roundtrip` (its seeds are
//! copied to `corpus/jpeg_roundtrip/`).
//! Body: `spice_bridge::fuzzing::jpeg_roundtrip` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::jpeg_roundtrip(data);
});
