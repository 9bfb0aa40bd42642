//! Hostile-guest suite for the device core: each test is one class of the reference's CVE
//! list (qxl-device.md §9) or a §10 pitfall. The device must log, reject and carry on:
//! never panic, never spin, never touch memory outside its BARs.

use qxl_device::abi::dev::{io, irq, ram_off, LOG_BUF_SIZE};
use qxl_device::mem::{GuestMemory, MemError, QxlPhys};
use qxl_device::memslot::SlotError;
use qxl_device::testing::{MockDriver, BAR0_ADDR, BAR1_ADDR, BAR2_ADDR};
use qxl_device::vbe::{enable, index, VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
use qxl_device::{BarIndex, DeviceEvent, GuestBug, Mode, QxlConfig};

const QXL_CMD_NOP: u32 = 0;
const QXL_CMD_MESSAGE: u32 = 4;

fn probed() -> MockDriver {
    let mut d = MockDriver::new(QxlConfig::default()).unwrap();
    d.probe().unwrap();
    d
}

fn bugs(d: &mut MockDriver) -> Vec<GuestBug> {
    d.take_events()
        .into_iter()
        .filter_map(|e| match e {
            DeviceEvent::GuestBug(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn error_pending(d: &mut MockDriver) -> bool {
    d.xchg_int_pending() & irq::ERROR != 0
}

#[test]
fn memslot_range_one_byte_past_the_bar_is_refused_with_one_io_cmd() {
    let mut d = probed();
    d.take_events();
    let io_cmd = d.irq_counts().io_cmd;
    // [BAR1, BAR1 + 64 MiB + 1): one byte beyond BAR1.
    let r = d.add_memslot(3, BAR1_ADDR, BAR1_ADDR + (64 << 20) + 1);
    assert!(r.is_ok(), "the async I/O still completes");
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1, "exactly one IO_CMD");
    assert!(d.dev.memslot(3).is_none());
    let b = bugs(&mut d);
    assert!(
        matches!(b[..], [GuestBug::Memslot(SlotError::OutsideBars { .. })]),
        "{b:?}"
    );
    // The exact BAR is fine.
    d.add_memslot(3, BAR1_ADDR, BAR1_ADDR + (64 << 20)).unwrap();
    assert!(d.dev.memslot(3).is_some());
}

#[test]
fn memslot_id_active_inverted_and_non_ram_bars_are_refused() {
    let mut d = probed();
    d.take_events();
    // id 8 (NUM_MEMSLOTS) and 255.
    d.add_memslot(8, BAR0_ADDR, BAR0_ADDR + 4096).unwrap();
    d.add_memslot(255, BAR0_ADDR, BAR0_ADDR + 4096).unwrap();
    // Already active.
    d.add_memslot(1, BAR0_ADDR, BAR0_ADDR + 4096).unwrap();
    // Inverted.
    d.add_memslot(4, BAR0_ADDR + 8192, BAR0_ADDR + 4096)
        .unwrap();
    // The ROM BAR and unmapped space.
    d.add_memslot(4, BAR2_ADDR, BAR2_ADDR + 4096).unwrap();
    d.add_memslot(4, 0, 4096).unwrap();
    // Wrapping range.
    d.add_memslot(4, u64::MAX - 10, u64::MAX).unwrap();
    let b = bugs(&mut d);
    assert_eq!(b.len(), 7, "{b:?}");
    assert!(matches!(b[0], GuestBug::Memslot(SlotError::BadId(8))));
    assert!(matches!(b[1], GuestBug::Memslot(SlotError::BadId(255))));
    assert!(matches!(
        b[2],
        GuestBug::Memslot(SlotError::AlreadyActive(1))
    ));
    assert!(matches!(
        b[3],
        GuestBug::Memslot(SlotError::Inverted { .. })
    ));
    assert!(matches!(
        b[4],
        GuestBug::Memslot(SlotError::OutsideBars { .. })
    ));
    assert!(d.dev.memslot(4).is_none());
    // MEMSLOT_DEL with a bad id.
    d.outb(io::MEMSLOT_DEL, 9);
    assert!(matches!(
        bugs(&mut d)[..],
        [GuestBug::Memslot(SlotError::BadId(9))]
    ));
    // The device keeps serving.
    d.create_primary(640, 480).unwrap();
    assert_eq!(d.dev.mode(), Mode::Native);
}

#[test]
fn overlapping_memslots_alias_the_same_bar_bytes() {
    // QEMU accepts overlapping slots; they are harmless because every access is bounded to
    // the slot and copies. Both views see the same bytes, neither sees past its end.
    let mut d = probed();
    d.add_memslot(3, BAR0_ADDR + 0x10_0000, BAR0_ADDR + 0x10_1000)
        .unwrap();
    assert_eq!(d.irq_counts().error, 0);
    d.dev.bar_write(BarIndex::Ram, 0x10_0ff8, b"overlap!");
    let mem = d.dev.guest_memory();
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    mem.read(QxlPhys::new(1, 0, 0x10_0ff8), &mut a).unwrap();
    mem.read(QxlPhys::new(3, 0, 0xff8), &mut b).unwrap();
    assert_eq!(a, b);
    assert!(matches!(
        mem.read(QxlPhys::new(3, 0, 0xff9), &mut b),
        Err(MemError::OutOfSlot { .. })
    ));
}

#[test]
fn command_addresses_off_by_one_and_wrong_generation_are_rejected() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    let slot_size = d.dev.memslot(1).unwrap().size;
    // A MESSAGE command whose 8-byte release info would end one byte past the slot.
    let past = QxlPhys::new(1, 0, slot_size - 7);
    // Wrong generation, inactive slot 7, slot id 200.
    let wrong_gen = QxlPhys::new(1, 1, 4096);
    let inactive = QxlPhys::new(7, 0, 0);
    let huge = QxlPhys::new(200, 0, 0);
    let header_before = d.ram_u32(0);
    for a in [past, wrong_gen, inactive, huge] {
        d.push_command(QXL_CMD_MESSAGE, a).unwrap();
    }
    let ev = d.take_events();
    let rejected = ev
        .iter()
        .filter(|e| matches!(e, DeviceEvent::CommandRejected { .. }))
        .count();
    assert_eq!(rejected, 4, "{ev:?}");
    let m = d.dev.metrics();
    assert_eq!(m.decode_errors, 4);
    assert_eq!(
        m.release_rejects, 4,
        "their release info cannot be written either"
    );
    // The RAM header right after the main slot is untouched.
    assert_eq!(d.ram_u32(0), header_before);
    // A valid command right at the end of the slot works.
    let last = QxlPhys::new(1, 0, slot_size - 8);
    d.write(last, &77u64.to_le_bytes()).unwrap();
    d.push_command(QXL_CMD_MESSAGE, last).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    let ev = d.take_events();
    assert_eq!(d.dev.metrics().releases, 1, "{ev:?} {:?}", d.dev.metrics());
}

#[test]
fn two_async_ios_at_once_is_a_guest_bug_and_the_first_still_completes_once() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.set_auto_worker(false);
    d.take_events();
    let io_cmd = d.irq_counts().io_cmd;
    d.outb_raw(io::FLUSH_SURFACES_ASYNC, 0);
    assert!(d.dev.async_pending());
    d.outb_raw(io::MEMSLOT_ADD_ASYNC, 3);
    let b = bugs(&mut d);
    assert!(
        matches!(
            b[..],
            [GuestBug::SecondAsync {
                port: 17,
                pending: 22
            }]
        ),
        "{b:?}"
    );
    d.run_worker();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1);
    assert_eq!(d.dev.metrics().async_completed, 1 + 3);
    assert!(!d.dev.async_pending());
    assert!(
        d.dev.memslot(3).is_none(),
        "the second one was not executed"
    );
}

#[test]
fn destroy_surface_with_a_bad_id_is_refused() {
    let cfg = QxlConfig {
        n_surfaces: 16,
        ..Default::default()
    };
    let mut d = MockDriver::new(cfg).unwrap();
    d.probe().unwrap();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    d.outb(io::DESTROY_SURFACE_WAIT, 16);
    assert!(matches!(
        bugs(&mut d)[..],
        [GuestBug::BadSurfaceId { id: 16, .. }]
    ));
    let io_cmd = d.irq_counts().io_cmd;
    d.async_io(io::DESTROY_SURFACE_ASYNC, 200).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1);
    assert!(matches!(
        bugs(&mut d)[..],
        [GuestBug::BadSurfaceId { id: 200, .. }]
    ));
    // UPDATE_AREA on a surface id ≥ n_surfaces (QEMU's check is off by one).
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 16);
    d.outb(io::UPDATE_AREA, 0);
    assert!(matches!(
        bugs(&mut d)[..],
        [GuestBug::BadSurfaceId { id: 16, .. }]
    ));
    assert_eq!(d.dev.mode(), Mode::Native);
}

