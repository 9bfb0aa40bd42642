//! Tests for the image codecs. Test images come from `testimg`, shared with the benchmark and
//! the fuzz targets.

use super::testimg::{self, Rng};
use super::*;

const MAX_PIXELS: usize = 1 << 26;

fn xrgb<'a>(data: &'a [u8], width: u32, height: u32, stride: usize) -> SourceImage<'a> {
    SourceImage {
        data,
        width,
        height,
        stride,
        format: SourceFormat::Xrgb32,
    }
}

/// What the client shows for a source pixel of `format` at (x, y): 0xAARRGGBB, A = 0 unless the
/// format carries alpha (the LZ decoder writes 0 into the pad byte of RGB32).
pub(super) fn expected_pixels(src: &SourceImage<'_>) -> Vec<u32> {
    let bpp = src.format.bytes_per_pixel();
    let mut v = Vec::new();
    for y in 0..src.height as usize {
        let row = &src.data[y * src.stride..y * src.stride + src.width as usize * bpp];
        for p in row.chunks_exact(bpp) {
            v.push(match src.format {
                SourceFormat::Xrgb32 => u32::from_le_bytes([p[0], p[1], p[2], 0]),
                SourceFormat::Argb32 => u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                SourceFormat::Rgb24 => u32::from_le_bytes([p[0], p[1], p[2], 0]),
                SourceFormat::Rgb16 => {
                    lz::rgb16_to_rgb32(u16::from_le_bytes([p[0], p[1]]) & 0x7FFF)
                }
            });
        }
    }
    v
}

fn lz_roundtrip(src: &SourceImage<'_>) -> usize {
    let stream = lz::encode(src).expect("encode");
    let decoded = lz::decode(&stream, MAX_PIXELS).expect("decode");
    assert_eq!(decoded.header.width, src.width);
    assert_eq!(decoded.header.height, src.height);
    assert!(decoded.header.top_down);
    let expected = expected_pixels(src);
    if decoded.pixels != expected {
        let first = decoded
            .pixels
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{}x{} {:?}: first differing pixel {} (x {}, y {}): got {:#010x} want {:#010x}",
            src.width,
            src.height,
            src.format,
            first,
            first % src.width as usize,
            first / src.width as usize,
            decoded.pixels.get(first).copied().unwrap_or(0),
            expected.get(first).copied().unwrap_or(0)
        );
    }
    stream.len()
}

fn lz4_roundtrip(src: &SourceImage<'_>) -> usize {
    let payload = lz4::encode(src).expect("encode");
    let decoded = lz4::decode(&payload, src.width, src.height, usize::MAX).expect("decode");
    assert!(decoded.top_down);
    assert_eq!(decoded.format, src.format.bitmap_format());
    let row = src.width as usize * src.format.bytes_per_pixel();
    let mut packed = Vec::new();
    for y in 0..src.height as usize {
        packed.extend_from_slice(&src.data[y * src.stride..y * src.stride + row]);
    }
    assert!(decoded.data == packed, "lz4 round trip differs");
    payload.len()
}

// --- the LZ byte format, checked against the reference decoder's rules by hand ---------------

#[test]
fn lz_header_is_big_endian_magic_version_type_size_stride_top_down() {
    let px = [0x33u8, 0x22, 0x11, 0xFF];
    let stream = lz::encode(&xrgb(&px, 1, 1, 4)).unwrap();
    assert_eq!(
        &stream[..28],
        &[
            0x20, 0x20, 0x5A, 0x4C, // magic "  ZL"
            0x00, 0x01, 0x00, 0x01, // version 1.1
            0, 0, 0, 8, // LZ_IMAGE_TYPE_RGB32
            0, 0, 0, 1, // width
            0, 0, 0, 1, // height
            0, 0, 0, 4, // stride = width * 4
            0, 0, 0, 1, // top_down
        ]
    );
    // One literal pixel: control 0 (= 1 pixel), then B, G, R; the X byte is not sent.
    assert_eq!(&stream[28..], &[0x00, 0x33, 0x22, 0x11]);
}

#[test]
fn lz_run_is_a_distance_zero_reference_with_length_bias_one_for_rgb32() {
    // Four equal pixels: a literal, then a run of 3 copied from 1 pixel back.
    // Reference decoder: ctrl 0x60 -> L = 3, len = L - 1 + 1 = 3; ofs = 0 + 1 = 1.
    let px: Vec<u8> = [1u8, 2, 3, 0].repeat(4);
    let stream = lz::encode(&xrgb(&px, 4, 1, 16)).unwrap();
    assert_eq!(&stream[28..], &[0x00, 1, 2, 3, 0x60, 0x00]);
}

#[test]
fn lz_long_match_uses_255_extension_bytes() {
    // 1 literal + run of 299 pixels: v = 298 = 6 + 255 + 37 -> E0, FF, 25, then distance 0.
    let px: Vec<u8> = [9u8, 8, 7, 0].repeat(300);
    let stream = lz::encode(&xrgb(&px, 300, 1, 1200)).unwrap();
    assert_eq!(&stream[28..], &[0x00, 9, 8, 7, 0xE0, 0xFF, 37, 0x00]);
    assert_eq!(
        lz::decode(&stream, MAX_PIXELS).unwrap().pixels,
        vec![0x0007_0809; 300]
    );
}

#[test]
fn lz_far_distance_escape_is_31_255_then_big_endian_offset_minus_8191() {
    // A row of 9000 distinct pixels repeated: the second row refers 9000 pixels back, which is
    // beyond the 13-bit near window: d = 8999 -> far, 8999 - 8191 = 808 = 0x0328.
    let w = 9000usize;
    let mut px = Vec::with_capacity(w * 8);
    for x in 0..w {
        px.extend_from_slice(&(x as u32 * 7919).to_le_bytes()[..3]);
        px.push(0);
    }
    let row = px.clone();
    px.extend_from_slice(&row);
    let src = xrgb(&px, w as u32, 2, w * 4);
    let stream = lz::encode(&src).unwrap();
    // The second row ends in one far reference: escape 255, then 808 big-endian; the row costs
    // a few dozen bytes instead of 27,000 bytes of literals.
    assert!(
        stream.ends_with(&[0xFF, 0x03, 0x28]),
        "far reference not found at the end of the stream: {:x?}",
        &stream[stream.len().saturating_sub(48)..]
    );
    let first_row_cost = 28 + w * 3 + w.div_ceil(32);
    assert!(
        stream.len() < first_row_cost + 200,
        "{} bytes",
        stream.len()
    );
    lz_roundtrip(&src);
}

