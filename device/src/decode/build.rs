//! Lays out guest command structures in a [`VecMemory`], the way a guest driver would (tests,
//! benches, fuzz seeds).

use super::testmem::VecMemory;
use super::Rect;
use crate::abi::cmd::*;
use crate::mem::{GuestMemory, QxlPhys};
use zerocopy::{FromZeros, IntoBytes};

/// Writes guest structures into one slot of a [`VecMemory`]. Panics when the slot is full
/// (test helper).
#[derive(Debug, Clone, Copy)]
pub struct Builder<'a> {
    /// The memory.
    pub mem: &'a VecMemory,
    /// The slot allocated from.
    pub slot: u8,
}

/// A wire rectangle.
pub fn qrect(r: Rect) -> QxlRect {
    QxlRect {
        top: r.top.into(),
        left: r.left.into(),
        bottom: r.bottom.into(),
        right: r.right.into(),
    }
}

/// A solid brush.
pub fn solid_brush(color: u32) -> QxlBrush {
    let mut b = QxlBrush::new_zeroed();
    b.ty = brush_type::SOLID.into();
    b.u[..4].copy_from_slice(&color.to_le_bytes());
    b
}

/// A pattern brush.
pub fn pattern_brush(image: QxlPhys, x: i32, y: i32) -> QxlBrush {
    let mut b = QxlBrush::new_zeroed();
    b.ty = brush_type::PATTERN.into();
    b.u[..8].copy_from_slice(&image.0.to_le_bytes());
    b.u[8..12].copy_from_slice(&x.to_le_bytes());
    b.u[12..16].copy_from_slice(&y.to_le_bytes());
    b
}

/// A mask (null image = no mask).
pub fn qmask(invers: bool, x: i32, y: i32, image: QxlPhys) -> QxlQMask {
    QxlQMask {
        flags: invers as u8,
        pos: QxlPoint {
            x: x.into(),
            y: y.into(),
        },
        bitmap: image.0.into(),
    }
}

/// A COPY/BLEND union member.
pub fn copy_member(
    src: QxlPhys,
    src_area: Rect,
    rop: u16,
    scale_mode: u8,
    mask: QxlQMask,
) -> Vec<u8> {
    QxlCopy {
        src_bitmap: src.0.into(),
        src_area: qrect(src_area),
        rop_descriptor: rop.into(),
        scale_mode,
        mask,
    }
    .as_bytes()
    .to_vec()
}

/// A FILL union member.
pub fn fill_member(brush: QxlBrush, rop: u16, mask: QxlQMask) -> Vec<u8> {
    QxlFill {
        brush,
        rop_descriptor: rop.into(),
        mask,
    }
    .as_bytes()
    .to_vec()
}

impl<'a> Builder<'a> {
    /// A builder over slot 1.
    pub fn new(mem: &'a VecMemory) -> Self {
        Builder { mem, slot: 1 }
    }

    /// Writes `bytes` and returns their address.
    pub fn put(&self, bytes: &[u8]) -> QxlPhys {
        self.mem.put(self.slot, bytes)
    }

    /// A chunk chain holding `parts` in order; returns the first header's address.
    pub fn chunks(&self, parts: &[&[u8]]) -> QxlPhys {
        let mut next = QxlPhys(0);
        for p in parts.iter().rev() {
            next = self.chunk(p, next);
        }
        next
    }

    /// One chunk header + data.
    pub fn chunk(&self, data: &[u8], next: QxlPhys) -> QxlPhys {
        let h = QxlDataChunk {
            data_size: (data.len() as u32).into(),
            prev_chunk: 0.into(),
            next_chunk: next.0.into(),
        };
        let mut b = h.as_bytes().to_vec();
        b.extend_from_slice(data);
        self.put(&b)
    }

    /// A palette.
    pub fn palette(&self, ents: &[u32]) -> QxlPhys {
        let mut b = QxlPalette {
            unique: 7.into(),
            num_ents: (ents.len() as u16).into(),
        }
        .as_bytes()
        .to_vec();
        for e in ents {
            b.extend_from_slice(&e.to_le_bytes());
        }
        self.put(&b)
    }

    /// A BITMAP image whose `data` (memory order, `h * stride` bytes) is split into chunks of
    /// at most `chunk_len` bytes (0 = one chunk); `flags` may include DIRECT.
    #[allow(clippy::too_many_arguments)]
    pub fn bitmap_image(
        &self,
        format: u8,
        flags: u8,
        w: u32,
        h: u32,
        stride: u32,
        palette: QxlPhys,
        data: &[u8],
        chunk_len: usize,
    ) -> QxlPhys {
        let data_addr = if flags & bitmap_flags::DIRECT != 0 {
            self.put(data)
        } else if chunk_len == 0 || data.is_empty() {
            self.chunks(&[data])
        } else {
            let parts: Vec<&[u8]> = data.chunks(chunk_len).collect();
            self.chunks(&parts)
        };
        self.bitmap_image_at(format, flags, w, h, stride, palette, data_addr)
    }

