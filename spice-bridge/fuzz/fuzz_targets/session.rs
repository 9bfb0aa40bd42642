//! A whole server under hostile clients: each input links a main channel (a new session), then
//! - byte 0 % 4 = 0: writes the rest as raw bytes on the main channel,
//! - 1: links a display channel and writes the rest there, 2: inputs, 3: cursor.
//! A panic in any server task aborts the process (panic hook), so libFuzzer sees it; a server
//! that stops answering fails the next link. Seeds: `corpus/session/`.
//! Body: `spice_bridge::fuzzing::session` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::session(data);
});
