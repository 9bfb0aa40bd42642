//! Fuzz bodies (feature `test-utils`; not part of the default public surface). Used by
//! `vdi-port/fuzz` and by the corpus-replay test.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::input::abi::{InputEvent, EVENTQ, STATUSQ};
use crate::input::{InputDevice, InputHandle, InputKind, InputOptions};
use crate::vhost_user::{ServerMetrics, VhostUserServer};
use crate::VirtioDevice;

const MEM: usize = 0x1_0000;
/// Ring areas the guest (the fuzzer) scribbles over: per queue desc/avail/used at fixed spots.
const RINGS: [(u64, u64, u64); 2] = [(0x0000, 0x1000, 0x2000), (0x4000, 0x5000, 0x6000)];

fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

/// Guest-controlled descriptor chains, ring indices and status events against an input device:
/// the input is a sequence of operations (scribble ring/buffer memory, push reports, process a
/// queue, config access, reset). Nothing may panic or hang.
pub fn input_queues(mut data: &[u8]) {
    let Some([k, s0, s1]) = take::<3>(&mut data) else {
        return;
    };
    let kind = [InputKind::Keyboard, InputKind::Tablet, InputKind::Mouse][usize::from(k % 3)];
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]) else {
        return;
    };
    let opts = InputOptions {
        pending_events: 16,
        ..Default::default()
    };
    let Ok(dev) = InputDevice::new(kind, opts) else {
        return;
    };
    let h = dev.handle();
    let mk = |i: usize, size: u8| -> Queue {
        let mut q = Queue::new(256).unwrap_or_else(|_| unreachable_queue());
        let (d, a, u) = RINGS[i];
        q.set_size(u16::from(size.max(1)).next_power_of_two().min(256));
        q.set_desc_table_address(Some(d as u32), Some(0));
        q.set_avail_ring_address(Some(a as u32), Some(0));
        q.set_used_ring_address(Some(u as u32), Some(0));
        q.set_event_idx(size & 1 != 0);
        q.set_ready(true);
        q
    };
    let mut queues = [mk(0, s0), mk(1, s1)];
    dev.activate();
    let mut steps = 0;
    while let Some([op]) = take::<1>(&mut data) {
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 8 {
            // Write up to 16 bytes anywhere in the first 32 KiB (rings and buffers).
            0 | 1 => {
                let Some([lo, hi, n]) = take::<3>(&mut data) else {
                    break;
                };
                let addr = u64::from(u16::from_le_bytes([lo, hi]) & 0x7fff);
                let n = usize::from(n % 17).min(data.len());
                let (bytes, rest) = data.split_at(n);
                data = rest;
                let _ = mem.write_slice(bytes, GuestAddress(addr));
            }
            2 => {
                let Some([n]) = take::<1>(&mut data) else {
                    break;
                };
                let mut evs = Vec::new();
                for _ in 0..(n % 6) {
                    let Some(b) = take::<8>(&mut data) else { break };
                    evs.push(InputEvent::from_bytes(b));
                }
                let _ = h.push_report(&evs);
            }
            3 => {
                let _ = dev.process_queue(EVENTQ, &mut queues[0], &mem);
            }
            4 => {
                let _ = dev.process_queue(STATUSQ, &mut queues[1], &mem);
            }
            5 => {
                let Some([off, a, b]) = take::<3>(&mut data) else {
                    break;
                };
                dev.write_config(u64::from(off), &[a, b]);
                let mut out = [0u8; 40];
                dev.read_config(u64::from(off), &mut out);
            }
            6 => {
                let Some([sc0, sc1]) = take::<2>(&mut data) else {
                    break;
                };
                let _ = h.key(u16::from_le_bytes([sc0, sc1]), sc0 & 1 != 0);
            }
            _ => {
                dev.reset();
                queues = [mk(0, s0), mk(1, s1)];
                dev.activate();
            }
        }
    }
    // Invariants: the bounded queue stays bounded.
    assert!(h.pending_events() <= 16);
}

fn unreachable_queue() -> Queue {
    // Queue::new(256) only fails for sizes that are not powers of two.
    Queue::new(1).unwrap_or_else(|_| std::process::abort())
}

struct Server {
    path: PathBuf,
    server: VhostUserServer<InputDevice>,
    metrics: Arc<ServerMetrics>,
    _handle: InputHandle,
}

static SERVER: OnceLock<Mutex<Server>> = OnceLock::new();

fn server() -> &'static Mutex<Server> {
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vdi-port-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("input.sock");
        let dev = Arc::new(
            InputDevice::new(InputKind::Keyboard, InputOptions::default())
                .unwrap_or_else(|_| std::process::abort()),
        );
        let handle = dev.handle();
        let srv = VhostUserServer::bind(&path, dev).unwrap_or_else(|_| std::process::abort());
        let metrics = srv.metrics();
        Mutex::new(Server {
            path,
            server: srv,
            metrics,
            _handle: handle,
        })
    })
}