#[test]
fn update_area_inverted_is_a_bug_empty_is_tolerated() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    let put = |d: &mut MockDriver, r: [i32; 4]| {
        let mut b = Vec::new();
        for v in r {
            b.extend_from_slice(&v.to_le_bytes());
        }
        d.set_ram_bytes(ram_off::UPDATE_AREA, &b);
    };
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 0);
    // top, left, bottom, right: inverted.
    put(&mut d, [10, 10, 5, 20]);
    let io_cmd = d.irq_counts().io_cmd;
    d.async_io(io::UPDATE_AREA_ASYNC, 0).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1);
    assert!(matches!(bugs(&mut d)[..], [GuestBug::BadUpdateArea { .. }]));
    put(&mut d, [-1, 0, 5, 5]);
    d.outb(io::UPDATE_AREA, 0);
    assert_eq!(bugs(&mut d).len(), 1);
    put(&mut d, [5, 5, 5, 20]);
    d.async_io(io::UPDATE_AREA_ASYNC, 0).unwrap();
    assert!(bugs(&mut d).is_empty());
}

#[test]
fn null_and_foreign_release_info_never_written() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    // NULL command address (CVE-2019-12155): decode fails, release refused, nothing written.
    d.push_command(QXL_CMD_NOP, QxlPhys(0)).unwrap();
    // Release id 0: the device cannot chain it (it would end the chain).
    let zero = d.alloc(8).unwrap();
    d.push_command(QXL_CMD_NOP, zero).unwrap();
    // Foreign: a slot the guest never added.
    d.push_command(QXL_CMD_NOP, QxlPhys::new(5, 0, 64)).unwrap();
    let m = d.dev.metrics();
    assert_eq!(m.release_rejects, 3);
    assert_eq!(m.releases, 0);
    assert_eq!(m.null_commands, 1);
    // Valid releases around them are still chained and delivered.
    let (a, id) = d.put_command(&[0u8; 8]).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![id]);
}

