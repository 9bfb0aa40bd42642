//! Display channel messages and `SpiceImage` (reference sheet §4, §9).
//!
//! Pointer fields (`Image *src_bitmap`, `Palette *palette`) are u32 offsets from the start of the
//! message body; encoders here assume `out` holds only the body being built (they record
//! `out.len()` on entry as the body start).

use super::types::{Clip, Point, Rect};
use super::{message, wire_struct, Decode, Encode, Reader, WireError};

/// Display capability bits.
pub mod cap {
    /// SIZED_STREAM
    pub const SIZED_STREAM: u32 = 0;
    /// MONITORS_CONFIG
    pub const MONITORS_CONFIG: u32 = 1;
    /// COMPOSITE
    pub const COMPOSITE: u32 = 2;
    /// A8_SURFACE
    pub const A8_SURFACE: u32 = 3;
    /// STREAM_REPORT
    pub const STREAM_REPORT: u32 = 4;
    /// LZ4_COMPRESSION
    pub const LZ4_COMPRESSION: u32 = 5;
    /// PREF_COMPRESSION
    pub const PREF_COMPRESSION: u32 = 6;
    /// MULTI_CODEC
    pub const MULTI_CODEC: u32 = 8;
    /// CODEC_MJPEG
    pub const CODEC_MJPEG: u32 = 9;
    /// CODEC_VP8
    pub const CODEC_VP8: u32 = 10;
    /// PREF_VIDEO_CODEC_TYPE (the server takes PREFERRED_VIDEO_CODEC_TYPE)
    pub const PREF_VIDEO_CODEC_TYPE: u32 = 12;
}

/// Server → client ids.
pub mod server_id {
    /// MARK
    pub const MARK: u16 = 102;
    /// RESET
    pub const RESET: u16 = 103;
    /// COPY_BITS
    pub const COPY_BITS: u16 = 104;
    /// INVAL_LIST
    pub const INVAL_LIST: u16 = 105;
    /// INVAL_ALL_PIXMAPS
    pub const INVAL_ALL_PIXMAPS: u16 = 106;
    /// INVAL_PALETTE
    pub const INVAL_PALETTE: u16 = 107;
    /// INVAL_ALL_PALETTES
    pub const INVAL_ALL_PALETTES: u16 = 108;
    /// DRAW_FILL
    pub const DRAW_FILL: u16 = 302;
    /// DRAW_COPY
    pub const DRAW_COPY: u16 = 304;
    /// DRAW_BLACKNESS
    pub const DRAW_BLACKNESS: u16 = 306;
    /// DRAW_WHITENESS
    pub const DRAW_WHITENESS: u16 = 307;
    /// DRAW_INVERS
    pub const DRAW_INVERS: u16 = 308;
    /// STREAM_CREATE
    pub const STREAM_CREATE: u16 = 122;
    /// STREAM_DATA
    pub const STREAM_DATA: u16 = 123;
    /// STREAM_DESTROY
    pub const STREAM_DESTROY: u16 = 125;
    /// STREAM_ACTIVATE_REPORT
    pub const STREAM_ACTIVATE_REPORT: u16 = 319;
    /// SURFACE_CREATE
    pub const SURFACE_CREATE: u16 = 314;
    /// SURFACE_DESTROY
    pub const SURFACE_DESTROY: u16 = 315;
    /// MONITORS_CONFIG
    pub const MONITORS_CONFIG: u16 = 317;
}

/// Client → server ids.
pub mod client_id {
    /// INIT
    pub const INIT: u16 = 101;
    /// STREAM_REPORT
    pub const STREAM_REPORT: u16 = 102;
    /// PREFERRED_COMPRESSION
    pub const PREFERRED_COMPRESSION: u16 = 103;
    /// GL_DRAW_DONE
    pub const GL_DRAW_DONE: u16 = 104;
    /// PREFERRED_VIDEO_CODEC_TYPE
    pub const PREFERRED_VIDEO_CODEC_TYPE: u16 = 105;
}

/// ROP descriptor bits.
pub mod rop {
    /// OP_PUT
    pub const OP_PUT: u16 = 8;
    /// OP_BLACKNESS
    pub const OP_BLACKNESS: u16 = 128;
    /// OP_WHITENESS
    pub const OP_WHITENESS: u16 = 256;
    /// OP_INVERS
    pub const OP_INVERS: u16 = 512;
}

/// Surface flag PRIMARY.
pub const SURFACE_FLAG_PRIMARY: u32 = 1;