/// Arbitrary bytes written by a frontend into our vhost-user server (the `vhost` crate parses,
/// our backend handles). Each input is one connection; afterwards the server must have finished
/// the connection and be ready for the next one.
///
/// vhost-user-backend 0.24 keeps its request handler type private, so the bytes go through the
/// real listener on a socket path instead of a socketpair.
///
/// The connection is served by [`VhostUserServer::serve_one`] on a thread that is joined before
/// returning: the per-connection daemon, its request thread and its vring worker thread are all
/// gone when the input ends. (With `run()` on a background thread, the next connection's daemon
/// and worker thread were being spawned while libFuzzer checked the input for leaks, and
/// LeakSanitizer reported that live worker's allocations as leaked.)
pub fn vhost_user_msgs(data: &[u8]) {
    let mut guard = server().lock().unwrap_or_else(|e| e.into_inner());
    let srv = &mut *guard;
    let before = srv.metrics.connections_finished();
    // Connect first (the listener is bound, so this queues): `serve_one` then cannot block in
    // accept forever.
    let Ok(mut s) = UnixStream::connect(&srv.path) else {
        return;
    };
    let server = &mut srv.server;
    std::thread::scope(|scope| {
        let serving = scope.spawn(move || server.serve_one());
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = (&s).take(1 << 20).read_to_end(&mut sink);
        drop(s);
        let served = serving.join();
        assert!(matches!(served, Ok(Ok(()))), "serve_one failed or panicked");
    });
    assert_eq!(
        srv.metrics.connections_finished(),
        before + 1,
        "server did not finish the connection"
    );
}

/// A guest driver (the fuzzer) against a two-port virtio-console: it posts arbitrary buffers on
/// any queue (control messages included), scribbles over rings and buffers, and the owner side
/// writes, reads, and opens/closes the host side, in any order. Nothing may panic or hang, and
/// the bounded buffers stay bounded.
pub fn console_queues(mut data: &[u8]) {
    use crate::console::{ConsoleDevice, ConsoleOptions, PortOptions};
    use crate::testing::{Mem, SplitRing};

    const TO_GUEST: usize = 4096;
    let Ok((dev, ports)) = ConsoleDevice::new(ConsoleOptions {
        ports: vec![
            PortOptions::new("com.redhat.spice.0").opened(),
            PortOptions::new("org.qemu.guest_agent.0"),
        ],
        to_guest_bytes: TO_GUEST,
        from_guest_bytes: 8192,
    }) else {
        return;
    };
    let n = dev.num_queues();
    let Ok(mem) = Mem::from_ranges(&[(GuestAddress(0), 0x100_0000)]) else {
        return;
    };
    let mut rings: Vec<SplitRing> = (0..n).map(SplitRing::new).collect();
    let mut queues: Vec<Queue> = rings.iter().map(SplitRing::queue).collect();
    dev.activate();
    let mut steps = 0;
    while let Some([op]) = take::<1>(&mut data) {
        steps += 1;
        if steps > 512 {
            break;
        }
        match op % 10 {
            // Post a device-readable buffer (control message or port data) on queue q.
            0 | 1 => {
                let Some([q, len]) = take::<2>(&mut data) else {
                    break;
                };
                let len = usize::from(len % 33).min(data.len());
                let (bytes, rest) = data.split_at(len);
                data = rest;
                let q = usize::from(q) % n;
                let _ = rings[q].post(&mem, None, bytes);
            }
            // Post a device-writable buffer.
            2 => {
                let Some([q, len]) = take::<2>(&mut data) else {
                    break;
                };
                let q = usize::from(q) % n;
                let _ = rings[q].post(&mem, Some(u32::from(len) * 16), &[]);
            }
            // A well-formed control message (so the handshake gets far).
            3 => {
                let Some([id, ev, val]) = take::<3>(&mut data) else {
                    break;
                };
                let m = crate::console::abi::ControlMsg::new(
                    u32::from(id % 4),
                    u16::from(ev % 8),
                    u16::from(val % 3),
                );
                let _ = rings[crate::console::abi::CONTROL_TX].post(&mem, None, &m.to_bytes());
            }
            // Scribble over rings (first 64 KiB of each ring area) or buffers.
            4 => {
                let Some([a0, a1, a2, len]) = take::<4>(&mut data) else {
                    break;
                };
                let addr = u64::from(u32::from_le_bytes([a0, a1, a2, 0]));
                let len = usize::from(len % 17).min(data.len());
                let (bytes, rest) = data.split_at(len);
                data = rest;
                let _ = mem.write_slice(bytes, GuestAddress(addr));
            }
            5 => {
                let Some([q]) = take::<1>(&mut data) else {
                    break;
                };
                let q = usize::from(q) % n;
                let _ = dev.process_queue(q, &mut queues[q], &mem);
                let _ = rings[q].take_used(&mem);
            }
            6 => {
                let Some([p, len]) = take::<2>(&mut data) else {
                    break;
                };
                let _ = ports[usize::from(p % 2)].write(&vec![p; usize::from(len) * 64]);
            }
            7 => {
                let Some([p]) = take::<1>(&mut data) else {
                    break;
                };
                while ports[usize::from(p % 2)].recv().is_some() {}
            }
            8 => {
                let Some([p]) = take::<1>(&mut data) else {
                    break;
                };
                ports[usize::from(p % 2)].set_host_open(p & 2 != 0);
            }
            _ => {
                let Some([c]) = take::<1>(&mut data) else {
                    break;
                };
                if c & 1 == 0 {
                    let mut cfg = [0u8; 16];
                    dev.read_config(u64::from(c % 16), &mut cfg);
                    dev.write_config(u64::from(c % 16), &cfg[..4]);
                } else {
                    dev.reset();
                    rings = (0..n).map(SplitRing::new).collect();
                    queues = rings.iter().map(SplitRing::queue).collect();
                    dev.activate();
                }
            }
        }
        for p in &ports {
            assert!(p.pending_to_guest() <= TO_GUEST);
        }
    }
}
