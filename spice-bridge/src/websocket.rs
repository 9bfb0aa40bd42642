//! WebSocket (RFC 6455) on the Spice port, for spice-html5 (`new WebSocket(uri, 'binary')`).
//!
//! A connection whose first four bytes are `GET ` is an HTTP upgrade request: [`accept`] reads
//! the rest of the request (at most [`MAX_REQUEST`] bytes, [`MAX_HEADERS`] header lines), checks
//! it and answers `101 Switching Protocols` (or `400 Bad Request`). From then on the whole Spice
//! byte stream (link header onward) runs inside WebSocket frames, and [`WsStream`] turns the
//! frames back into a byte stream (`AsyncRead + AsyncWrite`) for the link stage and channels.
//!
//! Client frames must be masked; BINARY, TEXT and CONTINUATION frames carry data (TEXT is not
//! checked for UTF-8: it is Spice bytes either way), PING is answered with PONG, CLOSE with
//! CLOSE and then end of stream. Frames over [`MAX_FRAME`], reserved bits, unknown opcodes and
//! long or fragmented control frames are errors. Server frames are unmasked final BINARY frames
//! of at most [`MAX_OUT_FRAME`] bytes. The `Origin` header is not checked: as with plain Spice,
//! the ticket is the access control.
//!
//! Why our own framing and not tungstenite/tokio-tungstenite: those give a message API
//! (`Stream<Item = Message>`), while the channels need byte-stream semantics
//! (`AsyncRead + AsyncWrite`) on a stream whose first four bytes were already consumed by the
//! sniff, and we want fixed caps on every buffer from the first byte (tungstenite buffers whole
//! messages up to its configured size). The framing is small, unit-tested and fuzzed
//! (`fuzz/fuzz_targets/websocket.rs`).
//!
//! Memory per connection is bounded: the request buffer (16 KiB, freed after the handshake), a
//! raw input buffer of at most [`READ_CHUNK`] + 139 bytes (data payloads are unmasked straight
//! into the caller's buffer; only control frames are held whole), and an output buffer of one
//! data frame plus at most [`MAX_PENDING_CONTROL`] bytes of queued PONG/CLOSE frames.

#[cfg(any(test, feature = "test-utils"))]
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest HTTP upgrade request accepted (request line and headers, with the blank line).
/// Chromium's request is under 2 KiB.
pub(crate) const MAX_REQUEST: usize = 16 * 1024;
/// Most header lines accepted in the upgrade request.
pub(crate) const MAX_HEADERS: usize = 64;
/// Largest client frame payload accepted (spice-html5 sends small frames).
pub(crate) const MAX_FRAME: u64 = 1 << 20;
/// Largest payload of a frame this server writes.
pub(crate) const MAX_OUT_FRAME: usize = 64 * 1024;
/// Bytes read from the socket at a time.
pub(crate) const READ_CHUNK: usize = 4096;
/// Queued PONG/CLOSE bytes beyond which reading stops until they are written.
pub(crate) const MAX_PENDING_CONTROL: usize = 4096;

