//! Spice LZ image codec (`SPICE_IMAGE_TYPE_LZ_RGB`, sheet `spice-protocol.md` §9.3).
//!
//! # The format (as the spice-common decoder in spice-gtk reads it)
//!
//! A stream starts with seven **big-endian** u32: magic `0x20205A4C` (the bytes `"  ZL"`),
//! version `0x00010001`, LZ image type ([`LzImageType`]), width, height, stride (bytes per source
//! row; for RGB types it must equal width × bytes per pixel) and top_down (non-zero: the first
//! row is the top one).
//!
//! The body is a sequence of operations on *pixels* (not bytes), repeated until exactly
//! width × height pixels have been produced; no byte may follow:
//!
//! * control byte `c < 32`: `c + 1` literal pixels follow. RGB24/RGB32/RGBA colour: 3 bytes
//!   B, G, R each; RGB16: 2 bytes, high byte first; alpha (second RGBA stream, XXXA, A8): 1 byte.
//! * control byte `c ≥ 32`: a back-reference. `L = c >> 5` (1..=7); `v = L - 1`, and when
//!   `L == 7` bytes are added to `v` until one differs from 255. Then a byte `lo` gives the
//!   distance `d = (c & 31) << 8 | lo`; the pair `(c & 31) == 31, lo == 255` instead announces a
//!   far distance `d = 8191 + (next two bytes, big-endian)`. The decoder copies
//!   `v + bias` pixels, one after the other (overlap allowed: distance 0 repeats the last pixel),
//!   from `d + 1` pixels back. `bias` is 1 for RGB24/RGB32 colour, 2 for RGB16 and 3 for
//!   alpha/A8 (and palette) streams.
//! * RGBA = the RGB32 colour stream for all pixels, immediately followed by an alpha stream for
//!   all pixels.
//!
//! The reference decoder treats a reference before the first pixel, an operation that runs past
//! the last pixel, a short stream and trailing bytes as fatal (several are `spice_assert`s, which
//! abort the client), so the encoder never produces them and [`decode`] rejects all of them.
//!
//! # The encoder
//!
//! A greedy LZ77 over pixel values with a single-probe hash table of 3-pixel prefixes (no hash
//! chains), a direct run check (distance 0) and literal skipping on incompressible data. The
//! hash table is never cleared: a stale entry is only used after its pixels compare equal, so
//! reusing an [`LzEncoder`] across images is both safe and cheap.

use std::cell::RefCell;

use super::palette::PaletteImage;
use super::{CodecError, SourceFormat, SourceImage};

/// LZ stream magic (`"  ZL"` as a big-endian u32).
pub const LZ_MAGIC: u32 = 0x2020_5A4C;
/// LZ stream version 1.1.
pub const LZ_VERSION: u32 = 0x0001_0001;
/// Length of the stream header (seven u32).
pub const LZ_HEADER_LEN: usize = 28;
/// Largest raw image the reference decoder accepts (stride × height bytes).
pub const LZ_MAX_IMAGE_BYTES: u64 = (1 << 30) - 1;

/// A literal run holds at most this many pixels.
const MAX_LITERALS: usize = 32;
/// Encoded distances below this are "near" (13 bits); `8191` itself is the far escape.
const NEAR_LIMIT: usize = 8191;
/// Largest back distance (in pixels) a far reference can express: 8191 + 65535 + 1.
const MAX_BACK: usize = NEAR_LIMIT + 0xFFFF + 1;
/// Bits of the hash table index.
const HASH_LOG: u32 = 15;
/// Shortest match the encoder looks for (hash prefix length).
const MIN_MATCH: usize = 3;
/// Largest number of positions skipped between two probes on incompressible data.
const MAX_SKIP: usize = 15;

