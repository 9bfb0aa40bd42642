//! Test tools shipped with the crate (used by unit tests, integration tests, benches and fuzz
//! targets): a cached RSA key, client-side ticket encryption, and a scripted in-process Spice
//! client ([`ScriptedClient`]).

use std::sync::OnceLock;

use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};

use crate::link::TicketKey;

/// A process-wide ticket key, generated once (key generation is slow in debug builds).
pub fn test_key() -> &'static TicketKey {
    static KEY: OnceLock<TicketKey> = OnceLock::new();
    KEY.get_or_init(|| TicketKey::generate().expect("RSA-1024 key generation"))
}

/// Encrypts `password` + NUL with RSA-OAEP-SHA1 under the DER public key from a link reply, as
/// spice-gtk does. Panics on a malformed key (test tool).
pub fn encrypt_ticket(der: &[u8], password: &str) -> Vec<u8> {
    let key = RsaPublicKey::from_public_key_der(der).expect("server public key parses");
    let mut plain = password.as_bytes().to_vec();
    plain.push(0);
    key.encrypt(&mut rand::thread_rng(), Oaep::new::<sha1::Sha1>(), &plain)
        .expect("OAEP encryption")
}

use crate::model::{CursorKind, CursorShape, DisplayModel, Image, Point, Rect, SurfaceFormat};

/// Decodes a JPEG (as a client would) to (width, height, 0x00RRGGBB pixels). Motion-JPEG
/// frames may leave out their Huffman tables (spice-server's MJPEG encoder sends them with the
/// first frame only); like spice-gtk's decoder, the standard tables of the JPEG specification
/// (Annex K) are then used.
pub fn decode_jpeg(data: &[u8]) -> Result<(u32, u32, Vec<u32>), String> {
    match decode_jpeg_once(data) {
        Err(e) if e.contains("huffman table") && data.starts_with(&[0xFF, 0xD8]) => {
            let mut with = vec![0xFF, 0xD8];
            with.extend_from_slice(&standard_huffman_tables());
            with.extend_from_slice(&data[2..]);
            decode_jpeg_once(&with)
        }
        r => r,
    }
}

fn decode_jpeg_once(data: &[u8]) -> Result<(u32, u32, Vec<u32>), String> {
    let mut d = jpeg_decoder::Decoder::new(data);
    let px = d.decode().map_err(|e| e.to_string())?;
    let info = d.info().ok_or("no frame header")?;
    let rgb: Vec<u32> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => px
            .chunks_exact(3)
            .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
            .collect(),
        jpeg_decoder::PixelFormat::L8 => px.iter().map(|&l| u32::from(l) * 0x0001_0101).collect(),
        other => return Err(format!("unexpected JPEG pixel format {other:?}")),
    };
    Ok((u32::from(info.width), u32::from(info.height), rgb))
}

