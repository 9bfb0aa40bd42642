//! The link stage must refuse any byte sequence it does not accept without panicking, and never
//! link with a wrong ticket. Input = what a client sends: LinkHeader (16), LinkMess (header.size
//! bytes), optional auth mechanism (4), ticket (128). Seeds: `corpus/link/`.
//! Body: `spice_bridge::fuzzing::link` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::link(data);
});
