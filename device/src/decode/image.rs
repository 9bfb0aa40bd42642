//! Images: QXLImage descriptors, raw bitmaps in every format with their palettes, chunked or
//! DIRECT data, and SURFACE images (reference §7 "Images, bitmaps, chunks, palettes").

use super::chunks::{self, GuestChunks};
use super::{check_surface_id, read_struct, DecodeError, Limits, MAX_IMAGE_SIDE};
use crate::abi::cmd::{
    bitmap_flags, bitmap_fmt, image_flags, image_type, QxlBitmap, QxlImage, QxlImageDescriptor,
    QxlPalette, IMAGE_UNION_OFFSET,
};
use crate::mem::{GuestMemory, MemError, QxlPhys, RowSpan};

/// A raw bitmap format (`SPICE_BITMAP_FMT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitmapFormat {
    /// 1 bpp palette, leftmost pixel in the least significant bit.
    OneBitLe,
    /// 1 bpp palette, leftmost pixel in the most significant bit.
    OneBitBe,
    /// 4 bpp palette, leftmost pixel in the low nibble.
    FourBitLe,
    /// 4 bpp palette, leftmost pixel in the high nibble.
    FourBitBe,
    /// 8 bpp palette.
    EightBit,
    /// 16 bpp x555 (little-endian u16).
    Rgb16,
    /// 24 bpp, bytes B, G, R.
    Rgb24,
    /// 32 bpp xRGB (little-endian u32; the top byte is ignored).
    Xrgb32,
    /// 32 bpp ARGB, premultiplied alpha.
    Rgba32,
    /// 8 bpp alpha only.
    A8,
}

impl BitmapFormat {
    /// The format for a `SPICE_BITMAP_FMT_*` value.
    pub fn from_raw(v: u8) -> Option<Self> {
        Some(match v {
            bitmap_fmt::ONE_BIT_LE => Self::OneBitLe,
            bitmap_fmt::ONE_BIT_BE => Self::OneBitBe,
            bitmap_fmt::FOUR_BIT_LE => Self::FourBitLe,
            bitmap_fmt::FOUR_BIT_BE => Self::FourBitBe,
            bitmap_fmt::EIGHT_BIT => Self::EightBit,
            bitmap_fmt::SIXTEEN_BIT => Self::Rgb16,
            bitmap_fmt::TWENTYFOUR_BIT => Self::Rgb24,
            bitmap_fmt::THIRTYTWO_BIT => Self::Xrgb32,
            bitmap_fmt::RGBA => Self::Rgba32,
            bitmap_fmt::EIGHT_BIT_A => Self::A8,
            _ => return None,
        })
    }
    /// The `SPICE_BITMAP_FMT_*` value.
    pub fn raw(self) -> u8 {
        match self {
            Self::OneBitLe => bitmap_fmt::ONE_BIT_LE,
            Self::OneBitBe => bitmap_fmt::ONE_BIT_BE,
            Self::FourBitLe => bitmap_fmt::FOUR_BIT_LE,
            Self::FourBitBe => bitmap_fmt::FOUR_BIT_BE,
            Self::EightBit => bitmap_fmt::EIGHT_BIT,
            Self::Rgb16 => bitmap_fmt::SIXTEEN_BIT,
            Self::Rgb24 => bitmap_fmt::TWENTYFOUR_BIT,
            Self::Xrgb32 => bitmap_fmt::THIRTYTWO_BIT,
            Self::Rgba32 => bitmap_fmt::RGBA,
            Self::A8 => bitmap_fmt::EIGHT_BIT_A,
        }
    }
    /// Bits per pixel.
    pub fn bpp(self) -> u32 {
        match self {
            Self::OneBitLe | Self::OneBitBe => 1,
            Self::FourBitLe | Self::FourBitBe => 4,
            Self::EightBit | Self::A8 => 8,
            Self::Rgb16 => 16,
            Self::Rgb24 => 24,
            Self::Xrgb32 | Self::Rgba32 => 32,
        }
    }
    /// True for the palettized formats.
    pub fn needs_palette(self) -> bool {
        matches!(
            self,
            Self::OneBitLe | Self::OneBitBe | Self::FourBitLe | Self::FourBitBe | Self::EightBit
        )
    }
    /// True if pixels carry alpha (RGBA, A8).
    pub fn has_alpha(self) -> bool {
        matches!(self, Self::Rgba32 | Self::A8)
    }
}

