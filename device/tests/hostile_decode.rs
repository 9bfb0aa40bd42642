//! What a hostile guest gets from the decoder: one test per class of the reference's CVE list
//! (qxl-device.md §9) that the decoder owns. Each asserts the exact rejection, naming the
//! offending value.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::{copy_member, qmask, Builder};
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, MemError, QxlPhys};
use std::cell::Cell;
use zerocopy::{FromZeros, IntoBytes};

fn limits() -> Limits {
    Limits::default()
}

fn copy_of(m: &VecMemory, img: QxlPhys, w: i32, h: i32) -> Result<DisplayCommand, DecodeError> {
    let b = Builder::new(m);
    let c = copy_member(
        img,
        Rect::new(0, 0, w, h),
        ropd::OP_PUT,
        0,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, w, h), QxlPhys(0), &c);
    decode_display(m, cmd_type::DRAW, a, &limits())
}

fn chunk_header(size: u32, next: u64) -> Vec<u8> {
    let mut h = size.to_le_bytes().to_vec();
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&next.to_le_bytes());
    h
}

#[test]
fn chunk_chain_that_loops_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    // Two chunks of 8 bytes pointing at each other; the bitmap wants 4x4x4 = 64 bytes.
    let c1 = m.alloc(1, 28);
    let c2 = m.alloc(1, 28);
    let mut h1 = chunk_header(8, c2.0);
    h1.extend_from_slice(&[0; 8]);
    let mut h2 = chunk_header(8, c1.0);
    h2.extend_from_slice(&[0; 8]);
    m.write(c1, &h1).unwrap();
    m.write(c2, &h2).unwrap();
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 4, 4, 16, QxlPhys(0), c1);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::ChunkLoop { addr: c1.0 }
    );
}

#[test]
fn chunk_chain_longer_than_its_ttl_is_rejected() {
    let m = VecMemory::with_slot(1 << 20);
    let b = Builder::new(&m);
    let parts: Vec<&[u8]> = (0..100).map(|_| &[0u8; 4][..]).collect();
    let data = b.chunks(&parts);
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 10, 10, 40, QxlPhys(0), data);
    let strict = Limits {
        max_chunks: 64,
        ..Limits::default()
    };
    let c = copy_member(
        img,
        Rect::new(0, 0, 10, 10),
        ropd::OP_PUT,
        0,
        qmask(false, 0, 0, QxlPhys(0)),
    );
    let a = b.drawable(0, draw_type::COPY, Rect::new(0, 0, 10, 10), QxlPhys(0), &c);
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &strict).unwrap_err(),
        DecodeError::TooManyChunks { max: 64 }
    );
    // The same chain under the default limit decodes (100 chunks of 4 = 400 = 10*40 bytes).
    assert!(decode_display(&m, cmd_type::DRAW, a, &limits()).is_ok());
}

#[test]
fn chunk_that_overruns_its_slot_is_rejected() {
    let m = VecMemory::with_slot(4096);
    let b = Builder::new(&m);
    // A chunk at the end of the slot claiming 64 bytes with only 16 left.
    let at = QxlPhys::new(1, 0, 4096 - 36);
    m.write(at, &chunk_header(64, 0)).unwrap();
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 4, 4, 16, QxlPhys(0), at);
    let e = copy_of(&m, img, 4, 4).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Mem(MemError::OutOfSlot {
                slot: 1,
                slot_size: 4096,
                ..
            })
        ),
        "{e}"
    );
}

#[test]
fn chunk_chain_that_lies_about_its_total_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    // Short: 48 of 64 bytes.
    let data = b.chunks(&[&[0; 16], &[0; 32]]);
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 4, 4, 16, QxlPhys(0), data);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::ChunkTotalMismatch {
            what: "bitmap",
            expected: 64,
            got: 48
        }
    );
    // Long: 80 bytes for 64; the walk stops as soon as the total passes the bitmap size.
    let data = b.chunks(&[&[0; 48], &[0; 32]]);
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 4, 4, 16, QxlPhys(0), data);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::ChunkDataTooLarge { total: 80, max: 64 }
    );
    // A chunk whose data_size alone is 4 GiB - 1 (the classic wrap).
    let data = m.put(1, &chunk_header(u32::MAX, 0));
    let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, 4, 4, 16, QxlPhys(0), data);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::ChunkDataTooLarge {
            total: u32::MAX as u64,
            max: 64
        }
    );
}

