//! Image encoders for the display channel: plain BITMAP, LZ_RGB, LZ4 and QUIC, plus GLZ_RGB
//! ([`glz`]), which is stateful (it references earlier images the client keeps) and so has
//! its own entry point, [`glz::encode_glz_into`], rather than an [`ImageCodec`].
//!
//! The display channel hands [`encode`] a picture ([`SourceImage`]) and the codec it wants (usually
//! from [`choose_codec`]); it gets back an [`EncodedImage`]: the `SpiceImageDescriptor` type byte
//! and the bytes that follow the 18-byte descriptor on the wire (reference sheet
//! `spice-protocol.md` §4.5).
//!
//! # What the caller puts on the wire
//!
//! A `SpiceImage` inside a draw message (for example the `src_bitmap` of DRAW_COPY) is
//!
//! ```text
//! descriptor (18 bytes, little-endian):
//!     id u64          -- the image id (cache key); any value when CACHE_ME is not set
//!     type u8         -- EncodedImage::image_type (0 BITMAP, 1 QUIC, 101 LZ_RGB, 109 LZ4)
//!     flags u8        -- CACHE_ME (1) only if the caller reserved pixmap-cache space for it;
//!                        HIGH_BITS_SET and CACHE_REPLACE_ME are never needed here
//!     width u32       -- EncodedImage::width  (must equal the width inside the payload)
//!     height u32      -- EncodedImage::height (must equal the height inside the payload)
//! body:
//!     EncodedImage::body, copied verbatim
//! ```
//!
//! [`EncodedImage::descriptor`] builds the descriptor bytes. The body never contains a pointer
//! other than a NULL palette pointer (BITMAP, 32/24/16-bit formats need no palette), so it can be
//! placed anywhere in the message: the caller only has to put the *offset of the descriptor* in
//! the draw message's `SpiceImage *` field (sheet §0).
//!
//! # Example: a damaged rectangle of the primary surface as a DRAW_COPY image
//!
//! ```
//! use spice_bridge::codec::{choose_codec, encode, ClientImageCaps, CompressionPolicy,
//!     ImageCodec, SourceFormat, SourceImage};
//!
//! // A 640x480 xRGB primary surface (B, G, R, X bytes), stride 2560.
//! let surface = vec![0x80u8; 640 * 480 * 4];
//! // The 100x20 rectangle at (x 30, y 40): start at its first pixel, keep the surface stride.
//! let (x, y, w, h, stride) = (30usize, 40usize, 100u32, 20u32, 640 * 4);
//! let src = SourceImage {
//!     data: &surface[y * stride + x * 4..],
//!     width: w,
//!     height: h,
//!     stride,
//!     format: SourceFormat::Xrgb32,
//! };
//! let caps = ClientImageCaps::from_display_caps(&[1 << 5]); // the client announced LZ4
//! let codec = choose_codec(CompressionPolicy::Auto, caps, &src);
//! assert_eq!(codec, ImageCodec::LzRgb);
//! let img = encode(codec, &src).unwrap();
//! // Put this at the offset the DRAW_COPY's src_bitmap field points to (57 with clip NONE).
//! let spice_image = img.to_spice_image(0, 0);
//! assert_eq!(spice_image[8], 101); // SPICE_IMAGE_TYPE_LZ_RGB
//! assert_eq!(&spice_image[10..18], &[100, 0, 0, 0, 20, 0, 0, 0]);
//! ```
//!
//! All four encodings describe the picture top row first (BITMAP with the TOP_DOWN flag, LZ with
//! `top_down = 1`, LZ4 with its top-down byte set, QUIC always), so the client draws them the
//! right way up. A QUIC body is `data_size` (u32 LE) then the QUIC words ([`quic`]).
//!
//! # No unsafe code
//!
//! The codecs parse and produce bytes that come from or go to the network; they contain no
//! `unsafe` (`#![forbid(unsafe_code)]` on this module).

#![forbid(unsafe_code)]

pub mod glz;
pub mod jpeg;
pub mod lz;
pub mod lz4;
pub mod palette;
pub mod quic;
#[cfg(any(test, feature = "test-utils"))]
pub mod testimg;