/// A palette, copied once (at most 256 entries, xRGB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Palette {
    /// Guest cache id.
    pub unique: u64,
    /// Entries, 0x00RRGGBB.
    pub entries: Vec<u32>,
}

impl Palette {
    /// Largest palette accepted.
    pub const MAX_ENTRIES: u16 = 256;
    /// Entry `i`, or black when the index is beyond the palette (defined, never a panic).
    pub fn get(&self, i: usize) -> u32 {
        self.entries.get(i).copied().unwrap_or(0)
    }
}

/// Where a bitmap's bytes are: still in guest memory (validated ranges) or copied.
///
/// Both hold `height * stride` bytes in the guest's memory order (bottom-up unless
/// [`Bitmap::top_down`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PixelData {
    /// Validated guest ranges, read on use.
    Guest(GuestChunks),
    /// A host copy.
    Owned(Vec<u8>),
}

/// A validated raw bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    /// Pixel format.
    pub format: BitmapFormat,
    /// Width in pixels (1..=32768).
    pub width: u32,
    /// Height in pixels (1..=32768).
    pub height: u32,
    /// Bytes per row (≥ ceil(width·bpp/8)).
    pub stride: u32,
    /// First row in memory is the top row.
    pub top_down: bool,
    /// QXL_BITMAP_UNSTABLE: the guest may change the data (copy before keeping it).
    pub unstable: bool,
    /// Palette (palettized formats; `None` for masks and direct-colour formats).
    pub palette: Option<Palette>,
    /// The bytes.
    pub data: PixelData,
}

impl Bitmap {
    /// Bytes of pixel data per row (without padding).
    pub fn row_bytes(&self) -> usize {
        (self.width as u64 * self.format.bpp() as u64).div_ceil(8) as usize
    }

    /// Offset of top-down row `y` in the data.
    fn row_offset(&self, y: u32) -> u64 {
        let r = if self.top_down {
            y
        } else {
            self.height.saturating_sub(1).saturating_sub(y)
        };
        r as u64 * self.stride as u64
    }

