//! Connects one console port to a Unix stream socket: a program on the host (for example
//! `qemu-ga`'s host side, a WebDAV proxy, a test echo peer) connects to the socket and talks
//! to the guest's `/dev/virtio-ports/NAME`.
//!
//! One peer at a time. While a peer is connected the guest sees the host side of the port open
//! (PORT_OPEN 1); when it goes, the guest reads EOF. Bytes pass both ways unchanged and in
//! order. Back-pressure is end to end: a peer that does not read stops the device taking guest
//! buffers (the guest's `write()` blocks), and a guest that does not read stops the bridge
//! reading the socket. Bytes the peer sends while the guest has the port closed are dropped and
//! counted, as the Linux driver drops data for a closed port.
//!
//! Plain threads rather than an async runtime: the crate has no runtime, and one port needs two
//! blocking loops.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{PortError, PortEvent, PortHandle};

/// How long a bridge loop sleeps before re-checking for shutdown when nothing happens.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Socket read size.
const READ_BUF: usize = 64 * 1024;

/// Counters of a bridge; read with [`UnixBridge::stats`].
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    peers: AtomicU64,
    bytes_to_guest: AtomicU64,
    bytes_from_guest: AtomicU64,
    dropped_guest_closed: AtomicU64,
    dropped_on_disconnect: AtomicU64,
}

/// A snapshot of [`BridgeMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeStats {
    /// Peers accepted.
    pub peers: u64,
    /// Bytes from the peer handed to the guest.
    pub bytes_to_guest: u64,
    /// Bytes from the guest written to the peer.
    pub bytes_from_guest: u64,
    /// Peer bytes dropped because the guest had the port closed.
    pub dropped_guest_closed: u64,
    /// Guest bytes still queued when a peer went away (dropped; they were meant for it).
    pub dropped_on_disconnect: u64,
}

/// Wakes the bridge loops when the port has news (the port's notify callback).
#[derive(Default)]
struct Signal {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cond.notify_all();
    }

    fn current(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the generation moves past `seen` or [`IDLE_WAIT`] passes.
    fn wait_past(&self, seen: u64) {
        let g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let r = self.cond.wait_timeout_while(g, IDLE_WAIT, |g| *g == seen);
        drop(r);
    }
}

/// A console port served on a Unix socket.
pub struct UnixBridge {
    port: PortHandle,
    listener: UnixListener,
    path: PathBuf,
    signal: Arc<Signal>,
    metrics: Arc<BridgeMetrics>,
}

impl std::fmt::Debug for UnixBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixBridge")
            .field("port", &self.port)
            .field("path", &self.path)
            .finish()
    }
}

impl UnixBridge {
    /// Binds `path` (an existing socket file there is replaced) for `port`. The port's notify
    /// callback now belongs to the bridge.
    pub fn bind(path: impl AsRef<Path>, port: PortHandle) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if std::fs::symlink_metadata(&path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        port.set_notify(move || s.notify());
        port.set_host_open(false);
        Ok(UnixBridge {
            port,
            listener,
            path,
            signal,
            metrics: Arc::new(BridgeMetrics::default()),
        })
    }

    /// The bridge's counters (shared; valid while [`run`](Self::run) runs on another thread).
    pub fn metrics(&self) -> Arc<BridgeMetrics> {
        self.metrics.clone()
    }

    /// Accepts peers one after another and bridges each until it disconnects (blocking; run
    /// it on its own thread). Returns only if accepting fails for good.
    pub fn run(self) -> io::Result<()> {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "vdi port bridge: accept failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            self.metrics.peers.fetch_add(1, Ordering::Relaxed);
            tracing::info!(port = self.port.name(), path = %self.path.display(), "vdi port bridge: peer connected");
            if let Err(e) = self.serve_peer(stream) {
                tracing::info!(port = self.port.name(), error = %e, "vdi port bridge: peer connection ended");
            } else {
                tracing::info!(
                    port = self.port.name(),
                    "vdi port bridge: peer disconnected"
                );
            }
        }
    }

    fn serve_peer(&self, stream: UnixStream) -> io::Result<()> {
        // Guest bytes from before this peer were meant for nobody.
        self.drain_events();
        let reader = stream.try_clone()?;
        let stop = AtomicBool::new(false);
        self.port.set_host_open(true);
        let r = std::thread::scope(|s| {
            let to_guest = s.spawn(|| {
                let r = self.peer_to_guest(reader, &stop);
                stop.store(true, Ordering::Release);
                self.signal.notify();
                r
            });
            let r = self.guest_to_peer(&stream, &stop);
            stop.store(true, Ordering::Release);
            // Unblocks the reader thread's read().
            let _ = stream.shutdown(Shutdown::Both);
            let r2 = to_guest.join().unwrap_or(Ok(()));
            r.and(r2)
        });
        self.port.set_host_open(false);
        let dropped = self.drain_events();
        self.metrics
            .dropped_on_disconnect
            .fetch_add(dropped, Ordering::Relaxed);
        r
    }

    /// Discards queued guest events; returns the data bytes dropped.
    fn drain_events(&self) -> u64 {
        let mut n = 0u64;
        while let Some(ev) = self.port.recv() {
            if let PortEvent::Data(d) = ev {
                n += d.len() as u64;
            }
        }
        n
    }

    fn guest_to_peer(&self, mut stream: &UnixStream, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Acquire) {
            let seen = self.signal.current();
            let mut idle = true;
            while let Some(ev) = self.port.recv() {
                idle = false;
                match ev {
                    PortEvent::Data(d) => {
                        stream.write_all(&d)?;
                        self.metrics
                            .bytes_from_guest
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    PortEvent::Opened | PortEvent::Closed => {}
                }
            }
            if idle {
                self.signal.wait_past(seen);
            }
        }
        Ok(())
    }

    fn peer_to_guest(&self, mut stream: UnixStream, stop: &AtomicBool) -> io::Result<()> {
        let mut buf = vec![0u8; READ_BUF];
        let mut warned = false;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let seen = self.signal.current();
                match self.port.write(rest) {
                    Ok(0) => self.signal.wait_past(seen),
                    Ok(k) => {
                        rest = &rest[k..];
                        self.metrics
                            .bytes_to_guest
                            .fetch_add(k as u64, Ordering::Relaxed);
                        warned = false;
                    }
                    Err(PortError::GuestClosed) => {
                        self.metrics
                            .dropped_guest_closed
                            .fetch_add(rest.len() as u64, Ordering::Relaxed);
                        if !warned {
                            warned = true;
                            tracing::info!(
                                port = self.port.name(),
                                "vdi port bridge: guest has the port closed; peer bytes dropped"
                            );
                        }
                        rest = &[];
                    }
                }
            }
        }
    }

    /// Counter snapshot.
    pub fn stats(&self) -> BridgeStats {
        snapshot(&self.metrics)
    }
}

/// Current values of a bridge's counters.
pub fn snapshot(m: &BridgeMetrics) -> BridgeStats {
    let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
    BridgeStats {
        peers: l(&m.peers),
        bytes_to_guest: l(&m.bytes_to_guest),
        bytes_from_guest: l(&m.bytes_from_guest),
        dropped_guest_closed: l(&m.dropped_guest_closed),
        dropped_on_disconnect: l(&m.dropped_on_disconnect),
    }
}