/// Spice image type codes (`SpiceImageType`, sheet §4.5) produced by this module.
pub mod image_type {
    /// Uncompressed bitmap.
    pub const BITMAP: u8 = 0;
    /// LZ-compressed palette image (`SPICE_IMAGE_TYPE_LZ_PLT`, see [`super::encode_palette_lz`]).
    pub const LZ_PLT: u8 = 100;
    /// LZ-compressed RGB image (`SPICE_IMAGE_TYPE_LZ_RGB`).
    pub const LZ_RGB: u8 = 101;
    /// LZ4-compressed image (`SPICE_IMAGE_TYPE_LZ4`).
    pub const LZ4: u8 = 109;
    /// QUIC-compressed image (`SPICE_IMAGE_TYPE_QUIC`).
    pub const QUIC: u8 = 1;
    /// JPEG image, lossy (`SPICE_IMAGE_TYPE_JPEG`).
    pub const JPEG: u8 = 105;
    /// GLZ-compressed RGB image (`SPICE_IMAGE_TYPE_GLZ_RGB`, see [`super::glz`]).
    pub const GLZ_RGB: u8 = 102;
}

/// Bitmap formats (`SpiceBitmapFmt`, sheet §4.5) used by BITMAP and LZ4 payloads.
pub mod bitmap_format {
    /// 16 bits per pixel, x1r5g5b5, little-endian u16.
    pub const RGB16: u8 = 6;
    /// 24 bits per pixel, bytes B, G, R.
    pub const RGB24: u8 = 7;
    /// 32 bits per pixel, bytes B, G, R, X.
    pub const RGB32: u8 = 8;
    /// 32 bits per pixel, bytes B, G, R, A.
    pub const RGBA: u8 = 9;
}

/// BITMAP flag: rows are stored top row first (without it they are bottom-up).
pub const BITMAP_FLAG_TOP_DOWN: u8 = 4;

/// spice-server sends images whose raw size is below this many bytes uncompressed
/// (`MIN_SIZE_TO_COMPRESS`, sheet §9.2).
pub const MIN_SIZE_TO_COMPRESS: u64 = 54;

/// The largest raw image (stride × height bytes) the spice-common LZ decoder accepts
/// (`SPICE_MAX_IMAGE_SIZE`); we apply it to every codec.
pub const MAX_IMAGE_BYTES: u64 = (1 << 30) - 1;

/// Length of the `SpiceImageDescriptor` that precedes [`EncodedImage::body`].
pub const DESCRIPTOR_LEN: usize = 18;

/// Pixel layout of the caller's picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// 4 bytes per pixel, B, G, R, X (the X byte is ignored): the 32-bit primary surface.
    Xrgb32,
    /// 4 bytes per pixel, B, G, R, A (straight alpha kept as sent).
    Argb32,
    /// 3 bytes per pixel, B, G, R.
    Rgb24,
    /// 2 bytes per pixel, little-endian x1r5g5b5 (bit 15 ignored).
    Rgb16,
}

impl SourceFormat {
    /// Bytes per pixel in the source rows.
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Xrgb32 | Self::Argb32 => 4,
            Self::Rgb24 => 3,
            Self::Rgb16 => 2,
        }
    }

    /// The `SpiceBitmapFmt` that carries this layout unchanged.
    pub const fn bitmap_format(self) -> u8 {
        match self {
            Self::Xrgb32 => bitmap_format::RGB32,
            Self::Argb32 => bitmap_format::RGBA,
            Self::Rgb24 => bitmap_format::RGB24,
            Self::Rgb16 => bitmap_format::RGB16,
        }
    }
}

/// A picture to encode: `height` rows of `width` pixels, row `y` starting at `y * stride` in
/// `data`, top row first.
#[derive(Clone, Copy, Debug)]
pub struct SourceImage<'a> {
    /// Pixel bytes; at least `stride * (height - 1) + width * bytes_per_pixel` long.
    pub data: &'a [u8],
    /// Width in pixels (> 0).
    pub width: u32,
    /// Height in pixels (> 0).
    pub height: u32,
    /// Distance in bytes between the starts of two rows (≥ width × bytes per pixel).
    pub stride: usize,
    /// Pixel layout.
    pub format: SourceFormat,
}

