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
use crate::tls::{ChannelSecurity, TlsConfig};
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
    /// QUIC for every picture at least 3×3 (LZ_RGB for smaller ones; BITMAP when not smaller)
    Quic,
    /// spice-server's `auto_glz` (QEMU's default): QUIC for photographic pictures, LZ_PLT for
    /// few-colour ones the client decodes, GLZ_RGB for the others when the client announced a
    /// GLZ window in DISPLAY_INIT (spice-gtk does; spice-html5 announces 0), else LZ_RGB
    Auto,
    /// spice-server's `auto_lz`: like [`ImageCompression::Auto`] with LZ_RGB instead of GLZ_RGB
    /// (`codec::CompressionPolicy::Auto`)
    AutoLz,
    /// spice-server's `glz`: GLZ_RGB when the client has a GLZ window (LZ_PLT for few-colour
    /// pictures), else as [`ImageCompression::Lz`]
    Glz,
}

/// When photo-like pictures may go as lossy JPEG (QEMU's `jpeg-wan-compression`, sheet
/// `spice-protocol.md` §9.7-9.8): where QUIC would be sent, JPEG (quality 85) is sent instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JpegWan {
    /// JPEG when the main channel's network test found the client's link under 10 Mbit/s, as
    /// spice-server does (`channel::main::NetTest`); until the test ends, and on a fast link,
    /// every picture is lossless.
    #[default]
    Auto,
    /// Never JPEG: every picture is lossless.
    Never,
    /// Always JPEG for photo-like pictures, whatever the link.
    Always,
}

/// When GLZ pictures are deflated with zlib on top (ZLIB_GLZ_RGB; QEMU's
/// `zlib-glz-wan-compression`): the same three values and the same link test as [`JpegWan`].
pub type ZlibGlzWan = JpegWan;

impl JpegWan {
    /// Whether the option is on for a client whose link is (`low_bandwidth`) or is not slow.
    pub fn enabled(self, low_bandwidth: bool) -> bool {
        match self {
            JpegWan::Always => true,
            JpegWan::Auto => low_bandwidth,
            JpegWan::Never => false,
        }
    }
}

/// Which areas go as video streams (QEMU's `streaming-video`; see
/// `channel::video` for the detection rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamingVideo {
    /// No streams: every picture is an image (lossless unless JPEG is allowed).
    #[default]
    Off,
    /// Areas redrawn at video rate with photographic content stream (spice-server's default).
    Filter,
    /// Every area redrawn at video rate streams, whatever its content.
    All,
}

/// A video stream codec this server encodes (QEMU's `video-codecs` entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// One baseline JPEG a frame (every Spice client plays it).
    Mjpeg,
    /// VP8 through libvpx (spice-gtk with GStreamer's vp8dec, spice-html5 where the browser
    /// has WebM/VP8): a fraction of MJPEG's bytes at the same quality.
    Vp8,
}

impl VideoCodec {
    /// The `SpiceVideoCodecType` of STREAM_CREATE and PREFERRED_VIDEO_CODEC_TYPE.
    pub fn wire_type(self) -> u8 {
        match self {
            VideoCodec::Mjpeg => crate::wire::display::VIDEO_CODEC_MJPEG,
            VideoCodec::Vp8 => crate::wire::display::VIDEO_CODEC_VP8,
        }
    }

    /// The codec of a `SpiceVideoCodecType`, if this server encodes it.
    pub fn from_wire_type(t: u8) -> Option<Self> {
        match t {
            crate::wire::display::VIDEO_CODEC_MJPEG => Some(VideoCodec::Mjpeg),
            crate::wire::display::VIDEO_CODEC_VP8 => Some(VideoCodec::Vp8),
            _ => None,
        }
    }

    /// The display channel capability a client announces to decode it (CODEC_MJPEG 9,
    /// CODEC_VP8 10).
    pub fn display_cap(self) -> u32 {
        match self {
            VideoCodec::Mjpeg => crate::wire::display::cap::CODEC_MJPEG,
            VideoCodec::Vp8 => crate::wire::display::cap::CODEC_VP8,
        }
    }

