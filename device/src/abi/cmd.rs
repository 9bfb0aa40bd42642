//! Command layouts: QXLCommand, QXLDrawable and its union members, QXLImage, QXLBitmap,
//! QXLDataChunk, QXLPalette, QXLClipRects, QXLSurfaceCmd, QXLCursorCmd, QXLCursor,
//! QXLMonitorsConfig (reference qxl-device.md §7; spice-protocol `spice/qxl_dev.h` and
//! `spice/enums.h`, BSD-licensed, transcribed).
//!
//! Every struct is `#[repr(C)]` over little-endian, alignment-1 field types, so it has no
//! padding and can be built from any byte string (`FromBytes`). A compile-time assert pins
//! each size to the one spice-protocol's packed C layout has.

use zerocopy::little_endian::{I16, I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

macro_rules! wire {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? } = $size:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(C)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(core::mem::size_of::<$name>() == $size);
    };
}

/// `QXLPHYSICAL` as stored in guest memory.
pub type Phys = U64;

wire! {
    /// `QXLCommand`: one ring entry.
    pub struct QxlCommand {
        /// Address of the command struct.
        pub data: Phys,
        /// `QXL_CMD_*`.
        pub ty: U32,
        /// Unused.
        pub padding: U32,
    } = 16
}

wire! {
    /// `QXLReleaseInfo`: the guest's id (in) / the device's chain link (out).
    pub struct QxlReleaseInfo {
        /// `id` / `next`.
        pub id: U64,
    } = 8
}

wire! {
    /// `QXLRect`: top, left, bottom, right (exclusive bottom/right).
    pub struct QxlRect {
        /// Top.
        pub top: I32,
        /// Left.
        pub left: I32,
        /// Bottom (exclusive).
        pub bottom: I32,
        /// Right (exclusive).
        pub right: I32,
    } = 16
}

wire! {
    /// `QXLPoint`.
    pub struct QxlPoint {
        /// X.
        pub x: I32,
        /// Y.
        pub y: I32,
    } = 8
}

wire! {
    /// `QXLPoint16`.
    pub struct QxlPoint16 {
        /// X.
        pub x: I16,
        /// Y.
        pub y: I16,
    } = 4
}

wire! {
    /// `QXLPointFix`: 28.4 fixed point.
    pub struct QxlPointFix {
        /// X (28.4).
        pub x: I32,
        /// Y (28.4).
        pub y: I32,
    } = 8
}

wire! {
    /// `QXLDataChunk` header; `data_size` bytes of data follow it.
    pub struct QxlDataChunk {
        /// Bytes of data after this header.
        pub data_size: U32,
        /// Previous chunk (ignored by the device).
        pub prev_chunk: Phys,
        /// Next chunk, 0 = end.
        pub next_chunk: Phys,
    } = 20
}

wire! {
    /// `QXLPattern`: brush pattern image and its origin.
    pub struct QxlPattern {
        /// `QXLImage` of the pattern.
        pub pat: Phys,
        /// Pattern origin.
        pub pos: QxlPoint,
    } = 16
}

wire! {
    /// `QXLBrush`: type + union {color u32 | pattern}.
    pub struct QxlBrush {
        /// `SPICE_BRUSH_TYPE_*`.
        pub ty: U32,
        /// Union bytes: `color` is the first 4, `pattern` all 16.
        pub u: [u8; 16],
    } = 20
}

wire! {
    /// `QXLQMask`.
    pub struct QxlQMask {
        /// `SPICE_MASK_FLAGS_*`.
        pub flags: u8,
        /// Mask origin.
        pub pos: QxlPoint,
        /// `QXLImage` of the mask (1bpp), 0 = no mask.
        pub bitmap: Phys,
    } = 17
}

wire! {
    /// `QXLFill`.
    pub struct QxlFill {
        /// Brush.
        pub brush: QxlBrush,
        /// `SPICE_ROPD_*`.
        pub rop_descriptor: U16,
        /// Mask.
        pub mask: QxlQMask,
    } = 39
}

wire! {
    /// `QXLOpaque`.
    pub struct QxlOpaque {
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
        /// Brush.
        pub brush: QxlBrush,
        /// `SPICE_ROPD_*`.
        pub rop_descriptor: U16,
        /// `SPICE_IMAGE_SCALE_MODE_*`.
        pub scale_mode: u8,
        /// Mask.
        pub mask: QxlQMask,
    } = 64
}