/// LZ image types (`LzImageType` in spice-common `lz_common.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LzImageType {
    /// 1 bit per pixel palette, little-endian bit order.
    Plt1Le,
    /// 1 bit per pixel palette, big-endian bit order.
    Plt1Be,
    /// 4 bits per pixel palette, little-endian nibble order.
    Plt4Le,
    /// 4 bits per pixel palette, big-endian nibble order.
    Plt4Be,
    /// 8 bits per pixel palette.
    Plt8,
    /// x1r5g5b5.
    Rgb16,
    /// B, G, R (decoded to 32 bits by spice-gtk).
    Rgb24,
    /// B, G, R, X.
    Rgb32,
    /// B, G, R, A: colour stream then alpha stream.
    Rgba,
    /// Alpha only, into the A byte of 32-bit pixels (used by JPEG_ALPHA).
    Xxxa,
    /// 8-bit alpha mask.
    A8,
    /// A value the format does not define.
    Unknown(u32),
}

impl LzImageType {
    /// Wire value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Plt1Le => 1,
            Self::Plt1Be => 2,
            Self::Plt4Le => 3,
            Self::Plt4Be => 4,
            Self::Plt8 => 5,
            Self::Rgb16 => 6,
            Self::Rgb24 => 7,
            Self::Rgb32 => 8,
            Self::Rgba => 9,
            Self::Xxxa => 10,
            Self::A8 => 11,
            Self::Unknown(v) => v,
        }
    }

    /// From the wire value.
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Plt1Le,
            2 => Self::Plt1Be,
            3 => Self::Plt4Le,
            4 => Self::Plt4Be,
            5 => Self::Plt8,
            6 => Self::Rgb16,
            7 => Self::Rgb24,
            8 => Self::Rgb32,
            9 => Self::Rgba,
            10 => Self::Xxxa,
            11 => Self::A8,
            v => Self::Unknown(v),
        }
    }

    /// Pixels per byte of the palette types (`PLT_PIXELS_PER_BYTE` in lz_common.h): 8 for
    /// PLT1, 2 for PLT4, 1 for PLT8; `None` for the others.
    pub const fn plt_pixels_per_byte(self) -> Option<u32> {
        match self {
            Self::Plt1Le | Self::Plt1Be => Some(8),
            Self::Plt4Le | Self::Plt4Be => Some(2),
            Self::Plt8 => Some(1),
            _ => None,
        }
    }

    /// Bytes per pixel of the source rows for the non-palette types
    /// (`RGB_BYTES_PER_PIXEL` in lz_common.h); `None` for palette and unknown types.
    pub const fn rgb_bytes_per_pixel(self) -> Option<usize> {
        match self {
            Self::Rgb16 => Some(2),
            Self::Rgb24 => Some(3),
            Self::Rgb32 | Self::Rgba | Self::Xxxa => Some(4),
            Self::A8 => Some(1),
            _ => None,
        }
    }
}

/// The LZ stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LzHeader {
    /// Image type.
    pub image_type: LzImageType,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Source row length in bytes.
    pub stride: u32,
    /// First row is the top row.
    pub top_down: bool,
}

impl LzHeader {
    /// Appends the 28 header bytes (big-endian) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        for word in [
            LZ_MAGIC,
            LZ_VERSION,
            self.image_type.to_u32(),
            self.width,
            self.height,
            self.stride,
            u32::from(self.top_down),
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }
}