/// The DHT segments of the standard Huffman tables (JPEG Annex K), taken from a JPEG the
/// `jpeg-encoder` crate writes without table optimisation (it writes exactly those).
fn standard_huffman_tables() -> Vec<u8> {
    let mut j = Vec::new();
    jpeg_encoder::Encoder::new(&mut j, 90)
        .encode(&[0u8; 8 * 8 * 3], 8, 8, jpeg_encoder::ColorType::Rgb)
        .expect("8x8 JPEG");
    let mut dht = Vec::new();
    let mut i = 2;
    while i + 4 <= j.len() && j[i] == 0xFF {
        let marker = j[i + 1];
        if marker == 0xDA {
            break; // start of scan: the tables came before
        }
        let len = usize::from(u16::from_be_bytes([j[i + 2], j[i + 3]]));
        if marker == 0xC4 {
            dht.extend_from_slice(&j[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    dht
}

/// Peak signal-to-noise ratio in dB of `got` against `want` (0x00RRGGBB pixels, same count),
/// over the three colour channels; `f64::INFINITY` when equal.
pub fn psnr(got: &[u32], want: &[u32]) -> f64 {
    assert_eq!(got.len(), want.len(), "psnr of pictures of different sizes");
    let mut se = 0f64;
    for (a, b) in got.iter().zip(want) {
        for shift in [0, 8, 16] {
            let d = f64::from((a >> shift) & 0xff) - f64::from((b >> shift) & 0xff);
            se += d * d;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    let mse = se / (got.len() as f64 * 3.0);
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// A deterministic pixel pattern (xRGB) for position (x, y) and a seed.
pub fn pattern(x: u32, y: u32, seed: u32) -> u32 {
    let r = (x.wrapping_mul(7).wrapping_add(seed)) & 0xff;
    let g = (y.wrapping_mul(5).wrapping_add(seed.wrapping_mul(3))) & 0xff;
    let b = ((x ^ y).wrapping_add(seed.wrapping_mul(11))) & 0xff;
    (r << 16) | (g << 8) | b
}

/// A `w` x `h` image filled with [`pattern`].
pub fn pattern_image(id: u64, w: u32, h: u32, seed: u32) -> Image {
    let px = (0..h)
        .flat_map(|y| (0..w).map(move |x| pattern(x, y, seed)))
        .collect();
    Image::new(id, w, h, px).expect("valid test image")
}

/// Scene 1: a 640x480 primary with a full-frame picture, filled rectangles and a clipped copy.
pub fn scene_gradient(m: &DisplayModel) {
    let _ = m.destroy_surface(0);
    m.create_surface(0, 640, 480, SurfaceFormat::Xrgb32)
        .expect("surface");
    m.draw_copy(
        0,
        Rect::new(0, 0, 640, 480),
        &pattern_image(0, 640, 480, 1),
        &[],
    )
    .expect("copy");
    m.fill(0, Rect::new(20, 30, 200, 100), 0x00ff_0000, &[])
        .expect("fill");
    m.fill(
        0,
        Rect::new(300, 200, 200, 200),
        0x0000_80ff,
        &[Rect::new(300, 200, 50, 50), Rect::new(400, 300, 100, 100)],
    )
    .expect("clipped fill");
    m.draw_copy(
        0,
        Rect::new(100, 300, 64, 64),
        &pattern_image(7, 64, 64, 9),
        &[Rect::new(100, 300, 40, 64)],
    )
    .expect("clipped copy");
    m.mark();
}

/// A photo-like xRGB pixel: smooth colour fields (a slow diagonal ramp plus broad waves) with
/// ±3 of deterministic grain, so neighbouring pixels differ a little almost everywhere.
pub fn photo_pixel(x: u32, y: u32, seed: u32) -> u32 {
    let h = (x.wrapping_mul(0x9e37_79b1)
        ^ y.wrapping_mul(0x85eb_ca77)
        ^ seed.wrapping_mul(0xc2b2_ae3d))
    .wrapping_mul(0x27d4_eb2f);
    let grain = |k: u32| ((h >> (k * 8)) % 7) as i32 - 3;
    let wave = |v: u32, p: u32| {
        let t = (v + p) % 256;
        (if t < 128 { t } else { 255 - t }) as i32
    };
    let r = 40 + x as i32 * 100 / 640 + wave(y * 2, seed) / 2 + grain(0);
    let g = 60 + wave(x + y, seed * 5) / 2 + grain(1);
    let b = 90 + y as i32 * 90 / 480 + wave(x * 3, seed * 9) / 3 + grain(2);
    let c = |v: i32| v.clamp(0, 255) as u32;
    (c(r) << 16) | (c(g) << 8) | c(b)
}

/// A `w` x `h` image filled with [`photo_pixel`].
pub fn photo_image(id: u64, w: u32, h: u32, seed: u32) -> Image {
    let px = (0..h)
        .flat_map(|y| (0..w).map(move |x| photo_pixel(x, y, seed)))
        .collect();
    Image::new(id, w, h, px).expect("valid test image")
}

/// A `w` x `h` picture mixing photo-like patches, flat blocks with isolated dots, and
/// stripes: long runs, short runs and runs cut by single pixels (QUIC's run mode).
pub fn mixed_image(id: u64, w: u32, h: u32) -> Image {
    let px = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| match (x / 40 + y / 30) % 3 {
                0 => photo_pixel(x, y, 3),
                1 if (x * 7 + y * 13) % 97 == 0 => 0x00ff_ffff,
                1 => 0x0030_60c0 + (y / 30),
                _ => {
                    if (x / 3) % 2 == 0 {
                        0x0000_0000
                    } else {
                        0x00e0_e0e0
                    }
                }
            })
        })
        .collect();
    Image::new(id, w, h, px).expect("valid test image")
}

/// Scene "photo": a 643x401 primary (odd sizes) covered by a photo-like picture, a second
/// photo-like piece of 129x67, a mixed picture with flat areas ([`mixed_image`]), a
/// 2-pixel-wide strip (too narrow for QUIC) and a flat fill.
pub fn scene_photo(m: &DisplayModel) {
    let _ = m.destroy_surface(0);
    m.create_surface(0, 643, 401, SurfaceFormat::Xrgb32)
        .expect("surface");
    m.draw_copy(
        0,
        Rect::new(0, 0, 643, 401),
        &photo_image(0, 643, 401, 1),
        &[],
    )
    .expect("copy");
    m.draw_copy(
        0,
        Rect::new(301, 77, 129, 67),
        &photo_image(0, 129, 67, 4),
        &[],
    )
    .expect("piece");
    m.draw_copy(
        0,
        Rect::new(600, 10, 2, 300),
        &photo_image(0, 2, 300, 6),
        &[],
    )
    .expect("strip");
    m.fill(0, Rect::new(10, 350, 100, 40), 0x0020_4060, &[])
        .expect("fill");
    m.mark();
}

/// A console-text xRGB pixel: 16-row lines of 8x16 glyph cells, dark glyph bits on white with
/// blank rows between lines; each cell's bits come from a hash of (line, cell), like the guest's
/// `qxltest` text workload. Two colours only.
pub fn text_pixel(x: u32, y: u32, seed: u32) -> u32 {
    let (line, r, cell) = (y / 16 + seed * 1000, y % 16, x / 8);
    if !(2..14).contains(&r) {
        return 0x00ff_ffff;
    }
    let mut h = line.wrapping_mul(2_654_435_761) ^ cell.wrapping_mul(40_503);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    if h & 7 == 0 {
        return 0x00ff_ffff;
    }
    if (h >> (((r - 2) / 3) * 4 + (x & 7) / 2)) & 1 != 0 {
        0x0020_2020
    } else {
        0x00ff_ffff
    }
}

/// A `w` x `h` picture of `colours` (2 to 256) colours: [`text_pixel`] for 2, else vertical
/// bands of [`pattern`] colours with dots, so every colour appears and rows repeat in part.
pub fn palette_image(id: u64, w: u32, h: u32, colours: u32) -> Image {
    let px = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                if colours <= 2 {
                    return text_pixel(x, y, 1);
                }
                let band = (x / 2 + y * 5 + (x * y) % 7) % colours;
                pattern(band, band * 3, 17)
            })
        })
        .collect();
    Image::new(id, w, h, px).expect("valid test image")
}

