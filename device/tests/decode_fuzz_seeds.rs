//! Seeds for the `decode` fuzz target: one well-formed case per command shape, each run
//! through the target's driver (`decode::fuzz::run`). With `QXL_WRITE_FUZZ_SEEDS=1` the cases
//! are written to `device/fuzz/corpus/decode/`.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::*;
use qxl_device::decode::fuzz::{self, FuzzInput, MAX_SLOT};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::{CursorKind, Rect};
use qxl_device::mem::QxlPhys;
use zerocopy::{FromZeros, IntoBytes};

fn case(
    name: &str,
    selector: u8,
    ty: u32,
    build: impl FnOnce(&Builder<'_>) -> QxlPhys,
) -> (String, Vec<u8>) {
    let m = VecMemory::with_slot(MAX_SLOT);
    let b = Builder::new(&m);
    let a = build(&b);
    let inp = FuzzInput {
        selector,
        ty,
        offset: a.offset() as u32,
        slot1: m.used_bytes(1),
        slot2: Vec::new(),
    };
    (name.to_string(), inp.encode())
}

fn nm() -> QxlQMask {
    qmask(false, 0, 0, QxlPhys(0))
}

fn draw(b: &Builder<'_>, ty: u8, bbox: Rect, member: &[u8]) -> QxlPhys {
    b.drawable(0, ty, bbox, QxlPhys(0), member)
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let d = cmd_type::DRAW;
    let bb = Rect::new(2, 2, 18, 18);
    let mut v = vec![
        case("linux_copy", 0, d, |b| {
            let img = b.argb_image(16, 16, &[0x00FF8040; 256]);
            let clip = b.clip_rects(&[Rect::new(0, 0, 10, 10), Rect::new(8, 8, 20, 20)]);
            let c = copy_member(img, Rect::new(0, 0, 16, 16), ropd::OP_PUT, 0, nm());
            b.drawable(0, draw_type::COPY, bb, clip, &c)
        }),
        case("fill_clip", 0, d, |b| {
            let clip = b.clip_rects(&[Rect::new(0, 0, 5, 5)]);
            let f = fill_member(solid_brush(0x123456), ropd::OP_XOR | ropd::INVERS_RES, nm());
            b.drawable(0, draw_type::FILL, bb, clip, &f)
        }),
        case("copy_pal8_mask_chunks", 0, d, |b| {
            let pal = b.palette(&[1, 2, 3, 4]);
            let img = b.bitmap_image(bitmap_fmt::EIGHT_BIT, 0, 8, 8, 8, pal, &[2; 64], 20);
            let mask = b.bitmap_image(
                bitmap_fmt::ONE_BIT_LE,
                0,
                8,
                8,
                1,
                QxlPhys(0),
                &[0x5A; 8],
                0,
            );
            let c = copy_member(
                img,
                Rect::new(0, 0, 8, 8),
                ropd::OP_AND,
                1,
                qmask(true, 1, 1, mask),
            );
            draw(b, draw_type::COPY, Rect::new(0, 0, 16, 16), &c)
        }),
        case("copy_surface_image", 0, d, |b| {
            let img = b.surface_image(1, 32, 32);
            let c = copy_member(img, Rect::new(0, 0, 32, 32), ropd::OP_PUT, 0, nm());
            draw(b, draw_type::COPY, Rect::new(0, 0, 32, 32), &c)
        }),
        case("copy_bits", 0, d, |b| {
            let cb = QxlCopyBits {
                src_pos: QxlPoint {
                    x: 0.into(),
                    y: 8.into(),
                },
            };
            draw(
                b,
                draw_type::COPY_BITS,
                Rect::new(0, 0, 64, 56),
                cb.as_bytes(),
            )
        }),
        case("opaque_pattern", 0, d, |b| {
            let img = b.argb_image(4, 4, &[7; 16]);
            let o = QxlOpaque {
                src_bitmap: img.0.into(),
                src_area: qrect(Rect::new(0, 0, 4, 4)),
                brush: pattern_brush(img, 1, 2),
                rop_descriptor: ropd::OP_OR.into(),
                scale_mode: 0,
                mask: nm(),
            };
            draw(b, draw_type::OPAQUE, bb, o.as_bytes())
        }),
        case("rop3", 0, d, |b| {
            let img = b.bitmap_image(
                bitmap_fmt::TWENTYFOUR_BIT,
                bitmap_flags::TOP_DOWN,
                4,
                4,
                12,
                QxlPhys(0),
                &[9; 48],
                0,
            );
            let r = QxlRop3 {
                src_bitmap: img.0.into(),
                src_area: qrect(Rect::new(0, 0, 4, 4)),
                brush: solid_brush(0xFF),
                rop3: 0xB8,
                scale_mode: 1,
                mask: nm(),
            };
            draw(b, draw_type::ROP3, bb, r.as_bytes())
        }),
        case("transparent_16bit", 0, d, |b| {
            let img = b.bitmap_image(
                bitmap_fmt::SIXTEEN_BIT,
                0,
                4,
                4,
                8,
                QxlPhys(0),
                &[0x1F; 32],
                0,
            );
            let t = QxlTransparent {
                src_bitmap: img.0.into(),
                src_area: qrect(Rect::new(0, 0, 4, 4)),
                src_color: 0xFF.into(),
                true_color: 0.into(),
            };
            draw(b, draw_type::TRANSPARENT, bb, t.as_bytes())
        }),
        case("alpha_blend_rgba", 0, d, |b| {
            let img = b.bitmap_image(
                bitmap_fmt::RGBA,
                bitmap_flags::TOP_DOWN | bitmap_flags::DIRECT,
                4,
                4,
                16,
                QxlPhys(0),
                &[0x80; 64],
                0,
            );
            let a = QxlAlphaBlend {
                alpha_flags: 3.into(),
                alpha: 200,
                src_bitmap: img.0.into(),
                src_area: qrect(Rect::new(0, 0, 4, 4)),
            };
            draw(b, draw_type::ALPHA_BLEND, bb, a.as_bytes())
        }),
        case("stroke", 0, d, |b| {
            let mut seg = (path_flags::BEGIN | path_flags::BEZIER)
                .to_le_bytes()
                .to_vec();
            seg.extend_from_slice(&4u32.to_le_bytes());
            for v in [0i32, 0, 160, 0, 160, 160, 320, 320] {
                seg.extend_from_slice(&v.to_le_bytes());
            }
            let mut p = QxlPath::new_zeroed();
            p.data_size = (seg.len() as u32).into();
            p.chunk.data_size = (seg.len() as u32).into();
            let mut bytes = p.as_bytes().to_vec();
            bytes.extend_from_slice(&seg);
            let path = b.put(&bytes);
            let mut s = QxlStroke::new_zeroed();
            s.path = path.0.into();
            s.brush = solid_brush(0xFFFFFF);
            s.fore_mode = ropd::OP_XOR.into();
            draw(b, draw_type::STROKE, Rect::new(0, 0, 64, 64), s.as_bytes())
        }),
        case("composite", 0, d, |b| {
            let src = b.surface_image(1, 32, 32);
            let mask = b.surface_image(2, 16, 16);
            let mut t = Vec::new();
            for v in [0x8000u32, 0, 0, 0, 0x8000, 0] {
                t.extend_from_slice(&v.to_le_bytes());
            }
            let tf = b.put(&t);
            let c = QxlComposite {
                flags: (3 | 1 << 14 | 3 << 16).into(),
                src: src.0.into(),
                src_transform: tf.0.into(),
                mask: mask.0.into(),
                mask_transform: 0.into(),
                src_origin: QxlPoint16 {
                    x: 1.into(),
                    y: 1.into(),
                },
                mask_origin: QxlPoint16 {
                    x: 0.into(),
                    y: 0.into(),
                },
            };
            draw(
                b,
                draw_type::COMPOSITE,
                Rect::new(0, 0, 40, 40),
                c.as_bytes(),
            )
        }),
        case("surface_create", 0, cmd_type::SURFACE, |b| {
            let data = b.mem.alloc(1, 16 * 16 * 4);
            b.surface_cmd(
                surface_cmd::CREATE,
                4,
                surface_cmd::FLAG_KEEP_DATA,
                surface_fmt::XRGB32,
                16,
                16,
                -64,
                data,
            )
        }),
        case("surface_destroy", 0, cmd_type::SURFACE, |b| {
            b.surface_cmd(surface_cmd::DESTROY, 1, 0, 0, 0, 0, 0, QxlPhys(0))
        }),
        case("cursor_move", 1, cmd_type::CURSOR, |b| {
            let mut c = QxlCursorCmd::new_zeroed();
            c.ty = cursor_cmd::MOVE;
            b.put(c.as_bytes())
        }),
        case("monitors", 2, 0, |b| {
            let mut v = vec![2, 0, 4, 0];
            v.extend_from_slice(&[0; 56]);
            b.put(&v)
        }),
        case("validate_surface", 3, 32, |b| {
            let mut v = Vec::new();
            for x in [16u32, 16, 64, 64, 1] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            b.put(&v)
        }),
    ];
    for ty in [
        draw_type::BLACKNESS,
        draw_type::WHITENESS,
        draw_type::INVERS,
    ] {
        v.push(case(&format!("mask_op_{ty}"), 0, d, |b| {
            let mask = b.bitmap_image(
                bitmap_fmt::ONE_BIT_BE,
                0,
                8,
                8,
                1,
                QxlPhys(0),
                &[0xA5; 8],
                0,
            );
            draw(b, ty, bb, qmask(false, 0, 0, mask).as_bytes())
        }));
    }
    for bpp_flag in [
        string_flags::RASTER_A1,
        string_flags::RASTER_A4,
        string_flags::RASTER_A8,
    ] {
        v.push(case(&format!("text_{bpp_flag}"), 0, d, |b| {
            let bpp = match bpp_flag {
                1 => 1,
                2 => 4,
                _ => 8,
            };
            let stride = (5 * bpp as usize).div_ceil(8);
            let g = QxlRasterGlyph {
                render_pos: QxlPoint {
                    x: 4.into(),
                    y: 10.into(),
                },
                glyph_origin: QxlPoint {
                    x: 0.into(),
                    y: (-6).into(),
                },
                width: 5.into(),
                height: 6.into(),
            };
            let mut body = g.as_bytes().to_vec();
            body.extend(std::iter::repeat_n(0xC3u8, stride * 6));
            let mut s = QxlString::new_zeroed();
            s.data_size = (body.len() as u32).into();
            s.length = 1.into();
            s.flags = bpp_flag.into();
            s.chunk.data_size = (body.len() as u32).into();
            let mut bytes = s.as_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let sa = b.put(&bytes);
            let t = QxlText {
                str: sa.0.into(),
                back_area: qrect(Rect::new(0, 0, 20, 12)),
                fore_brush: solid_brush(0xFFFFFF),
                back_brush: solid_brush(0x101010),
                fore_mode: ropd::OP_PUT.into(),
                back_mode: ropd::OP_PUT.into(),
            };
            draw(b, draw_type::TEXT, Rect::new(0, 0, 20, 12), t.as_bytes())
        }));
    }
    for ty in 0..=6u16 {
        let kind = CursorKind::from_raw(ty).expect("cursor type");
        v.push(case(
            &format!("cursor_set_{ty}"),
            1,
            cmd_type::CURSOR,
            |b| {
                let n = kind.data_size(8, 8) as usize;
                b.cursor_set(3, 3, ty, 8, 8, n as u32, &vec![0x5A; n])
            },
        ));
    }
    v
}

#[test]
fn seeds_run_through_the_fuzz_driver() {
    let seeds = seeds();
    assert!(seeds.len() >= 29);
    for (name, bytes) in &seeds {
        assert_eq!(
            FuzzInput::parse(bytes).map(|i| i.encode()).as_ref(),
            Some(bytes),
            "{name}"
        );
        fuzz::run(bytes);
        // Every seed is well formed: its decoder accepts it.
        let inp = FuzzInput::parse(bytes).unwrap();
        let mut m = VecMemory::new();
        m.add_slot_with(1, 0, inp.slot1.clone());
        let a = QxlPhys::new(1, 0, inp.offset as u64);
        let l = qxl_device::decode::Limits::default();
        let ok = match inp.selector {
            0 => qxl_device::decode::decode_display(&m, inp.ty, a, &l).map(|_| ()),
            1 => qxl_device::decode::decode_cursor(&m, inp.ty, a, &l).map(|_| ()),
            2 => qxl_device::decode::decode_monitors_config(&m, a, &l).map(|_| ()),
            _ => Ok(()),
        };
        assert!(ok.is_ok(), "{name}: {ok:?}");
    }
    if std::env::var_os("QXL_WRITE_FUZZ_SEEDS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
        }
    }
}

#[test]
fn fuzz_driver_survives_truncated_seeds() {
    for (_, bytes) in seeds() {
        for cut in (0..bytes.len()).step_by(7) {
            fuzz::run(&bytes[..cut]);
        }
    }
}