/// Image types.
pub mod image_type {
    /// BITMAP
    pub const BITMAP: u8 = 0;
    /// LZ_PLT
    pub const LZ_PLT: u8 = 100;
    /// LZ_RGB
    pub const LZ_RGB: u8 = 101;
    /// FROM_CACHE
    pub const FROM_CACHE: u8 = 103;
    /// SURFACE
    pub const SURFACE: u8 = 104;
    /// LZ4
    pub const LZ4: u8 = 109;
    /// QUIC
    pub const QUIC: u8 = 1;
    /// JPEG
    pub const JPEG: u8 = 105;
    /// GLZ_RGB
    pub const GLZ_RGB: u8 = 102;
    /// ZLIB_GLZ_RGB
    pub const ZLIB_GLZ_RGB: u8 = 107;
}

/// Image flags.
pub mod image_flags {
    /// CACHE_ME
    pub const CACHE_ME: u8 = 1;
}

/// Bitmap formats and flags.
pub mod bitmap {
    /// 8-bit palette
    pub const FMT_8BIT: u8 = 5;
    /// 32-bit B,G,R,X
    pub const FMT_32BIT: u8 = 8;
    /// 32-bit B,G,R,A
    pub const FMT_RGBA: u8 = 9;
    /// flag PAL_CACHE_ME
    pub const PAL_CACHE_ME: u8 = 1;
    /// flag PAL_FROM_CACHE
    pub const PAL_FROM_CACHE: u8 = 2;
    /// flag TOP_DOWN
    pub const TOP_DOWN: u8 = 4;
}

/// Largest image payload accepted when decoding (our bound).
pub const IMAGE_DATA_MAX: usize = 256 << 20;
/// Largest palette accepted (8-bit formats).
pub const PALETTE_MAX: u16 = 256;
/// Largest monitor count accepted.
pub const MONITORS_MAX: u16 = 16;

wire_struct! {
    /// `DisplayBase`: surface id, bounding box, clip.
    pub struct DisplayBase {
        /// target surface
        pub surface_id: u32,
        /// bounding box
        pub bbox: Rect,
        /// clip
        pub clip: Clip,
    }
}

wire_struct! {
    /// `SpiceQMask` with no bitmap (the only kind this server sends).
    pub struct QMask {
        /// INVERS 1
        pub flags: u8,
        /// position
        pub pos: Point,
        /// bitmap pointer (0)
        pub bitmap: u32,
    }
}

/// `SpiceBrush`: NONE or SOLID (patterns are not produced by this server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Brush {
    /// no brush
    #[default]
    None,
    /// solid colour (0x00RRGGBB)
    Solid(u32),
}
impl Encode for Brush {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Brush::None => out.push(0),
            Brush::Solid(c) => {
                out.push(1);
                c.encode(out);
            }
        }
    }
}
impl Decode for Brush {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(Brush::None),
            1 => Ok(Brush::Solid(r.u32()?)),
            t => Err(WireError::BadValue {
                what: "brush type",
                value: t.into(),
            }),
        }
    }
}

/// A palette (`SpicePalette`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Palette {
    /// cache id
    pub unique: u64,
    /// 0x00RRGGBB entries
    pub entries: Vec<u32>,
}
impl Encode for Palette {
    fn encode(&self, out: &mut Vec<u8>) {
        self.unique.encode(out);
        (self.entries.len() as u16).encode(out);
        for e in &self.entries {
            e.encode(out);
        }
    }
}
impl Decode for Palette {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let unique = r.u64()?;
        let n = r.u16()?;
        if n > PALETTE_MAX {
            return Err(WireError::TooLarge {
                what: "palette entries",
                len: n.into(),
                max: PALETTE_MAX.into(),
            });
        }
        let mut entries = Vec::with_capacity(n.into());
        for _ in 0..n {
            entries.push(r.u32()?);
        }
        Ok(Palette { unique, entries })
    }
}

/// Where a bitmap's palette comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaletteRef {
    /// no palette (RGB formats)
    None,
    /// sent inline (placed after the pixel data)
    Inline(Palette),
    /// taken from the client's palette cache
    FromCache(u64),
}

impl PaletteRef {
    /// Writes the palette field (a cache id, a NULL pointer or a pointer placeholder); returns
    /// where the placeholder is for [`PaletteRef::encode_inline`].
    fn encode_ref(&self, out: &mut Vec<u8>) -> Option<usize> {
        match self {
            PaletteRef::FromCache(id) => {
                id.encode(out);
                None
            }
            PaletteRef::None => {
                0u32.encode(out);
                None
            }
            PaletteRef::Inline(_) => {
                let at = out.len();
                0u32.encode(out);
                Some(at)
            }
        }
    }

    /// Appends an inline palette at the end of `out` and points the placeholder at `patch`
    /// to it (an offset from `msg_base`, the start of the message body).
    fn encode_inline(&self, out: &mut Vec<u8>, patch: Option<usize>, msg_base: usize) {
        if let (Some(at), PaletteRef::Inline(p)) = (patch, self) {
            let off = (out.len() - msg_base) as u32;
            out[at..at + 4].copy_from_slice(&off.to_le_bytes());
            p.encode(out);
        }
    }