    /// Copies bytes `byte_off .. byte_off + dst.len()` of top-down row `y` into `dst`.
    pub fn read_row_bytes(
        &self,
        mem: &dyn GuestMemory,
        y: u32,
        byte_off: usize,
        dst: &mut [u8],
    ) -> Result<(), MemError> {
        let off = self.row_offset(y) + byte_off as u64;
        match &self.data {
            PixelData::Guest(c) => c.read_at(mem, off, dst),
            PixelData::Owned(v) => {
                let s = usize::try_from(off).unwrap_or(usize::MAX);
                match s.checked_add(dst.len()).and_then(|e| v.get(s..e)) {
                    Some(src) => {
                        dst.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(MemError::OutOfSlot {
                        slot: 0,
                        addr: off,
                        len: dst.len() as u64,
                        slot_size: v.len() as u64,
                    }),
                }
            }
        }
    }

    /// Copies bytes `byte_off .. byte_off + rows.row_len` of the `rows.rows` top-down rows
    /// from row `y` on into `dst`, rows `rows.dst_stride` apart (`rows.stride` is taken from
    /// the bitmap). One bounded 2-D copy for a top-down bitmap in one chunk; row by row
    /// otherwise.
    pub fn read_rect_bytes(
        &self,
        mem: &dyn GuestMemory,
        y: u32,
        byte_off: usize,
        rows: RowSpan,
        dst: &mut [u8],
    ) -> Result<(), MemError> {
        let rows = RowSpan {
            stride: self.stride as usize,
            ..rows
        };
        if let (true, PixelData::Guest(c)) = (self.top_down, &self.data) {
            let off = self.row_offset(y) + byte_off as u64;
            return c.read_rows(mem, off, rows, dst);
        }
        if !rows.fits_dst(dst.len()) {
            return Err(MemError::OutOfSlot {
                slot: 0,
                addr: 0,
                len: dst.len() as u64,
                slot_size: 0,
            });
        }
        for r in 0..rows.rows {
            let row = y.saturating_add(u32::try_from(r).unwrap_or(u32::MAX));
            let d = &mut dst[r * rows.dst_stride..][..rows.row_len];
            self.read_row_bytes(mem, row, byte_off, d)?;
        }
        Ok(())
    }

    /// Converts pixels `x0 .. x0 + out.len()` of top-down row `y` to 0xAARRGGBB (alpha 0xFF
    /// for formats without alpha; A8 gives `a << 24`). `scratch` is reused between calls.
    pub fn row_argb(
        &self,
        mem: &dyn GuestMemory,
        y: u32,
        x0: u32,
        out: &mut [u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), MemError> {
        let n = out.len();
        if n == 0 {
            return Ok(());
        }
        let bpp = self.format.bpp() as u64;
        let first_bit = x0 as u64 * bpp;
        let byte0 = (first_bit / 8) as usize;
        let byte1 = ((x0 as u64 + n as u64) * bpp).div_ceil(8) as usize;
        scratch.clear();
        scratch.resize(byte1 - byte0, 0);
        self.read_row_bytes(mem, y, byte0, scratch)?;
        let pal = |i: usize| -> u32 {
            0xFF00_0000
                | self
                    .palette
                    .as_ref()
                    .map_or(if i != 0 { 0xFF_FFFF } else { 0 }, |p| p.get(i) & 0xFF_FFFF)
        };
        let b = &scratch[..];
        match self.format {
            BitmapFormat::OneBitLe | BitmapFormat::OneBitBe => {
                let be = self.format == BitmapFormat::OneBitBe;
                for (i, o) in out.iter_mut().enumerate() {
                    let bit = (x0 as usize + i) - byte0 * 8;
                    let byte = b[bit / 8];
                    let v = if be {
                        (byte >> (7 - bit % 8)) & 1
                    } else {
                        (byte >> (bit % 8)) & 1
                    };
                    *o = pal(v as usize);
                }
            }
            BitmapFormat::FourBitLe | BitmapFormat::FourBitBe => {
                let be = self.format == BitmapFormat::FourBitBe;
                for (i, o) in out.iter_mut().enumerate() {
                    let nib = (x0 as usize + i) - byte0 * 2;
                    let byte = b[nib / 2];
                    let first = nib % 2 == 0;
                    let v = if first == be { byte >> 4 } else { byte & 0xF };
                    *o = pal(v as usize);
                }
            }
            BitmapFormat::EightBit => {
                for (o, &v) in out.iter_mut().zip(b) {
                    *o = pal(v as usize);
                }
            }
            BitmapFormat::A8 => {
                for (o, &v) in out.iter_mut().zip(b) {
                    *o = (v as u32) << 24;
                }
            }
            BitmapFormat::Rgb16 => {
                for (o, p) in out.iter_mut().zip(b.chunks_exact(2)) {
                    *o = rgb555_to_argb(u16::from_le_bytes([p[0], p[1]]));
                }
            }
            BitmapFormat::Rgb24 => {
                for (o, p) in out.iter_mut().zip(b.chunks_exact(3)) {
                    *o = 0xFF00_0000 | (p[2] as u32) << 16 | (p[1] as u32) << 8 | p[0] as u32;
                }
            }
            BitmapFormat::Xrgb32 => {
                for (o, p) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *o = 0xFF00_0000 | u32::from_le_bytes([p[0], p[1], p[2], 0]);
                }
            }
            BitmapFormat::Rgba32 => {
                for (o, p) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *o = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                }
            }
        }
        Ok(())
    }

    /// Bit `x` of top-down row `y` of a 1-bit bitmap (masks); other formats: pixel ≠ 0.
    pub fn mask_row(
        &self,
        mem: &dyn GuestMemory,
        y: u32,
        out: &mut Vec<bool>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), MemError> {
        out.clear();
        scratch.clear();
        scratch.resize(self.row_bytes(), 0);
        self.read_row_bytes(mem, y, 0, scratch)?;
        let be = self.format == BitmapFormat::OneBitBe;
        for x in 0..self.width as usize {
            let byte = scratch.get(x / 8).copied().unwrap_or(0);
            let v = if be {
                (byte >> (7 - x % 8)) & 1
            } else {
                (byte >> (x % 8)) & 1
            };
            out.push(v != 0);
        }
        Ok(())
    }

