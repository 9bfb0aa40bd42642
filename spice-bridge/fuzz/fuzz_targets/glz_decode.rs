//! The GLZ decoder (a fresh window and one holding two pictures), and the zlib inflate of a
//! ZLIB_GLZ_RGB body before it, never panic on arbitrary bytes. Input: a GLZ stream (also read
//! as a stated size and a zlib stream). Seeds: `corpus/glz_decode/`.
//! Body: `spice_bridge::fuzzing::glz_decode` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::glz_decode(data);
});