#[test]
fn unknown_command_types_are_released() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let mut ids = Vec::new();
    for ty in [6u32, 99, u32::MAX, 3 /* CURSOR on the display ring */] {
        let (a, id) = d.put_command(&[0u8; 64]).unwrap();
        ids.push(id);
        d.push_command(ty, a).unwrap();
    }
    // A display command on the cursor ring.
    let (a, id) = d.put_command(&[0u8; 64]).unwrap();
    ids.push(id);
    d.push_cursor(1, a).unwrap();
    assert_eq!(d.dev.metrics().decode_errors, 5);
    d.outb(io::FLUSH_RELEASE, 0);
    let mut got = d.collect_releases().unwrap();
    got.sort();
    assert_eq!(
        got, ids,
        "commands that failed to decode are still released"
    );
}

#[test]
fn garbage_ring_indices_park_the_ring_until_reset() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    // prod 1000 entries ahead of cons.
    d.set_ram_u32(ram_off::CMD_RING + ram_off::RING_PROD, 1000);
    d.outb(io::NOTIFY_CMD, 0);
    let b = bugs(&mut d);
    assert!(
        matches!(
            b[..],
            [GuestBug::RingIndices {
                prod: 1000,
                cons: 0,
                ..
            }]
        ),
        "{b:?}"
    );
    assert!(error_pending(&mut d));
    assert_eq!(d.dev.metrics().commands, 0);
    // Parked: more notifies do nothing, no spinning, no new reports.
    d.outb(io::NOTIFY_CMD, 0);
    assert!(bugs(&mut d).is_empty());
    assert_eq!(d.dev.metrics().rings_parked, 1);
    // The cursor ring is independent.
    d.set_ram_u32(ram_off::CURSOR_RING + ram_off::RING_PROD, u32::MAX);
    d.outb(io::NOTIFY_CURSOR, 0);
    assert_eq!(d.dev.metrics().rings_parked, 2);
    // After reset everything works again.
    d.probe().unwrap();
    d.create_primary(640, 480).unwrap();
    let (a, _) = d.put_command(&[0u8; 8]).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    assert_eq!(d.dev.metrics().commands, 1);
}

