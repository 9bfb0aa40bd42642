//! Drawing decoded drawables into host surfaces.

use super::ops::{self, BRUSH_DEST, BRUSH_SRC, SRC_DEST};
use super::{fix_endian, RenderError, Renderer, Surface};
use crate::abi::cmd::{alpha_flags, line_flags, path_flags, ropd};
use crate::decode::{
    Bitmap, BitmapFormat, Brush, Clip, CompositeOp, DrawOp, Drawable, GlyphString, Image,
    ImageKind, LineAttr, Mask, PathSeg, Point, Rect, Repeat, ScaleMode, SurfaceFormat, Transform,
};
use crate::mem::{GuestMemory, RowSpan};
use zerocopy::IntoBytes;

/// Largest image held whole in host memory (patterns, composite sources): 16 Mi pixels.
const MAX_WHOLE_IMAGE_PIXELS: u64 = 1 << 24;
/// Largest number of pixels one stroke may visit.
const MAX_STROKE_STEPS: u64 = 1 << 24;

/// The pixels a source image provides.
enum Src<'a> {
    Bitmap(&'a Bitmap),
    Surface(&'a Surface),
    /// A copy (the destination surface used as its own source).
    Owned {
        w: u32,
        h: u32,
        px: Vec<u32>,
        alpha: bool,
    },
}

impl Src<'_> {
    fn size(&self) -> (u32, u32) {
        match self {
            Src::Bitmap(b) => (b.width, b.height),
            Src::Surface(s) => (s.width, s.height),
            Src::Owned { w, h, .. } => (*w, *h),
        }
    }

    fn has_alpha(&self) -> bool {
        match self {
            Src::Bitmap(b) => b.format.has_alpha(),
            Src::Surface(s) => s.has_alpha(),
            Src::Owned { alpha, .. } => *alpha,
        }
    }

    /// Pixels `x0 .. x0+out.len()` of row `y` as 0xAARRGGBB. The caller keeps the range inside
    /// the source.
    fn row(
        &self,
        mem: &dyn GuestMemory,
        y: u32,
        x0: u32,
        out: &mut [u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        match self {
            Src::Bitmap(b) => b.row_argb(mem, y, x0, out, scratch)?,
            Src::Surface(s) => {
                let at = y as usize * s.width as usize + x0 as usize;
                out.copy_from_slice(&s.px[at..at + out.len()]);
                if !s.has_alpha() {
                    out.iter_mut().for_each(|p| *p |= 0xFF00_0000);
                }
            }
            Src::Owned { w, px, alpha, .. } => {
                let at = y as usize * *w as usize + x0 as usize;
                out.copy_from_slice(&px[at..at + out.len()]);
                if !alpha {
                    out.iter_mut().for_each(|p| *p |= 0xFF00_0000);
                }
            }
        }
        Ok(())
    }

    /// The whole source as top-down pixels (bounded).
    fn whole(&self, mem: &dyn GuestMemory, what: &'static str) -> Result<Vec<u32>, RenderError> {
        let (w, h) = self.size();
        let pixels = w as u64 * h as u64;
        if pixels > MAX_WHOLE_IMAGE_PIXELS {
            return Err(RenderError::ImageTooLarge {
                what,
                pixels,
                max: MAX_WHOLE_IMAGE_PIXELS,
            });
        }
        let mut v = vec![0u32; pixels as usize];
        let mut scratch = Vec::new();
        if w > 0 {
            for (y, row) in v.chunks_exact_mut(w as usize).enumerate() {
                self.row(mem, y as u32, 0, row, &mut scratch)?;
            }
        }
        Ok(v)
    }
}

/// A brush resolved for drawing.
enum BrushPx {
    None,
    Solid(u32),
    Tile {
        w: u32,
        h: u32,
        px: Vec<u32>,
        pos: Point,
    },
}

impl BrushPx {
    #[inline]
    fn at(&self, x: i32, y: i32) -> u32 {
        match self {
            BrushPx::None => 0,
            BrushPx::Solid(c) => *c,
            BrushPx::Tile { w, h, px, pos } => {
                let tx = (x as i64 - pos.x as i64).rem_euclid(*w as i64) as usize;
                let ty = (y as i64 - pos.y as i64).rem_euclid(*h as i64) as usize;
                px[ty * *w as usize + tx]
            }
        }
    }
}

/// A 1-bit mask resolved for drawing.
struct MaskPx<'a> {
    bitmap: &'a Bitmap,
    invers: bool,
    /// Mask coordinate of the bbox's top-left pixel.
    pos: Point,
    bbox: Rect,
}

impl MaskPx<'_> {
    /// Whether each pixel `x0 .. x0+n` of destination row `y` is drawn.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        mem: &dyn GuestMemory,
        y: i32,
        x0: i32,
        n: usize,
        out: &mut Vec<bool>,
        bits: &mut Vec<bool>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        out.clear();
        let my = y as i64 - self.bbox.top as i64 + self.pos.y as i64;
        let inside_y = my >= 0 && my < self.bitmap.height as i64;
        if inside_y {
            self.bitmap.mask_row(mem, my as u32, bits, scratch)?;
        }
        for i in 0..n {
            let mx = (x0 as i64 + i as i64) - self.bbox.left as i64 + self.pos.x as i64;
            let bit = inside_y && mx >= 0 && bits.get(mx as usize).copied().unwrap_or(false);
            out.push(bit != self.invers);
        }
        Ok(())
    }
}

