//! The server side of the agent channel, between the Spice main channel and the guest's VDI
//! port (`com.redhat.spice.0` on a `vdi_port::console` device), run as spice-server runs it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, info, warn};
use vdi_port::console::{PortError, PortEvent, PortHandle};

use super::wire::{self, cap, msg, ChunkStream, MonitorConfig, MsgStream, StreamError};
use crate::input::{
    AgentDataError, AgentDataToken, AgentSink, Buttons, InputSink, KeyEvent, LockKeys, MouseButton,
    MouseMode,
};
use crate::session::ServerError;
use crate::ServerHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Default largest VDAgent message accepted from either side (data bytes). Clipboards are the
/// big ones; spice-gtk's default clipboard limit is 100 MiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 128 * 1024 * 1024;
/// Client messages the server reads itself (MONITORS_CONFIG with 256 monitors and their
/// physical sizes, capabilities) are collected up to this size.
const CLIENT_COLLECT: usize = 8 * 1024;
/// Agent messages the server reads itself (capabilities) are collected up to this size.
const AGENT_COLLECT: usize = 1024;
/// Client chunks waiting for the guest. The token window (10) keeps a well-behaved client far
/// below it; more means the client ignored flow control.
const MAX_CLIENT_QUEUE: usize = 32;
/// How long the task waits before retrying when the client has no tokens or a full outbox.
const RETRY: Duration = Duration::from_millis(5);

/// Receives the client's monitor layout (VD_AGENT_MONITORS_CONFIG), e.g. to write it into the
/// QXL device's client monitors config. Called on a server task; must not block for long.
///
/// As spice-server does, the bridge asks [`takes_monitors`](Self::takes_monitors) when a
/// client MONITORS_CONFIG begins: if the display takes it, the message goes to
/// [`client_monitors`](Self::client_monitors) only; otherwise it goes to the agent only (which
/// then sets the guest's resolution itself).
pub trait MonitorsSink: Send + Sync {
    /// Whether the display can take a client monitors config now (a QXL guest driver that
    /// unmasked the CLIENT_MONITORS_CONFIG interrupt).
    fn takes_monitors(&self) -> bool;
    /// The client's monitors, in display order (disabled ones have width or height 0).
    fn client_monitors(&self, monitors: &[MonitorConfig]);
}

/// Options of an [`AgentBridge`].
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Largest VDAgent message (data bytes) accepted from the client or the agent.
    pub max_message: u32,
    /// Pieces (≤ 2048 bytes each) of agent output waiting for the client; while the client
    /// lags, the bridge stops reading the port and the guest's writes block.
    pub to_client_backlog: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            max_message: DEFAULT_MAX_MESSAGE,
            to_client_backlog: 64,
        }
    }
}

#[derive(Debug, Default)]
struct Metrics {
    agent_connects: AtomicU64,
    agent_disconnects: AtomicU64,
    client_messages: AtomicU64,
    client_bytes: AtomicU64,
    client_errors: AtomicU64,
    client_dropped_no_agent: AtomicU64,
    client_held_no_agent: AtomicU64,
    agent_messages: AtomicU64,
    agent_bytes_to_client: AtomicU64,
    agent_dropped_no_client: AtomicU64,
    agent_server_port_messages: AtomicU64,
    agent_protocol_errors: AtomicU64,
    monitors_configs: AtomicU64,
    mouse_states: AtomicU64,
}

/// Counters of an [`AgentBridge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentStats {
    /// Times the guest agent opened the port.
    pub agent_connects: u64,
    /// Times it went away (close, reset, or a stream reset after a protocol error).
    pub agent_disconnects: u64,
    /// Client VDAgent messages seen.
    pub client_messages: u64,
    /// Client agent bytes forwarded to the guest.
    pub client_bytes: u64,
    /// Client agent streams refused as malformed (the client was dropped).
    pub client_errors: u64,
    /// Client AGENT_DATA dropped because no agent was connected and it continued a message
    /// meant for the agent that left.
    pub client_dropped_no_agent: u64,
    /// Client AGENT_DATA held while no agent was connected, for the next agent.
    pub client_held_no_agent: u64,
    /// Agent messages on the client port.
    pub agent_messages: u64,
    /// Agent bytes sent to the client.
    pub agent_bytes_to_client: u64,
    /// Agent messages dropped because no client had started its agent channel.
    pub agent_dropped_no_client: u64,
    /// Agent messages on the server port (spice-server ignores them too).
    pub agent_server_port_messages: u64,
    /// Agent streams reset for a protocol error.
    pub agent_protocol_errors: u64,
    /// Client MONITORS_CONFIG messages the [`MonitorsSink`] took (the agent did not get
    /// them).
    pub monitors_configs: u64,
    /// MOUSE_STATE messages written to the agent.
    pub mouse_states: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// State the main channel's callbacks touch (client → guest direction).
