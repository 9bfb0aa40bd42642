//! Pixel tests for the renderer: every expectation is computed per pixel by a formula written
//! here, independently of the renderer.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{
    copy_member, fill_member, pattern_brush, qmask, qrect, solid_brush, Builder,
};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, QxlPhys};
use qxl_device::render::{RenderError, Renderer};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const W: u32 = 24;
const H: u32 = 16;

struct Rig {
    mem: VecMemory,
    r: Renderer,
    prim: QxlPhys,
}

/// The initial destination: a pattern every pixel of which differs.
fn d0(x: u32, y: u32) -> u32 {
    0xFF00_0000 | (x * 10) << 16 | (y * 15) << 8 | ((x * 7 + y * 3) & 0xFF)
}

/// A source pattern.
fn s0(x: u32, y: u32) -> u32 {
    0xFF00_0000 | (255 - x * 9) << 16 | (x * 3 + y * 11) << 8 | (y * 13)
}

fn rig() -> Rig {
    let mem = VecMemory::with_slot(1 << 22);
    let prim = mem.alloc(1, (W * H * 4) as usize);
    let init: Vec<u8> = (0..H)
        .flat_map(|y| (0..W).map(move |x| d0(x, y)))
        .flat_map(|p| p.to_le_bytes())
        .collect();
    mem.write(prim, &init).unwrap();
    let mut r = Renderer::new(16, 64 << 20);
    let desc = validate_surface(&mem, W, H, (W * 4) as i32, 32, prim, &Limits::default()).unwrap();
    r.create_surface(0, &desc, true, &mem).unwrap();
    Rig { mem, r, prim }
}

impl Rig {
    fn b(&self) -> Builder<'_> {
        Builder::new(&self.mem)
    }
    fn run(&mut self, addr: QxlPhys) {
        let c = decode_display(&self.mem, cmd_type::DRAW, addr, &Limits::default()).unwrap();
        self.r.draw(&c, &self.mem).unwrap();
    }
    fn px(&self) -> Vec<u32> {
        self.r.snapshot(0).unwrap().pixels
    }
    fn src_image(&self, w: u32, h: u32) -> QxlPhys {
        let px: Vec<u32> = (0..h).flat_map(|y| (0..w).map(move |x| s0(x, y))).collect();
        self.b().argb_image(w, h, &px)
    }
}

fn inside(r: Rect, x: u32, y: u32) -> bool {
    (x as i32) >= r.left && (x as i32) < r.right && (y as i32) >= r.top && (y as i32) < r.bottom
}

fn check(px: &[u32], f: impl Fn(u32, u32) -> u32) {
    for y in 0..H {
        for x in 0..W {
            let got = px[(y * W + x) as usize] | 0xFF00_0000;
            let want = f(x, y) | 0xFF00_0000;
            assert_eq!(
                got, want,
                "pixel ({x},{y}): got {got:#010x} want {want:#010x}"
            );
        }
    }
}

fn no_mask() -> QxlQMask {
    qmask(false, 0, 0, QxlPhys(0))
}

#[test]
fn fill_solid_with_clip_rects() {
    let mut g = rig();
    let bbox = Rect::new(2, 2, 20, 14);
    let clips = [
        Rect::new(0, 0, 6, 6),
        Rect::new(4, 4, 10, 10),
        Rect::new(15, 1, 30, 3),
    ];
    let clip = g.b().clip_rects(&clips);
    let f = fill_member(solid_brush(0x123456), ropd::OP_PUT, no_mask());
    let a = g.b().drawable(0, draw_type::FILL, bbox, clip, &f);
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) && clips.iter().any(|c| inside(*c, x, y)) {
            0x123456
        } else {
            d0(x, y)
        }
    });
}