wire! {
    /// `QXLCopy` / `QXLBlend`.
    pub struct QxlCopy {
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
        /// `SPICE_ROPD_*`.
        pub rop_descriptor: U16,
        /// `SPICE_IMAGE_SCALE_MODE_*`.
        pub scale_mode: u8,
        /// Mask.
        pub mask: QxlQMask,
    } = 44
}

wire! {
    /// `QXLTransparent`.
    pub struct QxlTransparent {
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
        /// Colour key (source pixels of this colour are not drawn).
        pub src_color: U32,
        /// The key's true colour (informational).
        pub true_color: U32,
    } = 32
}

wire! {
    /// `QXLAlphaBlend`.
    pub struct QxlAlphaBlend {
        /// `SPICE_ALPHA_FLAGS_*`.
        pub alpha_flags: U16,
        /// Global alpha.
        pub alpha: u8,
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
    } = 27
}

wire! {
    /// `QXLCopyBits`.
    pub struct QxlCopyBits {
        /// Top-left of the source area on the destination surface.
        pub src_pos: QxlPoint,
    } = 8
}

wire! {
    /// `QXLRop3`.
    pub struct QxlRop3 {
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
        /// Brush (pattern operand).
        pub brush: QxlBrush,
        /// Ternary raster op.
        pub rop3: u8,
        /// `SPICE_IMAGE_SCALE_MODE_*`.
        pub scale_mode: u8,
        /// Mask.
        pub mask: QxlQMask,
    } = 63
}

wire! {
    /// `QXLLineAttr`.
    pub struct QxlLineAttr {
        /// `SPICE_LINE_FLAGS_*`.
        pub flags: u8,
        /// Join style.
        pub join_style: u8,
        /// End style.
        pub end_style: u8,
        /// Number of style segments.
        pub style_nseg: u8,
        /// Width (28.4).
        pub width: I32,
        /// Miter limit (28.4).
        pub miter_limit: I32,
        /// Style segments (`QXLFIXED[style_nseg]`).
        pub style: Phys,
    } = 20
}

wire! {
    /// `QXLStroke`.
    pub struct QxlStroke {
        /// `QXLPath`.
        pub path: Phys,
        /// Line attributes.
        pub attr: QxlLineAttr,
        /// Brush.
        pub brush: QxlBrush,
        /// Foreground `SPICE_ROPD_*`.
        pub fore_mode: U16,
        /// Background `SPICE_ROPD_*`.
        pub back_mode: U16,
    } = 52
}

wire! {
    /// `QXLText`.
    pub struct QxlText {
        /// `QXLString`.
        pub str: Phys,
        /// Background area.
        pub back_area: QxlRect,
        /// Foreground brush.
        pub fore_brush: QxlBrush,
        /// Background brush.
        pub back_brush: QxlBrush,
        /// Foreground `SPICE_ROPD_*`.
        pub fore_mode: U16,
        /// Background `SPICE_ROPD_*`.
        pub back_mode: U16,
    } = 68
}

wire! {
    /// `QXLTransform`: 2×3 matrix in 16.16 fixed point.
    pub struct QxlTransform {
        /// Row 0.
        pub t00: U32,
        /// Row 0.
        pub t01: U32,
        /// Row 0.
        pub t02: U32,
        /// Row 1.
        pub t10: U32,
        /// Row 1.
        pub t11: U32,
        /// Row 1.
        pub t12: U32,
    } = 24
}

wire! {
    /// `QXLComposite`.
    pub struct QxlComposite {
        /// operator 0..7, src_filter 8..10, mask_filter 11..13, src_repeat 14..15,
        /// mask_repeat 16..17, component_alpha 18.
        pub flags: U32,
        /// Source image.
        pub src: Phys,
        /// Source transform or 0.
        pub src_transform: Phys,
        /// Mask image or 0.
        pub mask: Phys,
        /// Mask transform or 0.
        pub mask_transform: Phys,
        /// Source origin.
        pub src_origin: QxlPoint16,
        /// Mask origin.
        pub mask_origin: QxlPoint16,
    } = 44
}

