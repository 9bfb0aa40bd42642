//! Decoding every command the guest can send: round trips (guest bytes → value with the same
//! fields) and truncation (every command cut at the end of its memslot is rejected).

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{
    copy_member, fill_member, pattern_brush, qmask, qrect, solid_brush, Builder,
};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, MemError, QxlPhys};
use zerocopy::{FromZeros, IntoBytes};

fn limits() -> Limits {
    Limits::default()
}

fn draw(mem: &VecMemory, addr: QxlPhys) -> Result<Drawable, DecodeError> {
    match decode_display(mem, cmd_type::DRAW, addr, &limits())? {
        DisplayCommand::Draw(d) => Ok(*d),
        other => panic!("not a draw: {other:?}"),
    }
}

fn no_mask() -> QxlQMask {
    qmask(false, 0, 0, QxlPhys(0))
}

#[test]
fn linux_style_copy_decodes_with_all_fields() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let px: Vec<u32> = (0..16).collect();
    let img = b.argb_image(4, 4, &px);
    let clip = b.clip_rects(&[Rect::new(0, 0, 2, 2), Rect::new(2, 2, 4, 4)]);
    let bbox = Rect::new(10, 20, 14, 24);
    let mem = copy_member(img, Rect::new(0, 0, 4, 4), ropd::OP_PUT, 0, no_mask());
    let a = b.drawable(0, draw_type::COPY, bbox, clip, &mem);
    let d = draw(&m, a).unwrap();
    assert_eq!(d.surface_id, 0);
    assert_eq!(d.bbox, bbox);
    assert_eq!(
        d.clip,
        Clip::Rects(vec![Rect::new(0, 0, 2, 2), Rect::new(2, 2, 4, 4)].into())
    );
    assert_eq!(d.surfaces_dest, [-1, -1, -1]);
    let DrawOp::Copy {
        src,
        src_area,
        rop,
        mask,
        ..
    } = &d.op
    else {
        panic!("{:?}", d.op)
    };
    assert_eq!(*src_area, Rect::new(0, 0, 4, 4));
    assert_eq!(rop.0, ropd::OP_PUT);
    assert!(mask.is_none());
    let bm = src.bitmap().unwrap();
    assert_eq!(bm.format, BitmapFormat::Xrgb32);
    assert_eq!((bm.width, bm.height, bm.stride), (4, 4, 16));
    assert!(bm.top_down);
    let argb = bm.to_argb(&m).unwrap();
    let want: Vec<u32> = px.iter().map(|p| p | 0xFF00_0000).collect();
    assert_eq!(argb, want);
}

#[test]
fn clip_rect_lists_of_every_length_decode_in_order() {
    // 1 is what Linux sends (kept inline), 0 and 2.. take the general path: same results.
    for n in [0usize, 1, 2, 5] {
        let m = VecMemory::with_slot(1 << 16);
        let b = Builder::new(&m);
        let px: Vec<u32> = (0..16).collect();
        let img = b.argb_image(4, 4, &px);
        let rects: Vec<Rect> = (0..n as i32)
            .map(|i| Rect::new(i, 2 * i, i + 3, 2 * i + 1))
            .collect();
        let clip = b.clip_rects(&rects);
        let mem = copy_member(img, Rect::new(0, 0, 4, 4), ropd::OP_PUT, 0, no_mask());
        let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, 4, 4), clip, &mem);
        let d = draw(&m, a).unwrap();
        let Clip::Rects(got) = &d.clip else {
            panic!("n={n}: {:?}", d.clip)
        };
        assert_eq!(&got[..], &rects[..], "n={n}");
        assert_eq!(d.clip, Clip::Rects(rects.clone().into()), "n={n}");
    }
}