    /// Reads the palette field of a bitmap or LZ_PLT body with bitmap `flags`; an inline
    /// palette is read at its pointer into the message `body`.
    fn read(r: &mut Reader<'_>, body: &[u8], flags: u8) -> Result<Self, WireError> {
        if flags & bitmap::PAL_FROM_CACHE != 0 {
            return Ok(PaletteRef::FromCache(r.u64()?));
        }
        match r.u32()? {
            0 => Ok(PaletteRef::None),
            p => {
                let pb = body.get(p as usize..).ok_or(WireError::BadValue {
                    what: "palette pointer",
                    value: p.into(),
                })?;
                Ok(PaletteRef::Inline(Palette::read(&mut Reader::new(pb))?))
            }
        }
    }
}

/// An uncompressed bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// `SpiceBitmapFmt`
    pub format: u8,
    /// PAL_CACHE_ME / PAL_FROM_CACHE / TOP_DOWN
    pub flags: u8,
    /// width in pixels
    pub width: u32,
    /// height in rows
    pub height: u32,
    /// bytes per row
    pub stride: u32,
    /// palette
    pub palette: PaletteRef,
    /// stride × height bytes
    pub data: Vec<u8>,
}

/// An LZ_PLT image body (`SpiceLZPLTData`): the LZ stream of palette indices and its palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LzPlt {
    /// PAL_CACHE_ME / PAL_FROM_CACHE (the rows' order is in the LZ header)
    pub flags: u8,
    /// palette: inline (placed after the data) or from the cache; never `None`
    pub palette: PaletteRef,
    /// the LZ stream (header and body)
    pub data: Vec<u8>,
}

/// A `SpiceImage` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageBody {
    /// BITMAP
    Bitmap(Bitmap),
    /// LZ_RGB: data_size + data
    LzRgb(Vec<u8>),
    /// LZ_PLT: flags, data_size, palette, data
    LzPlt(LzPlt),
    /// LZ4: data_size + data
    Lz4(Vec<u8>),
    /// QUIC: data_size + data (a whole number of 32-bit words)
    Quic(Vec<u8>),
    /// JPEG: data_size + JFIF data (lossy)
    Jpeg(Vec<u8>),
    /// GLZ_RGB: data_size + GLZ stream (references earlier images in the client's GLZ window,
    /// `codec::glz`)
    Glz(Vec<u8>),
    /// ZLIB_GLZ_RGB: glz_data_size (the GLZ stream's length) + data_size + the GLZ stream
    /// deflated with zlib (`codec::glz::deflate`)
    ZlibGlz {
        /// length of the GLZ stream once inflated
        glz_size: u32,
        /// the zlib stream
        data: Vec<u8>,
    },
    /// FROM_CACHE: nothing
    FromCache,
    /// SURFACE: surface id
    Surface(u32),
}

/// A `SpiceImage`: descriptor (id, type, flags, width, height) + body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// cache id
    pub id: u64,
    /// CACHE_ME etc.
    pub flags: u8,
    /// width
    pub width: u32,
    /// height
    pub height: u32,
    /// body
    pub body: ImageBody,
}

impl Image {
    fn type_id(&self) -> u8 {
        match self.body {
            ImageBody::Bitmap(_) => image_type::BITMAP,
            ImageBody::LzRgb(_) => image_type::LZ_RGB,
            ImageBody::LzPlt(_) => image_type::LZ_PLT,
            ImageBody::Lz4(_) => image_type::LZ4,
            ImageBody::Quic(_) => image_type::QUIC,
            ImageBody::Jpeg(_) => image_type::JPEG,
            ImageBody::Glz(_) => image_type::GLZ_RGB,
            ImageBody::ZlibGlz { .. } => image_type::ZLIB_GLZ_RGB,
            ImageBody::FromCache => image_type::FROM_CACHE,
            ImageBody::Surface(_) => image_type::SURFACE,
        }
    }

    /// Appends the image; `msg_base` is the index in `out` where the message body starts (for
    /// the palette pointer).
    pub fn encode_at(&self, out: &mut Vec<u8>, msg_base: usize) {
        self.id.encode(out);
        out.push(self.type_id());
        out.push(self.flags);
        self.width.encode(out);
        self.height.encode(out);
        match &self.body {
            ImageBody::Bitmap(b) => {
                out.push(b.format);
                out.push(b.flags);
                b.width.encode(out);
                b.height.encode(out);
                b.stride.encode(out);
                let patch = b.palette.encode_ref(out);
                out.extend_from_slice(&b.data);
                b.palette.encode_inline(out, patch, msg_base);
            }
            ImageBody::LzPlt(l) => {
                out.push(l.flags);
                (l.data.len() as u32).encode(out);
                let patch = l.palette.encode_ref(out);
                out.extend_from_slice(&l.data);
                l.palette.encode_inline(out, patch, msg_base);
            }
            ImageBody::LzRgb(d)
            | ImageBody::Lz4(d)
            | ImageBody::Quic(d)
            | ImageBody::Jpeg(d)
            | ImageBody::Glz(d) => {
                (d.len() as u32).encode(out);
                out.extend_from_slice(d);
            }
            ImageBody::ZlibGlz { glz_size, data } => {
                glz_size.encode(out);
                (data.len() as u32).encode(out);
                out.extend_from_slice(data);
            }
            ImageBody::FromCache => {}
            ImageBody::Surface(id) => id.encode(out),
        }
    }