/// Disjoint rectangles; a single rectangle needs no heap allocation.
pub(crate) enum Region {
    One([Rect; 1]),
    Many(Vec<Rect>),
}

impl std::ops::Deref for Region {
    type Target = [Rect];
    fn deref(&self) -> &[Rect] {
        match self {
            Region::One(r) => r,
            Region::Many(v) => v,
        }
    }
}

/// The drawable's area as disjoint rectangles: bbox ∩ surface ∩ union(clip rects).
pub(crate) fn clip_region(bbox: Rect, bounds: Rect, clip: &Clip) -> Region {
    let area = bbox.intersect(&bounds);
    if area.is_empty() {
        return Region::Many(Vec::new());
    }
    match clip {
        Clip::None => Region::One([area]),
        Clip::Rects(rs) if rs.len() == 1 => {
            let r = rs[0].intersect(&area);
            if r.is_empty() {
                Region::Many(Vec::new())
            } else {
                Region::One([r])
            }
        }
        Clip::Rects(rs) => Region::Many(disjoint(rs, area)),
    }
}

/// The clip rects inside `area` as disjoint rectangles (band sweep: split at every distinct
/// top/bottom, merge the x spans of each band).
fn disjoint(rs: &[Rect], area: Rect) -> Vec<Rect> {
    let rects: Vec<Rect> = rs
        .iter()
        .map(|r| r.intersect(&area))
        .filter(|r| !r.is_empty())
        .collect();
    if rects.len() <= 1 {
        return rects;
    }
    // Band sweep: split at every distinct top/bottom, merge x spans per band.
    let mut ys: Vec<i32> = rects.iter().flat_map(|r| [r.top, r.bottom]).collect();
    ys.sort_unstable();
    ys.dedup();
    let mut out = Vec::new();
    let mut spans: Vec<(i32, i32)> = Vec::new();
    for band in ys.windows(2) {
        let (y0, y1) = (band[0], band[1]);
        spans.clear();
        spans.extend(
            rects
                .iter()
                .filter(|r| r.top <= y0 && r.bottom >= y1)
                .map(|r| (r.left, r.right)),
        );
        spans.sort_unstable();
        let mut cur: Option<(i32, i32)> = None;
        for &(l, r) in &spans {
            cur = match cur {
                Some((cl, cr)) if l <= cr => Some((cl, cr.max(r))),
                Some((cl, cr)) => {
                    out.push(Rect::new(cl, y0, cr, y1));
                    Some((l, r))
                }
                None => Some((l, r)),
            };
        }
        if let Some((cl, cr)) = cur {
            out.push(Rect::new(cl, y0, cr, y1));
        }
    }
    out
}

impl Renderer {
    pub(super) fn draw_drawable(
        &mut self,
        d: &Drawable,
        mem: &dyn GuestMemory,
    ) -> Result<(), RenderError> {
        let i = self.check_id(d.surface_id)?;
        let mut dst = self.surfaces[i]
            .take()
            .ok_or(RenderError::NoSuchSurface(d.surface_id))?;
        let r = self.draw_into(&mut dst, d, mem);
        // Write-through: the guest's surface memory always holds what was drawn, as with
        // spice-server (which renders into it). Guest drivers read it without UPDATE_AREA: the
        // Linux qxl driver's dirty-fb path copies a framebuffer object's memory into an image
        // (after an Xorg resize the new front buffer was drawn by commands only).
        let w = match &r {
            Ok(()) => dst.write_back(d.bbox, mem),
            Err(_) => Ok(()),
        };
        self.surfaces[i] = Some(dst);
        r.and(w)
    }

