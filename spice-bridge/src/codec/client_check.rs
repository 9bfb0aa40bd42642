//! The real client decodes our encodings: a minimal Spice server (std only) serves one image as
//! a full-surface DRAW_COPY to `spicy-screenshot` (Debian `spice-client-gtk` 0.42, which decodes
//! with spice-common's canvas and LZ/LZ4 code) and the screenshot is compared pixel by pixel.
//!
//! Needs `spicy-screenshot` on PATH, hence `#[ignore]`:
//! `cargo test -p spice-bridge --lib codec::client_check -- --ignored`.
//!
//! The server is the least spice-gtk needs for a picture (sheet §1, §3.3, §10.1–10.2): link with
//! AUTH_SPICE + MINI_HEADER (the ticket is read and not checked), MAIN_INIT, CHANNELS_LIST with
//! display 0, then SURFACE_CREATE(0), one DRAW_COPY whose image sits at body offset 57, MARK.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use super::testimg::{self, Rng};
use super::{encode, ImageCodec, SourceFormat, SourceImage};

/// DER SubjectPublicKeyInfo of a throwaway RSA-1024 key (the client only encrypts with it).
const PUB_KEY: [u8; 162] = [
    0x30, 0x81, 0x9f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    0x05, 0x00, 0x03, 0x81, 0x8d, 0x00, 0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00, 0xcc, 0xa2, 0xbc,
    0x71, 0xd9, 0x42, 0x1e, 0x81, 0x74, 0xcc, 0xde, 0xcb, 0xd7, 0x64, 0x53, 0x76, 0x83, 0xe0, 0xf3,
    0xef, 0x04, 0x49, 0xa6, 0xd0, 0x71, 0xcc, 0xd0, 0x3c, 0x56, 0x49, 0x81, 0xfa, 0xad, 0x0c, 0x92,
    0x93, 0x7b, 0xd7, 0x3e, 0xe0, 0x5a, 0xd4, 0xc8, 0xf3, 0x1a, 0xe1, 0x4b, 0xb0, 0x70, 0x9a, 0xb5,
    0x43, 0xee, 0x1a, 0x9c, 0x41, 0xc8, 0x41, 0x36, 0xb3, 0xe0, 0xe2, 0x32, 0x1a, 0x88, 0x3e, 0x79,
    0xe0, 0xea, 0x9f, 0xdf, 0x42, 0x5f, 0x85, 0xe9, 0x55, 0xe8, 0xda, 0xf3, 0xfc, 0x89, 0xe9, 0x18,
    0x68, 0x53, 0x9a, 0x4b, 0xd3, 0x04, 0xa7, 0x89, 0x57, 0x88, 0x9f, 0xad, 0xe3, 0x24, 0xb1, 0xb8,
    0xc7, 0x25, 0x7c, 0xa8, 0xa2, 0xc9, 0x88, 0x8f, 0xae, 0x95, 0xdd, 0xbf, 0xbe, 0x3a, 0x3a, 0x9a,
    0x1f, 0x28, 0xa0, 0x58, 0x59, 0x28, 0xb9, 0x57, 0x4e, 0xf2, 0x0f, 0xf9, 0xab, 0x02, 0x03, 0x01,
    0x00, 0x01,
];

fn read_exact(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Link stage; returns the channel type.
fn link(s: &mut TcpStream) -> std::io::Result<u8> {
    let hdr = read_exact(s, 16)?;
    assert_eq!(&hdr[..4], b"REDQ");
    let mess = read_exact(s, u32_at(&hdr, 12) as usize)?;
    let channel_type = mess[4];
    let mut reply = Vec::new();
    reply.extend_from_slice(&0u32.to_le_bytes());
    reply.extend_from_slice(&PUB_KEY);
    for v in [1u32, 0, 178, 0b1011] {
        // 1 common caps word, 0 channel words, caps at 178: AUTH_SELECTION|AUTH_SPICE|MINI_HEADER
        reply.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"REDQ");
    for v in [2u32, 2, reply.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&reply);
    s.write_all(&out)?;
    read_exact(s, 4 + 128)?; // auth mechanism, encrypted ticket
    s.write_all(&0u32.to_le_bytes())?;
    Ok(channel_type)
}

fn send(s: &mut TcpStream, ty: u16, body: &[u8]) -> std::io::Result<()> {
    let mut m = Vec::with_capacity(6 + body.len());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m)
}

fn recv(s: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let h = read_exact(s, 6)?;
    let ty = u16::from_le_bytes([h[0], h[1]]);
    Ok((ty, read_exact(s, u32_at(&h, 2) as usize)?))
}