#[test]
fn lz_near_distance_8191_pixels_back_is_still_near() {
    // back = 8191 -> d = 8190 = 31 << 8 | 254: the largest near distance.
    let w = 8191usize;
    let mut px = Vec::new();
    for x in 0..w {
        px.extend_from_slice(&((x as u32).wrapping_mul(2_654_435_761) >> 8).to_le_bytes()[..3]);
        px.push(0);
    }
    let row = px.clone();
    px.extend_from_slice(&row[..64 * 4]);
    let src = xrgb(&px, (w + 64) as u32, 1, (w + 64) * 4);
    let stream = lz::encode(&src).unwrap();
    // 64 pixels: v = 63 = 6 + 57 -> E0|31, 57, 254.
    assert!(stream.ends_with(&[0xE0 | 31, 57, 254]));
    lz_roundtrip(&src);
}

#[test]
fn lz_rgba_is_colour_stream_then_alpha_stream_with_bias_three() {
    // Two pixels, alpha 0x80 and 0x81: colour literals, then alpha literals.
    let px = [1u8, 2, 3, 0x80, 4, 5, 6, 0x81];
    let src = SourceImage {
        data: &px,
        width: 2,
        height: 1,
        stride: 8,
        format: SourceFormat::Argb32,
    };
    let stream = lz::encode(&src).unwrap();
    assert_eq!(&stream[8..12], &[0, 0, 0, 9]);
    assert_eq!(&stream[28..], &[0x01, 1, 2, 3, 4, 5, 6, 0x01, 0x80, 0x81]);
    // Alpha run of 5 after a literal: reference decoder len = L - 1 + 3, so L = 3 (ctrl 0x60).
    let px: Vec<u8> = [0u8, 0, 0, 7].repeat(6);
    let src = SourceImage {
        data: &px,
        width: 6,
        height: 1,
        stride: 24,
        format: SourceFormat::Argb32,
    };
    let stream = lz::encode(&src).unwrap();
    assert_eq!(
        &stream[28..],
        &[0x00, 0, 0, 0, 0xA0, 0x00, 0x00, 7, 0x60, 0x00]
    );
    lz_roundtrip(&src);
}

#[test]
fn lz_rgb16_literals_are_high_byte_first_and_bias_two() {
    // 0x7C00 (red) little-endian in the source, 5 times: literal 7C 00, then run v = 4 - 2 = 2.
    let px: Vec<u8> = [0x00u8, 0x7C].repeat(5);
    let src = SourceImage {
        data: &px,
        width: 5,
        height: 1,
        stride: 10,
        format: SourceFormat::Rgb16,
    };
    let stream = lz::encode(&src).unwrap();
    assert_eq!(&stream[8..12], &[0, 0, 0, 6]);
    assert_eq!(&stream[20..24], &[0, 0, 0, 10]); // stride = width * 2
    assert_eq!(&stream[28..], &[0x00, 0x7C, 0x00, 0x60, 0x00]);
    let d = lz::decode(&stream, MAX_PIXELS).unwrap();
    assert_eq!(d.pixels, vec![0x00FF_0000; 5]);
}

#[test]
fn lz_literal_runs_are_at_most_32_pixels() {
    let mut rng = Rng::new(5);
    let px = testimg::noise(100, 1, &mut rng);
    let stream = lz::encode(&xrgb(&px, 100, 1, 400)).unwrap();
    // 100 distinct random pixels: 32 + 32 + 32 + 4 literals.
    let body = &stream[28..];
    assert_eq!(body.len(), 100 * 3 + 4);
    assert_eq!(body[0], 31);
    assert_eq!(body[1 + 32 * 3], 31);
    assert_eq!(body[2 + 64 * 3], 31);
    assert_eq!(body[3 + 96 * 3], 3);
}

// --- round trips on natural-looking pictures ---------------------------------------------------

#[test]
fn lz_roundtrip_pictures_all_formats() {
    let mut rng = Rng::new(1);
    for &(w, h) in &[
        (1u32, 1u32),
        (1, 7),
        (7, 1),
        (2, 2),
        (3, 1),
        (13, 5),
        (17, 9),
        (64, 16),
        (100, 37),
        (333, 41),
        (1023, 3),
    ] {
        let pics = [
            testimg::solid(w, h, 0x00_12_34_56),
            testimg::gradient(w, h),
            testimg::text(w, h, &mut rng),
            testimg::noise(w, h, &mut rng),
            testimg::desktop(w, h, &mut rng),
        ];
        for pic in &pics {
            for format in [
                SourceFormat::Xrgb32,
                SourceFormat::Argb32,
                SourceFormat::Rgb24,
                SourceFormat::Rgb16,
            ] {
                let (data, stride) = testimg::convert(pic, w, h, format, 5);
                let src = SourceImage {
                    data: &data,
                    width: w,
                    height: h,
                    stride,
                    format,
                };
                lz_roundtrip(&src);
                lz4_roundtrip(&src);
            }
        }
    }
}

#[test]
fn lz_roundtrip_full_hd_desktop_and_ratio_is_useful() {
    let mut rng = Rng::new(2);
    let (w, h) = (1920u32, 1080u32);
    let pic = testimg::desktop(w, h, &mut rng);
    let src = xrgb(&pic, w, h, w as usize * 4);
    let size = lz_roundtrip(&src);
    // A flat desktop with text must compress far below the raw 8 MB.
    assert!(
        size < pic.len() / 8,
        "LZ {size} bytes for {} raw",
        pic.len()
    );
    let size4 = lz4_roundtrip(&src);
    assert!(
        size4 < pic.len() / 8,
        "LZ4 {size4} bytes for {} raw",
        pic.len()
    );
}

#[test]
fn lz_roundtrip_with_row_padding_and_reused_encoder() {
    let mut rng = Rng::new(3);
    let mut enc = lz::LzEncoder::new();
    for round in 0..20u32 {
        let w = 1 + rng.below(90);
        let h = 1 + rng.below(40);
        let pic = if round % 2 == 0 {
            testimg::text(w, h, &mut rng)
        } else {
            testimg::noise(w, h, &mut rng)
        };
        let (data, stride) = testimg::convert(&pic, w, h, SourceFormat::Xrgb32, 3 + round as usize);
        let src = xrgb(&data, w, h, stride);
        let mut out = Vec::new();
        enc.encode_into(&src, &mut out).unwrap();
        // The reused, never cleared hash table holds entries from earlier pictures: they must
        // never leak into this one.
        assert_eq!(
            lz::decode(&out, MAX_PIXELS).unwrap().pixels,
            expected_pixels(&src)
        );
    }
}

#[test]
fn lz_repeated_tiles_use_far_references() {
    // 300x300: rows repeat every 30 rows = 9000 pixels back (far window).
    let mut rng = Rng::new(4);
    let tile = testimg::noise(300, 30, &mut rng);
    let pic = tile.repeat(10);
    let src = xrgb(&pic, 300, 300, 1200);
    let size = lz_roundtrip(&src);
    assert!(
        size < tile.len(),
        "repeated noise should cost about one tile, got {size}"
    );
}

