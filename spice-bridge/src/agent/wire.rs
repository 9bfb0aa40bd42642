//! The VDI port byte stream between the server and the guest agent
//! (`../shared/reference/agent-and-vdiport.md` §2–3): 8-byte chunk headers that demultiplex the
//! stream into the client port and the server port, and on each port a stream of
//! `VDAgentMessage`s (20-byte header + data). Both parsers are incremental: bytes arrive in
//! arbitrary splits, and neither buffers more than a header (plus, on request, the data of
//! small messages the server itself reads).

/// `VDIChunkHeader.port` of traffic between the client and the agent.
pub const VDP_CLIENT_PORT: u32 = 1;
/// `VDIChunkHeader.port` of messages between the server itself and the agent.
pub const VDP_SERVER_PORT: u32 = 2;
/// Size of a `VDIChunkHeader`.
pub const CHUNK_HEADER_SIZE: usize = 8;
/// Size of a `VDAgentMessage` header.
pub const MSG_HEADER_SIZE: usize = 20;
/// `VDAgentMessage.protocol`.
pub const VD_AGENT_PROTOCOL: u32 = 1;
/// Largest chunk payload the server writes to the agent (`VD_AGENT_MAX_DATA_SIZE`).
pub const VD_AGENT_MAX_DATA_SIZE: usize = 2048;

/// `VD_AGENT_*` message types.
pub mod msg {
    /// Server → agent: client pointer position and buttons.
    pub const MOUSE_STATE: u32 = 1;
    /// Client → agent/server: the client's monitor layout.
    pub const MONITORS_CONFIG: u32 = 2;
    /// Agent → client: acknowledgement.
    pub const REPLY: u32 = 3;
    /// Clipboard data.
    pub const CLIPBOARD: u32 = 4;
    /// Both ways: capability bits.
    pub const ANNOUNCE_CAPABILITIES: u32 = 6;
    /// Clipboard grab.
    pub const CLIPBOARD_GRAB: u32 = 7;
    /// Server → agent: the client went away.
    pub const CLIENT_DISCONNECTED: u32 = 13;
    /// One past the last known type.
    pub const END_MESSAGE: u32 = 17;
}

/// `VD_AGENT_CAP_*` bits.
pub mod cap {
    /// The agent takes MOUSE_STATE (client mouse through the agent).
    pub const MOUSE_STATE: u32 = 0;
    /// The agent takes MONITORS_CONFIG.
    pub const MONITORS_CONFIG: u32 = 1;
}

/// Why a stream is out of sync. The stream cannot be trusted after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A chunk header names a port other than 1 or 2.
    #[error("chunk for port {0} (only 1 and 2 exist)")]
    BadPort(u32),
    /// A chunk larger than allowed on this stream.
    #[error("chunk of {size} bytes (limit {max})")]
    ChunkTooLarge {
        /// Declared size.
        size: u32,
        /// Limit.
        max: u32,
    },
    /// A message header whose protocol is not 1.
    #[error("message protocol {0} (expected 1)")]
    BadProtocol(u32),
    /// A message type of 0 or beyond the known range.
    #[error("message type {0}")]
    BadType(u32),
    /// A message larger than the configured limit.
    #[error("message of {size} bytes (limit {max})")]
    MessageTooLarge {
        /// Declared size.
        size: u32,
        /// Limit.
        max: u32,
    },
}

/// A `VDAgentMessage` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    /// Message type (`VD_AGENT_*`).
    pub type_: u32,
    /// Opaque value (0 in practice).
    pub opaque: u64,
    /// Bytes of data after the header.
    pub size: u32,
}

impl MsgHeader {
    /// Parses 20 header bytes (no validation).
    pub fn parse(b: &[u8; MSG_HEADER_SIZE]) -> (u32, MsgHeader) {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut op = [0u8; 8];
        op.copy_from_slice(&b[8..16]);
        (
            u32_at(0),
            MsgHeader {
                type_: u32_at(4),
                opaque: u64::from_le_bytes(op),
                size: u32_at(16),
            },
        )
    }