struct ClientSide {
    stream: MsgStream,
    /// Whole VDI chunks for the guest, with the client's flow-control token. Bounded by
    /// [`MAX_CLIENT_QUEUE`]; while no agent is connected it holds the client's new messages
    /// for the next agent (their tokens come back only once delivered, so a client that
    /// respects its tokens cannot overflow it).
    queue: VecDeque<(Vec<u8>, Option<AgentDataToken>)>,
    /// The agent left while the client was in the middle of a message: the rest of that
    /// message is for nobody and is dropped up to the next message boundary.
    skip_stale: bool,
    /// The message in progress is a MONITORS_CONFIG the display takes: not forwarded.
    intercept: bool,
}

/// The agent channel between the Spice server and the guest agent's VDI port.
///
/// * Client → agent: each AGENT_DATA becomes one chunk on the client port; its token goes back
///   to the client only once the chunk is in the port's buffer. MONITORS_CONFIG goes to the
///   [`MonitorsSink`] (the QXL device) instead when it takes it, as spice-server intercepts
///   it (spice-vdagentd also refuses spice-gtk's MONITORS_CONFIG with physical sizes, so the
///   agent path is for displays that cannot take it); the client's stream is checked message
///   by message, and a malformed one drops the client.
/// * Agent → client: the port's byte stream is split into chunks and messages; client-port
///   messages go to the client as AGENT_DATA of at most 2048 bytes, each holding bytes of one
///   message only; server-port messages are read and dropped. ANNOUNCE_CAPABILITIES is
///   tracked: an agent with MOUSE_STATE makes client mouse mode available
///   ([`mouse_available`](Self::mouse_available)).
/// * The guest opening the port is AGENT_CONNECTED(_TOKENS) for the client, closing it (or a
///   driver reset) AGENT_DISCONNECTED; partial messages are discarded then (the rest of a
///   client message cut by the disconnect included). Whole client messages that arrive while
///   no agent is there are held, bounded, for the next agent. A malformed agent
///   stream is logged and counted, and reset: the host side of the port closes (the agent
///   reads EOF and reopens the port), then opens again once the guest has closed it.
/// * MOUSE_STATE for client mouse mode goes on the server port, coalesced (only the latest
///   position waits), ahead of client data.
///
/// Build it, pass it to [`crate::Server::start`] as the agent sink, then spawn
/// [`run`](Self::run) with the port and the server handle.
pub struct AgentBridge {
    client: Mutex<ClientSide>,
    mouse: Mutex<Option<Vec<u8>>>,
    connected: AtomicBool,
    agent_mouse: AtomicBool,
    wake: Arc<Notify>,
    monitors: Option<Arc<dyn MonitorsSink>>,
    options: AgentOptions,
    metrics: Metrics,
}

impl std::fmt::Debug for AgentBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBridge")
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish()
    }
}

/// The guest → client half, owned by [`AgentBridge::run`].
struct GuestSide {
    chunks: ChunkStream,
    client_port: MsgStream,
    server_port: MsgStream,
    fwd: Forward,
    /// The rest of a chunk being written to the port, with its client token.
    partial: Vec<u8>,
    partial_token: Option<AgentDataToken>,
    /// The host side was closed after a protocol error; it reopens when the guest closes.
    resetting: bool,
}

/// Agent output on its way to the client.
#[derive(Default)]
struct Forward {
    forwarding: bool,
    piece: Vec<u8>,
    backlog: VecDeque<Vec<u8>>,
    caps: Option<Vec<u32>>,
}

