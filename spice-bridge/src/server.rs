//! The server: tokio accept loop, link driver, sessions (one client per session) and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Eviction, PendingSlot};
use crate::channel::{self, ChannelError, Out};
use crate::input::{AgentSink, InputSink, LockKeys, MouseMode};
use crate::link::{
    ExpectAuth, ExpectHeader, ExpectTicket, LinkError, Linked, TicketKey, TicketPolicy,
    MAX_PASSWORD_LEN,
};
use crate::model::DisplayModel;
use crate::session::{ConnCtx, Session, Shared};
pub use crate::session::{
    ConnectionLimits, ImageCompression, JpegWan, ServerConfig, ServerError, ServerStats,
    StreamingVideo, TlsListen, VideoCodec, ZlibGlzWan,
};
use crate::tls::TlsConfig;
use crate::transport::{self, BoxedStream, Transport, TransportError};
use crate::wire::link::{link_err, LinkReply};
use crate::wire::main::mouse_mode;
use crate::wire::types::ChannelType;

/// Default [`ServerConfig::stream_idle_timeout`]: spice-server's `RED_STREAM_TIMEOUT`.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long shutdown waits for connections to end.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// First pause after an `accept` error that eviction could not relieve; it doubles up to
/// [`ACCEPT_BACKOFF_MAX`] and is reset by the next successful accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause of the accept loop after repeated `accept` errors.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Kernel accept-queue length of each listening port. `TcpListener::bind` asks for 128 here;
/// a burst of connects (a flood, or a client opening its channels while one is under way)
/// then overflows the queue and the kernel drops SYNs, which costs a real client a 1 s
/// retransmit. The kernel caps this at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening TCP socket on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets, so a restarted daemon can bind while old sockets are in TIME_WAIT).
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entry point: [`Server::start`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Binds, generates the ticket key and starts serving `model` on the current tokio runtime.
    pub async fn start(
        config: ServerConfig,
        model: DisplayModel,
        input: Arc<dyn InputSink>,
        agent: Arc<dyn AgentSink>,
    ) -> Result<ServerHandle, ServerError> {
        let key = TicketKey::generate()?;
        Self::start_with_key(config, key, model, input, agent).await
    }

    /// Like [`Server::start`] with a given ticket key.
    pub async fn start_with_key(
        config: ServerConfig,
        key: TicketKey,
        model: DisplayModel,
        input: Arc<dyn InputSink>,
        agent: Arc<dyn AgentSink>,
    ) -> Result<ServerHandle, ServerError> {
        let listener = bind_listener(config.listen)?;
        let addr = listener.local_addr()?;
        let tls_listener = match &config.tls {
            Some(t) => Some((bind_listener(t.listen)?, t.config.clone())),
            None => None,
        };
        let tls_addr = match &tls_listener {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let (shutdown, _) = watch::channel(false);
        let client_mouse = AtomicBool::new(config.client_mouse);
        let admission = Admission::new(config.limits);
        let shared = Arc::new(Shared {
            ticket: std::sync::RwLock::new(config.ticket.clone()),
            config,
            key,
            model,
            input,
            agent,
            stats: ServerStats::default(),
            session: Mutex::new(None),
            leds: AtomicU16::new(0),
            agent_connected: AtomicBool::new(false),
            mouse_mode: AtomicU16::new(mouse_mode::SERVER),
            client_mouse,
            next_ping: AtomicU32::new(1),
            shutdown,
            admission,
        });
        let l = shared.config.limits;
        info!(
            %addr,
            tls_addr = ?tls_addr,
            link_timeout = ?l.link_timeout,
            max_pending = l.max_pending,
            max_linked = l.max_linked,
            "spice server listening"
        );
        let mut tasks = vec![tokio::spawn(accept_loop(listener, None, shared.clone()))];
        if let Some((l, tls)) = tls_listener {
            tasks.push(tokio::spawn(accept_loop(l, Some(tls), shared.clone())));
        }
        Ok(ServerHandle {
            shared,
            addr,
            tls_addr,
            tasks: Mutex::new(tasks),
        })
    }
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What a password change does to a connected client (QEMU's `set_password ... connected=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenConnected {
    /// The client stays; the new password applies to the next connection.
    #[default]
    Keep,
    /// The connected client is disconnected.
    Disconnect,
    /// The change is refused while a client is connected.
    Fail,
}

/// Why a password change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Longer than a Spice client can send.
    #[error("password longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// A NUL byte would cut the ticket short.
    #[error("password contains a NUL byte")]
    Nul,
    /// `WhenConnected::Fail` and a client is connected.
    #[error("a client is connected")]
    ClientConnected,
    /// `expire_password` with ticketing disabled and no password set.
    #[error("no password is set (ticketing is disabled)")]
    NoPassword,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerHandle({})", self.addr)
    }
}

