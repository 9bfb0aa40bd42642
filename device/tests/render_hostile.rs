//! What a hostile guest gets from the renderer: extreme coordinates, sources outside their
//! surfaces, self-referencing surfaces, and surfaces whose memory vanished. Nothing panics,
//! nothing outside the destination surface changes, and errors name the offending value.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{copy_member, fill_member, qmask, solid_brush, Builder};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, QxlPhys};
use qxl_device::render::{RenderError, Renderer};
use zerocopy::{FromZeros, IntoBytes};

const MIN: i32 = i32::MIN;
const MAX: i32 = i32::MAX;

fn setup() -> (VecMemory, Renderer) {
    let mem = VecMemory::with_slot(1 << 20);
    let data = mem.alloc(1, 16 * 16 * 4);
    let mut r = Renderer::new(8, 1 << 20);
    let desc = validate_surface(&mem, 16, 16, 64, 32, data, &Limits::default()).unwrap();
    r.create_surface(0, &desc, false, &mem).unwrap();
    (mem, r)
}

/// Decodes (which must succeed: these commands are well formed, only extreme) and draws.
fn run(mem: &VecMemory, r: &mut Renderer, a: QxlPhys) -> Result<(), RenderError> {
    let c = decode_display(mem, cmd_type::DRAW, a, &Limits::default()).expect("decodes");
    r.draw(&c, mem)
}

fn nm() -> QxlQMask {
    qmask(false, 0, 0, QxlPhys(0))
}

#[test]
fn extreme_coordinates_never_panic() {
    let (mem, mut r) = setup();
    let b = Builder::new(&mem);
    let boxes = [
        Rect::new(MIN, MIN, MAX, MAX),
        Rect::new(MAX - 1, MAX - 1, MAX, MAX),
        Rect::new(MIN, MIN, MIN + 1, MIN + 1),
        Rect::new(-5, -5, 3, 3),
        Rect::new(10, 10, 40000, 40000),
    ];
    let img = b.argb_image(4, 4, &[0xFF; 16]);
    let sur = b.surface_image(0, 16, 16);
    for bbox in boxes {
        let f = fill_member(solid_brush(0x10), ropd::OP_XOR, nm());
        run(
            &mem,
            &mut r,
            b.drawable(0, draw_type::FILL, bbox, QxlPhys(0), &f),
        )
        .unwrap();
        let c = copy_member(img, Rect::new(0, 0, 4, 4), ropd::OP_PUT, 1, nm());
        run(
            &mem,
            &mut r,
            b.drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c),
        )
        .unwrap();
        let c = copy_member(sur, Rect::new(0, 0, 16, 16), ropd::OP_OR, 0, nm());
        run(
            &mem,
            &mut r,
            b.drawable(0, draw_type::COPY, bbox, QxlPhys(0), &c),
        )
        .unwrap();
        for (x, y) in [(MIN, MIN), (MAX, MAX), (MAX, MIN), (-8, 8)] {
            let cb = QxlCopyBits {
                src_pos: QxlPoint {
                    x: x.into(),
                    y: y.into(),
                },
            };
            run(
                &mem,
                &mut r,
                b.drawable(0, draw_type::COPY_BITS, bbox, QxlPhys(0), cb.as_bytes()),
            )
            .unwrap();
            let comp = QxlComposite {
                flags: (3u32 | 3 << 14).into(),
                src: sur.0.into(),
                src_transform: 0.into(),
                mask: 0.into(),
                mask_transform: 0.into(),
                src_origin: QxlPoint16 {
                    x: (x as i16).into(),
                    y: (y as i16).into(),
                },
                mask_origin: QxlPoint16 {
                    x: 0.into(),
                    y: 0.into(),
                },
            };
            run(
                &mem,
                &mut r,
                b.drawable(0, draw_type::COMPOSITE, bbox, QxlPhys(0), comp.as_bytes()),
            )
            .unwrap();
        }
        // Stroke between extreme 28.4 points.
        let mut seg = (path_flags::BEGIN | path_flags::END | path_flags::CLOSE)
            .to_le_bytes()
            .to_vec();
        seg.extend_from_slice(&3u32.to_le_bytes());
        for v in [MIN, MIN, MAX, MAX, MIN, MAX] {
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
        s.brush = solid_brush(1);
        s.fore_mode = ropd::OP_XOR.into();
        run(
            &mem,
            &mut r,
            b.drawable(0, draw_type::STROKE, bbox, QxlPhys(0), s.as_bytes()),
        )
        .unwrap();
        // A glyph at an extreme position.
        let g = QxlRasterGlyph {
            render_pos: QxlPoint {
                x: MAX.into(),
                y: MIN.into(),
            },
            glyph_origin: QxlPoint {
                x: MAX.into(),
                y: MIN.into(),
            },
            width: 8.into(),
            height: 1.into(),
        };
        let mut body = g.as_bytes().to_vec();
        body.push(0xFF);
        let mut st = QxlString::new_zeroed();
        st.data_size = (body.len() as u32).into();
        st.length = 1.into();
        st.flags = string_flags::RASTER_A1.into();
        st.chunk.data_size = (body.len() as u32).into();
        let mut sb = st.as_bytes().to_vec();
        sb.extend_from_slice(&body);
        let sa = b.put(&sb);
        let t = QxlText {
            str: sa.0.into(),
            back_area: b_rect(bbox),
            fore_brush: solid_brush(1),
            back_brush: solid_brush(2),
            fore_mode: ropd::OP_PUT.into(),
            back_mode: ropd::OP_PUT.into(),
        };
        run(
            &mem,
            &mut r,
            b.drawable(0, draw_type::TEXT, bbox, QxlPhys(0), t.as_bytes()),
        )
        .unwrap();
    }
    assert_eq!(r.snapshot(0).unwrap().pixels.len(), 256);
}

