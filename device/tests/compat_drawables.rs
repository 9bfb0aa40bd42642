//! qxl-1 compat mode: after QXL_IO_SET_MODE a revision-1 driver addresses guest memory with
//! guest-physical addresses through slot 0 and puts `QXLCompatDrawable`s (128 bytes, no
//! surface ids) on the command ring. These tests write such commands into BAR0 by hand, as
//! that driver would, and check the pixels of the primary.

use qxl_device::abi::cmd::{
    bitmap_flags, bitmap_fmt, clip_type, cmd_type, draw_type, image_type, ropd, QxlBitmap, QxlClip,
    QxlCompatDrawable, QxlDataChunk, QxlImage, QxlRect,
};
use qxl_device::decode::build::{copy_member, fill_member, qmask, solid_brush};
use qxl_device::decode::Rect;
use qxl_device::mem::QxlPhys;
use qxl_device::testing::MockDriver;
use qxl_device::{BarIndex, DeviceEvent, Mode, QxlConfig};
use zerocopy::{FromZeros, IntoBytes};

/// RAM offset where the test puts its commands and images (past the 640x480 primary).
const SCRATCH: u64 = 16 << 20;

struct Compat {
    d: MockDriver,
    base: u64,
    next: u64,
    next_id: u64,
}

impl Compat {
    /// A probed device switched to ROM mode `id` with SET_MODE.
    fn new(mode_id: u8) -> Self {
        let mut d = MockDriver::new(QxlConfig::default()).unwrap();
        d.probe().unwrap();
        d.outb(qxl_device::abi::dev::io::SET_MODE, mode_id);
        assert_eq!(d.dev.mode(), Mode::Compat);
        let base = d.dev.bar_address(BarIndex::Ram).unwrap();
        Compat {
            d,
            base,
            next: SCRATCH,
            next_id: 1,
        }
    }

    /// Writes `bytes` into BAR0 and returns their compat (guest-physical, slot 0) address.
    fn put(&mut self, bytes: &[u8]) -> QxlPhys {
        let off = self.next;
        self.next = (off + bytes.len() as u64).next_multiple_of(8);
        self.d.dev.bar_write(BarIndex::Ram, off, bytes);
        QxlPhys::new(0, 0, self.base + off)
    }

    /// A top-down 32-bit image of `w`x`h` pixels in one chunk.
    fn image(&mut self, w: u32, h: u32, px: &[u32]) -> QxlPhys {
        let mut chunk = QxlDataChunk::new_zeroed().as_bytes().to_vec();
        chunk[..4].copy_from_slice(&(w * h * 4).to_le_bytes());
        chunk.extend(px.iter().flat_map(|p| p.to_le_bytes()));
        let data = self.put(&chunk);
        let mut img = QxlImage::new_zeroed();
        img.descriptor.ty = image_type::BITMAP;
        img.descriptor.width = w.into();
        img.descriptor.height = h.into();
        let bm = QxlBitmap {
            format: bitmap_fmt::THIRTYTWO_BIT,
            flags: bitmap_flags::TOP_DOWN,
            x: w.into(),
            y: h.into(),
            stride: (w * 4).into(),
            palette: 0.into(),
            data: data.0.into(),
        };
        img.u.copy_from_slice(bm.as_bytes());
        self.put(img.as_bytes())
    }

    /// A compat drawable of type `ty` with member bytes `member`, clip NONE.
    fn drawable(&mut self, ty: u8, bbox: Rect, member: &[u8]) -> QxlPhys {
        let mut d = QxlCompatDrawable::new_zeroed();
        d.release_info.id = self.next_id.into();
        self.next_id += 1;
        d.effect = 1;
        d.ty = ty;
        d.bbox = QxlRect {
            top: bbox.top.into(),
            left: bbox.left.into(),
            bottom: bbox.bottom.into(),
            right: bbox.right.into(),
        };
        d.clip = QxlClip {
            ty: clip_type::NONE.into(),
            data: 0.into(),
        };
        d.u[..member.len()].copy_from_slice(member);
        self.put(d.as_bytes())
    }

    /// Pushes a DRAW and lets the device run it; returns the events it produced.
    fn draw(&mut self, addr: QxlPhys) -> Vec<DeviceEvent> {
        self.d.take_events();
        self.d.push_command(cmd_type::DRAW, addr).unwrap();
        self.d.run_worker();
        self.d.take_events()
    }

    fn pixel(&self, x: u32, y: u32) -> u32 {
        let s = self.d.dev.surface_snapshot(0).unwrap();
        s.pixels[(y * s.width + x) as usize] & 0x00FF_FFFF
    }
}

fn no_mask() -> qxl_device::abi::cmd::QxlQMask {
    qmask(false, 0, 0, QxlPhys(0))
}