wire! {
    /// `QXLClip`.
    pub struct QxlClip {
        /// `SPICE_CLIP_TYPE_*`.
        pub ty: U32,
        /// `QXLClipRects` when type is RECTS.
        pub data: Phys,
    } = 12
}

wire! {
    /// `QXLDrawable` (191 bytes); the union `u` is 68 bytes (the largest member, Text).
    pub struct QxlDrawable {
        /// Release info.
        pub release_info: QxlReleaseInfo,
        /// Destination surface.
        pub surface_id: U32,
        /// `QXL_EFFECT_*`.
        pub effect: u8,
        /// `QXL_DRAW_*`.
        pub ty: u8,
        /// Copy the destination area before drawing.
        pub self_bitmap: u8,
        /// Area for `self_bitmap`.
        pub self_bitmap_area: QxlRect,
        /// Destination rectangle.
        pub bbox: QxlRect,
        /// Clip.
        pub clip: QxlClip,
        /// Multimedia time.
        pub mm_time: U32,
        /// Source surfaces (−1 = none).
        pub surfaces_dest: [I32; 3],
        /// Areas of the source surfaces.
        pub surfaces_rects: [QxlRect; 3],
        /// Union of the draw-type members.
        pub u: [u8; 68],
    } = 191
}

wire! {
    /// `QXLCompatDrawable` (128 bytes), what qxl-1 (revision 1) drivers put on the command
    /// ring after SET_MODE: no surface ids, `bitmap_offset` instead of `self_bitmap`.
    pub struct QxlCompatDrawable {
        /// Release info.
        pub release_info: QxlReleaseInfo,
        /// `QXL_EFFECT_*`.
        pub effect: u8,
        /// `QXL_DRAW_*` (no COMPOSITE).
        pub ty: u8,
        /// Non-zero: copy the destination area before drawing.
        pub bitmap_offset: U16,
        /// Area for `bitmap_offset`.
        pub bitmap_area: QxlRect,
        /// Destination rectangle.
        pub bbox: QxlRect,
        /// Clip.
        pub clip: QxlClip,
        /// Multimedia time.
        pub mm_time: U32,
        /// Union of the draw-type members (as in [`QxlDrawable`], but ALPHA_BLEND is
        /// [`QxlCompatAlphaBlend`]).
        pub u: [u8; 68],
    } = 128
}

wire! {
    /// `QXLCompatAlphaBlend`: ALPHA_BLEND of a compat drawable, without `alpha_flags`.
    pub struct QxlCompatAlphaBlend {
        /// Global alpha.
        pub alpha: u8,
        /// Source image.
        pub src_bitmap: Phys,
        /// Source area.
        pub src_area: QxlRect,
    } = 25
}

/// Offset of the union in [`QxlDrawable`].
pub const DRAWABLE_UNION_OFFSET: usize = 123;

wire! {
    /// `QXLUpdateCmd`.
    pub struct QxlUpdateCmd {
        /// Release info.
        pub release_info: QxlReleaseInfo,
        /// Area.
        pub area: QxlRect,
        /// Update id.
        pub update_id: U32,
        /// Surface.
        pub surface_id: U32,
    } = 32
}

wire! {
    /// `QXLImageDescriptor`.
    pub struct QxlImageDescriptor {
        /// Cache id.
        pub id: U64,
        /// `SPICE_IMAGE_TYPE_*`.
        pub ty: u8,
        /// `QXL_IMAGE_*` flags.
        pub flags: u8,
        /// Width.
        pub width: U32,
        /// Height.
        pub height: U32,
    } = 18
}

wire! {
    /// `QXLBitmap`.
    pub struct QxlBitmap {
        /// `SPICE_BITMAP_FMT_*`.
        pub format: u8,
        /// `QXL_BITMAP_*`.
        pub flags: u8,
        /// Width.
        pub x: U32,
        /// Height.
        pub y: U32,
        /// Bytes per row.
        pub stride: U32,
        /// `QXLPalette` or 0.
        pub palette: Phys,
        /// Pixel data (DIRECT) or first `QXLDataChunk`.
        pub data: Phys,
    } = 30
}

