//! A VMM message stream framed, decoded and handled against a mock PCI function.
//!
//! Body: `vfio_user_server::fuzzing::serve` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vfio_user_server::fuzzing::serve(data);
});