#[test]
fn overflowing_bitmap_sizes_are_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let data = b.chunks(&[&[0; 16]]);
    for (w, h, stride) in [
        (0xFFFF_FFFFu32, 0xFFFF_FFFFu32, 0xFFFF_FFFFu32), // x*y*bpp overflows 64-bit maths in u32
        (0x4000_0001, 1, 0x0000_0004),                    // stride wraps below x*4
        (16384, 16384, 65536), // y*stride = 1 GiB * 1 > 0x7FFFFFFF? (= 2^30, fine) but > slot
        (30000, 30000, 0x2_0000), // y*stride > 0x7FFFFFFF
        (4, 4, 15),            // stride < 4*4
        (0, 4, 16),            // zero width
    ] {
        let img = b.bitmap_image_at(bitmap_fmt::THIRTYTWO_BIT, 0, w, h, stride, QxlPhys(0), data);
        let e = copy_of(&m, img, 1, 1).unwrap_err();
        match e {
            DecodeError::BadBitmapSize {
                width,
                height,
                stride: s,
                format: 8,
            } => assert_eq!((width, height, s), (w, h, stride)),
            // 16384x16384 passes the size rules and then fails on the chunk total.
            DecodeError::ChunkTotalMismatch {
                expected, got: 16, ..
            } => {
                assert_eq!(expected, h as u64 * stride as u64)
            }
            other => panic!("{w}x{h} stride {stride}: {other}"),
        }
    }
    // A DIRECT bitmap whose y*stride runs past the slot.
    let img = b.bitmap_image_at(
        bitmap_fmt::THIRTYTWO_BIT,
        bitmap_flags::DIRECT,
        256,
        256,
        1024,
        QxlPhys(0),
        data,
    );
    assert!(matches!(
        copy_of(&m, img, 1, 1).unwrap_err(),
        DecodeError::Mem(MemError::OutOfSlot { .. })
    ));
}

#[test]
fn src_area_outside_the_bitmap_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let img = b.argb_image(4, 4, &[0; 16]);
    let e = copy_of(&m, img, 5, 4).unwrap_err();
    assert!(
        matches!(e, DecodeError::BadRect { rect, .. } if rect == Rect::new(0, 0, 5, 4)),
        "{e}"
    );
}

#[test]
fn cursor_size_overflow_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    // 65535 x 65535 ALPHA: w*h*4 overflows 32-bit maths (CVE-2021-4206).
    let a = b.cursor_set(0, 0, cursor_type::ALPHA, 0xFFFF, 0xFFFF, 16, &[0; 16]);
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::BadCursorSize {
            width: 0xFFFF,
            height: 0xFFFF,
            max: MAX_CURSOR_SIDE
        }
    );
    // data_size smaller than w*h*4.
    let a = b.cursor_set(0, 0, cursor_type::ALPHA, 8, 8, 255, &[0; 256]);
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::CursorDataShort {
            ty: 0,
            width: 8,
            height: 8,
            needed: 256,
            available: 255
        }
    );
    // data_size large but the chunk holds less.
    let a = b.cursor_set(0, 0, cursor_type::MONO, 32, 32, 1 << 30, &[0; 100]);
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::CursorDataShort {
            ty: 1,
            width: 32,
            height: 32,
            needed: 256,
            available: 100
        }
    );
    // Unknown cursor type and unknown cursor command.
    let a = b.cursor_set(0, 0, 7, 8, 8, 256, &[0; 256]);
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::BadCursorType(7)
    );
    let mut c = QxlCursorCmd::new_zeroed();
    c.ty = 9;
    let a = b.put(c.as_bytes());
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::BadCursorCmdType(9)
    );
}

#[test]
fn palette_beyond_bounds_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let data = b.chunks(&[&[0; 16]]);
    // num_ents 300 > 256.
    let ents: Vec<u32> = vec![0; 300];
    let pal = b.palette(&ents);
    let img = b.bitmap_image_at(bitmap_fmt::EIGHT_BIT, 0, 4, 4, 4, pal, data);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::PaletteTooLarge {
            num_ents: 300,
            max: 256
        }
    );
    // Entries running past the slot end.
    let pal = QxlPhys::new(1, 0, (1 << 16) - 20);
    let mut hdr = 0u64.to_le_bytes().to_vec();
    hdr.extend_from_slice(&200u16.to_le_bytes());
    m.write(pal, &hdr).unwrap();
    let img = b.bitmap_image_at(bitmap_fmt::EIGHT_BIT, 0, 4, 4, 4, pal, data);
    assert!(matches!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::Mem(MemError::OutOfSlot { len: 800, .. })
    ));
    // No palette at all.
    let img = b.bitmap_image_at(bitmap_fmt::EIGHT_BIT, 0, 4, 4, 4, QxlPhys(0), data);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::MissingPalette { format: 5 }
    );
}