#[test]
fn lz_flat_area_after_long_noise_still_compresses() {
    // 200,000 noise pixels make the encoder probe sparsely; the flat 20,000 pixels after them
    // must still become a run instead of literals.
    let mut rng = Rng::new(12);
    let mut pic = testimg::noise(200_000, 1, &mut rng);
    let noise_only = lz::encode(&xrgb(&pic, 200_000, 1, 800_000)).unwrap().len();
    pic.extend(testimg::solid(20_000, 1, 0x0080_8080));
    let src = xrgb(&pic, 220_000, 1, 880_000);
    let size = lz_roundtrip(&src);
    assert!(
        size < noise_only + 300,
        "flat tail cost {} bytes",
        size - noise_only
    );
}

// --- the decoder against bad input -------------------------------------------------------------

#[test]
fn lz_decode_rejects_every_truncation() {
    let mut rng = Rng::new(6);
    let pic = testimg::desktop(40, 12, &mut rng);
    for format in [
        SourceFormat::Xrgb32,
        SourceFormat::Argb32,
        SourceFormat::Rgb16,
    ] {
        let (data, stride) = testimg::convert(&pic, 40, 12, format, 0);
        let src = SourceImage {
            data: &data,
            width: 40,
            height: 12,
            stride,
            format,
        };
        let stream = lz::encode(&src).unwrap();
        for cut in 0..stream.len() {
            assert!(
                lz::decode(&stream[..cut], MAX_PIXELS).is_err(),
                "prefix {cut} accepted"
            );
        }
    }
}

#[test]
fn lz_decode_rejects_trailing_bytes() {
    let px = [1u8, 2, 3, 0];
    let mut stream = lz::encode(&xrgb(&px, 1, 1, 4)).unwrap();
    stream.push(0);
    assert_eq!(
        lz::decode(&stream, MAX_PIXELS),
        Err(lz::LzError::TrailingData { extra: 1 })
    );
}

fn header(ty: u32, w: u32, h: u32, stride: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [lz::LZ_MAGIC, lz::LZ_VERSION, ty, w, h, stride, 1] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

#[test]
fn lz_decode_rejects_bad_headers() {
    let mut bad_magic = header(8, 1, 1, 4);
    bad_magic[0] = b'L';
    assert!(matches!(
        lz::decode(&bad_magic, MAX_PIXELS),
        Err(lz::LzError::BadMagic(_))
    ));
    let mut bad_version = header(8, 1, 1, 4);
    bad_version[7] = 2;
    assert!(matches!(
        lz::decode(&bad_version, MAX_PIXELS),
        Err(lz::LzError::BadVersion(_))
    ));
    for ty in [0, 1, 5, 12, 0xFFFF_FFFF] {
        assert_eq!(
            lz::decode(&header(ty, 1, 1, 4), MAX_PIXELS),
            Err(lz::LzError::UnsupportedType(ty))
        );
    }
    assert!(matches!(
        lz::decode(&header(8, 2, 1, 4), MAX_PIXELS),
        Err(lz::LzError::BadStride { .. })
    ));
    assert!(matches!(
        lz::decode(&header(8, 0, 1, 0), MAX_PIXELS),
        Err(lz::LzError::Empty { .. })
    ));
    assert!(matches!(
        lz::decode(&header(8, 65536, 65536, 262_144), MAX_PIXELS),
        Err(lz::LzError::TooLarge { .. })
    ));
    assert!(matches!(
        lz::decode(&header(8, 100, 100, 400), 9_999),
        Err(lz::LzError::TooLarge { .. })
    ));
}

#[test]
fn lz_decode_rejects_reference_before_start_and_overruns() {
    // First operation a reference: nothing to copy from.
    let mut s = header(8, 4, 1, 16);
    s.extend_from_slice(&[0x60, 0x00]);
    assert_eq!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::ReferenceBeforeStart { pos: 0, back: 1 })
    );
    // Literal of 5 pixels into a 4-pixel image.
    let mut s = header(8, 4, 1, 16);
    s.push(4);
    s.extend_from_slice(&[0; 15]);
    assert!(matches!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::Overrun { .. })
    ));
    // Literal 1, then a run of 4 into a 4-pixel image.
    let mut s = header(8, 4, 1, 16);
    s.extend_from_slice(&[0, 1, 2, 3, 0x80, 0x00]);
    assert!(matches!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::Overrun { .. })
    ));
    // A reference 2 back after 1 pixel.
    let mut s = header(8, 4, 1, 16);
    s.extend_from_slice(&[0, 1, 2, 3, 0x40, 0x01]);
    assert_eq!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::ReferenceBeforeStart { pos: 1, back: 2 })
    );
    // Endless 255 extension bytes stop as soon as the length exceeds the image.
    let mut s = header(8, 4, 1, 16);
    s.extend_from_slice(&[0, 1, 2, 3, 0xE0]);
    s.extend_from_slice(&[0xFF; 100]);
    assert!(matches!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::Overrun { .. })
    ));
}

#[test]
fn lz_decode_bottom_up_stream_is_returned_top_row_first() {
    // Build a bottom-up stream by hand: 1x2 image, stream row 0 = bottom.
    let mut s = header(8, 1, 2, 4);
    let n = s.len();
    s[n - 1] = 0; // top_down = 0
    s.extend_from_slice(&[0x01, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22]);
    let d = lz::decode(&s, MAX_PIXELS).unwrap();
    assert_eq!(d.pixels, vec![0x0022_2222, 0x0011_1111]);
}

#[test]
fn lz_decode_survives_random_garbage_and_mutations() {
    let mut rng = Rng::new(7);
    let pic = testimg::desktop(24, 9, &mut rng);
    let good = lz::encode(&xrgb(&pic, 24, 9, 96)).unwrap();
    for _ in 0..20_000 {
        let mut s = good.clone();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            let i = 28 + rng.below((s.len() - 28) as u32) as usize;
            s[i] = rng.next_u32() as u8;
        }
        let _ = lz::decode(&s, MAX_PIXELS);
    }
    for len in 0..200 {
        let mut s = header(8, 7, 3, 28);
        for _ in 0..len {
            s.push(rng.next_u32() as u8);
        }
        let _ = lz::decode(&s, MAX_PIXELS);
    }
}

// --- LZ4 payload --------------------------------------------------------------------------------