/// Scene "palette": few-colour pictures at odd places and of odd widths (so each row's last
/// packed byte is partly used) drawn on a 643x401 off-screen surface 1: a 2-colour text page
/// (331x97), a 16-colour picture (77x45), a 200-colour one (201x99) and a 2-colour strip one
/// pixel wide. Then the primary surface is created and gets surface 1 in one copy, so a client
/// that screenshots on its first primary draw (spicy-screenshot) shows them all.
pub fn scene_palette(m: &DisplayModel) {
    let (w, h) = (643, 401);
    m.create_surface(1, w, h, SurfaceFormat::Xrgb32)
        .expect("surface 1");
    m.fill(1, Rect::new(0, 0, w as i32, h as i32), 0x0040_4040, &[])
        .expect("bg");
    for (x, y, pw, ph, colours) in [
        (3, 5, 331, 97, 2),
        (401, 11, 77, 45, 16),
        (101, 203, 201, 99, 200),
        (640, 0, 1, 400, 2),
    ] {
        m.draw_copy(
            1,
            Rect::new(x, y, pw as i32, ph as i32),
            &palette_image(0, pw, ph, colours),
            &[],
        )
        .expect("palette picture");
    }
    m.create_surface(0, w, h, SurfaceFormat::Xrgb32)
        .expect("primary");
    let all = Rect::new(0, 0, w as i32, h as i32);
    m.copy_surface(1, all, 0, all, &[]).expect("to primary");
    m.mark();
}

/// Scene 2: a 333x211 primary (not multiples of 16) drawn with odd-sized pieces.
pub fn scene_odd(m: &DisplayModel) {
    let _ = m.destroy_surface(0);
    m.create_surface(0, 333, 211, SurfaceFormat::Xrgb32)
        .expect("surface");
    m.draw_copy(
        0,
        Rect::new(0, 0, 333, 211),
        &pattern_image(0, 333, 211, 2),
        &[],
    )
    .expect("copy");
    m.draw_copy(
        0,
        Rect::new(317, 195, 16, 16),
        &pattern_image(0, 16, 16, 5),
        &[],
    )
    .expect("corner");
    m.fill(0, Rect::new(1, 1, 3, 209), 0x00ff_ff00, &[])
        .expect("fill");
    m.rop(
        0,
        Rect::new(50, 50, 101, 33),
        crate::model::RopKind::Invert,
        &[],
    )
    .expect("invert");
    m.mark();
}

/// Scene 3: a 800x600 primary with many small text-sized draws, cached glyph images and a
/// COPY_BITS scroll.
pub fn scene_scroll(m: &DisplayModel) {
    let _ = m.destroy_surface(0);
    m.create_surface(0, 800, 600, SurfaceFormat::Xrgb32)
        .expect("surface");
    m.fill(0, Rect::new(0, 0, 800, 600), 0x00ff_ffff, &[])
        .expect("bg");
    let glyphs: Vec<Image> = (0..16)
        .map(|g| pattern_image(1000 + g, 8, 16, g as u32 * 13))
        .collect();
    for row in 0..30 {
        for col in 0..40 {
            let g = &glyphs[(row * 7 + col * 3) % glyphs.len()];
            m.draw_copy(
                0,
                Rect::new(col as i32 * 10 + 5, row as i32 * 20, 8, 16),
                g,
                &[],
            )
            .expect("glyph");
        }
    }
    // scroll everything up by 40 rows and clear the bottom
    m.copy_bits(0, Point { x: 0, y: 40 }, Rect::new(0, 0, 800, 560), &[])
        .expect("copy bits");
    m.fill(0, Rect::new(0, 560, 800, 40), 0x0020_2020, &[])
        .expect("clear");
    for col in 0..40 {
        m.draw_copy(
            0,
            Rect::new(col * 10 + 5, 570, 8, 16),
            &glyphs[col as usize % 16],
            &[],
        )
        .expect("glyph");
    }
    m.mark();
}

/// A 32x32 ALPHA cursor: opaque red square with a black border and a transparent centre hole.
pub fn test_cursor() -> CursorShape {
    let mut data = Vec::with_capacity(32 * 32 * 4);
    for y in 0..32u32 {
        for x in 0..32u32 {
            let border = x < 2 || y < 2 || x >= 30 || y >= 30;
            let hole = (12..20).contains(&x) && (12..20).contains(&y);
            let px: u32 = if hole {
                0
            } else if border {
                0xff00_0000
            } else {
                0xffff_0000
            };
            data.extend_from_slice(&px.to_le_bytes());
        }
    }
    CursorShape::new(77, CursorKind::Alpha, 32, 32, (0, 0), data).expect("cursor")
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::display::{
    self as wd, Brush, CopyBits, DrawCopy, DrawFill, DrawMaskOnly, ImageBody, SurfaceCreate,
    SurfaceDestroy,
};
use crate::wire::header::HeaderKind;
use crate::wire::link::{LinkHeader, LinkMess, LinkReply, SPICE_MAGIC};
use crate::wire::types::Caps;
use crate::wire::{decode_exact, to_vec, Message};

/// A test-only x509 directory (QEMU layout) for 127.0.0.1/localhost, valid for a century;
/// its CA key was thrown away. Never use it outside tests.
pub const TEST_X509_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/x509");

/// The TLS configuration of [`TEST_X509_DIR`].
pub fn test_tls_config() -> crate::tls::TlsConfig {
    crate::tls::TlsConfig::from_x509_dir(std::path::Path::new(TEST_X509_DIR))
        .expect("test x509 dir")
}

/// A TLS client that trusts only [`TEST_X509_DIR`]'s CA.
pub fn test_tls_connector() -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let ca = std::fs::read(format!("{TEST_X509_DIR}/ca-cert.pem")).expect("test CA");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.expect("test CA PEM")).expect("test CA");
    }
    #[allow(deprecated)] // see crate::tls: ring only lacks post-quantum key exchange
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects to a TLS port as [`test_tls_connector`] does, for 127.0.0.1.
pub async fn tls_connect(
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("IP name");
    test_tls_connector().connect(name, tcp).await
}

