//! The header and request decoders: command (u16 LE) + body.
//!
//! Body: `vfio_user_server::fuzzing::decode` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vfio_user_server::fuzzing::decode(data);
});