    /// The name QEMU's `video-codecs` uses.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Mjpeg => "mjpeg",
            VideoCodec::Vp8 => "vp8",
        }
    }
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
    /// Lossy JPEG for photo-like pictures (QEMU's `jpeg-wan-compression`).
    pub jpeg_wan: JpegWan,
    /// zlib over GLZ pictures (QEMU's `zlib-glz-wan-compression`).
    pub zlib_glz_wan: ZlibGlzWan,
    /// Lossy streams for areas redrawn at video rate (QEMU's `streaming-video`).
    pub streaming_video: StreamingVideo,
    /// The stream codecs, most wanted first (QEMU's `video-codecs`). A stream uses the first
    /// one the client decodes, after the client's own preference (PREFERRED_VIDEO_CODEC_TYPE).
    pub video_codecs: Vec<VideoCodec>,
    /// A stream without a new frame for this long ends (and its last frame is resent
    /// losslessly); spice-server's 1 s by default.
    pub stream_idle_timeout: std::time::Duration,
    /// Link deadline and connection limits (what an idle or slow flood may hold).
    pub limits: ConnectionLimits,
    /// A TLS port beside [`ServerConfig::listen`] (QEMU's `tls-port` with `x509-dir`).
    pub tls: Option<TlsListen>,
    /// Which channels must come over TLS or in the clear (QEMU's `tls-channel` and
    /// `plaintext-channel`); every channel may use either port by default.
    pub channel_security: ChannelSecurity,
}

/// The TLS port: where it listens and its certificate.
#[derive(Debug, Clone)]
pub struct TlsListen {
    /// Address of the TLS port (port 0 = any free port).
    pub listen: SocketAddr,
    /// Certificate and key.
    pub config: TlsConfig,
}

/// How long a connection may take to link and how many connections of each kind are kept.
///
/// Connections that have not finished the link stage (header, link message, ticket) are kept
/// apart from linked channels, so idle or slow connections can never take the slots of
/// authenticated clients:
///
/// - every connection must complete the link stage within [`link_timeout`] of being accepted,
///   or it is closed (counted in [`ServerStats::link_timeouts`]);
/// - at most [`max_pending`] connections may be in the link stage at once; when one more is
///   accepted, the *oldest* pending connection is closed to admit it
///   ([`ServerStats::pending_evicted`]). A flood of idle sockets therefore evicts its own
///   sockets, and a real client, whose link takes a few round trips, gets through unless
///   `max_pending` new connections arrive while it links;
/// - at most [`max_linked`] linked channels (every channel of every session) are kept; a link
///   beyond that is answered with the link result `SPICE_LINK_ERR_ERROR`
///   ([`ServerStats::linked_full`]). Only clients that presented a valid ticket get this far.
///
/// When `accept` fails for want of file descriptors (EMFILE/ENFILE), the oldest pending
/// connection is closed too and the accept loop backs off briefly instead of spinning
/// ([`ServerStats::accept_errors`]).
///
/// [`link_timeout`]: ConnectionLimits::link_timeout
/// [`max_pending`]: ConnectionLimits::max_pending
/// [`max_linked`]: ConnectionLimits::max_linked
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time from accept to a completed link (ticket checked and link result sent).
    pub link_timeout: std::time::Duration,
    /// Connections in the link stage (not yet authenticated) kept at once (at least 1).
    pub max_pending: usize,
    /// Linked channels kept at once, over all sessions (a session uses 4).
    pub max_linked: usize,
}

impl ConnectionLimits {
    /// Default [`ConnectionLimits::link_timeout`]: 10 s.
    pub const DEFAULT_LINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    /// Default [`ConnectionLimits::max_pending`].
    pub const DEFAULT_MAX_PENDING: usize = 1024;
    /// Default [`ConnectionLimits::max_linked`].
    pub const DEFAULT_MAX_LINKED: usize = 64;
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            link_timeout: Self::DEFAULT_LINK_TIMEOUT,
            max_pending: Self::DEFAULT_MAX_PENDING,
            max_linked: Self::DEFAULT_MAX_LINKED,
        }
    }
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
            jpeg_wan: JpegWan::Auto,
            zlib_glz_wan: ZlibGlzWan::Auto,
            streaming_video: StreamingVideo::Off,
            video_codecs: vec![VideoCodec::Mjpeg],
            stream_idle_timeout: crate::server::STREAM_IDLE_TIMEOUT,
            limits: ConnectionLimits::default(),
            tls: None,
            channel_security: ChannelSecurity::default(),
        }
    }
}

