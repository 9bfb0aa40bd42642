//! A vhost-user backend for any [`VirtioDevice`], on the rust-vmm `vhost-user-backend` crate.
//!
//! [`VhostUserServer`] listens on a Unix socket and serves one frontend (VMM) at a time. Each
//! connection gets a fresh `VhostUserDaemon` (rings, memory table, event loop); when the
//! frontend disconnects, or sends something the `vhost` crate's parser or our handling refuses,
//! the connection is dropped with a log line and a counter, the device is reset, and the next
//! connection is accepted. A VMM that reconnects therefore gets a working device.
//!
//! Offered: `VIRTIO_F_VERSION_1`, the device's ring features, `VHOST_USER_F_PROTOCOL_FEATURES`;
//! protocol features `CONFIG` (QEMU's vhost-user-input-pci requires it), `MQ`, `REPLY_ACK`,
//! `CONFIGURE_MEM_SLOTS` and `BACKEND_REQ` (User-Mode Linux needs it: without it `virtio_uml`
//! asks for its ring interrupts on IRQ 0 and fails; the backend channel is kept open for the
//! connection and never used).
//!
//! Frontends connect to the public socket; each connection is relayed to the `vhost` crate's
//! handler on a private socket ([`relay`]), which trims User-Mode Linux's padded SET_MEM_TABLE.

mod relay;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Backend, Listener};
use vhost_user_backend::{
    VhostUserBackend, VhostUserDaemon, VringEpollHandler, VringRwLock, VringT,
};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::device::VirtioDevice;

type Memory = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// vhost-user layer errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VhostUserError {
    /// The socket cannot be bound.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// Socket path.
        path: PathBuf,
        /// The vhost crate's error.
        source: vhost::vhost_user::Error,
    },
    /// The per-connection daemon could not be created.
    #[error("cannot create the vhost-user daemon: {0}")]
    Daemon(vhost_user_backend::Error),
    /// Accepting a connection failed.
    #[error("accept failed: {0}")]
    Accept(vhost_user_backend::Error),
    /// The device's wake eventfd could not be added to the event loop.
    #[error("cannot register the device wake event: {0}")]
    RegisterWake(io::Error),
}

/// Counters of the vhost-user server (read with [`ServerMetrics::snapshot`]).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    connections: AtomicU64,
    clean_disconnects: AtomicU64,
    protocol_errors: AtomicU64,
    accept_errors: AtomicU64,
    config_errors: AtomicU64,
    queue_errors: AtomicU64,
    unknown_events: AtomicU64,
}

/// A snapshot of [`ServerMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Frontends accepted.
    pub connections: u64,
    /// Connections that ended by the frontend hanging up between messages.
    pub clean_disconnects: u64,
    /// Connections dropped on a malformed or refused message (or a hang-up mid-message).
    pub protocol_errors: u64,
    /// Failed accepts.
    pub accept_errors: u64,
    /// GET_CONFIG/SET_CONFIG outside the config space.
    pub config_errors: u64,
    /// Queue processing errors reported by the device.
    pub queue_errors: u64,
    /// Events from unknown sources.
    pub unknown_events: u64,
}

impl ServerMetrics {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> ServerStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            connections: l(&self.connections),
            clean_disconnects: l(&self.clean_disconnects),
            protocol_errors: l(&self.protocol_errors),
            accept_errors: l(&self.accept_errors),
            config_errors: l(&self.config_errors),
            queue_errors: l(&self.queue_errors),
            unknown_events: l(&self.unknown_events),
        }
    }

    /// Connections finished (cleanly or not).
    pub fn connections_finished(&self) -> u64 {
        let s = self.snapshot();
        s.clean_disconnects + s.protocol_errors
    }
}

/// The [`VhostUserBackend`] implementation wrapping a [`VirtioDevice`].
pub struct DeviceBackend<D: VirtioDevice> {
    device: Arc<D>,
    mem: Arc<Mutex<Option<Memory>>>,
    metrics: Arc<ServerMetrics>,
    /// Raw fds of the exit-event consumers handed to vhost-user-backend (see [`ExitFds`]).
    exit_fds: Arc<Mutex<Vec<RawFd>>>,
    /// The frontend's backend-request channel (BACKEND_REQ). Held, unused, for the
    /// connection: dropping it closes the socket, and User-Mode Linux then takes the
    /// connection as broken and removes the device.
    backend_req: Arc<Mutex<Option<Backend>>>,
}

impl<D: VirtioDevice> Clone for DeviceBackend<D> {
    fn clone(&self) -> Self {
        DeviceBackend {
            device: self.device.clone(),
            mem: self.mem.clone(),
            metrics: self.metrics.clone(),
            exit_fds: self.exit_fds.clone(),
            backend_req: self.backend_req.clone(),
        }
    }
}