    /// The 20 wire bytes.
    pub fn to_bytes(&self) -> [u8; MSG_HEADER_SIZE] {
        let mut b = [0u8; MSG_HEADER_SIZE];
        b[0..4].copy_from_slice(&VD_AGENT_PROTOCOL.to_le_bytes());
        b[4..8].copy_from_slice(&self.type_.to_le_bytes());
        b[8..16].copy_from_slice(&self.opaque.to_le_bytes());
        b[16..20].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// A whole message as wire bytes (header + data), for messages the server writes itself.
pub fn message(type_: u32, data: &[u8]) -> Vec<u8> {
    let h = MsgHeader {
        type_,
        opaque: 0,
        size: u32::try_from(data.len()).unwrap_or(u32::MAX),
    };
    let mut v = Vec::with_capacity(MSG_HEADER_SIZE + data.len());
    v.extend_from_slice(&h.to_bytes());
    v.extend_from_slice(data);
    v
}

/// A chunk header followed by `payload`.
pub fn chunk(port: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(CHUNK_HEADER_SIZE + payload.len());
    v.extend_from_slice(&port.to_le_bytes());
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    v.extend_from_slice(payload);
    v
}

/// A piece of a message stream, as [`MsgStream::feed`] reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct MsgPiece<'a> {
    /// The message this piece belongs to.
    pub header: MsgHeader,
    /// True for the first piece of a message: `raw` then starts with the 20 header bytes.
    pub first: bool,
    /// Wire bytes of the message (header bytes included in the first piece).
    pub raw: &'a [u8],
    /// True for the last piece of a message.
    pub last: bool,
    /// The whole data of the message, when it was small enough to collect (see
    /// [`MsgStream::new`]) and this is the last piece.
    pub whole: Option<&'a [u8]>,
}

/// Incremental framing of a `VDAgentMessage` stream (one port's bytes).
#[derive(Debug)]
pub struct MsgStream {
    max_message: u32,
    collect_max: usize,
    header: [u8; MSG_HEADER_SIZE],
    have_header: usize,
    current: Option<(MsgHeader, u32)>,
    collected: Vec<u8>,
}

impl MsgStream {
    /// A stream that refuses messages over `max_message` data bytes and collects the data of
    /// messages of at most `collect_max` bytes (for the server's own use).
    pub fn new(max_message: u32, collect_max: usize) -> Self {
        MsgStream {
            max_message,
            collect_max,
            header: [0; MSG_HEADER_SIZE],
            have_header: 0,
            current: None,
            collected: Vec::new(),
        }
    }

    /// Forgets any partial message (the peer restarted).
    pub fn reset(&mut self) {
        self.have_header = 0;
        self.current = None;
        self.collected.clear();
    }

    /// Whether the stream sits between messages.
    pub fn at_boundary(&self) -> bool {
        self.have_header == 0 && self.current.is_none()
    }

    /// Feeds bytes; `out` gets the pieces in order. On error the stream is out of sync and
    /// must be [`reset`](Self::reset) (with the peer) before further use.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut dyn FnMut(MsgPiece<'_>),
    ) -> Result<(), StreamError> {
        while !data.is_empty() {
            let Some((header, remaining)) = self.current else {
                // Collect the header.
                let take = (MSG_HEADER_SIZE - self.have_header).min(data.len());
                self.header[self.have_header..self.have_header + take]
                    .copy_from_slice(&data[..take]);
                self.have_header += take;
                data = &data[take..];
                if self.have_header < MSG_HEADER_SIZE {
                    return Ok(());
                }
                self.have_header = 0;
                let (protocol, h) = MsgHeader::parse(&self.header);
                if protocol != VD_AGENT_PROTOCOL {
                    return Err(StreamError::BadProtocol(protocol));
                }
                if h.type_ == 0 || h.type_ >= msg::END_MESSAGE {
                    return Err(StreamError::BadType(h.type_));
                }
                if h.size > self.max_message {
                    return Err(StreamError::MessageTooLarge {
                        size: h.size,
                        max: self.max_message,
                    });
                }
                self.collected.clear();
                let header = self.header;
                let last = h.size == 0;
                out(MsgPiece {
                    header: h,
                    first: true,
                    raw: &header,
                    last,
                    whole: last.then_some(&[][..]),
                });
                if !last {
                    self.current = Some((h, h.size));
                }
                continue;
            };
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (piece, rest) = data.split_at(take);
            data = rest;
            let remaining = remaining - take as u32;
            let collect = header.size as usize <= self.collect_max;
            if collect {
                self.collected.extend_from_slice(piece);
            }
            let last = remaining == 0;
            out(MsgPiece {
                header,
                first: false,
                raw: piece,
                last,
                whole: (last && collect).then_some(&self.collected[..]),
            });
            self.current = (!last).then_some((header, remaining));
        }
        Ok(())
    }
}

/// Receives (port, payload piece) from [`ChunkStream::feed`]; an error stops the feed.
pub type ChunkSink<'a> = dyn FnMut(u32, &[u8]) -> Result<(), StreamError> + 'a;