    /// A BITMAP image descriptor pointing at `data` (chunk or DIRECT pixels).
    #[allow(clippy::too_many_arguments)]
    pub fn bitmap_image_at(
        &self,
        format: u8,
        flags: u8,
        w: u32,
        h: u32,
        stride: u32,
        palette: QxlPhys,
        data: QxlPhys,
    ) -> QxlPhys {
        let mut img = QxlImage::new_zeroed();
        img.descriptor.id = 0x1234.into();
        img.descriptor.ty = image_type::BITMAP;
        img.descriptor.width = w.into();
        img.descriptor.height = h.into();
        let bm = QxlBitmap {
            format,
            flags,
            x: w.into(),
            y: h.into(),
            stride: stride.into(),
            palette: palette.0.into(),
            data: data.0.into(),
        };
        img.u.copy_from_slice(bm.as_bytes());
        self.put(img.as_bytes())
    }

    /// A top-down 32BIT bitmap image of `w`×`h` pixels (one chunk, stride w·4).
    pub fn argb_image(&self, w: u32, h: u32, pixels: &[u32]) -> QxlPhys {
        let data: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
        self.bitmap_image(
            bitmap_fmt::THIRTYTWO_BIT,
            bitmap_flags::TOP_DOWN,
            w,
            h,
            w * 4,
            QxlPhys(0),
            &data,
            0,
        )
    }

    /// A SURFACE image.
    pub fn surface_image(&self, id: u32, w: u32, h: u32) -> QxlPhys {
        let mut img = QxlImage::new_zeroed();
        img.descriptor.ty = image_type::SURFACE;
        img.descriptor.width = w.into();
        img.descriptor.height = h.into();
        img.u[..4].copy_from_slice(&id.to_le_bytes());
        self.put(&img.as_bytes()[..22])
    }

    /// A QXLClipRects with all rects in one chunk.
    pub fn clip_rects(&self, rects: &[Rect]) -> QxlPhys {
        let mut b = Vec::new();
        b.extend_from_slice(&(rects.len() as u32).to_le_bytes());
        let data: Vec<u8> = rects
            .iter()
            .flat_map(|r| qrect(*r).as_bytes().to_vec())
            .collect();
        let h = QxlDataChunk {
            data_size: (data.len() as u32).into(),
            prev_chunk: 0.into(),
            next_chunk: 0.into(),
        };
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&data);
        self.put(&b)
    }

    /// A QXLDrawable; `clip` 0 = no clip, else a QXLClipRects address.
    pub fn drawable(
        &self,
        surface_id: u32,
        ty: u8,
        bbox: Rect,
        clip: QxlPhys,
        member: &[u8],
    ) -> QxlPhys {
        let mut d = QxlDrawable::new_zeroed();
        d.release_info.id = 0x42.into();
        d.surface_id = surface_id.into();
        d.effect = 1;
        d.ty = ty;
        d.bbox = qrect(bbox);
        if !clip.is_null() {
            d.clip.ty = clip_type::RECTS.into();
            d.clip.data = clip.0.into();
        }
        d.surfaces_dest = [(-1).into(), (-1).into(), (-1).into()];
        let n = member.len().min(d.u.len());
        d.u[..n].copy_from_slice(&member[..n]);
        self.put(d.as_bytes())
    }

    /// A QXLSurfaceCmd (CREATE with `flags`, or DESTROY).
    #[allow(clippy::too_many_arguments)]
    pub fn surface_cmd(
        &self,
        ty: u8,
        id: u32,
        flags: u32,
        format: u32,
        w: u32,
        h: u32,
        stride: i32,
        data: QxlPhys,
    ) -> QxlPhys {
        let c = QxlSurfaceCmd {
            release_info: QxlReleaseInfo { id: 9.into() },
            surface_id: id.into(),
            ty,
            flags: flags.into(),
            surface_create: QxlSurface {
                format: format.into(),
                width: w.into(),
                height: h.into(),
                stride: stride.into(),
                data: data.0.into(),
            },
        };
        self.put(c.as_bytes())
    }

    /// A QXLCursorCmd SET with a QXLCursor whose data is split in chunks of `chunk_len`.
    #[allow(clippy::too_many_arguments)]
    pub fn cursor_set(
        &self,
        x: i16,
        y: i16,
        ty: u16,
        w: u16,
        h: u16,
        data_size: u32,
        data: &[u8],
    ) -> QxlPhys {
        let mut cur = QxlCursor::new_zeroed();
        cur.header.unique = 5.into();
        cur.header.ty = ty.into();
        cur.header.width = w.into();
        cur.header.height = h.into();
        cur.header.hot_spot_x = 1.into();
        cur.header.hot_spot_y = 2.into();
        cur.data_size = data_size.into();
        cur.chunk.data_size = (data.len() as u32).into();
        let mut b = cur.as_bytes().to_vec();
        b.extend_from_slice(data);
        let shape = self.put(&b);
        let mut c = QxlCursorCmd::new_zeroed();
        c.ty = cursor_cmd::SET;
        c.u[0..2].copy_from_slice(&x.to_le_bytes());
        c.u[2..4].copy_from_slice(&y.to_le_bytes());
        c.u[4] = 1;
        c.u[5..13].copy_from_slice(&shape.0.to_le_bytes());
        self.put(c.as_bytes())
    }

    /// Writes `v` at `addr` (patching a structure in place).
    pub fn patch(&self, addr: QxlPhys, off: u64, v: &[u8]) {
        let a = addr.checked_add(off).expect("in range");
        self.mem.write(a, v).expect("patch");
    }
}
