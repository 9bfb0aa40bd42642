//! JPEG images (`SPICE_IMAGE_TYPE_JPEG` 105, sheet `spice-protocol.md` §4.5, §9.7): lossy, for
//! photographic pictures, and only when the server is told to use it (QEMU's
//! `jpeg-wan-compression=always`; see [`crate::server::JpegWan`]).
//!
//! The body is `data_size` (u32 LE) then one baseline JFIF picture of the RGB pixels.
//! spice-gtk decodes it with libjpeg, spice-html5 with the browser's `<img>`. spice-server
//! uses quality 85 ([`QUALITY`]); we do the same, with 4:2:0 chroma subsampling (the
//! `jpeg-encoder` crate's choice below quality 90, and libjpeg's default) and optimised
//! Huffman tables (a few percent smaller for the same pixels, decoded by any JPEG decoder).
//!
//! The encoder is the pure-Rust `jpeg-encoder` crate: libjpeg would be C on guest-controlled
//! pixels, and the crate is small, maintained and needs no system library.

use jpeg_encoder::{ColorType, Encoder};

use super::{CodecError, SourceFormat, SourceImage};

/// spice-server's JPEG quality (sheet §9.7).
pub const QUALITY: u8 = 85;

/// Largest width or height a JPEG frame header can carry.
pub const MAX_DIMENSION: u32 = 65_535;

/// Appends a baseline JPEG of `src` at `quality` (1..=100) to `out`. The X (or alpha) byte is
/// dropped: JPEG carries colour only. RGB16 sources are refused.
pub fn encode_into(
    src: &SourceImage<'_>,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let row_len = src.validate()?;
    let (ty, bpp) = match src.format {
        SourceFormat::Xrgb32 | SourceFormat::Argb32 => (ColorType::Bgra, 4),
        SourceFormat::Rgb24 => (ColorType::Bgr, 3),
        SourceFormat::Rgb16 => {
            return Err(CodecError::UnsupportedFormat {
                codec: super::ImageCodec::Jpeg,
                format: src.format,
            })
        }
    };
    let (Ok(w), Ok(h)) = (u16::try_from(src.width), u16::try_from(src.height)) else {
        return Err(CodecError::TooLarge {
            width: src.width,
            height: src.height,
        });
    };
    // The encoder wants packed rows.
    let packed;
    let data = if src.stride == row_len {
        &src.data[..row_len * src.height as usize]
    } else {
        packed = (0..src.height as usize)
            .flat_map(|y| src.row(y, row_len).iter().copied())
            .collect::<Vec<u8>>();
        &packed[..]
    };
    debug_assert_eq!(data.len(), usize::from(w) * usize::from(h) * bpp);
    let mut enc = Encoder::new(out, quality.clamp(1, 100));
    enc.set_optimized_huffman_tables(true);
    enc.encode(data, w, h, ty)
        .map_err(|e| CodecError::Jpeg(e.to_string()))
}
