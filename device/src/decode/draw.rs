//! QXLDrawable and every draw type (reference §7 "QXLDrawable"; union member layouts from
//! spice-protocol `qxl_dev.h`).

use super::chunks::{self, GuestChunks, CHUNK_HEADER};
use super::image::{decode_image, Image, ImageKind, Role};
use super::{check_surface_id, read_struct, DecodeError, Limits, Rect, MAX_CLIP_RECTS, MAX_GLYPHS};
use crate::abi::cmd::{
    brush_type, clip_type, draw_type, line_flags, mask_flags, string_flags, QxlAlphaBlend,
    QxlBrush, QxlClipRects, QxlCompatAlphaBlend, QxlCompatDrawable, QxlComposite, QxlCopy,
    QxlCopyBits, QxlDrawable, QxlFill, QxlOpaque, QxlPath, QxlQMask, QxlRop3, QxlString, QxlStroke,
    QxlText, QxlTransform, QxlTransparent,
};
use crate::mem::{GuestMemory, QxlPhys};
use zerocopy::{FromBytes, IntoBytes};

/// Largest linearised path or glyph string (bytes).
pub const MAX_LINEAR_BYTES: u64 = 16 << 20;

/// A point in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Point {
    /// X.
    pub x: i32,
    /// Y.
    pub y: i32,
}

/// A point in 28.4 fixed point (paths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PointFix {
    /// X (28.4).
    pub x: i32,
    /// Y (28.4).
    pub y: i32,
}

/// A rop descriptor (`SPICE_ROPD_*` bits, see [`crate::abi::cmd::ropd`]), masked to the
/// defined bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ropd(pub u16);

/// How a scaled source is sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ScaleMode {
    /// SPICE_IMAGE_SCALE_MODE_INTERPOLATE (0): bilinear when scaling.
    #[default]
    Interpolate,
    /// SPICE_IMAGE_SCALE_MODE_NEAREST (1, and any unknown value).
    Nearest,
}

/// A brush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Brush {
    /// No brush.
    None,
    /// A solid colour 0xAARRGGBB (alpha as the guest sent it).
    Solid(u32),
    /// A tiled pattern image.
    Pattern {
        /// Pattern image.
        image: Image,
        /// Pattern origin.
        pos: Point,
    },
}

/// A 1-bit mask (`QXLQMask` with a non-null bitmap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Draw where the bit is 0 instead of 1.
    pub invers: bool,
    /// Mask pixel used for the bbox's top-left pixel.
    pub pos: Point,
    /// A 1-bit bitmap image.
    pub image: Image,
}

/// A drawable's clip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clip {
    /// Only the bbox clips.
    None,
    /// Draw only inside the union of these rectangles (and the bbox).
    Rects(ClipRects),
}

/// The rectangles of a [`Clip::Rects`], read as a slice.
///
/// One rectangle, what Linux's qxl driver sends with every draw, is kept inline: a small
/// draw's decode then allocates nothing for its clip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipRects(ClipRepr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum ClipRepr {
    One(Rect),
    Many(Vec<Rect>),
}

impl ClipRects {
    /// The rectangles.
    pub fn as_slice(&self) -> &[Rect] {
        match &self.0 {
            ClipRepr::One(r) => std::slice::from_ref(r),
            ClipRepr::Many(v) => v,
        }
    }
}

impl std::ops::Deref for ClipRects {
    type Target = [Rect];
    fn deref(&self) -> &[Rect] {
        self.as_slice()
    }
}

impl From<Vec<Rect>> for ClipRects {
    fn from(v: Vec<Rect>) -> Self {
        match v.as_slice() {
            [one] => ClipRects(ClipRepr::One(*one)),
            _ => ClipRects(ClipRepr::Many(v)),
        }
    }
}

/// Line attributes of a stroke.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineAttr {
    /// `SPICE_LINE_FLAGS_*`.
    pub flags: u8,
    /// Join style.
    pub join_style: u8,
    /// End style.
    pub end_style: u8,
    /// Width (28.4).
    pub width: i32,
    /// Miter limit (28.4).
    pub miter_limit: i32,
    /// Dash segments (28.4), only when STYLED.
    pub style: Vec<i32>,
}

/// One path segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSeg {
    /// `QXL_PATH_*`.
    pub flags: u32,
    /// Points.
    pub points: Vec<PointFix>,
}

/// One raster glyph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glyph {
    /// Rendering position.
    pub render_pos: Point,
    /// Offset of the glyph's top-left from `render_pos`.
    pub glyph_origin: Point,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// Rows of ceil(width·bpp/8) bytes, top row first.
    pub data: Vec<u8>,
}

/// A linearised glyph string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlyphString {
    /// Bits per glyph pixel: 1, 4 or 8.
    pub bpp: u8,
    /// Glyphs.
    pub glyphs: Vec<Glyph>,
}

/// A 2×3 affine transform in 16.16 fixed point (row-major t00 t01 t02 / t10 t11 t12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transform(pub [i32; 6]);

/// Composite repeat modes (pixman's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Repeat {
    /// Outside the image is transparent.
    #[default]
    None,
    /// Tile.
    Normal,
    /// Extend the edge pixels.
    Pad,
    /// Mirror.
    Reflect,
}

impl Repeat {
    fn from_bits(v: u32) -> Self {
        match v & 3 {
            0 => Self::None,
            1 => Self::Normal,
            2 => Self::Pad,
            _ => Self::Reflect,
        }
    }
}

