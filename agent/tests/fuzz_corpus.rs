//! Replays the committed fuzz corpora on stable (fuzz/README.md).

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        f(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn replay_agent_messages_corpus() {
    replay("agent_messages", spice_agent::fuzzing::agent_messages);
}

#[test]
fn replay_daemon_core_corpus() {
    replay("daemon_core", spice_agent::fuzzing::daemon_core);
}
