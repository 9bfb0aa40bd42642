//! The bodies of the fuzz targets in `spice-bridge/fuzz` (one function per target, same name), so
//! the fuzzers and the stable-Rust replay test `tests/fuzz_corpus_replay.rs` run the same code on
//! every committed corpus input. Each function returns normally on any input the code under test
//! handles correctly and panics (an assertion) otherwise.
//!
//! Input formats are described on each function; seeds live in `fuzz/corpus/<target>/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::codec::{encode, lz, lz4, quic, ImageCodec, SourceFormat, SourceImage};
use crate::input::{NullAgent, NullInput};
use crate::link::{ExpectAuth, ExpectHeader, ExpectTicket, TicketKey, TicketPolicy};
use crate::model::Rect;
use crate::testing::{scene_odd, test_key, ScriptedClient};
use crate::wire::base::BaseClientMessage;
use crate::wire::display::DisplayClientMessage;
use crate::wire::header::HeaderKind;
use crate::wire::inputs::InputsClientMessage;
use crate::wire::main::MainClientMessage;
use crate::{DisplayModel, Server, ServerConfig, ServerHandle};

/// The base (all-channel) client message parser and the scancode decoder never panic, and a
/// decoded scancode never carries the release bit.
///
/// Input: mini header (type u16, size u32) then the body.
pub fn client_base(data: &[u8]) {
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = BaseClientMessage::parse(hdr.msg_type, body);
    for e in crate::input::decode_scancodes(body) {
        assert!(
            e.scancode & 0x80 == 0,
            "release bit never leaks into the scancode"
        );
    }
}

/// The display-channel client message parser and the data-header decoders never panic.
///
/// Input: mini header (type u16, size u32) then the body.
pub fn client_display(data: &[u8]) {
    let _ = HeaderKind::Full.decode(data.get(..18).unwrap_or(data));
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = DisplayClientMessage::parse(hdr.msg_type, body);
}

/// The inputs-channel client message parser and the data-header decoders never panic.
///
/// Input: mini header (type u16, size u32) then the body.
pub fn client_inputs(data: &[u8]) {
    let _ = HeaderKind::Full.decode(data.get(..18).unwrap_or(data));
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = InputsClientMessage::parse(hdr.msg_type, body);
}

/// The main-channel client message parser and the data-header decoders never panic.
///
/// Input: mini header (type u16, size u32) then the body.
pub fn client_main(data: &[u8]) {
    let _ = HeaderKind::Full.decode(data.get(..18).unwrap_or(data));
    let Some((h, body)) = data.split_at_checked(6) else {
        return;
    };
    let Ok(hdr) = HeaderKind::Mini.decode(h) else {
        return;
    };
    let _ = MainClientMessage::parse(hdr.msg_type, body);
}

/// The link stage refuses any byte sequence it does not accept without panicking, and never
/// links with a wrong ticket.
///
/// Input = what a client sends: LinkHeader (16), LinkMess (header.size bytes), optional auth
/// mechanism (4), ticket (128).
pub fn link(data: &[u8]) {
    let key = test_key();
    let Some((h, rest)) = data.split_at_checked(ExpectHeader::LEN) else {
        return;
    };
    let Ok(s) = ExpectHeader.handle(h) else {
        return;
    };
    let Some((m, rest)) = rest.split_at_checked(s.len()) else {
        return;
    };
    let Ok((auth, reply)) = s.handle(m, key) else {
        return;
    };
    assert!(reply.len() >= 16 + 178);
    let (t, rest): (ExpectTicket, &[u8]) = if auth.expects_mechanism() {
        let Some((mech, rest)) = rest.split_at_checked(ExpectAuth::LEN) else {
            return;
        };
        match auth.handle(mech) {
            Ok(t) => (t, rest),
            Err(_) => return,
        }
    } else {
        (auth.skip_mechanism(), rest)
    };
    let Some((ticket, _)) = rest.split_at_checked(ExpectTicket::LEN) else {
        return;
    };
    let policy = TicketPolicy::Password {
        password: "fuzz-password-not-guessable-0123456789".into(),
        expires: None,
    };
    // Random bytes never decrypt to the password.
    assert!(t.handle(ticket, key, &policy, SystemTime::now()).is_err());
}