impl<D: VirtioDevice> DeviceBackend<D> {
    /// Wraps `device`; counters go to `metrics`.
    pub fn new(device: Arc<D>, metrics: Arc<ServerMetrics>) -> Self {
        DeviceBackend {
            device,
            mem: Arc::new(Mutex::new(None)),
            metrics,
            exit_fds: Arc::new(Mutex::new(Vec::new())),
            backend_req: Arc::new(Mutex::new(None)),
        }
    }

    /// Epoll data value of the device's wake event (the values up to `num_queues` are the
    /// vrings and the exit event).
    pub fn wake_event_id(&self) -> u64 {
        self.device.num_queues() as u64 + 1
    }

    fn config_range(&self, offset: u32, size: usize) -> bool {
        (offset as usize)
            .checked_add(size)
            .is_some_and(|end| end <= self.device.config_size())
    }

    fn run_queue(&self, index: usize, vrings: &[VringRwLock<Memory>], mem: &GuestMemoryMmap<()>) {
        let Some(vring) = vrings.get(index) else {
            return;
        };
        let mut state = vring.get_mut();
        if !state.is_enabled() || !state.get_queue().ready() {
            return;
        }
        self.device.activate();
        match self.device.process_queue(index, state.get_queue_mut(), mem) {
            Ok(true) => {
                if let Err(e) = state.signal_used_queue() {
                    tracing::warn!(queue = index, error = %e, "vhost-user: cannot signal the guest");
                }
            }
            Ok(false) => {}
            Err(e) => {
                ServerMetrics::inc(&self.metrics.queue_errors);
                tracing::debug!(queue = index, error = %e, "vhost-user: queue processing failed");
            }
        }
    }
}

impl<D: VirtioDevice> VhostUserBackend for DeviceBackend<D> {
    type Bitmap = ();
    type Vring = VringRwLock<Memory>;

    fn num_queues(&self) -> usize {
        self.device.num_queues()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.device.max_queue_size())
    }

    fn features(&self) -> u64 {
        self.device.features() | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        self.device.ack_features(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut f = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::BACKEND_REQ;
        if self.device.config_size() > 0 {
            f |= VhostUserProtocolFeatures::CONFIG;
        }
        f
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        *self.backend_req.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    fn reset_device(&self) {
        self.device.reset();
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The handler sets the flag on each vring; the device reads it from its Queue.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let size = size as usize;
        if !self.config_range(offset, size) {
            ServerMetrics::inc(&self.metrics.config_errors);
            tracing::warn!(
                offset,
                size,
                "vhost-user: GET_CONFIG outside the config space"
            );
            return Vec::new();
        }
        let mut buf = vec![0u8; size];
        self.device.read_config(u64::from(offset), &mut buf);
        buf
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // An error here ends the connection in the vhost crate (and cloud-hypervisor panics on
        // a failed SET_CONFIG), so out-of-range bytes are dropped and counted instead.
        if !self.config_range(offset, buf.len()) {
            ServerMetrics::inc(&self.metrics.config_errors);
            tracing::warn!(
                offset,
                size = buf.len(),
                "vhost-user: SET_CONFIG outside the config space; ignored"
            );
        }
        self.device.write_config(u64::from(offset), buf);
        Ok(())
    }

    fn update_memory(&self, mem: Memory) -> io::Result<()> {
        *self.mem.lock().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // Without an exit event the vring worker threads never stop and dropping the
        // per-connection daemon would hang. vhost-user-backend 0.24 turns the consumer into a
        // raw fd for its epoll set and never closes it; its number is recorded so that
        // `ExitFds` closes it once the daemon is gone.
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC) {
            Ok(pair) => {
                self.exit_fds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(pair.0.as_raw_fd());
                Some(pair)
            }
            Err(e) => {
                tracing::error!(thread_index, error = %e, "vhost-user: cannot create the exit event");
                None
            }
        }
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: the frontend stops the device (guest reset, driver unload).
        tracing::debug!(
            queue_index,
            "vhost-user: vring stopped; resetting the device"
        );
        self.device.reset();
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Self::Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        // Errors returned from here would stop the event loop; log and count instead.
        let Some(atomic) = self.mem.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let mem = atomic.memory();
        let n = self.device.num_queues();
        if u64::from(device_event) == self.wake_event_id() {
            if let Some(ev) = self.device.wake_event() {
                // Non-blocking; EAGAIN just means another pass already consumed it.
                let _ = ev.read();
            }
            for i in 0..n {
                self.run_queue(i, vrings, &mem);
            }
        } else if usize::from(device_event) < n {
            self.run_queue(usize::from(device_event), vrings, &mem);
        } else {
            ServerMetrics::inc(&self.metrics.unknown_events);
            tracing::debug!(device_event, "vhost-user: event from an unknown source");
        }
        Ok(())
    }
}

