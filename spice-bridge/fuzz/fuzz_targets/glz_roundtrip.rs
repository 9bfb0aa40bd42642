//! A sequence of pictures encoded as GLZ with one dictionary decodes, picture by picture, in a
//! client window to the same pixels, with client and server holding the same images.
//! Input: window byte, then pictures (3 header bytes, a length byte, pattern bytes).
//! Seeds: `corpus/glz_roundtrip/`.
//! Body: `spice_bridge::fuzzing::glz_roundtrip` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::glz_roundtrip(data);
});
