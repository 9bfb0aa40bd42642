//! The display-channel client message parser and the data-header decoders must never panic on any
//! bytes. Input: mini header (type u16, size u32) then the body. Seeds: `corpus/client_display/`.
//! Body: `spice_bridge::fuzzing::client_display` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::client_display(data);
});