#[test]
fn compat_copy_lands_on_the_bottom_up_primary() {
    // Mode 1: 640x480, 32 bpp, stride -2560.
    let mut c = Compat::new(1);
    let px: Vec<u32> = (0..64u32)
        .map(|i| 0x0010_0000 * (i % 8) + 0x100 * (i / 8) + 7)
        .collect();
    let img = c.image(8, 8, &px);
    let bbox = Rect::new(20, 10, 28, 18);
    let m = copy_member(img, Rect::new(0, 0, 8, 8), ropd::OP_PUT, 0, no_mask());
    let a = c.drawable(draw_type::COPY, bbox, &m);
    let ev = c.draw(a);
    assert!(
        ev.iter().any(|e| matches!(e, DeviceEvent::Display(_))),
        "{ev:?}"
    );
    for y in 0..8 {
        for x in 0..8 {
            assert_eq!(
                c.pixel(20 + x, 10 + y),
                px[(y * 8 + x) as usize],
                "({x},{y})"
            );
        }
    }
    assert_eq!(c.pixel(19, 10), 0, "outside the bbox untouched");
    assert_eq!(c.d.dev.metrics().decode_errors, 0);
    // Its release id comes back.
    c.d.outb_raw(qxl_device::abi::dev::io::FLUSH_RELEASE, 0);
    let ids = release_ids(&mut c);
    assert!(ids.contains(&1), "{ids:?}");
}

/// Release ids on the release ring (compat addresses are not the mock's own slots, so its
/// collector cannot walk them; read the ring's chain heads directly).
fn release_ids(c: &mut Compat) -> Vec<u64> {
    use qxl_device::abi::dev::ram_off;
    let prod = c.d.ram_u32(ram_off::RELEASE_RING + ram_off::RING_PROD);
    (0..prod)
        .map(|i| {
            let off = ram_off::RELEASE_RING + ram_off::RING_ITEMS + (i as usize % 8) * 8;
            let lo = c.d.ram_u32(off) as u64;
            let hi = c.d.ram_u32(off + 4) as u64;
            lo | hi << 32
        })
        .collect()
}

#[test]
fn compat_16bpp_fill_widens_x555_colours() {
    // Mode 0: 640x480, 16 bpp. A compat 16-bit driver gives colours as x555.
    let mut c = Compat::new(0);
    assert_eq!(c.d.dev.primary().unwrap().format, 16);
    let red_555 = 0x7C00;
    let m = fill_member(solid_brush(red_555), ropd::OP_PUT, no_mask());
    let a = c.drawable(draw_type::FILL, Rect::new(0, 0, 4, 4), &m);
    c.draw(a);
    assert_eq!(c.pixel(1, 1), 0xFF_0000);
    let teal_555 = (3 << 10) | (17 << 5) | 30;
    let m = fill_member(solid_brush(teal_555), ropd::OP_PUT, no_mask());
    let a = c.drawable(draw_type::FILL, Rect::new(4, 0, 8, 4), &m);
    c.draw(a);
    let widen = |v: u32| (v << 3) | (v >> 2);
    assert_eq!(c.pixel(5, 1), widen(3) << 16 | widen(17) << 8 | widen(30));
}

#[test]
fn compat_composite_and_bad_addresses_are_rejected_and_released() {
    let mut c = Compat::new(1);
    // COMPOSITE does not exist in qxl-1.
    let a = c.drawable(draw_type::COMPOSITE, Rect::new(0, 0, 4, 4), &[0u8; 44]);
    let ev = c.draw(a);
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::CommandRejected { .. })),
        "{ev:?}"
    );
    // A source image outside slot 0 (BAR0): rejected, the device carries on.
    let m = copy_member(
        QxlPhys::new(0, 0, c.base + (1 << 40)),
        Rect::new(0, 0, 8, 8),
        ropd::OP_PUT,
        0,
        no_mask(),
    );
    let a = c.drawable(draw_type::COPY, Rect::new(0, 0, 8, 8), &m);
    c.draw(a);
    assert_eq!(c.d.dev.metrics().decode_errors, 2);
    // Both were released (ids 1 and 2), and a good FILL still draws.
    c.d.outb_raw(qxl_device::abi::dev::io::FLUSH_RELEASE, 0);
    let ids = release_ids(&mut c);
    assert!(ids.contains(&1), "{ids:?}");
    let m = fill_member(solid_brush(0x123456), ropd::OP_PUT, no_mask());
    let a = c.drawable(draw_type::FILL, Rect::new(0, 0, 2, 2), &m);
    c.draw(a);
    assert_eq!(c.pixel(0, 0), 0x123456);
}