    fn resolve_src<'a>(
        &'a self,
        img: &'a Image,
        dst: &Surface,
        dst_id: u32,
    ) -> Result<Src<'a>, RenderError> {
        match &img.kind {
            ImageKind::Bitmap(b) => Ok(Src::Bitmap(b)),
            ImageKind::Surface { surface_id } if *surface_id == dst_id => Ok(Src::Owned {
                w: dst.width,
                h: dst.height,
                px: dst.px.clone(),
                alpha: dst.has_alpha(),
            }),
            ImageKind::Surface { surface_id } => self
                .surface(*surface_id)
                .map(Src::Surface)
                .ok_or(RenderError::NoSuchSurface(*surface_id)),
        }
    }

    fn resolve_brush(
        &self,
        b: &Brush,
        dst: &Surface,
        dst_id: u32,
        mem: &dyn GuestMemory,
    ) -> Result<BrushPx, RenderError> {
        Ok(match b {
            Brush::None => BrushPx::None,
            Brush::Solid(c) => BrushPx::Solid(*c),
            Brush::Pattern { image, pos } => {
                let src = self.resolve_src(image, dst, dst_id)?;
                let (w, h) = src.size();
                if w == 0 || h == 0 {
                    BrushPx::None
                } else {
                    BrushPx::Tile {
                        w,
                        h,
                        px: src.whole(mem, "pattern brush")?,
                        pos: *pos,
                    }
                }
            }
        })
    }

    fn draw_into(
        &self,
        dst: &mut Surface,
        d: &Drawable,
        mem: &dyn GuestMemory,
    ) -> Result<(), RenderError> {
        let rects = clip_region(d.bbox, dst.bounds(), &d.clip);
        if rects.is_empty() && !matches!(d.op, DrawOp::Text { .. }) {
            return Ok(());
        }
        let id = d.surface_id;
        let bbox = d.bbox;

        match &d.op {
            DrawOp::Nop => Ok(()),
            DrawOp::Fill { brush, rop, mask } => {
                let b = self.resolve_brush(brush, dst, id, mem)?;
                if matches!(b, BrushPx::None) {
                    return Ok(());
                }
                let mask = mask_px(mask, bbox);
                if let (BrushPx::Solid(c), None) = (&b, &mask) {
                    if ops::is_plain_put(rop.0, BRUSH_DEST) {
                        fill_rects(dst, &rects, *c);
                        return Ok(());
                    }
                }
                let r = rop.0;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    None,
                    Some(&b),
                    mask.as_ref(),
                    |_, b, d| ops::ropd_apply(r, BRUSH_DEST, b, d),
                )
            }
            DrawOp::Copy {
                src,
                src_area,
                rop,
                scale_mode,
                mask,
                ..
            }
            | DrawOp::Blend {
                src,
                src_area,
                rop,
                scale_mode,
                mask,
                ..
            } => {
                let s = self.resolve_src(src, dst, id)?;
                check_area(&s, *src_area, src)?;
                let mask = mask_px(mask, bbox);
                if mask.is_none()
                    && ops::is_plain_put(rop.0, SRC_DEST)
                    && copy_fast(dst, &rects, bbox, &s, *src_area, mem)?
                {
                    return Ok(());
                }
                let r = rop.0;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    Some((&s, *src_area, *scale_mode == ScaleMode::Interpolate)),
                    None,
                    mask.as_ref(),
                    |s, _, d| ops::ropd_apply(r, SRC_DEST, s, d),
                )
            }
            DrawOp::Opaque {
                src,
                src_area,
                brush,
                rop,
                scale_mode,
                mask,
                ..
            } => {
                let s = self.resolve_src(src, dst, id)?;
                check_area(&s, *src_area, src)?;
                let b = self.resolve_brush(brush, dst, id, mem)?;
                let none = matches!(b, BrushPx::None);
                let r = rop.0;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    Some((&s, *src_area, *scale_mode == ScaleMode::Interpolate)),
                    Some(&b),
                    mask_px(mask, bbox).as_ref(),
                    |s, b, _| {
                        if none {
                            s
                        } else {
                            ops::ropd_apply(r, BRUSH_SRC, b, s)
                        }
                    },
                )
            }
            DrawOp::CopyBits { src_pos } => {
                copy_bits(dst, &rects, bbox, *src_pos);
                Ok(())
            }
            DrawOp::Blackness { mask } | DrawOp::Whiteness { mask } | DrawOp::Invers { mask } => {
                let op = match &d.op {
                    DrawOp::Blackness { .. } => |_: u32| 0,
                    DrawOp::Whiteness { .. } => |_: u32| 0xFFFF_FFFF,
                    _ => |d: u32| !d,
                };
                let m = mask_px(mask, bbox);
                paint(dst, &rects, bbox, mem, None, None, m.as_ref(), |_, _, d| {
                    op(d)
                })
            }
            DrawOp::Rop3 {
                src,
                src_area,
                brush,
                rop3,
                scale_mode,
                mask,
                ..
            } => {
                let s = self.resolve_src(src, dst, id)?;
                check_area(&s, *src_area, src)?;
                let b = self.resolve_brush(brush, dst, id, mem)?;
                let code = *rop3;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    Some((&s, *src_area, *scale_mode == ScaleMode::Interpolate)),
                    Some(&b),
                    mask_px(mask, bbox).as_ref(),
                    |s, p, d| ops::rop3(code, p, s, d),
                )
            }
            DrawOp::Transparent {
                src,
                src_area,
                src_color,
                ..
            } => {
                let s = self.resolve_src(src, dst, id)?;
                check_area(&s, *src_area, src)?;
                let key = *src_color & 0xFF_FFFF;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    Some((&s, *src_area, false)),
                    None,
                    None,
                    |s, _, d| {
                        if s & 0xFF_FFFF == key {
                            d
                        } else {
                            s
                        }
                    },
                )
            }
            DrawOp::AlphaBlend {
                alpha_flags: f,
                alpha,
                src,
                src_area,
            } => {
                let s = self.resolve_src(src, dst, id)?;
                check_area(&s, *src_area, src)?;
                let use_sa = f & alpha_flags::SRC_SURFACE_HAS_ALPHA != 0;
                let dest_alpha = f & alpha_flags::DEST_HAS_ALPHA != 0;
                let a = *alpha as u32;
                paint(
                    dst,
                    &rects,
                    bbox,
                    mem,
                    Some((&s, *src_area, true)),
                    None,
                    None,
                    |s, _, d| {
                        let sa = if use_sa { s >> 24 } else { 255 };
                        ops::over_alpha(s, sa, a, d, dest_alpha)
                    },
                )
            }
            DrawOp::Stroke {
                path,
                attr,
                brush,
                fore_mode,
                ..
            } => {
                let b = self.resolve_brush(brush, dst, id, mem)?;
                if matches!(b, BrushPx::None) {
                    return Ok(());
                }
                stroke(dst, &rects, path, attr, &b, fore_mode.0);
                Ok(())
            }
            DrawOp::Text {
                string,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                let fb = self.resolve_brush(fore_brush, dst, id, mem)?;
                let bb = self.resolve_brush(back_brush, dst, id, mem)?;
                if back_mode.0 != 0 && !matches!(bb, BrushPx::None) {
                    let back = clip_region(*back_area, dst.bounds(), &d.clip)
                        .iter()
                        .map(|r| r.intersect(&bbox))
                        .filter(|r| !r.is_empty())
                        .collect::<Vec<_>>();
                    let m = back_mode.0;
                    paint(
                        dst,
                        &back,
                        *back_area,
                        mem,
                        None,
                        Some(&bb),
                        None,
                        |_, b, d| ops::ropd_apply(m, BRUSH_DEST, b, d),
                    )?;
                }
                if !matches!(fb, BrushPx::None) {
                    text(dst, &rects, string, &fb, fore_mode.0);
                }
                Ok(())
            }
            DrawOp::Composite {
                op,
                src_repeat,
                mask_repeat,
                src,
                src_transform,
                mask,
                mask_transform,
                src_origin,
                mask_origin,
                component_alpha,
                ..
            } => {
                let s = self.resolve_src(src, dst, id)?;
                let sp = Sampler::new(s, mem, *src_repeat, *src_transform, *src_origin)?;
                let mp = match mask {
                    Some(m) => {
                        let ms = self.resolve_src(m, dst, id)?;
                        Some(Sampler::new(
                            ms,
                            mem,
                            *mask_repeat,
                            *mask_transform,
                            *mask_origin,
                        )?)
                    }
                    None => None,
                };
                composite(dst, &rects, bbox, *op, &sp, mp.as_ref(), *component_alpha);
                Ok(())
            }
        }
    }
}

