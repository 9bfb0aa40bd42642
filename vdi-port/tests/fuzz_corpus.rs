//! Replays the committed fuzz corpora on stable.

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
fn replay_input_queues_corpus() {
    replay("input_queues", vdi_port::fuzzing::input_queues);
}

#[test]
fn replay_vhost_user_msgs_corpus() {
    replay("vhost_user_msgs", vdi_port::fuzzing::vhost_user_msgs);
}

#[test]
fn replay_console_queues_corpus() {
    replay("console_queues", vdi_port::fuzzing::console_queues);
}