wire! {
    /// `QXLImage` (descriptor + the bitmap member of the union; 48 bytes).
    pub struct QxlImage {
        /// Descriptor.
        pub descriptor: QxlImageDescriptor,
        /// Union: bitmap / quic {data_size, chunk...} / surface {surface_id}.
        pub u: [u8; 30],
    } = 48
}

/// Offset of the union in [`QxlImage`].
pub const IMAGE_UNION_OFFSET: u64 = 18;

wire! {
    /// `QXLPalette` header; `num_ents` u32 entries follow.
    pub struct QxlPalette {
        /// Cache id.
        pub unique: U64,
        /// Number of entries.
        pub num_ents: U16,
    } = 10
}

wire! {
    /// `QXLClipRects` header (num_rects, then an inline `QXLDataChunk`).
    pub struct QxlClipRects {
        /// Number of rectangles.
        pub num_rects: U32,
        /// First chunk.
        pub chunk: QxlDataChunk,
    } = 24
}

wire! {
    /// `QXLPath` header (data_size, then an inline `QXLDataChunk`).
    pub struct QxlPath {
        /// Total bytes of path segments.
        pub data_size: U32,
        /// First chunk.
        pub chunk: QxlDataChunk,
    } = 24
}

wire! {
    /// `QXLPathSeg` header; `count` `QXLPointFix` follow.
    pub struct QxlPathSeg {
        /// `QXL_PATH_*`.
        pub flags: U32,
        /// Number of points.
        pub count: U32,
    } = 8
}

wire! {
    /// `QXLString` header (then an inline `QXLDataChunk`).
    pub struct QxlString {
        /// Total bytes of glyph data.
        pub data_size: U32,
        /// Number of glyphs.
        pub length: U16,
        /// `SPICE_STRING_FLAGS_*`.
        pub flags: U16,
        /// First chunk.
        pub chunk: QxlDataChunk,
    } = 28
}

wire! {
    /// `QXLRasterGlyph` header; glyph rows follow.
    pub struct QxlRasterGlyph {
        /// Where the glyph is rendered.
        pub render_pos: QxlPoint,
        /// Offset of the glyph's top-left from `render_pos`.
        pub glyph_origin: QxlPoint,
        /// Width.
        pub width: U16,
        /// Height.
        pub height: U16,
    } = 20
}

wire! {
    /// `QXLSurface` (the create member of `QXLSurfaceCmd`).
    pub struct QxlSurface {
        /// `SPICE_SURFACE_FMT_*`.
        pub format: U32,
        /// Width.
        pub width: U32,
        /// Height.
        pub height: U32,
        /// Stride (negative = bottom-up).
        pub stride: I32,
        /// Pixels.
        pub data: Phys,
    } = 24
}

wire! {
    /// `QXLSurfaceCmd` (41 bytes).
    pub struct QxlSurfaceCmd {
        /// Release info.
        pub release_info: QxlReleaseInfo,
        /// Surface id.
        pub surface_id: U32,
        /// `QXL_SURFACE_CMD_*`.
        pub ty: u8,
        /// `QXL_SURF_FLAG_*`.
        pub flags: U32,
        /// Create parameters.
        pub surface_create: QxlSurface,
    } = 41
}

wire! {
    /// `QXLCursorCmd` (150 bytes).
    pub struct QxlCursorCmd {
        /// Release info.
        pub release_info: QxlReleaseInfo,
        /// `QXL_CURSOR_*`.
        pub ty: u8,
        /// Union: set {position, visible u8, shape} / trail {length, frequency} / position.
        pub u: [u8; 13],
        /// Unused.
        pub device_data: [u8; 128],
    } = 150
}

wire! {
    /// `QXLCursorHeader`.
    pub struct QxlCursorHeader {
        /// Cache id.
        pub unique: U64,
        /// `SPICE_CURSOR_TYPE_*`.
        pub ty: U16,
        /// Width.
        pub width: U16,
        /// Height.
        pub height: U16,
        /// Hot spot x.
        pub hot_spot_x: U16,
        /// Hot spot y.
        pub hot_spot_y: U16,
    } = 18
}