#[test]
fn lz4_payload_header_and_big_endian_block_sizes() {
    let mut rng = Rng::new(8);
    // 600x600x4 = 1.44 MB: two blocks (1 MiB target of whole rows).
    let pic = testimg::desktop(600, 600, &mut rng);
    let src = xrgb(&pic, 600, 600, 2400);
    let payload = lz4::encode(&src).unwrap();
    assert_eq!(payload[0], 1, "top_down");
    assert_eq!(payload[1], bitmap_format::RGB32);
    let mut pos = 2;
    let mut blocks = 0;
    while pos < payload.len() {
        let size = u32::from_be_bytes(payload[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4 + size;
        blocks += 1;
    }
    assert_eq!(pos, payload.len());
    assert_eq!(blocks, 2);
    lz4_roundtrip(&src);
}

#[test]
fn lz4_decode_rejects_truncation_and_garbage() {
    let mut rng = Rng::new(9);
    let pic = testimg::text(50, 20, &mut rng);
    let src = xrgb(&pic, 50, 20, 200);
    let payload = lz4::encode(&src).unwrap();
    for cut in 0..payload.len() {
        assert!(
            lz4::decode(&payload[..cut], 50, 20, usize::MAX).is_err(),
            "prefix {cut} accepted"
        );
    }
    assert!(matches!(
        lz4::decode(&[1, 5, 0, 0, 0, 0], 1, 1, 99),
        Err(lz4::Lz4Error::UnsupportedFormat(5))
    ));
    assert!(matches!(
        lz4::decode(&[1, 8, 0, 0, 0, 0], 1, 1, 99),
        Err(lz4::Lz4Error::BadBlock { .. })
    ));
    assert!(matches!(
        lz4::decode(&payload, 50, 20, 100),
        Err(lz4::Lz4Error::BadSize { .. })
    ));
    for _ in 0..5_000 {
        let mut s = payload.clone();
        let i = rng.below(s.len() as u32) as usize;
        s[i] = rng.next_u32() as u8;
        let _ = lz4::decode(&s, 50, 20, usize::MAX);
    }
}

// --- the display-channel API -------------------------------------------------------------------

#[test]
fn encode_lz_body_is_data_size_then_stream_and_descriptor_matches() {
    let mut rng = Rng::new(10);
    let pic = testimg::text(64, 16, &mut rng);
    let src = xrgb(&pic, 64, 16, 256);
    let img = encode(ImageCodec::LzRgb, &src).unwrap();
    assert_eq!(img.codec, ImageCodec::LzRgb);
    assert_eq!(img.image_type, 101);
    let size = u32::from_le_bytes(img.body[..4].try_into().unwrap()) as usize;
    assert_eq!(size, img.body.len() - 4);
    let d = lz::decode(&img.body[4..], MAX_PIXELS).unwrap();
    assert_eq!(d.pixels, expected_pixels(&src));
    let desc = img.descriptor(0x1122_3344_5566_7788, 1);
    assert_eq!(
        desc,
        [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 101, 1, 64, 0, 0, 0, 16, 0, 0, 0]
    );
    assert_eq!(
        img.to_spice_image(0x1122_3344_5566_7788, 1)[18..],
        img.body[..]
    );
}

#[test]
fn encode_lz4_body_is_data_size_then_payload() {
    let mut rng = Rng::new(11);
    let pic = testimg::text(64, 16, &mut rng);
    let src = xrgb(&pic, 64, 16, 256);
    let img = encode(ImageCodec::Lz4, &src).unwrap();
    assert_eq!((img.codec, img.image_type), (ImageCodec::Lz4, 109));
    let size = u32::from_le_bytes(img.body[..4].try_into().unwrap()) as usize;
    assert_eq!(size, img.body.len() - 4);
    let d = lz4::decode(&img.body[4..], 64, 16, usize::MAX).unwrap();
    assert_eq!(d.data, pic);
}

#[test]
fn encode_bitmap_body_layout_packs_rows_top_down() {
    // 2x2 with 4 bytes of padding per row.
    let data = [
        1u8, 2, 3, 4, 5, 6, 7, 8, 0xEE, 0xEE, 0xEE, 0xEE, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    let src = xrgb(&data[..], 2, 2, 12);
    let img = encode(ImageCodec::Bitmap, &src).unwrap();
    assert_eq!(img.image_type, 0);
    assert_eq!(
        img.body,
        [
            8, 4, // format 32BIT, flags TOP_DOWN
            2, 0, 0, 0, 2, 0, 0, 0, // x, y
            8, 0, 0, 0, // stride (packed)
            0, 0, 0, 0, // palette pointer NULL
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ]
    );
}

#[test]
fn encode_falls_back_to_bitmap_when_compression_does_not_help() {
    let px = [1u8, 2, 3, 0];
    let img = encode(ImageCodec::LzRgb, &xrgb(&px, 1, 1, 4)).unwrap();
    assert_eq!(img.codec, ImageCodec::Bitmap);
    assert_eq!(img.image_type, 0);
}

#[test]
fn encode_rejects_bad_geometry() {
    let px = [0u8; 16];
    assert!(matches!(
        encode(ImageCodec::LzRgb, &xrgb(&px, 0, 1, 4)),
        Err(CodecError::Empty { .. })
    ));
    assert!(matches!(
        encode(ImageCodec::LzRgb, &xrgb(&px, 2, 1, 4)),
        Err(CodecError::StrideTooSmall { .. })
    ));
    assert!(matches!(
        encode(ImageCodec::Lz4, &xrgb(&px, 2, 3, 8)),
        Err(CodecError::SourceTooShort {
            needed: 24,
            have: 16
        })
    ));
    assert!(matches!(
        encode(ImageCodec::Bitmap, &xrgb(&px, 1 << 16, 1 << 14, 1 << 18)),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn choose_codec_follows_the_policy_and_client_caps() {
    let px = vec![0u8; 64 * 16 * 4];
    let big = xrgb(&px, 64, 16, 256);
    let tiny = xrgb(&px[..12], 3, 1, 12);
    let lz4 = ClientImageCaps {
        lz4: true,
        ..Default::default()
    };
    let none = ClientImageCaps::default();
    assert_eq!(
        choose_codec(CompressionPolicy::Auto, lz4, &tiny),
        ImageCodec::Bitmap
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Auto, none, &big),
        ImageCodec::LzRgb
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Off, lz4, &big),
        ImageCodec::Bitmap
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Lz, lz4, &big),
        ImageCodec::LzRgb
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Lz4, lz4, &big),
        ImageCodec::Lz4
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Lz4, none, &big),
        ImageCodec::LzRgb
    );
}

#[test]
fn auto_picks_quic_for_photo_like_pictures_and_lz_for_text_and_flat() {
    let mut rng = Rng::new(5);
    let none = ClientImageCaps::default();
    let (w, h) = (200u32, 120u32);
    let photo = testimg::photo(w, h, &mut rng);
    let text = testimg::text(w, h, &mut rng);
    let desktop = testimg::desktop(w, h, &mut rng);
    let flat = testimg::solid(w, h, 0x0012_3456);
    let grad = testimg::gradient(w, h);
    let stride = w as usize * 4;
    assert!(is_highly_gradual(&xrgb(&photo, w, h, stride)));
    assert!(is_highly_gradual(&xrgb(&grad, w, h, stride)));
    for (name, pic) in [("text", &text), ("desktop", &desktop), ("flat", &flat)] {
        assert!(!is_highly_gradual(&xrgb(pic, w, h, stride)), "{name}");
        assert_eq!(
            choose_codec(CompressionPolicy::Auto, none, &xrgb(pic, w, h, stride)),
            ImageCodec::LzRgb,
            "{name}"
        );
        // QUIC forced: QUIC whatever the content.
        assert_eq!(
            choose_codec(CompressionPolicy::Quic, none, &xrgb(pic, w, h, stride)),
            ImageCodec::Quic,
            "{name}"
        );
    }
    assert_eq!(
        choose_codec(CompressionPolicy::Auto, none, &xrgb(&photo, w, h, stride)),
        ImageCodec::Quic
    );
    // Too narrow or short for QUIC, or RGB16: LZ even when forced or photo-like.
    assert_eq!(
        choose_codec(CompressionPolicy::Quic, none, &xrgb(&photo, 2, h, stride)),
        ImageCodec::LzRgb
    );
    assert_eq!(
        choose_codec(CompressionPolicy::Auto, none, &xrgb(&photo, w, 2, stride)),
        ImageCodec::LzRgb
    );
    let (p16, s16) = testimg::convert(&photo, w, h, SourceFormat::Rgb16, 0);
    let src16 = SourceImage {
        data: &p16,
        width: w,
        height: h,
        stride: s16,
        format: SourceFormat::Rgb16,
    };
    assert_eq!(
        choose_codec(CompressionPolicy::Quic, none, &src16),
        ImageCodec::LzRgb
    );
}

#[test]
fn encode_quic_body_is_data_size_then_words_and_decodes_back() {
    let mut rng = Rng::new(8);
    let pictures = [
        ("photo", 97, 61, testimg::photo(97, 61, &mut rng)),
        ("desktop", 130, 70, testimg::desktop(130, 70, &mut rng)),
        ("text", 64, 40, testimg::text(64, 40, &mut rng)),
        ("gradient", 33, 3, testimg::gradient(33, 3)),
    ];
    for (name, w, h, pic) in &pictures {
        for format in [
            SourceFormat::Xrgb32,
            SourceFormat::Argb32,
            SourceFormat::Rgb24,
        ] {
            let (data, stride) = testimg::convert(pic, *w, *h, format, 3);
            let src = SourceImage {
                data: &data,
                width: *w,
                height: *h,
                stride,
                format,
            };
            let img = encode(ImageCodec::Quic, &src).unwrap();
            assert_eq!(img.codec, ImageCodec::Quic, "{name} {format:?}");
            assert_eq!(img.image_type, image_type::QUIC);
            let size = u32::from_le_bytes(img.body[0..4].try_into().unwrap()) as usize;
            assert_eq!(size, img.body.len() - 4);
            assert_eq!(size % 4, 0);
            assert_eq!(&img.body[4..8], b"QUIC");
            let dec = quic::decode(&img.body[4..], *w, *h, MAX_PIXELS).unwrap();
            assert_eq!(dec.pixels, expected_pixels(&src), "{name} {format:?}");
        }
    }
    // Under 3 pixels wide or tall, and RGB16: BITMAP.
    let px = [7u8; 2 * 50 * 4];
    let img = encode(ImageCodec::Quic, &xrgb(&px, 2, 50, 8)).unwrap();
    assert_eq!(img.codec, ImageCodec::Bitmap);
    let img = encode(ImageCodec::Quic, &xrgb(&px, 50, 2, 200)).unwrap();
    assert_eq!(img.codec, ImageCodec::Bitmap);
    let rgb16 = SourceImage {
        data: &px,
        width: 20,
        height: 10,
        stride: 40,
        format: SourceFormat::Rgb16,
    };
    assert_eq!(
        encode(ImageCodec::Quic, &rgb16).unwrap().codec,
        ImageCodec::Bitmap
    );
    // Noise still shrinks a little (the X byte is not coded), and decodes back.
    let noise = testimg::noise(40, 40, &mut rng);
    let src = xrgb(&noise, 40, 40, 160);
    let img = encode(ImageCodec::Quic, &src).unwrap();
    assert_eq!(img.codec, ImageCodec::Quic);
    let dec = quic::decode(&img.body[4..], 40, 40, MAX_PIXELS).unwrap();
    assert_eq!(dec.pixels, expected_pixels(&src));
}

/// Prints LZ vs QUIC body sizes for a photo-like and a text-like picture (the numbers in the
/// QUIC work report); asserts only that each codec wins on its own kind of content.
#[test]
fn lz_vs_quic_sizes() {
    let mut rng = Rng::new(21);
    let (w, h) = (640u32, 480u32);
    let photo = testimg::photo(w, h, &mut rng);
    let text = testimg::text(w, h, &mut rng);
    let desktop = testimg::desktop(w, h, &mut rng);
    let mut sizes = Vec::new();
    for (name, pic) in [("photo", &photo), ("text", &text), ("desktop", &desktop)] {
        let src = xrgb(pic, w, h, w as usize * 4);
        let lz = encode(ImageCodec::LzRgb, &src).unwrap().body.len();
        let quic = encode(ImageCodec::Quic, &src).unwrap().body.len();
        eprintln!("{name} {w}x{h}: raw {} LZ {lz} QUIC {quic}", w * h * 4);
        sizes.push((lz, quic));
    }
    assert!(sizes[0].1 < sizes[0].0, "QUIC wins on the photo");
    assert!(sizes[1].0 < sizes[1].1, "LZ wins on text");
}

/// Writes the seed corpora of the QUIC fuzz targets (`fuzz/corpus/quic_decode/*.quic`,
/// `fuzz/corpus/quic_roundtrip/*.bin`). Run it explicitly:
/// `cargo test -p spice-bridge --lib write_quic_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_quic_fuzz_seeds() {
    let mut rng = Rng::new(77);
    let photo = ("photo", 30, 20, testimg::photo(30, 20, &mut rng));
    write_codec_seeds(
        ("quic_decode", "quic"),
        "quic_roundtrip",
        rng,
        Some(photo),
        3,
        |src| quic::encode(src).unwrap(),
    );
}