fn serve(mut s: TcpStream, w: u32, h: u32, image: &[u8]) -> std::io::Result<()> {
    match link(&mut s)? {
        1 => {
            let init: Vec<u8> = [0x1234u32, 1, 1, 1, 0, 10, 0, 0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            send(&mut s, 103, &init)?; // MAIN_INIT
            loop {
                let (ty, _) = recv(&mut s)?;
                if ty == 104 {
                    send(&mut s, 104, &[1, 0, 0, 0, 2, 0])?; // CHANNELS_LIST: display 0
                }
            }
        }
        2 => {
            let (ty, _) = recv(&mut s)?;
            assert_eq!(ty, 101, "DISPLAY_INIT expected");
            let create: Vec<u8> = [0u32, w, h, 32, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            send(&mut s, 314, &create)?; // SURFACE_CREATE primary
            let mut body = Vec::new();
            body.extend_from_slice(&0u32.to_le_bytes()); // surface 0
            for v in [0u32, 0, h, w] {
                body.extend_from_slice(&v.to_le_bytes()); // box top, left, bottom, right
            }
            body.push(0); // clip NONE
            body.extend_from_slice(&57u32.to_le_bytes()); // src_bitmap
            for v in [0u32, 0, h, w] {
                body.extend_from_slice(&v.to_le_bytes()); // src_area
            }
            body.extend_from_slice(&8u16.to_le_bytes()); // OP_PUT
            body.push(0); // scale mode
            body.extend_from_slice(&[0; 13]); // mask: none
            assert_eq!(body.len(), 57);
            body.extend_from_slice(image);
            send(&mut s, 304, &body)?; // DRAW_COPY
            send(&mut s, 102, &[])?; // MARK
            loop {
                recv(&mut s)?;
            }
        }
        _ => loop {
            recv(&mut s)?;
        },
    }
}

/// Serves `image` (a complete SpiceImage) to spicy-screenshot; returns the screenshot's RGB bytes.
fn screenshot(w: u32, h: u32, image: Vec<u8>, tag: &str) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = std::env::temp_dir().join(format!("codec-client-{}-{tag}.ppm", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let image = std::sync::Arc::new(image);
    let acceptor = {
        let image = image.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(2) {
                let Ok(conn) = conn else { break };
                let image = image.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, w, h, &image);
                });
            }
        })
    };
    let mut child = Command::new("spicy-screenshot")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-o"])
        .arg(&out)
        .spawn()
        .expect("spicy-screenshot (Debian package spice-client-gtk) must be installed");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("spicy-screenshot timed out for {tag}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "spicy-screenshot failed for {tag}: {status}"
    );
    let _ = acceptor.join();
    let ppm = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let header = format!("P6\n{w} {h}\n255\n");
    assert!(
        ppm.starts_with(header.as_bytes()),
        "unexpected PPM header for {tag}"
    );
    ppm[header.len()..].to_vec()
}

fn check(name: &str, w: u32, h: u32, pic: &[u8], format: SourceFormat, codec: ImageCodec) {
    let (data, stride) = testimg::convert(pic, w, h, format, 7);
    let src = SourceImage {
        data: &data,
        width: w,
        height: h,
        stride,
        format,
    };
    let img = encode(codec, &src).unwrap();
    assert_eq!(img.codec, codec, "{name}: fell back to another codec");
    let want: Vec<u8> = super::tests::expected_pixels(&src)
        .iter()
        .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
        .collect();
    let got = screenshot(w, h, img.to_spice_image(1, 0), name);
    assert_eq!(got.len(), want.len());
    if let Some(i) = got.chunks(3).zip(want.chunks(3)).position(|(a, b)| a != b) {
        panic!(
            "{name}: pixel ({}, {}) is {:02x?}, want {:02x?}",
            i % w as usize,
            i / w as usize,
            &got[i * 3..i * 3 + 3],
            &want[i * 3..i * 3 + 3]
        );
    }
}

#[test]
#[ignore = "needs spicy-screenshot (Debian spice-client-gtk)"]
fn spicy_screenshot_shows_our_lz_lz4_and_bitmap_images_pixel_for_pixel() {
    let mut rng = Rng::new(77);
    let desktop = testimg::desktop(1920, 1080, &mut rng);
    let text = testimg::text(333, 41, &mut rng);
    let far = testimg::noise(9000, 1, &mut rng).repeat(3);
    let grad = testimg::gradient(97, 61);
    use ImageCodec::*;
    use SourceFormat::*;
    check("desktop-lz", 1920, 1080, &desktop, Xrgb32, LzRgb);
    check("desktop-lz4", 1920, 1080, &desktop, Xrgb32, Lz4);
    check("desktop-bitmap", 1920, 1080, &desktop, Xrgb32, Bitmap);
    check("text-lz", 333, 41, &text, Xrgb32, LzRgb);
    check("text-lz-rgba", 333, 41, &text, Argb32, LzRgb);
    check("text-lz-rgb16", 333, 41, &text, Rgb16, LzRgb);
    check("text-lz-rgb24", 333, 41, &text, Rgb24, LzRgb);
    check("far-references-lz", 9000, 3, &far, Xrgb32, LzRgb);
    check("gradient-lz", 97, 61, &grad, Xrgb32, LzRgb);
    check("gradient-lz-rgba", 97, 61, &grad, Argb32, LzRgb);
}