wire! {
    /// `QXLCursor` header (then `data_size` bytes in a chunk chain starting inline).
    pub struct QxlCursor {
        /// Header.
        pub header: QxlCursorHeader,
        /// Bytes of cursor data.
        pub data_size: U32,
        /// First chunk.
        pub chunk: QxlDataChunk,
    } = 42
}

wire! {
    /// `QXLHead`.
    pub struct QxlHead {
        /// Head id.
        pub id: U32,
        /// Surface shown.
        pub surface_id: U32,
        /// Width.
        pub width: U32,
        /// Height.
        pub height: U32,
        /// X offset in the surface.
        pub x: U32,
        /// Y offset in the surface.
        pub y: U32,
        /// Flags.
        pub flags: U32,
    } = 28
}

wire! {
    /// `QXLMonitorsConfig` header; `count` `QXLHead` follow.
    pub struct QxlMonitorsConfig {
        /// Heads in use.
        pub count: U16,
        /// Capacity the driver allocated (0 = no limit).
        pub max_allowed: U16,
    } = 4
}

/// `QXL_CMD_*` command types.
pub mod cmd_type {
    /// NOP.
    pub const NOP: u32 = 0;
    /// DRAW.
    pub const DRAW: u32 = 1;
    /// UPDATE (deprecated).
    pub const UPDATE: u32 = 2;
    /// CURSOR.
    pub const CURSOR: u32 = 3;
    /// MESSAGE.
    pub const MESSAGE: u32 = 4;
    /// SURFACE.
    pub const SURFACE: u32 = 5;
}

/// `QXL_DRAW_*` drawable types.
pub mod draw_type {
    /// NOP.
    pub const NOP: u8 = 0;
    /// FILL.
    pub const FILL: u8 = 1;
    /// OPAQUE.
    pub const OPAQUE: u8 = 2;
    /// COPY.
    pub const COPY: u8 = 3;
    /// COPY_BITS.
    pub const COPY_BITS: u8 = 4;
    /// BLEND.
    pub const BLEND: u8 = 5;
    /// BLACKNESS.
    pub const BLACKNESS: u8 = 6;
    /// WHITENESS.
    pub const WHITENESS: u8 = 7;
    /// INVERS.
    pub const INVERS: u8 = 8;
    /// ROP3.
    pub const ROP3: u8 = 9;
    /// STROKE.
    pub const STROKE: u8 = 10;
    /// TEXT.
    pub const TEXT: u8 = 11;
    /// TRANSPARENT.
    pub const TRANSPARENT: u8 = 12;
    /// ALPHA_BLEND.
    pub const ALPHA_BLEND: u8 = 13;
    /// COMPOSITE.
    pub const COMPOSITE: u8 = 14;
}

/// `SPICE_IMAGE_TYPE_*`.
pub mod image_type {
    /// Raw bitmap.
    pub const BITMAP: u8 = 0;
    /// QUIC-compressed.
    pub const QUIC: u8 = 1;
    /// Reserved.
    pub const RESERVED: u8 = 2;
    /// LZ_PLT.
    pub const LZ_PLT: u8 = 100;
    /// LZ_RGB.
    pub const LZ_RGB: u8 = 101;
    /// GLZ_RGB.
    pub const GLZ_RGB: u8 = 102;
    /// From the client's cache.
    pub const FROM_CACHE: u8 = 103;
    /// Another surface.
    pub const SURFACE: u8 = 104;
    /// JPEG.
    pub const JPEG: u8 = 105;
}

/// `SPICE_BITMAP_FMT_*`.
pub mod bitmap_fmt {
    /// 1 bpp, LSB first.
    pub const ONE_BIT_LE: u8 = 1;
    /// 1 bpp, MSB first.
    pub const ONE_BIT_BE: u8 = 2;
    /// 4 bpp, low nibble first.
    pub const FOUR_BIT_LE: u8 = 3;
    /// 4 bpp, high nibble first.
    pub const FOUR_BIT_BE: u8 = 4;
    /// 8 bpp palette.
    pub const EIGHT_BIT: u8 = 5;
    /// 16 bpp x555.
    pub const SIXTEEN_BIT: u8 = 6;
    /// 24 bpp BGR.
    pub const TWENTYFOUR_BIT: u8 = 7;
    /// 32 bpp xRGB.
    pub const THIRTYTWO_BIT: u8 = 8;
    /// 32 bpp ARGB (premultiplied).
    pub const RGBA: u8 = 9;
    /// 8 bpp alpha.
    pub const EIGHT_BIT_A: u8 = 10;
}