    /// Reads an image at `offset` of the message `body`.
    pub fn read_at(body: &[u8], offset: u32) -> Result<Image, WireError> {
        let start = body.get(offset as usize..).ok_or(WireError::BadValue {
            what: "image pointer",
            value: offset.into(),
        })?;
        let mut r = Reader::new(start);
        let id = r.u64()?;
        let t = r.u8()?;
        let flags = r.u8()?;
        let width = r.u32()?;
        let height = r.u32()?;
        let body_v = match t {
            image_type::BITMAP => {
                let format = r.u8()?;
                let bflags = r.u8()?;
                let bw = r.u32()?;
                let bh = r.u32()?;
                let stride = r.u32()?;
                let palette = PaletteRef::read(&mut r, body, bflags)?;
                let size = u64::from(stride) * u64::from(bh);
                if size > IMAGE_DATA_MAX as u64 {
                    return Err(WireError::TooLarge {
                        what: "bitmap data",
                        len: size,
                        max: IMAGE_DATA_MAX as u64,
                    });
                }
                let data = r.take(size as usize)?.to_vec();
                ImageBody::Bitmap(Bitmap {
                    format,
                    flags: bflags,
                    width: bw,
                    height: bh,
                    stride,
                    palette,
                    data,
                })
            }
            image_type::LZ_RGB
            | image_type::LZ4
            | image_type::QUIC
            | image_type::JPEG
            | image_type::GLZ_RGB => {
                let n = r.u32()? as usize;
                if n > IMAGE_DATA_MAX {
                    return Err(WireError::TooLarge {
                        what: "image data",
                        len: n as u64,
                        max: IMAGE_DATA_MAX as u64,
                    });
                }
                let d = r.take(n)?.to_vec();
                if t == image_type::LZ4 {
                    ImageBody::Lz4(d)
                } else if t == image_type::JPEG {
                    ImageBody::Jpeg(d)
                } else if t == image_type::QUIC {
                    ImageBody::Quic(d)
                } else if t == image_type::GLZ_RGB {
                    ImageBody::Glz(d)
                } else {
                    ImageBody::LzRgb(d)
                }
            }
            image_type::ZLIB_GLZ_RGB => {
                let glz_size = r.u32()?;
                let n = r.u32()? as usize;
                if n > IMAGE_DATA_MAX || glz_size as usize > IMAGE_DATA_MAX {
                    return Err(WireError::TooLarge {
                        what: "image data",
                        len: n.max(glz_size as usize) as u64,
                        max: IMAGE_DATA_MAX as u64,
                    });
                }
                ImageBody::ZlibGlz {
                    glz_size,
                    data: r.take(n)?.to_vec(),
                }
            }
            image_type::LZ_PLT => {
                let pflags = r.u8()?;
                let n = r.u32()? as usize;
                if n > IMAGE_DATA_MAX {
                    return Err(WireError::TooLarge {
                        what: "image data",
                        len: n as u64,
                        max: IMAGE_DATA_MAX as u64,
                    });
                }
                let palette = PaletteRef::read(&mut r, body, pflags)?;
                if palette == PaletteRef::None {
                    return Err(WireError::BadValue {
                        what: "LZ_PLT palette pointer",
                        value: 0,
                    });
                }
                let data = r.take(n)?.to_vec();
                ImageBody::LzPlt(LzPlt {
                    flags: pflags,
                    palette,
                    data,
                })
            }
            image_type::FROM_CACHE => ImageBody::FromCache,
            image_type::SURFACE => ImageBody::Surface(r.u32()?),
            other => {
                return Err(WireError::BadValue {
                    what: "image type",
                    value: other.into(),
                })
            }
        };
        Ok(Image {
            id,
            flags,
            width,
            height,
            body: body_v,
        })
    }
}