impl<'a> SourceImage<'a> {
    /// A picture of packed 32-bit xRGB rows (`width * 4` bytes each, B, G, R, X), as the
    /// display channel hands the encoders.
    pub fn xrgb32(data: &'a [u8], width: u32, height: u32) -> Self {
        SourceImage {
            data,
            width,
            height,
            stride: width as usize * 4,
            format: SourceFormat::Xrgb32,
        }
    }

    /// Checks the geometry against `data` and the size limit; returns the packed row length
    /// in bytes (width × bytes per pixel).
    pub fn validate(&self) -> Result<usize, CodecError> {
        if self.width == 0 || self.height == 0 {
            return Err(CodecError::Empty {
                width: self.width,
                height: self.height,
            });
        }
        let bpp = self.format.bytes_per_pixel();
        let row = (self.width as usize)
            .checked_mul(bpp)
            .ok_or(CodecError::TooLarge {
                width: self.width,
                height: self.height,
            })?;
        let raw = (row as u64).checked_mul(u64::from(self.height));
        if raw.is_none_or(|raw| raw > MAX_IMAGE_BYTES) {
            return Err(CodecError::TooLarge {
                width: self.width,
                height: self.height,
            });
        }
        if self.stride < row {
            return Err(CodecError::StrideTooSmall {
                stride: self.stride,
                row,
            });
        }
        let needed = self
            .stride
            .checked_mul(self.height as usize - 1)
            .and_then(|v| v.checked_add(row))
            .ok_or(CodecError::TooLarge {
                width: self.width,
                height: self.height,
            })?;
        if self.data.len() < needed {
            return Err(CodecError::SourceTooShort {
                needed,
                have: self.data.len(),
            });
        }
        Ok(row)
    }

    /// Row `y` without the stride padding. Only call after [`SourceImage::validate`].
    pub(crate) fn row(&self, y: usize, row_len: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + row_len]
    }

    /// Number of pixels (width × height).
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Errors from the encoders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A picture with no pixels cannot be encoded (the LZ decoder needs at least one pixel).
    #[error("empty image {width}x{height}")]
    Empty {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
    },
    /// The picture exceeds [`MAX_IMAGE_BYTES`] or the address space.
    #[error("image {width}x{height} is too large to encode")]
    TooLarge {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
    },
    /// The stride is shorter than one row of pixels.
    #[error("stride {stride} is shorter than a row of {row} bytes")]
    StrideTooSmall {
        /// Stride given.
        stride: usize,
        /// Packed row length.
        row: usize,
    },
    /// `data` does not hold all rows.
    #[error("source holds {have} bytes, the geometry needs {needed}")]
    SourceTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        have: usize,
    },
    /// The codec cannot carry this pixel format.
    #[error("codec {codec:?} cannot carry {format:?} pixels")]
    UnsupportedFormat {
        /// Codec asked for.
        codec: ImageCodec,
        /// Source format.
        format: SourceFormat,
    },
    /// The LZ4 library refused to compress (should not happen with a correctly sized buffer).
    #[error("lz4 compression failed: {0}")]
    Lz4(String),
    /// The JPEG encoder refused the picture.
    #[error("jpeg compression failed: {0}")]
    Jpeg(String),
}

/// The image encodings the display channel can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageCodec {
    /// Uncompressed `SPICE_IMAGE_TYPE_BITMAP`; every client decodes it.
    Bitmap,
    /// `SPICE_IMAGE_TYPE_LZ_RGB`; spice-gtk and spice-html5 decode it, no capability needed.
    LzRgb,
    /// `SPICE_IMAGE_TYPE_LZ4`; only for clients announcing DISPLAY_CAP_LZ4_COMPRESSION.
    Lz4,
    /// `SPICE_IMAGE_TYPE_QUIC`; spice-gtk and spice-html5 decode it, no capability needed.
    /// Lossless, best on photographic content (see [`quic`]).
    Quic,
    /// `SPICE_IMAGE_TYPE_JPEG`, **lossy** ([`jpeg`]); spice-gtk and spice-html5 decode it.
    /// Only chosen through [`with_jpeg`], when the server allows lossy pictures.
    Jpeg,
}

