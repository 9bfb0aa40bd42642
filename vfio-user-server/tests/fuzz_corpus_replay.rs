//! Replays every committed fuzz input (`fuzz/corpus/<target>/`) through the functions the fuzz
//! targets call (`vfio_user_server::fuzzing`), on stable Rust without libFuzzer, failing with the
//! name of the input that panicked.

use std::path::Path;

fn replay(target: &str, min: usize, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "only {} {target} inputs (expected at least {min})",
        files.len()
    );
    for p in files {
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{target} corpus input {} panicked", p.display());
    }
}

#[test]
fn decode_corpus_replays() {
    replay("decode", 10, vfio_user_server::fuzzing::decode);
}

#[test]
fn serve_corpus_replays() {
    replay("serve", 10, vfio_user_server::fuzzing::serve);
}