/// DRAW_COPY (304): base, src_bitmap ptr, src_area, rop, scale_mode, mask; the image follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawCopy {
    /// target, box, clip
    pub base: DisplayBase,
    /// source image
    pub image: Image,
    /// area of the image to copy
    pub src_area: Rect,
    /// ROP descriptor (OP_PUT)
    pub rop: u16,
    /// scale mode
    pub scale_mode: u8,
    /// mask (none)
    pub mask: QMask,
}
impl Encode for DrawCopy {
    fn encode(&self, out: &mut Vec<u8>) {
        let base = out.len();
        self.base.encode(out);
        let at = out.len();
        0u32.encode(out);
        self.src_area.encode(out);
        self.rop.encode(out);
        self.scale_mode.encode(out);
        self.mask.encode(out);
        let off = (out.len() - base) as u32;
        out[at..at + 4].copy_from_slice(&off.to_le_bytes());
        self.image.encode_at(out, base);
    }
}
impl Decode for DrawCopy {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let all = r.rest();
        let mut f = Reader::new(all);
        let base = DisplayBase::read(&mut f)?;
        let ptr = f.u32()?;
        let src_area = Rect::read(&mut f)?;
        let rop = f.u16()?;
        let scale_mode = f.u8()?;
        let mask = QMask::read(&mut f)?;
        if ptr as usize != f.position() {
            return Err(WireError::BadValue {
                what: "src_bitmap pointer",
                value: ptr.into(),
            });
        }
        let image = Image::read_at(all, ptr)?;
        let check = crate::wire::to_vec(&DrawCopy {
            base: base.clone(),
            image: image.clone(),
            src_area,
            rop,
            scale_mode,
            mask: mask.clone(),
        });
        if check.len() != all.len() {
            return Err(WireError::TrailingData {
                extra: all.len().saturating_sub(check.len()),
            });
        }
        Ok(DrawCopy {
            base,
            image,
            src_area,
            rop,
            scale_mode,
            mask,
        })
    }
}
message!(DrawCopy, server_id::DRAW_COPY);

wire_struct! {
    /// DRAW_FILL (302).
    pub struct DrawFill {
        /// target, box, clip
        pub base: DisplayBase,
        /// brush
        pub brush: Brush,
        /// ROP descriptor
        pub rop: u16,
        /// mask
        pub mask: QMask,
    }
}
message!(DrawFill, server_id::DRAW_FILL);

wire_struct! {
    /// DRAW_BLACKNESS / DRAW_WHITENESS / DRAW_INVERS (306/307/308): base + mask.
    pub struct DrawMaskOnly {
        /// target, box, clip
        pub base: DisplayBase,
        /// mask
        pub mask: QMask,
    }
}

wire_struct! {
    /// COPY_BITS (104): copy `src_pos` → box within the surface.
    pub struct CopyBits {
        /// target, box (destination), clip
        pub base: DisplayBase,
        /// source top-left
        pub src_pos: Point,
    }
}
message!(CopyBits, server_id::COPY_BITS);

wire_struct! {
    /// SURFACE_CREATE (314).
    pub struct SurfaceCreate {
        /// id (0 = primary)
        pub surface_id: u32,
        /// width
        pub width: u32,
        /// height
        pub height: u32,
        /// `SpiceSurfaceFmt`
        pub format: u32,
        /// PRIMARY 1
        pub flags: u32,
    }
}
message!(SurfaceCreate, server_id::SURFACE_CREATE);

wire_struct! {
    /// SURFACE_DESTROY (315).
    pub struct SurfaceDestroy {
        /// id
        pub surface_id: u32,
    }
}
message!(SurfaceDestroy, server_id::SURFACE_DESTROY);

wire_struct! {
    /// MARK (102).
    pub struct Mark {}
}
message!(Mark, server_id::MARK);

wire_struct! {
    /// RESET (103).
    pub struct Reset {}
}
message!(Reset, server_id::RESET);

wire_struct! {
    /// INVAL_ALL_PALETTES (108).
    pub struct InvalAllPalettes {}
}
message!(InvalAllPalettes, server_id::INVAL_ALL_PALETTES);

wire_struct! {
    /// INVAL_PALETTE (107).
    pub struct InvalPalette {
        /// palette id
        pub id: u64,
    }
}
message!(InvalPalette, server_id::INVAL_PALETTE);

/// INVAL_ALL_PIXMAPS (106) with an empty wait list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvalAllPixmaps;
impl Encode for InvalAllPixmaps {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(0);
    }
}
impl Decode for InvalAllPixmaps {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(InvalAllPixmaps),
            n => Err(WireError::BadValue {
                what: "wait count",
                value: n.into(),
            }),
        }
    }
}
message!(InvalAllPixmaps, server_id::INVAL_ALL_PIXMAPS);

/// INVAL_LIST (105): count u16, (type u8 = PIXMAP 1, id u64)*.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvalList(pub Vec<u64>);
impl Encode for InvalList {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.0.len() as u16).encode(out);
        for id in &self.0 {
            out.push(1);
            id.encode(out);
        }
    }
}
impl Decode for InvalList {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u16()?;
        let mut v = Vec::with_capacity(n.into());
        for _ in 0..n {
            let t = r.u8()?;
            if t != 1 {
                return Err(WireError::BadValue {
                    what: "resource type",
                    value: t.into(),
                });
            }
            v.push(r.u64()?);
        }
        Ok(InvalList(v))
    }
}
message!(InvalList, server_id::INVAL_LIST);