/// How long a scripted client waits for any single message.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Caps spice-gtk 0.42 announces: (common, channel) for a channel type.
pub fn spice_gtk_caps(channel_type: u8) -> (Caps, Caps) {
    let chan = match channel_type {
        1 => Caps(vec![0x0f]),
        2 => Caps::from_bits(&[0, 1, 2, 3, 4, 5, 8, 9]),
        _ => Caps::default(),
    };
    (Caps(vec![0x0d]), chan)
}

/// A byte stream a scripted client can run on (TCP, TLS, WebSocket).
pub trait ClientStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientStream for T {}

/// A scripted in-process Spice client connection (one channel).
pub struct ScriptedClient {
    stream: Box<dyn ClientStream>,
    header: HeaderKind,
    serial: u64,
}

/// Outcome of a link attempt.
#[derive(Debug)]
pub struct LinkOutcome {
    /// the server's link reply
    pub reply: LinkReply,
    /// the final 4-byte link result (`None` if the server closed before sending it)
    pub result: Option<u32>,
    /// the connection, when the result was OK
    pub client: Option<ScriptedClient>,
}

impl std::fmt::Debug for ScriptedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScriptedClient({:?})", self.header)
    }
}

/// Reads display messages into `canvas` until a MARK, sending an ACK every 20 messages
/// (`count` carries the message count across calls); returns the message types read. Panics on
/// an i/o error (test tool).
pub async fn read_to_mark(
    d: &mut ScriptedClient,
    canvas: &mut ClientCanvas,
    count: &mut u32,
) -> Vec<u16> {
    let mut types = Vec::new();
    loop {
        let (t, b) = d.recv().await.expect("display message");
        canvas.apply(t, &b);
        types.push(t);
        *count += 1;
        if *count % 20 == 0 {
            d.send(2, &[]).await.expect("ACK");
        }
        if t == wd::server_id::MARK {
            return types;
        }
    }
}

/// Starts a linked display channel as spice-gtk does: reads SET_ACK, answers ACK_SYNC, sends
/// DISPLAY_INIT (20 Mi-pixel image cache, 3 Mi GLZ window). The client must then send an ACK
/// (type 2) every 20 messages.
pub async fn start_display(d: &mut ScriptedClient) -> std::io::Result<()> {
    let (t, _) = d.recv().await?;
    assert_eq!(t, 3, "SET_ACK first");
    d.send(1, &1u32.to_le_bytes()).await?;
    let mut init = vec![1u8];
    init.extend_from_slice(&20_971_520i64.to_le_bytes());
    init.push(1);
    init.extend_from_slice(&SCRIPTED_GLZ_WINDOW.to_le_bytes());
    d.send(101, &init).await
}

/// The bytes a client sends first: link header and link message.
pub fn link_request(channel_type: u8, connection_id: u32, caps: (Caps, Caps)) -> Vec<u8> {
    let mess = to_vec(&LinkMess {
        connection_id,
        channel_type,
        channel_id: 0,
        common_caps: caps.0,
        channel_caps: caps.1,
    });
    let mut out = to_vec(&LinkHeader {
        magic: SPICE_MAGIC,
        major_version: 2,
        minor_version: 2,
        size: mess.len() as u32,
    });
    out.extend_from_slice(&mess);
    out
}

impl ScriptedClient {
    /// Links a channel: header + link message, reply, mechanism (AUTH_SPICE), OAEP ticket.
    pub async fn link(
        addr: SocketAddr,
        channel_type: u8,
        connection_id: u32,
        password: &str,
        caps: (Caps, Caps),
    ) -> std::io::Result<LinkOutcome> {
        let s = TcpStream::connect(addr).await?;
        Self::link_on(Box::new(s), channel_type, connection_id, password, caps).await
    }