#[test]
fn surface_ids_out_of_range_are_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let lim = Limits {
        n_surfaces: 16,
        ..Limits::default()
    };
    let want = |id| DecodeError::SurfaceIdOutOfRange { id, n_surfaces: 16 };
    // Drawable destination (CVE-2015-5260).
    let a = b.drawable(
        16,
        draw_type::BLACKNESS,
        Rect::new(0, 0, 1, 1),
        QxlPhys(0),
        &[0; 17],
    );
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &lim).unwrap_err(),
        want(16)
    );
    // Destroy of id n_surfaces (the off-by-one) and create of 0xFFFFFFFF.
    let a = b.surface_cmd(surface_cmd::DESTROY, 16, 0, 0, 0, 0, 0, QxlPhys(0));
    assert_eq!(
        decode_display(&m, cmd_type::SURFACE, a, &lim).unwrap_err(),
        want(16)
    );
    let a = b.surface_cmd(
        surface_cmd::CREATE,
        u32::MAX,
        0,
        32,
        1,
        1,
        4,
        QxlPhys::new(1, 0, 8),
    );
    assert_eq!(
        decode_display(&m, cmd_type::SURFACE, a, &lim).unwrap_err(),
        want(u32::MAX)
    );
    // SURFACE image source.
    let img = b.surface_image(2000, 4, 4);
    assert_eq!(
        copy_of(&m, img, 4, 4).unwrap_err(),
        DecodeError::SurfaceIdOutOfRange {
            id: 2000,
            n_surfaces: 1024
        }
    );
    // surfaces_dest entry.
    let a = b.drawable(
        0,
        draw_type::BLACKNESS,
        Rect::new(0, 0, 1, 1),
        QxlPhys(0),
        &[0; 17],
    );
    b.patch(a, 63 + 4, &2000i32.to_le_bytes());
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::SurfaceIdOutOfRange {
            id: 2000,
            n_surfaces: 1024
        }
    );
}

#[test]
fn bad_surface_geometry_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let data = QxlPhys::new(1, 0, 64);
    let why = |w, h, stride, fmt| match validate_surface(&m, w, h, stride, fmt, data, &limits()) {
        Err(DecodeError::BadSurface { why, .. }) => why,
        other => panic!("{w}x{h} {stride} {fmt}: {other:?}"),
    };
    assert_eq!(why(16, 16, i32::MIN, 32), "stride is INT32_MIN");
    assert_eq!(why(16, 16, 63, 32), "|stride| smaller than a row");
    assert_eq!(why(16, 16, -60, 32), "|stride| smaller than a row");
    assert_eq!(why(15, 16, 30, 16), "stride not a multiple of 4");
    assert_eq!(
        why(32768, 32768, 131072, 32),
        "height * |stride| above 0x7FFFFFFF"
    );
    assert_eq!(why(0, 16, 64, 32), "zero width or height");
    assert_eq!(
        validate_surface(&m, 16, 16, 64, 33, data, &limits()).unwrap_err(),
        DecodeError::BadSurfaceFormat(33)
    );
    // Data range beyond the slot (CVE-2015-5261).
    assert!(matches!(
        validate_surface(&m, 256, 256, 1024, 32, data, &limits()).unwrap_err(),
        DecodeError::Mem(MemError::OutOfSlot { .. })
    ));
    // A good bottom-up surface.
    assert!(validate_surface(&m, 16, 16, -64, 32, data, &limits()).is_ok());
}