/// Video codec of a stream (`SpiceVideoCodecType`): MJPEG.
pub const VIDEO_CODEC_MJPEG: u8 = 1;
/// Video codec of a stream (`SpiceVideoCodecType`): VP8.
pub const VIDEO_CODEC_VP8: u8 = 2;
/// STREAM_CREATE flag: the frames' first row is the top one (without it spice-gtk flips them).
pub const STREAM_FLAG_TOP_DOWN: u8 = 1;

wire_struct! {
    /// STREAM_CREATE (122): a video stream drawn into `dest` of `surface_id` (sheet §4.7).
    pub struct StreamCreate {
        /// surface the frames are drawn on
        pub surface_id: u32,
        /// stream id (< 64)
        pub id: u32,
        /// TOP_DOWN 1
        pub flags: u8,
        /// `SpiceVideoCodecType` (MJPEG 1, VP8 2)
        pub codec_type: u8,
        /// unused (0)
        pub stamp: u64,
        /// frame width as encoded
        pub stream_width: u32,
        /// frame height as encoded
        pub stream_height: u32,
        /// source width (scaled to `dest`)
        pub src_width: u32,
        /// source height
        pub src_height: u32,
        /// where frames are drawn
        pub dest: Rect,
        /// visible part of `dest`
        pub clip: Clip,
    }
}
message!(StreamCreate, server_id::STREAM_CREATE);

/// STREAM_DATA (123): one encoded frame, shown when the client's multimedia clock reaches
/// `multi_media_time`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamData {
    /// stream id
    pub id: u32,
    /// presentation time (server multimedia clock, ms)
    pub multi_media_time: u32,
    /// the frame (MJPEG: one baseline JPEG; VP8: one raw frame)
    pub data: Vec<u8>,
}
impl Encode for StreamData {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.multi_media_time.encode(out);
        (self.data.len() as u32).encode(out);
        out.extend_from_slice(&self.data);
    }
}
impl Decode for StreamData {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.u32()?;
        let multi_media_time = r.u32()?;
        let n = r.u32()? as usize;
        if n > IMAGE_DATA_MAX {
            return Err(WireError::TooLarge {
                what: "stream frame",
                len: n as u64,
                max: IMAGE_DATA_MAX as u64,
            });
        }
        let data = r.take(n)?.to_vec();
        Ok(StreamData {
            id,
            multi_media_time,
            data,
        })
    }
}
message!(StreamData, server_id::STREAM_DATA);

wire_struct! {
    /// STREAM_DESTROY (125).
    pub struct StreamDestroy {
        /// stream id
        pub id: u32,
    }
}
message!(StreamDestroy, server_id::STREAM_DESTROY);

wire_struct! {
    /// STREAM_ACTIVATE_REPORT (319): asks the client (with the STREAM_REPORT capability) for a
    /// STREAM_REPORT every `max_window_size` frames or `timeout_ms`, tagged `unique_id`.
    pub struct StreamActivateReport {
        /// stream id
        pub stream_id: u32,
        /// echoed in the reports
        pub unique_id: u32,
        /// frames per report
        pub max_window_size: u32,
        /// longest time between reports
        pub timeout_ms: u32,
    }
}
message!(StreamActivateReport, server_id::STREAM_ACTIVATE_REPORT);

wire_struct! {
    /// One monitor head (28 bytes).
    pub struct Head {
        /// monitor id
        pub monitor_id: u32,
        /// surface (0)
        pub surface_id: u32,
        /// width
        pub width: u32,
        /// height
        pub height: u32,
        /// x offset
        pub x: u32,
        /// y offset
        pub y: u32,
        /// flags
        pub flags: u32,
    }
}

/// MONITORS_CONFIG (317): count u16, max_allowed u16, heads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonitorsConfig {
    /// maximum monitors the guest allows
    pub max_allowed: u16,
    /// heads
    pub heads: Vec<Head>,
}
impl Encode for MonitorsConfig {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.heads.len() as u16).encode(out);
        self.max_allowed.encode(out);
        for h in &self.heads {
            h.encode(out);
        }
    }
}
impl Decode for MonitorsConfig {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u16()?;
        let max_allowed = r.u16()?;
        if n > MONITORS_MAX {
            return Err(WireError::TooLarge {
                what: "monitors",
                len: n.into(),
                max: MONITORS_MAX.into(),
            });
        }
        let mut heads = Vec::with_capacity(n.into());
        for _ in 0..n {
            heads.push(Head::read(r)?);
        }
        Ok(MonitorsConfig { max_allowed, heads })
    }
}
message!(MonitorsConfig, server_id::MONITORS_CONFIG);