    /// Like [`ScriptedClient::link`] on a stream set up by the caller (a TLS or WebSocket
    /// connection).
    pub async fn link_on(
        mut s: Box<dyn ClientStream>,
        channel_type: u8,
        connection_id: u32,
        password: &str,
        caps: (Caps, Caps),
    ) -> std::io::Result<LinkOutcome> {
        let auth_selection = caps.0.has(crate::wire::types::common_cap::AUTH_SELECTION);
        let mini = caps.0.has(crate::wire::types::common_cap::MINI_HEADER);
        s.write_all(&link_request(channel_type, connection_id, caps))
            .await?;
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await?;
        let hdr: LinkHeader = decode_exact(&h).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; hdr.size.min(4096) as usize];
        s.read_exact(&mut body).await?;
        let reply: LinkReply = decode_exact(&body).map_err(std::io::Error::other)?;
        if reply.error != 0 {
            return Ok(LinkOutcome {
                reply,
                result: None,
                client: None,
            });
        }
        let mut t = Vec::new();
        if auth_selection {
            t.extend_from_slice(&1u32.to_le_bytes());
        }
        t.extend_from_slice(&encrypt_ticket(&reply.pub_key, password));
        s.write_all(&t).await?;
        let mut r = [0u8; 4];
        let result = match s.read_exact(&mut r).await {
            Ok(_) => Some(u32::from_le_bytes(r)),
            Err(_) => None,
        };
        let header = if mini {
            HeaderKind::Mini
        } else {
            HeaderKind::Full
        };
        let client = (result == Some(0)).then_some(ScriptedClient {
            stream: s,
            header,
            serial: 0,
        });
        Ok(LinkOutcome {
            reply,
            result,
            client,
        })
    }

    /// Links and panics unless the result is OK (test helper).
    pub async fn connect(
        addr: SocketAddr,
        channel_type: u8,
        connection_id: u32,
        password: &str,
    ) -> ScriptedClient {
        let o = Self::link(
            addr,
            channel_type,
            connection_id,
            password,
            spice_gtk_caps(channel_type),
        )
        .await
        .expect("link i/o");
        assert_eq!(o.result, Some(0), "link result");
        o.client.expect("linked client")
    }

    /// Sends a raw message.
    pub async fn send(&mut self, msg_type: u16, body: &[u8]) -> std::io::Result<()> {
        self.serial += 1;
        let mut b = Vec::new();
        self.header
            .encode(self.serial, msg_type, body.len() as u32, &mut b);
        b.extend_from_slice(body);
        self.stream.write_all(&b).await
    }

    /// Writes raw bytes (anything: for hostile-client tests).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a raw header announcing `size` bytes, and nothing else.
    pub async fn send_header_only(&mut self, msg_type: u16, size: u32) -> std::io::Result<()> {
        let mut b = Vec::new();
        self.header.encode(1, msg_type, size, &mut b);
        self.stream.write_all(&b).await
    }

    /// Sends a typed message.
    pub async fn send_msg<M: Message>(&mut self, m: &M, msg_type: u16) -> std::io::Result<()> {
        self.send(msg_type, &to_vec(m)).await
    }

    /// Receives one message (errors on EOF or after [`CLIENT_TIMEOUT`]).
    pub async fn recv(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        tokio::time::timeout(CLIENT_TIMEOUT, async {
            let mut h = vec![0u8; self.header.size()];
            self.stream.read_exact(&mut h).await?;
            let hd = self.header.decode(&h).map_err(std::io::Error::other)?;
            let mut b = vec![0u8; hd.size as usize];
            self.stream.read_exact(&mut b).await?;
            Ok((hd.msg_type, b))
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no message"))?
    }

    /// Receives messages until one of type `t` arrives (others are returned too, in order).
    pub async fn recv_until(&mut self, t: u16) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
        let mut v = Vec::new();
        loop {
            let m = self.recv().await?;
            let done = m.0 == t;
            v.push(m);
            if done {
                return Ok(v);
            }
        }
    }

    /// True once the server closed the connection (reads until EOF, within the timeout).
    pub async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let r = tokio::time::timeout(CLIENT_TIMEOUT, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await;
        r.unwrap_or(false)
    }

    /// Shuts the connection down.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A client-side canvas: applies display messages to pixels the way a Spice client does, to
/// check in-process what a client would show.
#[derive(Debug, Default)]
pub struct ClientCanvas {
    /// surfaces: id → (width, height, pixels)
    pub surfaces: HashMap<u32, (u32, u32, Vec<u32>)>,
    /// pixmap cache
    pub cache: HashMap<u64, (u32, u32, Vec<u32>)>,
    /// MARKs seen
    pub marks: usize,
    /// images received by type (200 counts palettes taken from the palette cache)
    pub image_types: HashMap<u8, usize>,
    /// palette cache
    pub palettes: HashMap<u64, Vec<u32>>,
    /// running video streams: id → (surface, dest)
    pub streams: HashMap<u32, (u32, Rect)>,
    /// STREAM_CREATE, STREAM_DATA and STREAM_DESTROY messages seen
    pub stream_messages: [usize; 3],
    /// The GLZ window; made on the first GLZ image with [`SCRIPTED_GLZ_WINDOW`] pixels (what
    /// [`start_display`] announces) unless the test set one.
    pub glz: Option<crate::codec::glz::GlzDecoderWindow>,
}

/// The GLZ window (pixels) our scripted display clients announce in DISPLAY_INIT, as spice-gtk
/// does with its smallest window.
pub const SCRIPTED_GLZ_WINDOW: i32 = 3_145_728;

fn regions(bbox: &Rect, clip: &[Rect], w: u32, h: u32) -> Vec<Rect> {
    let b = bbox.intersect(&Rect::new(0, 0, w as i32, h as i32));
    if clip.is_empty() {
        return vec![b];
    }
    clip.iter()
        .map(|c| c.intersect(&b))
        .filter(|r| !r.is_empty())
        .collect()
}

impl ClientCanvas {
    /// Applies one display message; unknown types are ignored. Panics on malformed messages
    /// (test tool).
    pub fn apply(&mut self, t: u16, body: &[u8]) {
        use wd::server_id::*;
        match t {
            SURFACE_CREATE => {
                let s: SurfaceCreate = decode_exact(body).expect("surface create");
                self.surfaces.insert(
                    s.surface_id,
                    (s.width, s.height, vec![0; (s.width * s.height) as usize]),
                );
            }
            SURFACE_DESTROY => {
                let s: SurfaceDestroy = decode_exact(body).expect("surface destroy");
                self.surfaces.remove(&s.surface_id);
            }
            MARK => self.marks += 1,
            STREAM_CREATE => {
                let c: wd::StreamCreate = decode_exact(body).expect("stream create");
                assert_eq!(c.codec_type, wd::VIDEO_CODEC_MJPEG);
                assert_eq!(c.flags & wd::STREAM_FLAG_TOP_DOWN, wd::STREAM_FLAG_TOP_DOWN);
                assert!(
                    self.surfaces.contains_key(&c.surface_id),
                    "stream on no surface"
                );
                assert!(
                    self.streams.insert(c.id, (c.surface_id, c.dest)).is_none(),
                    "stream {} created twice",
                    c.id
                );
                self.stream_messages[0] += 1;
            }
            STREAM_DATA => {
                let d: wd::StreamData = decode_exact(body).expect("stream data");
                let (surface, dest) = *self.streams.get(&d.id).expect("frame of a stream");
                let (fw, fh, px) = decode_jpeg(&d.data).expect("stream frame decodes");
                assert_eq!((fw, fh), (dest.width(), dest.height()), "frame size");
                let base = wd::DisplayBase {
                    surface_id: surface,
                    bbox: dest,
                    clip: Default::default(),
                };
                self.paint(&base, |x, y, p| {
                    *p = px[((y - dest.top) as u32 * fw + (x - dest.left) as u32) as usize];
                });
                self.stream_messages[1] += 1;
            }
            STREAM_DESTROY => {
                let d: wd::StreamDestroy = decode_exact(body).expect("stream destroy");
                assert!(
                    self.streams.remove(&d.id).is_some(),
                    "destroy of an unknown stream"
                );
                self.stream_messages[2] += 1;
            }
            INVAL_PALETTE => {
                let p: wd::InvalPalette = decode_exact(body).expect("inval palette");
                assert!(
                    self.palettes.remove(&p.id).is_some(),
                    "server invalidated an unknown palette"
                );
            }
            INVAL_ALL_PALETTES => self.palettes.clear(),
            INVAL_LIST => {
                let l: wd::InvalList = decode_exact(body).expect("inval list");
                for id in l.0 {
                    self.cache.remove(&id);
                }
            }
            DRAW_FILL => {
                let f: DrawFill = decode_exact(body).expect("fill");
                let Brush::Solid(c) = f.brush else { return };
                self.paint(&f.base, |_, _, p| *p = c);
            }
            DRAW_BLACKNESS | DRAW_WHITENESS | DRAW_INVERS => {
                let f: DrawMaskOnly = decode_exact(body).expect("rop");
                self.paint(&f.base, |_, _, p| {
                    *p = match t {
                        DRAW_BLACKNESS => 0,
                        DRAW_WHITENESS => 0xffffff,
                        _ => *p ^ 0xffffff,
                    }
                });
            }
            COPY_BITS => {
                let c: CopyBits = decode_exact(body).expect("copy bits");
                let (w, _, px) = &self.surfaces[&c.base.surface_id];
                let (w, src) = (*w, px.clone());
                let (dx, dy) = (c.base.bbox.left, c.base.bbox.top);
                self.paint(&c.base, |x, y, p| {
                    let sx = (c.src_pos.x + x - dx) as u32;
                    let sy = (c.src_pos.y + y - dy) as u32;
                    *p = src[(sy * w + sx) as usize];
                });
            }
            DRAW_COPY => {
                let d: DrawCopy = decode_exact(body).expect("draw copy");
                let img = self.image(&d);
                let (iw, ipx) = (img.0, img.2);
                let (dx, dy) = (d.base.bbox.left, d.base.bbox.top);
                let (ox, oy) = (d.src_area.left, d.src_area.top);
                self.paint(&d.base, |x, y, p| {
                    let sx = (x - dx + ox) as u32;
                    let sy = (y - dy + oy) as u32;
                    *p = ipx[(sy * iw + sx) as usize];
                });
            }
            _ => {}
        }
    }

    fn image(&mut self, d: &DrawCopy) -> (u32, u32, Vec<u32>) {
        let i = &d.image;
        let ty = match &i.body {
            ImageBody::Bitmap(_) => 0,
            ImageBody::LzRgb(_) => 101,
            ImageBody::LzPlt(_) => 100,
            ImageBody::Lz4(_) => 109,
            ImageBody::Quic(_) => 1,
            ImageBody::Jpeg(_) => 105,
            ImageBody::Glz(_) => 102,
            ImageBody::ZlibGlz { .. } => 107,
            ImageBody::FromCache => 103,
            ImageBody::Surface(_) => 104,
        };
        *self.image_types.entry(ty).or_default() += 1;
        let decoded = match &i.body {
            ImageBody::LzPlt(l) => {
                let pal = self.palette(&l.palette, l.flags);
                let dec = crate::codec::lz::decode_with_palette(&l.data, &pal, 1 << 28)
                    .expect("lz palette decode");
                (i.width, i.height, dec.pixels)
            }
            ImageBody::Bitmap(b) if b.format == wd::bitmap::FMT_8BIT => {
                let pal = self.palette(&b.palette, b.flags);
                let px = (0..b.height as usize)
                    .flat_map(|y| {
                        let row = &b.data[y * b.stride as usize..];
                        let pal = &pal;
                        (0..b.width as usize).map(move |x| pal[usize::from(row[x])] & 0xffffff)
                    })
                    .collect();
                (b.width, b.height, px)
            }
            ImageBody::Bitmap(b) => {
                assert_eq!(b.format, wd::bitmap::FMT_32BIT);
                let px = (0..b.height as usize)
                    .flat_map(|y| {
                        let row = &b.data[y * b.stride as usize..];
                        (0..b.width as usize).map(move |x| {
                            u32::from_le_bytes([row[x * 4], row[x * 4 + 1], row[x * 4 + 2], 0])
                        })
                    })
                    .collect();
                (b.width, b.height, px)
            }
            ImageBody::LzRgb(data) => {
                let dec = crate::codec::lz::decode(data, 1 << 28).expect("lz decode");
                let px = dec.pixels.iter().map(|p| p & 0xffffff).collect();
                (i.width, i.height, px)
            }
            ImageBody::Lz4(data) => {
                let dec = crate::codec::lz4::decode(data, i.width, i.height, 1 << 30).expect("lz4");
                let px = dec
                    .data
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], 0]))
                    .collect();
                (i.width, i.height, px)
            }
            ImageBody::Quic(data) => {
                let dec = crate::codec::quic::decode(data, i.width, i.height, 1 << 28)
                    .expect("quic decode");
                let px = dec.pixels.iter().map(|p| p & 0xffffff).collect();
                (i.width, i.height, px)
            }
            ImageBody::Glz(_) | ImageBody::ZlibGlz { .. } => {
                let inflated;
                let data = match &i.body {
                    ImageBody::ZlibGlz { glz_size, data } => {
                        inflated = crate::codec::glz::inflate(data, *glz_size).expect("zlib");
                        &inflated
                    }
                    ImageBody::Glz(data) => data,
                    _ => unreachable!(),
                };
                let win = self.glz.get_or_insert_with(|| {
                    crate::codec::glz::GlzDecoderWindow::new(SCRIPTED_GLZ_WINDOW as u64)
                });
                let (hdr, px) = win.decode(data, 1 << 28).expect("glz decode");
                assert_eq!((hdr.width, hdr.height), (i.width, i.height), "glz size");
                (i.width, i.height, px)
            }
            ImageBody::Jpeg(data) => {
                let px = decode_jpeg(data).expect("jpeg decode");
                assert_eq!((px.0, px.1), (i.width, i.height), "jpeg size");
                px
            }
            ImageBody::FromCache => self.cache.get(&i.id).cloned().expect("image in cache"),
            ImageBody::Surface(s) => self.surfaces.get(s).cloned().expect("source surface"),
        };
        if i.flags & wd::image_flags::CACHE_ME != 0 {
            self.cache.insert(i.id, decoded.clone());
        }
        decoded
    }

    /// The palette of a bitmap or LZ_PLT image, caching it when `flags` ask to.
    fn palette(&mut self, p: &wd::PaletteRef, flags: u8) -> Vec<u32> {
        match p {
            wd::PaletteRef::Inline(p) => {
                if flags & wd::bitmap::PAL_CACHE_ME != 0 {
                    self.palettes.insert(p.unique, p.entries.clone());
                }
                p.entries.clone()
            }
            wd::PaletteRef::FromCache(u) => {
                *self.image_types.entry(200).or_default() += 1;
                self.palettes.get(u).cloned().expect("palette in cache")
            }
            wd::PaletteRef::None => panic!("palette image without palette"),
        }
    }

    fn paint(&mut self, base: &wd::DisplayBase, mut f: impl FnMut(i32, i32, &mut u32)) {
        let Some((w, h, px)) = self.surfaces.get_mut(&base.surface_id) else {
            return;
        };
        let (w, h) = (*w, *h);
        for r in regions(&base.bbox, &base.clip.0, w, h) {
            for y in r.top..r.bottom {
                for x in r.left..r.right {
                    f(x, y, &mut px[(y as u32 * w + x as u32) as usize]);
                }
            }
        }
    }

    /// Surface `id` with the X byte cleared.
    pub fn surface(&self, id: u32) -> Option<(u32, u32, Vec<u32>)> {
        self.surfaces
            .get(&id)
            .map(|(w, h, p)| (*w, *h, p.iter().map(|v| v & 0xffffff).collect()))
    }
}