impl GuestSide {
    fn new(max_message: u32) -> Self {
        GuestSide {
            // spice-vdagentd writes each message as one chunk of any size, so a chunk may be
            // as large as a message plus its header.
            chunks: ChunkStream::new(max_message.saturating_add(wire::MSG_HEADER_SIZE as u32)),
            client_port: MsgStream::new(max_message, AGENT_COLLECT),
            server_port: MsgStream::new(max_message, 0),
            fwd: Forward::default(),
            partial: Vec::new(),
            partial_token: None,
            resetting: false,
        }
    }

    fn reset_streams(&mut self) {
        self.chunks.reset();
        self.client_port.reset();
        self.server_port.reset();
        self.fwd = Forward::default();
        self.partial.clear();
        self.partial_token = None;
    }
}

impl AgentBridge {
    /// A bridge; `monitors` receives the client's MONITORS_CONFIG.
    pub fn new(options: AgentOptions, monitors: Option<Arc<dyn MonitorsSink>>) -> Arc<Self> {
        Arc::new(AgentBridge {
            client: Mutex::new(ClientSide {
                stream: MsgStream::new(options.max_message, CLIENT_COLLECT),
                queue: VecDeque::new(),
                skip_stale: false,
                intercept: false,
            }),
            mouse: Mutex::new(None),
            connected: AtomicBool::new(false),
            agent_mouse: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            monitors,
            options,
            metrics: Metrics::default(),
        })
    }

    /// Whether a guest agent has the port open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether client mouse mode can go through the agent: an agent is connected and announced
    /// VD_AGENT_CAP_MOUSE_STATE.
    pub fn mouse_available(&self) -> bool {
        self.is_connected() && self.agent_mouse.load(Ordering::Relaxed)
    }

    /// Queues a MOUSE_STATE (agent button masks) for the agent, replacing one not yet written.
    /// Returns false (and does nothing) when the agent cannot take it.
    pub fn mouse_state(&self, x: u32, y: u32, buttons: u32, display: u8) -> bool {
        if !self.mouse_available() {
            return false;
        }
        let m = wire::message(msg::MOUSE_STATE, &wire::mouse_state(x, y, buttons, display));
        *lock(&self.mouse) = Some(wire::chunk(wire::VDP_SERVER_PORT, &m));
        self.wake.notify_one();
        true
    }

    /// Counter snapshot.
    pub fn stats(&self) -> AgentStats {
        let m = &self.metrics;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AgentStats {
            agent_connects: l(&m.agent_connects),
            agent_disconnects: l(&m.agent_disconnects),
            client_messages: l(&m.client_messages),
            client_bytes: l(&m.client_bytes),
            client_errors: l(&m.client_errors),
            client_dropped_no_agent: l(&m.client_dropped_no_agent),
            client_held_no_agent: l(&m.client_held_no_agent),
            agent_messages: l(&m.agent_messages),
            agent_bytes_to_client: l(&m.agent_bytes_to_client),
            agent_dropped_no_client: l(&m.agent_dropped_no_client),
            agent_server_port_messages: l(&m.agent_server_port_messages),
            agent_protocol_errors: l(&m.agent_protocol_errors),
            monitors_configs: l(&m.monitors_configs),
            mouse_states: l(&m.mouse_states),
        }
    }

    /// Serves the port: opens its host side and moves data both ways until the task is
    /// dropped. Never blocks a thread; waits on the port's notify and the client's tokens.
    pub async fn run(self: Arc<Self>, port: PortHandle, server: Arc<ServerHandle>) {
        let wake = self.wake.clone();
        port.set_notify(move || wake.notify_one());
        port.set_host_open(true);
        let mut g = GuestSide::new(self.options.max_message);
        loop {
            // Guest → client: read port events while the backlog has room. When it fills, the
            // port may still hold events whose notification this task has already taken, so
            // it must come back to them without waiting for another one.
            let mut more = false;
            loop {
                if g.fwd.backlog.len() >= self.options.to_client_backlog.max(1) {
                    more = true;
                    break;
                }
                let Some(ev) = port.recv() else {
                    break;
                };
                match ev {
                    PortEvent::Opened => self.agent_opened(&mut g, &server),
                    PortEvent::Closed => self.agent_closed(&mut g, &server, &port),
                    PortEvent::Data(d) => self.guest_data(&mut g, &d, &server, &port),
                }
            }
            let blocked = self.flush_to_client(&mut g, &server);
            if self.is_connected() {
                // Without an agent the client queue waits (held for the next one).
                self.write_to_guest(&mut g, &port);
            }
            if more && !blocked {
                // The backlog went out: read on at once.
                tokio::task::yield_now().await;
            } else if blocked {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
            } else {
                self.wake.notified().await;
            }
        }
    }