fn mask_px(m: &Option<Mask>, bbox: Rect) -> Option<MaskPx<'_>> {
    m.as_ref().and_then(|m| {
        m.image.bitmap().map(|b| MaskPx {
            bitmap: b,
            invers: m.invers,
            pos: m.pos,
            bbox,
        })
    })
}

/// Checks a source area against a surface source (bitmap areas were checked when decoding).
fn check_area(s: &Src<'_>, area: Rect, img: &Image) -> Result<(), RenderError> {
    let (w, h) = s.size();
    if area.left < 0
        || area.top < 0
        || area.right as i64 > w as i64
        || area.bottom as i64 > h as i64
        || area.left > area.right
        || area.top > area.bottom
    {
        let surface = match img.kind {
            ImageKind::Surface { surface_id } => surface_id,
            ImageKind::Bitmap(_) => u32::MAX,
        };
        return Err(RenderError::SourceOutOfBounds {
            surface,
            area,
            width: w,
            height: h,
        });
    }
    Ok(())
}

fn fill_rects(dst: &mut Surface, rects: &[Rect], c: u32) {
    let w = dst.width as usize;
    for r in rects {
        for y in r.top as usize..r.bottom as usize {
            dst.px[y * w + r.left as usize..y * w + r.right as usize].fill(c);
        }
    }
}

/// Maps a destination coordinate inside the bbox to the source coordinate (nearest).
#[inline]
fn map(d: i32, bbox0: i32, bsize: u32, s0: i32, ssize: u32) -> u32 {
    let off = (d as i64 - bbox0 as i64).max(0);
    if bsize == ssize {
        (s0 as i64 + off) as u32
    } else {
        (s0 as i64 + (off * ssize as i64 / bsize.max(1) as i64)) as u32
    }
}

