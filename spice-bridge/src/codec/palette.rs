//! Palette reduction: a picture of at most 256 colours as palette indices, for LZ_PLT
//! (`SPICE_IMAGE_TYPE_LZ_PLT`, sheet `spice-protocol.md` §4.5 and §9.3).
//!
//! Console text, terminals and most UI pictures use a handful of colours. Sent as palette
//! indices, a pixel costs 1, 4 or 8 bits before LZ instead of 24, and LZ then finds the same
//! repeats in a stream a third to a twenty-fourth as long.
//!
//! # Layout (what spice-common's LZ decoder expects)
//!
//! * at most 2 colours: LZ type PLT1_BE, 8 pixels per byte, the leftmost pixel in the most
//!   significant bit; bit value 1 takes palette entry 1, 0 entry 0 (the palette always has two
//!   entries, because the decoder reads both without checking the count);
//! * at most 16: PLT4_BE, 2 pixels per byte, the left one in the high nibble;
//! * at most 256: PLT8, one index byte per pixel.
//!
//! Each row starts on a byte boundary: the stride is `ceil(width / pixels per byte)` bytes and
//! the unused low bits of a row's last byte are zero. The decoder turns every byte of a row into
//! pixels and crops the row to `width` afterwards.
//!
//! spice-html5 cannot decode LZ_PLT (sheet `vmm-integration.md`); the display channel sends it
//! only to clients that announce DISPLAY_CAP_COMPOSITE (see
//! [`super::ClientImageCaps::palette_lz`]).

use std::collections::HashMap;

use super::lz::LzImageType;
use super::{SourceFormat, SourceImage};

/// Largest palette LZ_PLT can carry (PLT8).
pub const MAX_COLOURS: usize = 256;

/// A picture as palette indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaletteImage {
    /// The colours, 0x00RRGGBB, in order of first appearance (padded to two for PLT1).
    pub entries: Vec<u32>,
    /// PLT1_BE, PLT4_BE or PLT8.
    pub lz_type: LzImageType,
    /// Width in pixels.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Bytes per packed row.
    pub stride: usize,
    /// `stride × height` bytes of packed indices, top row first.
    pub packed: Vec<u8>,
}

/// Reduces `src` to a palette of at most `max_colours` (capped at [`MAX_COLOURS`]) colours, or
/// `None` when it has more, its format carries alpha or 15-bit colour (only
/// [`SourceFormat::Xrgb32`] and [`SourceFormat::Rgb24`] qualify) or it fails
/// [`SourceImage::validate`]. Stops reading at the first colour over the limit, so a
/// photograph costs only the pixels up to there.
pub fn palettize(src: &SourceImage<'_>, max_colours: usize) -> Option<PaletteImage> {
    let row_len = src.validate().ok()?;
    let bpp = match src.format {
        SourceFormat::Xrgb32 => 4,
        SourceFormat::Rgb24 => 3,
        SourceFormat::Argb32 | SourceFormat::Rgb16 => return None,
    };
    let max = max_colours.min(MAX_COLOURS);
    let (w, h) = (src.width as usize, src.height as usize);
    let mut entries: Vec<u32> = Vec::new();
    let mut index: HashMap<u32, u8> = HashMap::new();
    let mut indices = Vec::with_capacity(w * h);
    // Runs of one colour are the common case: remember the last one.
    let mut last: Option<(u32, u8)> = None;
    for y in 0..h {
        for p in src.row(y, row_len).chunks_exact(bpp) {
            let c = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            let i = match last {
                Some((lc, li)) if lc == c => li,
                _ => {
                    let i = match index.get(&c) {
                        Some(&i) => i,
                        None => {
                            if entries.len() == max {
                                return None;
                            }
                            // entries.len() < max ≤ 256, so it fits in u8.
                            let i = entries.len() as u8;
                            entries.push(c);
                            index.insert(c, i);
                            i
                        }
                    };
                    last = Some((c, i));
                    i
                }
            };
            indices.push(i);
        }
    }
    let (lz_type, bits) = match entries.len() {
        0..=2 => (LzImageType::Plt1Be, 1),
        3..=16 => (LzImageType::Plt4Be, 4),
        _ => (LzImageType::Plt8, 8),
    };
    if lz_type == LzImageType::Plt1Be {
        while entries.len() < 2 {
            entries.push(0);
        }
    }
    let per_byte = 8 / bits;
    let stride = w.div_ceil(per_byte);
    let mut packed = vec![0u8; stride * h];
    for (row_idx, row_out) in indices.chunks_exact(w).zip(packed.chunks_exact_mut(stride)) {
        for (x, &i) in row_idx.iter().enumerate() {
            // Leftmost pixel in the most significant bits (the _BE types).
            let shift = 8 - bits * (x % per_byte + 1);
            row_out[x / per_byte] |= i << shift;
        }
    }
    Some(PaletteImage {
        entries,
        lz_type,
        width: src.width,
        height: src.height,
        stride,
        packed,
    })
}