/// The fuzz seeds of one codec: for each test picture and format (the first `formats` of
/// xRGB, ARGB, RGB24, RGB16), its encoding into `corpus/<decode>/NAME-FORMAT.<ext>` and the
/// raw picture (the round-trip targets' 4-byte header, then the pixels) into
/// `corpus/<roundtrip>/NAME-FORMAT.bin`.
fn write_codec_seeds(
    (decode, ext): (&str, &str),
    roundtrip: &str,
    mut rng: Rng,
    extra: Option<(&str, u32, u32, Vec<u8>)>,
    formats: usize,
    encode: impl Fn(&SourceImage<'_>) -> Vec<u8>,
) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let dec = root.join(decode);
    let rt = root.join(roundtrip);
    std::fs::create_dir_all(&dec).unwrap();
    std::fs::create_dir_all(&rt).unwrap();
    let mut pictures: Vec<(&str, u32, u32, Vec<u8>)> = vec![
        ("solid", 9, 3, testimg::solid(9, 3, 0x0011_2233)),
        ("gradient", 16, 16, testimg::gradient(16, 16)),
    ];
    pictures.extend(extra);
    pictures.extend([
        ("text", 40, 14, testimg::text(40, 14, &mut rng)),
        ("desktop", 60, 30, testimg::desktop(60, 30, &mut rng)),
        ("noise", 8, 8, testimg::noise(8, 8, &mut rng)),
        ("pixel", 1, 1, testimg::solid(1, 1, 0x00AB_CDEF)),
    ]);
    let all_formats = [
        (SourceFormat::Xrgb32, 0u8, "rgb32"),
        (SourceFormat::Argb32, 1, "rgba"),
        (SourceFormat::Rgb24, 2, "rgb24"),
        (SourceFormat::Rgb16, 3, "rgb16"),
    ];
    for (name, w, h, pic) in &pictures {
        for &(format, code, fname) in &all_formats[..formats] {
            let (data, stride) = testimg::convert(pic, *w, *h, format, 0);
            let src = SourceImage {
                data: &data,
                width: *w,
                height: *h,
                stride,
                format,
            };
            std::fs::write(dec.join(format!("{name}-{fname}.{ext}")), encode(&src)).unwrap();
            let mut seed = vec![(*w - 1) as u8, (*h - 1) as u8, code, 0];
            seed.extend_from_slice(&data);
            std::fs::write(rt.join(format!("{name}-{fname}.bin")), &seed).unwrap();
        }
    }
}