/// RFC 6455 §1.3 (the RFC's sample key `dGhlIHNhbXBsZSBub25jZQ==` gives
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`, checked in the tests).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Why an upgrade request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The socket failed or closed before the request ended.
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
    /// No blank line within [`MAX_REQUEST`] bytes.
    #[error("request header block over {MAX_REQUEST} bytes")]
    TooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// The request is not a valid WebSocket upgrade (what is wrong).
    #[error("bad upgrade request: {0}")]
    Bad(&'static str),
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpgradeRequest {
    /// The `Sec-WebSocket-Key` value as sent (base64 of 16 bytes).
    pub key: String,
    /// The client listed subprotocols (then one of them was `binary`, which we select).
    pub binary_protocol: bool,
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub(crate) fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    B64.encode(h.finalize())
}

/// Splits a header value into its comma-separated, trimmed tokens.
fn tokens(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Checks a complete request header block (from `GET ` up to and without the blank line).
pub(crate) fn parse_request(block: &[u8]) -> Result<UpgradeRequest, HandshakeError> {
    let text = std::str::from_utf8(block).map_err(|_| HandshakeError::Bad("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if method != Some("GET") || target.is_none_or(str::is_empty) || parts.next().is_some() {
        return Err(HandshakeError::Bad(
            "request line is not 'GET <target> HTTP/1.1'",
        ));
    }
    if !matches!(version, Some("HTTP/1.1")) {
        return Err(HandshakeError::Bad("not HTTP/1.1"));
    }
    let (mut upgrade, mut connection, mut version13) = (false, false, false);
    let mut key: Option<&str> = None;
    let (mut protocols_listed, mut binary) = (false, false);
    for (n, line) in lines.enumerate() {
        if n >= MAX_HEADERS {
            return Err(HandshakeError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HandshakeError::Bad("header line without ':'"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case("websocket")),
            "connection" => connection |= tokens(value).any(|t| t.eq_ignore_ascii_case("upgrade")),
            "sec-websocket-version" => version13 = value == "13",
            "sec-websocket-key" => {
                if key.is_some() {
                    return Err(HandshakeError::Bad("Sec-WebSocket-Key given twice"));
                }
                key = Some(value);
            }
            "sec-websocket-protocol" => {
                protocols_listed = true;
                binary |= tokens(value).any(|t| t == "binary");
            }
            _ => {}
        }
    }
    if !upgrade {
        return Err(HandshakeError::Bad("no 'Upgrade: websocket'"));
    }
    if !connection {
        return Err(HandshakeError::Bad("'Connection' does not list 'upgrade'"));
    }
    if !version13 {
        return Err(HandshakeError::Bad("Sec-WebSocket-Version is not 13"));
    }
    let key = key.ok_or(HandshakeError::Bad("no Sec-WebSocket-Key"))?;
    match B64.decode(key) {
        Ok(k) if k.len() == 16 => {}
        _ => {
            return Err(HandshakeError::Bad(
                "Sec-WebSocket-Key is not base64 of 16 bytes",
            ))
        }
    }
    if protocols_listed && !binary {
        return Err(HandshakeError::Bad(
            "Sec-WebSocket-Protocol does not offer 'binary'",
        ));
    }
    Ok(UpgradeRequest {
        key: key.to_string(),
        binary_protocol: protocols_listed,
    })
}

/// The `101 Switching Protocols` answer to `req`.
pub(crate) fn response(req: &UpgradeRequest) -> String {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(&req.key)
    );
    if req.binary_protocol {
        r.push_str("Sec-WebSocket-Protocol: binary\r\n");
    }
    r.push_str("\r\n");
    r
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\
    Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";

/// Reads the request of a connection that began with `first` (`GET `) up to its blank line;
/// returns the header block and the bytes read after it (the start of the first frame).
async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    first: [u8; 4],
) -> Result<(Vec<u8>, BytesMut), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(&first);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_REQUEST - buf.len();
        if room == 0 {
            return Err(HandshakeError::TooLarge);
        }
        let want = room.min(chunk.len());
        let n = s.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + i;
            let rest = BytesMut::from(&buf[end + 4..]);
            buf.truncate(end);
            return Ok((buf, rest));
        }
    }
}

/// Runs the server side of the upgrade on `s`, whose first four bytes (`first`, `GET `) were
/// read already. A bad request is answered `400 Bad Request` and returned as an error.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    first: [u8; 4],
) -> Result<WsStream<S>, HandshakeError> {
    let parsed = match read_request(&mut s, first).await {
        Ok((block, rest)) => parse_request(&block).map(|r| (r, rest)),
        // closed or failed mid-request: nobody to answer
        Err(e @ HandshakeError::Io(_)) => return Err(e),
        Err(e) => Err(e),
    };
    let (req, rest) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let _ = s.write_all(BAD_REQUEST).await;
            let _ = s.flush().await;
            return Err(e);
        }
    };
    s.write_all(response(&req).as_bytes()).await?;
    s.flush().await?;
    Ok(WsStream::with_buffered(s, rest))
}

/// A client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {msg}"))
}

/// Parses a client frame header at the start of `b`: `Ok(None)` if more bytes are needed,
/// else the header and its length.
fn parse_header(b: &[u8]) -> io::Result<Option<(Header, usize)>> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(invalid("reserved bits set"));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(invalid("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(invalid("client frame not masked"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        l => (u64::from(l), 2),
    };
    if len >> 63 != 0 || len > MAX_FRAME {
        return Err(invalid("frame too long"));
    }
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return Err(invalid("control frame too long or fragmented"));
    }
    let Some(m) = b.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [m[0], m[1], m[2], m[3]];
    Ok(Some((
        Header {
            fin,
            opcode,
            len,
            mask,
        },
        at + 4,
    )))
}

/// Appends an unmasked final frame (server to client) to `out`.
fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Builds a masked client frame (tests and fuzzing: the client side of the codec).
#[cfg(any(test, feature = "test-utils"))]
pub(crate) fn client_frame(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The data frame being read: bytes left and where in the mask they start.
#[derive(Debug, Clone, Copy)]
struct DataFrame {
    remaining: u64,
    mask: [u8; 4],
    mask_pos: usize,
    fin: bool,
}

/// A WebSocket connection (server side, after the upgrade) seen as a byte stream: reads give
/// the payload bytes of the client's data frames, writes go out as BINARY frames.
pub(crate) struct WsStream<S> {
    inner: S,
    /// Bytes read from `inner`, not yet parsed.
    raw: BytesMut,
    /// The data frame whose payload is being read.
    data: Option<DataFrame>,
    /// Inside a fragmented message (a non-final data frame was read).
    fragmented: bool,
    /// The client's CLOSE was read, or its socket ended: reads return end of stream.
    read_eof: bool,
    /// Frames waiting to be written to `inner` (whole frames only).
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_pos: usize,
    /// Bytes accepted from the caller in the frame now in `out` (returned once it is out).
    accepted: Option<usize>,
    /// A CLOSE frame was queued: no more data frames.
    close_sent: bool,
}

impl<S> WsStream<S> {
    /// A stream over an upgraded connection; `buffered` are bytes already read after the
    /// request (the start of the first frame).
    pub(crate) fn with_buffered(inner: S, buffered: BytesMut) -> Self {
        WsStream {
            inner,
            raw: buffered,
            data: None,
            fragmented: false,
            read_eof: false,
            out: Vec::new(),
            out_pos: 0,
            accepted: None,
            close_sent: false,
        }
    }

    /// The underlying stream.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Queues a control frame (PONG or CLOSE).
    fn queue_control(&mut self, opcode: u8, payload: &[u8]) {
        if opcode == OP_CLOSE {
            if self.close_sent {
                return;
            }
            self.close_sent = true;
        }
        put_frame(&mut self.out, opcode, payload);
    }

    /// Handles a whole control frame whose (unmasked) payload is `p`.
    fn control(&mut self, opcode: u8, p: &[u8]) -> io::Result<()> {
        match opcode {
            OP_PING => self.queue_control(OP_PONG, p),
            OP_PONG => {}
            _ => {
                // CLOSE: echo the status code (not the reason), then end of stream
                if p.len() == 1 {
                    return Err(invalid("close frame with a 1-byte body"));
                }
                let code = p.get(..2).unwrap_or(&[]).to_vec();
                self.queue_control(OP_CLOSE, &code);
                self.read_eof = true;
            }
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> WsStream<S> {
    /// Writes queued frames to `inner` until `out` is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // queued PONG/CLOSE (and a reply a link stage wrote without flushing) go out
            // while the reader waits
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            if this.read_eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(d) = this.data.as_mut() {
                if !this.raw.is_empty() {
                    let n = (this.raw.len() as u64).min(d.remaining) as usize;
                    let n = n.min(buf.remaining());
                    let dst = buf.initialize_unfilled_to(n);
                    for (i, (o, b)) in dst.iter_mut().zip(&this.raw[..n]).enumerate() {
                        *o = b ^ d.mask[(d.mask_pos + i) % 4];
                    }
                    buf.advance(n);
                    this.raw.advance(n);
                    d.mask_pos = (d.mask_pos + n) % 4;
                    d.remaining -= n as u64;
                    if d.remaining == 0 {
                        this.fragmented = !d.fin;
                        this.data = None;
                    }
                    return Poll::Ready(Ok(()));
                }
            } else if let Some((h, hl)) = parse_header(&this.raw)? {
                if h.opcode >= OP_CLOSE {
                    let total = hl + h.len as usize;
                    if this.raw.len() >= total {
                        let p: Vec<u8> = this.raw[hl..total]
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ h.mask[i % 4])
                            .collect();
                        this.raw.advance(total);
                        this.control(h.opcode, &p)?;
                        continue;
                    }
                } else {
                    match (h.opcode, this.fragmented) {
                        (OP_CONTINUATION, false) => {
                            return Poll::Ready(Err(invalid("continuation without a start")))
                        }
                        (OP_TEXT | OP_BINARY, true) => {
                            return Poll::Ready(Err(invalid("new message inside a fragmented one")))
                        }
                        _ => {}
                    }
                    this.raw.advance(hl);
                    if h.len == 0 {
                        this.fragmented = !h.fin;
                    } else {
                        this.data = Some(DataFrame {
                            remaining: h.len,
                            mask: h.mask,
                            mask_pos: 0,
                            fin: h.fin,
                        });
                    }
                    continue;
                }
            }
            // more bytes needed; stop reading while the peer does not take our PONGs
            if this.out.len() - this.out_pos > MAX_PENDING_CONTROL {
                ready!(this.poll_drain(cx))?;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                if this.raw.is_empty() && this.data.is_none() && !this.fragmented {
                    // the peer closed without a CLOSE frame, between messages
                    this.read_eof = true;
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.raw.extend_from_slice(rb.filled());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.accepted.is_none() {
            // earlier frames (control frames) go first
            ready!(this.poll_drain(cx))?;
            if this.close_sent {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if data.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let n = data.len().min(MAX_OUT_FRAME);
            put_frame(&mut this.out, OP_BINARY, &data[..n]);
            this.accepted = Some(n);
        }
        // The frame is acknowledged once it is out, so no data lingers unflushed; a caller
        // that retries after Pending with other bytes gets the length of what was sent.
        ready!(this.poll_drain(cx))?;
        Poll::Ready(Ok(this.accepted.take().unwrap_or(0)))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.accepted = None;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.accepted = None;
        // 1000: normal closure (queued once)
        this.queue_control(OP_CLOSE, &1000u16.to_be_bytes());
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A scripted peer (tests and fuzzing): reads hand out `input` at most `chunk` bytes at a time, writes collect.
#[cfg(any(test, feature = "test-utils"))]
pub(crate) struct ScriptedPeer {
    pub(crate) input: VecDeque<u8>,
    pub(crate) chunk: usize,
    pub(crate) output: Vec<u8>,
}

#[cfg(any(test, feature = "test-utils"))]
impl ScriptedPeer {
    pub(crate) fn new(input: &[u8], chunk: usize) -> Self {
        ScriptedPeer {
            input: input.iter().copied().collect(),
            chunk,
            output: Vec::new(),
        }
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.input.len());
        for _ in 0..n {
            let b = self.input.pop_front().unwrap_or(0);
            buf.put_slice(&[b]);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl AsyncWrite for ScriptedPeer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