/// The LZ (RGB and palette) and LZ4 image decoders never panic and never allocate beyond their
/// limits, whatever the bytes.
///
/// Input: an LZ stream, decoded as is and with a 16-entry palette (LZ_PLT types). The same
/// bytes are also fed to the LZ4 payload decoder with a geometry taken from the first bytes.
pub fn lz_decode(data: &[u8]) {
    if let Ok(img) = lz::decode(data, 1 << 20) {
        // A successful decode yields exactly width x height pixels.
        assert_eq!(
            img.pixels.len(),
            img.header.width as usize * img.header.height as usize
        );
    }
    // Palette streams (LZ_PLT) with a 16-entry palette: an index past it is an error.
    let palette: Vec<u32> = (0..16u32).map(|i| i * 0x0011_1111).collect();
    if let Ok(img) = lz::decode_with_palette(data, &palette, 1 << 20) {
        assert_eq!(
            img.pixels.len(),
            img.header.width as usize * img.header.height as usize
        );
        if img.header.image_type.plt_pixels_per_byte().is_some() {
            assert!(img.pixels.iter().all(|p| palette.contains(p)));
        }
    }
    if data.len() >= 2 {
        let w = u32::from(data[0] % 64) + 1;
        let h = u32::from(data[1] % 64) + 1;
        if let Ok(d) = lz4::decode(&data[2..], w, h, 1 << 22) {
            assert!(d.data.len() <= 64 * 64 * 4);
        }
    }
}

/// A picture for the GLZ targets: `w` × `h` xRGB pixels drawn from `pattern` (a byte picks
/// one of 16 colours when below 0xf0, else a pixel whose colour is made from the next three
/// bytes), or an earlier picture of `history` repeated, scrolled or retouched.
fn glz_picture(
    history: &[(u32, u32, Vec<u32>)],
    hdr: [u8; 3],
    pattern: &[u8],
) -> (u32, u32, Vec<u32>) {
    let fresh = |w: u32, h: u32| -> Vec<u32> {
        let n = (w * h) as usize;
        if pattern.is_empty() {
            return vec![0x00ff_8000; n];
        }
        let mut v = Vec::with_capacity(n);
        let mut i = 0usize;
        while v.len() < n {
            let b = pattern[i % pattern.len()];
            if b < 0xf0 {
                v.push(u32::from(b & 15) * 0x0011_0f07);
                i += 1;
            } else {
                let c = |k: usize| u32::from(pattern[(i + k) % pattern.len()]);
                v.push(c(1) << 16 | c(2) << 8 | c(3));
                i += 4;
            }
        }
        v
    };
    let [a, b, mode] = hdr;
    let pick = history.get(usize::from(mode >> 2) % history.len().max(1));
    match (mode % 4, pick) {
        (1, Some(p)) => p.clone(),
        (2, Some((w, h, px))) => {
            // scrolled up by `a % h` rows, new rows at the bottom
            let dy = u32::from(a) % h;
            let mut v = px[(dy * w) as usize..].to_vec();
            v.extend(fresh(*w, dy));
            (*w, *h, v)
        }
        (3, Some((w, h, px))) => {
            let mut v = px.clone();
            for (k, c) in fresh(1, u32::from(b % 16) + 1).into_iter().enumerate() {
                let at = (usize::from(a) * 131 + k * 977) % v.len();
                v[at] = c;
            }
            (*w, *h, v)
        }
        _ => {
            let (w, h) = (u32::from(a % 64) + 1, u32::from(b % 64) + 1);
            (w, h, fresh(w, h))
        }
    }
}