#[test]
fn client_caps_lz4_is_display_cap_bit_5() {
    // spice-gtk 0.42 display caps word: SIZED_STREAM, MONITORS_CONFIG, COMPOSITE, A8_SURFACE,
    // STREAM_REPORT, LZ4_COMPRESSION, MULTI_CODEC, CODEC_MJPEG.
    let gtk = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9);
    assert!(ClientImageCaps::from_display_caps(&[gtk]).lz4);
    // spice-html5: SIZED_STREAM, STREAM_REPORT, MULTI_CODEC, CODEC_MJPEG.
    let html5 = (1 << 0) | (1 << 4) | (1 << 8) | (1 << 9);
    assert!(!ClientImageCaps::from_display_caps(&[html5]).lz4);
    assert!(!ClientImageCaps::from_display_caps(&[]).lz4);
    // LZ_PLT goes to spice-gtk (COMPOSITE announced), never to spice-html5.
    assert!(ClientImageCaps::from_display_caps(&[gtk]).palette_lz);
    assert!(!ClientImageCaps::from_display_caps(&[html5]).palette_lz);
}

// --- LZ_PLT: palette reduction and the palette LZ types --------------------------------------

/// `w` x `h` xRGB bytes whose pixel (x, y) is `f(x, y)`.
fn picture(w: u32, h: u32, f: impl Fn(u32, u32) -> u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| f(x, y).to_le_bytes())
        .collect()
}

fn plt_roundtrip(src: &SourceImage<'_>) -> palette::PaletteImage {
    let p = palette::palettize(src, palette::MAX_COLOURS).expect("few colours");
    let mut stream = Vec::new();
    lz::encode_palette_into(&p, &mut stream);
    let d = lz::decode_with_palette(&stream, &p.entries, MAX_PIXELS).expect("decode");
    assert_eq!(d.header.image_type, p.lz_type);
    assert_eq!(d.header.stride as usize, p.stride);
    let want: Vec<u32> = expected_pixels(src);
    assert!(
        d.pixels == want,
        "{}x{} {:?} round trip differs",
        src.width,
        src.height,
        p.lz_type
    );
    p
}

#[test]
fn palettize_picks_plt1_plt4_plt8_by_colour_count_and_packs_msb_first() {
    // 2 colours, 10 wide: PLT1_BE, stride 2, leftmost pixel in bit 7, unused bits zero.
    let px = picture(10, 2, |x, y| {
        if (x + y) % 3 == 0 {
            0x00ff_0000
        } else {
            0x0000_00ff
        }
    });
    let p = plt_roundtrip(&xrgb(&px, 10, 2, 40));
    assert_eq!(p.lz_type, lz::LzImageType::Plt1Be);
    assert_eq!(p.entries, vec![0x00ff_0000, 0x0000_00ff]);
    assert_eq!(p.stride, 2);
    // row 0: x = 0,3,6,9 are entry 0 -> bits 1,0,0,1,0,0,1,0 | 0,1 + six zero bits
    assert_eq!(&p.packed[..2], &[0b0110_1101, 0b1000_0000]);
    // One colour still gets two palette entries (spice-common reads entries 0 and 1).
    let flat = picture(9, 3, |_, _| 0x0012_3456);
    let p = plt_roundtrip(&xrgb(&flat, 9, 3, 36));
    assert_eq!((p.lz_type, p.entries.len()), (lz::LzImageType::Plt1Be, 2));
    // 3..16 colours: PLT4_BE, left pixel in the high nibble; 7 wide -> stride 4.
    let px = picture(7, 3, |x, y| (x * 2 + y) % 5 * 0x0010_2030);
    let p = plt_roundtrip(&xrgb(&px, 7, 3, 28));
    assert_eq!(
        (p.lz_type, p.stride, p.entries.len()),
        (lz::LzImageType::Plt4Be, 4, 5)
    );
    assert_eq!(p.packed[0], 0x01, "pixels 0 and 1 are entries 0 and 1");
    // 17..256 colours: PLT8; 257 colours: no palette.
    let px = picture(256, 2, |x, y| x * 0x0001_0101 + y);
    assert!(palette::palettize(&xrgb(&px, 256, 2, 1024), 256).is_none());
    let px = picture(33, 8, |x, y| (x + y * 33) % 200 * 0x0001_0203);
    let p = plt_roundtrip(&xrgb(&px, 33, 8, 132));
    assert_eq!(
        (p.lz_type, p.stride, p.entries.len()),
        (lz::LzImageType::Plt8, 33, 200)
    );
    // RGB24 sources palettize too; alpha and 15-bit ones do not.
    let rgb24: Vec<u8> = px
        .chunks_exact(4)
        .flat_map(|c| [c[0], c[1], c[2]])
        .collect();
    let src24 = SourceImage {
        data: &rgb24,
        width: 33,
        height: 8,
        stride: 99,
        format: SourceFormat::Rgb24,
    };
    plt_roundtrip(&src24);
    let argb = SourceImage {
        format: SourceFormat::Argb32,
        ..xrgb(&px, 33, 8, 132)
    };
    assert!(palette::palettize(&argb, 256).is_none());
}

#[test]
fn plt_roundtrip_odd_widths_and_padded_rows() {
    for w in [1u32, 2, 7, 8, 9, 15, 16, 17, 331] {
        for (colours, want) in [
            (2u32, lz::LzImageType::Plt1Be),
            (11, lz::LzImageType::Plt4Be),
            (97, lz::LzImageType::Plt8),
        ] {
            let h = 23u32;
            // Every colour appears (the first `colours` pixels), the rest from a hash.
            let f = |x: u32, y: u32| {
                let i = y * w + x;
                let k = if i < colours {
                    i
                } else {
                    (i.wrapping_mul(2_654_435_761) >> 7) % colours
                };
                k * 0x0003_0507
            };
            if w * h < colours {
                continue;
            }
            // Rows padded by 12 bytes: the packed rows must not carry the padding.
            let stride = w as usize * 4 + 12;
            let mut px = vec![0xEEu8; stride * h as usize];
            for y in 0..h {
                for x in 0..w {
                    let o = y as usize * stride + x as usize * 4;
                    px[o..o + 4].copy_from_slice(&f(x, y).to_le_bytes());
                }
            }
            let p = plt_roundtrip(&xrgb(&px, w, h, stride));
            assert_eq!(p.lz_type, want, "{w} wide, {colours} colours");
        }
    }
}