#[test]
fn every_draw_type_decodes() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let img = b.argb_image(2, 2, &[1, 2, 3, 4]);
    let mask_img = b.bitmap_image(
        bitmap_fmt::ONE_BIT_BE,
        bitmap_flags::TOP_DOWN,
        2,
        2,
        1,
        QxlPhys(0),
        &[0x80, 0x40],
        0,
    );
    let bbox = Rect::new(0, 0, 2, 2);
    let area = qrect(Rect::new(0, 0, 2, 2));
    let pat = pattern_brush(img, 1, 1);

    // FILL with pattern brush and mask.
    let f = fill_member(pat, ropd::OP_XOR, qmask(true, 0, 0, mask_img));
    let d = draw(&m, b.drawable(0, draw_type::FILL, bbox, QxlPhys(0), &f)).unwrap();
    let DrawOp::Fill { brush, rop, mask } = d.op else {
        panic!()
    };
    assert!(matches!(
        brush,
        Brush::Pattern {
            pos: Point { x: 1, y: 1 },
            ..
        }
    ));
    assert_eq!(rop.0, ropd::OP_XOR);
    assert!(mask.unwrap().invers);

    // OPAQUE.
    let o = QxlOpaque {
        src_bitmap: img.0.into(),
        src_area: area,
        brush: solid_brush(0xFF0000),
        rop_descriptor: (ropd::OP_AND).into(),
        scale_mode: 1,
        mask: no_mask(),
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::OPAQUE, bbox, QxlPhys(0), o.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        d.op,
        DrawOp::Opaque {
            brush: Brush::Solid(0xFF0000),
            scale_mode: ScaleMode::Nearest,
            ..
        }
    ));

    // BLEND.
    let c = copy_member(img, Rect::new(0, 0, 2, 2), ropd::OP_OR, 0, no_mask());
    let d = draw(&m, b.drawable(0, draw_type::BLEND, bbox, QxlPhys(0), &c)).unwrap();
    assert!(matches!(
        d.op,
        DrawOp::Blend {
            rop: Ropd(ropd::OP_OR),
            ..
        }
    ));

    // COPY_BITS.
    let cb = QxlCopyBits {
        src_pos: QxlPoint {
            x: 5.into(),
            y: (-3).into(),
        },
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::COPY_BITS, bbox, QxlPhys(0), cb.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        d.op,
        DrawOp::CopyBits {
            src_pos: Point { x: 5, y: -3 }
        }
    );

    // BLACKNESS / WHITENESS / INVERS.
    for (ty, name) in [
        (draw_type::BLACKNESS, "black"),
        (draw_type::WHITENESS, "white"),
        (draw_type::INVERS, "invers"),
    ] {
        let d = draw(
            &m,
            b.drawable(0, ty, bbox, QxlPhys(0), no_mask().as_bytes()),
        )
        .unwrap();
        let ok = matches!(
            (&d.op, name),
            (DrawOp::Blackness { mask: None }, "black")
                | (DrawOp::Whiteness { mask: None }, "white")
                | (DrawOp::Invers { mask: None }, "invers")
        );
        assert!(ok, "{name}: {:?}", d.op);
    }

    // ROP3.
    let r = QxlRop3 {
        src_bitmap: img.0.into(),
        src_area: area,
        brush: solid_brush(7),
        rop3: 0xB8,
        scale_mode: 0,
        mask: no_mask(),
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::ROP3, bbox, QxlPhys(0), r.as_bytes()),
    )
    .unwrap();
    assert!(matches!(d.op, DrawOp::Rop3 { rop3: 0xB8, .. }));

    // STROKE: a path with one segment of two points, styled with 2 dashes.
    let mut seg = Vec::new();
    seg.extend_from_slice(&(path_flags::BEGIN | path_flags::END).to_le_bytes());
    seg.extend_from_slice(&2u32.to_le_bytes());
    for v in [0i32, 0, 32, 16] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    let mut path = (seg.len() as u32).to_le_bytes().to_vec();
    path.extend_from_slice(&(seg.len() as u32).to_le_bytes());
    path.extend_from_slice(&[0; 16]);
    path.extend_from_slice(&seg);
    let path = b.put(&path);
    let style = b.put(&[16, 0, 0, 0, 32, 0, 0, 0]);
    let s = QxlStroke {
        path: path.0.into(),
        attr: QxlLineAttr {
            flags: line_flags::STYLED,
            join_style: 1,
            end_style: 2,
            style_nseg: 2,
            width: 16.into(),
            miter_limit: 0.into(),
            style: style.0.into(),
        },
        brush: solid_brush(0xABCDEF),
        fore_mode: ropd::OP_PUT.into(),
        back_mode: 0.into(),
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::STROKE, bbox, QxlPhys(0), s.as_bytes()),
    )
    .unwrap();
    let DrawOp::Stroke { path, attr, .. } = d.op else {
        panic!()
    };
    assert_eq!(path.len(), 1);
    assert_eq!(
        path[0].points,
        vec![PointFix { x: 0, y: 0 }, PointFix { x: 32, y: 16 }]
    );
    assert_eq!(attr.style, vec![16, 32]);
    assert_eq!(attr.width, 16);

    // TEXT: two A1 glyphs.
    let t = text_member(&b, string_flags::RASTER_A1 | string_flags::RASTER_TOP_DOWN);
    let d = draw(&m, b.drawable(0, draw_type::TEXT, bbox, QxlPhys(0), &t)).unwrap();
    let DrawOp::Text { string, .. } = d.op else {
        panic!()
    };
    assert_eq!(string.bpp, 1);
    assert_eq!(string.glyphs.len(), 2);
    assert_eq!(string.glyphs[1].render_pos, Point { x: 8, y: 0 });
    assert_eq!(string.glyphs[0].data, vec![0xF0, 0x90]);

    // TRANSPARENT.
    let tr = QxlTransparent {
        src_bitmap: img.0.into(),
        src_area: area,
        src_color: 0x00FF00.into(),
        true_color: 0x00FF00.into(),
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::TRANSPARENT, bbox, QxlPhys(0), tr.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        d.op,
        DrawOp::Transparent {
            src_color: 0x00FF00,
            ..
        }
    ));

    // ALPHA_BLEND.
    let ab = QxlAlphaBlend {
        alpha_flags: alpha_flags::SRC_SURFACE_HAS_ALPHA.into(),
        alpha: 128,
        src_bitmap: img.0.into(),
        src_area: area,
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::ALPHA_BLEND, bbox, QxlPhys(0), ab.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        d.op,
        DrawOp::AlphaBlend {
            alpha: 128,
            alpha_flags: 2,
            ..
        }
    ));

    // COMPOSITE with a transform and a surface mask.
    let mut tf = Vec::new();
    for v in [0x10000u32, 0, 0x20000, 0, 0x10000, 0] {
        tf.extend_from_slice(&v.to_le_bytes());
    }
    let tf = b.put(&tf);
    let smask = b.surface_image(3, 2, 2);
    let c = QxlComposite {
        flags: (3 | (1 << 14) | (2 << 16) | (1 << 18)).into(),
        src: img.0.into(),
        src_transform: tf.0.into(),
        mask: smask.0.into(),
        mask_transform: 0.into(),
        src_origin: QxlPoint16 {
            x: 1.into(),
            y: 2.into(),
        },
        mask_origin: QxlPoint16 {
            x: 0.into(),
            y: 0.into(),
        },
    };
    let d = draw(
        &m,
        b.drawable(0, draw_type::COMPOSITE, bbox, QxlPhys(0), c.as_bytes()),
    )
    .unwrap();
    let DrawOp::Composite {
        op,
        src_repeat,
        mask_repeat,
        component_alpha,
        src_transform,
        mask,
        src_origin,
        ..
    } = d.op
    else {
        panic!()
    };
    assert_eq!(op, CompositeOp::OVER);
    assert_eq!(src_repeat, Repeat::Normal);
    assert_eq!(mask_repeat, Repeat::Pad);
    assert!(component_alpha);
    assert_eq!(
        src_transform,
        Some(Transform([0x10000, 0, 0x20000, 0, 0x10000, 0]))
    );
    assert_eq!(mask.unwrap().kind, ImageKind::Surface { surface_id: 3 });
    assert_eq!(src_origin, Point { x: 1, y: 2 });

    // NOP.
    let d = draw(&m, b.drawable(0, draw_type::NOP, bbox, QxlPhys(0), &[])).unwrap();
    assert_eq!(d.op, DrawOp::Nop);
}