#[test]
fn corrupted_num_items_is_ignored() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    for (ring, v) in [
        (ram_off::CMD_RING, 0xFFFF_FFFFu32),
        (ram_off::CURSOR_RING, 0),
        (ram_off::RELEASE_RING, 3),
    ] {
        d.set_ram_u32(ring + ram_off::RING_NUM_ITEMS, v);
    }
    let mut ids = Vec::new();
    for _ in 0..70 {
        let (a, id) = d.put_command(&[0u8; 8]).unwrap();
        ids.push(id);
        d.push_command(QXL_CMD_NOP, a).unwrap();
    }
    assert_eq!(d.dev.metrics().commands, 70);
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), ids);
}

#[test]
fn release_ring_cons_garbage_never_overwrites_unconsumed_chains() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (a, id) = d.put_command(&[0u8; 8]).unwrap();
        ids.push(id);
        d.push_command(QXL_CMD_NOP, a).unwrap();
        d.outb(io::FLUSH_RELEASE, 0);
    }
    // Guest writes a release-ring cons ahead of prod: the device treats the ring as full.
    d.set_ram_u32(ram_off::RELEASE_RING + ram_off::RING_CONS, 100);
    for _ in 0..40 {
        let (a, id) = d.put_command(&[0u8; 8]).unwrap();
        ids.push(id);
        d.push_command(QXL_CMD_NOP, a).unwrap();
    }
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.ram_u32(ram_off::RELEASE_RING + ram_off::RING_PROD), 3);
    // The guest repairs cons; nothing was lost.
    d.set_ram_u32(ram_off::RELEASE_RING + ram_off::RING_CONS, 0);
    let mut got = d.collect_releases().unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    got.extend(d.collect_releases().unwrap());
    assert_eq!(got, ids);
}

#[test]
fn unknown_ports_wrong_widths_and_reads() {
    let mut d = probed();
    // In VGA mode unknown ports are silently ignored (as QEMU); in native mode they are bugs.
    d.outb(25, 0);
    assert!(bugs(&mut d).is_empty());
    d.create_primary(640, 480).unwrap();
    d.take_events();
    for port in [io::DETACH_PRIMARY, io::ATTACH_PRIMARY, 25, 26, 31] {
        d.outb(port, 0);
    }
    let b = bugs(&mut d);
    assert_eq!(b.len(), 5);
    assert!(b.iter().all(|b| matches!(b, GuestBug::UnknownPort(_))));
    // Wrong widths and out-of-BAR offsets are ignored and counted, not executed.
    let before = d.dev.metrics();
    d.dev.bar_write(BarIndex::Io, io::RESET as u64, &[0, 0]);
    d.dev.bar_write(BarIndex::Io, 32, &[0]);
    d.dev.bar_write(BarIndex::Io, u64::MAX, &[0]);
    let after = d.dev.metrics();
    assert_eq!(after.io_bad_access, before.io_bad_access + 3);
    assert_eq!(after.io_writes, before.io_writes);
    let mut r = [0u8; 1];
    d.dev.bar_read(BarIndex::Io, 0, &mut r);
    assert_eq!(r, [0xFF]);
    // ROM writes are ignored; ROM reads past the end read 0xFF.
    d.dev.bar_write(BarIndex::Rom, 0, &[0, 0, 0, 0]);
    assert_eq!(&d.read_rom(0, 4), b"QXRO");
    assert_eq!(d.read_rom(8190, 4), vec![0xFF; 4]);
    // Trapped RAM/VRAM accesses beyond the BAR.
    let mut b4 = [0u8; 4];
    d.dev.bar_read(BarIndex::Ram, (64 << 20) - 2, &mut b4);
    assert_eq!(b4, [0xFF; 4]);
    d.dev.bar_read(BarIndex::Vram64, 0, &mut b4);
    assert_eq!(b4, [0xFF; 4], "no BAR4 configured");
}