impl Drop for ServerHandle {
    /// Dropping the handle stops the server (connections close; tasks end on their own).
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
    }
}

/// A copy of the server counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// TCP connections accepted
    pub connections: u64,
    /// channels linked
    pub links_ok: u64,
    /// links refused (bad ticket, bad connection id, ...)
    pub links_refused: u64,
    /// connections closed because the link stage missed its deadline
    pub link_timeouts: u64,
    /// pending connections closed to admit a newer one (pool full or no fds)
    pub pending_evicted: u64,
    /// links refused because the linked-channel limit was reached
    pub linked_full: u64,
    /// `accept` failures (EMFILE and the like)
    pub accept_errors: u64,
    /// connections to the TLS port
    pub tls_connections: u64,
    /// TLS handshakes that failed
    pub tls_failed: u64,
    /// links refused because the channel came to the wrong port (NEED_SECURED/UNSECURED)
    pub wrong_port: u64,
    /// connections upgraded to WebSocket (spice-html5)
    pub websocket_connections: u64,
    /// WebSocket upgrade requests refused
    pub websocket_refused: u64,
    /// connections in the link stage now
    pub pending: u64,
    /// linked channels now
    pub linked: u64,
    /// connections closed for protocol violations
    pub protocol_errors: u64,
    /// sessions started
    pub sessions: u64,
    /// sessions replaced
    pub sessions_replaced: u64,
    /// display bytes sent
    pub display_bytes: u64,
    /// images sent
    pub images_sent: u64,
    /// images sent as LZ_PLT
    pub palette_images: u64,
    /// images sent as JPEG (lossy)
    pub jpeg_images: u64,
    /// images sent as GLZ_RGB
    pub glz_images: u64,
    /// video streams started
    pub streams: u64,
    /// of which VP8 streams
    pub vp8_streams: u64,
    /// stream frames sent
    pub stream_frames: u64,
    /// STREAM_REPORTs received about running streams
    pub stream_reports: u64,
    /// GLZ images sent as ZLIB_GLZ_RGB (counted in `glz_images` too)
    pub zlib_glz_images: u64,
    /// queued draws not sent because a later one paints over them
    pub draws_superseded: u64,
    /// main-channel network tests that ended
    pub net_tests: u64,
    /// links the network test found under 10 Mbit/s
    pub low_bandwidth_links: u64,
}