/// A composite operator (`QXL_OP_*`, pixman's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompositeOp(pub u8);

/// Operator numbers. spice-protocol's `QXLOperator` (`spice/qxl_dev.h`, the `QXL_OP_*`
/// values) defines 0x00..=0x0d and 0x30..=0x3e and skips the X Render / pixman DISJOINT_*
/// (0x10..=0x1b) and CONJOINT_* (0x20..=0x2b) ranges, which the renderer also draws since the
/// value is pixman's operator. Any other value (0x0e, 0x0f, 0x1c..=0x1f, 0x2c..=0x2f,
/// 0x3f..=0xff) is drawn as OVER.
impl CompositeOp {
    /// CLEAR.
    pub const CLEAR: Self = Self(0);
    /// SRC.
    pub const SRC: Self = Self(1);
    /// DST.
    pub const DST: Self = Self(2);
    /// OVER.
    pub const OVER: Self = Self(3);
    /// OVER_REVERSE.
    pub const OVER_REVERSE: Self = Self(4);
    /// IN.
    pub const IN: Self = Self(5);
    /// IN_REVERSE.
    pub const IN_REVERSE: Self = Self(6);
    /// OUT.
    pub const OUT: Self = Self(7);
    /// OUT_REVERSE.
    pub const OUT_REVERSE: Self = Self(8);
    /// ATOP.
    pub const ATOP: Self = Self(9);
    /// ATOP_REVERSE.
    pub const ATOP_REVERSE: Self = Self(10);
    /// XOR.
    pub const XOR: Self = Self(11);
    /// ADD.
    pub const ADD: Self = Self(12);
    /// SATURATE.
    pub const SATURATE: Self = Self(13);
    /// DISJOINT_CLEAR: X Render `PictOpDisjointClear`, pixman `PIXMAN_OP_DISJOINT_CLEAR`.
    pub const DISJOINT_CLEAR: Self = Self(0x10);
    /// DISJOINT_SRC: X Render `PictOpDisjointSrc`, pixman `PIXMAN_OP_DISJOINT_SRC`.
    pub const DISJOINT_SRC: Self = Self(0x11);
    /// DISJOINT_DST: X Render `PictOpDisjointDst`, pixman `PIXMAN_OP_DISJOINT_DST`.
    pub const DISJOINT_DST: Self = Self(0x12);
    /// DISJOINT_OVER: X Render `PictOpDisjointOver`, pixman `PIXMAN_OP_DISJOINT_OVER`.
    pub const DISJOINT_OVER: Self = Self(0x13);
    /// DISJOINT_OVER_REVERSE: X Render `PictOpDisjointOverReverse`, pixman `PIXMAN_OP_DISJOINT_OVER_REVERSE`.
    pub const DISJOINT_OVER_REVERSE: Self = Self(0x14);
    /// DISJOINT_IN: X Render `PictOpDisjointIn`, pixman `PIXMAN_OP_DISJOINT_IN`.
    pub const DISJOINT_IN: Self = Self(0x15);
    /// DISJOINT_IN_REVERSE: X Render `PictOpDisjointInReverse`, pixman `PIXMAN_OP_DISJOINT_IN_REVERSE`.
    pub const DISJOINT_IN_REVERSE: Self = Self(0x16);
    /// DISJOINT_OUT: X Render `PictOpDisjointOut`, pixman `PIXMAN_OP_DISJOINT_OUT`.
    pub const DISJOINT_OUT: Self = Self(0x17);
    /// DISJOINT_OUT_REVERSE: X Render `PictOpDisjointOutReverse`, pixman `PIXMAN_OP_DISJOINT_OUT_REVERSE`.
    pub const DISJOINT_OUT_REVERSE: Self = Self(0x18);
    /// DISJOINT_ATOP: X Render `PictOpDisjointAtop`, pixman `PIXMAN_OP_DISJOINT_ATOP`.
    pub const DISJOINT_ATOP: Self = Self(0x19);
    /// DISJOINT_ATOP_REVERSE: X Render `PictOpDisjointAtopReverse`, pixman `PIXMAN_OP_DISJOINT_ATOP_REVERSE`.
    pub const DISJOINT_ATOP_REVERSE: Self = Self(0x1a);
    /// DISJOINT_XOR: X Render `PictOpDisjointXor`, pixman `PIXMAN_OP_DISJOINT_XOR`.
    pub const DISJOINT_XOR: Self = Self(0x1b);
    /// CONJOINT_CLEAR: X Render `PictOpConjointClear`, pixman `PIXMAN_OP_CONJOINT_CLEAR`.
    pub const CONJOINT_CLEAR: Self = Self(0x20);
    /// CONJOINT_SRC: X Render `PictOpConjointSrc`, pixman `PIXMAN_OP_CONJOINT_SRC`.
    pub const CONJOINT_SRC: Self = Self(0x21);
    /// CONJOINT_DST: X Render `PictOpConjointDst`, pixman `PIXMAN_OP_CONJOINT_DST`.
    pub const CONJOINT_DST: Self = Self(0x22);
    /// CONJOINT_OVER: X Render `PictOpConjointOver`, pixman `PIXMAN_OP_CONJOINT_OVER`.
    pub const CONJOINT_OVER: Self = Self(0x23);
    /// CONJOINT_OVER_REVERSE: X Render `PictOpConjointOverReverse`, pixman `PIXMAN_OP_CONJOINT_OVER_REVERSE`.
    pub const CONJOINT_OVER_REVERSE: Self = Self(0x24);
    /// CONJOINT_IN: X Render `PictOpConjointIn`, pixman `PIXMAN_OP_CONJOINT_IN`.
    pub const CONJOINT_IN: Self = Self(0x25);
    /// CONJOINT_IN_REVERSE: X Render `PictOpConjointInReverse`, pixman `PIXMAN_OP_CONJOINT_IN_REVERSE`.
    pub const CONJOINT_IN_REVERSE: Self = Self(0x26);
    /// CONJOINT_OUT: X Render `PictOpConjointOut`, pixman `PIXMAN_OP_CONJOINT_OUT`.
    pub const CONJOINT_OUT: Self = Self(0x27);
    /// CONJOINT_OUT_REVERSE: X Render `PictOpConjointOutReverse`, pixman `PIXMAN_OP_CONJOINT_OUT_REVERSE`.
    pub const CONJOINT_OUT_REVERSE: Self = Self(0x28);
    /// CONJOINT_ATOP: X Render `PictOpConjointAtop`, pixman `PIXMAN_OP_CONJOINT_ATOP`.
    pub const CONJOINT_ATOP: Self = Self(0x29);
    /// CONJOINT_ATOP_REVERSE: X Render `PictOpConjointAtopReverse`, pixman `PIXMAN_OP_CONJOINT_ATOP_REVERSE`.
    pub const CONJOINT_ATOP_REVERSE: Self = Self(0x2a);
    /// CONJOINT_XOR: X Render `PictOpConjointXor`, pixman `PIXMAN_OP_CONJOINT_XOR`.
    pub const CONJOINT_XOR: Self = Self(0x2b);
    /// MULTIPLY (`QXL_OP_MULTIPLY`).
    pub const MULTIPLY: Self = Self(0x30);
    /// SCREEN (`QXL_OP_SCREEN`).
    pub const SCREEN: Self = Self(0x31);
    /// OVERLAY (`QXL_OP_OVERLAY`).
    pub const OVERLAY: Self = Self(0x32);
    /// DARKEN (`QXL_OP_DARKEN`).
    pub const DARKEN: Self = Self(0x33);
    /// LIGHTEN (`QXL_OP_LIGHTEN`).
    pub const LIGHTEN: Self = Self(0x34);
    /// COLOR_DODGE (`QXL_OP_COLOR_DODGE`).
    pub const COLOR_DODGE: Self = Self(0x35);
    /// COLOR_BURN (`QXL_OP_COLOR_BURN`).
    pub const COLOR_BURN: Self = Self(0x36);
    /// HARD_LIGHT (`QXL_OP_HARD_LIGHT`).
    pub const HARD_LIGHT: Self = Self(0x37);
    /// SOFT_LIGHT (`QXL_OP_SOFT_LIGHT`).
    pub const SOFT_LIGHT: Self = Self(0x38);
    /// DIFFERENCE (`QXL_OP_DIFFERENCE`).
    pub const DIFFERENCE: Self = Self(0x39);
    /// EXCLUSION (`QXL_OP_EXCLUSION`).
    pub const EXCLUSION: Self = Self(0x3a);
    /// HSL_HUE (`QXL_OP_HSL_HUE`).
    pub const HSL_HUE: Self = Self(0x3b);
    /// HSL_SATURATION (`QXL_OP_HSL_SATURATION`).
    pub const HSL_SATURATION: Self = Self(0x3c);
    /// HSL_COLOR (`QXL_OP_HSL_COLOR`).
    pub const HSL_COLOR: Self = Self(0x3d);
    /// HSL_LUMINOSITY (`QXL_OP_HSL_LUMINOSITY`).
    pub const HSL_LUMINOSITY: Self = Self(0x3e);
}