#[test]
fn monitors_count_beyond_bound_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let mut cfg = vec![0u8; 4 + 65 * 28];
    cfg[0..2].copy_from_slice(&65u16.to_le_bytes());
    let a = b.put(&cfg);
    assert_eq!(
        decode_monitors_config(&m, a, &limits()).unwrap_err(),
        DecodeError::MonitorsCount { count: 65, max: 64 }
    );
    cfg[0..2].copy_from_slice(&5u16.to_le_bytes());
    cfg[2..4].copy_from_slice(&4u16.to_le_bytes());
    let a = b.put(&cfg);
    assert_eq!(
        decode_monitors_config(&m, a, &limits()).unwrap_err(),
        DecodeError::MonitorsCount { count: 5, max: 4 }
    );
}

#[test]
fn unknown_types_are_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let a = b.drawable(0, 15, Rect::new(0, 0, 1, 1), QxlPhys(0), &[]);
    assert_eq!(
        decode_display(&m, 6, a, &limits()).unwrap_err(),
        DecodeError::UnknownCommandType(6)
    );
    assert_eq!(
        decode_display(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::UnknownCommandType(3)
    );
    assert_eq!(
        decode_cursor(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::UnknownCommandType(1)
    );
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::UnknownDrawType(15)
    );
    let a = b.surface_cmd(2, 1, 0, 0, 0, 0, 0, QxlPhys(0));
    assert_eq!(
        decode_display(&m, cmd_type::SURFACE, a, &limits()).unwrap_err(),
        DecodeError::BadSurfaceCmdType(2)
    );
    // Image types: QUIC and LZ are refused with their own error, 2 is unknown.
    for (ty, want) in [
        (image_type::QUIC, DecodeError::CompressedImage(1)),
        (image_type::LZ_RGB, DecodeError::CompressedImage(101)),
        (image_type::RESERVED, DecodeError::UnknownImageType(2)),
        (200, DecodeError::UnknownImageType(200)),
    ] {
        let mut img = QxlImage::new_zeroed();
        img.descriptor.ty = ty;
        let a = b.put(img.as_bytes());
        assert_eq!(copy_of(&m, a, 1, 1).unwrap_err(), want);
    }
    // Unknown bitmap format, clip type, brush type.
    let data = b.chunks(&[&[0; 4]]);
    let img = b.bitmap_image_at(11, 0, 1, 1, 4, QxlPhys(0), data);
    assert_eq!(
        copy_of(&m, img, 1, 1).unwrap_err(),
        DecodeError::BadBitmapFormat(11)
    );
    let a = b.drawable(
        0,
        draw_type::BLACKNESS,
        Rect::new(0, 0, 1, 1),
        QxlPhys(0),
        &[0; 17],
    );
    b.patch(a, 47, &7u32.to_le_bytes());
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::BadClipType(7)
    );
    let mut f = vec![0u8; 39];
    f[0] = 3;
    let a = b.drawable(0, draw_type::FILL, Rect::new(0, 0, 1, 1), QxlPhys(0), &f);
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::BadBrushType(3)
    );
}

#[test]
fn clip_rects_that_disagree_with_their_data_are_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let clip = b.clip_rects(&[Rect::new(0, 0, 1, 1), Rect::new(1, 1, 2, 2)]);
    b.patch(clip, 0, &3u32.to_le_bytes()); // claims 3 rects, holds 2
    let a = b.drawable(
        0,
        draw_type::BLACKNESS,
        Rect::new(0, 0, 2, 2),
        clip,
        &[0; 17],
    );
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::BadClipRects {
            num_rects: 3,
            bytes: 32,
            max: MAX_CLIP_RECTS
        }
    );
    b.patch(clip, 0, &u32::MAX.to_le_bytes());
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, a, &limits()).unwrap_err(),
        DecodeError::BadClipRects {
            num_rects: u32::MAX,
            bytes: 0,
            max: MAX_CLIP_RECTS
        }
    );
}

#[test]
fn memslot_generation_mismatch_is_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    let a = b.drawable(
        0,
        draw_type::BLACKNESS,
        Rect::new(0, 0, 1, 1),
        QxlPhys(0),
        &[0; 17],
    );
    let stale = QxlPhys::new(1, 5, a.offset());
    assert_eq!(
        decode_display(&m, cmd_type::DRAW, stale, &limits()).unwrap_err(),
        DecodeError::Mem(MemError::BadGeneration {
            slot: 1,
            got: 5,
            expected: 0,
            addr: stale.0
        })
    );
}

/// Guest memory where the guest rewrites `field` the moment the device has read it once: a
/// decoder that reads a field twice sees the second value.
struct RacingGuest {
    mem: VecMemory,
    field: QxlPhys,
    new_value: Vec<u8>,
    reads_of_field: Cell<u32>,
}