/// Errors found while decoding an LZ stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LzError {
    /// The stream ended early.
    #[error("LZ stream truncated at byte {offset}")]
    Truncated {
        /// Offset where a byte was missing.
        offset: usize,
    },
    /// Wrong magic number.
    #[error("bad LZ magic {0:#010x}")]
    BadMagic(u32),
    /// Wrong version.
    #[error("bad LZ version {0:#010x}")]
    BadVersion(u32),
    /// A type this decoder does not handle (palette types need a palette; unknown values).
    #[error("unsupported LZ image type {0}")]
    UnsupportedType(u32),
    /// Zero width or height.
    #[error("empty LZ image {width}x{height}")]
    Empty {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// Stride is not width × bytes per pixel (the reference decoder rejects it).
    #[error("LZ stride {stride} != width {width} x {bpp}")]
    BadStride {
        /// Stride in the header.
        stride: u32,
        /// Width in the header.
        width: u32,
        /// Bytes per pixel of the type.
        bpp: usize,
    },
    /// The image is larger than the caller's limit or the format's limit.
    #[error("LZ image {width}x{height} exceeds the size limit")]
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// A back-reference points before the first pixel.
    #[error("LZ reference {back} pixels back at pixel {pos}")]
    ReferenceBeforeStart {
        /// Pixel position of the operation.
        pos: usize,
        /// Distance back.
        back: usize,
    },
    /// An operation would produce pixels past the end of the image.
    #[error("LZ operation of {len} pixels at pixel {pos} overruns {total} pixels")]
    Overrun {
        /// Pixel position of the operation.
        pos: usize,
        /// Pixels the operation produces.
        len: usize,
        /// Pixels in the image.
        total: usize,
    },
    /// A palette stream's stride is not the packed row length `ceil(width / pixels per byte)`
    /// (the one length both our encoder and spice-common's accept).
    #[error("LZ palette stride {stride} does not fit width {width} at {per_byte} pixels per byte")]
    BadPaletteStride {
        /// Stride in the header.
        stride: u32,
        /// Width in the header.
        width: u32,
        /// Pixels per byte of the type.
        per_byte: u32,
    },
    /// A palette index with no palette entry (or a PLT1 palette with fewer than two entries,
    /// which spice-common would read past).
    #[error("LZ palette index {index} but the palette has {entries} entries")]
    PaletteIndex {
        /// The index found.
        index: usize,
        /// Entries in the palette.
        entries: usize,
    },
    /// Bytes remain after the last pixel.
    #[error("{extra} trailing bytes after the LZ stream")]
    TrailingData {
        /// Number of unread bytes.
        extra: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/// One pixel of a stream (colour, 16-bit colour or alpha) as the encoder sees it.
trait Symbol: Copy + Eq {
    /// Match length bias of this stream kind (decoded length = coded value + BIAS).
    const BIAS: usize;
    /// Hash of three consecutive symbols (full 32 bits; the top bits index the table).
    fn hash3(a: Self, b: Self, c: Self) -> u32;
    /// Appends the literal bytes of this symbol.
    fn put(self, out: &mut Vec<u8>);
}

/// 24-bit colour 0x00RRGGBB, written B, G, R.
impl Symbol for u32 {
    const BIAS: usize = 1;
    #[inline(always)]
    fn hash3(a: u32, b: u32, c: u32) -> u32 {
        (a ^ b.rotate_left(11) ^ c.rotate_left(21)).wrapping_mul(0x9E37_79B1)
    }
    #[inline(always)]
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self as u8, (self >> 8) as u8, (self >> 16) as u8]);
    }
}

/// 15-bit colour, written high byte first.
impl Symbol for u16 {
    const BIAS: usize = 2;
    #[inline(always)]
    fn hash3(a: u16, b: u16, c: u16) -> u32 {
        (u32::from(a) ^ (u32::from(b) << 15) ^ u32::from(c).rotate_left(23))
            .wrapping_mul(0x9E37_79B1)
    }
    #[inline(always)]
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

/// Alpha byte.
impl Symbol for u8 {
    const BIAS: usize = 3;
    #[inline(always)]
    fn hash3(a: u8, b: u8, c: u8) -> u32 {
        (u32::from(a) | (u32::from(b) << 8) | (u32::from(c) << 16)).wrapping_mul(0x9E37_79B1)
    }
    #[inline(always)]
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

/// Reusable LZ encoder: keeps its hash table and scratch buffers between images.
pub struct LzEncoder {
    table: Vec<u32>,
    colour: Vec<u32>,
    colour16: Vec<u16>,
    alpha: Vec<u8>,
}

impl Default for LzEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LzEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LzEncoder").finish_non_exhaustive()
    }
}