/// Incremental demultiplexing of the agent's byte stream into chunk payloads per port.
#[derive(Debug)]
pub struct ChunkStream {
    max_chunk: u32,
    header: [u8; CHUNK_HEADER_SIZE],
    have_header: usize,
    current: Option<(u32, u32)>,
}

impl ChunkStream {
    /// A stream that refuses chunks over `max_chunk` bytes. (spice-vdagentd writes each
    /// message as one chunk of any size, so the guest → host direction needs a large limit.)
    pub fn new(max_chunk: u32) -> Self {
        ChunkStream {
            max_chunk,
            header: [0; CHUNK_HEADER_SIZE],
            have_header: 0,
            current: None,
        }
    }

    /// Forgets any partial chunk.
    pub fn reset(&mut self) {
        self.have_header = 0;
        self.current = None;
    }

    /// Feeds bytes; `out` gets (port, payload piece) in order.
    pub fn feed(&mut self, mut data: &[u8], out: &mut ChunkSink<'_>) -> Result<(), StreamError> {
        while !data.is_empty() {
            let Some((port, remaining)) = self.current else {
                let take = (CHUNK_HEADER_SIZE - self.have_header).min(data.len());
                self.header[self.have_header..self.have_header + take]
                    .copy_from_slice(&data[..take]);
                self.have_header += take;
                data = &data[take..];
                if self.have_header < CHUNK_HEADER_SIZE {
                    return Ok(());
                }
                self.have_header = 0;
                let h = &self.header;
                let port = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                if port != VDP_CLIENT_PORT && port != VDP_SERVER_PORT {
                    return Err(StreamError::BadPort(port));
                }
                if size > self.max_chunk {
                    return Err(StreamError::ChunkTooLarge {
                        size,
                        max: self.max_chunk,
                    });
                }
                if size > 0 {
                    self.current = Some((port, size));
                }
                continue;
            };
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (piece, rest) = data.split_at(take);
            data = rest;
            let remaining = remaining - take as u32;
            self.current = (remaining > 0).then_some((port, remaining));
            out(port, piece)?;
        }
        Ok(())
    }
}

/// Capability bits of an ANNOUNCE_CAPABILITIES message's data (`request` u32, then u32 words);
/// `None` if shorter than the request word.
pub fn parse_caps(data: &[u8]) -> Option<(bool, Vec<u32>)> {
    let request = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let words = data[4..]
        .chunks_exact(4)
        .take(64)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    Some((request != 0, words))
}

/// Whether capability `bit` is set in `words`.
pub fn has_cap(words: &[u32], bit: u32) -> bool {
    words
        .get((bit / 32) as usize)
        .is_some_and(|w| w & (1 << (bit % 32)) != 0)
}

/// One monitor of a client MONITORS_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Width in pixels (0 = disabled).
    pub width: u32,
    /// Height in pixels (0 = disabled).
    pub height: u32,
    /// Colour depth.
    pub depth: u32,
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
}

/// Most monitors accepted in a MONITORS_CONFIG (spice-server's limit).
pub const MAX_MONITORS: u32 = 256;

/// Parses MONITORS_CONFIG data: num u32, flags u32, num × {height, width, depth, x, y}
/// (height first), optionally followed by the physical-size array (ignored). `None` if the
/// count is 0, over [`MAX_MONITORS`], or the data is shorter than it says.
pub fn parse_monitors_config(data: &[u8]) -> Option<Vec<MonitorConfig>> {
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            data.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let n = u32_at(0)?;
    if n == 0 || n > MAX_MONITORS {
        return None;
    }
    let end = 8usize.checked_add((n as usize).checked_mul(20)?)?;
    if data.len() < end {
        return None;
    }
    (0..n as usize)
        .map(|i| {
            let o = 8 + 20 * i;
            Some(MonitorConfig {
                height: u32_at(o)?,
                width: u32_at(o + 4)?,
                depth: u32_at(o + 8)?,
                x: u32_at(o + 12)? as i32,
                y: u32_at(o + 16)? as i32,
            })
        })
        .collect()
}

