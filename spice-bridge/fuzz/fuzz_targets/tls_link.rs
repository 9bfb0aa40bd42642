//! The TLS port: handshake garbage and truncated records (byte 0 even), or the link stage
//! behind a completed TLS handshake (odd); the server must keep completing TLS links and no
//! server task may panic. Seeds: `corpus/tls_link/`.
//! Body: `spice_bridge::fuzzing::tls_link` (replayed on the corpus by `tests/fuzz_corpus_replay.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // The fuzz client writes to sockets the server has closed: get EPIPE, not a SIGPIPE
        // (a Rust main ignores SIGPIPE; libFuzzer's main does not).
        // SAFETY: setting a signal's disposition to SIG_IGN before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    },
    |data: &[u8]| {
        spice_bridge::fuzzing::tls_link(data);
    }
);