#[test]
fn log_buffer_without_nul_is_bounded() {
    let mut d = probed();
    d.set_ram_bytes(ram_off::LOG_BUF, &[b'A'; LOG_BUF_SIZE]);
    // The byte after log_buf (cmd ring num_items) is non-zero too.
    d.take_events();
    d.outb(io::LOG, 0);
    let ev = d.take_events();
    let text = ev
        .iter()
        .find_map(|e| match e {
            DeviceEvent::GuestLog(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(text.len(), LOG_BUF_SIZE);
    assert!(text.bytes().all(|b| b == b'A'));
}

#[test]
fn monitors_config_count_beyond_bound_is_ignored_with_one_io_cmd() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    let io_cmd = d.irq_counts().io_cmd;
    // count 65 > 64 heads, and count > max_allowed.
    let heads: Vec<_> = (0..65).map(|i| (i * 10, 0, 10, 10)).collect();
    d.monitors_config(&heads, 0).unwrap();
    d.monitors_config(&heads[..5], 4).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 2);
    let ev = d.take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, DeviceEvent::MonitorsConfig(_))),
        "{ev:?}"
    );
    assert_eq!(d.dev.metrics().decode_errors, 2);
    // NULL monitors_config pointer.
    d.set_ram_bytes(ram_off::MONITORS_CONFIG, &0u64.to_le_bytes());
    d.async_io(io::MONITORS_CONFIG_ASYNC, 0).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 3);
}

#[test]
fn bad_primaries_are_refused() {
    let mut d = probed();
    d.take_events();
    let mem = d.alloc_surface_mem(4 << 20).unwrap();
    // Larger than the 16 MiB surface-0 area (lives in the 64 MiB surfaces BAR).
    d.create_primary_at(4096, 1025, 4096 * 4, mem).unwrap();
    // Stride not a multiple of 4.
    d.create_primary_at(10, 10, 42, mem).unwrap();
    // Data outside every slot.
    d.create_primary_at(64, 64, 256, QxlPhys::new(6, 0, 0))
        .unwrap();
    // Stride too small for the width, and i32::MIN.
    d.create_primary_at(64, 64, 16, mem).unwrap();
    d.create_primary_at(64, 64, i32::MIN, mem).unwrap();
    let b = bugs(&mut d);
    assert_eq!(b.len(), 5, "{b:?}");
    assert!(b.iter().all(|b| matches!(b, GuestBug::BadPrimary(_))));
    assert_eq!(d.dev.mode(), Mode::Vga);
    // Non-zero value byte: refused, still one IO_CMD.
    let io_cmd = d.irq_counts().io_cmd;
    d.async_io(io::CREATE_PRIMARY_ASYNC, 1).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1);
    assert!(matches!(bugs(&mut d)[..], [GuestBug::NonZeroValue { .. }]));
    // A good one, then a second create without destroy.
    d.create_primary_at(64, 64, 256, mem).unwrap();
    assert_eq!(d.dev.mode(), Mode::Native);
    d.create_primary_at(64, 64, 256, mem).unwrap();
    assert!(matches!(bugs(&mut d)[..], [GuestBug::PrimaryExists]));
}