/// Model surface `id` with the X byte cleared (to compare with what a client shows).
pub fn model_surface_rgb(m: &DisplayModel, id: u32) -> Option<(u32, u32, Vec<u32>)> {
    m.read_surface(id)
        .map(|(w, h, p)| (w, h, p.iter().map(|v| v & 0xffffff).collect()))
}

/// Scene 3 drawn live for a client that is already connected: many small draws and a
/// COPY_BITS scroll on off-screen surface 1, then the primary surface is created and surface 1
/// copied onto it in one DRAW_COPY (so spicy-screenshot's first invalidate shows the result).
pub fn scene_scroll_offscreen(m: &DisplayModel) {
    m.create_surface(1, 800, 600, SurfaceFormat::Xrgb32)
        .expect("surface 1");
    m.fill(1, Rect::new(0, 0, 800, 600), 0x00ff_ffff, &[])
        .expect("bg");
    let glyphs: Vec<Image> = (0..16)
        .map(|g| pattern_image(2000 + g, 8, 16, g as u32 * 13))
        .collect();
    for row in 0..30 {
        for col in 0..40 {
            let g = &glyphs[(row * 7 + col * 3) % glyphs.len()];
            m.draw_copy(
                1,
                Rect::new(col as i32 * 10 + 5, row as i32 * 20, 8, 16),
                g,
                &[],
            )
            .expect("glyph");
        }
    }
    m.copy_bits(1, Point { x: 0, y: 40 }, Rect::new(0, 0, 800, 560), &[])
        .expect("copy bits");
    m.fill(1, Rect::new(0, 560, 800, 40), 0x0020_2020, &[])
        .expect("clear");
    for col in 0..40 {
        m.draw_copy(
            1,
            Rect::new(col * 10 + 5, 570, 8, 16),
            &glyphs[col as usize % 16],
            &[],
        )
        .expect("glyph");
    }
    // mask-only raster operations (DRAW_INVERS / DRAW_BLACKNESS / DRAW_WHITENESS)
    m.rop(
        1,
        Rect::new(100, 100, 150, 60),
        crate::model::RopKind::Invert,
        &[],
    )
    .expect("invert");
    m.rop(
        1,
        Rect::new(300, 100, 40, 40),
        crate::model::RopKind::Blackness,
        &[],
    )
    .expect("blackness");
    m.rop(
        1,
        Rect::new(360, 100, 40, 40),
        crate::model::RopKind::Whiteness,
        &[Rect::new(360, 100, 20, 40)],
    )
    .expect("whiteness");
    // 8-bit palette glyphs: three palettes, each sent once then taken from the palette cache
    let palettes: Vec<std::sync::Arc<crate::model::Palette>> = (0..3u32)
        .map(|p| {
            std::sync::Arc::new(crate::model::Palette {
                unique: 900 + u64::from(p),
                entries: (0..4u32).map(|e| pattern(e * 40, p * 70, 3)).collect(),
            })
        })
        .collect();
    for i in 0..30u32 {
        let idx = (0..8 * 16).map(|k| ((k + i) % 4) as u8).collect();
        let img = Image::with_palette(0, 8, 16, idx, palettes[(i % 3) as usize].clone())
            .expect("palette glyph");
        m.draw_copy(1, Rect::new(420 + i as i32 * 12, 575, 8, 16), &img, &[])
            .expect("palette glyph");
    }
    m.create_surface(0, 800, 600, SurfaceFormat::Xrgb32)
        .expect("primary");
    m.copy_surface(
        1,
        Rect::new(0, 0, 800, 600),
        0,
        Rect::new(0, 0, 800, 600),
        &[],
    )
    .expect("copy surface");
    m.mark();
}