impl LzEncoder {
    /// A new encoder (allocates a 128 KiB hash table).
    pub fn new() -> Self {
        Self {
            table: vec![0; 1 << HASH_LOG],
            colour: Vec::new(),
            colour16: Vec::new(),
            alpha: Vec::new(),
        }
    }

    /// The complete LZ stream (header and body) for `src`.
    pub fn encode(&mut self, src: &SourceImage<'_>) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(src, &mut out)?;
        Ok(out)
    }

    /// Appends the complete LZ stream (header and body) for `src` to `out`.
    ///
    /// The LZ type follows the source: Xrgb32 → RGB32, Argb32 → RGBA, Rgb24 → RGB24,
    /// Rgb16 → RGB16; top_down is 1; stride is the packed row length as the decoder requires.
    pub fn encode_into(
        &mut self,
        src: &SourceImage<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let row_len = src.validate()?;
        let n = src.width as usize * src.height as usize;
        let image_type = match src.format {
            SourceFormat::Xrgb32 => LzImageType::Rgb32,
            SourceFormat::Argb32 => LzImageType::Rgba,
            SourceFormat::Rgb24 => LzImageType::Rgb24,
            SourceFormat::Rgb16 => LzImageType::Rgb16,
        };
        // validate() bounds row_len * height by 2^30, so the stride fits in u32.
        let header = LzHeader {
            image_type,
            width: src.width,
            height: src.height,
            stride: row_len as u32,
            top_down: true,
        };
        // Worst case: all literals, one control byte per 32 pixels.
        let lit_bytes = match src.format {
            SourceFormat::Xrgb32 | SourceFormat::Rgb24 => 3 * n,
            SourceFormat::Argb32 => 4 * n,
            SourceFormat::Rgb16 => 2 * n,
        };
        out.reserve(LZ_HEADER_LEN + lit_bytes + 2 * n.div_ceil(MAX_LITERALS));
        header.write(out);
        let height = src.height as usize;
        match src.format {
            SourceFormat::Xrgb32 | SourceFormat::Argb32 => {
                let with_alpha = src.format == SourceFormat::Argb32;
                self.colour.clear();
                self.colour.reserve(n);
                self.alpha.clear();
                for y in 0..height {
                    let row = src.row(y, row_len);
                    self.colour.extend(
                        row.chunks_exact(4)
                            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
                    );
                    if with_alpha {
                        self.alpha.extend(row.chunks_exact(4).map(|p| p[3]));
                    }
                }
                compress(&self.colour, &mut self.table, out);
                if with_alpha {
                    compress(&self.alpha, &mut self.table, out);
                }
            }
            SourceFormat::Rgb24 => {
                self.colour.clear();
                self.colour.reserve(n);
                for y in 0..height {
                    let row = src.row(y, row_len);
                    self.colour.extend(
                        row.chunks_exact(3)
                            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
                    );
                }
                compress(&self.colour, &mut self.table, out);
            }
            SourceFormat::Rgb16 => {
                self.colour16.clear();
                self.colour16.reserve(n);
                for y in 0..height {
                    let row = src.row(y, row_len);
                    self.colour16.extend(
                        row.chunks_exact(2)
                            .map(|p| u16::from_le_bytes([p[0], p[1]]) & 0x7FFF),
                    );
                }
                compress(&self.colour16, &mut self.table, out);
            }
        }
        Ok(())
    }

    /// Appends the complete LZ stream (header and body) for the palette picture `p`: the
    /// packed index bytes compressed as one-byte symbols (matches of at least three bytes, the
    /// palette types' length bias), type `p.lz_type`, stride `p.stride`, top_down 1. The
    /// palette itself travels beside the stream (the LZ_PLT image body), not in it.
    pub fn encode_palette_into(&mut self, p: &PaletteImage, out: &mut Vec<u8>) {
        let header = LzHeader {
            image_type: p.lz_type,
            width: p.width,
            height: p.height,
            // The packed size is at most the 32-bit source's, which validate() bounded by 2^30.
            stride: p.stride as u32,
            top_down: true,
        };
        out.reserve(LZ_HEADER_LEN + p.packed.len() + 2 * p.packed.len().div_ceil(MAX_LITERALS));
        header.write(out);
        compress(&p.packed, &mut self.table, out);
    }
}