/// GLZ: a sequence of pictures encoded with one [`crate::codec::glz::GlzDictionary`] decodes,
/// picture by picture, in a client window of the size the client announced, to the same
/// pixels; server and client hold the same image ids after each one; a picture larger than the
/// window is refused without taking an id.
///
/// Input: byte 0 picks the window ((b % 32 + 1) × 256 pixels, so pictures get evicted), then
/// up to 16 pictures, each 3 header bytes (see [`glz_picture`]: mode % 4 = 0 new w × h
/// picture, 1 repeat, 2 scroll, 3 retouch of an earlier one), a length byte and that many
/// pattern bytes.
pub fn glz_roundtrip(data: &[u8]) {
    use crate::codec::glz::{encode_glz_into, GlzDecoderWindow, GlzDictionary, GlzError};
    let Some((&wb, mut rest)) = data.split_first() else {
        return;
    };
    let window = (i64::from(wb % 32) + 1) * 256;
    let mut dict = GlzDictionary::new(window);
    let mut client = GlzDecoderWindow::new(window as u64);
    let mut history: Vec<(u32, u32, Vec<u32>)> = Vec::new();
    for _ in 0..16 {
        let [a, b, mode, len, tail @ ..] = rest else {
            break;
        };
        let (pattern, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let (w, h, px) = glz_picture(&history, [*a, *b, *mode], pattern);
        let bytes: Vec<u8> = px.iter().flat_map(|p| p.to_le_bytes()).collect();
        let src = SourceImage::xrgb32(&bytes, w, h);
        let before = dict.next_id();
        let mut body = Vec::new();
        match encode_glz_into(&mut dict, &src, &mut body) {
            Ok(id) => {
                assert_eq!(id, before);
                let (hdr, got) = client.decode_body(&body, 1 << 20).expect("GLZ decodes");
                assert_eq!((hdr.width, hdr.height, hdr.id), (w, h, id));
                assert!(got == px, "GLZ picture {id} differs");
                assert!(
                    client.held_ids().eq(dict.held_ids()),
                    "client and server hold different images"
                );
            }
            Err(GlzError::WindowTooSmall { .. }) => {
                assert!(u64::from(w) * u64::from(h) > window as u64);
                assert_eq!(dict.next_id(), before);
                assert!(body.is_empty());
            }
            Err(e) => panic!("unexpected GLZ error {e}"),
        }
        history.push((w, h, px));
    }
}

/// The GLZ decoder never panics and never keeps more than its window: the input is decoded
/// as a GLZ stream by a fresh window, and by one already holding two pictures (ids 0 and 1,
/// so references into earlier images are exercised); a successful decode has exactly
/// width × height pixels.
///
/// Input: a GLZ stream (no `data_size`). Seeds: `corpus/glz_decode/`.
pub fn glz_decode(data: &[u8]) {
    use crate::codec::glz::{GlzDecoderWindow, GlzError, GlzHeader};
    let check = |r: Result<(GlzHeader, Vec<u32>), GlzError>, win: &GlzDecoderWindow| {
        if let Ok((h, px)) = r {
            assert_eq!(px.len() as u64, u64::from(h.width) * u64::from(h.height));
            assert_eq!(win.held_ids().last(), Some(h.id));
        }
    };
    let mut fresh = GlzDecoderWindow::new(1 << 14);
    let r = fresh.decode(data, 1 << 14);
    check(r, &fresh);
    let (_, mut win) = glz_fuzz_window();
    let r = win.decode(data, 1 << 14);
    check(r, &win);
    // The same bytes as a ZLIB_GLZ_RGB body's zlib part, its first four bytes the GLZ size it
    // states: inflating never yields another size, and what it yields decodes as GLZ or fails.
    if let Some((size, z)) = data.split_first_chunk::<4>() {
        let size = u32::from_le_bytes(*size) % (1 << 20);
        if let Ok(glz) = crate::codec::glz::inflate(z, size) {
            assert_eq!(glz.len(), size as usize);
            let mut fresh = GlzDecoderWindow::new(1 << 14);
            let r = fresh.decode(&glz, 1 << 14);
            check(r, &fresh);
        }
    }
}

/// A GLZ dictionary and a client window that both hold two 32 × 16 pictures (ids 0 and 1),
/// as the `glz_decode` target and its seeds start from.
pub fn glz_fuzz_window() -> (
    crate::codec::glz::GlzDictionary,
    crate::codec::glz::GlzDecoderWindow,
) {
    use crate::codec::glz::{encode_glz_into, GlzDecoderWindow, GlzDictionary};
    let mut dict = GlzDictionary::new(1 << 14);
    let mut win = GlzDecoderWindow::new(1 << 14);
    for k in 0..2u32 {
        let bytes: Vec<u8> = (0..32 * 16u32)
            .flat_map(|i| ((i / 5 + k) % 7 * 0x0023_1105).to_le_bytes())
            .collect();
        let src = SourceImage {
            data: &bytes,
            width: 32,
            height: 16,
            stride: 128,
            format: SourceFormat::Xrgb32,
        };
        let mut body = Vec::new();
        encode_glz_into(&mut dict, &src, &mut body).expect("seed picture");
        win.decode_body(&body, 1 << 14)
            .expect("seed picture decodes");
    }
    (dict, win)
}

/// The QUIC decoder never panics and never allocates beyond its limit (2^16 pixels here),
/// whatever the bytes; a successful decode has exactly width × height pixels.
///
/// Input: QUIC data (seeds: `corpus/quic_decode/`, written by the `write_quic_fuzz_seeds` unit
/// test). The expected size is taken from the stream's own header words (so the decoder gets
/// past the descriptor check), and also a fixed 7×5 from the first two bytes.
pub fn quic_decode(data: &[u8]) {
    let word = |i: usize| {
        data.get(i..i + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (w, h) = (word(12), word(16));
    if let Ok(img) = quic::decode(data, w, h, 1 << 16) {
        assert_eq!(img.pixels.len() as u64, u64::from(w) * u64::from(h));
    }
    if let [a, b, ..] = data {
        let (w, h) = (u32::from(a % 64) + 1, u32::from(b % 64) + 1);
        if let Ok(img) = quic::decode(data, w, h, 1 << 12) {
            assert_eq!(img.pixels.len(), (w * h) as usize);
        }
    }
}

/// The pixel buffer of a fuzzed picture and its stride: rows padded by `pad % 8` bytes, filled
/// with `pixels` repeated cyclically (`pixels` must not be empty).
fn fuzz_picture(
    width: u32,
    height: u32,
    format: SourceFormat,
    pad: u8,
    pixels: &[u8],
) -> (Vec<u8>, usize) {
    let row = width as usize * format.bytes_per_pixel();
    let stride = row + usize::from(pad % 8);
    let len = stride * (height as usize - 1) + row;
    (pixels.iter().copied().cycle().take(len).collect(), stride)
}

/// Whatever the picture, the JPEG encoding (lossy, `--jpeg-wan-compression=always`) is one
/// baseline JFIF picture of the same size that a JPEG decoder reads, and on smooth pictures
/// (each pixel within 2 of the mean of its left and upper neighbours) it stays within 30 dB
/// PSNR; `encode` gives JPEG or
/// the BITMAP fall-back, never an error.
///
/// Input: as [`quic_roundtrip`] (whose seeds suit it): width-1, height-1 (mod 64), format
/// (0 xRGB, 1 ARGB, 2 RGB24; 3 makes the picture smooth, xRGB), row padding, then pixel bytes
/// repeated cyclically.
pub fn jpeg_roundtrip(data: &[u8]) {
    let [w, h, f, pad, pixels @ ..] = data else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    let (width, height) = (u32::from(*w) + 1, u32::from(*h % 64) + 1);
    let smooth = f % 4 == 3;
    let format = match f % 4 {
        1 => SourceFormat::Argb32,
        2 => SourceFormat::Rgb24,
        _ => SourceFormat::Xrgb32,
    };
    let (mut buf, stride) = fuzz_picture(width, height, format, *pad, pixels);
    let bpp = format.bytes_per_pixel();
    if smooth {
        // Each pixel: the mean of its left and upper neighbours (those that exist) plus a step
        // of -2..=2 per channel taken from its own bytes.
        for y in 0..height as usize {
            for x in 0..width as usize {
                if x == 0 && y == 0 {
                    continue;
                }
                let o = y * stride + x * bpp;
                for c in 0..3 {
                    let left = (x > 0).then(|| i16::from(buf[o - bpp + c]));
                    let up = (y > 0).then(|| i16::from(buf[o - stride + c]));
                    let base = match (left, up) {
                        (Some(l), Some(u)) => (l + u) / 2,
                        (Some(v), None) | (None, Some(v)) => v,
                        (None, None) => 0,
                    };
                    let step = i16::from(buf[o + c] % 5) - 2;
                    buf[o + c] = (base + step).clamp(0, 255) as u8;
                }
            }
        }
    }
    let src = SourceImage {
        data: &buf,
        width,
        height,
        stride,
        format,
    };
    let img = encode(ImageCodec::Jpeg, &src).expect("JPEG encode of a valid picture");
    match img.codec {
        ImageCodec::Jpeg => {
            let (dw, dh, got) =
                crate::testing::decode_jpeg(&img.body[4..]).expect("our JPEG decodes");
            assert_eq!((dw, dh), (width, height));
            if smooth {
                let want: Vec<u32> = (0..height as usize)
                    .flat_map(|y| (0..width as usize).map(move |x| (y, x)))
                    .map(|(y, x)| {
                        let p = &buf[y * stride + x * bpp..];
                        u32::from_le_bytes([p[0], p[1], p[2], 0])
                    })
                    .collect();
                let db = crate::testing::psnr(&got, &want);
                assert!(db >= 30.0, "smooth picture at {db:.1} dB");
            }
        }
        ImageCodec::Bitmap => {}
        other => panic!("encode(Jpeg) gave {other:?}"),
    }
}

/// Whatever the picture, the QUIC encoding decodes back to it exactly, through
/// `quic::encode` and through `codec::encode(ImageCodec::Quic)` (whose body is QUIC or, when
/// that is not smaller or the picture is under 3 pixels wide or tall, BITMAP).
///
/// Input: 4 header bytes (width-1, height-1, format: 0 xRGB, 1 ARGB, 2 RGB24, row padding)
/// then pixel bytes, repeated cyclically when too short (a short input gives flat or striped
/// pictures, which exercise the run mode).
pub fn quic_roundtrip(data: &[u8]) {
    let [w, h, f, pad, pixels @ ..] = data else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    let width = u32::from(*w) + 1;
    let height = u32::from(*h % 64) + 1;
    let format = match f % 3 {
        0 => SourceFormat::Xrgb32,
        1 => SourceFormat::Argb32,
        _ => SourceFormat::Rgb24,
    };
    let (buf, stride) = fuzz_picture(width, height, format, *pad, pixels);
    let (bpp, row) = (
        format.bytes_per_pixel(),
        width as usize * format.bytes_per_pixel(),
    );
    let src = SourceImage {
        data: &buf,
        width,
        height,
        stride,
        format,
    };
    let mut want = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height as usize {
        for p in buf[y * stride..y * stride + row].chunks_exact(bpp) {
            let a = if format == SourceFormat::Argb32 {
                p[3]
            } else {
                0
            };
            want.push(u32::from_le_bytes([p[0], p[1], p[2], a]));
        }
    }
    let stream = quic::encode(&src).expect("QUIC encode of a valid picture");
    assert_eq!(stream.len() % 4, 0);
    let got = quic::decode(&stream, width, height, 1 << 20).expect("QUIC decode of our stream");
    assert!(got.pixels == want, "QUIC round trip differs");
    assert_eq!(
        quic::decode(&stream[..stream.len() - 4], width, height, 1 << 20),
        Err(quic::QuicError::Truncated),
        "the end-of-stream word is needed and enough"
    );
    let img = encode(ImageCodec::Quic, &src).expect("encode");
    match img.codec {
        ImageCodec::Quic => {
            assert!(width >= 3 && height >= 3);
            assert_eq!(&img.body[4..], &stream[..]);
        }
        ImageCodec::Bitmap => {}
        other => panic!("encode(Quic) gave {other:?}"),
    }
}

/// Whatever the picture, LZ and LZ4 encodings decode back to it (the pixels the client shows),
/// and no codec body is larger than the plain bitmap; the picture reduced to few colours goes
/// through LZ_PLT (palette + LZ of packed indices) and back.
///
/// Input: 4 header bytes (width-1, height-1, format: bits 0-1 the pixel format, bits 2-3 the
/// colour count 2/3/16/256 of the reduced picture; row padding) then pixel bytes, repeated
/// cyclically when too short.
pub fn lz_roundtrip(data: &[u8]) {
    let [w, h, f, pad, pixels @ ..] = data else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    let width = u32::from(*w % 128) + 1;
    let height = u32::from(*h % 64) + 1;
    let format = match f % 4 {
        0 => SourceFormat::Xrgb32,
        1 => SourceFormat::Argb32,
        2 => SourceFormat::Rgb24,
        _ => SourceFormat::Rgb16,
    };
    let (buf, stride) = fuzz_picture(width, height, format, *pad, pixels);
    let (bpp, row) = (
        format.bytes_per_pixel(),
        width as usize * format.bytes_per_pixel(),
    );
    let src = SourceImage {
        data: &buf,
        width,
        height,
        stride,
        format,
    };

    // What the client shows: 0xAARRGGBB, alpha only for Argb32, x555 widened for Rgb16.
    let mut want = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height as usize {
        for p in buf[y * stride..y * stride + row].chunks_exact(bpp) {
            want.push(match format {
                SourceFormat::Xrgb32 | SourceFormat::Rgb24 => {
                    u32::from_le_bytes([p[0], p[1], p[2], 0])
                }
                SourceFormat::Argb32 => u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                SourceFormat::Rgb16 => {
                    lz::rgb16_to_rgb32(u16::from_le_bytes([p[0], p[1]]) & 0x7FFF)
                }
            });
        }
    }

    let stream = lz::encode(&src).expect("LZ encode of a valid picture");
    let got = lz::decode(&stream, 1 << 20).expect("LZ decode of our own stream");
    assert!(got.pixels == want, "LZ round trip differs");

    let payload = lz4::encode(&src).expect("LZ4 encode of a valid picture");
    let got = lz4::decode(&payload, width, height, 1 << 22).expect("LZ4 decode of our own payload");
    let packed: Vec<u8> = (0..height as usize)
        .flat_map(|y| buf[y * stride..y * stride + row].iter().copied())
        .collect();
    assert!(got.data == packed, "LZ4 round trip differs");

    // The API never produces a body larger than the plain bitmap.
    let bitmap = encode(ImageCodec::Bitmap, &src).expect("bitmap");
    for codec in [ImageCodec::LzRgb, ImageCodec::Lz4] {
        let img = encode(codec, &src).expect("encode");
        assert!(img.body.len() <= bitmap.body.len());
    }

    // The same picture reduced to 2, 16 or 256 colours (chosen by the format byte's next two
    // bits) goes as LZ_PLT and decodes back through its palette.
    let levels = [2u32, 3, 16, 256][usize::from(*f / 4 % 4)];
    let few: Vec<u32> = want
        .iter()
        .map(|&p| {
            let k = (p ^ (p >> 8) ^ (p >> 16) ^ (p >> 24)) % levels;
            k.wrapping_mul(0x9E37_79B1) >> 8
        })
        .collect();
    let few_bytes: Vec<u8> = few.iter().flat_map(|p| p.to_le_bytes()).collect();
    let few_src = SourceImage {
        data: &few_bytes,
        width,
        height,
        stride: width as usize * 4,
        format: SourceFormat::Xrgb32,
    };
    let p = crate::codec::palette::palettize(&few_src, 256).expect("at most 256 colours");
    assert!(p.entries.len() <= 256 && p.packed.len() == p.stride * height as usize);
    let mut stream = Vec::new();
    lz::encode_palette_into(&p, &mut stream);
    let got = lz::decode_with_palette(&stream, &p.entries, 1 << 20)
        .expect("LZ_PLT decode of our own stream");
    assert!(got.pixels == few, "LZ_PLT round trip differs");
}

/// Name of the threads of the [`session`] server runtime; a panic on one of them sets
/// [`SERVER_PANICKED`].
const SERVER_THREAD: &str = "spice-bridge-fuzz-server";

/// Set by the panic hook when a [`session`] server task panicked (tokio would otherwise swallow
/// the panic); checked and cleared at the end of each [`session`] call.
static SERVER_PANICKED: AtomicBool = AtomicBool::new(false);

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: ServerHandle,
    addr: SocketAddr,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| start_fixture(None))
}

/// The [`tls_link`] server: the same with a TLS port ([`crate::testing::TEST_X509_DIR`]).
fn tls_fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        start_fixture(Some(crate::server::TlsListen {
            listen: "127.0.0.1:0".parse().unwrap(),
            config: crate::testing::test_tls_config(),
        }))
    })
}