    fn agent_opened(&self, g: &mut GuestSide, server: &ServerHandle) {
        if g.resetting {
            return;
        }
        g.reset_streams();
        // The client queue keeps what the client sent while no agent was there.
        *lock(&self.mouse) = None;
        self.agent_mouse.store(false, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        inc(&self.metrics.agent_connects);
        info!("agent connected");
        server.set_agent_connected(true);
    }

    fn agent_gone(&self, g: &mut GuestSide, server: &ServerHandle) {
        g.reset_streams();
        // The client's stream is not reset here: chunks it sent before it heard
        // AGENT_DISCONNECTED may still arrive mid-message. The rest of such a message is
        // dropped; whole messages after it are held for the next agent. The stream restarts
        // at the client's next AGENT_START.
        let mut c = lock(&self.client);
        c.queue.clear();
        c.skip_stale = !c.stream.at_boundary();
        drop(c);
        *lock(&self.mouse) = None;
        self.agent_mouse.store(false, Ordering::Relaxed);
        if self.connected.swap(false, Ordering::Relaxed) {
            inc(&self.metrics.agent_disconnects);
            info!("agent disconnected");
            server.set_agent_connected(false);
        }
    }

    fn agent_closed(&self, g: &mut GuestSide, server: &ServerHandle, port: &PortHandle) {
        self.agent_gone(g, server);
        if g.resetting {
            g.resetting = false;
            port.set_host_open(true);
        }
    }

    fn protocol_error(
        &self,
        g: &mut GuestSide,
        server: &ServerHandle,
        port: &PortHandle,
        e: StreamError,
    ) {
        inc(&self.metrics.agent_protocol_errors);
        warn!(error = %e, "agent stream out of sync; resetting the agent port");
        self.agent_gone(g, server);
        g.resetting = true;
        port.set_host_open(false);
    }

    fn guest_data(&self, g: &mut GuestSide, data: &[u8], server: &ServerHandle, port: &PortHandle) {
        if g.resetting || !self.is_connected() {
            return;
        }
        let GuestSide {
            chunks,
            client_port,
            server_port,
            fwd,
            ..
        } = g;
        let m = &self.metrics;
        let r = chunks.feed(data, &mut |p, piece| {
            if p == wire::VDP_SERVER_PORT {
                return server_port.feed(piece, &mut |mp| {
                    if mp.last {
                        inc(&m.agent_server_port_messages);
                        debug!(
                            type_ = mp.header.type_,
                            "agent message on the server port ignored"
                        );
                    }
                });
            }
            client_port.feed(piece, &mut |mp| {
                if mp.first {
                    fwd.forwarding = server.has_agent_client();
                    inc(&m.agent_messages);
                    if !fwd.forwarding {
                        inc(&m.agent_dropped_no_client);
                    }
                }
                if fwd.forwarding {
                    let mut raw = mp.raw;
                    while !raw.is_empty() {
                        let take = (wire::VD_AGENT_MAX_DATA_SIZE - fwd.piece.len()).min(raw.len());
                        fwd.piece.extend_from_slice(&raw[..take]);
                        raw = &raw[take..];
                        if fwd.piece.len() == wire::VD_AGENT_MAX_DATA_SIZE {
                            fwd.backlog.push_back(std::mem::take(&mut fwd.piece));
                        }
                    }
                    if mp.last && !fwd.piece.is_empty() {
                        fwd.backlog.push_back(std::mem::take(&mut fwd.piece));
                    }
                }
                if mp.last && mp.header.type_ == msg::ANNOUNCE_CAPABILITIES {
                    fwd.caps = mp.whole.and_then(wire::parse_caps).map(|(_, w)| w);
                }
            })
        });
        if let Some(caps) = g.fwd.caps.take() {
            let mouse = wire::has_cap(&caps, cap::MOUSE_STATE);
            if self.agent_mouse.swap(mouse, Ordering::Relaxed) != mouse {
                info!(mouse, "agent capabilities: client mouse through the agent");
            }
        }
        if let Err(e) = r {
            self.protocol_error(g, server, port, e);
        }
    }

    /// Sends the backlog to the client; returns true when it had to stop for tokens or a full
    /// outbox (the caller retries shortly).
    fn flush_to_client(&self, g: &mut GuestSide, server: &ServerHandle) -> bool {
        while let Some(p) = g.fwd.backlog.front() {
            match server.send_agent_data(p) {
                Ok(()) => {
                    self.metrics
                        .agent_bytes_to_client
                        .fetch_add(p.len() as u64, Ordering::Relaxed);
                    g.fwd.backlog.pop_front();
                }
                Err(ServerError::NoAgentClient) => {
                    // The client left mid-message; the rest is for nobody.
                    g.fwd.backlog.clear();
                }
                Err(_) => return true,
            }
        }
        false
    }

    fn write_to_guest(&self, g: &mut GuestSide, port: &PortHandle) {
        loop {
            if g.partial.is_empty() {
                if let Some(m) = lock(&self.mouse).take() {
                    inc(&self.metrics.mouse_states);
                    g.partial = m;
                    g.partial_token = None;
                } else if let Some((bytes, token)) = lock(&self.client).queue.pop_front() {
                    g.partial = bytes;
                    g.partial_token = token;
                } else {
                    return;
                }
            }
            match port.write(&g.partial) {
                Ok(0) => return,
                Ok(n) => {
                    g.partial.drain(..n);
                    if g.partial.is_empty() {
                        // Dropping the token gives the client its credit back.
                        g.partial_token = None;
                    }
                }
                Err(PortError::GuestClosed) => {
                    g.partial.clear();
                    g.partial_token = None;
                    return;
                }
                Err(e) => {
                    debug!(error = %e, "agent port write refused");
                    return;
                }
            }
        }
    }
}

impl AgentSink for AgentBridge {
    fn client_started(&self) {
        // A (re)started client agent session begins at a message boundary.
        let mut c = lock(&self.client);
        c.stream.reset();
        c.skip_stale = false;
        c.intercept = false;
    }

