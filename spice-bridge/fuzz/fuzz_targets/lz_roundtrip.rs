//! Whatever the picture, LZ and LZ4 encodings decode back to it (the pixels the client shows).
//! Input: 4 header bytes (width-1, height-1, format, row padding) then pixel bytes, repeated
//! cyclically when too short. Seeds: `corpus/lz_roundtrip/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice_bridge::codec::{encode, lz, lz4, ImageCodec, SourceFormat, SourceImage};

fuzz_target!(|data: &[u8]| {
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
    let bpp = format.bytes_per_pixel();
    let row = width as usize * bpp;
    let stride = row + usize::from(*pad % 8);
    let len = stride * (height as usize - 1) + row;
    let buf: Vec<u8> = pixels.iter().copied().cycle().take(len).collect();
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
});