impl GuestMemory for RacingGuest {
    fn read(&self, addr: QxlPhys, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(addr, buf)?;
        let (s, e) = (addr.offset(), addr.offset() + buf.len() as u64);
        let f = self.field.offset();
        if addr.slot() == self.field.slot() && s <= f && f < e {
            self.reads_of_field.set(self.reads_of_field.get() + 1);
            self.mem.write(self.field, &self.new_value)?;
        }
        Ok(())
    }
    fn write(&self, addr: QxlPhys, data: &[u8]) -> Result<(), MemError> {
        self.mem.write(addr, data)
    }
}

#[test]
fn monitors_count_is_read_once() {
    let mem = VecMemory::with_slot(1 << 16);
    let mut cfg = vec![0u8; 4 + 28];
    cfg[0..2].copy_from_slice(&1u16.to_le_bytes());
    cfg[4..8].copy_from_slice(&7u32.to_le_bytes());
    let a = mem.put(1, &cfg);
    let g = RacingGuest {
        mem,
        field: a,
        new_value: 64u16.to_le_bytes().to_vec(),
        reads_of_field: Cell::new(0),
    };
    let c = decode_monitors_config(&g, a, &limits()).unwrap();
    assert_eq!(c.heads.len(), 1, "decoder used the rewritten count");
    assert_eq!(c.heads[0].id, 7);
    assert_eq!(g.reads_of_field.get(), 1);
}

#[test]
fn cursor_header_is_read_once() {
    let mem = VecMemory::with_slot(1 << 20);
    let b = Builder::new(&mem);
    let a = b.cursor_set(0, 0, cursor_type::ALPHA, 8, 8, 256, &[0xAB; 256]);
    let shape = QxlPhys(u64::from_le_bytes(
        mem.bytes(a, 22)[14..22].try_into().unwrap(),
    ));
    let width = shape.checked_add(10).unwrap();
    let g = RacingGuest {
        mem,
        field: width,
        new_value: 512u16.to_le_bytes().to_vec(),
        reads_of_field: Cell::new(0),
    };
    let c = decode_cursor(&g, cmd_type::CURSOR, a, &limits()).unwrap();
    let CursorCommand::Set { shape, .. } = c else {
        panic!()
    };
    assert_eq!((shape.width, shape.height), (8, 8));
    assert_eq!(shape.data.len(), 256);
    assert_eq!(g.reads_of_field.get(), 1);
}

#[test]
fn surface_create_is_read_once() {
    let mem = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&mem);
    let data = mem.alloc(1, 16 * 64);
    let a = b.surface_cmd(
        surface_cmd::CREATE,
        1,
        0,
        surface_fmt::XRGB32,
        16,
        16,
        64,
        data,
    );
    // The guest grows the height right after the read: a re-read would pass a surface that
    // runs far past its memory.
    let height = a.checked_add(17 + 8).unwrap();
    let g = RacingGuest {
        mem,
        field: height,
        new_value: 30000u32.to_le_bytes().to_vec(),
        reads_of_field: Cell::new(0),
    };
    let c = decode_display(&g, cmd_type::SURFACE, a, &limits()).unwrap();
    let DisplayCommand::Surface(SurfaceCommand::Create { desc, .. }) = c else {
        panic!()
    };
    assert_eq!(desc.height, 16);
    assert_eq!(g.reads_of_field.get(), 1);
}

#[test]
fn null_pointers_are_rejected() {
    let m = VecMemory::with_slot(1 << 16);
    let b = Builder::new(&m);
    assert_eq!(
        copy_of(&m, QxlPhys(0), 1, 1).unwrap_err(),
        DecodeError::NullAddress("image")
    );
    let a = b.cursor_set(0, 0, 0, 1, 1, 4, &[0; 4]);
    b.patch(a, 9 + 5, &0u64.to_le_bytes());
    assert_eq!(
        decode_cursor(&m, cmd_type::CURSOR, a, &limits()).unwrap_err(),
        DecodeError::NullAddress("cursor shape")
    );
    assert!(matches!(
        decode_display(&m, cmd_type::DRAW, QxlPhys(0), &limits()).unwrap_err(),
        DecodeError::Mem(MemError::InactiveSlot { slot: 0, .. })
    ));
}