    fn client_data(&self, data: &[u8], token: AgentDataToken) -> Result<(), AgentDataError> {
        let mut monitors: Option<Option<Vec<MonitorConfig>>> = None;
        let mut messages = 0u64;
        let connected = self.is_connected();
        // The bytes for the agent: everything but MONITORS_CONFIG the display takes and, with
        // no agent there, the stale tail of a message for the one that left.
        let mut out = Vec::with_capacity(data.len());
        let mut stale = 0u64;
        let sink = self.monitors.as_deref();
        let mut c = lock(&self.client);
        let ClientSide {
            stream,
            skip_stale,
            intercept,
            ..
        } = &mut *c;
        let r = stream.feed(data, &mut |p| {
            if p.first {
                messages += 1;
                *intercept = p.header.type_ == msg::MONITORS_CONFIG
                    && sink.is_some_and(MonitorsSink::takes_monitors);
            }
            if p.last && *intercept {
                monitors = Some(p.whole.and_then(wire::parse_monitors_config));
            }
            if !connected && *skip_stale {
                *skip_stale = !p.last;
                stale += u64::from(p.last);
            } else if !*intercept {
                out.extend_from_slice(p.raw);
            }
        });
        self.metrics
            .client_messages
            .fetch_add(messages, Ordering::Relaxed);
        if let Err(e) = r {
            c.stream.reset();
            inc(&self.metrics.client_errors);
            warn!(error = %e, "client agent stream malformed; dropping the client");
            return Err(AgentDataError::Malformed(e.to_string()));
        }
        if matches!(monitors, Some(None)) {
            c.stream.reset();
            inc(&self.metrics.client_errors);
            warn!("client MONITORS_CONFIG malformed; dropping the client");
            return Err(AgentDataError::Malformed("MONITORS_CONFIG".into()));
        }
        let bytes = &out[..];
        if stale > 0 {
            // The tail of a message for the agent that left: dropped.
            inc(&self.metrics.client_dropped_no_agent);
        }
        if !bytes.is_empty() {
            if c.queue.len() >= MAX_CLIENT_QUEUE {
                inc(&self.metrics.client_errors);
                return Err(AgentDataError::Overflow);
            }
            if !connected {
                inc(&self.metrics.client_held_no_agent);
            }
            self.metrics
                .client_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            c.queue
                .push_back((wire::chunk(wire::VDP_CLIENT_PORT, bytes), Some(token)));
            self.wake.notify_one();
        }
        // Otherwise nothing is for the agent and the token goes back as it drops here.
        drop(c);
        if let Some(Some(m)) = monitors {
            inc(&self.metrics.monitors_configs);
            if let Some(sink) = &self.monitors {
                sink.client_monitors(&m);
            }
        }
        Ok(())
    }

