//! Channel connections after the link: framing (data headers, size cap before buffering), the
//! reader/writer pair every channel runs, and one module per channel.
//!
//! Each connection runs two futures in one task: a reader that decodes client messages and
//! handles them (replies go into a bounded outbox), and a writer that drains the outbox and, for
//! display and cursor channels, the channel's feed from the display model. Whichever ends first
//! ends the connection; so does the session's cancel signal.

pub mod cursor;
pub mod display;
pub(crate) mod frames;
pub mod inputs;
pub mod main;
pub(crate) mod pending;
pub(crate) mod video;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::wire::base::{BaseClientMessage, SetAck};
use crate::wire::header::HeaderKind;
use crate::wire::{Message, WireError};

/// The server's multimedia clock in milliseconds (monotonic, from the first use): MAIN_INIT
/// and MULTI_MEDIA_TIME set the client's clock from it, stream frames are stamped with it.
pub(crate) fn mm_time() -> u32 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // Wraps after 49 days, as the u32 on the wire does.
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u32
}

/// Messages the outbox can hold before the client counts as not reading.
pub const OUTBOX_LEN: usize = 256;
/// ACK window requested on display and cursor channels (spice-server's narrow window).
pub const ACK_WINDOW: u32 = 20;
/// ACK window of a client on a slow link (spice-server's wide window: fewer round trips
/// where each costs more).
pub const WIDE_ACK_WINDOW: u32 = 40;

/// The ACK window for a display or cursor channel of `session`: as spice-server, the wide one
/// for a client the main channel's network test found on a slow link.
pub(crate) fn ack_window(session: &crate::session::Session) -> u32 {
    if session
        .low_bandwidth
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        WIDE_ACK_WINDOW
    } else {
        ACK_WINDOW
    }
}

/// Why a channel connection was closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A message did not decode.
    #[error("malformed message type {msg_type}: {err}")]
    Malformed {
        /// message type
        msg_type: u16,
        /// decode error
        err: WireError,
    },
    /// A message larger than this channel accepts (checked before buffering).
    #[error("message type {msg_type} of {size} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// message type
        msg_type: u16,
        /// announced size
        size: u32,
        /// cap
        max: u32,
    },
    /// A message type this channel does not accept.
    #[error("unknown message type {0}")]
    Unknown(u16),
    /// A message that is valid but not now.
    #[error("out-of-order message: {0}")]
    OutOfOrder(String),
    /// Sub-message lists are not accepted from clients.
    #[error("sub-message list not accepted")]
    SubList,
    /// The outbox is full: the client sends requests but does not read replies.
    #[error("client is not reading (outbox full)")]
    NotReading,
}

/// An item for a connection's writer.
#[derive(Debug)]
pub(crate) enum Out {
    /// A message to send.
    Msg(u16, Vec<u8>),
    /// The client's DISPLAY_INIT (display channel only).
    DisplayInit(crate::wire::display::DisplayInit),
    /// The client's PREFERRED_COMPRESSION (display channel only).
    Compression(u8),
    /// The client's STREAM_REPORT (display channel only).
    StreamReport(crate::wire::display::StreamReport),
    /// The client's PREFERRED_VIDEO_CODEC_TYPE list (display channel only).
    VideoCodecs(Vec<u8>),
    /// The client sent ACK (one window's worth of messages processed).
    Ack,
    /// Send a PING with this id (round-trip probes).
    Ping(u32),
}

/// Encodes a message for the outbox.
pub(crate) fn msg<M: Message>(m: &M) -> Out {
    Out::Msg(M::TYPE, crate::wire::to_vec(m))
}

/// Pushes to the outbox without waiting.
pub(crate) fn push(out: &mpsc::Sender<Out>, item: Out) -> Result<(), ChannelError> {
    out.try_send(item).map_err(|_| ChannelError::NotReading)
}

/// Frames and writes messages.
pub(crate) struct MsgWriter<W> {
    w: BufWriter<W>,
    kind: HeaderKind,
    serial: u64,
    bytes: Arc<AtomicU64>,
    /// messages sent since SET_ACK minus acknowledged ones
    pub unacked: u32,
    /// true once SET_ACK was sent
    pub acks: bool,
    /// the window SET_ACK asked for
    ack_window: u32,
    /// one write per message, below any buffer (see [`MsgWriter::one_write_per_message`])
    per_message: bool,
}

impl<W: AsyncWrite + Unpin> MsgWriter<W> {
    pub(crate) fn new(w: W, kind: HeaderKind, bytes: Arc<AtomicU64>) -> Self {
        MsgWriter {
            w: BufWriter::with_capacity(64 * 1024, w),
            kind,
            serial: 0,
            bytes,
            unacked: 0,
            acks: false,
            ack_window: ACK_WINDOW,
            per_message: false,
        }
    }