/// An encoded picture: what goes into and after the `SpiceImageDescriptor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedImage {
    /// The codec actually used (may differ from the one asked for: see [`encode`]).
    pub codec: ImageCodec,
    /// Descriptor `type` byte (see [`image_type`]).
    pub image_type: u8,
    /// Descriptor `width`.
    pub width: u32,
    /// Descriptor `height`.
    pub height: u32,
    /// The bytes following the descriptor, complete (including `data_size` for LZ/LZ4 and the
    /// bitmap header for BITMAP).
    pub body: Vec<u8>,
}

impl EncodedImage {
    /// The 18-byte `SpiceImageDescriptor` for this image with the given cache `id` and
    /// descriptor `flags`.
    pub fn descriptor(&self, id: u64, flags: u8) -> [u8; DESCRIPTOR_LEN] {
        let mut d = [0u8; DESCRIPTOR_LEN];
        d[0..8].copy_from_slice(&id.to_le_bytes());
        d[8] = self.image_type;
        d[9] = flags;
        d[10..14].copy_from_slice(&self.width.to_le_bytes());
        d[14..18].copy_from_slice(&self.height.to_le_bytes());
        d
    }

    /// Descriptor plus body: the complete `SpiceImage`.
    pub fn to_spice_image(&self, id: u64, flags: u8) -> Vec<u8> {
        let mut v = Vec::with_capacity(DESCRIPTOR_LEN + self.body.len());
        v.extend_from_slice(&self.descriptor(id, flags));
        v.extend_from_slice(&self.body);
        v
    }
}

/// Encodes `src` with `codec`.
///
/// Falls back to [`ImageCodec::Bitmap`] (as spice-server does) when the compressed body would not
/// be smaller than the bitmap body; the returned [`EncodedImage::codec`] tells which was used.
/// LZ4 accepts every [`SourceFormat`]; LZ_RGB accepts every format too (RGB16 is sent as LZ type
/// RGB16, which spice-gtk decodes but spice-html5 does not: do not send 16-bit LZ to html5).
pub fn encode(codec: ImageCodec, src: &SourceImage<'_>) -> Result<EncodedImage, CodecError> {
    let encoded = match codec {
        ImageCodec::Bitmap => return encode_bitmap(src),
        ImageCodec::LzRgb => {
            let mut body = Vec::new();
            body.extend_from_slice(&[0; 4]);
            lz::encode_into(src, &mut body)?;
            finish_sized(ImageCodec::LzRgb, image_type::LZ_RGB, src, body)
        }
        ImageCodec::Lz4 => {
            let mut body = Vec::new();
            body.extend_from_slice(&[0; 4]);
            lz4::encode_into(src, &mut body)?;
            finish_sized(ImageCodec::Lz4, image_type::LZ4, src, body)
        }
        ImageCodec::Quic => {
            src.validate()?;
            if src.width < quic::MIN_DIMENSION
                || src.height < quic::MIN_DIMENSION
                || quic::quic_type_for(src.format).is_none()
            {
                return encode_bitmap(src);
            }
            let mut body = Vec::new();
            body.extend_from_slice(&[0; 4]);
            quic::encode_into(src, &mut body)?;
            finish_sized(ImageCodec::Quic, image_type::QUIC, src, body)
        }
        ImageCodec::Jpeg => {
            src.validate()?;
            if src.width > jpeg::MAX_DIMENSION
                || src.height > jpeg::MAX_DIMENSION
                || src.format == SourceFormat::Rgb16
            {
                return encode_bitmap(src);
            }
            let mut body = Vec::new();
            body.extend_from_slice(&[0; 4]);
            jpeg::encode_into(src, jpeg::QUALITY, &mut body)?;
            finish_sized(ImageCodec::Jpeg, image_type::JPEG, src, body)
        }
    };
    let bitmap_len = bitmap_body_len(src)?;
    if encoded.body.len() >= bitmap_len {
        return encode_bitmap(src);
    }
    Ok(encoded)
}

