//! Whatever the pictures, a short VP8 stream of them decodes frame by frame to the stream's
//! size, and a flat picture to about its colour. Input layout: `spice_bridge::fuzzing::vp8_roundtrip`.
//! Body: that function (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::vp8_roundtrip(data);
});