#[test]
fn plt_decoder_follows_spice_commons_bit_orders_by_hand() {
    // PLT1_LE and PLT4_LE are never produced by our encoder; decode hand-made streams. Width 10
    // (stride 2 for PLT1), one row; literal run of 2 bytes: control 1, then the bytes.
    let pal = [0x0000_0000, 0x00ff_ffff, 0x0011_2233, 0x0044_5566];
    let mut s = header(1, 10, 1, 2); // PLT1_LE: bit 0 is the leftmost pixel
    s.extend_from_slice(&[1, 0b0000_0101, 0b0000_0010]);
    let d = lz::decode_with_palette(&s, &pal, MAX_PIXELS).unwrap();
    let w = 0x00ff_ffff;
    assert_eq!(d.pixels, vec![w, 0, w, 0, 0, 0, 0, 0, 0, w]);
    let mut s = header(2, 10, 1, 2); // PLT1_BE: bit 7 is the leftmost pixel
    s.extend_from_slice(&[1, 0b1010_0000, 0b0100_0000]);
    assert_eq!(
        lz::decode_with_palette(&s, &pal, MAX_PIXELS)
            .unwrap()
            .pixels,
        vec![w, 0, w, 0, 0, 0, 0, 0, 0, w]
    );
    let mut s = header(3, 3, 1, 2); // PLT4_LE: low nibble first
    s.extend_from_slice(&[1, 0x32, 0x01]);
    assert_eq!(
        lz::decode_with_palette(&s, &pal, MAX_PIXELS)
            .unwrap()
            .pixels,
        vec![pal[2], pal[3], pal[1]]
    );
    // A match in a palette stream copies (code + 2) bytes: 0x20 = code 1 -> 3 bytes, 1 back.
    let mut s = header(5, 4, 1, 4); // PLT8
    s.extend_from_slice(&[0, 3, 0x20, 0]);
    assert_eq!(
        lz::decode_with_palette(&s, &pal, MAX_PIXELS)
            .unwrap()
            .pixels,
        vec![pal[3]; 4]
    );
    // Errors: an index past the palette, a PLT1 palette of one entry, a wrong stride, and any
    // palette type through the RGB-only decode().
    let mut s = header(5, 1, 1, 1);
    s.extend_from_slice(&[0, 4]);
    assert!(matches!(
        lz::decode_with_palette(&s, &pal, MAX_PIXELS),
        Err(lz::LzError::PaletteIndex {
            index: 4,
            entries: 4
        })
    ));
    assert!(matches!(
        lz::decode(&s, MAX_PIXELS),
        Err(lz::LzError::UnsupportedType(5))
    ));
    let mut s = header(2, 8, 1, 1);
    s.extend_from_slice(&[0, 0]);
    assert!(matches!(
        lz::decode_with_palette(&s, &pal[..1], MAX_PIXELS),
        Err(lz::LzError::PaletteIndex { .. })
    ));
    let mut s = header(2, 9, 1, 1);
    s.extend_from_slice(&[0, 0]);
    assert!(matches!(
        lz::decode_with_palette(&s, &pal, MAX_PIXELS),
        Err(lz::LzError::BadPaletteStride {
            stride: 1,
            width: 9,
            per_byte: 8
        })
    ));
}

#[test]
fn encode_palette_lz_only_for_lz_policies_and_clients_that_decode_it() {
    let px = picture(64, 16, testing_text);
    let src = xrgb(&px, 64, 16, 256);
    let gtk = ClientImageCaps {
        lz4: true,
        palette_lz: true,
    };
    let html5 = ClientImageCaps::default();
    for policy in [
        CompressionPolicy::Auto,
        CompressionPolicy::Lz,
        CompressionPolicy::Lz4,
    ] {
        assert!(encode_palette_lz(policy, gtk, &src).is_some(), "{policy:?}");
        assert!(
            encode_palette_lz(policy, html5, &src).is_none(),
            "{policy:?} to html5"
        );
    }
    for policy in [CompressionPolicy::Off, CompressionPolicy::Quic] {
        assert!(encode_palette_lz(policy, gtk, &src).is_none(), "{policy:?}");
    }
    let tiny = xrgb(&px[..12], 3, 1, 12);
    assert!(encode_palette_lz(CompressionPolicy::Lz, gtk, &tiny).is_none());
}

/// The guest's text workload line (1024x16, two colours): bytes as LZ_PLT vs LZ_RGB. A figure
/// for the notes, and a check that the palette form is the smaller one by far.
#[test]
fn text_line_as_lz_plt_is_a_fraction_of_lz_rgb() {
    let px = picture(1024, 16, |x, y| testing_text(x, y + 5 * 16));
    let src = xrgb(&px, 1024, 16, 4096);
    let rgb = encode(ImageCodec::LzRgb, &src).unwrap();
    let gtk = ClientImageCaps {
        lz4: false,
        palette_lz: true,
    };
    let plt = encode_palette_lz(CompressionPolicy::Lz, gtk, &src).unwrap();
    let plt_bytes = plt.lz.len() + 4 + 1 + 4 + 8 + 2 + 4 * plt.entries.len();
    eprintln!(
        "text line 1024x16: LZ_RGB {} bytes, LZ_PLT {} bytes (raw {})",
        rgb.body.len(),
        plt_bytes,
        px.len()
    );
    assert!(plt_bytes * 3 < rgb.body.len());
}

fn testing_text(x: u32, y: u32) -> u32 {
    crate::testing::text_pixel(x, y, 0)
}

/// Writes the seed corpora of the fuzz targets (`fuzz/corpus/lz_decode/*.lz`,
/// `fuzz/corpus/lz_roundtrip/*.bin`). Run it explicitly:
/// `cargo test -p spice-bridge --lib write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    write_codec_seeds(
        ("lz_decode", "lz"),
        "lz_roundtrip",
        Rng::new(99),
        None,
        4,
        |src| lz::encode(src).unwrap(),
    );
}

