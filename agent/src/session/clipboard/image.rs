//! PNG ↔ BMP for the clipboard bridge: the Spice side speaks PNG (every image-capable peer
//! must), while some X11 applications only offer or only accept `image/bmp`.
//!
//! The BMP reader covers what clipboard owners actually produce: uncompressed 24- and 32-bit
//! bitmaps (`BI_RGB`, `BI_BITFIELDS`, `BI_ALPHABITFIELDS`), bottom-up or top-down, with or
//! without the 14-byte file header (a bare DIB). The writer produces a 32-bit bottom-up bitmap
//! with a `BITMAPV5HEADER`, so alpha survives. Every size is checked before it is used: the
//! input is untrusted.

use std::fmt;

/// Why an image could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageError(pub String);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(what: impl Into<String>) -> Result<T, ImageError> {
    Err(ImageError(what.into()))
}

/// Decoded pixels: `width * height` RGBA quadruplets, top row first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// `width * height * 4`, if it is at most `max_bytes`.
fn rgba_size(width: u32, height: u32, max_bytes: usize) -> Result<usize, ImageError> {
    let n = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(4))
        .filter(|&n| n <= max_bytes);
    match n {
        Some(n) if width > 0 && height > 0 => Ok(n),
        _ => err(format!("{width}x{height} image is empty or too large")),
    }
}