fn finish_sized(
    codec: ImageCodec,
    ty: u8,
    src: &SourceImage<'_>,
    mut body: Vec<u8>,
) -> EncodedImage {
    // validate() bounds the raw size by 2^30, and neither encoder expands by more than 2x, so
    // the data size fits in u32; saturate rather than wrap if that reasoning were ever wrong.
    let data_size = u32::try_from(body.len() - 4).unwrap_or(u32::MAX);
    body[0..4].copy_from_slice(&data_size.to_le_bytes());
    EncodedImage {
        codec,
        image_type: ty,
        width: src.width,
        height: src.height,
        body,
    }
}

/// Length of the bitmap header that precedes the pixels in a BITMAP body.
const BITMAP_HEADER_LEN: usize = 1 + 1 + 4 + 4 + 4 + 4;

fn bitmap_body_len(src: &SourceImage<'_>) -> Result<usize, CodecError> {
    let row = src.validate()?;
    Ok(BITMAP_HEADER_LEN + row * src.height as usize)
}

/// Encodes `src` as an uncompressed BITMAP body (sheet §4.5, §9.2): format, flags TOP_DOWN,
/// x = width, y = height, stride = packed row length, palette pointer 0, then the packed rows.
pub fn encode_bitmap(src: &SourceImage<'_>) -> Result<EncodedImage, CodecError> {
    let row = src.validate()?;
    let mut body = Vec::with_capacity(BITMAP_HEADER_LEN + row * src.height as usize);
    body.push(src.format.bitmap_format());
    body.push(BITMAP_FLAG_TOP_DOWN);
    body.extend_from_slice(&src.width.to_le_bytes());
    body.extend_from_slice(&src.height.to_le_bytes());
    // row <= MAX_IMAGE_BYTES < 2^32 (checked by validate()).
    body.extend_from_slice(&(row as u32).to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    for y in 0..src.height as usize {
        body.extend_from_slice(src.row(y, row));
    }
    Ok(EncodedImage {
        codec: ImageCodec::Bitmap,
        image_type: image_type::BITMAP,
        width: src.width,
        height: src.height,
        body,
    })
}

/// The server's image-compression setting (spice-server `image-compression`, sheet §9.8,
/// reduced to the codecs we implement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CompressionPolicy {
    /// Never compress (spice-server does this on Unix sockets or with compression off).
    Off,
    /// spice-server's `auto_lz`: QUIC for photographic ("highly gradual", see
    /// [`is_highly_gradual`]) pictures QUIC can carry, LZ otherwise. The default.
    #[default]
    Auto,
    /// Always LZ.
    Lz,
    /// LZ4 when the client supports it, LZ otherwise (spice-server's `lz4` setting).
    Lz4,
    /// QUIC whenever the picture allows it (at least 3×3, not RGB16), LZ otherwise
    /// (spice-server's `quic` setting).
    Quic,
}

/// What the client announced that matters for image encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientImageCaps {
    /// DISPLAY_CAP_LZ4_COMPRESSION was announced.
    pub lz4: bool,
    /// The client decodes LZ_PLT. No capability names it (spice-server sends it to everyone),
    /// but spice-html5 cannot decode it; clients built on spice-common's canvas (spice-gtk)
    /// decode every LZ type and announce DISPLAY_CAP_COMPOSITE, which spice-html5 does not
    /// (sheet `spice-protocol.md` §1.3, `vmm-integration.md`). So: COMPOSITE was announced.
    pub palette_lz: bool,
}

/// Bit number of DISPLAY_CAP_COMPOSITE in the display channel caps (sheet §1.3).
pub const DISPLAY_CAP_COMPOSITE: u32 = 2;
/// Bit number of DISPLAY_CAP_LZ4_COMPRESSION in the display channel caps (sheet §1.3).
pub const DISPLAY_CAP_LZ4_COMPRESSION: u32 = 5;

impl ClientImageCaps {
    /// From the display channel capability words the client sent in its SpiceLinkMess
    /// (bit n = word n / 32, bit n % 32).
    pub fn from_display_caps(words: &[u32]) -> Self {
        let has = |bit: u32| {
            words
                .get((bit / 32) as usize)
                .is_some_and(|w| w & (1 << (bit % 32)) != 0)
        };
        Self {
            lz4: has(DISPLAY_CAP_LZ4_COMPRESSION),
            palette_lz: has(DISPLAY_CAP_COMPOSITE),
        }
    }
}