/// A TEXT member with two 4x2 glyphs.
fn text_member(b: &Builder<'_>, flags: u16) -> Vec<u8> {
    let mut glyphs = Vec::new();
    for (i, rows) in [[0xF0u8, 0x90], [0x60, 0x60]].iter().enumerate() {
        let g = QxlRasterGlyph {
            render_pos: QxlPoint {
                x: (i as i32 * 8).into(),
                y: 0.into(),
            },
            glyph_origin: QxlPoint {
                x: 0.into(),
                y: 0.into(),
            },
            width: 4.into(),
            height: 2.into(),
        };
        glyphs.extend_from_slice(g.as_bytes());
        glyphs.extend_from_slice(rows);
    }
    let mut s = QxlString::new_zeroed();
    s.data_size = (glyphs.len() as u32).into();
    s.length = 2.into();
    s.flags = flags.into();
    s.chunk.data_size = (glyphs.len() as u32).into();
    let mut bytes = s.as_bytes().to_vec();
    bytes.extend_from_slice(&glyphs);
    let str_addr = b.put(&bytes);
    QxlText {
        str: str_addr.0.into(),
        back_area: qrect(Rect::new(0, 0, 12, 2)),
        fore_brush: solid_brush(0xFFFFFF),
        back_brush: solid_brush(0x000080),
        fore_mode: ropd::OP_PUT.into(),
        back_mode: ropd::OP_PUT.into(),
    }
    .as_bytes()
    .to_vec()
}