    /// A copy of this bitmap whose bytes live on the host ([`PixelData::Owned`]); what the Spice
    /// bridge keeps once the guest may reuse the memory.
    pub fn load(&self, mem: &dyn GuestMemory) -> Result<Bitmap, MemError> {
        let data = match &self.data {
            PixelData::Guest(c) => PixelData::Owned(c.to_vec(mem)?),
            PixelData::Owned(v) => PixelData::Owned(v.clone()),
        };
        Ok(Bitmap {
            data,
            ..self.clone()
        })
    }

    /// The whole bitmap as top-down, tightly packed 0xAARRGGBB pixels.
    pub fn to_argb(&self, mem: &dyn GuestMemory) -> Result<Vec<u32>, MemError> {
        let w = self.width as usize;
        let mut out = vec![0u32; w * self.height as usize];
        let mut scratch = Vec::new();
        for (y, row) in out.chunks_exact_mut(w.max(1)).enumerate() {
            self.row_argb(mem, y as u32, 0, row, &mut scratch)?;
        }
        Ok(out)
    }
}

/// Expands x555 to 0xFFRRGGBB (each 5-bit channel v → v<<3 | v>>2).
pub fn rgb555_to_argb(p: u16) -> u32 {
    let e = |v: u16| -> u32 {
        let v = (v & 31) as u32;
        (v << 3) | (v >> 2)
    };
    0xFF00_0000 | e(p >> 10) << 16 | e(p >> 5) << 8 | e(p)
}

/// What an image holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// A raw bitmap.
    Bitmap(Bitmap),
    /// The pixels of another surface (id checked against n_surfaces).
    Surface {
        /// Source surface.
        surface_id: u32,
    },
}

/// A validated QXLImage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Descriptor id (the guest's cache key).
    pub id: u64,
    /// Descriptor flags (`QXL_IMAGE_CACHE` = 1, `QXL_IMAGE_HIGH_BITS_SET` = 2).
    pub flags: u8,
    /// Descriptor width.
    pub width: u32,
    /// Descriptor height.
    pub height: u32,
    /// Contents.
    pub kind: ImageKind,
}

impl Image {
    /// The guest asked for this image to be cached by [`Image::id`].
    pub fn cache(&self) -> bool {
        self.flags & image_flags::CACHE != 0
    }
    /// The bitmap, if this is one.
    pub fn bitmap(&self) -> Option<&Bitmap> {
        match &self.kind {
            ImageKind::Bitmap(b) => Some(b),
            ImageKind::Surface { .. } => None,
        }
    }
    /// Width and height of the pixels: the bitmap's for bitmaps, the descriptor's otherwise.
    pub fn size(&self) -> (u32, u32) {
        match &self.kind {
            ImageKind::Bitmap(b) => (b.width, b.height),
            ImageKind::Surface { .. } => (self.width, self.height),
        }
    }
}

/// How an image will be used (masks may be palette-less 1-bit bitmaps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Source,
    Mask,
}

fn union_addr(addr: QxlPhys) -> Result<QxlPhys, DecodeError> {
    addr.checked_add(IMAGE_UNION_OFFSET)
        .ok_or(DecodeError::AddressOverflow {
            addr: addr.0,
            len: IMAGE_UNION_OFFSET,
        })
}