/// An `Xvfb` X server for tests and benches that drive real clients (remote-viewer, xdotool).
///
/// The server picks its own free display number (`-displayfd`), so runs never collide with each
/// other or with lock files left behind by a crashed run; dropping it stops the server with
/// SIGTERM so that it removes its own `/tmp/.X<n>-lock` and socket.
pub struct Xvfb {
    child: std::process::Child,
    /// The `DISPLAY` value, e.g. `:3`.
    pub display: String,
    /// The XWD frame buffer file (`Xvfb_screen0`) when started with a frame buffer directory.
    pub fb: Option<std::path::PathBuf>,
}

impl Xvfb {
    /// Starts `Xvfb` with one `w` x `h` x 24 screen, its frame buffer mapped to a file in `fbdir`
    /// when given, and waits (up to 10 s) until it has chosen a display and listens.
    pub fn start(fbdir: Option<&std::path::Path>, w: u32, h: u32) -> std::io::Result<Xvfb> {
        use std::io::{BufRead, BufReader, Error, ErrorKind};
        use std::process::{Command, Stdio};

        let mut cmd = Command::new("Xvfb");
        // `-displayfd 1`: the server writes the display number it took, then a newline, to its
        // stdout once it is ready for clients.
        cmd.args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{w}x{h}x24"));
        if let Some(dir) = fbdir {
            cmd.arg("-fbdir").arg(dir);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::new(e.kind(), format!("spawn Xvfb (install xvfb): {e}")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the display number on a thread so that a hung server cannot hang the caller.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut x = Xvfb {
            child,
            display: String::new(),
            fb: fbdir.map(|d| d.join("Xvfb_screen0")),
        };
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(line) if line.trim().parse::<u32>().is_ok() => {
                x.display = format!(":{}", line.trim());
                Ok(x)
            }
            Ok(line) => Err(Error::other(format!(
                "Xvfb exited or wrote no display number (got {line:?})"
            ))),
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                "Xvfb chose no display within 10 s",
            )),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // kill(1) rather than libc: the crate forbids unsafe code.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upgrade request a browser sends (RFC 6455's sample key; subprotocol `binary`).
pub const WEBSOCKET_UPGRADE: &str = "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n";

/// Upgrades `s` to WebSocket as a browser does and returns a byte stream over it, so a
/// [`ScriptedClient`] can link through it: what is written goes out as masked BINARY frames,
/// and the payloads of the server's frames are what is read. A pump task does the framing
/// (a browser's WebSocket layer, in effect); it ends when either side closes.
pub async fn websocket_client(
    mut s: Box<dyn ClientStream>,
) -> std::io::Result<Box<dyn ClientStream>> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    s.write_all(WEBSOCKET_UPGRADE.as_bytes()).await?;
    s.flush().await?;
    let mut resp = Vec::new();
    while !resp.ends_with(b"\r\n\r\n") {
        if resp.len() > 16 * 1024 {
            return Err(bad("upgrade response over 16 KiB".into()));
        }
        resp.push(s.read_u8().await?);
    }
    if !resp.starts_with(b"HTTP/1.1 101 ") {
        return Err(bad(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&resp)
        )));
    }
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (mut ws_r, mut ws_w) = tokio::io::split(s);
    let (mut app_r, mut app_w) = tokio::io::split(theirs);
    // client -> server: each read becomes one masked BINARY frame
    tokio::spawn(async move {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match app_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut f = vec![0x82u8];
            match n {
                0..=125 => f.push(0x80 | n as u8),
                126..=0xffff => {
                    f.push(0x80 | 126);
                    f.extend_from_slice(&(n as u16).to_be_bytes());
                }
                _ => {
                    f.push(0x80 | 127);
                    f.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            f.extend_from_slice(&mask);
            f.extend(buf[..n].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            if ws_w.write_all(&f).await.is_err() || ws_w.flush().await.is_err() {
                break;
            }
        }
        let _ = ws_w.shutdown().await;
    });
    // server -> client: the payloads of unmasked data frames; anything else ends the stream
    tokio::spawn(async move {
        let mut payload = Vec::new();
        loop {
            let mut h = [0u8; 2];
            if ws_r.read_exact(&mut h).await.is_err() || h[1] & 0x80 != 0 {
                break;
            }
            let len = match h[1] & 0x7f {
                126 => ws_r.read_u16().await.map(u64::from),
                127 => ws_r.read_u64().await,
                l => Ok(u64::from(l)),
            };
            let Ok(len) = len else { break };
            if len > 1 << 24 {
                break;
            }
            payload.resize(len as usize, 0);
            if ws_r.read_exact(&mut payload).await.is_err() {
                break;
            }
            // continuation, TEXT, BINARY: data; CLOSE ends; PING/PONG from a server: ignored
            let op = h[0] & 0x0f;
            if op == 8 || (op <= 2 && app_w.write_all(&payload).await.is_err()) {
                break;
            }
        }
        let _ = app_w.shutdown().await;
    });
    Ok(Box::new(ours))
}