fn start_fixture(tls: Option<crate::server::TlsListen>) -> Fixture {
    {
        // Chain the hook that is installed (under libFuzzer, libfuzzer-sys's abort hook, so a
        // server-task panic still aborts the fuzzer at once; in tests, the default printer).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(SERVER_THREAD) {
                SERVER_PANICKED.store(true, Ordering::SeqCst);
            }
            previous(info);
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .unwrap();
        let model = DisplayModel::with_queue_limit(1 << 20);
        scene_odd(&model);
        let server = rt.block_on(async {
            let key = TicketKey::from_private(
                rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap(),
            )
            .unwrap();
            Server::start_with_key(
                ServerConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    tls,
                    ..Default::default()
                },
                key,
                model.clone(),
                Arc::new(NullInput),
                Arc::new(NullAgent),
            )
            .await
            .unwrap()
        });
        // keep the model busy so display connections have something to send
        let m2 = model.clone();
        rt.spawn(async move {
            let mut i = 0u32;
            loop {
                let _ = m2.fill(0, Rect::new((i % 300) as i32, 5, 7, 9), i, &[]);
                i = i.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let addr = server.local_addr();
        Fixture { rt, server, addr }
    }
}

/// A whole server (one per process, started on first use) under hostile clients: each input
/// links a main channel (a new session), then
/// - byte 0 % 4 = 0: writes the rest as raw bytes on the main channel,
/// - 1: links a display channel and writes the rest there, 2: inputs, 3: cursor.
///
/// Panics if the server stops answering (the next main link fails) or if a server task panicked
/// since the previous call (a late panic is charged to the next input).
pub fn session(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    f.rt.block_on(async {
        let mut main = ScriptedClient::connect(f.addr, 1, 0, "").await;
        let (t, body) = main.recv().await.expect("server answers a new main link");
        assert_eq!(t, 103);
        let sid = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let mut target = match sel % 4 {
            0 => None,
            n => {
                Some(ScriptedClient::connect(f.addr, [2, 3, 4][usize::from(n) - 1], sid, "").await)
            }
        };
        let c = target.as_mut().unwrap_or(&mut main);
        c.write_raw(rest).await.ok();
        // give the server a moment to chew on it, then hang up
        let _ = tokio::time::timeout(Duration::from_millis(3), c.closed_by_server()).await;
    });
    assert!(f.server.has_client() || f.server.stats().sessions > 0);
    assert!(
        !SERVER_PANICKED.swap(false, Ordering::SeqCst),
        "a server task panicked"
    );
}

/// The TLS port under hostile clients: the TLS handshake and, behind it, the link stage.
/// After each input a real TLS client must still link (the server answers a link message over
/// TLS with a link reply), and no server task may have panicked.
///
/// Input: byte 0 even = the rest is written raw to the TLS port (handshake garbage, truncated
/// or oversized records); odd = a TLS handshake is made (trusting the test CA) and the rest is
/// written inside it (the link stage behind TLS, as `link` feeds it in the clear).
pub fn tls_link(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = tls_fixture();
    let tls = f.server.tls_addr().expect("TLS port");
    f.rt.block_on(async {
        let mut b = [0u8; 64];
        if sel % 2 == 0 {
            let mut s = tokio::net::TcpStream::connect(tls).await.expect("connect");
            s.write_all(rest).await.ok();
            let _ = tokio::time::timeout(Duration::from_millis(3), s.read(&mut b)).await;
        } else {
            let mut s = crate::testing::tls_connect(tls)
                .await
                .expect("TLS handshake with the test CA");
            s.write_all(rest).await.ok();
            let _ = s.flush().await;
            let _ = tokio::time::timeout(Duration::from_millis(3), s.read(&mut b)).await;
        }
        // still serving over TLS: a link message gets a link reply
        let mut s = crate::testing::tls_connect(tls)
            .await
            .expect("the TLS port still completes handshakes");
        let req = crate::testing::link_request(1, 0, crate::testing::spice_gtk_caps(1));
        s.write_all(&req).await.expect("write a link message");
        let mut h = [0u8; 16];
        s.read_exact(&mut h).await.expect("a link reply over TLS");
        assert_eq!(&h[..4], b"REDQ");
    });
    assert!(
        !SERVER_PANICKED.swap(false, Ordering::SeqCst),
        "a server task panicked"
    );
}

/// The agent stream parsers (`agent::wire`): the guest's VDI byte stream (chunk headers, then
/// VDAgent messages per port) and the client's AGENT_DATA stream, fed in arbitrary splits,
/// never panic, and report every message exactly: a 20-byte first piece, data pieces adding up
/// to the declared size, the collected data equal to it. Messages the server reads itself
/// (capabilities, MONITORS_CONFIG) are parsed from whatever the stream carried.
///
/// Input: one byte seeding the split sizes, then the stream.
pub fn agent_stream(data: &[u8]) {
    use crate::agent::wire::{self, ChunkStream, MsgPiece, MsgStream};

    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // Per message: declared size, data bytes seen.
    struct Check {
        current: Option<(u32, u64)>,
    }
    let check = |c: &mut Check, p: &MsgPiece<'_>| {
        if p.first {
            assert!(c.current.is_none(), "new message before the last ended");
            assert_eq!(p.raw.len(), wire::MSG_HEADER_SIZE);
            c.current = Some((p.header.size, 0));
        } else {
            let (size, seen) = c.current.as_mut().expect("data piece outside a message");
            *seen += p.raw.len() as u64;
            assert!(*seen <= u64::from(*size));
        }
        if p.last {
            let (size, seen) = c.current.take().expect("last piece outside a message");
            assert_eq!(seen, u64::from(size));
            if let Some(w) = p.whole {
                assert_eq!(w.len() as u64, u64::from(size));
                let _ = wire::parse_caps(w);
                let _ = wire::parse_monitors_config(w);
            }
        }
    };
    let mut chunks = ChunkStream::new(1 << 20);
    let mut ports = [MsgStream::new(1 << 20, 1024), MsgStream::new(1 << 20, 0)];
    let mut checks = [Check { current: None }, Check { current: None }];
    let mut client = MsgStream::new(1 << 20, 8192);
    let mut client_check = Check { current: None };
    let mut rest = stream;
    let mut s = u32::from(seed) | 1;
    let (mut guest_ok, mut client_ok) = (true, true);
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = ((s >> 16) as usize % 64 + 1).min(rest.len());
        let (piece, r) = rest.split_at(n);
        rest = r;
        if guest_ok {
            let res = chunks.feed(piece, &mut |port, bytes| {
                let i = (port - 1) as usize;
                let c = &mut checks[i];
                ports[i].feed(bytes, &mut |p| check(c, &p))
            });
            guest_ok = res.is_ok();
        }
        if client_ok {
            client_ok = client
                .feed(piece, &mut |p| check(&mut client_check, &p))
                .is_ok();
        }
    }
}