/// Writes client test vectors into `$CODEC_VECTORS_DIR`: for each case `<name>.raw` (the expected
/// screen: packed B,G,R,X rows), `<name>.img` (a complete SpiceImage: descriptor + body) and
/// `<name>.txt` (`width height codec`). A throwaway Spice server fed with these lets the real
/// client (spicy-screenshot) decode our encodings. Run:
/// `CODEC_VECTORS_DIR=/tmp/v cargo test -p spice-bridge --lib write_client_vectors -- --ignored`.
#[test]
#[ignore]
fn write_client_vectors() {
    let Ok(dir) = std::env::var("CODEC_VECTORS_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(2024);
    let cases: Vec<(&str, u32, u32, Vec<u8>)> = vec![
        (
            "desktop1080",
            1920,
            1080,
            testimg::desktop(1920, 1080, &mut rng),
        ),
        ("text333x41", 333, 41, testimg::text(333, 41, &mut rng)),
        ("gradient97x61", 97, 61, testimg::gradient(97, 61)),
        ("noise50x30", 50, 30, testimg::noise(50, 30, &mut rng)),
        ("far9000x3", 9000, 3, {
            let row = testimg::noise(9000, 1, &mut rng);
            row.repeat(3)
        }),
        ("solid1x1", 1, 1, testimg::solid(1, 1, 0x00C0_FFEE)),
        (
            "solid640x480",
            640,
            480,
            testimg::solid(640, 480, 0x0012_3456),
        ),
    ];
    for (name, w, h, pic) in &cases {
        let variants: [(&str, SourceFormat, ImageCodec); 6] = [
            ("lz", SourceFormat::Xrgb32, ImageCodec::LzRgb),
            ("lzrgba", SourceFormat::Argb32, ImageCodec::LzRgb),
            ("lz24", SourceFormat::Rgb24, ImageCodec::LzRgb),
            ("lz16", SourceFormat::Rgb16, ImageCodec::LzRgb),
            ("lz4", SourceFormat::Xrgb32, ImageCodec::Lz4),
            ("bitmap", SourceFormat::Xrgb32, ImageCodec::Bitmap),
        ];
        for (suffix, format, codec) in variants {
            let (data, stride) = testimg::convert(pic, *w, *h, format, 0);
            let src = SourceImage {
                data: &data,
                width: *w,
                height: *h,
                stride,
                format,
            };
            let img = encode(codec, &src).unwrap();
            // What the screen must show (B, G, R, X with X ignored by the comparison).
            let screen: Vec<u8> = expected_pixels(&src)
                .iter()
                .flat_map(|p| p.to_le_bytes())
                .collect();
            let base = dir.join(format!("{name}-{suffix}"));
            std::fs::write(base.with_extension("raw"), &screen).unwrap();
            std::fs::write(base.with_extension("img"), img.to_spice_image(1, 0)).unwrap();
            std::fs::write(
                base.with_extension("txt"),
                format!("{w} {h} {:?} {}\n", img.codec, img.body.len()),
            )
            .unwrap();
        }
    }
}

// --- JPEG (lossy, only with jpeg-wan-compression=always) -------------------------------------

#[test]
fn jpeg_replaces_quic_only_when_allowed_and_decodes_close_to_the_picture() {
    assert_eq!(with_jpeg(ImageCodec::Quic, true), ImageCodec::Jpeg);
    assert_eq!(with_jpeg(ImageCodec::Quic, false), ImageCodec::Quic);
    for c in [ImageCodec::LzRgb, ImageCodec::Lz4, ImageCodec::Bitmap] {
        assert_eq!(with_jpeg(c, true), c, "lossless choices stay lossless");
    }
    let (w, h) = (643u32, 401u32);
    let px = picture(w, h, |x, y| crate::testing::photo_pixel(x, y, 1));
    let src = xrgb(&px, w, h, w as usize * 4);
    let quic = encode(ImageCodec::Quic, &src).unwrap();
    let jpeg = encode(ImageCodec::Jpeg, &src).unwrap();
    assert_eq!((jpeg.codec, jpeg.image_type), (ImageCodec::Jpeg, 105));
    let size = u32::from_le_bytes(jpeg.body[..4].try_into().unwrap()) as usize;
    assert_eq!(size, jpeg.body.len() - 4);
    assert_eq!(&jpeg.body[4..6], &[0xFF, 0xD8], "JFIF starts with SOI");
    let (dw, dh, got) = crate::testing::decode_jpeg(&jpeg.body[4..]).unwrap();
    assert_eq!((dw, dh), (w, h));
    let want: Vec<u32> = expected_pixels(&src);
    let db = crate::testing::psnr(&got, &want);
    eprintln!(
        "photo {w}x{h}: JPEG q85 {} bytes at {db:.1} dB, QUIC {} bytes (lossless)",
        jpeg.body.len(),
        quic.body.len()
    );
    assert!(db >= 35.0, "PSNR {db:.1} dB");
    assert!(jpeg.body.len() * 2 < quic.body.len());
    // Padded rows, RGB24 and ARGB sources give the same picture; RGB16 falls back to BITMAP.
    let stride = w as usize * 4 + 8;
    let mut padded = vec![0u8; stride * h as usize];
    for y in 0..h as usize {
        padded[y * stride..y * stride + w as usize * 4]
            .copy_from_slice(&px[y * w as usize * 4..(y + 1) * w as usize * 4]);
    }
    let p = encode(ImageCodec::Jpeg, &xrgb(&padded, w, h, stride)).unwrap();
    assert_eq!(p.body, jpeg.body);
    let rgb24: Vec<u8> = px
        .chunks_exact(4)
        .flat_map(|c| [c[0], c[1], c[2]])
        .collect();
    let src24 = SourceImage {
        data: &rgb24,
        width: w,
        height: h,
        stride: w as usize * 3,
        format: SourceFormat::Rgb24,
    };
    assert_eq!(encode(ImageCodec::Jpeg, &src24).unwrap().body, jpeg.body);
    let r16 = vec![0u8; 64 * 64 * 2];
    let src16 = SourceImage {
        data: &r16,
        width: 64,
        height: 64,
        stride: 128,
        format: SourceFormat::Rgb16,
    };
    assert_eq!(
        encode(ImageCodec::Jpeg, &src16).unwrap().codec,
        ImageCodec::Bitmap
    );
}

#[test]
fn gradual_test_on_model_pixels_agrees_with_the_byte_form() {
    let pictures: Vec<(u32, u32, Vec<u32>)> = vec![
        (
            643,
            401,
            crate::testing::photo_image(0, 643, 401, 2)
                .pixels()
                .to_vec(),
        ),
        (
            200,
            100,
            crate::testing::palette_image(0, 200, 100, 2)
                .pixels()
                .to_vec(),
        ),
        (
            77,
            45,
            crate::testing::palette_image(0, 77, 45, 16)
                .pixels()
                .to_vec(),
        ),
        (1, 5, vec![0x123456; 5]),
    ];
    let mut seen = [false; 2];
    for (w, h, px) in &pictures {
        let bytes: Vec<u8> = px.iter().flat_map(|p| p.to_le_bytes()).collect();
        let want = is_highly_gradual(&xrgb(&bytes, *w, *h, *w as usize * 4));
        assert_eq!(is_highly_gradual_rgb(px, *w, *h), want, "{w}x{h}");
        seen[usize::from(want)] = true;
    }
    assert_eq!(seen, [true, true], "both answers covered");
    assert!(!is_highly_gradual_rgb(&[0; 5], 2, 3), "wrong pixel count");
}