/// Decodes the QXLImage at `addr`.
pub(crate) fn decode_image(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
    role: Role,
) -> Result<Image, DecodeError> {
    if addr.is_null() {
        return Err(DecodeError::NullAddress("image"));
    }
    // Descriptor and bitmap header in one copy when the whole QXLImage is readable (a
    // SURFACE image may be shorter and end at its slot's end: then the descriptor alone).
    let (d, whole) = match read_struct::<QxlImage>(mem, addr) {
        Ok(i) => (i.descriptor, Some(i)),
        Err(_) => (read_struct::<QxlImageDescriptor>(mem, addr)?, None),
    };
    let u = union_addr(addr)?;
    let kind = match d.ty {
        image_type::BITMAP => {
            let b = match whole {
                Some(i) => zerocopy::transmute!(i.u),
                None => read_struct(mem, u)?,
            };
            ImageKind::Bitmap(decode_bitmap(mem, &b, limits, role)?)
        }
        image_type::SURFACE => {
            if role == Role::Mask {
                return Err(DecodeError::BadMask {
                    ty: d.ty,
                    format: 0,
                });
            }
            let id = mem.read_u32(u)?;
            ImageKind::Surface {
                surface_id: check_surface_id(id, limits)?,
            }
        }
        t @ (image_type::QUIC
        | image_type::LZ_PLT
        | image_type::LZ_RGB
        | image_type::GLZ_RGB
        | image_type::JPEG
        | 106..=108) => return Err(DecodeError::CompressedImage(t)),
        t => return Err(DecodeError::UnknownImageType(t)),
    };
    Ok(Image {
        id: d.id.get(),
        flags: d.flags,
        width: d.width.get(),
        height: d.height.get(),
        kind,
    })
}

fn decode_bitmap(
    mem: &dyn GuestMemory,
    b: &QxlBitmap,
    limits: &Limits,
    role: Role,
) -> Result<Bitmap, DecodeError> {
    let format = BitmapFormat::from_raw(b.format).ok_or(DecodeError::BadBitmapFormat(b.format))?;
    let (width, height, stride) = (b.x.get(), b.y.get(), b.stride.get());
    if role == Role::Mask && !matches!(format, BitmapFormat::OneBitLe | BitmapFormat::OneBitBe) {
        return Err(DecodeError::BadMask {
            ty: image_type::BITMAP,
            format: b.format,
        });
    }
    let bad = DecodeError::BadBitmapSize {
        width,
        height,
        stride,
        format: b.format,
    };
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(bad);
    }
    // All in u64: width, height ≤ 2^15, bpp ≤ 32, stride < 2^32 → no overflow possible.
    let min_stride = (width as u64 * format.bpp() as u64).div_ceil(8);
    if (stride as u64) < min_stride {
        return Err(bad);
    }
    let total = height as u64 * stride as u64;
    if total > 0x7FFF_FFFF || total > limits.max_data_bytes {
        return Err(bad);
    }
    let palette = if format.needs_palette() && role == Role::Source {
        let p = QxlPhys(b.palette.get());
        if p.is_null() {
            return Err(DecodeError::MissingPalette { format: b.format });
        }
        Some(decode_palette(mem, p)?)
    } else {
        None
    };
    let flags = b.flags;
    let data = QxlPhys(b.data.get());
    if data.is_null() {
        return Err(DecodeError::NullAddress("bitmap data"));
    }
    let chunks = if flags & bitmap_flags::DIRECT != 0 {
        GuestChunks::single(mem, data, total)?
    } else {
        let c = chunks::walk_at(mem, data, total, limits)?;
        if c.total() != total {
            return Err(DecodeError::ChunkTotalMismatch {
                what: "bitmap",
                expected: total,
                got: c.total(),
            });
        }
        c
    };
    Ok(Bitmap {
        format,
        width,
        height,
        stride,
        top_down: flags & bitmap_flags::TOP_DOWN != 0,
        unstable: flags & bitmap_flags::UNSTABLE != 0,
        palette,
        data: PixelData::Guest(chunks),
    })
}

fn decode_palette(mem: &dyn GuestMemory, addr: QxlPhys) -> Result<Palette, DecodeError> {
    let h: QxlPalette = read_struct(mem, addr)?;
    let n = h.num_ents.get();
    if n > Palette::MAX_ENTRIES {
        return Err(DecodeError::PaletteTooLarge {
            num_ents: n,
            max: Palette::MAX_ENTRIES,
        });
    }
    let ents = addr.checked_add(10).ok_or(DecodeError::AddressOverflow {
        addr: addr.0,
        len: 10,
    })?;
    let mut buf = vec![0u8; n as usize * 4];
    mem.read(ents, &mut buf)?;
    Ok(Palette {
        unique: h.unique.get(),
        entries: buf
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}