/// MOUSE_STATE data: x, y, buttons (agent masks), display id.
pub fn mouse_state(x: u32, y: u32, buttons: u32, display: u8) -> Vec<u8> {
    let mut d = Vec::with_capacity(13);
    d.extend_from_slice(&x.to_le_bytes());
    d.extend_from_slice(&y.to_le_bytes());
    d.extend_from_slice(&buttons.to_le_bytes());
    d.push(display);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &mut MsgStream, data: &[u8]) -> Result<Vec<u32>, StreamError> {
        let mut v = Vec::new();
        s.feed(data, &mut |p| v.push(p.header.type_))?;
        Ok(v)
    }

    #[test]
    fn messages_split_anywhere_come_out_whole_and_in_order() {
        let mut wire = message(msg::CLIPBOARD, b"hello");
        wire.extend(message(msg::REPLY, &[1, 0, 0, 0, 1, 0, 0, 0]));
        for split in 0..wire.len() {
            let mut s = MsgStream::new(1 << 20, 64);
            let mut raw = Vec::new();
            let mut wholes = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                s.feed(part, &mut |p| {
                    raw.extend_from_slice(p.raw);
                    if let Some(w) = p.whole {
                        wholes.push((p.header.type_, w.to_vec()));
                    }
                })
                .unwrap();
            }
            assert_eq!(raw, wire, "split at {split}");
            assert_eq!(
                wholes,
                [
                    (msg::CLIPBOARD, b"hello".to_vec()),
                    (msg::REPLY, vec![1, 0, 0, 0, 1, 0, 0, 0])
                ]
            );
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut bad = message(msg::CLIPBOARD, b"x");
        bad[0] = 2;
        assert_eq!(
            pieces(&mut MsgStream::new(100, 0), &bad),
            Err(StreamError::BadProtocol(2))
        );
        assert_eq!(
            pieces(&mut MsgStream::new(100, 0), &message(0, b"")),
            Err(StreamError::BadType(0))
        );
        assert_eq!(
            pieces(&mut MsgStream::new(100, 0), &message(99, b"")),
            Err(StreamError::BadType(99))
        );
        assert!(matches!(
            pieces(
                &mut MsgStream::new(4, 0),
                &message(msg::CLIPBOARD, b"12345")
            ),
            Err(StreamError::MessageTooLarge { size: 5, max: 4 })
        ));
    }

    #[test]
    fn chunks_demultiplex_by_port() {
        let mut wire = chunk(1, b"abc");
        wire.extend(chunk(2, b""));
        wire.extend(chunk(2, b"zz"));
        wire.extend(chunk(1, b"de"));
        let mut s = ChunkStream::new(16);
        let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
        for b in &wire {
            s.feed(std::slice::from_ref(b), &mut |p, d| {
                got.push((p, d.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        let joined = |port| -> Vec<u8> {
            got.iter()
                .filter(|(p, _)| *p == port)
                .flat_map(|(_, d)| d.clone())
                .collect()
        };
        assert_eq!(joined(1), b"abcde");
        assert_eq!(joined(2), b"zz");
        assert_eq!(
            ChunkStream::new(16).feed(&chunk(3, b""), &mut |_, _| Ok(())),
            Err(StreamError::BadPort(3))
        );
        assert!(matches!(
            ChunkStream::new(2).feed(&chunk(1, b"abc"), &mut |_, _| Ok(())),
            Err(StreamError::ChunkTooLarge { size: 3, max: 2 })
        ));
    }

    #[test]
    fn monitors_config_with_physical_sizes() {
        let mut d = Vec::new();
        d.extend(2u32.to_le_bytes());
        d.extend(3u32.to_le_bytes()); // USE_POS | PHYSICAL_SIZE
        for (h, w, x) in [(768u32, 1024u32, 0i32), (600, 800, 1024)] {
            for v in [h, w, 32, x as u32, 0] {
                d.extend(v.to_le_bytes());
            }
        }
        d.extend([0u8; 8]); // two VDAgentMonitorMM
        let m = parse_monitors_config(&d).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].width, m[1].height, m[1].x), (800, 600, 1024));
        assert_eq!(parse_monitors_config(&d[..30]), None);
        assert_eq!(parse_monitors_config(&[0; 8]), None);
        let mut huge = d.clone();
        huge[..4].copy_from_slice(&300u32.to_le_bytes());
        assert_eq!(parse_monitors_config(&huge), None);
    }

    #[test]
    fn caps() {
        let mut d = 1u32.to_le_bytes().to_vec();
        d.extend(0b11u32.to_le_bytes());
        let (req, w) = parse_caps(&d).unwrap();
        assert!(req && has_cap(&w, cap::MOUSE_STATE) && has_cap(&w, cap::MONITORS_CONFIG));
        assert!(!has_cap(&w, 40));
        assert_eq!(parse_caps(&[1, 0]), None);
    }
}