/// Closes the exit-event consumer fds that vhost-user-backend 0.24 leaks, once per connection.
///
/// `VringEpollHandler::new` (event_loop.rs) registers `consumer.into_raw_fd()` in its epoll set
/// and keeps only the notifier: nothing ever closes the consumer, so every per-connection daemon
/// left one eventfd behind and a reconnecting (or hostile) frontend could exhaust the daemon's
/// fd limit. The fds are closed only once every epoll handler of the daemon is provably gone
/// (no strong reference left: the worker threads were stopped through the exit event and
/// joined by `VhostUserHandler::drop`, the epoll fds closed). Closing earlier could remove the
/// exit event from a live worker's epoll set and make its join hang; so if a handler were still
/// alive, or the daemon was never fully built, the fds are left open (logged) rather than risked.
///
/// Declared before the daemon in [`VhostUserServer::serve_one`], so it drops after it on every
/// path.
struct ExitFds<D: VirtioDevice> {
    fds: Arc<Mutex<Vec<RawFd>>>,
    handlers: Vec<Weak<VringEpollHandler<DeviceBackend<D>>>>,
}

impl<D: VirtioDevice> Drop for ExitFds<D> {
    fn drop(&mut self) {
        let fds = std::mem::take(&mut *self.fds.lock().unwrap_or_else(|e| e.into_inner()));
        if fds.is_empty() {
            return;
        }
        if self.handlers.is_empty() || self.handlers.iter().any(|h| h.strong_count() > 0) {
            tracing::warn!(
                count = fds.len(),
                "vhost-user: epoll handlers still alive; exit-event fds left open"
            );
            return;
        }
        for fd in fds {
            // SAFETY: `fd` is the consumer eventfd created in `DeviceBackend::exit_event` and
            // given away with `into_raw_fd` by vhost-user-backend, which stores no owner for it
            // and never closes it. Its only user, the epoll handler, has been dropped (checked
            // above), so this is the sole owner and the number cannot have been reused.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// Serves a [`VirtioDevice`] on a Unix socket, one frontend at a time.
pub struct VhostUserServer<D: VirtioDevice> {
    device: Arc<D>,
    /// Where frontends connect.
    public: std::os::unix::net::UnixListener,
    path: PathBuf,
    metrics: Arc<ServerMetrics>,
}

/// A 0700 directory for the private socket the `vhost` crate's handler accepts on. It exists
/// only while one frontend connection is set up, so a daemon killed outright leaves nothing
/// behind.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> io::Result<Self> {
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let p = base.join(format!(
                "vdi-port-{}-{:x}",
                std::process::id(),
                Self::nonce()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(PrivateDir(p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free private socket directory",
        ))
    }

    fn nonce() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    }

    fn socket(&self) -> PathBuf {
        self.0.join("backend.sock")
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl<D: VirtioDevice> std::fmt::Debug for VhostUserServer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserServer")
            .field("path", &self.path)
            .field("stats", &self.metrics.snapshot())
            .finish()
    }
}

impl<D: VirtioDevice> VhostUserServer<D> {
    /// Connects a new stream to a fresh private listener and lets `daemon` accept it; returns
    /// the relay's end. The private directory is gone again when this returns.
    fn hand_over(
        daemon: &mut VhostUserDaemon<DeviceBackend<D>>,
    ) -> Result<std::os::unix::net::UnixStream, vhost_user_backend::Error> {
        let start = vhost_user_backend::Error::StartDaemon;
        let private = PrivateDir::new().map_err(start)?;
        let mut listener = Listener::new(private.socket(), true)
            .map_err(|e| start(io::Error::other(e.to_string())))?;
        let backend = std::os::unix::net::UnixStream::connect(private.socket()).map_err(start)?;
        daemon.start(&mut listener)?;
        Ok(backend)
    }

    /// Binds `path` (an existing socket file there is replaced).
    pub fn bind(path: impl AsRef<Path>, device: Arc<D>) -> Result<Self, VhostUserError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |e: io::Error| VhostUserError::Listen {
            path: path.clone(),
            source: vhost::vhost_user::Error::SocketError(e),
        };
        if std::fs::symlink_metadata(&path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            std::fs::remove_file(&path).map_err(io_err)?;
        }
        let public = std::os::unix::net::UnixListener::bind(&path).map_err(io_err)?;
        Ok(VhostUserServer {
            device,
            public,
            path,
            metrics: Arc::new(ServerMetrics::default()),
        })
    }

    /// The server's counters (shared; stays valid while the server runs on another thread).
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics.clone()
    }

