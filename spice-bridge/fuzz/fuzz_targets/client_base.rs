//! The base (all-channel) client message parser and the scancode decoder must never panic.
//! Input: mini header (type u16, size u32) then the body. Seeds: `corpus/client_base/`.
//! Body: `spice_bridge::fuzzing::client_base` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::client_base(data);
});