/// The named raster ops of spice-common's GL canvas (`set_op`): descriptor → formula.
#[test]
fn rop_descriptors_match_the_named_raster_ops() {
    type F = fn(u32, u32) -> u32;
    let named: [(u16, F); 16] = [
        (ropd::OP_PUT, |s, _| s),
        (ropd::OP_PUT | ropd::INVERS_SRC, |s, _| !s),
        (ropd::OP_PUT | ropd::INVERS_RES, |s, _| !s),
        (ropd::OP_XOR, |s, d| s ^ d),
        (ropd::OP_XOR | ropd::INVERS_RES, |s, d| !(s ^ d)),
        (ropd::OP_BLACKNESS, |_, _| 0),
        (ropd::OP_WHITENESS, |_, _| 0xFFFF_FFFF),
        (ropd::OP_INVERS, |_, d| !d),
        (ropd::OP_AND, |s, d| s & d),
        (ropd::OP_AND | ropd::INVERS_RES, |s, d| !(s & d)),
        (ropd::OP_OR, |s, d| s | d),
        (ropd::OP_OR | ropd::INVERS_RES, |s, d| !(s | d)),
        (ropd::OP_AND | ropd::INVERS_DEST, |s, d| s & !d),
        (ropd::OP_AND | ropd::INVERS_SRC, |s, d| !s & d),
        (ropd::OP_OR | ropd::INVERS_DEST, |s, d| s | !d),
        (ropd::OP_OR | ropd::INVERS_SRC, |s, d| !s | d),
    ];
    let bbox = Rect::new(3, 1, 19, 13);
    for (desc, f) in named {
        // COPY: the source is the operand.
        let mut g = rig();
        let img = g.src_image(16, 12);
        let c = copy_member(img, Rect::new(0, 0, 16, 12), desc, 0, no_mask());
        let a = g.b().drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c);
        g.run(a);
        let px = g.px();
        for y in 0..H {
            for x in 0..W {
                let want = if inside(bbox, x, y) {
                    f(s0(x - 3, y - 1), d0(x, y))
                } else {
                    d0(x, y)
                };
                assert_eq!(
                    px[(y * W + x) as usize] & 0xFF_FFFF,
                    want & 0xFF_FFFF,
                    "COPY rop {desc:#x} at ({x},{y})"
                );
            }
        }
        // FILL: the brush is the operand; INVERS_SRC becomes INVERS_BRUSH.
        let mut g = rig();
        let brush_desc = if desc & ropd::INVERS_SRC != 0 {
            (desc & !ropd::INVERS_SRC) | ropd::INVERS_BRUSH
        } else {
            desc
        };
        let fm = fill_member(solid_brush(0x00C0FFEE), brush_desc, no_mask());
        let a = g.b().drawable(0, draw_type::FILL, bbox, QxlPhys(0), &fm);
        g.run(a);
        let px = g.px();
        for y in 0..H {
            for x in 0..W {
                let want = if inside(bbox, x, y) {
                    f(0x00C0FFEE, d0(x, y))
                } else {
                    d0(x, y)
                };
                assert_eq!(
                    px[(y * W + x) as usize] & 0xFF_FFFF,
                    want & 0xFF_FFFF,
                    "FILL rop {brush_desc:#x} at ({x},{y})"
                );
            }
        }
    }
}

#[test]
fn copy_bottom_up_bitmap_with_src_offset() {
    let mut g = rig();
    // A 10x8 bottom-up 24-bit bitmap, stride 32 (padded), copied from (2,3) to bbox (5,4).
    let (bw, bh, stride) = (10u32, 8u32, 32u32);
    let mut data = vec![0u8; (bh * stride) as usize];
    for y in 0..bh {
        let mem_row = bh - 1 - y;
        for x in 0..bw {
            let p = s0(x, y);
            let o = (mem_row * stride + x * 3) as usize;
            data[o..o + 3].copy_from_slice(&p.to_le_bytes()[..3]);
        }
    }
    let img = g.b().bitmap_image(
        bitmap_fmt::TWENTYFOUR_BIT,
        0,
        bw,
        bh,
        stride,
        QxlPhys(0),
        &data,
        50,
    );
    let bbox = Rect::new(5, 4, 12, 9);
    let c = copy_member(img, Rect::new(2, 3, 9, 8), ropd::OP_PUT, 0, no_mask());
    let a = g.b().drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c);
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) {
            s0(x - 5 + 2, y - 4 + 3)
        } else {
            d0(x, y)
        }
    });
}

/// The 32-bit COPY fast path (rows copied straight from guest memory, one 2-D copy per clip
/// rectangle when the rows lie in one chunk): chunk boundaries in the middle of rows, padded
/// strides, bottom-up rows and two clip rectangles must all give the source pixels.
#[test]
fn copy_32bit_fast_path_across_chunks_strides_and_row_order() {
    let (bw, bh) = (12u32, 9u32);
    for (stride, top_down, chunk_len) in [
        (bw * 4, true, 0usize),
        (bw * 4, true, 100),
        (bw * 4 + 8, true, 7),
        (bw * 4 + 4, false, 0),
        (bw * 4, false, 64),
    ] {
        let mut g = rig();
        let mut data = vec![0u8; (bh * stride) as usize];
        for y in 0..bh {
            let mem_row = if top_down { y } else { bh - 1 - y };
            for x in 0..bw {
                let o = (mem_row * stride + x * 4) as usize;
                data[o..o + 4].copy_from_slice(&s0(x, y).to_le_bytes());
            }
        }
        let flags = if top_down { bitmap_flags::TOP_DOWN } else { 0 };
        let img = g.b().bitmap_image(
            bitmap_fmt::THIRTYTWO_BIT,
            flags,
            bw,
            bh,
            stride,
            QxlPhys(0),
            &data,
            chunk_len,
        );
        let bbox = Rect::new(3, 2, 13, 10);
        let clips = [Rect::new(3, 2, 8, 6), Rect::new(6, 7, 13, 10)];
        let clip = g.b().clip_rects(&clips);
        let c = copy_member(img, Rect::new(1, 1, 11, 9), ropd::OP_PUT, 0, no_mask());
        let a = g.b().drawable(0, draw_type::COPY, bbox, clip, &c);
        g.run(a);
        let case = format!("stride {stride}, top_down {top_down}, chunk {chunk_len}");
        let px = g.px();
        for y in 0..H {
            for x in 0..W {
                let want = if clips.iter().any(|r| inside(*r, x, y)) {
                    s0(x - 3 + 1, y - 2 + 1)
                } else {
                    d0(x, y)
                };
                let got = px[(y * W + x) as usize] | 0xFF00_0000;
                assert_eq!(got, want | 0xFF00_0000, "{case}: pixel ({x},{y})");
            }
        }
    }
}