/// Appends the LZ stream for the palette picture `p` to `out`, using a per-thread
/// [`LzEncoder`].
pub fn encode_palette_into(p: &PaletteImage, out: &mut Vec<u8>) {
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut enc) => enc.encode_palette_into(p, out),
        Err(_) => LzEncoder::new().encode_palette_into(p, out),
    })
}

thread_local! {
    static ENCODER: RefCell<LzEncoder> = RefCell::new(LzEncoder::new());
}

/// Appends the LZ stream for `src` to `out`, using a per-thread [`LzEncoder`].
pub fn encode_into(src: &SourceImage<'_>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut enc) => enc.encode_into(src, out),
        // Only reachable through re-entrancy, which this module never does; stay correct anyway.
        Err(_) => LzEncoder::new().encode_into(src, out),
    })
}

/// The LZ stream for `src` (header and body).
pub fn encode(src: &SourceImage<'_>) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(src, &mut out)?;
    Ok(out)
}

/// Compresses one stream of symbols. `syms` must not be empty (callers validate the size).
fn compress<S: Symbol>(syms: &[S], table: &mut [u32], out: &mut Vec<u8>) {
    let n = syms.len();
    let shift = 32 - table.len().trailing_zeros();
    let mut lit_start = 0usize;
    let mut i = 0usize;
    let mut misses = 0usize;
    while i + MIN_MATCH <= n {
        let (a, b, c) = (syms[i], syms[i + 1], syms[i + 2]);
        let cand = if i > 0 && syms[i - 1] == a && a == b && b == c {
            // A run: copy the previous pixel (distance 0).
            Some(i - 1)
        } else {
            let h = (S::hash3(a, b, c) >> shift) as usize;
            let prev = table[h] as usize;
            // n < 2^30, so i fits in u32.
            table[h] = i as u32;
            // `prev` may be stale (from an earlier image or an overwritten slot): it is only
            // used when it is behind `i`, within reach and its pixels really match.
            if prev < i
                && i - prev <= MAX_BACK
                && syms[prev] == a
                && syms[prev + 1] == b
                && syms[prev + 2] == c
            {
                Some(prev)
            } else {
                None
            }
        };
        let Some(r) = cand else {
            // Incompressible data: probe less often the longer nothing matched (the skipped
            // pixels stay literals), but never jump far enough to miss much of a flat area.
            misses += 1;
            i += 1 + (misses >> 6).min(MAX_SKIP);
            continue;
        };
        misses = 0;
        let len = MIN_MATCH
            + syms[r + MIN_MATCH..]
                .iter()
                .zip(&syms[i + MIN_MATCH..])
                .take_while(|(x, y)| x == y)
                .count();
        put_literals(&syms[lit_start..i], out);
        put_match::<S>(len, i - r, out);
        i += len;
        lit_start = i;
        // Seed the table with the two positions before the new cursor, so the next match can
        // start right after this one.
        for p in i.saturating_sub(2)..i {
            if p + MIN_MATCH <= n {
                let h = (S::hash3(syms[p], syms[p + 1], syms[p + 2]) >> shift) as usize;
                table[h] = p as u32;
            }
        }
    }
    put_literals(&syms[lit_start..], out);
}

/// Literal runs of up to 32 symbols, each preceded by its control byte (count − 1).
fn put_literals<S: Symbol>(syms: &[S], out: &mut Vec<u8>) {
    for chunk in syms.chunks(MAX_LITERALS) {
        // chunk.len() is 1..=32.
        out.push((chunk.len() - 1) as u8);
        for &s in chunk {
            s.put(out);
        }
    }
}