    /// Accepts one frontend and serves it until it disconnects or misbehaves; the device is
    /// reset before and after. A protocol error ends the connection, not the server: it is
    /// logged, counted, and `Ok` is returned.
    pub fn serve_one(&mut self) -> Result<(), VhostUserError> {
        self.device.reset();
        let backend = DeviceBackend::new(self.device.clone(), self.metrics.clone());
        let wake_id = backend.wake_event_id();
        let mem: Memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        // Must be declared before `daemon`: it closes the leaked exit fds after the daemon (and
        // with it every vring worker thread) is gone, on every return path.
        let mut exit_fds = ExitFds {
            fds: backend.exit_fds.clone(),
            handlers: Vec::new(),
        };
        let mut daemon = VhostUserDaemon::new("vdi-port-vhost-user".into(), backend, mem)
            .map_err(VhostUserError::Daemon)?;
        exit_fds.handlers = daemon
            .get_epoll_handlers()
            .iter()
            .map(Arc::downgrade)
            .collect();
        if let Some(ev) = self.device.wake_event() {
            for h in daemon.get_epoll_handlers() {
                h.register_listener(ev.as_raw_fd(), EventSet::IN, wake_id)
                    .map_err(VhostUserError::RegisterWake)?;
            }
        }
        let frontend = loop {
            match self.public.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    ServerMetrics::inc(&self.metrics.accept_errors);
                    return Err(VhostUserError::Accept(
                        vhost_user_backend::Error::StartDaemon(e),
                    ));
                }
            }
        };
        // The handler's end: connect (queued on the bound private listener), then let the
        // daemon accept it.
        let accepted = Self::hand_over(&mut daemon);
        let backend = match accepted {
            Ok(b) => b,
            Err(e) => {
                ServerMetrics::inc(&self.metrics.accept_errors);
                return Err(VhostUserError::Accept(e));
            }
        };
        let relay = match relay::spawn(frontend, backend) {
            Ok(r) => r,
            Err(e) => {
                ServerMetrics::inc(&self.metrics.accept_errors);
                return Err(VhostUserError::Accept(
                    vhost_user_backend::Error::StartDaemon(e),
                ));
            }
        };
        ServerMetrics::inc(&self.metrics.connections);
        tracing::info!(path = %self.path.display(), "vhost-user: frontend connected");
        let result = daemon.wait();
        let relay_error = relay.finish();
        // Dropping the daemon stops and joins its event-loop threads (VhostUserHandler::drop
        // sends the exit event and joins); then the leaked exit fds are closed and the device
        // goes back to power-on state before anyone sees the connection as finished.
        drop(daemon);
        drop(exit_fds);
        self.device.reset();
        if let Some(e) = relay_error {
            ServerMetrics::inc(&self.metrics.protocol_errors);
            tracing::warn!(error = %e, "vhost-user: connection dropped");
            return Ok(());
        }
        match result {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected,
            )) => {
                ServerMetrics::inc(&self.metrics.clean_disconnects);
                tracing::info!("vhost-user: frontend disconnected");
            }
            Err(e) => {
                ServerMetrics::inc(&self.metrics.protocol_errors);
                tracing::warn!(error = %e, "vhost-user: connection dropped");
            }
        }
        Ok(())
    }

    /// Serves frontends one after another, forever. Accept failures back off (1 s doubling to
    /// 64 s); only errors that make further service impossible are returned.
    pub fn run(mut self) -> Result<(), VhostUserError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.serve_one() {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(VhostUserError::Accept(e)) => {
                    tracing::warn!(error = %e, ?backoff, "vhost-user: accept failed");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(64));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Binds `path` and serves `device` to one frontend after another (blocking; run it on its own
/// thread). Returns only on an error that stops the service.
///
/// ```no_run
/// use std::sync::Arc;
/// use vdi_port::input::{InputDevice, InputKind, InputOptions};
///
/// let tablet = Arc::new(InputDevice::new(InputKind::Tablet, InputOptions::default()).unwrap());
/// let handle = tablet.handle(); // give this to the Spice server
/// std::thread::spawn(move || vdi_port::vhost_user::serve("/run/spice-rs/tablet.sock", tablet));
/// ```
pub fn serve<D: VirtioDevice>(
    path: impl AsRef<Path>,
    device: Arc<D>,
) -> Result<(), VhostUserError> {
    VhostUserServer::bind(path, device)?.run()
}