#[test]
fn copy_scaled_nearest() {
    let mut g = rig();
    let img = g.src_image(4, 3);
    // 4x3 → 12x9 (x3 each way), and 4x3 → 2x2 (shrink).
    let bbox = Rect::new(1, 1, 13, 10);
    let c = copy_member(img, Rect::new(0, 0, 4, 3), ropd::OP_PUT, 1, no_mask());
    let a = g.b().drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c);
    g.run(a);
    let bbox2 = Rect::new(20, 12, 22, 14);
    let c = copy_member(img, Rect::new(0, 0, 4, 3), ropd::OP_PUT, 1, no_mask());
    let a = g.b().drawable(0, draw_type::COPY, bbox2, QxlPhys(0), &c);
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) {
            s0((x - 1) / 3, (y - 1) / 3)
        } else if inside(bbox2, x, y) {
            s0((x - 20) * 4 / 2, (y - 12) * 3 / 2)
        } else {
            d0(x, y)
        }
    });
}

#[test]
fn copy_palettized_and_with_mask() {
    let mut g = rig();
    let pal = [0x111111u32, 0x222222, 0x333333, 0x444444];
    let pa = g.b().palette(&pal);
    // 8x4 8-bit image, index = (x + y) % 4, top-down.
    let data: Vec<u8> = (0..4u32)
        .flat_map(|y| (0..8u32).map(move |x| ((x + y) % 4) as u8))
        .collect();
    let img = g.b().bitmap_image(
        bitmap_fmt::EIGHT_BIT,
        bitmap_flags::TOP_DOWN,
        8,
        4,
        8,
        pa,
        &data,
        0,
    );
    // 1-bit BE mask 8x4: bit set where x is even.
    let mdata = vec![0b1010_1010u8; 4];
    let mask = g.b().bitmap_image(
        bitmap_fmt::ONE_BIT_BE,
        bitmap_flags::TOP_DOWN,
        8,
        4,
        1,
        QxlPhys(0),
        &mdata,
        0,
    );
    let bbox = Rect::new(2, 2, 10, 6);
    let c = copy_member(
        img,
        Rect::new(0, 0, 8, 4),
        ropd::OP_PUT,
        0,
        qmask(false, 0, 0, mask),
    );
    let a = g.b().drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c);
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) && (x - 2) % 2 == 0 {
            pal[((x - 2 + y - 2) % 4) as usize]
        } else {
            d0(x, y)
        }
    });
}

#[test]
fn copy_bits_scrolls_with_overlap() {
    for (dx, dy) in [(0i32, 3i32), (0, -3), (2, 0), (-2, 1)] {
        let mut g = rig();
        // Move the area at src_pos to bbox = src shifted by (dx, dy).
        let src = Rect::new(4, 4, 16, 12);
        let bbox = Rect::new(src.left + dx, src.top + dy, src.right + dx, src.bottom + dy);
        let cb = QxlCopyBits {
            src_pos: QxlPoint {
                x: src.left.into(),
                y: src.top.into(),
            },
        };
        let a = g
            .b()
            .drawable(0, draw_type::COPY_BITS, bbox, QxlPhys(0), cb.as_bytes());
        g.run(a);
        check(&g.px(), |x, y| {
            if inside(bbox, x, y) {
                d0((x as i32 - dx) as u32, (y as i32 - dy) as u32)
            } else {
                d0(x, y)
            }
        });
    }
}

#[test]
fn opaque_combines_brush_with_source() {
    let mut g = rig();
    let img = g.src_image(8, 8);
    let o = QxlOpaque {
        src_bitmap: img.0.into(),
        src_area: qrect(Rect::new(0, 0, 8, 8)),
        brush: solid_brush(0x0F0F0F),
        rop_descriptor: (ropd::OP_XOR).into(),
        scale_mode: 0,
        mask: no_mask(),
    };
    let bbox = Rect::new(0, 0, 8, 8);
    let a = g
        .b()
        .drawable(0, draw_type::OPAQUE, bbox, QxlPhys(0), o.as_bytes());
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) {
            s0(x, y) ^ 0x0F0F0F
        } else {
            d0(x, y)
        }
    });
}

#[test]
fn blackness_whiteness_invers_with_inverted_mask() {
    let mut g = rig();
    // 4x4 LE mask, bit set at x == y; INVERS flag: draw where the bit is 0.
    let mdata: Vec<u8> = (0..4).map(|y| 1u8 << y).collect();
    let mask = g.b().bitmap_image(
        bitmap_fmt::ONE_BIT_LE,
        bitmap_flags::TOP_DOWN,
        4,
        4,
        1,
        QxlPhys(0),
        &mdata,
        0,
    );
    let boxes = [
        (draw_type::BLACKNESS, Rect::new(0, 0, 4, 4)),
        (draw_type::WHITENESS, Rect::new(5, 0, 9, 4)),
        (draw_type::INVERS, Rect::new(10, 0, 14, 4)),
    ];
    for (ty, bbox) in boxes {
        let a = g
            .b()
            .drawable(0, ty, bbox, QxlPhys(0), qmask(true, 0, 0, mask).as_bytes());
        g.run(a);
    }
    check(&g.px(), |x, y| {
        for (i, (_, b)) in boxes.iter().enumerate() {
            if inside(*b, x, y) && (x as i32 - b.left) != y as i32 {
                return [0, 0xFFFFFF, !d0(x, y)][i];
            }
        }
        d0(x, y)
    });
}