/// What a drawable does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrawOp {
    /// QXL_DRAW_NOP.
    Nop,
    /// QXL_DRAW_FILL: brush combined with the destination by `rop`.
    Fill {
        /// Brush.
        brush: Brush,
        /// Rop descriptor.
        rop: Ropd,
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_OPAQUE: source, then the brush combined with it by `rop`.
    Opaque {
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
        /// Brush.
        brush: Brush,
        /// Rop descriptor.
        rop: Ropd,
        /// Scale mode.
        scale_mode: ScaleMode,
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_COPY: source (scaled from `src_area` to the bbox) combined by `rop`.
    Copy {
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
        /// Rop descriptor.
        rop: Ropd,
        /// Scale mode.
        scale_mode: ScaleMode,
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_BLEND: like Copy.
    Blend {
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
        /// Rop descriptor.
        rop: Ropd,
        /// Scale mode.
        scale_mode: ScaleMode,
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_COPY_BITS: copy the bbox-sized area at `src_pos` of the same surface to the bbox.
    CopyBits {
        /// Source top-left.
        src_pos: Point,
    },
    /// QXL_DRAW_BLACKNESS.
    Blackness {
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_WHITENESS.
    Whiteness {
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_INVERS.
    Invers {
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_ROP3: ternary raster op of brush (P), source (S) and destination (D).
    Rop3 {
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
        /// Brush.
        brush: Brush,
        /// Ternary rop code.
        rop3: u8,
        /// Scale mode.
        scale_mode: ScaleMode,
        /// Mask.
        mask: Option<Mask>,
    },
    /// QXL_DRAW_STROKE.
    Stroke {
        /// Path.
        path: Vec<PathSeg>,
        /// Line attributes.
        attr: LineAttr,
        /// Brush.
        brush: Brush,
        /// Foreground rop descriptor.
        fore_mode: Ropd,
        /// Background rop descriptor.
        back_mode: Ropd,
    },
    /// QXL_DRAW_TEXT.
    Text {
        /// Glyphs.
        string: GlyphString,
        /// Background area (filled with `back_brush` when `back_mode` ≠ 0).
        back_area: Rect,
        /// Foreground brush.
        fore_brush: Brush,
        /// Background brush.
        back_brush: Brush,
        /// Foreground rop descriptor.
        fore_mode: Ropd,
        /// Background rop descriptor.
        back_mode: Ropd,
    },
    /// QXL_DRAW_TRANSPARENT: source pixels equal to `src_color` are not drawn.
    Transparent {
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
        /// Colour key.
        src_color: u32,
        /// True colour of the key (informational).
        true_color: u32,
    },
    /// QXL_DRAW_ALPHA_BLEND.
    AlphaBlend {
        /// `SPICE_ALPHA_FLAGS_*`.
        alpha_flags: u16,
        /// Global alpha.
        alpha: u8,
        /// Source image.
        src: Image,
        /// Source area.
        src_area: Rect,
    },
    /// QXL_DRAW_COMPOSITE.
    Composite {
        /// Operator.
        op: CompositeOp,
        /// Source filter (0 nearest, 1 bilinear; rendered nearest).
        src_filter: u8,
        /// Mask filter.
        mask_filter: u8,
        /// Source repeat.
        src_repeat: Repeat,
        /// Mask repeat.
        mask_repeat: Repeat,
        /// Component alpha: the mask multiplies each colour channel separately (subpixel text).
        component_alpha: bool,
        /// Source.
        src: Image,
        /// Source transform.
        src_transform: Option<Transform>,
        /// Mask.
        mask: Option<Box<Image>>,
        /// Mask transform.
        mask_transform: Option<Transform>,
        /// Source origin.
        src_origin: Point,
        /// Mask origin.
        mask_origin: Point,
    },
}

impl DrawOp {
    /// The drawable type as a short name (`"fill"`, `"copy_bits"`, ...), for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            DrawOp::Nop => "nop",
            DrawOp::Fill { .. } => "fill",
            DrawOp::Opaque { .. } => "opaque",
            DrawOp::Copy { .. } => "copy",
            DrawOp::Blend { .. } => "blend",
            DrawOp::CopyBits { .. } => "copy_bits",
            DrawOp::Blackness { .. } => "blackness",
            DrawOp::Whiteness { .. } => "whiteness",
            DrawOp::Invers { .. } => "invers",
            DrawOp::Rop3 { .. } => "rop3",
            DrawOp::Stroke { .. } => "stroke",
            DrawOp::Text { .. } => "text",
            DrawOp::Transparent { .. } => "transparent",
            DrawOp::AlphaBlend { .. } => "alpha_blend",
            DrawOp::Composite { .. } => "composite",
        }
    }
}

/// A validated QXLDrawable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawable {
    /// Destination surface (< n_surfaces).
    pub surface_id: u32,
    /// `QXL_EFFECT_*` (informational).
    pub effect: u8,
    /// `self_bitmap_area` when `self_bitmap` was set.
    pub self_bitmap: Option<Rect>,
    /// Destination rectangle (not inverted).
    pub bbox: Rect,
    /// Clip.
    pub clip: Clip,
    /// Multimedia time.
    pub mm_time: u32,
    /// Source surfaces this drawable depends on (each −1 or < n_surfaces).
    pub surfaces_dest: [i32; 3],
    /// Areas of those surfaces.
    pub surfaces_rects: [Rect; 3],
    /// The operation.
    pub op: DrawOp,
}

fn member<T: FromBytes>(u: &[u8], ty: u8) -> Result<T, DecodeError> {
    T::read_from_prefix(u)
        .map(|(t, _)| t)
        .map_err(|_| DecodeError::UnknownDrawType(ty))
}

fn point(p: &crate::abi::cmd::QxlPoint) -> Point {
    Point {
        x: p.x.get(),
        y: p.y.get(),
    }
}

fn scale(v: u8) -> ScaleMode {
    if v == 0 {
        ScaleMode::Interpolate
    } else {
        ScaleMode::Nearest
    }
}

fn ropd(v: u16) -> Ropd {
    Ropd(v & crate::abi::cmd::ropd::MASK)
}

pub(super) fn decode_drawable(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<Drawable, DecodeError> {
    let d: QxlDrawable = read_struct(mem, addr)?;
    let surface_id = check_surface_id(d.surface_id.get(), limits)?;
    let bbox = Rect::from_wire(&d.bbox).checked("bbox")?;
    let mut surfaces_dest = [-1i32; 3];
    let mut surfaces_rects = [Rect::default(); 3];
    for i in 0..3 {
        let s = d.surfaces_dest[i].get();
        if s != -1 {
            check_surface_id(s as u32, limits)?;
        }
        surfaces_dest[i] = s;
        surfaces_rects[i] = Rect::from_wire(&d.surfaces_rects[i]);
    }
    let clip = decode_clip(mem, d.clip.ty.get(), QxlPhys(d.clip.data.get()), limits)?;
    let op = decode_op(mem, d.ty, &d.u, limits)?;
    Ok(Drawable {
        surface_id,
        effect: d.effect,
        self_bitmap: (d.self_bitmap != 0).then(|| Rect::from_wire(&d.self_bitmap_area)),
        bbox,
        clip,
        mm_time: d.mm_time.get(),
        surfaces_dest,
        surfaces_rects,
        op,
    })
}

/// Decodes a qxl-1 `QXLCompatDrawable` (what revision-1 drivers put on the ring after
/// SET_MODE): no surface id (always the primary), no source surfaces, `bitmap_offset` instead
/// of `self_bitmap`, the ALPHA_BLEND member without `alpha_flags`, and no COMPOSITE. With
/// `colors_16bpp` (a 16-bit SET_MODE, QEMU's COMPAT_16BPP flag) solid colours are x555 and are
/// widened to xRGB, since the renderer works in 32 bits.
pub(super) fn decode_compat_drawable(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    colors_16bpp: bool,
    limits: &Limits,
) -> Result<Drawable, DecodeError> {
    let d: QxlCompatDrawable = read_struct(mem, addr)?;
    let bbox = Rect::from_wire(&d.bbox).checked("bbox")?;
    let clip = decode_clip(mem, d.clip.ty.get(), QxlPhys(d.clip.data.get()), limits)?;
    let mut op = match d.ty {
        draw_type::ALPHA_BLEND => {
            let a: QxlCompatAlphaBlend = member(&d.u, d.ty)?;
            let (src, src_area) = decode_src(mem, a.src_bitmap.get(), &a.src_area, limits)?;
            DrawOp::AlphaBlend {
                alpha_flags: 0,
                alpha: a.alpha,
                src,
                src_area,
            }
        }
        draw_type::COMPOSITE => return Err(DecodeError::UnknownDrawType(d.ty)),
        ty => decode_op(mem, ty, &d.u, limits)?,
    };
    if colors_16bpp {
        widen_solid_colors(&mut op);
    }
    Ok(Drawable {
        surface_id: 0,
        effect: d.effect,
        self_bitmap: (d.bitmap_offset.get() != 0).then(|| Rect::from_wire(&d.bitmap_area)),
        bbox,
        clip,
        mm_time: d.mm_time.get(),
        surfaces_dest: [-1; 3],
        surfaces_rects: [Rect::default(); 3],
        op,
    })
}

/// x555 → xRGB for every solid brush of a compat 16-bit drawable.
fn widen_solid_colors(op: &mut DrawOp) {
    let widen = |b: &mut Brush| {
        if let Brush::Solid(c) = b {
            *c = super::rgb555_to_argb(*c as u16) & 0x00FF_FFFF;
        }
    };
    match op {
        DrawOp::Fill { brush, .. }
        | DrawOp::Opaque { brush, .. }
        | DrawOp::Rop3 { brush, .. }
        | DrawOp::Stroke { brush, .. } => widen(brush),
        DrawOp::Text {
            fore_brush,
            back_brush,
            ..
        } => {
            widen(fore_brush);
            widen(back_brush);
        }
        _ => {}
    }
}

/// Decodes the draw-type member `u` (the drawable's union) of a drawable of type `ty`.
fn decode_op(
    mem: &dyn GuestMemory,
    ty: u8,
    u: &[u8],
    limits: &Limits,
) -> Result<DrawOp, DecodeError> {
    Ok(match ty {
        draw_type::NOP => DrawOp::Nop,
        draw_type::FILL => {
            let f: QxlFill = member(u, ty)?;
            DrawOp::Fill {
                brush: decode_brush(mem, &f.brush, limits)?,
                rop: ropd(f.rop_descriptor.get()),
                mask: decode_mask(mem, &f.mask, limits)?,
            }
        }
        draw_type::OPAQUE => {
            let o: QxlOpaque = member(u, ty)?;
            let (src, src_area) = decode_src(mem, o.src_bitmap.get(), &o.src_area, limits)?;
            DrawOp::Opaque {
                src,
                src_area,
                brush: decode_brush(mem, &o.brush, limits)?,
                rop: ropd(o.rop_descriptor.get()),
                scale_mode: scale(o.scale_mode),
                mask: decode_mask(mem, &o.mask, limits)?,
            }
        }
        draw_type::COPY | draw_type::BLEND => {
            let c: QxlCopy = member(u, ty)?;
            let (src, src_area) = decode_src(mem, c.src_bitmap.get(), &c.src_area, limits)?;
            let rop = ropd(c.rop_descriptor.get());
            let scale_mode = scale(c.scale_mode);
            let mask = decode_mask(mem, &c.mask, limits)?;
            if ty == draw_type::COPY {
                DrawOp::Copy {
                    src,
                    src_area,
                    rop,
                    scale_mode,
                    mask,
                }
            } else {
                DrawOp::Blend {
                    src,
                    src_area,
                    rop,
                    scale_mode,
                    mask,
                }
            }
        }
        draw_type::COPY_BITS => {
            let c: QxlCopyBits = member(u, ty)?;
            DrawOp::CopyBits {
                src_pos: point(&c.src_pos),
            }
        }
        draw_type::BLACKNESS | draw_type::WHITENESS | draw_type::INVERS => {
            let m: QxlQMask = member(u, ty)?;
            let mask = decode_mask(mem, &m, limits)?;
            match ty {
                draw_type::BLACKNESS => DrawOp::Blackness { mask },
                draw_type::WHITENESS => DrawOp::Whiteness { mask },
                _ => DrawOp::Invers { mask },
            }
        }
        draw_type::ROP3 => {
            let r: QxlRop3 = member(u, ty)?;
            let (src, src_area) = decode_src(mem, r.src_bitmap.get(), &r.src_area, limits)?;
            DrawOp::Rop3 {
                src,
                src_area,
                brush: decode_brush(mem, &r.brush, limits)?,
                rop3: r.rop3,
                scale_mode: scale(r.scale_mode),
                mask: decode_mask(mem, &r.mask, limits)?,
            }
        }
        draw_type::STROKE => {
            let s: QxlStroke = member(u, ty)?;
            let a = &s.attr;
            let mut style = Vec::new();
            if a.flags & line_flags::STYLED != 0 && a.style_nseg > 0 {
                let p = QxlPhys(a.style.get());
                let mut b = vec![0u8; a.style_nseg as usize * 4];
                mem.read(p, &mut b)?;
                style = b
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            DrawOp::Stroke {
                path: decode_path(mem, QxlPhys(s.path.get()), limits)?,
                attr: LineAttr {
                    flags: a.flags,
                    join_style: a.join_style,
                    end_style: a.end_style,
                    width: a.width.get(),
                    miter_limit: a.miter_limit.get(),
                    style,
                },
                brush: decode_brush(mem, &s.brush, limits)?,
                fore_mode: ropd(s.fore_mode.get()),
                back_mode: ropd(s.back_mode.get()),
            }
        }
        draw_type::TEXT => {
            let t: QxlText = member(u, ty)?;
            DrawOp::Text {
                string: decode_string(mem, QxlPhys(t.str.get()), limits)?,
                back_area: Rect::from_wire(&t.back_area).checked("text back_area")?,
                fore_brush: decode_brush(mem, &t.fore_brush, limits)?,
                back_brush: decode_brush(mem, &t.back_brush, limits)?,
                fore_mode: ropd(t.fore_mode.get()),
                back_mode: ropd(t.back_mode.get()),
            }
        }
        draw_type::TRANSPARENT => {
            let t: QxlTransparent = member(u, ty)?;
            let (src, src_area) = decode_src(mem, t.src_bitmap.get(), &t.src_area, limits)?;
            DrawOp::Transparent {
                src,
                src_area,
                src_color: t.src_color.get(),
                true_color: t.true_color.get(),
            }
        }
        draw_type::ALPHA_BLEND => {
            let a: QxlAlphaBlend = member(u, ty)?;
            let (src, src_area) = decode_src(mem, a.src_bitmap.get(), &a.src_area, limits)?;
            DrawOp::AlphaBlend {
                alpha_flags: a.alpha_flags.get(),
                alpha: a.alpha,
                src,
                src_area,
            }
        }
        draw_type::COMPOSITE => {
            let c: QxlComposite = member(u, ty)?;
            let f = c.flags.get();
            let src = decode_image(mem, QxlPhys(c.src.get()), limits, Role::Source)?;
            let mask = if c.mask.get() == 0 {
                None
            } else {
                Some(Box::new(decode_image(
                    mem,
                    QxlPhys(c.mask.get()),
                    limits,
                    Role::Source,
                )?))
            };
            let p16 = |p: &crate::abi::cmd::QxlPoint16| Point {
                x: p.x.get() as i32,
                y: p.y.get() as i32,
            };
            DrawOp::Composite {
                op: CompositeOp((f & 0xFF) as u8),
                src_filter: ((f >> 8) & 7) as u8,
                mask_filter: ((f >> 11) & 7) as u8,
                src_repeat: Repeat::from_bits(f >> 14),
                mask_repeat: Repeat::from_bits(f >> 16),
                component_alpha: (f >> 18) & 1 != 0,
                src,
                src_transform: decode_transform(mem, c.src_transform.get())?,
                mask,
                mask_transform: decode_transform(mem, c.mask_transform.get())?,
                src_origin: p16(&c.src_origin),
                mask_origin: p16(&c.mask_origin),
            }
        }
        t => return Err(DecodeError::UnknownDrawType(t)),
    })
}

fn decode_transform(mem: &dyn GuestMemory, addr: u64) -> Result<Option<Transform>, DecodeError> {
    if addr == 0 {
        return Ok(None);
    }
    let t: QxlTransform = read_struct(mem, QxlPhys(addr))?;
    Ok(Some(Transform([
        t.t00.get() as i32,
        t.t01.get() as i32,
        t.t02.get() as i32,
        t.t10.get() as i32,
        t.t11.get() as i32,
        t.t12.get() as i32,
    ])))
}

/// Decodes a source image and checks its area: not inverted, and inside a bitmap source.
fn decode_src(
    mem: &dyn GuestMemory,
    addr: u64,
    area: &crate::abi::cmd::QxlRect,
    limits: &Limits,
) -> Result<(Image, Rect), DecodeError> {
    let img = decode_image(mem, QxlPhys(addr), limits, Role::Source)?;
    let r = Rect::from_wire(area).checked("src_area")?;
    if let ImageKind::Bitmap(b) = &img.kind {
        if r.left < 0
            || r.top < 0
            || r.right as i64 > b.width as i64
            || r.bottom as i64 > b.height as i64
        {
            return Err(DecodeError::BadRect {
                what: "src_area outside the bitmap",
                rect: r,
            });
        }
    }
    Ok((img, r))
}

fn decode_brush(
    mem: &dyn GuestMemory,
    b: &QxlBrush,
    limits: &Limits,
) -> Result<Brush, DecodeError> {
    let u = &b.u;
    match b.ty.get() {
        brush_type::NONE => Ok(Brush::None),
        brush_type::SOLID => Ok(Brush::Solid(u32::from_le_bytes([u[0], u[1], u[2], u[3]]))),
        brush_type::PATTERN => {
            let pat = u64::from_le_bytes([u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]]);
            let x = i32::from_le_bytes([u[8], u[9], u[10], u[11]]);
            let y = i32::from_le_bytes([u[12], u[13], u[14], u[15]]);
            Ok(Brush::Pattern {
                image: decode_image(mem, QxlPhys(pat), limits, Role::Source)?,
                pos: Point { x, y },
            })
        }
        t => Err(DecodeError::BadBrushType(t)),
    }
}

fn decode_mask(
    mem: &dyn GuestMemory,
    m: &QxlQMask,
    limits: &Limits,
) -> Result<Option<Mask>, DecodeError> {
    let b = m.bitmap.get();
    if b == 0 {
        return Ok(None);
    }
    Ok(Some(Mask {
        invers: m.flags & mask_flags::INVERS != 0,
        pos: point(&m.pos),
        image: decode_image(mem, QxlPhys(b), limits, Role::Mask)?,
    }))
}

fn decode_clip(
    mem: &dyn GuestMemory,
    ty: u32,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<Clip, DecodeError> {
    match ty {
        clip_type::NONE => Ok(Clip::None),
        clip_type::RECTS => {
            if addr.is_null() {
                return Err(DecodeError::NullAddress("clip rects"));
            }
            let c: QxlClipRects = read_struct(mem, addr)?;
            let n = c.num_rects.get();
            let bad = |bytes| DecodeError::BadClipRects {
                num_rects: n,
                bytes,
                max: MAX_CLIP_RECTS,
            };
            if n > MAX_CLIP_RECTS {
                return Err(bad(0));
            }
            let want = n as u64 * 16;
            let data = addr.checked_add(24).ok_or(DecodeError::AddressOverflow {
                addr: addr.0,
                len: 24,
            })?;
            let chain = match chunks::walk(mem, &c.chunk, data, want, limits) {
                Ok(ch) => ch,
                Err(DecodeError::ChunkDataTooLarge { total, .. }) => return Err(bad(total)),
                Err(e) => return Err(e),
            };
            if chain.total() != want {
                return Err(bad(chain.total()));
            }
            // Copied once, straight into the rectangles (QXLRect is four little-endian i32s:
            // top, left, bottom, right; the host order is fixed up after the copy).
            let from_le = |r: &mut Rect| {
                *r = Rect {
                    top: i32::from_le(r.top),
                    left: i32::from_le(r.left),
                    bottom: i32::from_le(r.bottom),
                    right: i32::from_le(r.right),
                }
            };
            if n == 1 {
                let mut r = Rect::default();
                chain.read_at(mem, 0, r.as_mut_bytes())?;
                from_le(&mut r);
                return Ok(Clip::Rects(ClipRects(ClipRepr::One(r))));
            }
            let mut rects = vec![Rect::default(); n as usize];
            chain.read_at(mem, 0, rects.as_mut_bytes())?;
            rects.iter_mut().for_each(from_le);
            Ok(Clip::Rects(ClipRects(ClipRepr::Many(rects))))
        }
        t => Err(DecodeError::BadClipType(t)),
    }
}

/// Reads a `{data_size u32, ..., QXLDataChunk}` object's chain into one vector of exactly
/// `data_size` bytes.
fn linearise(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    header_len: u64,
    first: &crate::abi::cmd::QxlDataChunk,
    data_size: u32,
    what: &'static str,
    limits: &Limits,
) -> Result<Vec<u8>, DecodeError> {
    let want = data_size as u64;
    if want > MAX_LINEAR_BYTES {
        return Err(DecodeError::ChunkDataTooLarge {
            total: want,
            max: MAX_LINEAR_BYTES,
        });
    }
    let data = addr
        .checked_add(header_len)
        .ok_or(DecodeError::AddressOverflow {
            addr: addr.0,
            len: header_len,
        })?;
    let chain: GuestChunks = chunks::walk(mem, first, data, want, limits)?;
    if chain.total() != want {
        return Err(DecodeError::ChunkTotalMismatch {
            what,
            expected: want,
            got: chain.total(),
        });
    }
    Ok(chain.to_vec(mem)?)
}

fn decode_path(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<Vec<PathSeg>, DecodeError> {
    if addr.is_null() {
        return Err(DecodeError::NullAddress("path"));
    }
    let p: QxlPath = read_struct(mem, addr)?;
    let size = p.data_size.get();
    let bytes = linearise(mem, addr, 4 + CHUNK_HEADER, &p.chunk, size, "path", limits)?;
    let mut segs = Vec::new();
    let mut at = 0usize;
    let bad = |at: usize| DecodeError::BadPath {
        data_size: size,
        at: at as u64,
    };
    while at < bytes.len() {
        let hdr = bytes.get(at..at + 8).ok_or_else(|| bad(at))?;
        let flags = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let count = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let body = count
            .checked_mul(8)
            .and_then(|n| bytes.get(at + 8..(at + 8).checked_add(n)?))
            .ok_or_else(|| bad(at))?;
        let points = body
            .chunks_exact(8)
            .map(|c| PointFix {
                x: i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                y: i32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        segs.push(PathSeg { flags, points });
        at += 8 + count * 8;
    }
    Ok(segs)
}

fn decode_string(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<GlyphString, DecodeError> {
    if addr.is_null() {
        return Err(DecodeError::NullAddress("glyph string"));
    }
    let s: QxlString = read_struct(mem, addr)?;
    let (size, length, flags) = (s.data_size.get(), s.length.get(), s.flags.get());
    let bad = |why| DecodeError::BadString {
        length,
        flags,
        data_size: size,
        why,
    };
    let bpp = match flags & 7 {
        string_flags::RASTER_A1 => 1u8,
        string_flags::RASTER_A4 => 4,
        string_flags::RASTER_A8 => 8,
        _ => return Err(bad("exactly one of A1/A4/A8 must be set")),
    };
    if length > MAX_GLYPHS {
        return Err(bad("too many glyphs"));
    }
    let bytes = linearise(
        mem,
        addr,
        8 + CHUNK_HEADER,
        &s.chunk,
        size,
        "string",
        limits,
    )?;
    let mut glyphs = Vec::with_capacity(length as usize);
    let mut at = 0usize;
    for _ in 0..length {
        let h = bytes
            .get(at..at + 20)
            .ok_or_else(|| bad("glyph header beyond data"))?;
        let g = |i: usize| i32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let width = u16::from_le_bytes([h[16], h[17]]);
        let height = u16::from_le_bytes([h[18], h[19]]);
        let stride = (width as usize * bpp as usize).div_ceil(8);
        let n = stride * height as usize;
        let data = bytes
            .get(at + 20..at + 20 + n)
            .ok_or_else(|| bad("glyph data beyond data"))?;
        let mut data = data.to_vec();
        if flags & string_flags::RASTER_TOP_DOWN == 0 && stride > 0 {
            // Bottom-up rows: store top row first.
            let rows: Vec<&[u8]> = data.chunks_exact(stride).rev().collect();
            data = rows.concat();
        }
        glyphs.push(Glyph {
            render_pos: Point { x: g(0), y: g(4) },
            glyph_origin: Point { x: g(8), y: g(12) },
            width,
            height,
            data,
        });
        at += 20 + n;
    }
    Ok(GlyphString { bpp, glyphs })
}

fn load_image(img: &mut Image, mem: &dyn GuestMemory) -> Result<(), crate::mem::MemError> {
    if let ImageKind::Bitmap(b) = &mut img.kind {
        if matches!(b.data, super::PixelData::Guest(_)) {
            *b = b.load(mem)?;
        }
    }
    Ok(())
}

fn load_brush(b: &mut Brush, mem: &dyn GuestMemory) -> Result<(), crate::mem::MemError> {
    if let Brush::Pattern { image, .. } = b {
        load_image(image, mem)?;
    }
    Ok(())
}

fn load_mask(m: &mut Option<Mask>, mem: &dyn GuestMemory) -> Result<(), crate::mem::MemError> {
    if let Some(m) = m {
        load_image(&mut m.image, mem)?;
    }
    Ok(())
}

impl Drawable {
    /// Copies every bitmap this drawable references from guest memory to the host
    /// ([`super::PixelData::Owned`]), so the value stays valid after the command is released
    /// and the guest reuses the memory. Call it before handing the drawable to another thread.
    pub fn load_pixels(&mut self, mem: &dyn GuestMemory) -> Result<(), crate::mem::MemError> {
        match &mut self.op {
            DrawOp::Fill { brush, mask, .. } => {
                load_brush(brush, mem)?;
                load_mask(mask, mem)
            }
            DrawOp::Opaque {
                src, brush, mask, ..
            }
            | DrawOp::Rop3 {
                src, brush, mask, ..
            } => {
                load_image(src, mem)?;
                load_brush(brush, mem)?;
                load_mask(mask, mem)
            }
            DrawOp::Copy { src, mask, .. } | DrawOp::Blend { src, mask, .. } => {
                load_image(src, mem)?;
                load_mask(mask, mem)
            }
            DrawOp::Blackness { mask } | DrawOp::Whiteness { mask } | DrawOp::Invers { mask } => {
                load_mask(mask, mem)
            }
            DrawOp::Stroke { brush, .. } => load_brush(brush, mem),
            DrawOp::Text {
                fore_brush,
                back_brush,
                ..
            } => {
                load_brush(fore_brush, mem)?;
                load_brush(back_brush, mem)
            }
            DrawOp::Transparent { src, .. } | DrawOp::AlphaBlend { src, .. } => {
                load_image(src, mem)
            }
            DrawOp::Composite { src, mask, .. } => {
                load_image(src, mem)?;
                if let Some(m) = mask {
                    load_image(m, mem)?;
                }
                Ok(())
            }
            DrawOp::Nop | DrawOp::CopyBits { .. } => Ok(()),
        }
    }
}
