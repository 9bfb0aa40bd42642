//! Session state shared by the server and its channels: the configuration, counters, the
//! per-session channel outboxes and the context each channel connection runs with. It sits
//! below both [`crate::server`] (which creates sessions) and [`crate::channel`] (which reads and
//! updates them), so neither imports the other's internals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::channel::Out;
use crate::input::{AgentSink, InputSink};
use crate::link::{LinkError, Linked, TicketKey, TicketPolicy};
use crate::model::DisplayModel;
use crate::wire::main::mouse_mode;

/// Image compression the display channel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCompression {
    /// plain BITMAP
    Off,
    /// LZ_RGB (BITMAP when LZ would not be smaller, or for images under 54 bytes)
    Lz,
    /// LZ4 when the client announced it, else LZ_RGB
    Lz4,
}

/// Server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 = any free port).
    pub listen: SocketAddr,
    /// Ticket (password) policy.
    pub ticket: TicketPolicy,
    /// VM name sent to clients with NAME_AND_UUID.
    pub name: Option<String>,
    /// VM UUID sent to clients with NAME_AND_UUID.
    pub uuid: Option<[u8; 16]>,
    /// Offer client (absolute) mouse mode from the start (an absolute pointer, such as a
    /// tablet, is attached to the guest). Changed at runtime with
    /// [`crate::ServerHandle::set_client_mouse_available`], as spice-server does when a tablet
    /// comes or goes.
    pub client_mouse: bool,
    /// Image compression.
    pub compression: ImageCompression,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5900)),
            ticket: TicketPolicy::Disabled,
            name: None,
            uuid: None,
            client_mouse: true,
            compression: ImageCompression::Lz,
        }
    }
}

/// Counters kept by the server (read with [`ServerHandle::stats`]).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// TCP connections accepted
    pub connections: AtomicU64,
    /// channels linked
    pub links_ok: AtomicU64,
    /// links refused (bad ticket, bad connection id, ...)
    pub links_refused: AtomicU64,
    /// connections closed for a protocol violation
    pub protocol_errors: AtomicU64,
    /// sessions started
    pub sessions: AtomicU64,
    /// sessions replaced by a new client
    pub sessions_replaced: AtomicU64,
    /// bytes sent on display channels
    pub display_bytes: Arc<AtomicU64>,
    /// display messages that carried an image
    pub images_sent: AtomicU64,
}

/// Per-session state shared by its channel connections.
pub(crate) struct Session {
    pub id: u32,
    pub cancel: watch::Sender<bool>,
    pub main_tx: Mutex<Option<mpsc::Sender<Out>>>,
    pub inputs_tx: Mutex<Option<mpsc::Sender<Out>>>,
    pub display_tx: Mutex<Option<mpsc::Sender<Out>>>,
    pub pongs: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    /// AGENT_DATA messages the server may still send the client (from AGENT_START/TOKEN)
    pub server_agent_tokens: AtomicU64,
    /// true after AGENT_START
    pub agent_started: AtomicBool,
    /// client has AGENT_CONNECTED_TOKENS
    pub agent_tokens_cap: AtomicBool,
    /// AGENT_DATA messages the client may still send (its window, minus what it sent, plus
    /// what was returned with AGENT_TOKEN).
    pub client_agent_tokens: AtomicU32,
    /// Tokens consumed and not yet returned, with the agent epoch they belong to.
    pub agent_owed: Mutex<(u64, u32)>,
    /// Bumped when a new agent connects (the client's window restarts at 10); tokens of an
    /// older epoch are not returned.
    pub agent_epoch: AtomicU64,
}

impl Session {
    /// Creates a session with id `id`.
    pub(crate) fn new(id: u32, cancel: watch::Sender<bool>, agent_window: u32) -> Self {
        Session {
            id,
            cancel,
            main_tx: Mutex::new(None),
            inputs_tx: Mutex::new(None),
            display_tx: Mutex::new(None),
            pongs: Mutex::new(HashMap::new()),
            server_agent_tokens: AtomicU64::new(0),
            agent_started: AtomicBool::new(false),
            agent_tokens_cap: AtomicBool::new(false),
            client_agent_tokens: AtomicU32::new(agent_window),
            agent_owed: Mutex::new((0, 0)),
            agent_epoch: AtomicU64::new(0),
        }
    }
}

/// The flow-control credit of one client AGENT_DATA message. Dropping it returns the credit
/// to the client (in batches, as MAIN_AGENT_TOKEN); see [`crate::input::AgentSink`].
pub struct AgentDataToken {
    session: std::sync::Weak<Session>,
    epoch: u64,
}

impl AgentDataToken {
    pub(crate) fn new(session: &Arc<Session>) -> Self {
        AgentDataToken {
            session: Arc::downgrade(session),
            epoch: session.agent_epoch.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for AgentDataToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDataToken")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Drop for AgentDataToken {
    fn drop(&mut self) {
        if let Some(s) = self.session.upgrade() {
            crate::channel::main::return_agent_token(&s, self.epoch);
        }
    }
}

pub(crate) struct Shared {
    pub config: ServerConfig,
    pub key: TicketKey,
    pub model: DisplayModel,
    pub input: Arc<dyn InputSink>,
    pub agent: Arc<dyn AgentSink>,
    pub stats: ServerStats,
    pub session: Mutex<Option<Arc<Session>>>,
    pub leds: AtomicU16,
    pub agent_connected: AtomicBool,
    pub mouse_mode: AtomicU16,
    /// Client mouse mode may be offered (an absolute pointer is attached); starts as
    /// [`ServerConfig::client_mouse`], changed by `ServerHandle::set_client_mouse_available`.
    pub client_mouse: AtomicBool,
    pub next_ping: AtomicU32,
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn supported_mouse_modes(&self) -> u16 {
        if self.client_mouse.load(Ordering::Relaxed) {
            mouse_mode::SERVER | mouse_mode::CLIENT
        } else {
            mouse_mode::SERVER
        }
    }
}

/// Context a channel connection runs with.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub session: Arc<Session>,
    pub linked: Linked,
    pub peer: SocketAddr,
}

/// Why the server could not start or an agent message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Key generation failed.
    #[error("{0}")]
    Link(#[from] LinkError),
    /// No client, or the client has not started its agent channel (AGENT_START).
    #[error("no client agent session")]
    NoAgentClient,
    /// The client has granted no more agent tokens.
    #[error("no agent tokens left")]
    NoTokens,
    /// The client is not reading fast enough (main channel outbox full).
    #[error("client outbox full")]
    Busy,
}