/// A back-reference copying `len` (≥ S::BIAS) symbols from `back` (1..=MAX_BACK) positions back.
fn put_match<S: Symbol>(len: usize, back: usize, out: &mut Vec<u8>) {
    debug_assert!(len >= S::BIAS && (1..=MAX_BACK).contains(&back));
    let v = len - S::BIAS;
    let d = back - 1;
    let (dist_hi, far) = if d < NEAR_LIMIT {
        ((d >> 8) as u8, None)
    } else {
        (31u8, Some(d - NEAR_LIMIT))
    };
    if v < 6 {
        out.push((((v + 1) as u8) << 5) | dist_hi);
    } else {
        out.push((7 << 5) | dist_hi);
        let rest = v - 6;
        out.resize(out.len() + rest / 255, 255);
        out.push((rest % 255) as u8);
    }
    match far {
        None => out.push((d & 0xFF) as u8),
        Some(f) => out.extend_from_slice(&[255, (f >> 8) as u8, (f & 0xFF) as u8]),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// A decoded LZ image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    /// The stream header.
    pub header: LzHeader,
    /// width × height pixels, **top row first** whatever `header.top_down` says, as
    /// 0xAARRGGBB: A = 0 for RGB16/24/32 (as spice-gtk writes them), the alpha for RGBA, XXXA
    /// and A8 (whose colour is 0). RGB16 is widened to 8 bits per channel the way spice-gtk
    /// does it (`c << 3 | c >> 2`).
    pub pixels: Vec<u32>,
}

/// Byte reader that cannot overrun.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, LzError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(LzError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], LzError> {
        let end = self
            .pos
            .checked_add(N)
            .ok_or(LzError::Truncated { offset: self.pos })?;
        let s = self.data.get(self.pos..end).ok_or(LzError::Truncated {
            offset: self.data.len(),
        })?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        self.pos = end;
        Ok(a)
    }

    fn u32_be(&mut self) -> Result<u32, LzError> {
        Ok(u32::from_be_bytes(self.take::<4>()?))
    }
}

/// Parses and checks the 28-byte header the way spice-common's `lz_decode_begin` does, plus a
/// non-zero size and the caller's pixel limit.
pub fn decode_header(data: &[u8], max_pixels: usize) -> Result<LzHeader, LzError> {
    let mut r = Reader { data, pos: 0 };
    read_header(&mut r, max_pixels, false)
}