fn round_mul(a: u32, b: u32) -> u32 {
    ((a * b) as f64 / 255.0).round() as u32
}

#[test]
fn alpha_blend_premultiplied_source_and_global_alpha() {
    for (flags, alpha) in [
        (alpha_flags::SRC_SURFACE_HAS_ALPHA, 200u8),
        (0, 100),
        (alpha_flags::SRC_SURFACE_HAS_ALPHA, 255),
    ] {
        let mut g = rig();
        // Premultiplied RGBA source: alpha a, channels ≤ a.
        let src = |x: u32, y: u32| -> u32 {
            let a = 40 + x * 20;
            a << 24 | (a * x / 8) << 16 | (a * y / 8) << 8 | (a / 2)
        };
        let data: Vec<u8> = (0..8u32)
            .flat_map(|y| (0..8u32).map(move |x| src(x, y)))
            .flat_map(|p| p.to_le_bytes())
            .collect();
        let img = g.b().bitmap_image(
            bitmap_fmt::RGBA,
            bitmap_flags::TOP_DOWN,
            8,
            8,
            32,
            QxlPhys(0),
            &data,
            0,
        );
        let ab = QxlAlphaBlend {
            alpha_flags: flags.into(),
            alpha,
            src_bitmap: img.0.into(),
            src_area: qrect(Rect::new(0, 0, 8, 8)),
        };
        let bbox = Rect::new(4, 4, 12, 12);
        let a = g
            .b()
            .drawable(0, draw_type::ALPHA_BLEND, bbox, QxlPhys(0), ab.as_bytes());
        g.run(a);
        check(&g.px(), |x, y| {
            if !inside(bbox, x, y) {
                return d0(x, y);
            }
            let (s, d) = (src(x - 4, y - 4), d0(x, y));
            let sa = if flags != 0 { s >> 24 } else { 255 };
            let k = 255 - round_mul(sa, alpha as u32);
            let mut out = 0;
            for sh in [0, 8, 16] {
                let v = round_mul((s >> sh) & 255, alpha as u32) + round_mul((d >> sh) & 255, k);
                out |= v.min(255) << sh;
            }
            out
        });
    }
}

#[test]
fn rop3_matches_the_bitwise_truth_table() {
    for code in [
        0x00u8, 0x11, 0x33, 0x44, 0x55, 0x5A, 0x66, 0x88, 0xB8, 0xBB, 0xC0, 0xCC, 0xE2, 0xEE, 0xF0,
        0xFB, 0xFF,
    ] {
        let mut g = rig();
        let img = g.src_image(8, 8);
        let brush = 0x00A5_5AC3u32;
        let r = QxlRop3 {
            src_bitmap: img.0.into(),
            src_area: qrect(Rect::new(0, 0, 8, 8)),
            brush: solid_brush(brush),
            rop3: code,
            scale_mode: 0,
            mask: no_mask(),
        };
        let bbox = Rect::new(8, 4, 16, 12);
        let a = g
            .b()
            .drawable(0, draw_type::ROP3, bbox, QxlPhys(0), r.as_bytes());
        g.run(a);
        let px = g.px();
        for y in 0..H {
            for x in 0..W {
                let d = d0(x, y);
                let want = if inside(bbox, x, y) {
                    let s = s0(x - 8, y - 4);
                    let mut v = 0u32;
                    for bit in 0..24 {
                        let idx =
                            ((brush >> bit) & 1) << 2 | ((s >> bit) & 1) << 1 | ((d >> bit) & 1);
                        v |= (((code as u32) >> idx) & 1) << bit;
                    }
                    v
                } else {
                    d
                };
                assert_eq!(
                    px[(y * W + x) as usize] & 0xFF_FFFF,
                    want & 0xFF_FFFF,
                    "rop3 {code:#x} ({x},{y})"
                );
            }
        }
    }
}

#[test]
fn transparent_skips_the_key_colour() {
    let mut g = rig();
    let key = 0x00FF00u32;
    let src = |x: u32, y: u32| if (x + y) % 3 == 0 { key } else { s0(x, y) };
    let px: Vec<u32> = (0..6u32)
        .flat_map(|y| (0..6u32).map(move |x| src(x, y)))
        .collect();
    let img = g.b().argb_image(6, 6, &px);
    let t = QxlTransparent {
        src_bitmap: img.0.into(),
        src_area: qrect(Rect::new(0, 0, 6, 6)),
        src_color: key.into(),
        true_color: key.into(),
    };
    let bbox = Rect::new(1, 1, 7, 7);
    let a = g
        .b()
        .drawable(0, draw_type::TRANSPARENT, bbox, QxlPhys(0), t.as_bytes());
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) && src(x - 1, y - 1) != key {
            src(x - 1, y - 1)
        } else {
            d0(x, y)
        }
    });
}