impl ServerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS port's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Sets the password clients must present from now on (QEMU's `set_password spice`),
    /// enabling ticketing if it was disabled. An expiry set before is kept, as in QEMU.
    /// `connected` says what happens to a client connected now.
    pub fn set_password(
        &self,
        password: &str,
        connected: WhenConnected,
    ) -> Result<(), PasswordError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong);
        }
        if password.contains('\0') {
            return Err(PasswordError::Nul);
        }
        let sh = &self.shared;
        let mut session = lock(&sh.session);
        if session.is_some() && connected == WhenConnected::Fail {
            return Err(PasswordError::ClientConnected);
        }
        {
            let mut t = sh.ticket.write().unwrap_or_else(|e| e.into_inner());
            let expires = match &*t {
                TicketPolicy::Password { expires, .. } => *expires,
                TicketPolicy::Disabled => None,
            };
            *t = TicketPolicy::Password {
                password: password.to_string(),
                expires,
            };
        }
        if connected == WhenConnected::Disconnect {
            if let Some(s) = session.take() {
                info!(session = s.id, "password changed: disconnecting the client");
                let _ = s.cancel.send(true);
            }
        }
        info!(?connected, "password changed");
        Ok(())
    }

    /// Sets when the password stops being accepted (QEMU's `expire_password spice`): `None`
    /// for never. Links after that instant are refused with PERMISSION_DENIED; a connected
    /// client stays.
    pub fn expire_password(&self, when: Option<SystemTime>) -> Result<(), PasswordError> {
        let mut t = self
            .shared
            .ticket
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match &mut *t {
            TicketPolicy::Password { expires, .. } => *expires = when,
            TicketPolicy::Disabled => return Err(PasswordError::NoPassword),
        }
        info!(expires = ?when, "password expiry changed");
        Ok(())
    }

    /// The display model being served.
    pub fn model(&self) -> &DisplayModel {
        &self.shared.model
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            connections: s.connections.load(Ordering::Relaxed),
            links_ok: s.links_ok.load(Ordering::Relaxed),
            links_refused: s.links_refused.load(Ordering::Relaxed),
            link_timeouts: s.link_timeouts.load(Ordering::Relaxed),
            pending_evicted: s.pending_evicted.load(Ordering::Relaxed),
            linked_full: s.linked_full.load(Ordering::Relaxed),
            accept_errors: s.accept_errors.load(Ordering::Relaxed),
            tls_connections: s.tls_connections.load(Ordering::Relaxed),
            tls_failed: s.tls_failed.load(Ordering::Relaxed),
            wrong_port: s.wrong_port.load(Ordering::Relaxed),
            websocket_connections: s.websocket_connections.load(Ordering::Relaxed),
            websocket_refused: s.websocket_refused.load(Ordering::Relaxed),
            pending: self.shared.admission.pending() as u64,
            linked: self.shared.admission.linked() as u64,
            protocol_errors: s.protocol_errors.load(Ordering::Relaxed),
            sessions: s.sessions.load(Ordering::Relaxed),
            sessions_replaced: s.sessions_replaced.load(Ordering::Relaxed),
            display_bytes: s.display_bytes.load(Ordering::Relaxed),
            images_sent: s.images_sent.load(Ordering::Relaxed),
            palette_images: s.palette_images.load(Ordering::Relaxed),
            jpeg_images: s.jpeg_images.load(Ordering::Relaxed),
            glz_images: s.glz_images.load(Ordering::Relaxed),
            streams: s.streams.load(Ordering::Relaxed),
            vp8_streams: s.vp8_streams.load(Ordering::Relaxed),
            stream_frames: s.stream_frames.load(Ordering::Relaxed),
            stream_reports: s.stream_reports.load(Ordering::Relaxed),
            zlib_glz_images: s.zlib_glz_images.load(Ordering::Relaxed),
            draws_superseded: s.draws_superseded.load(Ordering::Relaxed),
            net_tests: s.net_tests.load(Ordering::Relaxed),
            low_bandwidth_links: s.low_bandwidth_links.load(Ordering::Relaxed),
        }
    }

    /// True while a client session exists.
    pub fn has_client(&self) -> bool {
        lock(&self.shared.session).is_some()
    }

    /// True while a display channel is connected.
    pub fn has_display(&self) -> bool {
        lock(&self.shared.session)
            .as_ref()
            .is_some_and(|s| lock(&s.display_tx).is_some())
    }

    /// Sets the guest keyboard LEDs; the connected client is told (KEY_MODIFIERS).
    pub fn set_keyboard_leds(&self, leds: LockKeys) {
        self.shared.leds.store(leds.0, Ordering::Relaxed);
        if let Some(s) = lock(&self.shared.session).clone() {
            if let Some(tx) = lock(&s.inputs_tx).as_ref() {
                let _ = tx.try_send(channel::msg(&crate::wire::inputs::KeyModifiers {
                    modifiers: leds.0,
                }));
            }
        }
    }

    /// Whether client (absolute) mouse mode may be used: true while an absolute pointer (a
    /// tablet) is attached to the guest. As spice-server does, the connected client is told
    /// the new set of modes (MAIN_MOUSE_MODE); spice-gtk then asks for client mode if it
    /// prefers it. When client mode goes away while in use, the server falls back to server
    /// mode and the input sink is told.
    pub fn set_client_mouse_available(&self, available: bool) {
        let sh = &self.shared;
        if sh.client_mouse.swap(available, Ordering::Relaxed) == available {
            return;
        }
        if !available
            && sh
                .mouse_mode
                .compare_exchange(
                    mouse_mode::CLIENT,
                    mouse_mode::SERVER,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            sh.input.mouse_mode(MouseMode::Server);
        }
        let (supported, current) = (
            sh.supported_mouse_modes(),
            sh.mouse_mode.load(Ordering::Relaxed),
        );
        info!(
            available,
            supported, current, "client mouse mode availability changed"
        );
        if let Some(s) = lock(&sh.session).clone() {
            channel::main::mouse_mode_changed(&s, supported, current);
        }
    }

    /// The mouse mode in use.
    pub fn mouse_mode(&self) -> MouseMode {
        if self.shared.mouse_mode.load(Ordering::Relaxed) == mouse_mode::CLIENT {
            MouseMode::Client
        } else {
            MouseMode::Server
        }
    }

    /// Tells the client whether a guest agent is connected.
    pub fn set_agent_connected(&self, connected: bool) {
        self.shared
            .agent_connected
            .store(connected, Ordering::Relaxed);
        if let Some(s) = lock(&self.shared.session).clone() {
            channel::main::agent_state_changed(&s, connected);
        }
    }

    /// Whether a client is connected and has started its agent channel (AGENT_START), so
    /// agent messages sent now reach it.
    pub fn has_agent_client(&self) -> bool {
        lock(&self.shared.session)
            .as_ref()
            .is_some_and(|s| s.agent_started.load(Ordering::Relaxed))
    }

    /// Sends VDAgent stream bytes to the client (split into 2048-byte AGENT_DATA messages, each
    /// costing one client token).
    pub fn send_agent_data(&self, data: &[u8]) -> Result<(), ServerError> {
        let s = lock(&self.shared.session)
            .clone()
            .ok_or(ServerError::NoAgentClient)?;
        channel::main::send_agent_data(&s, data)
    }

    /// Sends a PING on the display channel and waits for the PONG. Because the client handles
    /// messages in order, this returns once every earlier display message has been processed.
    pub async fn display_round_trip(&self) -> Option<Duration> {
        let s = lock(&self.shared.session).clone()?;
        let id = self.shared.next_ping.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&s.pongs).insert(id, tx);
        let start = std::time::Instant::now();
        let dtx = lock(&s.display_tx).clone()?;
        dtx.send(Out::Ping(id)).await.ok()?;
        rx.await.ok()?;
        Some(start.elapsed())
    }

    /// Stops accepting, closes every connection and waits for their tasks.
    pub async fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// True for `accept` errors that mean "no file descriptor (or kernel memory) left".
fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts connections on one port (`tls` set for the TLS port) until shutdown.
async fn accept_loop(listener: TcpListener, tls: Option<TlsConfig>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tasks = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let adm = &shared.admission;
    let stats = &shared.stats;
    loop {
        tokio::select! {
            _ = until_true(&mut shutdown) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    if tls.is_some() {
                        stats.tls_connections.fetch_add(1, Ordering::Relaxed);
                    }
                    let accepted = Instant::now();
                    let (slot, evicted) = adm.admit();
                    if evicted {
                        stats.pending_evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    let (sh, tls) = (shared.clone(), tls.clone());
                    tasks.spawn(async move {
                        handle_connection(stream, tls, peer, sh, slot, accepted).await
                    });
                }
                Err(e) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    // Out of descriptors: close the oldest pending connection so the next
                    // accept (the queued client) gets its fd; pause only a moment for that
                    // task to drop its socket. Otherwise back off, so a persistent error
                    // cannot spin the loop.
                    let evicted = out_of_fds(&e) && adm.evict_oldest(Eviction::NoFds);
                    if evicted {
                        stats.pending_evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    let pause = if evicted { Duration::from_millis(1) } else { backoff };
                    if let Some(suppressed) = adm.logs.accept.allow() {
                        warn!(
                            suppressed,
                            evicted_oldest_pending = evicted,
                            "accept failed: {e}; retrying in {pause:?}"
                        );
                    }
                    tokio::time::sleep(pause).await;
                    if !evicted {
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                }
            }
        }
    }
    drop(listener);
    if let Some(s) = lock(&shared.session).take() {
        let _ = s.cancel.send(true);
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    info!("spice server stopped");
}

/// Why a connection ended before it linked.
enum EstablishError {
    /// Its transport could not be set up (TLS handshake, WebSocket upgrade).
    Transport(TransportError),
    /// The link stage failed; `true` if the peer closed or the socket failed.
    Link(LinkError, bool),
}

/// Sets up the transport of an accepted connection and runs its link stage.
async fn establish_and_link(
    tcp: TcpStream,
    tls: Option<&TlsConfig>,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(BoxedStream, Transport, Linked), EstablishError> {
    let est = transport::establish(tcp, tls, peer)
        .await
        .map_err(EstablishError::Transport)?;
    if est.transport.websocket {
        shared
            .stats
            .websocket_connections
            .fetch_add(1, Ordering::Relaxed);
    }
    let mut stream = est.stream;
    let linked = link(&mut stream, est.magic, est.transport.tls, shared)
        .await
        .map_err(|(e, closed)| EstablishError::Link(e, closed))?;
    Ok((stream, est.transport, linked))
}

/// Runs the link stage on `stream`, whose first four bytes (`magic`) were read already. On
/// failure the client has been told (reply or result) and the error is returned for logging.
async fn link(
    stream: &mut BoxedStream,
    magic: [u8; 4],
    tls: bool,
    shared: &Shared,
) -> Result<Linked, (LinkError, bool)> {
    let io_err = |_| {
        (
            LinkError::Malformed(crate::wire::WireError::Truncated {
                needed: 0,
                available: 0,
            }),
            true,
        )
    };
    let mut hb = [0u8; ExpectHeader::LEN];
    hb[..4].copy_from_slice(&magic);
    stream.read_exact(&mut hb[4..]).await.map_err(io_err)?;
    let s = match ExpectHeader.handle(&hb) {
        Ok(s) => s,
        Err(e) => {
            let _ = stream
                .write_all(&LinkReply::error(e.code()).to_bytes_with_header())
                .await;
            return Err((e, false));
        }
    };
    let mut mb = vec![0u8; s.len()];
    stream.read_exact(&mut mb).await.map_err(io_err)?;
    let security = &shared.config.channel_security;
    let (auth, reply): (ExpectAuth, Vec<u8>) = match s.handle_on(&mb, &shared.key, security, tls) {
        Ok(v) => v,
        Err(e) => {
            let _ = stream
                .write_all(&LinkReply::error(e.code()).to_bytes_with_header())
                .await;
            return Err((e, false));
        }
    };
    stream.write_all(&reply).await.map_err(io_err)?;
    let ticket_state: ExpectTicket = if auth.expects_mechanism() {
        let mut b = [0u8; ExpectAuth::LEN];
        stream.read_exact(&mut b).await.map_err(io_err)?;
        match auth.handle(&b) {
            Ok(t) => t,
            Err(e) => {
                let _ = stream.write_all(&e.code().to_le_bytes()).await;
                return Err((e, false));
            }
        }
    } else {
        auth.skip_mechanism()
    };
    let mut tb = [0u8; ExpectTicket::LEN];
    stream.read_exact(&mut tb).await.map_err(io_err)?;
    let policy = shared
        .ticket
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match ticket_state.handle(&tb, &shared.key, &policy, SystemTime::now()) {
        Ok(l) => Ok(l),
        Err(e) => {
            let _ = stream.write_all(&e.code().to_le_bytes()).await;
            Err((e, false))
        }
    }
}

fn new_session(shared: &Shared) -> Arc<Session> {
    let mut cur = lock(&shared.session);
    let mut id: u32 = rand::random();
    while id == 0 || cur.as_ref().is_some_and(|s| s.id == id) {
        id = rand::random();
    }
    let (cancel, _) = watch::channel(false);
    let s = Arc::new(Session::new(id, cancel, channel::main::AGENT_WINDOW));
    if let Some(old) = cur.replace(s.clone()) {
        info!(
            old = old.id,
            new = id,
            "new client replaces the previous session"
        );
        shared
            .stats
            .sessions_replaced
            .fetch_add(1, Ordering::Relaxed);
        let _ = old.cancel.send(true);
    }
    shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
    s
}

fn join_session(shared: &Shared, l: &Linked) -> Result<Arc<Session>, LinkError> {
    let cur = lock(&shared.session);
    match cur.as_ref() {
        Some(s) if s.id == l.connection_id => {}
        _ => return Err(LinkError::BadConnectionId(l.connection_id)),
    }
    match (l.channel_type, l.channel_id) {
        (ChannelType::Display | ChannelType::Inputs | ChannelType::Cursor, 0) => {}
        (t, id) => return Err(LinkError::ChannelNotAvailable(t.into(), id)),
    }
    cur.clone()
        .ok_or(LinkError::BadConnectionId(l.connection_id))
}

/// How the link stage of one connection ended, short of a link.
enum LinkEnd {
    TimedOut,
    Evicted(Eviction),
}

async fn handle_connection(
    tcp: TcpStream,
    tls: Option<TlsConfig>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: PendingSlot,
    accepted: Instant,
) {
    let adm = &shared.admission;
    let stats = &shared.stats;
    let timeout = adm.limits().link_timeout;
    let PendingSlot { id, mut evicted } = slot;
    let deadline = tokio::time::Instant::from_std(accepted) + timeout;
    let mut shutdown = shared.shutdown.subscribe();
    let outcome = tokio::select! {
        _ = until_true(&mut shutdown) => {
            adm.leave(id);
            return;
        }
        r = tokio::time::timeout_at(deadline, establish_and_link(tcp, tls.as_ref(), peer, &shared)) => r.map_err(|_| LinkEnd::TimedOut),
        why = &mut evicted => Err(LinkEnd::Evicted(why.unwrap_or(Eviction::PoolFull))),
    };
    // Out of the pending pool whatever happened; if it was evicted meanwhile, it goes.
    let still_pending = adm.leave(id);
    let linked = match outcome {
        Err(LinkEnd::TimedOut) => {
            stats.link_timeouts.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = adm.logs.timeout.allow() {
                warn!(%peer, suppressed, "closing connection: link not completed within {timeout:?}");
            }
            return;
        }
        Err(LinkEnd::Evicted(why)) => {
            if let Some(suppressed) = adm.logs.evicted.allow() {
                let reason = match why {
                    Eviction::PoolFull => "pending pool full",
                    Eviction::NoFds => "out of file descriptors",
                };
                warn!(
                    %peer,
                    suppressed,
                    max_pending = adm.limits().max_pending,
                    "closing the oldest pending connection to admit a new one ({reason})"
                );
            }
            return;
        }
        Ok(Err(EstablishError::Transport(e))) => {
            match e {
                TransportError::Tls(_) => stats.tls_failed.fetch_add(1, Ordering::Relaxed),
                TransportError::WebSocket(_) => {
                    stats.websocket_refused.fetch_add(1, Ordering::Relaxed)
                }
                TransportError::Io(_) => 0,
            };
            if let Some(suppressed) = adm.logs.transport.allow() {
                warn!(%peer, suppressed, "closing connection: {e}");
            }
            return;
        }
        Ok(Err(EstablishError::Link(_, true))) => {
            debug!(%peer, "connection closed during link");
            return;
        }
        Ok(Err(EstablishError::Link(e, false))) => {
            if matches!(e, LinkError::NeedSecured(_) | LinkError::NeedUnsecured(_)) {
                // the normal first step of a client that tries the plain port first
                stats.wrong_port.fetch_add(1, Ordering::Relaxed);
                info!(%peer, "link refused: {e} (the client reconnects to the other port)");
                return;
            }
            shared.stats.links_refused.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = adm.logs.refused.allow() {
                warn!(%peer, code = e.code(), suppressed, "link refused: {e}");
            }
            return;
        }
        Ok(Ok(_)) if !still_pending => {
            // evicted in the instant the link completed; counted by the evicter
            debug!(%peer, "connection evicted as its link completed");
            return;
        }
        Ok(Ok(l)) => l,
    };
    let (mut stream, transport, linked) = linked;
    // Authenticated: take a linked-channel slot, held until this channel ends.
    let Some(_linked_slot) = adm.linked_slot() else {
        stats.linked_full.fetch_add(1, Ordering::Relaxed);
        let _ = stream.write_all(&link_err::ERROR.to_le_bytes()).await;
        if let Some(suppressed) = adm.logs.linked_full.allow() {
            warn!(
                %peer,
                suppressed,
                max_linked = adm.limits().max_linked,
                "link refused: linked-channel limit reached"
            );
        }
        return;
    };
    let session = if linked.channel_type == ChannelType::Main {
        if linked.channel_id != 0 {
            let e = LinkError::ChannelNotAvailable(1, linked.channel_id);
            let _ = stream.write_all(&e.code().to_le_bytes()).await;
            shared.stats.links_refused.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "link refused: {e}");
            return;
        }
        new_session(&shared)
    } else {
        match join_session(&shared, &linked) {
            Ok(s) => s,
            Err(e) => {
                let _ = stream.write_all(&e.code().to_le_bytes()).await;
                shared.stats.links_refused.fetch_add(1, Ordering::Relaxed);
                warn!(%peer, "link refused: {e}");
                return;
            }
        }
    };
    if stream.write_all(&link_err::OK.to_le_bytes()).await.is_err() {
        return;
    }
    shared.stats.links_ok.fetch_add(1, Ordering::Relaxed);
    info!(%peer, channel = ?linked.channel_type, session = session.id, %transport, "channel linked");
    let mut cancel = session.cancel.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let ctype = linked.channel_type;
    let ctx = ConnCtx {
        shared: shared.clone(),
        session: session.clone(),
        linked,
        peer,
        transport,
    };
    let (rd, wr) = transport::split(stream);
    let run = async move {
        match ctype {
            ChannelType::Main => channel::main::run(ctx, rd, wr).await,
            ChannelType::Display => channel::display::run(ctx, rd, wr).await,
            ChannelType::Inputs => channel::inputs::run(ctx, rd, wr).await,
            ChannelType::Cursor => channel::cursor::run(ctx, rd, wr).await,
            ChannelType::Other(_) => Ok(()),
        }
    };
    let result = tokio::select! {
        r = run => r,
        _ = until_true(&mut cancel) => Ok(()),
        _ = until_true(&mut shutdown) => Ok(()),
    };
    match result {
        Ok(()) => info!(%peer, channel = ?ctype, "channel closed"),
        Err(ChannelError::Io(e)) => info!(%peer, channel = ?ctype, "channel closed: {e}"),
        Err(e) => {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, channel = ?ctype, "closing client connection: {e}");
        }
    }
    if ctype == ChannelType::Main {
        // closing the main channel ends the session (as in spice-gtk and spice-server)
        let mut cur = lock(&shared.session);
        if cur.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
            *cur = None;
        }
        drop(cur);
        let _ = session.cancel.send(true);
        if session.agent_started.load(Ordering::Relaxed) {
            shared.agent.client_gone();
        }
    }
}