fn b_rect(r: Rect) -> QxlRect {
    qxl_device::decode::build::qrect(r)
}

#[test]
fn source_area_outside_a_surface_is_rejected() {
    let (mem, mut r) = setup();
    let b = Builder::new(&mem);
    let sur = b.surface_image(0, 16, 16);
    let c = copy_member(sur, Rect::new(8, 8, 24, 24), ropd::OP_PUT, 0, nm());
    let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, 16, 16), QxlPhys(0), &c);
    assert_eq!(
        run(&mem, &mut r, a).unwrap_err(),
        RenderError::SourceOutOfBounds {
            surface: 0,
            area: Rect::new(8, 8, 24, 24),
            width: 16,
            height: 16
        }
    );
}

#[test]
fn write_back_to_vanished_memory_is_an_error_not_a_panic() {
    let (mem, mut r) = setup();
    let b = Builder::new(&mem);
    let f = fill_member(solid_brush(0x10), ropd::OP_PUT, nm());
    run(
        &mem,
        &mut r,
        b.drawable(0, draw_type::FILL, Rect::new(0, 0, 4, 4), QxlPhys(0), &f),
    )
    .unwrap();
    // The slot the surface lives in is gone (memslot deleted / reset).
    let empty = VecMemory::new();
    assert!(matches!(
        r.update_area(0, Rect::new(0, 0, 16, 16), &empty)
            .unwrap_err(),
        RenderError::Mem(_)
    ));
    r.flush_all(&empty);
    assert!(matches!(
        r.destroy_surface(0, &empty).unwrap_err(),
        RenderError::Mem(_)
    ));
    assert_eq!(r.used_bytes(), 0);
    let _ = mem.read_u32(QxlPhys::new(1, 0, 8));
}

#[test]
fn update_area_of_a_missing_surface_names_it() {
    let (mem, mut r) = setup();
    assert_eq!(
        r.update_area(3, Rect::new(0, 0, 1, 1), &mem).unwrap_err(),
        RenderError::NoSuchSurface(3)
    );
    assert_eq!(
        r.update_area(0, Rect::new(MIN, MIN, MAX, MAX), &mem),
        Ok(())
    );
}