/// Counters kept by the server (read with [`crate::ServerHandle::stats`]).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// TCP connections accepted
    pub connections: AtomicU64,
    /// channels linked
    pub links_ok: AtomicU64,
    /// links refused (bad ticket, bad connection id, ...)
    pub links_refused: AtomicU64,
    /// connections closed because the link stage did not complete within the deadline
    pub link_timeouts: AtomicU64,
    /// pending (not yet linked) connections closed to admit a newer one (pool full, or no
    /// file descriptor left for `accept`)
    pub pending_evicted: AtomicU64,
    /// links refused because the linked-channel limit was reached
    pub linked_full: AtomicU64,
    /// `accept` failures (EMFILE and the like)
    pub accept_errors: AtomicU64,
    /// connections closed for a protocol violation
    pub protocol_errors: AtomicU64,
    /// connections to the TLS port
    pub tls_connections: AtomicU64,
    /// TLS handshakes that failed (the connection was closed)
    pub tls_failed: AtomicU64,
    /// links refused with NEED_SECURED / NEED_UNSECURED (channel on the wrong port)
    pub wrong_port: AtomicU64,
    /// connections upgraded to WebSocket (spice-html5)
    pub websocket_connections: AtomicU64,
    /// WebSocket upgrade requests refused (bad request, over the caps, closed mid-request)
    pub websocket_refused: AtomicU64,
    /// sessions started
    pub sessions: AtomicU64,
    /// sessions replaced by a new client
    pub sessions_replaced: AtomicU64,
    /// bytes sent on display channels
    pub display_bytes: Arc<AtomicU64>,
    /// display messages that carried an image
    pub images_sent: AtomicU64,
    /// images sent as LZ_PLT (few-colour pictures as palette indices)
    pub palette_images: AtomicU64,
    /// images sent as JPEG (lossy)
    pub jpeg_images: AtomicU64,
    /// images sent as GLZ_RGB
    pub glz_images: AtomicU64,
    /// video streams started
    pub streams: AtomicU64,
    /// of which VP8
    pub vp8_streams: AtomicU64,
    /// stream frames sent
    pub stream_frames: AtomicU64,
    /// STREAM_REPORTs received about running streams
    pub stream_reports: AtomicU64,
    /// GLZ images sent deflated with zlib (ZLIB_GLZ_RGB; counted in `glz_images` too)
    pub zlib_glz_images: AtomicU64,
    /// queued draws not sent because a later draw in a display channel's queue paints over
    /// them (a client that lags gets the newest picture sooner)
    pub draws_superseded: AtomicU64,
    /// main-channel network tests that ended (a result for the client's link)
    pub net_tests: AtomicU64,
    /// of those, links found under 10 Mbit/s (JPEG allowed with `jpeg-wan-compression=auto`)
    pub low_bandwidth_links: AtomicU64,
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
    /// The id of the session's next GLZ image: the client keeps one GLZ window a session, so a
    /// display channel that reconnects goes on from here.
    pub glz_next_id: Arc<AtomicU64>,
    /// The main channel's network test found a link under 10 Mbit/s (false until it ends).
    pub low_bandwidth: AtomicBool,
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
            glz_next_id: Arc::default(),
            low_bandwidth: AtomicBool::new(false),
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
    /// The ticket policy in force: starts as [`ServerConfig::ticket`], changed at runtime by
    /// `ServerHandle::set_password` / `expire_password`.
    pub ticket: std::sync::RwLock<TicketPolicy>,
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
    /// The pending-connection pool and linked-channel slots.
    pub admission: crate::admission::Admission,
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
    /// how the connection came (TLS, WebSocket)
    pub transport: crate::transport::Transport,
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
