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