#[test]
fn pattern_brush_tiles_from_its_origin() {
    let mut g = rig();
    let img = g.src_image(3, 2);
    let f = fill_member(pattern_brush(img, 1, 1), ropd::OP_PUT, no_mask());
    let bbox = Rect::new(0, 0, 10, 10);
    let a = g.b().drawable(0, draw_type::FILL, bbox, QxlPhys(0), &f);
    g.run(a);
    check(&g.px(), |x, y| {
        if inside(bbox, x, y) {
            s0((x + 3 - 1) % 3, (y + 2 - 1) % 2)
        } else {
            d0(x, y)
        }
    });
}

fn stroke_member(g: &Rig, pts: &[(i32, i32)], rop: u16) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend_from_slice(&(path_flags::BEGIN | path_flags::END).to_le_bytes());
    seg.extend_from_slice(&(pts.len() as u32).to_le_bytes());
    for (x, y) in pts {
        seg.extend_from_slice(&(x * 16).to_le_bytes());
        seg.extend_from_slice(&(y * 16).to_le_bytes());
    }
    let mut p = QxlPath::new_zeroed();
    p.data_size = (seg.len() as u32).into();
    p.chunk.data_size = (seg.len() as u32).into();
    let mut bytes = p.as_bytes().to_vec();
    bytes.extend_from_slice(&seg);
    let path = g.b().put(&bytes);
    let mut s = QxlStroke::new_zeroed();
    s.path = path.0.into();
    s.brush = solid_brush(0xFF00FF);
    s.fore_mode = rop.into();
    s.as_bytes().to_vec()
}

#[test]
fn stroke_draws_solid_lines_once_per_pixel() {
    let mut g = rig();
    // An L: (2,3) → (12,3) → (12,10), XOR so a doubly drawn corner would show.
    let s = stroke_member(&g, &[(2, 3), (12, 3), (12, 10)], ropd::OP_XOR);
    let bbox = Rect::new(0, 0, W as i32, H as i32);
    let a = g.b().drawable(0, draw_type::STROKE, bbox, QxlPhys(0), &s);
    g.run(a);
    // A diagonal clipped by the bbox.
    let s = stroke_member(&g, &[(14, 0), (30, 16)], ropd::OP_PUT);
    let bbox2 = Rect::new(14, 0, 20, 16);
    let a = g.b().drawable(0, draw_type::STROKE, bbox2, QxlPhys(0), &s);
    g.run(a);
    check(&g.px(), |x, y| {
        let on_l = (y == 3 && (2..=12).contains(&x)) || (x == 12 && (3..=10).contains(&y));
        if on_l {
            d0(x, y) ^ 0xFF00FF
        } else if (14..20).contains(&x) && x - 14 == y {
            0xFF00FF
        } else {
            d0(x, y)
        }
    });
}

#[test]
fn text_a1_and_a8_glyphs() {
    for bpp in [1u16, 8] {
        let mut g = rig();
        // One 4x2 glyph at render_pos (3,5) + origin (1,-1) → top-left (4,4).
        let (flags, rows): (u16, Vec<u8>) = if bpp == 1 {
            (
                string_flags::RASTER_A1 | string_flags::RASTER_TOP_DOWN,
                vec![0b1010_0000, 0b0101_0000],
            )
        } else {
            (
                string_flags::RASTER_A8 | string_flags::RASTER_TOP_DOWN,
                vec![255, 0, 128, 0, 0, 255, 0, 64],
            )
        };
        let gl = QxlRasterGlyph {
            render_pos: QxlPoint {
                x: 3.into(),
                y: 5.into(),
            },
            glyph_origin: QxlPoint {
                x: 1.into(),
                y: (-1).into(),
            },
            width: 4.into(),
            height: 2.into(),
        };
        let mut body = gl.as_bytes().to_vec();
        body.extend_from_slice(&rows);
        let mut s = QxlString::new_zeroed();
        s.data_size = (body.len() as u32).into();
        s.length = 1.into();
        s.flags = flags.into();
        s.chunk.data_size = (body.len() as u32).into();
        let mut bytes = s.as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let str_addr = g.b().put(&bytes);
        let back = Rect::new(2, 3, 10, 7);
        let t = QxlText {
            str: str_addr.0.into(),
            back_area: qrect(back),
            fore_brush: solid_brush(0xFFFFFF),
            back_brush: solid_brush(0x000040),
            fore_mode: ropd::OP_PUT.into(),
            back_mode: ropd::OP_PUT.into(),
        };
        let a = g
            .b()
            .drawable(0, draw_type::TEXT, back, QxlPhys(0), t.as_bytes());
        g.run(a);
        check(&g.px(), |x, y| {
            if !inside(back, x, y) {
                return d0(x, y);
            }
            let bg = 0x000040;
            if (4..8).contains(&x) && (4..6).contains(&y) {
                let (gx, gy) = ((x - 4) as usize, (y - 4) as usize);
                let cov = if bpp == 1 {
                    ((rows[gy] >> (7 - gx)) & 1) as u32 * 255
                } else {
                    rows[gy * 4 + gx] as u32
                };
                let mut out = 0;
                for sh in [0, 8, 16] {
                    let v = round_mul(0xFF, cov) + round_mul((bg >> sh) & 255, 255 - cov);
                    out |= v << sh;
                }
                return out;
            }
            bg
        });
    }
}