/// An LZ_PLT image: its palette and the LZ stream of its packed indices (sheet §4.5: the
/// body is flags, data_size, a palette pointer or cache id, then `lz`; the caller places the
/// palette in the message and fills in the pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaletteLz {
    /// Palette entries, 0x00RRGGBB (2, up to 16 or up to 256 of them).
    pub entries: Vec<u32>,
    /// The LZ stream (header and body), type PLT1_BE, PLT4_BE or PLT8.
    pub lz: Vec<u8>,
}

/// LZ_PLT for `src` when the policy compresses with LZ (`Auto`, `Lz`, `Lz4`), the client
/// decodes it (`caps.palette_lz`), the picture is worth compressing (at least
/// [`MIN_SIZE_TO_COMPRESS`] raw bytes) and it has at most 256 colours ([`palette::palettize`]).
/// `None` otherwise: the caller goes on with [`choose_codec`].
///
/// Chosen before the other codecs because for few-colour pictures (text, UI) it is the
/// smallest lossless form Spice has: one to eight pixels per literal byte instead of three
/// bytes per pixel, with the same matching.
pub fn encode_palette_lz(
    policy: CompressionPolicy,
    caps: ClientImageCaps,
    src: &SourceImage<'_>,
) -> Option<PaletteLz> {
    let lz_policy = matches!(
        policy,
        CompressionPolicy::Auto | CompressionPolicy::Lz | CompressionPolicy::Lz4
    );
    let raw = src.pixel_count() * src.format.bytes_per_pixel() as u64;
    if !lz_policy || !caps.palette_lz || raw < MIN_SIZE_TO_COMPRESS {
        return None;
    }
    let p = palette::palettize(src, palette::MAX_COLOURS)?;
    let mut lz = Vec::new();
    lz::encode_palette_into(&p, &mut lz);
    Some(PaletteLz {
        entries: p.entries,
        lz,
    })
}

/// Chooses a codec for one image, following spice-server's rules in simplified form (sheet
/// §9.2, §9.8):
///
/// * images smaller than [`MIN_SIZE_TO_COMPRESS`] raw bytes go as BITMAP;
/// * `Off` → BITMAP; `Lz` → LZ; `Lz4` → LZ4 if the client announced it, else LZ;
/// * `Quic` → QUIC if the picture is QUIC-able (≥ 3×3 pixels, not RGB16), else LZ;
/// * `Auto` → QUIC if the picture is QUIC-able and [`is_highly_gradual`] (photographic), else
///   LZ (spice-server's `auto_lz`; in `auto_glz` the display channel sends GLZ where this
///   returns LZ, when the client has a GLZ window: see [`glz`]).
///
/// spice-html5 decodes BITMAP only in the 32BIT/RGBA formats and LZ only as RGB32/RGBA, and has
/// no LZ4: feed it [`SourceFormat::Xrgb32`]/[`SourceFormat::Argb32`] pictures (the primary
/// surface always is) and it never announces LZ4, so every choice made here suits it.
pub fn choose_codec(
    policy: CompressionPolicy,
    caps: ClientImageCaps,
    src: &SourceImage<'_>,
) -> ImageCodec {
    let raw = src.pixel_count() * src.format.bytes_per_pixel() as u64;
    if raw < MIN_SIZE_TO_COMPRESS {
        return ImageCodec::Bitmap;
    }
    match policy {
        CompressionPolicy::Off => ImageCodec::Bitmap,
        CompressionPolicy::Lz => ImageCodec::LzRgb,
        CompressionPolicy::Lz4 if caps.lz4 => ImageCodec::Lz4,
        CompressionPolicy::Lz4 => ImageCodec::LzRgb,
        CompressionPolicy::Quic if quic_able(src) => ImageCodec::Quic,
        CompressionPolicy::Auto if quic_able(src) && is_highly_gradual(src) => ImageCodec::Quic,
        CompressionPolicy::Quic | CompressionPolicy::Auto => ImageCodec::LzRgb,
    }
}