/// `QXL_BITMAP_*` flags.
pub mod bitmap_flags {
    /// `data` points straight at the pixels.
    pub const DIRECT: u8 = 1;
    /// Data may change under us.
    pub const UNSTABLE: u8 = 2;
    /// First row in memory is the top row.
    pub const TOP_DOWN: u8 = 4;
}

/// `QXL_IMAGE_*` descriptor flags.
pub mod image_flags {
    /// Cache the image by id.
    pub const CACHE: u8 = 1;
    /// High bits set.
    pub const HIGH_BITS_SET: u8 = 2;
}

/// `SPICE_SURFACE_FMT_*`.
pub mod surface_fmt {
    /// 1 bpp alpha.
    pub const A1: u32 = 1;
    /// 8 bpp alpha.
    pub const A8: u32 = 8;
    /// 16 bpp x555.
    pub const RGB555: u32 = 16;
    /// 32 bpp xRGB.
    pub const XRGB32: u32 = 32;
    /// 16 bpp 565.
    pub const RGB565: u32 = 80;
    /// 32 bpp ARGB.
    pub const ARGB32: u32 = 96;
}

/// `SPICE_ROPD_*` rop descriptor bits.
pub mod ropd {
    /// Invert the source operand.
    pub const INVERS_SRC: u16 = 1 << 0;
    /// Invert the brush operand.
    pub const INVERS_BRUSH: u16 = 1 << 1;
    /// Invert the destination operand.
    pub const INVERS_DEST: u16 = 1 << 2;
    /// result = operand.
    pub const OP_PUT: u16 = 1 << 3;
    /// result = operand | dest.
    pub const OP_OR: u16 = 1 << 4;
    /// result = operand & dest.
    pub const OP_AND: u16 = 1 << 5;
    /// result = operand ^ dest.
    pub const OP_XOR: u16 = 1 << 6;
    /// result = 0.
    pub const OP_BLACKNESS: u16 = 1 << 7;
    /// result = all ones.
    pub const OP_WHITENESS: u16 = 1 << 8;
    /// result = !dest.
    pub const OP_INVERS: u16 = 1 << 9;
    /// Invert the result.
    pub const INVERS_RES: u16 = 1 << 10;
    /// All defined bits.
    pub const MASK: u16 = 0x7ff;
}

/// `SPICE_BRUSH_TYPE_*`.
pub mod brush_type {
    /// No brush.
    pub const NONE: u32 = 0;
    /// Solid colour.
    pub const SOLID: u32 = 1;
    /// Pattern image.
    pub const PATTERN: u32 = 2;
}

/// `SPICE_CLIP_TYPE_*`.
pub mod clip_type {
    /// No clip.
    pub const NONE: u32 = 0;
    /// `QXLClipRects`.
    pub const RECTS: u32 = 1;
}

/// `SPICE_MASK_FLAGS_*`.
pub mod mask_flags {
    /// Draw where the mask bit is 0.
    pub const INVERS: u8 = 1;
}

/// `SPICE_ALPHA_FLAGS_*`.
pub mod alpha_flags {
    /// The destination has an alpha channel.
    pub const DEST_HAS_ALPHA: u16 = 1;
    /// The source has an alpha channel.
    pub const SRC_SURFACE_HAS_ALPHA: u16 = 2;
}

/// `SPICE_STRING_FLAGS_*`.
pub mod string_flags {
    /// 1 bpp glyphs.
    pub const RASTER_A1: u16 = 1;
    /// 4 bpp glyphs.
    pub const RASTER_A4: u16 = 2;
    /// 8 bpp glyphs.
    pub const RASTER_A8: u16 = 4;
    /// Glyph rows are top-down.
    pub const RASTER_TOP_DOWN: u16 = 8;
}

/// `QXL_PATH_*` segment flags.
pub mod path_flags {
    /// Segment begins a sub-path.
    pub const BEGIN: u32 = 1;
    /// Segment ends a sub-path.
    pub const END: u32 = 2;
    /// Sub-path is closed.
    pub const CLOSE: u32 = 8;
    /// Points are cubic Bézier control points.
    pub const BEZIER: u32 = 16;
}

