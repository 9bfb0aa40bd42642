//! The server as a VMM sees it, over a real Unix socket with raw vfio-user messages (as QEMU
//! sends them: the `vfio_user` crate's client always waits for a reply, so it cannot post
//! writes): posted writes taken in bulk, descriptors attributed to their message, and a hostile
//! VMM answered with error replies without taking the server down.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD};
use vfio_user_server::testing::{msg, send_with_fd, MockFunction, MOCK_ID};
use vfio_user_server::{server_tables, ConnStats, FunctionBackend, Intx, PciFunction, Server};

fn reply(s: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(
        u32::from_le_bytes(h[8..12].try_into().unwrap()),
        1,
        "a plain reply"
    );
    let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let mut b = vec![0u8; size - 16];
    s.read_exact(&mut b).unwrap();
    b
}

/// A mock function behind the server on a fresh socket: (temp dir, socket, INTx, the serving
/// thread).
#[allow(clippy::type_complexity)]
fn raw_server(
    name: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<Intx>,
    std::thread::JoinHandle<std::io::Result<ConnStats>>,
) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dev.sock");
    let intx = Arc::new(Intx::default());
    let func = MockFunction::default();
    let (regions, irqs) = server_tables(&func.bars(), false);
    let server = Server::new(&sock, irqs, regions).unwrap();
    let mut backend = FunctionBackend::new(func, intx.clone());
    let served = std::thread::spawn(move || server.run(&mut backend));
    (dir, sock, intx, served)
}
/// The NULL command-ring entry (device/README.md): with trapped BARs QEMU posts BAR writes,
/// and a read queued behind a frame's worth of them timed out in QEMU (5 s) while the
/// server paid three syscalls per message; the guest's ring index then read as all-ones.
/// The server must take posted writes from the socket in bulk, in order, so a read behind
/// them sees every one of them.
#[test]
fn posted_writes_are_taken_in_bulk_and_a_read_behind_them_sees_the_last() {
    use std::io::Write;
    const N: u32 = 20_000;
    let (dir, sock, _intx, served) = raw_server("vus-bulk");

    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let caps = b"{\"capabilities\":{\"max_msg_fds\":8}}\0";
    let mut v = vec![0u8; 4];
    v.extend_from_slice(caps);
    s.write_all(&msg(1, 1, 0, &v)).unwrap();
    let version = reply(&mut s);
    assert!(String::from_utf8_lossy(&version[4..]).contains("max_data_xfer_size"));
    // N posted 8-byte writes to the same BAR0 offset (value = sequence number), sent as
    // one stream the way QEMU's queue drains into the socket, then one read.
    let off = 0x1000u64;
    let mut burst = Vec::with_capacity(N as usize * 40);
    for i in 1..=N {
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&off.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&8u32.to_le_bytes());
        body.extend_from_slice(&u64::from(i).to_le_bytes());
        burst.extend_from_slice(&msg(2, 10, 1 << 4, &body));
    }
    let mut rd = off.to_le_bytes().to_vec();
    rd.extend_from_slice(&0u32.to_le_bytes());
    rd.extend_from_slice(&8u32.to_le_bytes());
    burst.extend_from_slice(&msg(3, 9, 0, &rd));
    s.write_all(&burst).unwrap();
    let got = reply(&mut s);
    assert_eq!(got.len(), 16 + 8);
    assert_eq!(
        u64::from_le_bytes(got[16..24].try_into().unwrap()),
        u64::from(N),
        "the read sees the last posted write"
    );
    drop(s);
    let stats = served.join().unwrap().unwrap();
    assert_eq!(stats.messages, u64::from(N) + 2);
    assert!(
        stats.socket_reads * 50 <= stats.messages,
        "posted writes must not cost a socket read each: {stats:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Descriptors ride with the message whose sendmsg carried them even when the server
/// reads that message in one chunk with a burst of posted writes before it.
#[test]
fn an_eventfd_sent_behind_a_burst_of_posted_writes_reaches_set_irqs() {
    use std::io::Write;
    let (dir, sock, intx, served) = raw_server("vus-fds");

    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut v = vec![0u8; 4];
    v.extend_from_slice(b"{}\0");
    s.write_all(&msg(1, 1, 0, &v)).unwrap();
    reply(&mut s);
    let mut burst = Vec::new();
    for i in 0..2000u64 {
        let mut body = 0x2000u64.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&8u32.to_le_bytes());
        body.extend_from_slice(&i.to_le_bytes());
        burst.extend_from_slice(&msg(2, 10, 1 << 4, &body));
    }
    s.write_all(&burst).unwrap();
    // SET_IRQS: INTx trigger = an eventfd, in its own sendmsg with the descriptor.
    // SAFETY: eventfd returns a new descriptor or -1; checked by the assert.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(efd >= 0);
    let mut body = 20u32.to_le_bytes().to_vec();
    body.extend_from_slice(
        &(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER).to_le_bytes(),
    );
    for v in [0u32, 0, 1] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    send_with_fd(&s, &msg(3, 8, 0, &body), efd).unwrap();
    assert!(reply(&mut s).is_empty(), "SET_IRQS acknowledged");
    // SAFETY: efd is a valid descriptor owned only by this File.
    let mut ev = unsafe { File::from_raw_fd(efd) };
    intx.set_level(true);
    let mut n = [0u8; 8];
    ev.read_exact(&mut n).unwrap();
    assert_eq!(
        u64::from_ne_bytes(n),
        1,
        "the line fired through the eventfd sent"
    );
    drop(s);
    let stats = served.join().unwrap().unwrap();
    assert_eq!(stats.messages, 2002);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A confused or hostile VMM: every command with short, empty and random bodies, bad region
/// and interrupt indices, oversized reads, unknown commands and stray replies. Each request
/// gets an error reply (or is dropped), the server never panics, and a good read afterwards
/// still works; then a header with an impossible size ends only that connection.
#[test]
fn malformed_vmm_messages_get_error_replies_and_the_server_carries_on() {
    use std::io::Write;
    let (dir, sock, _intx, served) = raw_server("vus-hostile");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();

    // Reads one reply; returns (flags, error, body).
    let any_reply = |s: &mut std::os::unix::net::UnixStream| {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut b = vec![0u8; size - 16];
        s.read_exact(&mut b).unwrap();
        let flags = u32::from_le_bytes(h[8..12].try_into().unwrap());
        let err = u32::from_le_bytes(h[12..16].try_into().unwrap());
        (flags, err, b)
    };
    const ERROR: u32 = 1 << 5;
    // Short or empty bodies for every command that reads one: an error reply each.
    // (DEVICE_GET_INFO and DEVICE_RESET take no body and succeed.)
    for command in [2u16, 3, 5, 6, 7, 8, 9, 10] {
        for len in [0usize, 3, 7, 11] {
            s.write_all(&msg(100, command, 0, &vec![0xFF; len]))
                .unwrap();
            let (flags, err, _) = any_reply(&mut s);
            assert_ne!(flags & ERROR, 0, "command {command} body {len}");
            assert_ne!(err, 0);
        }
    }
    // Bad region index, oversized read, a write longer than its body, bad irq index.
    let bad = [
        msg(
            101,
            9,
            0,
            &[
                &0u64.to_le_bytes()[..],
                &99u32.to_le_bytes(),
                &4u32.to_le_bytes(),
            ]
            .concat(),
        ),
        msg(
            102,
            9,
            0,
            &[
                &0u64.to_le_bytes()[..],
                &0u32.to_le_bytes(),
                &u32::MAX.to_le_bytes(),
            ]
            .concat(),
        ),
        msg(
            103,
            10,
            0,
            &[
                &0u64.to_le_bytes()[..],
                &0u32.to_le_bytes(),
                &64u32.to_le_bytes(),
                &[1, 2],
            ]
            .concat(),
        ),
        msg(
            104,
            8,
            0,
            &[
                &20u32.to_le_bytes()[..],
                &0u32.to_le_bytes(),
                &77u32.to_le_bytes(),
                &0u32.to_le_bytes(),
                &0u32.to_le_bytes(),
            ]
            .concat(),
        ),
        msg(
            105,
            5,
            0,
            &[
                &32u32.to_le_bytes()[..],
                &0u32.to_le_bytes(),
                &55u32.to_le_bytes(),
            ]
            .concat(),
        ),
        msg(106, 0x7777, 0, b"?"),
    ];
    for m in &bad {
        s.write_all(m).unwrap();
        let (flags, _, _) = any_reply(&mut s);
        assert_ne!(flags & ERROR, 0, "{:?}", &m[..4]);
    }
    // Random bodies for commands 0..=20 (a fixed xorshift): every one answered.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..400u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let command = (x % 21) as u16;
        let body: Vec<u8> = (0..(x >> 8) % 48).map(|k| (x >> (k % 56)) as u8).collect();
        // Flags 0: every request, good or bad, must be answered.
        s.write_all(&msg(200 + i as u16, command, 0, &body))
            .unwrap();
        let _ = any_reply(&mut s);
    }
    // A stray reply is dropped without an answer; the next good read is answered.
    s.write_all(&msg(300, 9, 1, &[0u8; 16])).unwrap();
    let mut rd = 0u64.to_le_bytes().to_vec();
    rd.extend_from_slice(&7u32.to_le_bytes()); // config region
    rd.extend_from_slice(&4u32.to_le_bytes());
    s.write_all(&msg(301, 9, 0, &rd)).unwrap();
    let id = reply(&mut s);
    assert_eq!(
        &id[16..20],
        &MOCK_ID.to_le_bytes(),
        "the function's identity still answers"
    );
    // A header whose size is smaller than a header: the connection ends with an error.
    let mut h = msg(302, 9, 0, &[]);
    h[4..8].copy_from_slice(&8u32.to_le_bytes());
    s.write_all(&h).unwrap();
    let r = served.join().unwrap();
    assert!(r.is_err(), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