#[test]
fn halt_policy_ignores_everything_but_reset_and_reports_it() {
    let cfg = QxlConfig {
        halt_on_guest_bug: true,
        ..Default::default()
    };
    let mut d = MockDriver::new(cfg).unwrap();
    d.probe().unwrap();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    d.outb(io::ATTACH_PRIMARY, 0);
    assert!(d.dev.halted());
    assert!(matches!(bugs(&mut d)[..], [GuestBug::UnknownPort(11)]));
    // Rings are not consumed, async I/O gets nothing (as QEMU).
    let (a, _) = d.put_command(&[0u8; 8]).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    assert_eq!(d.dev.metrics().commands, 0);
    assert!(d.async_io(io::FLUSH_SURFACES_ASYNC, 0).is_err());
    // RESET recovers.
    d.probe().unwrap();
    assert!(!d.dev.halted());
    d.create_primary(640, 480).unwrap();
    let (a, _) = d.put_command(&[0u8; 8]).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    assert_eq!(d.dev.metrics().commands, 1);
}

#[test]
fn vga_mode_ignores_most_ports_but_completes_async_ones() {
    let mut d = probed();
    assert_eq!(d.dev.mode(), Mode::Vga);
    d.take_events();
    let io_cmd = d.irq_counts().io_cmd;
    for port in [
        io::UPDATE_AREA_ASYNC,
        io::DESTROY_PRIMARY_ASYNC,
        io::FLUSH_SURFACES_ASYNC,
        io::MONITORS_CONFIG_ASYNC,
    ] {
        d.async_io(port, 0).unwrap();
    }
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 4);
    // Rings are not consumed in VGA mode.
    let (a, _) = d.put_command(&[0u8; 8]).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    assert_eq!(d.dev.metrics().commands, 0);
    assert!(bugs(&mut d).is_empty());
    // ... until CREATE_PRIMARY, which drains them afterwards.
    d.create_primary(640, 480).unwrap();
    d.outb(io::NOTIFY_CMD, 0);
    assert_eq!(d.dev.metrics().commands, 1);
}

#[test]
fn vbe_hostile_registers_stay_inside_vgamem() {
    let mut d = MockDriver::new(QxlConfig::default()).unwrap();
    let vgamem = 16u64 << 20;
    for (i, v) in [
        (index::BPP, 32),
        (index::XRES, 0xFFFF),
        (index::YRES, 0xFFFF),
        (index::VIRT_WIDTH, 0xFFFF),
        (index::X_OFFSET, 0xFFFF),
        (index::Y_OFFSET, 0xFFFF),
        (index::ENABLE, enable::ENABLED | enable::LFB),
        (index::BANK, 0xFFFF),
        (0x55, 0xFFFF),
    ] {
        d.dev.vbe_io_write(VBE_DISPI_IOPORT_INDEX, i);
        d.dev.vbe_io_write(VBE_DISPI_IOPORT_DATA, v);
    }
    let m = d.dev.vbe_mode().unwrap();
    let last = m.offset + (m.height as u64 - 1) * m.stride as u64 + m.width as u64 * 4;
    assert!(last <= vgamem, "{m:?}");
    let s = d.dev.vbe_snapshot().unwrap();
    assert_eq!(s.pixels.len(), (m.width * m.height) as usize);
    d.dev.vbe_io_write(VBE_DISPI_IOPORT_INDEX, 0x55);
    assert_eq!(d.dev.vbe_io_read(VBE_DISPI_IOPORT_DATA), 0);
    assert_eq!(d.dev.vbe_io_read(0x3C0), 0xFFFF);
}

const OPS: usize = 3000;
const SEEDS: u64 = 6;

