//! Spice LZ4 image payload (`SPICE_IMAGE_TYPE_LZ4`, sheet `spice-protocol.md` §9.5).
//!
//! Layout of the data (after the `data_size` u32 of the image body), as spice-server's
//! `lz4_encode` writes it and spice-common's `canvas_get_lz4` reads it:
//!
//! ```text
//! top_down u8      -- 1: first row is the top row
//! format u8        -- SpiceBitmapFmt: 16BIT 6, 24BIT 7, 32BIT 8, RGBA 9
//! repeated, at least once, until the data ends:
//!     size u32 BIG-endian
//!     raw LZ4 block of `size` bytes
//! ```
//!
//! The client decodes the blocks one after the other into one buffer with an LZ4 streaming
//! decoder (`LZ4_decompress_safe_continue`), so a block may refer to the bytes of earlier blocks
//! (up to 64 KiB back). A block that decodes to nothing is an error. The decoded rows are tightly
//! packed (width × bytes per pixel).
//!
//! This encoder packs the rows, cuts them into blocks of whole rows of about [`BLOCK_TARGET`]
//! bytes and compresses each block with the 64 KiB before it as dictionary (what the streaming
//! decoder sees as prefix), using `lz4_flex`.

use lz4_flex::block::{
    compress_into_with_dict, decompress_into_with_dict, get_maximum_output_size,
};

use super::{bitmap_format, CodecError, SourceImage};

/// Target uncompressed size of one LZ4 block (whole rows; at least one row).
pub const BLOCK_TARGET: usize = 1 << 20;
/// LZ4 window: how far back a block may refer.
const WINDOW: usize = 64 * 1024;

/// Appends the LZ4 payload for `src` (top_down byte, format byte, blocks) to `out`.
pub fn encode_into(src: &SourceImage<'_>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let row_len = src.validate()?;
    let height = src.height as usize;
    let packed: std::borrow::Cow<'_, [u8]> = if src.stride == row_len {
        std::borrow::Cow::Borrowed(&src.data[..row_len * height])
    } else {
        let mut v = Vec::with_capacity(row_len * height);
        for y in 0..height {
            v.extend_from_slice(src.row(y, row_len));
        }
        std::borrow::Cow::Owned(v)
    };
    out.push(1);
    out.push(src.format.bitmap_format());
    let rows_per_block = (BLOCK_TARGET / row_len).max(1);
    let block_len = rows_per_block * row_len;
    let mut start = 0usize;
    while start < packed.len() {
        let end = (start + block_len).min(packed.len());
        let block = &packed[start..end];
        let dict = &packed[start.saturating_sub(WINDOW)..start];
        let size_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let body_at = out.len();
        out.resize(body_at + get_maximum_output_size(block.len()), 0);
        let written = compress_into_with_dict(block, &mut out[body_at..], dict)
            .map_err(|e| CodecError::Lz4(e.to_string()))?;
        out.truncate(body_at + written);
        // written <= get_maximum_output_size(BLOCK_TARGET-ish) < 2^32.
        out[size_at..body_at].copy_from_slice(&(written as u32).to_be_bytes());
        start = end;
    }
    Ok(())
}

/// The LZ4 payload for `src`.
pub fn encode(src: &SourceImage<'_>) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(src, &mut out)?;
    Ok(out)
}

/// Errors found while decoding an LZ4 payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Lz4Error {
    /// Fewer than two header bytes.
    #[error("missing LZ4 header")]
    MissingHeader,
    /// Format byte the client does not accept with LZ4.
    #[error("unsupported bitmap format {0} with LZ4")]
    UnsupportedFormat(u8),
    /// Zero or oversized geometry, or over the caller's limit.
    #[error("bad LZ4 image size {width}x{height}")]
    BadSize {
        /// Width from the descriptor.
        width: u32,
        /// Height from the descriptor.
        height: u32,
    },
    /// A block header or block is cut short.
    #[error("LZ4 block truncated at byte {offset}")]
    Truncated {
        /// Offset of the block header.
        offset: usize,
    },
    /// The LZ4 block is invalid or decodes past the image.
    #[error("bad LZ4 block at byte {offset}: {reason}")]
    BadBlock {
        /// Offset of the block header.
        offset: usize,
        /// Decoder message.
        reason: String,
    },
    /// The blocks did not fill the image.
    #[error("LZ4 data decoded to {got} of {expected} bytes")]
    Short {
        /// Bytes decoded.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
}

/// A decoded LZ4 payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedLz4 {
    /// The top-down byte was non-zero.
    pub top_down: bool,
    /// `SpiceBitmapFmt` byte.
    pub format: u8,
    /// Packed rows exactly as decoded (stream order; bottom row first when `top_down` is false).
    pub data: Vec<u8>,
}

/// Decodes an LZ4 payload of a `width` × `height` image the way `canvas_get_lz4` does (blocks
/// decoded into one buffer, each with all earlier output as prefix), but strictly: the blocks
/// must fill the image exactly. `max_bytes` bounds the output before allocation. Never panics.
pub fn decode(
    data: &[u8],
    width: u32,
    height: u32,
    max_bytes: usize,
) -> Result<DecodedLz4, Lz4Error> {
    let [top_down, format] = match data {
        [t, f, ..] => [*t, *f],
        _ => return Err(Lz4Error::MissingHeader),
    };
    let bpp = match format {
        bitmap_format::RGB16 => 2u64,
        bitmap_format::RGB24 => 3,
        bitmap_format::RGB32 | bitmap_format::RGBA => 4,
        other => return Err(Lz4Error::UnsupportedFormat(other)),
    };
    let total = u64::from(width) * u64::from(height) * bpp;
    if width == 0 || height == 0 || total > max_bytes as u64 || total > super::MAX_IMAGE_BYTES {
        return Err(Lz4Error::BadSize { width, height });
    }
    let total = total as usize;
    let mut outbuf = vec![0u8; total];
    let mut pos = 2usize;
    let mut filled = 0usize;
    loop {
        let offset = pos;
        let size_bytes = data
            .get(pos..pos + 4)
            .ok_or(Lz4Error::Truncated { offset })?;
        let size = u32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]])
            as usize;
        pos += 4;
        let block = data
            .get(pos..)
            .and_then(|rest| rest.get(..size))
            .ok_or(Lz4Error::Truncated { offset })?;
        let (prev, rest) = outbuf.split_at_mut(filled);
        let dict = &prev[prev.len().saturating_sub(WINDOW)..];
        let n = decompress_into_with_dict(block, rest, dict).map_err(|e| Lz4Error::BadBlock {
            offset,
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Err(Lz4Error::BadBlock {
                offset,
                reason: "empty block".into(),
            });
        }
        filled += n;
        pos += size;
        if pos >= data.len() {
            break;
        }
    }
    if filled != total {
        return Err(Lz4Error::Short {
            got: filled,
            expected: total,
        });
    }
    Ok(DecodedLz4 {
        top_down: top_down != 0,
        format,
        data: outbuf,
    })
}