/// `QXL_SURFACE_CMD_*`.
pub mod surface_cmd {
    /// Create.
    pub const CREATE: u8 = 0;
    /// Destroy.
    pub const DESTROY: u8 = 1;
    /// `QXL_SURF_FLAG_KEEP_DATA`.
    pub const FLAG_KEEP_DATA: u32 = 1;
}

/// `QXL_CURSOR_*` command types.
pub mod cursor_cmd {
    /// Set shape and position.
    pub const SET: u8 = 0;
    /// Move.
    pub const MOVE: u8 = 1;
    /// Hide.
    pub const HIDE: u8 = 2;
    /// Trail.
    pub const TRAIL: u8 = 3;
}

/// `SPICE_CURSOR_TYPE_*`.
pub mod cursor_type {
    /// 32 bpp ARGB.
    pub const ALPHA: u16 = 0;
    /// AND + XOR masks.
    pub const MONO: u16 = 1;
    /// 4 bpp + palette + AND mask.
    pub const COLOR4: u16 = 2;
    /// 8 bpp + palette + AND mask.
    pub const COLOR8: u16 = 3;
    /// 16 bpp + AND mask.
    pub const COLOR16: u16 = 4;
    /// 24 bpp + AND mask.
    pub const COLOR24: u16 = 5;
    /// 32 bpp + AND mask.
    pub const COLOR32: u16 = 6;
}

/// `SPICE_LINE_FLAGS_*`.
pub mod line_flags {
    /// The dash pattern starts with a gap.
    pub const START_WITH_GAP: u8 = 1 << 2;
    /// The line is dashed (`style` holds the segments).
    pub const STYLED: u8 = 1 << 3;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn drawable_offsets_match_reference_sheet() {
        assert_eq!(offset_of!(QxlDrawable, surface_id), 8);
        assert_eq!(offset_of!(QxlDrawable, effect), 12);
        assert_eq!(offset_of!(QxlDrawable, ty), 13);
        assert_eq!(offset_of!(QxlDrawable, self_bitmap_area), 15);
        assert_eq!(offset_of!(QxlDrawable, bbox), 31);
        assert_eq!(offset_of!(QxlDrawable, clip), 47);
        assert_eq!(offset_of!(QxlDrawable, mm_time), 59);
        assert_eq!(offset_of!(QxlDrawable, surfaces_dest), 63);
        assert_eq!(offset_of!(QxlDrawable, surfaces_rects), 75);
        assert_eq!(offset_of!(QxlDrawable, u), DRAWABLE_UNION_OFFSET);
        assert_eq!(offset_of!(QxlCompatDrawable, bitmap_area), 12);
        assert_eq!(offset_of!(QxlCompatDrawable, bbox), 28);
        assert_eq!(offset_of!(QxlCompatDrawable, clip), 44);
        assert_eq!(offset_of!(QxlCompatDrawable, u), 60);
    }

    #[test]
    fn member_offsets_match_reference_sheet() {
        assert_eq!(offset_of!(QxlFill, rop_descriptor), 20);
        assert_eq!(offset_of!(QxlFill, mask), 22);
        assert_eq!(offset_of!(QxlCopy, src_area), 8);
        assert_eq!(offset_of!(QxlCopy, rop_descriptor), 24);
        assert_eq!(offset_of!(QxlCopy, scale_mode), 26);
        assert_eq!(offset_of!(QxlCopy, mask), 27);
        assert_eq!(offset_of!(QxlImage, u) as u64, IMAGE_UNION_OFFSET);
        assert_eq!(offset_of!(QxlBitmap, palette), 14);
        assert_eq!(offset_of!(QxlBitmap, data), 22);
        assert_eq!(offset_of!(QxlSurfaceCmd, surface_create), 17);
        assert_eq!(offset_of!(QxlCursor, data_size), 18);
        assert_eq!(offset_of!(QxlCursor, chunk), 22);
        assert_eq!(offset_of!(QxlDataChunk, next_chunk), 12);
        assert_eq!(offset_of!(QxlCursorCmd, device_data), 22);
    }
}