#[test]
fn composite_over_with_a8_mask_from_surfaces() {
    let mut g = rig();
    // Surface 1: ARGB 4x4 premultiplied source; surface 2: A8 mask 4x4.
    let sdata = g.mem.alloc(1, 64);
    let src = |x: u32, y: u32| -> u32 {
        let a = 60 * (x + 1);
        a << 24 | (a / 2) << 16 | (a / 3) << 8 | (y * 10).min(a)
    };
    let sb: Vec<u8> = (0..4u32)
        .flat_map(|y| (0..4u32).map(move |x| src(x, y)))
        .flat_map(|p| p.to_le_bytes())
        .collect();
    g.mem.write(sdata, &sb).unwrap();
    let mdata = g.mem.alloc(1, 16);
    let mval = |x: u32, y: u32| (x * 80 + y * 5).min(255);
    let mb: Vec<u8> = (0..4u32)
        .flat_map(|y| (0..4u32).map(move |x| mval(x, y) as u8))
        .collect();
    g.mem.write(mdata, &mb).unwrap();
    for (id, fmt, data) in [
        (1u32, surface_fmt::ARGB32, sdata),
        (2, surface_fmt::A8, mdata),
    ] {
        let stride = if fmt == surface_fmt::A8 { 4 } else { 16 };
        let a = g.b().surface_cmd(
            surface_cmd::CREATE,
            id,
            surface_cmd::FLAG_KEEP_DATA,
            fmt,
            4,
            4,
            stride,
            data,
        );
        g.run_any(a);
    }
    let simg = g.b().surface_image(1, 4, 4);
    let mimg = g.b().surface_image(2, 4, 4);
    let c = QxlComposite {
        flags: (3u32).into(), // OVER, no repeat
        src: simg.0.into(),
        src_transform: 0.into(),
        mask: mimg.0.into(),
        mask_transform: 0.into(),
        src_origin: QxlPoint16 {
            x: 0.into(),
            y: 0.into(),
        },
        mask_origin: QxlPoint16 {
            x: 0.into(),
            y: 0.into(),
        },
    };
    let bbox = Rect::new(10, 10, 16, 16); // larger than the source: outside is transparent
    let a = g
        .b()
        .drawable(0, draw_type::COMPOSITE, bbox, QxlPhys(0), c.as_bytes());
    g.run(a);
    check(&g.px(), |x, y| {
        if !inside(bbox, x, y) {
            return d0(x, y);
        }
        let (u, v) = (x - 10, y - 10);
        if u >= 4 || v >= 4 {
            return d0(x, y);
        }
        let m = mval(u, v);
        let s = src(u, v);
        let sa = round_mul(s >> 24, m);
        let d = d0(x, y);
        let mut out = 0;
        for sh in [0, 8, 16] {
            let v = round_mul((s >> sh) & 255, m) + round_mul((d >> sh) & 255, 255 - sa);
            out |= v.min(255) << sh;
        }
        out
    });
}

impl Rig {
    fn run_any(&mut self, addr: QxlPhys) {
        let c = decode_display(&self.mem, cmd_type::SURFACE, addr, &Limits::default()).unwrap();
        self.r.draw(&c, &self.mem).unwrap();
    }
}

#[test]
fn update_area_writes_rows_honouring_negative_stride() {
    let mem = VecMemory::with_slot(1 << 20);
    let (w, h) = (8u32, 6u32);
    let data = mem.alloc(1, (w * h * 4) as usize);
    let desc =
        validate_surface(&mem, w, h, -((w * 4) as i32), 32, data, &Limits::default()).unwrap();
    let mut r = Renderer::new(4, 1 << 20);
    r.create_surface(0, &desc, false, &mem).unwrap();
    let b = Builder::new(&mem);
    let f = fill_member(solid_brush(0xAABBCC), ropd::OP_PUT, no_mask());
    let area = Rect::new(1, 1, 4, 3);
    let a = b.drawable(0, draw_type::FILL, area, QxlPhys(0), &f);
    let c = decode_display(&mem, cmd_type::DRAW, a, &Limits::default()).unwrap();
    r.draw(&c, &mem).unwrap();
    // Write-through: the drawn rows are in guest memory at once (bottom-up rows).
    let bytes = mem.bytes(data, (w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let o = (((h - 1 - y) * w + x) * 4) as usize;
            let v = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
            let want = if inside(area, x, y) { 0xAABBCC } else { 0 };
            assert_eq!(v, want, "({x},{y}) after the draw");
        }
    }
    // The guest scribbles over its memory; UPDATE_AREA of a part rewrites just that part.
    mem.write(data, &vec![0u8; (w * h * 4) as usize]).unwrap();
    r.update_area(0, Rect::new(0, 0, 2, 2), &mem).unwrap();
    let bytes = mem.bytes(data, (w * h * 4) as usize);
    let guest = |x: u32, y: u32| {
        // Row y (top-down) lives at memory row h-1-y.
        let o = (((h - 1 - y) * w + x) * 4) as usize;
        u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap())
    };
    for y in 0..h {
        for x in 0..w {
            let want = if x == 1 && y == 1 { 0xAABBCC } else { 0 };
            assert_eq!(guest(x, y), want, "({x},{y}) after partial update");
        }
    }
    r.flush_all(&mem);
    let bytes = mem.bytes(data, (w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let o = (((h - 1 - y) * w + x) * 4) as usize;
            let v = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
            assert_eq!(
                v,
                if inside(area, x, y) { 0xAABBCC } else { 0 },
                "({x},{y}) after flush"
            );
        }
    }
}