#[test]
fn bitmap_formats_convert_to_argb() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let pal = b.palette(&[0x000000, 0xFF0000, 0x00FF00, 0x0000FF, 0x123456]);
    let cases: Vec<(u8, u32, Vec<u8>, Vec<u32>)> = vec![
        // (format, stride, one row of 4 pixels, expected)
        (
            bitmap_fmt::ONE_BIT_BE,
            4,
            vec![0b0101_0000, 0, 0, 0],
            vec![0, 0xFF0000, 0, 0xFF0000],
        ),
        (
            bitmap_fmt::ONE_BIT_LE,
            4,
            vec![0b0000_0110, 0, 0, 0],
            vec![0, 0xFF0000, 0xFF0000, 0],
        ),
        (
            bitmap_fmt::FOUR_BIT_BE,
            4,
            vec![0x12, 0x34, 0, 0],
            vec![0xFF0000, 0x00FF00, 0x0000FF, 0x123456],
        ),
        (
            bitmap_fmt::FOUR_BIT_LE,
            4,
            vec![0x12, 0x34, 0, 0],
            vec![0x00FF00, 0xFF0000, 0x123456, 0x0000FF],
        ),
        (
            bitmap_fmt::EIGHT_BIT,
            4,
            vec![4, 3, 2, 9],
            vec![0x123456, 0x0000FF, 0x00FF00, 0],
        ),
        (
            bitmap_fmt::SIXTEEN_BIT,
            8,
            [0x7C00u16, 0x03E0, 0x001F, 0x4210]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![0xFF0000, 0x00FF00, 0x0000FF, 0x848484],
        ),
        (
            bitmap_fmt::TWENTYFOUR_BIT,
            12,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            vec![0x030201, 0x060504, 0x090807, 0x0C0B0A],
        ),
        (
            bitmap_fmt::THIRTYTWO_BIT,
            16,
            [0xAA112233u32, 1, 2, 3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![0x112233, 1, 2, 3],
        ),
    ];
    for (fmt, stride, row, want) in cases {
        // Two rows, bottom-up: memory row 0 is the bottom row (all zero bytes).
        let mut data = vec![0u8; stride as usize];
        data.extend_from_slice(&row);
        let a = b.bitmap_image(fmt, 0, 4, 2, stride, pal, &data, 3);
        let img = decode_image_via_copy(&m, &b, a);
        let px = img.bitmap().unwrap().to_argb(&m).unwrap();
        let want: Vec<u32> = want.iter().map(|p| p | 0xFF00_0000).collect();
        assert_eq!(&px[..4], &want[..], "format {fmt} top row");
    }
    // RGBA keeps alpha; 8BIT_A puts alpha in the top byte.
    let a = b.bitmap_image(
        bitmap_fmt::RGBA,
        bitmap_flags::TOP_DOWN | bitmap_flags::DIRECT,
        1,
        1,
        4,
        QxlPhys(0),
        &0x80402010u32.to_le_bytes(),
        0,
    );
    let img = decode_image_via_copy(&m, &b, a);
    assert_eq!(img.bitmap().unwrap().to_argb(&m).unwrap(), vec![0x80402010]);
    let a = b.bitmap_image(
        bitmap_fmt::EIGHT_BIT_A,
        0,
        1,
        1,
        4,
        QxlPhys(0),
        &[0x7F, 0, 0, 0],
        0,
    );
    let img = decode_image_via_copy(&m, &b, a);
    assert_eq!(
        img.bitmap().unwrap().to_argb(&m).unwrap(),
        vec![0x7F00_0000]
    );
}