    fn client_gone(&self) {
        let mut c = lock(&self.client);
        c.stream.reset();
        c.queue.clear();
        c.skip_stale = false;
        c.intercept = false;
        if self.is_connected() {
            let m = wire::message(msg::CLIENT_DISCONNECTED, &[]);
            c.queue
                .push_back((wire::chunk(wire::VDP_SERVER_PORT, &m), None));
            self.wake.notify_one();
        }
    }
}

const MODE_SERVER: u8 = 0;
const MODE_CLIENT: u8 = 1;

/// An [`InputSink`] that sends client-mode pointer events to the agent (MOUSE_STATE) while it
/// can take them, as spice-server does with `agent-mouse=on`, and everything else to `inner`
/// (the guest's keyboard, tablet and mouse devices).
pub struct AgentMouseInput {
    inner: Arc<dyn InputSink>,
    agent: Arc<AgentBridge>,
    mode: AtomicU8,
    last: Mutex<(u32, u32, u8)>,
}

impl AgentMouseInput {
    /// Routes client-mode pointer events to `agent` when possible, the rest to `inner`.
    pub fn new(inner: Arc<dyn InputSink>, agent: Arc<AgentBridge>) -> Self {
        AgentMouseInput {
            inner,
            agent,
            mode: AtomicU8::new(MODE_SERVER),
            last: Mutex::new((0, 0, 0)),
        }
    }

    /// Spice button-state bits (LEFT 1 ...) as agent masks (LEFT 1<<1 ...).
    fn agent_mask(buttons: u16) -> u32 {
        u32::from(buttons & 0x7f) << 1
    }

    fn client_mode(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == MODE_CLIENT
    }
}

impl InputSink for AgentMouseInput {
    fn key(&self, event: KeyEvent) {
        self.inner.key(event);
    }

    fn lock_keys(&self, keys: LockKeys) {
        self.inner.lock_keys(keys);
    }

    fn mouse_motion(&self, dx: i32, dy: i32, buttons: Buttons) {
        self.inner.mouse_motion(dx, dy, buttons);
    }

    fn mouse_position(&self, x: u32, y: u32, display: u8, buttons: Buttons) {
        *lock(&self.last) = (x, y, display);
        if !(self.client_mode()
            && self
                .agent
                .mouse_state(x, y, Self::agent_mask(buttons.0), display))
        {
            self.inner.mouse_position(x, y, display, buttons);
        }
    }

    fn mouse_button(&self, button: MouseButton, pressed: bool, buttons: Buttons) {
        if self.client_mode() && self.agent.mouse_available() {
            let bit: u16 = match button {
                MouseButton::Left => 1,
                MouseButton::Middle => 2,
                MouseButton::Right => 4,
                MouseButton::WheelUp => 8,
                MouseButton::WheelDown => 16,
                MouseButton::Side => 32,
                MouseButton::Extra => 64,
            };
            // The mask is the state after the event; make it agree with the event itself.
            let mask = if pressed {
                buttons.0 | bit
            } else {
                buttons.0 & !bit
            };
            let (x, y, d) = *lock(&self.last);
            if self.agent.mouse_state(x, y, Self::agent_mask(mask), d) {
                return;
            }
        }
        self.inner.mouse_button(button, pressed, buttons);
    }

    fn mouse_mode(&self, mode: MouseMode) {
        self.mode.store(
            if mode == MouseMode::Client {
                MODE_CLIENT
            } else {
                MODE_SERVER
            },
            Ordering::Relaxed,
        );
        self.inner.mouse_mode(mode);
    }
}
