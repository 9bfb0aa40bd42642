//! Replays every committed fuzz input (`device/fuzz/corpus/{decode,device_io}`) through the same
//! entry points the fuzz targets use, so CI re-checks on stable Rust, without libFuzzer, every
//! hostile input the fuzzers ever kept: nothing panics, and after each `device_io` sequence a
//! RESET and re-probe give a working device (`run_guest_ops` asserts that itself).

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

#[test]
fn decode_corpus_replays_without_a_panic() {
    let inputs = corpus("decode");
    // The committed corpus is ~2,000 files; a near-empty one means it went missing.
    assert!(inputs.len() > 500, "only {} decode inputs", inputs.len());
    for (name, data) in &inputs {
        let r = std::panic::catch_unwind(|| qxl_device::decode::fuzz::run(data));
        assert!(r.is_ok(), "decode corpus input {name} panicked");
    }
}

#[test]
fn device_io_corpus_replays_and_the_device_recovers() {
    let inputs = corpus("device_io");
    assert!(inputs.len() > 200, "only {} device_io inputs", inputs.len());
    let mut commands = 0u64;
    for (name, data) in &inputs {
        let r = std::panic::catch_unwind(|| {
            qxl_device::testing::run_guest_ops(qxl_device::testing::small_config(), data)
        });
        match r {
            Ok(m) => commands += m.commands,
            Err(_) => panic!("device_io corpus input {name} panicked"),
        }
    }
    // The corpus reaches the command path, not only the I/O ports.
    assert!(commands > 0);
}