/// The COPY fast path: 32-bit source rows written straight into the destination, no scaling,
/// no per-pixel work. Returns false when the case does not apply.
fn copy_fast(
    dst: &mut Surface,
    rects: &[Rect],
    bbox: Rect,
    s: &Src<'_>,
    area: Rect,
    mem: &dyn GuestMemory,
) -> Result<bool, RenderError> {
    if area.width() != bbox.width() || area.height() != bbox.height() {
        return Ok(false);
    }
    let w = dst.width as usize;
    let dx = area.left as i64 - bbox.left as i64;
    let dy = area.top as i64 - bbox.top as i64;
    match s {
        Src::Bitmap(b) => {
            let ok = matches!(
                (b.format, dst.format),
                (
                    BitmapFormat::Xrgb32 | BitmapFormat::Rgba32,
                    SurfaceFormat::Xrgb32
                ) | (BitmapFormat::Rgba32, SurfaceFormat::Argb32)
            );
            if !ok {
                return Ok(false);
            }
            for r in rects {
                if r.is_empty() {
                    continue;
                }
                let sy = (r.top as i64 + dy) as u32;
                let sx = (r.left as i64 + dx) as usize;
                let n = (r.right - r.left) as usize;
                let rows = RowSpan {
                    rows: (r.bottom - r.top) as usize,
                    row_len: n * 4,
                    stride: 0, // the bitmap's own
                    dst_stride: w * 4,
                };
                // The destination rows as one span: row `top` to the end of row `bottom - 1`.
                let first = r.top as usize * w + r.left as usize;
                let last = (r.bottom as usize - 1) * w + r.right as usize;
                let span = &mut dst.px[first..last];
                b.read_rect_bytes(mem, sy, sx * 4, rows, span.as_mut_bytes())?;
                for y in r.top as usize..r.bottom as usize {
                    fix_endian(&mut dst.px[y * w + r.left as usize..y * w + r.right as usize]);
                }
            }
            Ok(true)
        }
        Src::Surface(src) if src.format == dst.format && src.format.bpp() == 32 => {
            let sw = src.width as usize;
            for r in rects {
                for y in r.top..r.bottom {
                    let sy = (y as i64 + dy) as usize;
                    let sx = (r.left as i64 + dx) as usize;
                    let n = (r.right - r.left) as usize;
                    dst.px[y as usize * w + r.left as usize..][..n]
                        .copy_from_slice(&src.px[sy * sw + sx..][..n]);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The general per-pixel loop: `f(src, brush, dest)` for every drawn pixel.
#[allow(clippy::too_many_arguments)]
fn paint<F>(
    dst: &mut Surface,
    rects: &[Rect],
    bbox: Rect,
    mem: &dyn GuestMemory,
    src: Option<(&Src<'_>, Rect, bool)>,
    brush: Option<&BrushPx>,
    mask: Option<&MaskPx<'_>>,
    mut f: F,
) -> Result<(), RenderError>
where
    F: FnMut(u32, u32, u32) -> u32,
{
    let w = dst.width as usize;
    let (mut srow, mut full, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let mut full2 = Vec::new();
    let (mut mrow, mut mbits, mut mscratch) = (Vec::new(), Vec::new(), Vec::new());
    let (bw, bh) = (bbox.width(), bbox.height());
    for r in rects {
        let n = (r.right - r.left) as usize;
        for y in r.top..r.bottom {
            if let Some((s, area, smooth)) = src {
                let (sw, sh) = (area.width(), area.height());
                srow.clear();
                srow.resize(n, 0);
                if sw == 0 || sh == 0 {
                    continue;
                }
                let sy = map(y, bbox.top, bh, area.top, sh);
                if smooth && (sw != bw || sh != bh) {
                    let (y0, y1, wy) = bilinear_pos(y as i64 - bbox.top as i64, bh, sh);
                    full.clear();
                    full.resize(sw as usize, 0);
                    full2.clear();
                    full2.resize(sw as usize, 0);
                    let top = area.top as u32;
                    s.row(mem, top + y0, area.left as u32, &mut full, &mut scratch)?;
                    s.row(mem, top + y1, area.left as u32, &mut full2, &mut scratch)?;
                    for (i, o) in srow.iter_mut().enumerate() {
                        let dx = (r.left as i64 + i as i64) - bbox.left as i64;
                        let (x0, x1, wx) = bilinear_pos(dx, bw, sw);
                        let (x0, x1) = (x0 as usize, x1 as usize);
                        *o = bilinear(full[x0], full[x1], full2[x0], full2[x1], wx, wy);
                    }
                } else if sw == bw {
                    let sx0 = map(r.left, bbox.left, bw, area.left, sw);
                    s.row(mem, sy, sx0, &mut srow, &mut scratch)?;
                } else {
                    full.clear();
                    full.resize(sw as usize, 0);
                    s.row(mem, sy, area.left as u32, &mut full, &mut scratch)?;
                    for (i, o) in srow.iter_mut().enumerate() {
                        let sx = map(r.left + i as i32, bbox.left, bw, 0, sw) as usize;
                        *o = full[sx.min(full.len() - 1)];
                    }
                }
            }
            if let Some(m) = mask {
                m.row(mem, y, r.left, n, &mut mrow, &mut mbits, &mut mscratch)?;
            }
            let row = &mut dst.px[y as usize * w..(y as usize + 1) * w];
            for i in 0..n {
                if mask.is_some() && !mrow[i] {
                    continue;
                }
                let x = r.left + i as i32;
                let s = if src.is_some() { srow[i] } else { 0 };
                let b = brush.map_or(0, |b| b.at(x, y));
                let d = &mut row[x as usize];
                *d = f(s, b, *d);
            }
        }
    }
    Ok(())
}

/// Source sample positions for destination offset `d` when `dsize` pixels show `ssize`
/// source pixels: pixel centres map as `(d + ½)·ssize/dsize − ½`; returns the two source
/// indices and the weight of the second in 1/256 (pixman's bilinear convention, edges clamped).
fn bilinear_pos(d: i64, dsize: u32, ssize: u32) -> (u32, u32, u32) {
    let f = ((d as f64 + 0.5) * ssize as f64 / dsize.max(1) as f64 - 0.5).max(0.0);
    let i0 = (f.floor() as u64).min(ssize as u64 - 1) as u32;
    let i1 = (i0 + 1).min(ssize - 1);
    let w = ((f - f.floor()) * 256.0).round() as u32;
    (i0, i1, w.min(256))
}

/// Bilinear blend of four 0xAARRGGBB pixels with weights `wx`, `wy` in 1/256:
/// per channel `(p00·(256−wx)(256−wy) + p10·wx(256−wy) + p01·(256−wx)wy + p11·wx·wy + 2^15) >> 16`.
fn bilinear(p00: u32, p10: u32, p01: u32, p11: u32, wx: u32, wy: u32) -> u32 {
    let mut out = 0u32;
    for sh in [0u32, 8, 16, 24] {
        let c = |p: u32| ((p >> sh) & 0xFF) as u64;
        let (wx, wy) = (wx as u64, wy as u64);
        let v = c(p00) * (256 - wx) * (256 - wy)
            + c(p10) * wx * (256 - wy)
            + c(p01) * (256 - wx) * wy
            + c(p11) * wx * wy;
        out |= (((v + (1 << 15)) >> 16).min(255) as u32) << sh;
    }
    out
}

/// COPY_BITS: the bbox-sized area at `src_pos` of the same surface is copied to the bbox
/// (overlap-safe: the source is read before anything is written). Source pixels outside the
/// surface leave their destination unchanged.
fn copy_bits(dst: &mut Surface, rects: &[Rect], bbox: Rect, src_pos: Point) {
    let dx = src_pos.x as i64 - bbox.left as i64;
    let dy = src_pos.y as i64 - bbox.top as i64;
    let (sw, sh) = (dst.width as i64, dst.height as i64);
    let w = dst.width as usize;
    for r in rects {
        let n = (r.right - r.left) as usize;
        // Copy the source rows of this rect first.
        let mut tmp: Vec<Option<u32>> = Vec::with_capacity(n * r.height() as usize);
        for y in r.top..r.bottom {
            let sy = y as i64 + dy;
            for x in r.left..r.right {
                let sx = x as i64 + dx;
                tmp.push(
                    (sx >= 0 && sy >= 0 && sx < sw && sy < sh)
                        .then(|| dst.px[sy as usize * w + sx as usize]),
                );
            }
        }
        for (k, y) in (r.top..r.bottom).enumerate() {
            for (i, x) in (r.left..r.right).enumerate() {
                if let Some(p) = tmp[k * n + i] {
                    dst.px[y as usize * w + x as usize] = p;
                }
            }
        }
    }
}

/// Membership of a pixel in a set of disjoint rectangles, as a bitset over their bounds
/// (at most the surface's size), so per-pixel tests are O(1).
struct Coverage {
    bounds: Rect,
    bits: Vec<u64>,
}

impl Coverage {
    fn new(rects: &[Rect]) -> Option<Self> {
        let bounds = rects.iter().copied().reduce(|a, r| {
            Rect::new(
                a.left.min(r.left),
                a.top.min(r.top),
                a.right.max(r.right),
                a.bottom.max(r.bottom),
            )
        })?;
        let w = bounds.width() as usize;
        let mut bits = vec![0u64; (w * bounds.height() as usize).div_ceil(64)];
        for r in rects {
            for y in r.top..r.bottom {
                for x in r.left..r.right {
                    let i = (y - bounds.top) as usize * w + (x - bounds.left) as usize;
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
        }
        Some(Coverage { bounds, bits })
    }

    #[inline]
    fn contains(&self, x: i64, y: i64) -> bool {
        let b = &self.bounds;
        if x < b.left as i64 || y < b.top as i64 || x >= b.right as i64 || y >= b.bottom as i64 {
            return false;
        }
        let i = (y - b.top as i64) as usize * b.width() as usize + (x - b.left as i64) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Marks a pixel as no longer drawable; returns whether it was.
    #[inline]
    fn take(&mut self, x: i64, y: i64) -> bool {
        if !self.contains(x, y) {
            return false;
        }
        let b = &self.bounds;
        let i = (y - b.top as i64) as usize * b.width() as usize + (x - b.left as i64) as usize;
        self.bits[i / 64] &= !(1 << (i % 64));
        true
    }
}

/// Clips the segment to `r` (Liang–Barsky, in f64); `None` if it misses.
fn clip_line(p0: (f64, f64), p1: (f64, f64), r: Rect) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (p1.0 - p0.0, p1.1 - p0.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    let edges = [
        (-dx, p0.0 - r.left as f64),
        (dx, (r.right - 1) as f64 - p0.0),
        (-dy, p0.1 - r.top as f64),
        (dy, (r.bottom - 1) as f64 - p0.1),
    ];
    for (p, q) in edges {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    Some((
        (p0.0 + t0 * dx, p0.1 + t0 * dy),
        (p0.0 + t1 * dx, p0.1 + t1 * dy),
    ))
}

/// 1-pixel lines along the path (the line width is not rendered), dashed when styled; every
/// pixel is touched once, so XOR strokes are exact. Béziers are flattened into 16 steps.
fn stroke(
    dst: &mut Surface,
    rects: &[Rect],
    path: &[PathSeg],
    attr: &LineAttr,
    b: &BrushPx,
    rop: u16,
) {
    let dash = Dash::new(attr);
    // Each clip pixel is drawn at most once: taken out of the coverage when drawn.
    let Some(mut cov) = Coverage::new(rects) else {
        return;
    };
    let bounds = cov.bounds;
    let fx = |v: i32| v as f64 / 16.0;
    // Build the polyline list.
    let mut lines: Vec<((f64, f64), (f64, f64))> = Vec::new();
    let mut cur: Option<(f64, f64)> = None;
    let mut start: Option<(f64, f64)> = None;
    for seg in path {
        let pts: Vec<(f64, f64)> = seg.points.iter().map(|p| (fx(p.x), fx(p.y))).collect();
        let mut it = pts.into_iter();
        if seg.flags & path_flags::BEGIN != 0 || cur.is_none() {
            cur = it.next();
            start = cur;
        }
        if seg.flags & path_flags::BEZIER != 0 {
            let rest: Vec<_> = it.collect();
            for c in rest.chunks_exact(3) {
                let Some(p0) = cur else { break };
                let mut prev = p0;
                for k in 1..=16 {
                    let t = k as f64 / 16.0;
                    let u = 1.0 - t;
                    let q = (
                        u * u * u * p0.0
                            + 3.0 * u * u * t * c[0].0
                            + 3.0 * u * t * t * c[1].0
                            + t * t * t * c[2].0,
                        u * u * u * p0.1
                            + 3.0 * u * u * t * c[0].1
                            + 3.0 * u * t * t * c[1].1
                            + t * t * t * c[2].1,
                    );
                    lines.push((prev, q));
                    prev = q;
                }
                cur = Some(c[2]);
            }
        } else {
            for p in it {
                if let Some(c) = cur {
                    lines.push((c, p));
                }
                cur = Some(p);
            }
        }
        if seg.flags & path_flags::END != 0 {
            if seg.flags & path_flags::CLOSE != 0 {
                if let (Some(c), Some(s)) = (cur, start) {
                    lines.push((c, s));
                }
            }
            cur = None;
        }
    }
    let w = dst.width as usize;
    let mut steps = 0u64;
    // Distance along the path (in major-axis pixels) where each line starts, for dashes.
    let mut dstart = 0f64;
    for (p0, p1) in lines {
        let line_start = dstart;
        dstart += (p1.0 - p0.0).abs().max((p1.1 - p0.1).abs());
        let Some((a, b2)) = clip_line(p0, p1, bounds) else {
            continue;
        };
        let mut dist = line_start + (a.0 - p0.0).abs().max((a.1 - p0.1).abs());
        let (x0, y0) = (a.0.round() as i64, a.1.round() as i64);
        let (x1, y1) = (b2.0.round() as i64, b2.1.round() as i64);
        // Bresenham.
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            steps += 1;
            if steps > MAX_STROKE_STEPS {
                return;
            }
            let on = dash.as_ref().is_none_or(|d| d.on(dist));
            dist += 1.0;
            if on && cov.take(x, y) {
                let d = &mut dst.px[y as usize * w + x as usize];
                *d = ops::ropd_apply(rop, BRUSH_DEST, b.at(x as i32, y as i32), *d);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// A dash pattern (`SPICE_LINE_FLAGS_STYLED`): alternating on/off lengths in pixels, starting
/// with "on" unless START_WITH_GAP; the phase runs continuously along the whole path.
struct Dash {
    segs: Vec<f64>,
    total: f64,
    gap_first: bool,
}

impl Dash {
    fn new(attr: &LineAttr) -> Option<Self> {
        if attr.flags & line_flags::STYLED == 0 || attr.style.is_empty() {
            return None;
        }
        let segs: Vec<f64> = attr
            .style
            .iter()
            .map(|&v| (v.max(0) as f64) / 16.0)
            .collect();
        let total: f64 = segs.iter().sum();
        if total < 1.0 / 16.0 {
            return None;
        }
        Some(Dash {
            segs,
            total,
            gap_first: attr.flags & line_flags::START_WITH_GAP != 0,
        })
    }

    fn on(&self, dist: f64) -> bool {
        let mut m = dist.rem_euclid(self.total);
        for (i, s) in self.segs.iter().enumerate() {
            if m < *s {
                return (i % 2 == 0) != self.gap_first;
            }
            m -= s;
        }
        false
    }
}

/// Glyphs: A1 bits use the foreground rop; A4/A8 coverage blends the foreground colour over
/// the destination (a plain PUT) or, for other rops, applies the rop where coverage ≥ 50 %.
fn text(dst: &mut Surface, rects: &[Rect], s: &GlyphString, b: &BrushPx, rop: u16) {
    let Some(clip) = Coverage::new(rects) else {
        return;
    };
    let bounds = clip.bounds;
    let w = dst.width as usize;
    let put = rop & ropd::OP_PUT != 0 && rop & (ropd::INVERS_BRUSH | ropd::INVERS_RES) == 0;
    for g in &s.glyphs {
        let stride = (g.width as usize * s.bpp as usize).div_ceil(8);
        let ox = g.render_pos.x as i64 + g.glyph_origin.x as i64;
        let oy = g.render_pos.y as i64 + g.glyph_origin.y as i64;
        // Only the part of the glyph inside the clip bounds is visited.
        let gy0 = (bounds.top as i64 - oy).clamp(0, g.height as i64) as usize;
        let gy1 = (bounds.bottom as i64 - oy).clamp(0, g.height as i64) as usize;
        let gx0 = (bounds.left as i64 - ox).clamp(0, g.width as i64) as usize;
        let gx1 = (bounds.right as i64 - ox).clamp(0, g.width as i64) as usize;
        for gy in gy0..gy1 {
            let y = oy + gy as i64;
            for gx in gx0..gx1 {
                let x = ox + gx as i64;
                if !clip.contains(x, y) {
                    continue;
                }
                let row = &g.data[gy * stride..(gy + 1) * stride];
                let cov = match s.bpp {
                    1 => ((row[gx / 8] >> (7 - gx % 8)) & 1) as u32 * 255,
                    4 => {
                        let byte = row[gx / 2];
                        let v = if gx % 2 == 0 { byte >> 4 } else { byte & 15 };
                        v as u32 * 17
                    }
                    _ => row[gx] as u32,
                };
                if cov == 0 {
                    continue;
                }
                let fg = b.at(x as i32, y as i32);
                let d = &mut dst.px[y as usize * w + x as usize];
                *d = if put && s.bpp != 1 {
                    ops::lerp(fg, *d, cov)
                } else if cov >= 128 {
                    ops::ropd_apply(rop, BRUSH_DEST, fg, *d)
                } else {
                    *d
                };
            }
        }
    }
}

/// Random access to a composite source or mask, with repeat and transform.
struct Sampler<'a> {
    w: u32,
    h: u32,
    /// Borrowed for surface sources (no copy per draw), owned for bitmaps.
    px: std::borrow::Cow<'a, [u32]>,
    force_alpha: bool,
    repeat: Repeat,
    transform: Option<[f64; 6]>,
    origin: Point,
}

impl<'a> Sampler<'a> {
    fn new(
        s: Src<'a>,
        mem: &dyn GuestMemory,
        repeat: Repeat,
        t: Option<Transform>,
        origin: Point,
    ) -> Result<Self, RenderError> {
        let (w, h) = s.size();
        let force_alpha = !s.has_alpha();
        let px = match s {
            Src::Surface(surf) => std::borrow::Cow::Borrowed(&surf.px[..]),
            Src::Owned { px, .. } => std::borrow::Cow::Owned(px),
            other => std::borrow::Cow::Owned(other.whole(mem, "composite")?),
        };
        Ok(Sampler {
            w,
            h,
            px,
            force_alpha,
            repeat,
            transform: t.map(|t| t.0.map(|v| v as f64 / 65536.0)),
            origin,
        })
    }

    /// The premultiplied pixel at source-space coordinate of destination offset (u, v).
    fn at(&self, u: i64, v: i64) -> u32 {
        let (mut x, mut y) = (u + self.origin.x as i64, v + self.origin.y as i64);
        if let Some(t) = &self.transform {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            x = (t[0] * fx + t[1] * fy + t[2]).floor() as i64;
            y = (t[3] * fx + t[4] * fy + t[5]).floor() as i64;
        }
        let (w, h) = (self.w as i64, self.h as i64);
        if w == 0 || h == 0 {
            return 0;
        }
        let wrap = |c: i64, n: i64| -> Option<i64> {
            match self.repeat {
                Repeat::None => (c >= 0 && c < n).then_some(c),
                Repeat::Normal => Some(c.rem_euclid(n)),
                Repeat::Pad => Some(c.clamp(0, n - 1)),
                Repeat::Reflect => {
                    let m = c.rem_euclid(2 * n);
                    Some(if m < n { m } else { 2 * n - 1 - m })
                }
            }
        };
        match (wrap(x, w), wrap(y, h)) {
            (Some(x), Some(y)) => {
                let p = self.px[(y * w + x) as usize];
                if self.force_alpha {
                    p | 0xFF00_0000
                } else {
                    p
                }
            }
            _ => 0,
        }
    }
}

/// COMPOSITE: `op` of the source (IN the mask's alpha, or with `component_alpha` and a mask,
/// IN each mask channel) onto the destination; a destination without alpha is opaque.
fn composite(
    dst: &mut Surface,
    rects: &[Rect],
    bbox: Rect,
    op: CompositeOp,
    src: &Sampler,
    mask: Option<&Sampler>,
    component_alpha: bool,
) {
    let w = dst.width as usize;
    let dst_alpha = dst.has_alpha();
    for r in rects {
        for y in r.top..r.bottom {
            let v = y as i64 - bbox.top as i64;
            for x in r.left..r.right {
                let u = x as i64 - bbox.left as i64;
                let s = src.at(u, v);
                let d = &mut dst.px[y as usize * w + x as usize];
                let dv = if dst_alpha { *d } else { *d | 0xFF00_0000 };
                *d = match mask {
                    Some(m) if component_alpha => ops::composite_ca(op.0, s, m.at(u, v), dv),
                    Some(m) => ops::composite(op.0, ops::scale_px(s, m.at(u, v) >> 24), dv),
                    None => ops::composite(op.0, s, dv),
                };
            }
        }
    }
}