/// With JPEG allowed (QEMU's `jpeg-wan-compression=always`), spice-server sends JPEG where
/// it would send QUIC: photo-like pictures in the auto modes, every QUIC-able one in the quic
/// mode (sheet §9.8). Every other choice stays lossless.
pub fn with_jpeg(codec: ImageCodec, jpeg_allowed: bool) -> ImageCodec {
    match codec {
        ImageCodec::Quic if jpeg_allowed => ImageCodec::Jpeg,
        c => c,
    }
}

/// QUIC can carry `src` the way spice-server sends it: at least
/// [`quic::MIN_DIMENSION`] pixels wide and tall, and a format other than RGB16.
pub fn quic_able(src: &SourceImage<'_>) -> bool {
    src.width >= quic::MIN_DIMENSION
        && src.height >= quic::MIN_DIMENSION
        && quic::quic_type_for(src.format).is_some()
}

/// Rows sampled by [`is_highly_gradual`].
const GRADUAL_SAMPLE_ROWS: usize = 32;
/// Pixel pairs sampled per row by [`is_highly_gradual`].
const GRADUAL_SAMPLE_PAIRS: usize = 64;
/// Largest per-channel step between neighbours that still counts as "gradual".
const GRADUAL_STEP: u8 = 24;

/// Our version of spice-server's "graduality" test (sheet §9.8, written from that description,
/// not from spice-server's code): photographs change colour in small steps almost everywhere,
/// while text and UI pictures are flat areas cut by sharp edges.
///
/// Up to 32 rows spread over the picture are sampled, and in each up to 64 pairs of horizontal
/// neighbours spread over the row. A pair is *equal* (same colour), *gradual* (different, but no
/// channel moves by more than 24) or *sharp*. The picture is highly gradual when gradual pairs
/// are at least half of all sampled pairs and more than three times the sharp ones. Pictures
/// narrower than 2 pixels or that fail [`SourceImage::validate`] are not.
pub fn is_highly_gradual(src: &SourceImage<'_>) -> bool {
    let Ok(row_len) = src.validate() else {
        return false;
    };
    let bpp = src.format.bytes_per_pixel();
    gradual(src.width as usize, src.height as usize, |x, y| {
        let p = &src.row(y, row_len)[x * bpp..];
        match src.format {
            SourceFormat::Rgb16 => {
                let v = u16::from_le_bytes([p[0], p[1]]);
                [
                    ((v >> 10) & 31) as u8 * 8,
                    ((v >> 5) & 31) as u8 * 8,
                    (v & 31) as u8 * 8,
                ]
            }
            _ => [p[2], p[1], p[0]],
        }
    })
}

/// [`is_highly_gradual`] for `width` × `height` pixels as 0x00RRGGBB values, rows top first
/// (a model image), without converting them to bytes first. False when the count is wrong.
pub fn is_highly_gradual_rgb(pixels: &[u32], width: u32, height: u32) -> bool {
    let (w, h) = (width as usize, height as usize);
    if w.checked_mul(h) != Some(pixels.len()) {
        return false;
    }
    gradual(w, h, |x, y| {
        let p = pixels[y * w + x];
        [(p >> 16) as u8, (p >> 8) as u8, p as u8]
    })
}

/// The sampling of [`is_highly_gradual`] over a `w` × `h` picture whose pixel (x, y) is
/// `rgb(x, y)`.
fn gradual(w: usize, h: usize, rgb: impl Fn(usize, usize) -> [u8; 3]) -> bool {
    if w < 2 || h == 0 {
        return false;
    }
    let rows = h.min(GRADUAL_SAMPLE_ROWS);
    let pairs = (w - 1).min(GRADUAL_SAMPLE_PAIRS);
    let (mut gradual, mut sharp, mut total) = (0usize, 0usize, 0usize);
    for r in 0..rows {
        let y = r * h / rows;
        for k in 0..pairs {
            let x = k * (w - 1) / pairs;
            let (a, b) = (rgb(x, y), rgb(x + 1, y));
            total += 1;
            if a == b {
                continue;
            }
            if a.iter()
                .zip(&b)
                .all(|(p, q)| p.abs_diff(*q) <= GRADUAL_STEP)
            {
                gradual += 1;
            } else {
                sharp += 1;
            }
        }
    }
    gradual * 2 >= total && gradual > sharp * 3
}

#[cfg(test)]
mod client_check;
#[cfg(test)]
mod tests;
