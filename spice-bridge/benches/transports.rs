//! The display channel over each transport at 1920x1080 (issue 12): link-to-first-picture time
//! and throughput over plain TCP, TLS, WebSocket on the Spice port and WebSocket over TLS.
//!
//! Run: `cargo bench -p spice-bridge --bench transports` (prints a table). In-process server on
//! loopback with LZ; a scripted client links main and display, decodes every image into a
//! canvas and checks the final picture against the model, so the figures include the client's
//! decoding as a real client's would.
//!
//! - link to first picture: from TCP connect (TLS handshake included) to the first MARK with
//!   the whole 1080p picture decoded, median of 7 after one warm-up session; for WebSocket the HTTP upgrade of each
//!   channel is included (the client side's framing is `testing::websocket_client`, a pump
//!   task as a browser's WebSocket layer would be);
//! - throughput: 40 different full-frame 1080p pictures, one in flight (each drawn once the
//!   client shows the previous one, checked pixel for pixel); bytes on the wire (Spice
//!   messages, before TLS framing), frames per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::model::{Rect, SurfaceFormat};
use spice_bridge::server::{ServerHandle, TlsListen};
use spice_bridge::testing::*;
use spice_bridge::wire::display::server_id as ds;
use spice_bridge::{DisplayModel, Server, ServerConfig};

const W: u32 = 1920;
const H: u32 = 1080;
const FRAMES: u32 = 40;

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Plain,
    Tls,
    WebSocket,
    WebSocketTls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "TLS (rustls)",
            Transport::WebSocket => "WebSocket",
            Transport::WebSocketTls => "WebSocket+TLS",
        }
    }
}

async fn start(model: DisplayModel) -> ServerHandle {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsListen {
            listen: "127.0.0.1:0".parse().unwrap(),
            config: test_tls_config(),
        }),
        ..Default::default()
    };
    Server::start(config, model, Arc::new(NullInput), Arc::new(NullAgent))
        .await
        .unwrap()
}

/// A TCP connection with Nagle off, as spice-gtk's (the server sets it on its side too);
/// without it the client's link header and link message wait on a delayed ACK.
async fn tcp(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

async fn tls(h: &ServerHandle) -> Box<dyn ClientStream> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let s = test_tls_connector()
        .connect(name, tcp(h.tls_addr().unwrap()).await)
        .await
        .unwrap();
    Box::new(s)
}

async fn link(h: &ServerHandle, t: Transport, channel: u8, sid: u32) -> ScriptedClient {
    let stream: Box<dyn ClientStream> = match t {
        Transport::Plain => Box::new(tcp(h.local_addr()).await),
        Transport::Tls => tls(h).await,
        Transport::WebSocket => websocket_client(Box::new(tcp(h.local_addr()).await))
            .await
            .unwrap(),
        Transport::WebSocketTls => websocket_client(tls(h).await).await.unwrap(),
    };
    let o = ScriptedClient::link_on(stream, channel, sid, "", spice_gtk_caps(channel))
        .await
        .unwrap();
    assert_eq!(o.result, Some(0));
    o.client.unwrap()
}

/// Links main + display and reads to the first MARK; returns the clients and the canvas.
async fn session(h: &ServerHandle, t: Transport) -> (ScriptedClient, ScriptedClient, ClientCanvas) {
    let mut main = link(h, t, 1, 0).await;
    let (ty, body) = main.recv().await.unwrap();
    assert_eq!(ty, 103);
    let sid = u32::from_le_bytes(body[..4].try_into().unwrap());
    let mut d = link(h, t, 2, sid).await;
    start_display(&mut d).await.unwrap();
    let mut canvas = ClientCanvas::default();
    read_to_mark(&mut d, &mut canvas, &mut 0).await;
    (main, d, canvas)
}

struct Row {
    first_ms: f64,
    secs: f64,
    bytes: u64,
    frames: u32,
}

async fn measure(t: Transport) -> Row {
    let model = DisplayModel::new();
    model
        .create_surface(0, W, H, SurfaceFormat::Xrgb32)
        .unwrap();
    let full = Rect::new(0, 0, W as i32, H as i32);
    model
        .draw_copy(0, full, &pattern_image(1, W, H, 0), &[])
        .unwrap();
    model.mark();
    let h = start(model.clone()).await;
    let mut firsts = Vec::new();
    drop(session(&h, t).await); // warm-up, not counted
    for _ in 0..7 {
        let t0 = Instant::now();
        let (_m, _d, canvas) = session(&h, t).await;
        firsts.push(t0.elapsed());
        assert_eq!(
            canvas.surface(0),
            model_surface_rgb(&model, 0),
            "first picture"
        );
    }
    firsts.sort();
    let (mut main, mut d, mut canvas) = session(&h, t).await;
    // a client reads its main channel (the server closes a session whose main outbox fills)
    tokio::spawn(async move { while main.recv().await.is_ok() {} });
    let frames: Vec<_> = (1..=FRAMES)
        .map(|i| pattern_image(10 + u64::from(i), W, H, i))
        .collect();
    let bytes0 = h.stats().display_bytes;
    let t0 = Instant::now();
    let mut marks = 0u32;
    let mut n = 0u32;
    // one frame in flight: draw, then read until the client shows exactly that frame
    for f in &frames {
        model.draw_copy(0, full, f, &[]).unwrap();
        model.mark();
        let want = model_surface_rgb(&model, 0);
        loop {
            let (ty, b) = tokio::time::timeout(Duration::from_secs(60), d.recv())
                .await
                .expect("frames keep coming")
                .unwrap();
            canvas.apply(ty, &b);
            n += 1;
            if n % 20 == 0 {
                d.send(2, &[]).await.unwrap();
            }
            if ty == ds::MARK && canvas.surface(0) == want {
                marks += 1;
                break;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let row = Row {
        first_ms: firsts[firsts.len() / 2].as_secs_f64() * 1e3,
        secs,
        bytes: h.stats().display_bytes - bytes0,
        frames: marks,
    };
    h.shutdown().await;
    row
}

fn main() {
    // RUST_LOG=info shows the server's log
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("display channel at {W}x{H}, LZ, in-process server and scripted client on loopback");
    println!(
        "{:<14} {:>22} {:>14} {:>10} {:>12} {:>10} {:>8}",
        "transport", "link to first picture", "40 frames (s)", "MB/s", "bytes", "frames", "fps"
    );
    let mut plain = None;
    for t in [
        Transport::Plain,
        Transport::Tls,
        Transport::WebSocket,
        Transport::WebSocketTls,
    ] {
        let r = rt.block_on(measure(t));
        let mbs = r.bytes as f64 / r.secs / 1e6;
        let ratio = match &plain {
            None => String::new(),
            Some((f, s)) => format!(
                "  ({:.2}x plain first picture, {:.2}x plain time)",
                r.first_ms / f,
                r.secs / s
            ),
        };
        println!(
            "{:<14} {:>19.1} ms {:>14.2} {:>10.1} {:>12} {:>10} {:>8.1}{ratio}",
            t.name(),
            r.first_ms,
            r.secs,
            mbs,
            r.bytes,
            r.frames,
            f64::from(r.frames) / r.secs
        );
        if t == Transport::Plain {
            plain = Some((r.first_ms, r.secs));
        }
    }
    println!("bytes: Spice messages (before TLS records and WebSocket frame headers)");
}