/// Reads the header; palette types pass only when `palette` is set.
fn read_header(r: &mut Reader<'_>, max_pixels: usize, palette: bool) -> Result<LzHeader, LzError> {
    let magic = r.u32_be()?;
    if magic != LZ_MAGIC {
        return Err(LzError::BadMagic(magic));
    }
    let version = r.u32_be()?;
    if version != LZ_VERSION {
        return Err(LzError::BadVersion(version));
    }
    let raw_type = r.u32_be()?;
    let image_type = LzImageType::from_u32(raw_type);
    let width = r.u32_be()?;
    let height = r.u32_be()?;
    let stride = r.u32_be()?;
    let top_down = r.u32_be()? != 0;
    if width == 0 || height == 0 {
        return Err(LzError::Empty { width, height });
    }
    match (image_type.plt_pixels_per_byte(), palette) {
        (Some(per_byte), true) => {
            if stride != width.div_ceil(per_byte) {
                return Err(LzError::BadPaletteStride {
                    stride,
                    width,
                    per_byte,
                });
            }
        }
        (Some(_), false) => return Err(LzError::UnsupportedType(raw_type)),
        (None, _) => {
            let bpp = image_type
                .rgb_bytes_per_pixel()
                .ok_or(LzError::UnsupportedType(raw_type))?;
            if u64::from(stride) != u64::from(width) * bpp as u64 {
                return Err(LzError::BadStride { stride, width, bpp });
            }
        }
    }
    let too_large = LzError::TooLarge { width, height };
    if u64::from(stride) * u64::from(height) > LZ_MAX_IMAGE_BYTES {
        return Err(too_large);
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels as u64 {
        return Err(too_large);
    }
    Ok(LzHeader {
        image_type,
        width,
        height,
        stride,
        top_down,
    })
}

/// Decodes one complete LZ stream (header, body, nothing after it).
///
/// `max_pixels` bounds width × height before anything is allocated. Never panics, whatever the
/// input.
pub fn decode(data: &[u8], max_pixels: usize) -> Result<DecodedImage, LzError> {
    decode_inner(data, max_pixels, None)
}

/// Decodes one complete LZ stream of any type, palette types (PLT1/PLT4/PLT8, both bit orders)
/// included: their indices are looked up in `palette` (0x00RRGGBB entries, as the LZ_PLT image
/// body carries them). An index without an entry is an error, and so is a PLT1 palette of fewer
/// than two entries. Like [`decode`], never panics.
pub fn decode_with_palette(
    data: &[u8],
    palette: &[u32],
    max_pixels: usize,
) -> Result<DecodedImage, LzError> {
    decode_inner(data, max_pixels, Some(palette))
}

fn decode_inner(
    data: &[u8],
    max_pixels: usize,
    palette: Option<&[u32]>,
) -> Result<DecodedImage, LzError> {
    let mut r = Reader { data, pos: 0 };
    let header = read_header(&mut r, max_pixels, palette.is_some())?;
    let n = header.width as usize * header.height as usize;
    let mut pixels = vec![0u32; n];
    match header.image_type {
        LzImageType::Rgb24 | LzImageType::Rgb32 | LzImageType::Rgba => {
            decode_stream(&mut r, &mut pixels, 1, |r| {
                let [b, g, rr] = r.take::<3>()?;
                Ok(u32::from_le_bytes([b, g, rr, 0]))
            })?;
            if header.image_type == LzImageType::Rgba {
                let mut alpha = vec![0u8; n];
                decode_stream(&mut r, &mut alpha, 3, Reader::u8)?;
                for (p, a) in pixels.iter_mut().zip(alpha) {
                    *p |= u32::from(a) << 24;
                }
            }
        }
        LzImageType::Xxxa | LzImageType::A8 => {
            let mut alpha = vec![0u8; n];
            decode_stream(&mut r, &mut alpha, 3, Reader::u8)?;
            for (p, a) in pixels.iter_mut().zip(alpha) {
                *p = u32::from(a) << 24;
            }
        }
        LzImageType::Rgb16 => {
            let mut c16 = vec![0u16; n];
            decode_stream(&mut r, &mut c16, 2, |r| {
                Ok(u16::from_be_bytes(r.take::<2>()?))
            })?;
            for (p, c) in pixels.iter_mut().zip(c16) {
                *p = rgb16_to_rgb32(c);
            }
        }
        ty @ (LzImageType::Plt1Le
        | LzImageType::Plt1Be
        | LzImageType::Plt4Le
        | LzImageType::Plt4Be
        | LzImageType::Plt8) => {
            // read_header() only lets palette types through with a palette.
            let palette = palette.ok_or(LzError::UnsupportedType(ty.to_u32()))?;
            let stride = header.stride as usize;
            // stride × height ≤ LZ_MAX_IMAGE_BYTES (read_header).
            let mut packed = vec![0u8; stride * header.height as usize];
            decode_stream(&mut r, &mut packed, 3, Reader::u8)?;
            expand_palette(
                ty,
                &packed,
                stride,
                header.width as usize,
                palette,
                &mut pixels,
            )?;
        }
        // read_header() only lets the types above through.
        other => return Err(LzError::UnsupportedType(other.to_u32())),
    }
    let extra = data.len() - r.pos;
    if extra != 0 {
        return Err(LzError::TrailingData { extra });
    }
    if !header.top_down {
        let w = header.width as usize;
        let mut flipped = Vec::with_capacity(n);
        for row in pixels.chunks_exact(w).rev() {
            flipped.extend_from_slice(row);
        }
        pixels = flipped;
    }
    Ok(DecodedImage { header, pixels })
}

/// Turns packed palette rows into pixels (`out` holds width × rows pixels), the way
/// spice-common's PLT-to-RGB32 decoders read each byte: `_BE` types take the leftmost pixel
/// from the most significant bits, `_LE` types from the least significant ones.
fn expand_palette(
    ty: LzImageType,
    packed: &[u8],
    stride: usize,
    width: usize,
    palette: &[u32],
    out: &mut [u32],
) -> Result<(), LzError> {
    let (bits, msb_first) = match ty {
        LzImageType::Plt1Be => (1, true),
        LzImageType::Plt1Le => (1, false),
        LzImageType::Plt4Be => (4, true),
        LzImageType::Plt4Le => (4, false),
        _ => (8, true),
    };
    if bits == 1 && palette.len() < 2 {
        return Err(LzError::PaletteIndex {
            index: 1,
            entries: palette.len(),
        });
    }
    let per_byte = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    for (row_in, row_out) in packed.chunks_exact(stride).zip(out.chunks_exact_mut(width)) {
        for (x, px) in row_out.iter_mut().enumerate() {
            let k = x % per_byte;
            let shift = if msb_first {
                8 - bits * (k + 1)
            } else {
                bits * k
            };
            let index = usize::from((row_in[x / per_byte] >> shift) & mask);
            *px = *palette.get(index).ok_or(LzError::PaletteIndex {
                index,
                entries: palette.len(),
            })? & 0x00FF_FFFF;
        }
    }
    Ok(())
}

/// x1r5g5b5 to 0x00RRGGBB with the top bits replicated into the low ones.
pub fn rgb16_to_rgb32(c: u16) -> u32 {
    let c = u32::from(c);
    let expand = |v: u32| (v << 3) | (v >> 2);
    (expand((c >> 10) & 31) << 16) | (expand((c >> 5) & 31) << 8) | expand(c & 31)
}

/// Decodes one stream into `out` (all of it), reading literals with `lit`.
fn decode_stream<'a, T: Copy>(
    r: &mut Reader<'a>,
    out: &mut [T],
    bias: usize,
    mut lit: impl FnMut(&mut Reader<'a>) -> Result<T, LzError>,
) -> Result<(), LzError> {
    let total = out.len();
    let mut op = 0usize;
    while op < total {
        let c = r.u8()?;
        if c < 32 {
            let len = usize::from(c) + 1;
            if len > total - op {
                return Err(LzError::Overrun {
                    pos: op,
                    len,
                    total,
                });
            }
            for slot in &mut out[op..op + len] {
                *slot = lit(r)?;
            }
            op += len;
        } else {
            let mut v = usize::from(c >> 5) - 1;
            if v == 6 {
                loop {
                    let b = r.u8()?;
                    v += usize::from(b);
                    // Each extension byte is consumed input, so v stays below 255 × input
                    // length; still stop as soon as the length is hopeless.
                    if v > total {
                        return Err(LzError::Overrun {
                            pos: op,
                            len: v,
                            total,
                        });
                    }
                    if b != 255 {
                        break;
                    }
                }
            }
            let hi = usize::from(c & 31);
            let lo = r.u8()?;
            let d = if hi == 31 && lo == 255 {
                let [h, l] = r.take::<2>()?;
                NEAR_LIMIT + usize::from(u16::from_be_bytes([h, l]))
            } else {
                (hi << 8) | usize::from(lo)
            };
            let len = v + bias;
            let back = d + 1;
            if back > op {
                return Err(LzError::ReferenceBeforeStart { pos: op, back });
            }
            if len > total - op {
                return Err(LzError::Overrun {
                    pos: op,
                    len,
                    total,
                });
            }
            let from = op - back;
            if back >= len {
                out.copy_within(from..from + len, op);
            } else {
                // Overlapping copy: pixel by pixel, front to back, like the reference.
                for k in 0..len {
                    out[op + k] = out[from + k];
                }
            }
            op += len;
        }
    }
    Ok(())
}
