//! Plays what Xorg's qxl driver (xf86-video-qxl) sends — solid fills, uploads into off-screen
//! surfaces, surface-to-surface copies, COPY_BITS scrolls, RENDER composites — through
//! decode + render, and checks the pixels the guest reads back after UPDATE_AREA.
//!
//! The expected screen is kept by a plain model in this file (rectangle fills and copies on a
//! `Vec<u32>`), independent of the renderer.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{copy_member, fill_member, qmask, solid_brush, Builder};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, QxlPhys};
use qxl_device::render::Renderer;
use zerocopy::IntoBytes;

const W: u32 = 64;
const H: u32 = 48;

struct Xorg {
    mem: VecMemory,
    r: Renderer,
    primary: QxlPhys,
    model: Vec<u32>,
}

impl Xorg {
    /// Xorg UMS: primary at the start of the main slot, negative stride (bottom-up).
    fn start() -> Self {
        let mem = VecMemory::with_slot(1 << 22);
        let primary = mem.alloc(1, (W * H * 4) as usize);
        let mut r = Renderer::new(64, 64 << 20);
        let desc = validate_surface(
            &mem,
            W,
            H,
            -((W * 4) as i32),
            32,
            primary,
            &Limits::default(),
        )
        .expect("primary");
        r.create_surface(0, &desc, false, &mem).unwrap();
        Xorg {
            mem,
            r,
            primary,
            model: vec![0; (W * H) as usize],
        }
    }
    fn b(&self) -> Builder<'_> {
        Builder::new(&self.mem)
    }
    fn submit(&mut self, ty: u32, addr: QxlPhys) {
        let c = decode_display(&self.mem, ty, addr, &Limits::default()).expect("decode");
        self.r.draw(&c, &self.mem).expect("render");
    }
    fn fill(&mut self, surface: u32, r: Rect, color: u32) {
        let f = fill_member(
            solid_brush(color),
            ropd::OP_PUT,
            qmask(false, 0, 0, QxlPhys(0)),
        );
        let a = self
            .b()
            .drawable(surface, draw_type::FILL, r, QxlPhys(0), &f);
        self.submit(cmd_type::DRAW, a);
        if surface == 0 {
            for y in r.top..r.bottom {
                for x in r.left..r.right {
                    self.model[(y as u32 * W + x as u32) as usize] = color;
                }
            }
        }
    }
    /// What the guest sees in the primary's memory after UPDATE_AREA of the whole screen.
    fn guest_screen(&mut self) -> Vec<u32> {
        self.r
            .update_area(0, Rect::new(0, 0, W as i32, H as i32), &self.mem)
            .unwrap();
        let bytes = self.mem.bytes(self.primary, (W * H * 4) as usize);
        let mut out = vec![0u32; (W * H) as usize];
        for y in 0..H {
            let mem_row = H - 1 - y; // negative stride
            for x in 0..W {
                let o = ((mem_row * W + x) * 4) as usize;
                out[(y * W + x) as usize] = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
            }
        }
        out
    }
    fn assert_screen(&mut self, what: &str) {
        let got = self.guest_screen();
        for (i, (g, m)) in got.iter().zip(&self.model).enumerate() {
            assert_eq!(
                g & 0xFF_FFFF,
                m & 0xFF_FFFF,
                "{what}: pixel ({},{}) got {g:#x} want {m:#x}",
                i as u32 % W,
                i as u32 / W
            );
        }
    }
}

fn tile(x: u32, y: u32) -> u32 {
    (x * 31 + y * 7) << 16 | (x * 5) << 8 | (y * 9 + 3)
}

