//! Connection teardown: a frontend that connects, sends bad or truncated vhost-user messages and
//! hangs up, many times in a row, must not grow the server process — neither its threads (each
//! connection's vring epoll worker must be stopped and joined) nor its file descriptors.
//!
//! The inputs are the fuzz reproducer `leak-9799bb86…` (GET_FEATURES whose header announces a
//! 2 MiB body, followed by 33 bytes and a hang-up) and a few variants of it.
//!
//! This file holds a single test on purpose: the process's thread and fd counts are measured,
//! so no other test may run concurrently in this binary.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdi_port::input::{InputDevice, InputKind, InputOptions};
use vdi_port::vhost_user::{ServerMetrics, VhostUserServer};

/// The fuzzer's reproducer: request 1 (GET_FEATURES), flags 1, size 0x200000, then 33 bytes.
const REPRODUCER: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x0f, 0x00, 0x00, 0x1a,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x6c, 0x00, 0x00, 0x0f, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x1a, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
];

fn msg(code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + body.len());
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn variants() -> Vec<Vec<u8>> {
    let mut vring = Vec::new(); // SET_VRING_NUM 0 = 16, SET_VRING_BASE 0 = 0, GET_VRING_BASE 0
    vring.extend(msg(8, &[0, 0, 0, 0, 16, 0, 0, 0]));
    vring.extend(msg(10, &[0; 8]));
    vring.extend(msg(11, &[0; 8]));
    let mut owner = msg(1, &[]); // GET_FEATURES, SET_OWNER, GET_PROTOCOL_FEATURES
    owner.extend(msg(3, &[]));
    owner.extend(msg(15, &[]));
    vec![
        REPRODUCER.to_vec(),
        REPRODUCER[..12].to_vec(), // the oversized header alone
        REPRODUCER[..5].to_vec(),  // a partial header
        Vec::new(),                // connect and hang up
        owner,
        vring,
        msg(0xff, &[1, 2, 3]), // unknown request
    ]
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn wait_finished(m: &ServerMetrics, n: u64) {
    let start = Instant::now();
    while m.connections_finished() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "connection {n} not finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Thread and fd counts once the server is idle again (it spawns the next connection's worker
/// right after finishing one, so give it a moment to settle).
fn settled_counts() -> (usize, usize) {
    let mut last = (count("/proc/self/task"), count("/proc/self/fd"));
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
        let now = (count("/proc/self/task"), count("/proc/self/fd"));
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[test]
fn hostile_reconnects_do_not_leak_threads_or_fds() {
    let dir = std::env::temp_dir().join(format!("vdi-port-teardown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kbd.sock");
    let dev = Arc::new(InputDevice::new(InputKind::Keyboard, InputOptions::default()).unwrap());
    let _handle = dev.handle();
    let server = VhostUserServer::bind(&path, dev).unwrap();
    let metrics = server.metrics();
    std::thread::spawn(move || server.run());

    let inputs = variants();
    let mut baseline = None;
    const ROUNDS: u64 = 210;
    for i in 0..ROUNDS {
        let data = &inputs[i as usize % inputs.len()];
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.take(1 << 20).read_to_end(&mut sink);
        wait_finished(&metrics, i + 1);
        let (threads, fds) = settled_counts();
        // The first rounds set the baseline (lazy statics, the idle daemon of the next
        // connection); after that nothing may grow by more than a transient few.
        let &mut (t0, f0) = baseline.get_or_insert((threads, fds));
        assert!(
            threads <= t0 + 2,
            "connection {i}: {threads} threads, baseline {t0} (worker threads leak)"
        );
        assert!(
            fds <= f0 + 4,
            "connection {i}: {fds} open fds, baseline {f0} (fds leak)"
        );
    }
    eprintln!(
        "baseline (threads, fds) = {baseline:?}, end = {:?}",
        settled_counts()
    );
    assert_eq!(metrics.snapshot().connections, ROUNDS);
    assert_eq!(metrics.connections_finished(), ROUNDS);
    let _ = std::fs::remove_dir_all(&dir);
}