wire_struct! {
    /// Client DISPLAY_INIT (101), 14 bytes.
    pub struct DisplayInit {
        /// pixmap cache id
        pub pixmap_cache_id: u8,
        /// pixmap cache size in pixels
        pub pixmap_cache_size: i64,
        /// GLZ dictionary id
        pub glz_dictionary_id: u8,
        /// GLZ window (pixels)
        pub glz_dictionary_window_size: i32,
    }
}

wire_struct! {
    /// Client PREFERRED_COMPRESSION (103).
    pub struct PreferredCompression {
        /// `SpiceImageCompression`
        pub image_compression: u8,
    }
}

wire_struct! {
    /// Client STREAM_REPORT (102), 32 bytes.
    pub struct StreamReport {
        /// stream
        pub stream_id: u32,
        /// report id
        pub unique_id: u32,
        /// start mm time
        pub start_frame_mm_time: u32,
        /// end mm time
        pub end_frame_mm_time: u32,
        /// frames
        pub num_frames: u32,
        /// drops
        pub num_drops: u32,
        /// delay
        pub last_frame_delay: i32,
        /// audio delay
        pub audio_delay: u32,
    }
}

/// A display-channel message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayClientMessage {
    /// INIT
    Init(DisplayInit),
    /// STREAM_REPORT (how the client plays a stream whose reports were activated)
    StreamReport(StreamReport),
    /// PREFERRED_COMPRESSION
    PreferredCompression(PreferredCompression),
    /// PREFERRED_VIDEO_CODEC_TYPE: codec list
    PreferredVideoCodecType(Vec<u8>),
}