/// xorshift64*: a deterministic PRNG so failures reproduce by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Random guest behaviour (`testing::run_guest_ops`): port writes, RAM-header and ring
/// scribbles, random ring entries and command bytes, config-space and VBE writes. The device
/// must never panic or spin, and a RESET + re-probe must bring it back to a working state.
/// The same interpreter is the `device_io` fuzz target.
#[test]
fn random_guest_behaviour_never_breaks_the_device() {
    for seed in 1..=SEEDS {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let bytes: Vec<u8> = (0..OPS * 64).map(|_| r.next() as u8).collect();
        let cfg = if seed % 2 == 0 {
            qxl_device::testing::small_config()
        } else {
            QxlConfig {
                n_surfaces: 64,
                render_budget_bytes: 64 << 20,
                ..Default::default()
            }
        };
        let m = qxl_device::testing::run_guest_ops(cfg, &bytes);
        // The run really exercised the rings and the reject paths.
        assert!(m.commands + m.cursor_commands > 50, "seed {seed}: {m:?}");
        assert!(
            m.guest_bugs > 0 && m.decode_errors > 0,
            "seed {seed}: {m:?}"
        );
    }
}

#[test]
fn async_arguments_are_copied_once_at_the_io_write() {
    // The guest changes ram.create_surface / ram.mem_slot after the outb but before the
    // worker runs: the device must use what was there at the I/O (copy once, reference §9).
    let mut d = probed();
    d.set_auto_worker(false);
    let mem = d.alloc_surface_mem(640 * 480 * 4).unwrap();
    let mut c = [0u8; 40];
    c[0..4].copy_from_slice(&640u32.to_le_bytes());
    c[4..8].copy_from_slice(&480u32.to_le_bytes());
    c[8..12].copy_from_slice(&2560i32.to_le_bytes());
    c[12..16].copy_from_slice(&32u32.to_le_bytes());
    c[32..40].copy_from_slice(&mem.0.to_le_bytes());
    d.set_ram_bytes(ram_off::CREATE_SURFACE, &c);
    d.outb_raw(io::CREATE_PRIMARY_ASYNC, 0);
    // Now a 16 MiB+ surface with a bogus address.
    let mut evil = c;
    evil[0..4].copy_from_slice(&100_000u32.to_le_bytes());
    evil[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    d.set_ram_bytes(ram_off::CREATE_SURFACE, &evil);
    d.run_worker();
    assert_eq!(d.dev.primary().unwrap().width, 640);
    assert_eq!(d.dev.metrics().guest_bugs, 0);
    // Same for MEMSLOT_ADD_ASYNC.
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&(BAR1_ADDR + 4096).to_le_bytes());
    s[8..].copy_from_slice(&(BAR1_ADDR + 8192).to_le_bytes());
    d.set_ram_bytes(ram_off::MEM_SLOT, &s);
    d.outb_raw(io::MEMSLOT_ADD_ASYNC, 4);
    d.set_ram_bytes(ram_off::MEM_SLOT, &[0xFF; 16]);
    d.run_worker();
    let slot = d.dev.memslot(4).unwrap();
    assert_eq!((slot.guest_start, slot.size), (BAR1_ADDR + 4096, 4096));
}

#[test]
fn memslot_deleted_under_a_release_chain_loses_nothing() {
    // Releases are being chained in slot 1 when the guest deletes slot 1: the device cannot
    // write the previous element's `next` any more, so it publishes that chain and starts a
    // new one instead of dropping the release.
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (a, id) = d.put_command(&[0u8; 8]).unwrap();
        ids.push(id);
        d.push_command(QXL_CMD_NOP, a).unwrap();
    }
    d.outb(io::MEMSLOT_DEL, 1);
    // A command in the surfaces slot (slot 2).
    let a = d.alloc_surface_mem(8).unwrap();
    d.write(a, &4242u64.to_le_bytes()).unwrap();
    d.push_command(QXL_CMD_NOP, a).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.dev.metrics().release_chains, 2);
    assert_eq!(d.dev.metrics().release_rejects, 0);
    // 4242 was never registered with the mock, so the walk reports it as unknown — after
    // the three known ids of the first chain were all collected.
    assert_eq!(
        d.collect_releases(),
        Err(qxl_device::testing::MockError::UnknownReleaseId(4242))
    );
    assert_eq!(d.outstanding(), 0, "{ids:?} all came back");
    let head = d.ram_u32(ram_off::RELEASE_RING + ram_off::RING_ITEMS + 8);
    assert_eq!(head, 4242, "second chain head in the second ring slot");
}