fn decode_image_via_copy(m: &VecMemory, b: &Builder<'_>, img: QxlPhys) -> Image {
    let c = copy_member(img, Rect::new(0, 0, 1, 1), ropd::OP_PUT, 0, no_mask());
    let d = draw(
        m,
        b.drawable(0, draw_type::COPY, Rect::new(0, 0, 1, 1), QxlPhys(0), &c),
    )
    .unwrap();
    match d.op {
        DrawOp::Copy { src, .. } => src,
        _ => unreachable!(),
    }
}

#[test]
fn bitmap_load_copies_pixels_to_the_host() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let a = b.argb_image(2, 1, &[0x11, 0x22]);
    let img = decode_image_via_copy(&m, &b, a);
    let owned = img.bitmap().unwrap().load(&m).unwrap();
    assert!(matches!(owned.data, PixelData::Owned(_)));
    // Changing guest memory afterwards does not change the owned copy.
    let empty = VecMemory::new();
    assert_eq!(owned.to_argb(&empty).unwrap(), vec![0xFF000011, 0xFF000022]);
}

#[test]
fn surface_commands_round_trip() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let data = m.alloc(1, 64 * 4 * 8);
    let a = b.surface_cmd(
        surface_cmd::CREATE,
        5,
        surface_cmd::FLAG_KEEP_DATA,
        surface_fmt::XRGB32,
        64,
        8,
        -256,
        data,
    );
    let c = decode_display(&m, cmd_type::SURFACE, a, &limits()).unwrap();
    let DisplayCommand::Surface(SurfaceCommand::Create {
        id,
        desc,
        keep_data,
    }) = c
    else {
        panic!("{c:?}")
    };
    assert_eq!((id, keep_data), (5, true));
    assert_eq!(
        desc,
        SurfaceDesc {
            width: 64,
            height: 8,
            stride: -256,
            format: 32,
            data
        }
    );
    let a = b.surface_cmd(surface_cmd::DESTROY, 5, 0, 0, 0, 0, 0, QxlPhys(0));
    let c = decode_display(&m, cmd_type::SURFACE, a, &limits()).unwrap();
    assert!(matches!(
        c,
        DisplayCommand::Surface(SurfaceCommand::Destroy { id: 5 })
    ));
}