#[test]
fn sixteen_bit_surface_round_trips_through_guest_memory() {
    let mem = VecMemory::with_slot(1 << 20);
    let data = mem.alloc(1, 4 * 2 * 2);
    let px: [u16; 4] = [0xF800, 0x07E0, 0x001F, 0xFFFF];
    mem.write(data, px.as_bytes()).unwrap();
    let desc =
        validate_surface(&mem, 2, 2, 4, surface_fmt::RGB565, data, &Limits::default()).unwrap();
    let mut r = Renderer::new(4, 1 << 20);
    r.create_surface(3, &desc, true, &mem).unwrap();
    assert_eq!(
        r.snapshot(3).unwrap().pixels,
        vec![0xFFFF0000, 0xFF00FF00, 0xFF0000FF, 0xFFFFFFFF]
    );
    mem.write(data, &[0; 8]).unwrap();
    r.update_area(3, Rect::new(0, 0, 2, 2), &mem).unwrap();
    assert_eq!(mem.bytes(data, 8), px.as_bytes());
}

#[test]
fn surfaces_aliasing_one_guest_buffer_are_bounded_by_the_budget() {
    let mem = VecMemory::with_slot(1 << 24);
    let data = mem.alloc(1, 1024 * 1024 * 4);
    let desc = validate_surface(&mem, 1024, 1024, 4096, 32, data, &Limits::default()).unwrap();
    // 16 MiB budget: 4 surfaces of 4 MiB fit, the fifth does not.
    let mut r = Renderer::new(1024, 16 << 20);
    for id in 1..=4 {
        r.create_surface(id, &desc, false, &mem).unwrap();
    }
    assert_eq!(
        r.create_surface(5, &desc, false, &mem).unwrap_err(),
        RenderError::OverBudget {
            requested: 4 << 20,
            used: 16 << 20,
            budget: 16 << 20
        }
    );
    // Destroying one frees its share.
    r.destroy_surface(1, &mem).unwrap();
    r.create_surface(5, &desc, false, &mem).unwrap();
    assert_eq!(r.used_bytes(), 16 << 20);
    assert_eq!(
        r.create_surface(1024, &desc, false, &mem).unwrap_err(),
        RenderError::SurfaceIdOutOfRange {
            id: 1024,
            n_surfaces: 1024
        }
    );
    r.destroy_all();
    assert_eq!(r.used_bytes(), 0);
    assert!(r.snapshot(5).is_none());
}

#[test]
fn draw_to_missing_surface_or_from_missing_source_is_an_error() {
    let mut g = rig();
    let f = fill_member(solid_brush(1), ropd::OP_PUT, no_mask());
    let a = g
        .b()
        .drawable(7, draw_type::FILL, Rect::new(0, 0, 2, 2), QxlPhys(0), &f);
    let c = decode_display(&g.mem, cmd_type::DRAW, a, &Limits::default()).unwrap();
    assert_eq!(
        g.r.draw(&c, &g.mem).unwrap_err(),
        RenderError::NoSuchSurface(7)
    );
    let img = g.b().surface_image(9, 4, 4);
    let c2 = copy_member(img, Rect::new(0, 0, 4, 4), ropd::OP_PUT, 0, no_mask());
    let a = g
        .b()
        .drawable(0, draw_type::COPY, Rect::new(0, 0, 4, 4), QxlPhys(0), &c2);
    let c = decode_display(&g.mem, cmd_type::DRAW, a, &Limits::default()).unwrap();
    assert_eq!(
        g.r.draw(&c, &g.mem).unwrap_err(),
        RenderError::NoSuchSurface(9)
    );
    // The primary is untouched and still there.
    check(&g.px(), d0);
    let _ = g.prim;
}

