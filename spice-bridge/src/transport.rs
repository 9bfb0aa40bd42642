//! The byte stream under a channel connection: plain TCP, TLS (the TLS port), and WebSocket on
//! either, told apart by the first four bytes as spice-server does ("REDQ" is Spice, "GET " an
//! HTTP upgrade). Everything above this module (the link stage and the channels) sees one
//! boxed stream, split into a [`Reader`] and a [`Writer`].

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::TlsConfig;

/// Any byte stream a channel can run on.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection's stream once its transport is set up.
pub(crate) type BoxedStream = Box<dyn Stream>;
/// The read half a channel reads messages from.
pub(crate) type Reader = tokio::io::ReadHalf<BoxedStream>;
/// The write half a channel writes messages to.
pub(crate) type Writer = tokio::io::WriteHalf<BoxedStream>;

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transport {
    /// Arrived on the TLS port (encrypted).
    pub tls: bool,
    /// Spoke WebSocket (spice-html5 in a browser).
    pub websocket: bool,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.tls, self.websocket) {
            (false, false) => "plain",
            (true, false) => "tls",
            (false, true) => "websocket",
            (true, true) => "websocket+tls",
        })
    }
}

/// Why a connection's transport could not be set up (before any Spice byte).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The TLS handshake failed (bad record, wrong certificate on the client side, ...).
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The WebSocket upgrade was refused.
    #[error("WebSocket upgrade: {0}")]
    WebSocket(String),
    /// The peer closed or the socket failed before four bytes arrived.
    #[error("closed before the link header: {0}")]
    Io(std::io::Error),
}

/// A connection ready for the link stage: its stream, how it came, and the first four bytes
/// of the Spice link header (already read to tell Spice from WebSocket).
pub(crate) struct Established {
    pub stream: BoxedStream,
    pub transport: Transport,
    pub magic: [u8; 4],
}

/// Sets up the transport of an accepted TCP connection: the TLS handshake if it came to the TLS
/// port, then a WebSocket upgrade if it starts with "GET ".
pub(crate) async fn establish(
    tcp: TcpStream,
    tls: Option<&TlsConfig>,
    _peer: SocketAddr,
) -> Result<Established, TransportError> {
    let _ = tcp.set_nodelay(true);
    let mut transport = Transport::default();
    let mut stream: BoxedStream = match tls {
        Some(t) => {
            transport.tls = true;
            Box::new(
                t.acceptor()
                    .accept(tcp)
                    .await
                    .map_err(TransportError::Tls)?,
            )
        }
        None => Box::new(tcp),
    };
    let mut magic = [0u8; 4];
    stream
        .read_exact(&mut magic)
        .await
        .map_err(TransportError::Io)?;
    if &magic == b"GET " {
        transport.websocket = true;
        stream = websocket(stream, magic).await?;
        stream
            .read_exact(&mut magic)
            .await
            .map_err(TransportError::Io)?;
    }
    Ok(Established {
        stream,
        transport,
        magic,
    })
}

/// The WebSocket upgrade of a stream that began with `first` ("GET "): the HTTP request is
/// checked and answered, and the Spice bytes then run inside WebSocket frames
/// ([`crate::websocket`]).
async fn websocket(stream: BoxedStream, first: [u8; 4]) -> Result<BoxedStream, TransportError> {
    match crate::websocket::accept(stream, first).await {
        Ok(ws) => Ok(Box::new(ws)),
        Err(e) => Err(TransportError::WebSocket(e.to_string())),
    }
}

/// Splits a stream for a channel's reader and writer tasks.
pub(crate) fn split(stream: BoxedStream) -> (Reader, Writer) {
    tokio::io::split(stream)
}