#[test]
fn every_cursor_type_decodes_with_its_exact_size() {
    let m = VecMemory::with_slot(1 << 20);
    let b = Builder::new(&m);
    for ty in 0..=6u16 {
        let kind = CursorKind::from_raw(ty).unwrap();
        let n = kind.data_size(9, 7) as usize;
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let a = b.cursor_set(-3, 4, ty, 9, 7, n as u32, &data);
        let c = decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap();
        let CursorCommand::Set {
            position,
            visible,
            shape,
        } = c
        else {
            panic!()
        };
        assert_eq!(position, Point { x: -3, y: 4 });
        assert!(visible);
        assert_eq!(shape.kind, kind);
        assert_eq!(
            (shape.width, shape.height, shape.hot_x, shape.hot_y),
            (9, 7, 1, 2)
        );
        assert_eq!(shape.data, data, "type {ty}");
    }
    // Linux's 64x64 ALPHA cursor.
    let a = b.cursor_set(
        10,
        10,
        cursor_type::ALPHA,
        64,
        64,
        16384,
        &vec![0xEE; 16384],
    );
    assert!(decode_cursor(&m, cmd_type::CURSOR, a, &limits()).is_ok());
}

#[test]
fn cursor_move_hide_trail() {
    let m = VecMemory::with_slot(4096);
    let b = Builder::new(&m);
    let mut c = QxlCursorCmd::new_zeroed();
    c.ty = cursor_cmd::MOVE;
    c.u[0..2].copy_from_slice(&100i16.to_le_bytes());
    c.u[2..4].copy_from_slice(&(-5i16).to_le_bytes());
    let a = b.put(c.as_bytes());
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap(),
        CursorCommand::Move {
            position: Point { x: 100, y: -5 }
        }
    );
    c.ty = cursor_cmd::HIDE;
    let a = b.put(c.as_bytes());
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap(),
        CursorCommand::Hide
    );
    c.ty = cursor_cmd::TRAIL;
    let a = b.put(c.as_bytes());
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap(),
        CursorCommand::Trail {
            length: 100,
            frequency: (-5i16) as u16
        }
    );
}