/// Runs a future whose I/O never waits (a [`crate::websocket::ScriptedPeer`]) to completion.
fn run_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a scripted peer never makes the stream wait"),
    }
}

/// The WebSocket transport (`websocket.rs`). Byte 0 picks the mode and the read size
/// (1 + byte0 / 2 bytes per read):
///
/// - byte 0 even: the rest is what a client sends after the sniffed `GET ` (upgrade request,
///   then frames). The handshake and the frame reader never panic, the stream never gives more
///   bytes than came in, and the server's output stays bounded (its answer plus PONG/CLOSE
///   frames no bigger than the client frames they answer).
/// - byte 0 odd: round trip. The rest is cut into payloads (a length byte, then that many
///   bytes); each is sent as a masked frame (the mask, fragmentation and PINGs in between from
///   the length byte); reading gives back exactly the concatenated payloads, and writing them
///   back gives unmasked BINARY frames carrying the same bytes.
pub fn websocket(data: &[u8]) {
    use crate::websocket::{
        accept, client_frame, ScriptedPeer, WsStream, OP_BINARY, OP_CONTINUATION, OP_PING,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(mode / 2);
    if mode % 2 == 0 {
        let mut peer = ScriptedPeer::new(rest, chunk);
        let got = run_now(async {
            let Ok(mut ws) = accept(&mut peer, *b"GET ").await else {
                return 0;
            };
            let mut buf = [0u8; 512];
            let mut total = 0;
            while let Ok(n) = ws.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        assert!(got <= rest.len(), "read {got} bytes out of {}", rest.len());
        assert!(
            peer.output.len() <= 256 + rest.len(),
            "{} bytes written for {} read",
            peer.output.len(),
            rest.len()
        );
        return;
    }
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    let mut rest = rest;
    let mut open = false;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        let mask = [len, len ^ 0x5a, len.wrapping_mul(7), 0xc3];
        let fin = len % 3 != 0 || tail.is_empty();
        let op = if open { OP_CONTINUATION } else { OP_BINARY };
        frames.extend(client_frame(fin, op, mask, payload));
        if len % 5 == 0 {
            frames.extend(client_frame(true, OP_PING, mask, &payload[..n.min(125)]));
        }
        open = !fin;
        expected.extend_from_slice(payload);
        rest = tail;
    }
    let mut ws = WsStream::with_buffered(ScriptedPeer::new(&frames, chunk), Default::default());
    let got = run_now(async {
        let mut v = Vec::new();
        ws.read_to_end(&mut v).await.map(|_| v)
    })
    .expect("well-formed frames decode");
    assert_eq!(got, expected, "round trip");
    // what we write comes out as unmasked BINARY frames carrying the same bytes
    let mut ws = WsStream::with_buffered(ScriptedPeer::new(&[], chunk), Default::default());
    run_now(ws.write_all(&expected)).expect("write");
    let out = &ws.get_ref().output;
    let data_frames = out.as_slice();
    let mut payloads = Vec::new();
    let mut at = 0;
    while at < data_frames.len() {
        let b = &data_frames[at..];
        assert_eq!(b[0], 0x82, "final BINARY");
        let (len, hl) = match b[1] {
            126 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            l => (usize::from(l), 2),
        };
        payloads.extend_from_slice(&b[hl..hl + len]);
        at += hl + len;
    }
    assert_eq!(payloads, expected, "written frames");
}

/// Body of the `vp8_roundtrip` fuzz target (issue 11): a short VP8 stream of arbitrary
/// pictures through [`vpx_codec::Vp8Encoder`] (our BGRX to I420 conversion and the libvpx
/// calls) and back through libvpx's decoder, as a client plays it: every frame decodes to the
/// stream's size, and a flat picture comes back within 6 + cq/2 levels of its colour (6 at the
/// top rung; the coarsest rung's quantizer moves even a flat colour a little).
///
/// Input: width-1 (u8; plus 256 when bit 0 of the flags is set), height-1 (u8), flags
/// (bits 1-2: frames - 1; bit 3: flat picture; bits 4-7: the rung), then pixel bytes repeated
/// cyclically (B, G, R, X), each frame shifted by one byte from the previous.
pub fn vp8_roundtrip(data: &[u8]) {
    let [w, h, f, pixels @ ..] = data else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    let width = u32::from(*w) + 1 + if f & 1 == 1 { 256 } else { 0 };
    let height = u32::from(*h) + 1;
    let frames = usize::from((f >> 1) & 3) + 1;
    let flat = f & 8 != 0;
    let rung = usize::from(f >> 4) % crate::channel::video::VP8_CQ_LADDER.len();
    let cq = crate::channel::video::VP8_CQ_LADDER[rung];
    // limited-range YUV rounding is worth up to about 2 levels of blue, and a quantizer step
    // of 1 on Y and U about 3.5 more
    let tolerance = 6 + i16::from(cq) / 2;
    let mut enc = vpx_codec::Vp8Encoder::new(vpx_codec::Vp8Settings {
        width,
        height,
        cq_level: cq,
        max_kbps: 10_000,
        cpu_used: 8,
    })
    .expect("an encoder for a valid size");
    let mut dec = vpx_codec::Vp8Decoder::new().expect("a decoder");
    let n = (width * height * 4) as usize;
    for k in 0..frames {
        let pic: Vec<u8> = if flat {
            (0..n).map(|i| pixels[(i % 4 + k) % pixels.len()]).collect()
        } else {
            (0..n).map(|i| pixels[(i + k) % pixels.len()]).collect()
        };
        let frame = enc
            .encode(&pic, width as usize * 4, k as i64 * 40, false)
            .expect("VP8 encode of a valid picture");
        let got = dec
            .decode(&frame)
            .expect("our VP8 frame decodes")
            .expect("a picture");
        assert_eq!((got.width, got.height), (width, height));
        if flat {
            for (a, b) in got.bgrx.chunks_exact(4).zip(pic.chunks_exact(4)) {
                for c in 0..3 {
                    assert!(
                        (i16::from(a[c]) - i16::from(b[c])).abs() <= tolerance,
                        "flat colour {:?} came back as {:?} (cq {cq})",
                        &b[..3],
                        &a[..3]
                    );
                }
            }
        }
    }
}