#[test]
fn xorg_session_fill_upload_copy_scroll_composite() {
    let mut x = Xorg::start();

    // 1. Clear the root window, draw a title bar.
    x.fill(0, Rect::new(0, 0, W as i32, H as i32), 0x202020);
    x.fill(0, Rect::new(0, 0, W as i32, 6), 0x3366CC);
    x.assert_screen("after fills");

    // 2. An off-screen pixmap as surface 1 (32_xRGB) in the VRAM slot, filled by an upload:
    //    a 16BIT (x555) bitmap with CACHE flag in 3 chunks, like qxl_image.c does for large ones.
    let mut vram = VecMemory::new();
    std::mem::swap(&mut vram, &mut x.mem);
    vram.add_slot(2, 0, 1 << 20);
    x.mem = vram;
    let pix = x.mem.alloc(2, 16 * 16 * 4);
    let a = x.b().surface_cmd(
        surface_cmd::CREATE,
        1,
        0,
        surface_fmt::XRGB32,
        16,
        16,
        64,
        pix,
    );
    x.submit(cmd_type::SURFACE, a);
    let x555 = |c: u32| -> u16 {
        (((c >> 19) & 31) << 10 | ((c >> 11) & 31) << 5 | ((c >> 3) & 31)) as u16
    };
    let expand = |v: u16| -> u32 {
        let e = |c: u32| (c << 3) | (c >> 2);
        e(((v >> 10) & 31) as u32) << 16 | e(((v >> 5) & 31) as u32) << 8 | e((v & 31) as u32)
    };
    let data: Vec<u8> = (0..16u32)
        .flat_map(|y| (0..16u32).map(move |xx| tile(xx, y)))
        .flat_map(|c| x555(c).to_le_bytes())
        .collect();
    let img = x.b().bitmap_image(
        bitmap_fmt::SIXTEEN_BIT,
        bitmap_flags::TOP_DOWN,
        16,
        16,
        32,
        QxlPhys(0),
        &data,
        200,
    );
    x.b().patch(img, 9, &[image_flags::CACHE]);
    let c = copy_member(
        img,
        Rect::new(0, 0, 16, 16),
        ropd::OP_PUT,
        0,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = x
        .b()
        .drawable(1, draw_type::COPY, Rect::new(0, 0, 16, 16), QxlPhys(0), &c);
    x.submit(cmd_type::DRAW, a);

    // 3. Copy the pixmap to the screen twice (SURFACE image), one with a clip.
    let simg = x.b().surface_image(1, 16, 16);
    for (dst, clip) in [
        (Rect::new(4, 10, 20, 26), None),
        (Rect::new(30, 10, 46, 26), Some(Rect::new(30, 10, 38, 18))),
    ] {
        let c = copy_member(
            simg,
            Rect::new(0, 0, 16, 16),
            ropd::OP_PUT,
            0,
            qmask(false, 0, 0, QxlPhys(0)),
        );
        let clip_addr = clip.map_or(QxlPhys(0), |r| x.b().clip_rects(&[r]));
        let a = x.b().drawable(0, draw_type::COPY, dst, clip_addr, &c);
        x.submit(cmd_type::DRAW, a);
        let area = clip.unwrap_or(dst);
        for yy in area.top..area.bottom {
            for xx in area.left..area.right {
                let (u, v) = ((xx - dst.left) as u32, (yy - dst.top) as u32);
                x.model[(yy as u32 * W + xx as u32) as usize] = expand(x555(tile(u, v)));
            }
        }
    }
    x.assert_screen("after surface copies");

    // 4. Scroll the area below the title bar up by 4 lines (COPY_BITS), then clear the
    //    exposed strip.
    let bbox = Rect::new(0, 6, W as i32, H as i32 - 4);
    let cb = QxlCopyBits {
        src_pos: QxlPoint {
            x: 0.into(),
            y: 10.into(),
        },
    };
    let a = x
        .b()
        .drawable(0, draw_type::COPY_BITS, bbox, QxlPhys(0), cb.as_bytes());
    x.submit(cmd_type::DRAW, a);
    let before = x.model.clone();
    for yy in bbox.top..bbox.bottom {
        for xx in bbox.left..bbox.right {
            x.model[(yy as u32 * W + xx as u32) as usize] =
                before[((yy + 4) as u32 * W + xx as u32) as usize];
        }
    }
    x.fill(0, Rect::new(0, H as i32 - 4, W as i32, H as i32), 0x202020);
    x.assert_screen("after scroll");

    // 5. RENDER: an ARGB glyph cache surface composited through an A8 mask surface (OVER).
    let argb = x.mem.alloc(2, 8 * 8 * 4);
    let a = x.b().surface_cmd(
        surface_cmd::CREATE,
        2,
        0,
        surface_fmt::ARGB32,
        8,
        8,
        32,
        argb,
    );
    x.submit(cmd_type::SURFACE, a);
    let a8 = x.mem.alloc(2, 8 * 8);
    let a = x
        .b()
        .surface_cmd(surface_cmd::CREATE, 3, 0, surface_fmt::A8, 8, 8, 8, a8);
    x.submit(cmd_type::SURFACE, a);
    // Fill the ARGB surface with opaque red and the mask with a gradient via FILLs of alpha.
    let red = 0xFFFF_0000u32;
    let f = fill_member(
        solid_brush(red),
        ropd::OP_PUT,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = x
        .b()
        .drawable(2, draw_type::FILL, Rect::new(0, 0, 8, 8), QxlPhys(0), &f);
    x.submit(cmd_type::DRAW, a);
    for col in 0..8 {
        let alpha = col * 32 + 31;
        let f = fill_member(
            solid_brush(alpha << 24),
            ropd::OP_PUT,
            qmask(false, 0, 0, QxlPhys(0)),
        );
        let a = x.b().drawable(
            3,
            draw_type::FILL,
            Rect::new(col as i32, 0, col as i32 + 1, 8),
            QxlPhys(0),
            &f,
        );
        x.submit(cmd_type::DRAW, a);
    }
    let src = x.b().surface_image(2, 8, 8);
    let mask = x.b().surface_image(3, 8, 8);
    let comp = QxlComposite {
        flags: 3u32.into(),
        src: src.0.into(),
        src_transform: 0.into(),
        mask: mask.0.into(),
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
    let dst = Rect::new(50, 30, 58, 38);
    let a = x
        .b()
        .drawable(0, draw_type::COMPOSITE, dst, QxlPhys(0), comp.as_bytes());
    x.submit(cmd_type::DRAW, a);
    let mul = |a: u32, b: u32| ((a * b) as f64 / 255.0).round() as u32;
    for yy in dst.top..dst.bottom {
        for xx in dst.left..dst.right {
            let m = (xx - dst.left) as u32 * 32 + 31;
            let d = x.model[(yy as u32 * W + xx as u32) as usize];
            let mut out = 0;
            for (sh, s) in [(16u32, 255u32), (8, 0), (0, 0)] {
                out |= (mul(s, m) + mul((d >> sh) & 255, 255 - m)).min(255) << sh;
            }
            x.model[(yy as u32 * W + xx as u32) as usize] = out;
        }
    }
    x.assert_screen("after composite");

    // 6. The off-screen pixmap is destroyed: its pixels land in its guest memory first.
    let a = x
        .b()
        .surface_cmd(surface_cmd::DESTROY, 1, 0, 0, 0, 0, 0, QxlPhys(0));
    x.submit(cmd_type::SURFACE, a);
    let bytes = x.mem.bytes(pix, 16 * 16 * 4);
    for yy in 0..16u32 {
        for xx in 0..16u32 {
            let o = ((yy * 16 + xx) * 4) as usize;
            let v = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) & 0xFF_FFFF;
            assert_eq!(v, expand(x555(tile(xx, yy))), "pixmap pixel ({xx},{yy})");
        }
    }
    assert!(x.r.snapshot(1).is_none());
}

#[test]
fn xorg_rgba_upload_and_a8_surface_write_back() {
    let mut x = Xorg::start();
    // A8 surface (Xorg's glyph masks) written through FILL, read back by UPDATE_AREA.
    let a8 = x.mem.alloc(1, 12 * 4);
    let a = x
        .b()
        .surface_cmd(surface_cmd::CREATE, 5, 0, surface_fmt::A8, 10, 4, 12, a8);
    x.submit(cmd_type::SURFACE, a);
    let f = fill_member(
        solid_brush(0x8000_0000),
        ropd::OP_PUT,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = x
        .b()
        .drawable(5, draw_type::FILL, Rect::new(2, 1, 7, 3), QxlPhys(0), &f);
    x.submit(cmd_type::DRAW, a);
    x.r.update_area(5, Rect::new(0, 0, 10, 4), &x.mem).unwrap();
    let bytes = x.mem.bytes(a8, 48);
    for y in 0..4 {
        for xx in 0..10 {
            let want = if (2..7).contains(&xx) && (1..3).contains(&y) {
                0x80
            } else {
                0
            };
            assert_eq!(bytes[y * 12 + xx], want, "A8 ({xx},{y})");
        }
    }
    // RGBA upload into an ARGB surface keeps alpha.
    let argb = x.mem.alloc(1, 4 * 4 * 4);
    let a = x.b().surface_cmd(
        surface_cmd::CREATE,
        6,
        0,
        surface_fmt::ARGB32,
        4,
        4,
        16,
        argb,
    );
    x.submit(cmd_type::SURFACE, a);
    let px: Vec<u32> = (0..16).map(|i| (i * 16) << 24 | i).collect();
    let data: Vec<u8> = px.as_bytes().to_vec();
    let img = x.b().bitmap_image(
        bitmap_fmt::RGBA,
        bitmap_flags::TOP_DOWN,
        4,
        4,
        16,
        QxlPhys(0),
        &data,
        24,
    );
    let c = copy_member(
        img,
        Rect::new(0, 0, 4, 4),
        ropd::OP_PUT,
        0,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = x
        .b()
        .drawable(6, draw_type::COPY, Rect::new(0, 0, 4, 4), QxlPhys(0), &c);
    x.submit(cmd_type::DRAW, a);
    assert_eq!(x.r.snapshot(6).unwrap().pixels, px);
    let _ = x.mem.read_u32(argb);
}