    /// Hands each message to the stream in one write of its own, never sharing a write with
    /// another message. Over TLS a write becomes its own records, so no record holds the
    /// start of a next message: spice-gtk 0.42 waits for the socket once a message is
    /// complete and does not look at plaintext OpenSSL still holds, so a record carrying the
    /// head of the next message would stall the channel until more data came (seen with
    /// remote-viewer: the display's MARK never arrived).
    pub(crate) fn one_write_per_message(mut self, on: bool) -> Self {
        self.per_message = on;
        self
    }

    /// Writes one message (header + body).
    pub(crate) async fn send(&mut self, msg_type: u16, body: &[u8]) -> std::io::Result<()> {
        let size = u32::try_from(body.len())
            .map_err(|_| std::io::Error::other("message body above 4 GiB"))?;
        self.serial += 1;
        let mut h = Vec::with_capacity(18);
        self.kind.encode(self.serial, msg_type, size, &mut h);
        if self.per_message {
            // the buffer stays empty in this mode; write below it
            h.extend_from_slice(body);
            self.w.get_mut().write_all(&h).await?;
        } else {
            self.w.write_all(&h).await?;
            self.w.write_all(body).await?;
        }
        self.bytes
            .fetch_add((self.kind.size() + body.len()) as u64, Ordering::Relaxed);
        if self.acks {
            self.unacked = self.unacked.saturating_add(1);
        }
        Ok(())
    }

    /// Sends a typed message.
    pub(crate) async fn send_msg<M: Message>(&mut self, m: &M) -> std::io::Result<()> {
        self.send(M::TYPE, &crate::wire::to_vec(m)).await
    }

    /// Sends SET_ACK for `window` messages ([`ACK_WINDOW`], or [`WIDE_ACK_WINDOW`] on a
    /// slow link) and starts counting.
    pub(crate) async fn start_acks(&mut self, window: u32) -> std::io::Result<()> {
        self.send_msg(&SetAck {
            generation: 1,
            window,
        })
        .await?;
        self.ack_window = window;
        self.acks = true;
        self.unacked = 0;
        Ok(())
    }

    /// True while the client is at most two windows behind.
    pub(crate) fn window_open(&self) -> bool {
        !self.acks || self.unacked < 2 * self.ack_window
    }

    /// Records one ACK.
    pub(crate) fn acked(&mut self) {
        self.unacked = self.unacked.saturating_sub(self.ack_window);
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush().await
    }
}

/// Reads one message. `Ok(None)` = clean EOF between messages. The size is checked against
/// `max` before any body byte is buffered.
pub(crate) async fn read_msg<R: AsyncRead + Unpin>(
    r: &mut R,
    kind: HeaderKind,
    max: u32,
) -> Result<Option<(u16, Vec<u8>)>, ChannelError> {
    let mut h = [0u8; 18];
    let h = &mut h[..kind.size()];
    match r.read_exact(&mut h[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut h[1..]).await?;
    let hdr = kind
        .decode(h)
        .map_err(|err| ChannelError::Malformed { msg_type: 0, err })?;
    if hdr.sub_list != 0 {
        return Err(ChannelError::SubList);
    }
    if hdr.size > max {
        return Err(ChannelError::TooLarge {
            msg_type: hdr.msg_type,
            size: hdr.size,
            max,
        });
    }
    let mut body = vec![0u8; hdr.size as usize];
    r.read_exact(&mut body).await?;
    Ok(Some((hdr.msg_type, body)))
}

/// What a base (all-channel) message means for the channel.
pub(crate) enum BaseAction {
    /// Not a base message.
    NotBase,
    /// Handled; nothing to do.
    Done,
    /// An ACK: forward to the writer.
    Ack,
    /// PONG with this id.
    Pong(u32),
}

/// Handles base messages common to all channels. `acks` says whether this channel sent SET_ACK.
pub(crate) fn handle_base(
    msg_type: u16,
    body: &[u8],
    acks: bool,
    synced: &mut bool,
) -> Result<BaseAction, ChannelError> {
    let Some(m) = BaseClientMessage::parse(msg_type, body) else {
        return Ok(BaseAction::NotBase);
    };
    let m = m.map_err(|err| ChannelError::Malformed { msg_type, err })?;
    match m {
        BaseClientMessage::AckSync(s) => {
            if !acks || s.generation != 1 {
                return Err(ChannelError::OutOfOrder(format!(
                    "ACK_SYNC generation {} without a matching SET_ACK",
                    s.generation
                )));
            }
            *synced = true;
            Ok(BaseAction::Done)
        }
        BaseClientMessage::Ack => {
            if !acks || !*synced {
                return Err(ChannelError::OutOfOrder("ACK before ACK_SYNC".into()));
            }
            Ok(BaseAction::Ack)
        }
        BaseClientMessage::Pong(p) => Ok(BaseAction::Pong(p.id)),
        BaseClientMessage::Disconnecting(_) => Ok(BaseAction::Done),
    }
}