/// Decodes a PNG into RGBA, allocating at most about `max_bytes`.
pub(crate) fn decode_png(data: &[u8], max_bytes: usize) -> Result<Rgba, ImageError> {
    let mut dec = png::Decoder::new_with_limits(data, png::Limits { bytes: max_bytes });
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| ImageError(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| ImageError(e.to_string()))?;
    let size = rgba_size(info.width, info.height, max_bytes)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return err("PNG palette was not expanded"),
    };
    let row_len = info.width as usize * channels;
    let mut pixels = Vec::with_capacity(size);
    for row in buf.chunks(info.line_size).take(info.height as usize) {
        let Some(row) = row.get(..row_len) else {
            return err("PNG row shorter than its width");
        };
        for px in row.chunks_exact(channels) {
            let rgba = match *px {
                [g] => [g, g, g, 255],
                [g, a] => [g, g, g, a],
                [r, g, b] => [r, g, b, 255],
                [r, g, b, a] => [r, g, b, a],
                _ => return err("bad PNG pixel"),
            };
            pixels.extend_from_slice(&rgba);
        }
    }
    if pixels.len() != size {
        return err("PNG frame shorter than its size");
    }
    Ok(Rgba {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// Encodes RGBA as PNG (RGB when every pixel is opaque).
pub(crate) fn encode_png(img: &Rgba) -> Result<Vec<u8>, ImageError> {
    let opaque = img.pixels.chunks_exact(4).all(|p| p[3] == 255);
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = if opaque {
        enc.set_color(png::ColorType::Rgb);
        img.pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    } else {
        enc.set_color(png::ColorType::Rgba);
        img.pixels.clone()
    };
    let mut w = enc.write_header().map_err(|e| ImageError(e.to_string()))?;
    w.write_image_data(&data)
        .map_err(|e| ImageError(e.to_string()))?;
    w.finish().map_err(|e| ImageError(e.to_string()))?;
    Ok(out)
}

const FILE_HEADER: usize = 14;
const V5_HEADER: usize = 124;
const BI_RGB: u32 = 0;
const BI_BITFIELDS: u32 = 3;
const BI_ALPHABITFIELDS: u32 = 6;

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

/// One colour channel of a BI_BITFIELDS pixel, scaled to 8 bits.
#[derive(Clone, Copy)]
struct Field {
    mask: u32,
    shift: u32,
    max: u32,
}

impl Field {
    fn new(mask: u32) -> Field {
        let shift = if mask == 0 { 0 } else { mask.trailing_zeros() };
        let bits = (mask >> shift).count_ones();
        Field {
            mask,
            shift,
            max: if bits >= 32 {
                u32::MAX
            } else {
                (1 << bits) - 1
            },
        }
    }

    fn get(self, px: u32) -> u8 {
        if self.mask == 0 || self.max == 0 {
            return 0;
        }
        let v = u64::from((px & self.mask) >> self.shift);
        (v * 255 / u64::from(self.max)) as u8
    }
}

/// Decodes an uncompressed 24/32-bit BMP (with or without its file header) into RGBA.
pub(crate) fn decode_bmp(data: &[u8], max_bytes: usize) -> Result<Rgba, ImageError> {
    let bad = || ImageError("truncated BMP".into());
    let (dib, file_offset) = if data.starts_with(b"BM") {
        let off = u32_at(data, 10).ok_or_else(bad)? as usize;
        (data.get(FILE_HEADER..).ok_or_else(bad)?, Some(off))
    } else {
        (data, None)
    };
    let hsize = u32_at(dib, 0).ok_or_else(bad)? as usize;
    if !matches!(hsize, 40 | 52 | 56 | 108 | 124) {
        return err(format!("unsupported BMP header size {hsize}"));
    }
    let width = u32_at(dib, 4).ok_or_else(bad)? as i32;
    let height = u32_at(dib, 8).ok_or_else(bad)? as i32;
    let bpp = u16_at(dib, 14).ok_or_else(bad)?;
    let compression = u32_at(dib, 16).ok_or_else(bad)?;
    if width <= 0 || height == 0 || height == i32::MIN {
        return err(format!("BMP size {width}x{height}"));
    }
    let top_down = height < 0;
    let (w, h) = (width as u32, height.unsigned_abs());
    let size = rgba_size(w, h, max_bytes)?;
    // Bit masks: inside the header from 52 bytes on, else right after a 40-byte header.
    let mut masks_after_header = 0;
    let fields = match (compression, bpp) {
        (BI_RGB, 24 | 32) => None,
        (BI_BITFIELDS | BI_ALPHABITFIELDS, 32) => {
            let n_masks = if compression == BI_ALPHABITFIELDS || hsize >= 56 {
                4
            } else {
                3
            };
            if hsize == 40 {
                masks_after_header = n_masks * 4;
            }
            let m = |i: usize| u32_at(dib, 40 + 4 * i).ok_or_else(bad);
            let alpha = if n_masks == 4 { m(3)? } else { 0 };
            Some([
                Field::new(m(0)?),
                Field::new(m(1)?),
                Field::new(m(2)?),
                Field::new(alpha),
            ])
        }
        _ => {
            return err(format!(
                "unsupported BMP: {bpp} bits per pixel, compression {compression}"
            ))
        }
    };
    let bytes_pp = usize::from(bpp / 8);
    let stride = (w as usize * bytes_pp).div_ceil(4) * 4;
    let pixels_at = match file_offset {
        Some(off) => off.checked_sub(FILE_HEADER).ok_or_else(bad)?,
        None => hsize + masks_after_header,
    };
    let need = stride
        .checked_mul(h as usize - 1)
        .and_then(|n| n.checked_add(w as usize * bytes_pp))
        .and_then(|n| n.checked_add(pixels_at))
        .ok_or_else(bad)?;
    if need > dib.len() {
        return Err(bad());
    }
    let mut pixels = Vec::with_capacity(size);
    for y in 0..h as usize {
        let src_row = if top_down { y } else { h as usize - 1 - y };
        let start = pixels_at + src_row * stride;
        let row = dib
            .get(start..start + w as usize * bytes_pp)
            .ok_or_else(bad)?;
        for px in row.chunks_exact(bytes_pp) {
            let rgba = match (fields, px) {
                (Some([r, g, b, a]), &[p0, p1, p2, p3]) => {
                    let v = u32::from_le_bytes([p0, p1, p2, p3]);
                    let alpha = if a.mask == 0 { 255 } else { a.get(v) };
                    [r.get(v), g.get(v), b.get(v), alpha]
                }
                (None, &[b, g, r]) => [r, g, b, 255],
                (None, &[b, g, r, a]) => [r, g, b, a],
                _ => return Err(bad()),
            };
            pixels.extend_from_slice(&rgba);
        }
    }
    // 32-bit BI_RGB: the fourth byte is "reserved" and usually 0; only when some pixel sets it
    // is it taken as alpha.
    if fields.is_none() && bpp == 32 && pixels.chunks_exact(4).all(|p| p[3] == 0) {
        for p in pixels.chunks_exact_mut(4) {
            p[3] = 255;
        }
    }
    Ok(Rgba {
        width: w,
        height: h,
        pixels,
    })
}

/// Encodes RGBA as a 32-bit bottom-up BMP with a BITMAPV5HEADER (alpha in the top byte).
pub(crate) fn encode_bmp(img: &Rgba) -> Result<Vec<u8>, ImageError> {
    let image_size = img.pixels.len();
    let offset = FILE_HEADER + V5_HEADER;
    let total = u32::try_from(offset + image_size).or_else(|_| err("image too large for BMP"))?;
    let width = i32::try_from(img.width).or_else(|_| err("image too wide for BMP"))?;
    let height = i32::try_from(img.height).or_else(|_| err("image too tall for BMP"))?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(offset as u32).to_le_bytes());
    // BITMAPV5HEADER
    out.extend_from_slice(&(V5_HEADER as u32).to_le_bytes());
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes()); // positive: bottom-up
    out.extend_from_slice(&1u16.to_le_bytes()); // planes
    out.extend_from_slice(&32u16.to_le_bytes()); // bits per pixel
    out.extend_from_slice(&BI_BITFIELDS.to_le_bytes());
    out.extend_from_slice(&(image_size as u32).to_le_bytes());
    out.extend_from_slice(&2835i32.to_le_bytes()); // 72 dpi
    out.extend_from_slice(&2835i32.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // colours used, important
    for mask in [0x00ff_0000u32, 0x0000_ff00, 0x0000_00ff, 0xff00_0000] {
        out.extend_from_slice(&mask.to_le_bytes());
    }
    out.extend_from_slice(b"BGRs"); // LCS_sRGB, little-endian 'sRGB'
    out.extend_from_slice(&[0; 36 + 12]); // endpoints, gamma
    out.extend_from_slice(&4u32.to_le_bytes()); // LCS_GM_IMAGES
    out.extend_from_slice(&[0; 12]); // profile data, size, reserved
    debug_assert_eq!(out.len(), offset);
    let row_len = img.width as usize * 4;
    for row in img.pixels.chunks_exact(row_len.max(1)).rev() {
        for p in row.chunks_exact(4) {
            out.extend_from_slice(&[p[2], p[1], p[0], p[3]]);
        }
    }
    Ok(out)
}

/// PNG bytes → BMP bytes.
pub(crate) fn png_to_bmp(png: &[u8], max_bytes: usize) -> Result<Vec<u8>, ImageError> {
    encode_bmp(&decode_png(png, max_bytes)?)
}

/// BMP bytes → PNG bytes.
pub(crate) fn bmp_to_png(bmp: &[u8], max_bytes: usize) -> Result<Vec<u8>, ImageError> {
    encode_png(&decode_bmp(bmp, max_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(alpha: bool) -> Rgba {
        let (width, height) = (5, 3);
        let pixels = (0..width * height)
            .flat_map(|i| {
                let a = if alpha { (i * 17) as u8 } else { 255 };
                [(i * 10) as u8, (i * 3) as u8, 200 - i as u8, a]
            })
            .collect();
        Rgba {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn png_bmp_round_trips() {
        for alpha in [false, true] {
            let img = sample(alpha);
            let png = encode_png(&img).unwrap();
            assert_eq!(decode_png(&png, 1 << 20).unwrap(), img);
            let bmp = png_to_bmp(&png, 1 << 20).unwrap();
            assert_eq!(decode_bmp(&bmp, 1 << 20).unwrap(), img);
            let png2 = bmp_to_png(&bmp, 1 << 20).unwrap();
            assert_eq!(decode_png(&png2, 1 << 20).unwrap(), img);
        }
    }

    /// A 24-bit bottom-up BI_RGB file (rows padded to 4 bytes) and the same as a top-down DIB.
    #[test]
    fn reads_24_bit_bmp_and_bare_dib() {
        let (w, h) = (3u32, 2u32);
        let stride = 12; // 9 bytes + 3 padding
        let mut dib = vec![];
        dib.extend_from_slice(&40u32.to_le_bytes());
        dib.extend_from_slice(&(w as i32).to_le_bytes());
        dib.extend_from_slice(&(-(h as i32)).to_le_bytes());
        dib.extend_from_slice(&1u16.to_le_bytes());
        dib.extend_from_slice(&24u16.to_le_bytes());
        dib.extend_from_slice(&[0; 24]);
        for y in 0..h {
            let mut row = vec![];
            for x in 0..w {
                row.extend_from_slice(&[x as u8, y as u8, 9]); // B G R
            }
            row.resize(stride, 0);
            dib.extend_from_slice(&row);
        }
        let img = decode_bmp(&dib, 1 << 20).unwrap();
        assert_eq!((img.width, img.height), (3, 2));
        assert_eq!(&img.pixels[..8], &[9, 0, 0, 255, 9, 0, 1, 255]);
        assert_eq!(&img.pixels[12..16], &[9, 1, 0, 255]);
        // truncated, oversized, garbage
        assert!(decode_bmp(&dib[..dib.len() - 4], 1 << 20).is_err());
        assert!(decode_bmp(&dib, 8).is_err());
        assert!(decode_bmp(b"BM\xff\xff", 1 << 20).is_err());
        assert!(decode_png(b"\x89PNG garbage", 1 << 20).is_err());
    }
}