#[test]
fn composite_src_repeat_normal_and_translate_transform() {
    let mut g = rig();
    // A 2x3 RGBA bitmap tiled (REPEAT_NORMAL) over a 7x5 bbox with SRC, origin (1, 0).
    let src = |x: u32, y: u32| 0x8000_0000u32 | (x * 0x40) << 16 | (y * 0x30) << 8 | 0x20;
    let data: Vec<u8> = (0..3u32)
        .flat_map(|y| (0..2u32).map(move |x| src(x, y)))
        .flat_map(|p| p.to_le_bytes())
        .collect();
    let img = g.b().bitmap_image(
        bitmap_fmt::RGBA,
        bitmap_flags::TOP_DOWN,
        2,
        3,
        8,
        QxlPhys(0),
        &data,
        0,
    );
    // Translation by (0, +1) in 16.16 fixed point.
    let mut t = Vec::new();
    for v in [0x10000u32, 0, 0, 0, 0x10000, 0x10000] {
        t.extend_from_slice(&v.to_le_bytes());
    }
    let tf = g.b().put(&t);
    let c = QxlComposite {
        flags: (1u32 | 1 << 14).into(), // SRC, src repeat NORMAL
        src: img.0.into(),
        src_transform: tf.0.into(),
        mask: 0.into(),
        mask_transform: 0.into(),
        src_origin: QxlPoint16 {
            x: 1.into(),
            y: 0.into(),
        },
        mask_origin: QxlPoint16 {
            x: 0.into(),
            y: 0.into(),
        },
    };
    let bbox = Rect::new(3, 2, 10, 7);
    let a = g
        .b()
        .drawable(0, draw_type::COMPOSITE, bbox, QxlPhys(0), c.as_bytes());
    g.run(a);
    let px = g.px();
    for y in 0..H {
        for x in 0..W {
            let want = if inside(bbox, x, y) {
                let (u, v) = (x - 3 + 1, y - 2 + 1);
                src(u % 2, v % 3)
            } else {
                d0(x, y)
            };
            // SRC replaces all four channels (the primary is xRGB: compare colour only).
            assert_eq!(
                px[(y * W + x) as usize] & 0xFF_FFFF,
                want & 0xFF_FFFF,
                "({x},{y})"
            );
        }
    }
}

#[test]
fn styled_stroke_draws_dashes() {
    for gap_first in [false, true] {
        let mut g = rig();
        let mut m = stroke_member(&g, &[(0, 5), (19, 5)], ropd::OP_PUT);
        // Patch the line attributes: STYLED (+ START_WITH_GAP), 2 segments: 3 px on, 2 px off.
        let style = g.b().put(&[48, 0, 0, 0, 32, 0, 0, 0]);
        let mut s = QxlStroke::read_from_bytes(&m).unwrap();
        s.attr.flags = line_flags::STYLED
            | if gap_first {
                line_flags::START_WITH_GAP
            } else {
                0
            };
        s.attr.style_nseg = 2;
        s.attr.style = style.0.into();
        m = s.as_bytes().to_vec();
        let bbox = Rect::new(0, 0, W as i32, H as i32);
        let a = g.b().drawable(0, draw_type::STROKE, bbox, QxlPhys(0), &m);
        g.run(a);
        check(&g.px(), |x, y| {
            let on = y == 5 && x <= 19 && ((x % 5) < 3) != gap_first;
            if on {
                0xFF00FF
            } else {
                d0(x, y)
            }
        });
    }
}

#[test]
fn copy_scaled_interpolate_is_bilinear() {
    let mut g = rig();
    let src = [0xFF00_0000u32, 0xFFFF_FFFF, 0xFF80_4020, 0xFF10_2030];
    let img = g.b().argb_image(2, 2, &src);
    let bbox = Rect::new(3, 3, 9, 8); // 2x2 -> 6x5
    let c = copy_member(img, Rect::new(0, 0, 2, 2), ropd::OP_PUT, 0, no_mask());
    let a = g.b().drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c);
    g.run(a);
    // Pixel centres: s = (d + 0.5)·2/n − 0.5, clamped at 0 and 1; weights in 1/256.
    let pos = |d: u32, n: u32| -> (usize, usize, u64) {
        let f = ((d as f64 + 0.5) * 2.0 / n as f64 - 0.5).max(0.0);
        let i0 = (f.floor() as usize).min(1);
        let w = ((f - f.floor()) * 256.0).round() as u64;
        (i0, (i0 + 1).min(1), w)
    };
    check(&g.px(), |x, y| {
        if !inside(bbox, x, y) {
            return d0(x, y);
        }
        let (x0, x1, wx) = pos(x - 3, 6);
        let (y0, y1, wy) = pos(y - 3, 5);
        let p = |xx: usize, yy: usize, sh: u32| ((src[yy * 2 + xx] >> sh) & 255) as u64;
        let mut out = 0u32;
        for sh in [0, 8, 16] {
            let v = p(x0, y0, sh) * (256 - wx) * (256 - wy)
                + p(x1, y0, sh) * wx * (256 - wy)
                + p(x0, y1, sh) * (256 - wx) * wy
                + p(x1, y1, sh) * wx * wy;
            out |= (((v + 32768) >> 16) as u32) << sh;
        }
        out
    });
}

#[test]
fn snapshot_area_copies_the_clipped_rectangle_top_down() {
    let g = rig();
    // Partly outside the surface: clipped to columns 20..24, rows 10..16.
    let s = g.r.snapshot_area(0, Rect::new(20, 10, 40, 30)).unwrap();
    assert_eq!((s.width, s.height), (W - 20, H - 10));
    let want: Vec<u32> = (10..H)
        .flat_map(|y| (20..W).map(move |x| d0(x, y)))
        .collect();
    assert_eq!(s.pixels, want);
    assert!(g
        .r
        .snapshot_area(0, Rect::new(W as i32, 0, W as i32 + 5, 4))
        .is_none());
    assert!(g.r.snapshot_area(7, Rect::new(0, 0, 4, 4)).is_none());
}