impl DisplayClientMessage {
    /// Parses a display-channel client message.
    pub fn parse(msg_type: u16, body: &[u8]) -> Result<Self, WireError> {
        use super::decode_exact as d;
        match msg_type {
            client_id::INIT => d(body).map(Self::Init),
            client_id::STREAM_REPORT => d(body).map(Self::StreamReport),
            client_id::PREFERRED_COMPRESSION => d(body).map(Self::PreferredCompression),
            client_id::PREFERRED_VIDEO_CODEC_TYPE => {
                let mut r = Reader::new(body);
                let n = r.u8()?;
                let v = r.take(n.into())?.to_vec();
                r.expect_empty()?;
                Ok(Self::PreferredVideoCodecType(v))
            }
            _ => Err(WireError::UnknownMessage {
                channel_type: 2,
                msg_type,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;
    use crate::wire::{decode_exact, to_vec};

    fn base() -> DisplayBase {
        DisplayBase {
            surface_id: 0,
            bbox: Rect::new(0, 0, 2, 1),
            clip: Clip(vec![]),
        }
    }

    fn bitmap_image(palette: PaletteRef, format: u8) -> Image {
        let flags = match palette {
            PaletteRef::FromCache(_) => bitmap::TOP_DOWN | bitmap::PAL_FROM_CACHE,
            _ => bitmap::TOP_DOWN,
        };
        Image {
            id: 0,
            flags: 0,
            width: 2,
            height: 1,
            body: ImageBody::Bitmap(Bitmap {
                format,
                flags,
                width: 2,
                height: 1,
                stride: 8,
                palette,
                data: vec![1, 2, 3, 0, 4, 5, 6, 0],
            }),
        }
    }

    #[test]
    fn draw_copy_image_starts_at_57() {
        let dc = DrawCopy {
            base: base(),
            image: bitmap_image(PaletteRef::None, bitmap::FMT_32BIT),
            src_area: Rect::new(0, 0, 2, 1),
            rop: rop::OP_PUT,
            scale_mode: 0,
            mask: QMask::default(),
        };
        let b = round_trip(&dc);
        assert_eq!(&b[21..25], &57u32.to_le_bytes());
        assert_eq!(b.len(), 57 + 18 + 18 + 8);
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_exact::<DrawCopy>(&longer).is_err());
    }

    #[test]
    fn draw_copy_variants_round_trip() {
        for (img, clip) in [
            (
                bitmap_image(
                    PaletteRef::Inline(Palette {
                        unique: 3,
                        entries: vec![1, 2],
                    }),
                    bitmap::FMT_8BIT,
                ),
                vec![Rect::new(0, 0, 1, 1)],
            ),
            (
                bitmap_image(PaletteRef::FromCache(3), bitmap::FMT_8BIT),
                vec![],
            ),
            (
                Image {
                    id: 9,
                    flags: 0,
                    width: 2,
                    height: 1,
                    body: ImageBody::FromCache,
                },
                vec![],
            ),
            (
                Image {
                    id: 9,
                    flags: 0,
                    width: 2,
                    height: 1,
                    body: ImageBody::Surface(3),
                },
                vec![],
            ),
            (
                Image {
                    id: 9,
                    flags: 1,
                    width: 2,
                    height: 1,
                    body: ImageBody::Lz4(vec![1, 2, 3]),
                },
                vec![],
            ),
            (
                Image {
                    id: 9,
                    flags: 1,
                    width: 2,
                    height: 1,
                    body: ImageBody::LzRgb(vec![1, 2, 3]),
                },
                vec![],
            ),
            (
                Image {
                    id: 10,
                    flags: 0,
                    width: 2,
                    height: 1,
                    body: ImageBody::Glz(vec![4, 5, 6, 7]),
                },
                vec![],
            ),
            (
                Image {
                    id: 11,
                    flags: 0,
                    width: 2,
                    height: 1,
                    body: ImageBody::ZlibGlz {
                        glz_size: 40,
                        data: vec![8, 9],
                    },
                },
                vec![],
            ),
        ] {
            let mut b = base();
            b.clip = Clip(clip);
            round_trip(&DrawCopy {
                base: b,
                image: img,
                src_area: Rect::new(0, 0, 2, 1),
                rop: rop::OP_PUT,
                scale_mode: 0,
                mask: QMask::default(),
            });
        }
    }

    #[test]
    fn other_display_messages_round_trip() {
        let f = round_trip(&DrawFill {
            base: base(),
            brush: Brush::Solid(0xff0000),
            rop: rop::OP_PUT,
            mask: QMask::default(),
        });
        assert_eq!(f.len(), 41);
        round_trip(&DrawMaskOnly {
            base: base(),
            mask: QMask::default(),
        });
        round_trip(&CopyBits {
            base: base(),
            src_pos: Point { x: 0, y: 5 },
        });
        assert_eq!(
            round_trip(&SurfaceCreate {
                surface_id: 0,
                width: 640,
                height: 480,
                format: 32,
                flags: 1
            })
            .len(),
            20
        );
        round_trip(&SurfaceDestroy { surface_id: 0 });
        round_trip(&Mark {});
        round_trip(&Reset {});
        round_trip(&InvalAllPalettes {});
        round_trip(&InvalPalette { id: 4 });
        round_trip(&InvalAllPixmaps);
        round_trip(&InvalList(vec![1, 2]));
        let m = round_trip(&MonitorsConfig {
            max_allowed: 1,
            heads: vec![Head {
                width: 640,
                height: 480,
                ..Default::default()
            }],
        });
        assert_eq!(m.len(), 4 + 28);
    }

    #[test]
    fn client_display_messages_parse_strictly() {
        let init = round_trip(&DisplayInit {
            pixmap_cache_id: 1,
            pixmap_cache_size: 20_971_520,
            glz_dictionary_id: 1,
            glz_dictionary_window_size: 3_145_728,
        });
        assert_eq!(init.len(), 14);
        assert!(DisplayClientMessage::parse(101, &init).is_ok());
        for cut in 0..init.len() {
            assert!(DisplayClientMessage::parse(101, &init[..cut]).is_err());
        }
        let pc = round_trip(&PreferredCompression {
            image_compression: 6,
        });
        assert!(DisplayClientMessage::parse(103, &pc).is_ok());
        round_trip(&StreamReport::default());
        // Stream messages: STREAM_CREATE with clip NONE is 51 bytes (sheet §4.7).
        let sc = round_trip(&StreamCreate {
            surface_id: 0,
            id: 3,
            flags: STREAM_FLAG_TOP_DOWN,
            codec_type: VIDEO_CODEC_MJPEG,
            stamp: 0,
            stream_width: 480,
            stream_height: 270,
            src_width: 480,
            src_height: 270,
            dest: Rect::new(272, 249, 480, 270),
            clip: Clip::default(),
        });
        assert_eq!(sc.len(), 51);
        let sd = round_trip(&StreamData {
            id: 3,
            multi_media_time: 1234,
            data: vec![0xFF, 0xD8, 0xFF, 0xD9],
        });
        assert_eq!(&sd[8..12], &[4, 0, 0, 0]);
        assert_eq!(round_trip(&StreamDestroy { id: 3 }), vec![3, 0, 0, 0]);
        assert_eq!(
            round_trip(&StreamActivateReport {
                stream_id: 3,
                unique_id: 9,
                max_window_size: 5,
                timeout_ms: 1000,
            })
            .len(),
            16
        );
        assert!(DisplayClientMessage::parse(105, &[2, 1, 3]).is_ok());
        assert!(DisplayClientMessage::parse(105, &[2, 1]).is_err());
        assert!(DisplayClientMessage::parse(105, &[1, 1, 3]).is_err());
        assert!(DisplayClientMessage::parse(999, &[]).is_err());
        let _ = to_vec(&Mark {});
    }
}
