//! Replays every committed fuzz input (`fuzz/corpus/<target>/`) through the same functions the
//! fuzz targets call (`spice_bridge::fuzzing`), so CI re-checks on stable Rust, without
//! libFuzzer, every hostile input the fuzzers ever kept: no parser, decoder, codec or server task
//! panics, and every assertion of the targets holds (LZ/LZ4 round trips give back the pixels, a
//! random ticket never links, the server keeps answering new links).

use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Runs `run` on every `step`-th input of `target`'s corpus (sorted by name, starting with the
/// first) and fails naming the first input that panicked. `min` guards against a corpus that went
/// missing. Returns how many inputs ran.
fn replay(target: &str, min: usize, step: usize, run: fn(&[u8])) -> usize {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= min,
        "only {} {target} inputs (expected at least {min})",
        inputs.len()
    );
    let mut ran = 0;
    for (name, data) in inputs.iter().step_by(step) {
        let r = std::panic::catch_unwind(|| run(data));
        assert!(r.is_ok(), "{target} corpus input {name} panicked");
        ran += 1;
    }
    ran
}

#[test]
fn client_base_corpus_replays() {
    replay("client_base", 50, 1, spice_bridge::fuzzing::client_base);
}

#[test]
fn client_display_corpus_replays() {
    replay(
        "client_display",
        20,
        1,
        spice_bridge::fuzzing::client_display,
    );
}

#[test]
fn client_inputs_corpus_replays() {
    replay("client_inputs", 20, 1, spice_bridge::fuzzing::client_inputs);
}

#[test]
fn client_main_corpus_replays() {
    replay("client_main", 15, 1, spice_bridge::fuzzing::client_main);
}

#[test]
fn link_corpus_replays() {
    replay("link", 60, 1, spice_bridge::fuzzing::link);
}

#[test]
fn lz_decode_corpus_replays() {
    replay("lz_decode", 300, 1, spice_bridge::fuzzing::lz_decode);
}

#[test]
fn lz_roundtrip_corpus_replays() {
    replay("lz_roundtrip", 250, 1, spice_bridge::fuzzing::lz_roundtrip);
}

#[test]
fn glz_decode_corpus_replays() {
    replay("glz_decode", 8, 1, spice_bridge::fuzzing::glz_decode);
}

#[test]
fn glz_roundtrip_corpus_replays() {
    replay("glz_roundtrip", 6, 1, spice_bridge::fuzzing::glz_roundtrip);
}

#[test]
fn quic_decode_corpus_replays() {
    replay("quic_decode", 21, 1, spice_bridge::fuzzing::quic_decode);
}

#[test]
fn quic_roundtrip_corpus_replays() {
    replay(
        "quic_roundtrip",
        21,
        1,
        spice_bridge::fuzzing::quic_roundtrip,
    );
}

#[test]
fn jpeg_roundtrip_corpus_replays() {
    replay(
        "jpeg_roundtrip",
        21,
        1,
        spice_bridge::fuzzing::jpeg_roundtrip,
    );
}

#[test]
fn vp8_roundtrip_corpus_replays() {
    replay("vp8_roundtrip", 60, 1, spice_bridge::fuzzing::vp8_roundtrip);
}

#[test]
fn session_corpus_replays() {
    replay("session", 400, 1, spice_bridge::fuzzing::session);
}

#[test]
fn agent_stream_corpus_replays() {
    replay("agent_stream", 3, 1, spice_bridge::fuzzing::agent_stream);
}

#[test]
fn tls_link_corpus_replays() {
    replay("tls_link", 9, 1, spice_bridge::fuzzing::tls_link);
}

#[test]
fn websocket_corpus_replays() {
    replay("websocket", 700, 1, spice_bridge::fuzzing::websocket);
}
