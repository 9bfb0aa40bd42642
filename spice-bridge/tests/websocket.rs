//! WebSocket on the Spice port, in process and without a browser (tests/spice_html5.rs does the
//! same with the real spice-html5 in chromium): a client upgrades, links the main channel
//! through masked frames (split, fragmented, with a PING between) and gets MAIN_INIT; bad
//! requests get 400 and are counted; a stalled request hits the link deadline; the same
//! upgrade works on the TLS port (wss://).

use std::sync::Arc;
use std::time::Duration;

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::link::TicketPolicy;
use spice_bridge::server::{ConnectionLimits, ServerHandle, TlsListen};
use spice_bridge::testing::{encrypt_ticket, spice_gtk_caps, test_tls_config, tls_connect};
use spice_bridge::wire::decode_exact;
use spice_bridge::wire::link::{LinkHeader, LinkReply};
use spice_bridge::{DisplayModel, Server, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use spice_bridge::testing::WEBSOCKET_UPGRADE as REQUEST;

async fn start(link_timeout: Duration) -> ServerHandle {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: TicketPolicy::Password {
            password: "pw".into(),
            expires: None,
        },
        tls: Some(TlsListen {
            listen: "127.0.0.1:0".parse().unwrap(),
            config: test_tls_config(),
        }),
        limits: ConnectionLimits {
            link_timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    Server::start(
        config,
        DisplayModel::new(),
        Arc::new(NullInput),
        Arc::new(NullAgent),
    )
    .await
    .unwrap()
}

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut v = vec![b0];
    if payload.len() < 126 {
        v.push(0x80 | payload.len() as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// The client side: a stream and the payload bytes received but not yet taken.
struct Client<S> {
    s: S,
    got: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn upgrade(mut s: S) -> (Client<S>, String) {
        s.write_all(REQUEST.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        let mut resp = Vec::new();
        while !resp.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            resp.push(b[0]);
        }
        let resp = String::from_utf8(resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{resp}"
        );
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: binary\r\n"));
        (Client { s, got: Vec::new() }, resp)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
        self.s.flush().await.unwrap();
    }

    /// The next `n` payload bytes of the server's frames (which must be unmasked BINARY).
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.got.len() < n {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).await.unwrap();
            assert_eq!(h[0], 0x82, "final BINARY");
            assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
            let len = match h[1] {
                126 => usize::from(self.s.read_u16().await.unwrap()),
                127 => self.s.read_u64().await.unwrap() as usize,
                l => usize::from(l),
            };
            let mut p = vec![0u8; len];
            self.s.read_exact(&mut p).await.unwrap();
            self.got.extend_from_slice(&p);
        }
        self.got.drain(..n).collect()
    }

    /// Links the main channel through frames ("REDQ" alone, a PING, then the rest as a
    /// fragmented message), checks the PONG and MAIN_INIT, then sends CLOSE and checks that
    /// it is answered.
    async fn link_main(mut self) {
        let link = spice_bridge::testing::link_request(1, 0, spice_gtk_caps(1));
        let mut out = frame(0x82, &link[..4]);
        out.extend(frame(0x89, b"hi"));
        out.extend(frame(0x02, &link[4..10]));
        out.extend(frame(0x80, &link[10..]));
        self.send(&out).await;
        // the PONG comes first, then the link reply in BINARY frames
        let mut pong = [0u8; 4];
        self.s.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"\x8a\x02hi");
        let hdr: LinkHeader = decode_exact(&self.take(16).await).unwrap();
        let reply: LinkReply = decode_exact(&self.take(hdr.size as usize).await).unwrap();
        assert_eq!(reply.error, 0);
        let mut t = 1u32.to_le_bytes().to_vec();
        t.extend_from_slice(&encrypt_ticket(&reply.pub_key, "pw"));
        self.send(&frame(0x82, &t)).await;
        assert_eq!(self.take(4).await, 0u32.to_le_bytes(), "link result OK");
        // mini header: MAIN_INIT (103)
        let mh = self.take(6).await;
        assert_eq!(u16::from_le_bytes([mh[0], mh[1]]), 103);
        // CLOSE: answered, and the channel ends
        self.send(&frame(0x88, &1000u16.to_be_bytes())).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.s.read_to_end(&mut rest)).await;
        assert!(
            rest.windows(4).any(|w| w == [0x88, 2, 0x03, 0xe8]),
            "CLOSE answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_channel_links_through_websocket_frames() {
    let h = start(Duration::from_secs(10)).await;
    let tcp = TcpStream::connect(h.local_addr()).await.unwrap();
    let (c, _) = Client::upgrade(tcp).await;
    c.link_main().await;
    let s = h.stats();
    assert_eq!(
        (s.websocket_connections, s.websocket_refused, s.links_ok),
        (1, 0, 1)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_the_tls_port_links_too() {
    let h = start(Duration::from_secs(10)).await;
    let tls = tls_connect(h.tls_addr().unwrap()).await.unwrap();
    let (c, _) = Client::upgrade(tls).await;
    c.link_main().await;
    let s = h.stats();
    assert_eq!(
        (s.websocket_connections, s.tls_connections, s.links_ok),
        (1, 1, 1)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrade_gets_400_and_is_counted_and_a_stalled_one_times_out() {
    let h = start(Duration::from_millis(400)).await;
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    let bad = REQUEST.replace("Version: 13", "Version: 8");
    s.write_all(bad.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert!(resp.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    // a request that never ends is closed at the link deadline
    let mut slow = TcpStream::connect(h.local_addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut b = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut b)).await;
    assert!(r.is_ok(), "closed at the deadline");
    assert!(b.is_empty());
    let s = h.stats();
    assert_eq!((s.websocket_refused, s.link_timeouts), (1, 1), "{s:?}");
    assert_eq!(s.websocket_connections, 0);
    h.shutdown().await;
}