#[test]
fn monitors_config_round_trip() {
    let m = VecMemory::with_slot(4096);
    let b = Builder::new(&m);
    let mut bytes = vec![2, 0, 4, 0];
    for h in [[0u32, 0, 1024, 768, 0, 0, 0], [1, 0, 800, 600, 1024, 0, 0]] {
        for v in h {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    let a = b.put(&bytes);
    let c = decode_monitors_config(&m, a, &limits()).unwrap();
    assert_eq!(c.max_allowed, 4);
    assert_eq!(c.heads.len(), 2);
    assert_eq!(
        c.heads[1],
        Head {
            id: 1,
            surface_id: 0,
            width: 800,
            height: 600,
            x: 1024,
            y: 0,
            flags: 0
        }
    );
}

#[test]
fn update_and_message_are_harmless() {
    let m = VecMemory::with_slot(4096);
    let b = Builder::new(&m);
    let u = QxlUpdateCmd {
        release_info: QxlReleaseInfo { id: 1.into() },
        area: qrect(Rect::new(0, 0, 10, 10)),
        update_id: 3.into(),
        surface_id: 0.into(),
    };
    let a = b.put(u.as_bytes());
    assert!(matches!(
        decode_display(&m, cmd_type::UPDATE, a, &limits()).unwrap(),
        DisplayCommand::Update { update_id: 3, .. }
    ));
    assert!(matches!(
        decode_display(&m, cmd_type::MESSAGE, a, &limits()).unwrap(),
        DisplayCommand::Message
    ));
    assert!(matches!(
        decode_display(&m, cmd_type::NOP, a, &limits()).unwrap(),
        DisplayCommand::Nop
    ));
}

/// Places `bytes` at the very end of a slot of exactly that size, then checks that every
/// shorter slot (the command cut at each length) is rejected with a memory error.
fn truncation(bytes: &[u8], decode: impl Fn(&VecMemory, QxlPhys) -> Result<(), DecodeError>) {
    for cut in 0..bytes.len() {
        let mut m = VecMemory::new();
        let mut slot = vec![0u8; 8];
        slot.extend_from_slice(&bytes[..cut]);
        m.add_slot_with(1, 0, slot);
        let e = decode(&m, QxlPhys::new(1, 0, 8)).expect_err("truncated command decoded");
        assert!(
            matches!(e, DecodeError::Mem(MemError::OutOfSlot { .. })),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn truncated_commands_are_rejected() {
    let mut d = QxlDrawable::new_zeroed();
    d.ty = draw_type::BLACKNESS;
    truncation(d.as_bytes(), |m, a| {
        decode_display(m, cmd_type::DRAW, a, &limits()).map(|_| ())
    });
    let s = QxlSurfaceCmd::new_zeroed();
    truncation(s.as_bytes(), |m, a| {
        decode_display(m, cmd_type::SURFACE, a, &limits()).map(|_| ())
    });
    let mut c = QxlCursorCmd::new_zeroed();
    c.ty = cursor_cmd::HIDE;
    truncation(c.as_bytes(), |m, a| {
        decode_cursor(m, cmd_type::CURSOR, a, &limits()).map(|_| ())
    });
    truncation(
        &[
            1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7,
            0, 0, 0,
        ],
        |m, a| decode_monitors_config(m, a, &limits()).map(|_| ()),
    );
}

#[test]
fn truncated_bitmap_data_is_rejected() {
    // The bitmap's single chunk claims h*stride bytes but the slot ends early.
    let m = VecMemory::with_slot(4096);
    let b = Builder::new(&m);
    let img = b.argb_image(4, 4, &[0; 16]);
    let c = copy_member(img, Rect::new(0, 0, 4, 4), ropd::OP_PUT, 0, no_mask());
    let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, 4, 4), QxlPhys(0), &c);
    assert!(draw(&m, a).is_ok());
    // Point the data at the last 32 bytes of the slot instead.
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&64u32.to_le_bytes());
    hdr.extend_from_slice(&[0; 16]);
    let end = QxlPhys::new(1, 0, 4096 - 20 - 32);
    m.write(end, &hdr).unwrap();
    b.patch(img, 18 + 22, &end.0.to_le_bytes());
    let e = draw(&m, a).unwrap_err();
    assert!(
        matches!(e, DecodeError::Mem(MemError::OutOfSlot { .. })),
        "{e}"
    );
}

#[test]
fn garbage_never_panics() {
    // Deterministic pseudo-random slots decoded as every command type at many offsets.
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let mut m = VecMemory::new();
        let mut bytes: Vec<u8> = (0..2048).map(|_| next() as u8).collect();
        // Sprinkle valid-looking addresses into slot 1 so pointers sometimes resolve.
        for i in (0..bytes.len() - 8).step_by(37) {
            if next() % 3 == 0 {
                let a = QxlPhys::new(1, 0, next() % 2048).0;
                bytes[i..i + 8].copy_from_slice(&a.to_le_bytes());
            }
        }
        m.add_slot_with(1, 0, bytes);
        for off in (0..2048).step_by(61) {
            let a = QxlPhys::new(1, 0, off);
            let ty = (round % 7) as u32;
            let _ = decode_display(&m, ty, a, &limits());
            let _ = decode_display(&m, cmd_type::DRAW, a, &limits());
            let _ = decode_cursor(&m, cmd_type::CURSOR, a, &limits());
            let _ = decode_monitors_config(&m, a, &limits());
            let _ = validate_surface(
                &m,
                next() as u32 % 4096,
                next() as u32 % 4096,
                next() as i32,
                32,
                a,
                &limits(),
            );
        }
    }
}

#[test]
fn load_pixels_makes_a_command_independent_of_guest_memory() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let img = b.argb_image(2, 1, &[0x10, 0x20]);
    let c = copy_member(img, Rect::new(0, 0, 2, 1), ropd::OP_PUT, 0, no_mask());
    let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, 2, 1), QxlPhys(0), &c);
    let mut cmd = decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap();
    cmd.load_pixels(&m).unwrap();
    let DisplayCommand::Draw(d) = cmd else {
        panic!()
    };
    let DrawOp::Copy { src, .. } = &d.op else {
        panic!()
    };
    let bm = src.bitmap().unwrap();
    assert!(matches!(bm.data, PixelData::Owned(_)));
    assert_eq!(
        bm.to_argb(&VecMemory::new()).unwrap(),
        vec![0xFF000010, 0xFF000020]
    );
}
