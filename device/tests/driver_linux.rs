//! Driver-model suite: the Linux qxl driver's sequences (reference qxl-device.md §8) played
//! against the device through `MockDriver`, asserting what the driver would read.

use qxl_device::abi::dev::{
    io, irq, ram_off, COMMAND_RING_SIZE, CURSOR_RING_SIZE, QXL_RAM_MAGIC, RELEASE_RING_SIZE,
};
use qxl_device::mem::GuestMemory;
use qxl_device::pci::command;
use qxl_device::testing::{MockDriver, BAR0_ADDR, BAR1_ADDR, LINUX_INT_MASK};
use qxl_device::vbe::{enable, index, VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
use qxl_device::{BarIndex, ClientMonitor, DeviceEvent, Mode, QxlConfig};

const QXL_CMD_NOP: u32 = 0;

fn probed() -> MockDriver {
    let mut d = MockDriver::new(QxlConfig::default()).unwrap();
    d.probe().unwrap();
    d
}

/// Pushes `n` NOP commands (each an 8-byte struct with a release id); returns the ids.
fn push_nops(d: &mut MockDriver, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let (addr, id) = d.put_command(&[0u8; 8]).unwrap();
            d.push_command(QXL_CMD_NOP, addr).unwrap();
            id
        })
        .collect()
}

#[test]
fn probe_reads_rom_and_ram_header_as_linux_expects() {
    let mut d = MockDriver::new(QxlConfig::default()).unwrap();
    // PCI identity as the Linux pciidlist matches it.
    let mut id = [0u8; 4];
    d.dev.config_read(0, &mut id);
    assert_eq!(u32::from_le_bytes(id), 0x0100_1B36);
    d.dev.config_read(8, &mut id);
    assert_eq!(
        u32::from_le_bytes(id),
        0x0300_0005,
        "class 0x0300, revision 5"
    );
    d.probe().unwrap();
    let rom = *d.rom().unwrap();
    assert_eq!(rom.ram_header_offset.get(), (64 << 20) - 8192);
    assert_eq!(rom.surface0_area_size.get(), 16 << 20);
    assert_eq!(rom.num_pages.get(), 12286);
    assert_eq!((rom.slots_start, rom.slots_end), (1, 7));
    assert_eq!(rom.n_surfaces.get(), 1024);
    // RAM header after RESET: magic, rings as the driver relies on (it never inits them).
    assert_eq!(d.ram_u32(0), QXL_RAM_MAGIC);
    for (ring, n) in [
        (ram_off::CMD_RING, COMMAND_RING_SIZE),
        (ram_off::CURSOR_RING, CURSOR_RING_SIZE),
        (ram_off::RELEASE_RING, RELEASE_RING_SIZE),
    ] {
        assert_eq!(d.ram_u32(ring + ram_off::RING_NUM_ITEMS), n);
        assert_eq!(d.ram_u32(ring + ram_off::RING_NOTIFY_ON_PROD), 1);
        assert_eq!(d.ram_u32(ring + ram_off::RING_PROD), 0);
        assert_eq!(d.ram_u32(ring + ram_off::RING_CONS), 0);
    }
    assert_eq!(d.ram_u32(ram_off::INT_MASK), LINUX_INT_MASK);
    // Two MEMSLOT_ADD_ASYNC: exactly two IO_CMD interrupts, no error.
    let c = d.irq_counts();
    assert_eq!((c.io_cmd, c.error), (2, 0));
    assert_eq!(d.dev.metrics().async_completed, 2);
    let main = d.dev.memslot(1).unwrap();
    assert_eq!(
        (main.guest_start, main.size),
        (BAR0_ADDR, (64 << 20) - 8192)
    );
    let surf = d.dev.memslot(2).unwrap();
    assert_eq!((surf.guest_start, surf.size), (BAR1_ADDR, 64 << 20));
    // Still VGA until CREATE_PRIMARY.
    assert_eq!(d.dev.mode(), Mode::Vga);
}

#[test]
fn create_primary_leaves_vga_mode_with_one_io_cmd() {
    let mut d = probed();
    d.take_events();
    let before = d.irq_counts().io_cmd;
    let mem = d.create_primary(1024, 768).unwrap();
    assert_eq!(d.irq_counts().io_cmd, before + 1);
    assert_eq!(d.dev.mode(), Mode::Native);
    let p = d.dev.primary().unwrap().clone();
    assert_eq!(
        (p.width, p.height, p.stride, p.data),
        (1024, 768, 4096, mem)
    );
    let ev = d.take_events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, DeviceEvent::PrimaryCreated(s) if s.width == 1024)));
    assert!(ev
        .iter()
        .any(|e| matches!(e, DeviceEvent::ModeChanged(Mode::Native))));
    // The next modeset: destroy + create, each with its own IO_CMD.
    let before = d.irq_counts().io_cmd;
    d.create_primary(800, 600).unwrap();
    assert_eq!(d.irq_counts().io_cmd, before + 2);
    assert_eq!(d.dev.primary().unwrap().width, 800);
    assert_eq!(d.irq_counts().error, 0);
}

#[test]
fn releases_are_published_in_bunches_of_32_and_chained_through_next() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let ids = push_nops(&mut d, 40);
    // 32 releases make a bunch: one chain published, DISPLAY raised (notify_on_prod = 1).
    assert!(d.irq_counts().display >= 1);
    let got = d.collect_releases().unwrap();
    assert_eq!(got, ids[..32].to_vec(), "one chain, in release order");
    // The other 8 wait for FLUSH_RELEASE.
    assert_eq!(d.collect_releases().unwrap(), Vec::<u64>::new());
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), ids[32..].to_vec());
    assert_eq!(d.outstanding(), 0);
    assert_eq!(d.dev.metrics().release_rejects, 0);
}

#[test]
fn notify_oom_flushes_only_when_the_release_ring_is_empty() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let ids = push_nops(&mut d, 5);
    d.outb(io::NOTIFY_OOM, 0);
    let chains = d.dev.metrics().release_chains;
    assert_eq!(chains, 1);
    // Guest has not collected yet: a second OOM is a no-op (reference §10.8).
    let more = push_nops(&mut d, 3);
    d.outb(io::NOTIFY_OOM, 0);
    assert_eq!(d.dev.metrics().release_chains, 1);
    assert_eq!(d.collect_releases().unwrap(), ids);
    d.outb(io::NOTIFY_OOM, 0);
    assert_eq!(d.collect_releases().unwrap(), more);
}

#[test]
fn full_release_ring_keeps_chaining_and_loses_nothing() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    // 7 published chains fill the ring (prod − cons + 1 == 8); the rest keep chaining.
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(push_nops(&mut d, 3));
        d.outb(io::FLUSH_RELEASE, 0);
    }
    assert_eq!(d.dev.metrics().release_chains, 7);
    let prod = d.ram_u32(ram_off::RELEASE_RING + ram_off::RING_PROD);
    assert_eq!(prod, 7);
    let first = d.collect_releases().unwrap();
    assert_eq!(first, all[..21].to_vec());
    d.outb(io::FLUSH_RELEASE, 0);
    let rest = d.collect_releases().unwrap();
    assert_eq!(
        rest,
        all[21..].to_vec(),
        "the held-back releases form one chain"
    );
    assert_eq!(d.outstanding(), 0);
}

#[test]
fn command_ring_full_waits_for_consumer_notify() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.set_auto_worker(false);
    // 32 entries fill the ring; the worker is not running.
    push_nops(&mut d, COMMAND_RING_SIZE as usize);
    let prod = d.ram_u32(ram_off::CMD_RING + ram_off::RING_PROD);
    assert_eq!(prod, 32);
    assert_eq!(d.ram_u32(ram_off::CMD_RING + ram_off::RING_CONS), 0);
    let display_before = d.irq_counts().display;
    // The 33rd push finds the ring full, arms notify_on_cons and waits; the worker's pop of
    // entry 1 raises DISPLAY.
    push_nops(&mut d, 1);
    assert!(d.irq_counts().display > display_before);
    d.run_worker();
    assert_eq!(d.ram_u32(ram_off::CMD_RING + ram_off::RING_CONS), 33);
    assert_eq!(d.dev.metrics().commands, 33);
}

#[test]
fn notify_on_prod_is_armed_when_the_ring_runs_empty() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    push_nops(&mut d, 1);
    // After draining, the device asks to be notified on the next push.
    let cons = d.ram_u32(ram_off::CMD_RING + ram_off::RING_CONS);
    assert_eq!(
        d.ram_u32(ram_off::CMD_RING + ram_off::RING_NOTIFY_ON_PROD),
        cons + 1
    );
    let writes = d.dev.metrics().io_writes;
    push_nops(&mut d, 1);
    assert!(d.dev.metrics().io_writes > writes, "NOTIFY_CMD was written");
    assert_eq!(d.dev.metrics().commands, 2);
}

#[test]
fn interrupt_line_is_pending_and_mask_and_drops_on_update_irq() {
    let mut d = probed();
    d.set_auto_worker(false);
    d.set_int_mask(irq::IO_CMD);
    // Raise IO_CMD through an async I/O, do not service it.
    d.outb_raw(io::FLUSH_SURFACES_ASYNC, 0);
    d.dev.process();
    assert!(d.irq.level());
    assert!(d.dev.irq_level());
    let mut st = [0u8; 2];
    d.dev.config_read(6, &mut st);
    assert_ne!(
        u16::from_le_bytes(st) & 0x8,
        0,
        "status bit 3 follows the line"
    );
    // INTx disable masks the line, status still shows the condition.
    let cmd = command::IO | command::MEMORY | command::MASTER | command::INTX_DISABLE;
    d.dev.config_write(4, &cmd.to_le_bytes());
    assert!(!d.irq.level());
    let cmd = command::IO | command::MEMORY | command::MASTER;
    d.dev.config_write(4, &cmd.to_le_bytes());
    assert!(d.irq.level());
    // Guest clears pending and writes UPDATE_IRQ: the line drops.
    d.xchg_int_pending();
    let calls = d.irq.calls();
    d.outb_raw(io::UPDATE_IRQ, 0);
    assert!(!d.irq.level());
    d.dev.config_read(6, &mut st);
    assert_eq!(u16::from_le_bytes(st) & 0x8, 0);
    // UPDATE_IRQ while the condition still holds re-reports the high level.
    d.set_int_mask(irq::DISPLAY);
    d.dev
        .ram()
        .fetch_or_u32(d.ram_header_offset() + 4, irq::DISPLAY)
        .unwrap();
    d.outb_raw(io::UPDATE_IRQ, 0);
    assert!(d.irq.level());
    let c2 = d.irq.calls();
    d.outb_raw(io::UPDATE_IRQ, 0);
    assert!(d.irq.calls() > c2 && d.irq.calls() > calls);
    assert!(d.irq.level());
    // A bit the guest masked never asserts the line.
    d.xchg_int_pending();
    d.outb_raw(io::UPDATE_IRQ, 0);
    d.set_int_mask(irq::DISPLAY);
    d.dev.set_client_capabilities(true, &[0xFF]);
    assert!(!d.irq.level(), "CLIENT is masked");
}

#[test]
fn client_monitors_config_in_rom_with_crc_and_interrupt() {
    let mut d = probed();
    let head = ClientMonitor {
        x: 0,
        y: 0,
        width: 1024,
        height: 768,
    };
    // The Linux driver unmasked CLIENT_MONITORS_CONFIG: the device takes client configs.
    assert!(d.dev.takes_client_monitors());
    assert!(d.dev.set_client_monitors(&[head]));
    d.run_worker();
    assert_eq!(d.irq_counts().client_monitors_config, 1);
    assert_eq!(d.client_monitors(4), Some(vec![(0, 0, 1024, 768)]));
    let crc = u32::from_le_bytes(d.read_rom(128, 4).try_into().unwrap());
    assert_eq!(crc, 0x3DEC_149C);
    // Unchanged config: no interrupt.
    assert!(!d.dev.set_client_monitors(&[head]));
    // Two heads; Linux truncates to num_heads.
    let h2 = ClientMonitor {
        x: 1024,
        y: 0,
        width: 800,
        height: 600,
    };
    assert!(d.dev.set_client_monitors(&[head, h2]));
    d.run_worker();
    assert_eq!(d.irq_counts().client_monitors_config, 2);
    assert_eq!(d.client_monitors(1), Some(vec![(0, 0, 1024, 768)]));
    assert_eq!(d.client_monitors(4).unwrap()[1], (1024, 0, 800, 600));
    // A guest that masks everything (mask ~0, old Windows drivers) or nothing gets no
    // interrupt, but the ROM is still updated.
    d.set_int_mask(u32::MAX);
    assert!(!d.dev.takes_client_monitors());
    assert!(!d.dev.set_client_monitors(&[h2]));
    d.set_int_mask(0);
    assert!(!d.dev.takes_client_monitors());
    assert!(!d.dev.set_client_monitors(&[head]));
    assert_eq!(d.client_monitors(4), Some(vec![(0, 0, 1024, 768)]));
    // The config survives the driver's RESET (boot resolution for the next probe).
    d.set_int_mask(LINUX_INT_MASK);
    d.probe().unwrap();
    assert_eq!(d.client_monitors(4), Some(vec![(0, 0, 1024, 768)]));
}

#[test]
fn guest_monitors_config_reaches_the_sink_with_one_io_cmd() {
    let mut d = probed();
    d.create_primary(1024, 768).unwrap();
    d.take_events();
    let before = d.irq_counts().io_cmd;
    d.monitors_config(&[(0, 0, 1024, 768)], 4).unwrap();
    assert_eq!(d.irq_counts().io_cmd, before + 1);
    let ev = d.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::MonitorsConfig(_))),
        "{ev:?}"
    );
}

#[test]
fn async_ios_each_raise_exactly_one_io_cmd() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let mut area = Vec::new();
    for v in [0i32, 0, 10, 10] {
        area.extend_from_slice(&v.to_le_bytes());
    }
    d.set_ram_bytes(ram_off::UPDATE_AREA, &area);
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 0);
    for (port, val) in [
        (io::UPDATE_AREA_ASYNC, 0),
        (io::FLUSH_SURFACES_ASYNC, 0),
        (io::DESTROY_SURFACE_ASYNC, 5),
        (io::DESTROY_ALL_SURFACES_ASYNC, 0),
        (io::DESTROY_PRIMARY_ASYNC, 0),
        (io::MONITORS_CONFIG_ASYNC, 0),
    ] {
        let before = d.irq_counts().io_cmd;
        let completed = d.dev.metrics().async_completed;
        d.async_io(port, val).unwrap();
        d.run_worker();
        assert_eq!(d.irq_counts().io_cmd, before + 1, "port {port}");
        assert_eq!(
            d.dev.metrics().async_completed,
            completed + 1,
            "port {port}"
        );
    }
    assert_eq!(d.dev.mode(), Mode::Undefined);
}

#[test]
fn driver_unload_and_reload() {
    let mut d = probed();
    d.create_primary(1024, 768).unwrap();
    push_nops(&mut d, 3);
    // Unload: DESTROY_PRIMARY_ASYNC.
    d.take_events();
    d.async_io(io::DESTROY_PRIMARY_ASYNC, 0).unwrap();
    assert_eq!(d.dev.mode(), Mode::Undefined);
    let ev = d.take_events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, DeviceEvent::PrimaryDestroyed)));
    // Reload: RESET + probe. Slots re-added, rings reset, VGA mode until CREATE_PRIMARY.
    d.probe().unwrap();
    assert_eq!(d.dev.mode(), Mode::Vga);
    assert_eq!(d.ram_u32(ram_off::CMD_RING + ram_off::RING_PROD), 0);
    assert_eq!(d.ram_u32(ram_off::RELEASE_RING + ram_off::RING_PROD), 0);
    assert!(d.dev.memslot(1).is_some());
    d.create_primary(800, 600).unwrap();
    let ids = push_nops(&mut d, 2);
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), ids);
    assert_eq!(d.irq_counts().error, 0);
}

#[test]
fn vbe_framebuffer_until_create_primary_and_back_after_reset() {
    let mut d = MockDriver::new(QxlConfig::default()).unwrap();
    let set = |d: &mut MockDriver, i: u16, v: u16| {
        d.dev.vbe_io_write(VBE_DISPI_IOPORT_INDEX, i);
        d.dev.vbe_io_write(VBE_DISPI_IOPORT_DATA, v);
    };
    d.dev
        .vbe_io_write(VBE_DISPI_IOPORT_INDEX, index::VIDEO_MEMORY_64K);
    assert_eq!(
        d.dev.vbe_io_read(VBE_DISPI_IOPORT_DATA),
        256,
        "vgamem, not BAR size"
    );
    set(&mut d, index::XRES, 64);
    set(&mut d, index::YRES, 32);
    set(&mut d, index::BPP, 32);
    set(&mut d, index::ENABLE, enable::ENABLED | enable::LFB);
    // Firmware draws into the linear framebuffer at BAR0 offset 0.
    let px = 0x00_12_34_56u32;
    let off = (5 * 64 + 7) * 4;
    d.dev.bar_write(BarIndex::Ram, off, &px.to_le_bytes());
    let snap = d.dev.display_snapshot().unwrap();
    assert_eq!((snap.width, snap.height), (64, 32));
    assert_eq!(snap.pixels[5 * 64 + 7], 0xFF12_3456);
    assert_eq!(snap.pixels[0], 0xFF00_0000);
    // The qxl driver takes over.
    d.probe().unwrap();
    assert_eq!(d.dev.mode(), Mode::Vga, "RESET returns to VGA mode");
    d.create_primary(640, 480).unwrap();
    assert_eq!(d.dev.mode(), Mode::Native);
    d.outb(io::RESET, 0);
    assert_eq!(d.dev.mode(), Mode::Vga);
    assert!(d.dev.display_snapshot().is_some());
}

#[test]
fn secondary_device_starts_undefined_without_vbe() {
    let cfg = QxlConfig {
        vga: false,
        ..Default::default()
    };
    let mut d = MockDriver::new(cfg).unwrap();
    let mut b = [0u8; 4];
    d.dev.config_read(8, &mut b);
    assert_eq!(u32::from_le_bytes(b) >> 8, 0x03_8000);
    assert_eq!(d.dev.mode(), Mode::Undefined);
    assert_eq!(d.dev.vbe_io_read(VBE_DISPI_IOPORT_DATA), 0xFFFF);
    d.probe().unwrap();
    assert_eq!(d.dev.mode(), Mode::Undefined);
    d.create_primary(640, 480).unwrap();
    assert_eq!(d.dev.mode(), Mode::Native);
}

#[test]
fn bar4_memslot_and_bar_moves() {
    let cfg = QxlConfig {
        vram64_size: Some(256 << 20),
        ..Default::default()
    };
    let mut d = MockDriver::new(cfg).unwrap();
    d.probe().unwrap();
    assert_eq!(d.dev.memslot(2).unwrap().size, 256 << 20);
    // Surfaces slot in BAR4 at 64 MiB + x: beyond what BAR1 shows, same backing.
    let p = d.alloc_surface_mem(128 << 20).unwrap();
    let _ = p;
    let far = d.alloc_surface_mem(4096).unwrap();
    d.write(far, b"deep").unwrap();
    let mut b = [0u8; 4];
    d.dev.guest_memory().read(far, &mut b).unwrap();
    assert_eq!(&b, b"deep");
    // Move BAR0: the device reports it and new memslots use the new address.
    let moves = d.dev.config_write(0x10, &0xA000_0000u32.to_le_bytes());
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].new, Some(0xA000_0000));
    assert_eq!(moves[0].old, Some(BAR0_ADDR));
    d.add_memslot(3, 0xA000_0000, 0xA000_1000).unwrap();
    assert_eq!(d.dev.memslot(3).unwrap().region_offset, 0);
    assert_eq!(d.irq_counts().error, 0);
}

#[test]
fn guest_log_is_reported() {
    let mut d = probed();
    d.set_ram_bytes(ram_off::LOG_BUF, b"qxl: hello\n\0garbage");
    d.take_events();
    d.outb(io::LOG, 0);
    let ev = d.take_events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, DeviceEvent::GuestLog(s) if s == "qxl: hello")));
}

#[test]
fn set_mode_compat_creates_a_bottom_up_primary() {
    let mut d = probed();
    // Mode id 1 = 640x480x32 orientation 0.
    d.outb(io::SET_MODE, 1);
    assert_eq!(d.dev.mode(), Mode::Compat);
    let p = d.dev.primary().unwrap();
    assert_eq!((p.width, p.height, p.stride), (640, 480, -2560));
    assert_eq!(d.dev.metrics().guest_bugs, 0);
    // Mode ids that are not in the table are a guest bug: ERROR is pending (SET_MODE's
    // reset cleared int_mask, so the line stays low).
    d.outb(io::SET_MODE, 255);
    assert_eq!(d.dev.metrics().guest_bugs, 1);
    assert_ne!(d.xchg_int_pending() & irq::ERROR, 0);
    assert!(!d.irq.level());
}

/// QXLSurfaceCmd (41 bytes): create (`destroy = false`) or destroy of surface `id`.
fn surface_cmd(id: u32, destroy: bool, w: u32, h: u32, data: qxl_device::mem::QxlPhys) -> Vec<u8> {
    let mut b = vec![0u8; 41];
    b[8..12].copy_from_slice(&id.to_le_bytes());
    b[12] = destroy as u8;
    b[17..21].copy_from_slice(&32u32.to_le_bytes()); // SPICE_SURFACE_FMT_32_xRGB
    b[21..25].copy_from_slice(&w.to_le_bytes());
    b[25..29].copy_from_slice(&h.to_le_bytes());
    b[29..33].copy_from_slice(&((w * 4) as i32).to_le_bytes());
    b[33..41].copy_from_slice(&data.0.to_le_bytes());
    b
}

#[test]
fn surface_create_release_is_held_until_the_surface_is_destroyed() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    let pixels = d.alloc_surface_mem(64 * 64 * 4).unwrap();
    let (c, create_id) = d
        .put_command(&surface_cmd(1, false, 64, 64, pixels))
        .unwrap();
    d.push_command(5, c).unwrap();
    let ev = d.take_events();
    assert!(
        ev.iter().any(|e| matches!(e, DeviceEvent::Display(_))),
        "{ev:?}"
    );
    d.outb(io::FLUSH_RELEASE, 0);
    d.outb(io::NOTIFY_OOM, 0);
    assert!(d.collect_releases().unwrap().is_empty());
    assert!(d.is_outstanding(create_id), "Linux keeps using surf_create");
    // Destroy through the ring: create released first, then the destroy.
    let (x, destroy_id) = d
        .put_command(&surface_cmd(1, true, 0, 0, Default::default()))
        .unwrap();
    d.push_command(5, x).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![create_id, destroy_id]);
    // Destroy through DESTROY_SURFACE_WAIT and DESTROY_ALL_SURFACES releases held creates too.
    let (c2, id2) = d
        .put_command(&surface_cmd(2, false, 64, 64, pixels))
        .unwrap();
    d.push_command(5, c2).unwrap();
    d.outb(io::DESTROY_SURFACE_WAIT, 2);
    let (c3, id3) = d
        .put_command(&surface_cmd(3, false, 64, 64, pixels))
        .unwrap();
    d.push_command(5, c3).unwrap();
    d.async_io(io::DESTROY_ALL_SURFACES_ASYNC, 0).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![id2, id3]);
    assert_eq!(d.outstanding(), 0);
    assert_eq!(d.dev.metrics().guest_bugs, 0);
}

/// QXLCursorCmd (150 bytes) of `ty` (SET 0 / MOVE 1 / HIDE 2) at (x, y); SET points at `shape`.
fn cursor_cmd(ty: u8, x: i16, y: i16, shape: qxl_device::mem::QxlPhys) -> Vec<u8> {
    let mut b = vec![0u8; 150];
    b[8] = ty;
    b[9..11].copy_from_slice(&x.to_le_bytes());
    b[11..13].copy_from_slice(&y.to_le_bytes());
    b[13] = 1;
    b[14..22].copy_from_slice(&shape.0.to_le_bytes());
    b
}

/// A Linux-style 64×64 ALPHA QXLCursor with one data chunk.
fn alpha_cursor(d: &mut MockDriver) -> qxl_device::mem::QxlPhys {
    let mut b = vec![0u8; 42 + 64 * 64 * 4];
    b[10..12].copy_from_slice(&64u16.to_le_bytes());
    b[12..14].copy_from_slice(&64u16.to_le_bytes());
    b[14..16].copy_from_slice(&3u16.to_le_bytes());
    b[16..18].copy_from_slice(&4u16.to_le_bytes());
    b[18..22].copy_from_slice(&16384u32.to_le_bytes());
    b[22..26].copy_from_slice(&16384u32.to_le_bytes());
    for px in b[42..].chunks_exact_mut(4) {
        px.copy_from_slice(&0xFF00_FF00u32.to_le_bytes());
    }
    let a = d.alloc_surface_mem(b.len() as u64).unwrap();
    d.write(a, &b).unwrap();
    a
}

#[test]
fn cursor_set_is_held_until_replaced_move_released_at_once() {
    let mut d = probed();
    d.create_primary(640, 480).unwrap();
    d.take_events();
    let shape = alpha_cursor(&mut d);
    let (s1, set1) = d.put_command(&cursor_cmd(0, 10, 20, shape)).unwrap();
    d.push_cursor(3, s1).unwrap();
    let (m, mv) = d
        .put_command(&cursor_cmd(1, 30, 40, Default::default()))
        .unwrap();
    d.push_cursor(3, m).unwrap();
    let ev = d.take_events();
    let cursors = ev
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Cursor(_)))
        .count();
    assert_eq!(cursors, 2, "{ev:?}");
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![mv]);
    let (s2, set2) = d.put_command(&cursor_cmd(0, 0, 0, shape)).unwrap();
    d.push_cursor(3, s2).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![set1]);
    assert!(d.is_outstanding(set2));
    assert_eq!(d.dev.metrics().decode_errors, 0);
    // Driver unload: NOTIFY_OOM, then Linux waits until every release came back.
    d.outb(io::NOTIFY_OOM, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![set2]);
    assert_eq!(d.outstanding(), 0);
}

#[test]
fn legacy_vga_writes_kick_revision_4_back_to_vga_only() {
    for (rev, expect) in [(4u8, Mode::Vga), (5, Mode::Native)] {
        let cfg = QxlConfig {
            revision: rev,
            ..Default::default()
        };
        let mut d = MockDriver::new(cfg).unwrap();
        d.probe().unwrap();
        d.create_primary(640, 480).unwrap();
        d.dev.legacy_vga_write(0x1CE); // not a VGA register port
        assert_eq!(d.dev.mode(), Mode::Native);
        d.dev.legacy_vga_write(0x3C0);
        assert_eq!(d.dev.mode(), expect, "revision {rev}");
        assert_eq!(d.dev.primary().is_some(), rev == 5);
    }
}

fn rect_bytes(left: i32, top: i32, right: i32, bottom: i32) -> Vec<u8> {
    [top, left, bottom, right]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn draw_copy_with_clip_rects_renders_and_update_area_writes_guest_memory() {
    let mut d = probed();
    let (w, h) = (64u32, 48u32);
    let primary = d.create_primary(w, h).unwrap();
    // A 16×16 image: pixel (x, y) = 0x00RRGGBB with R = x, G = y, B = 0x80.
    let px: Vec<u32> = (0..16 * 16)
        .map(|i| ((i % 16) << 16) | ((i / 16) << 8) | 0x80)
        .collect();
    let img = d.put_image_32(16, 16, &px).unwrap();
    // Draw at (10,10)-(26,26), clipped to its left half (10,10)-(18,26).
    let clip = d.put_clip_rects(&[[10, 10, 18, 26]]).unwrap();
    let (cmd, id) = d
        .put_draw_copy(0, img, 16, 16, [10, 10, 26, 26], clip)
        .unwrap();
    d.push_command(1, cmd).unwrap();
    assert_eq!(d.dev.metrics().decode_errors, 0);
    let snap = d.dev.surface_snapshot(0).unwrap();
    let at = |x: u32, y: u32| snap.pixels[(y * w + x) as usize] & 0x00FF_FFFF;
    assert_eq!(at(10, 10), 0x80);
    assert_eq!(at(17, 25), (7 << 16) | (15 << 8) | 0x80);
    assert_eq!(at(18, 10), 0, "clipped away");
    assert_eq!(at(9, 10), 0, "outside bbox");
    // The device has not written the primary's guest memory yet ...
    let row10 = |d: &mut MockDriver| {
        let b = d.read(primary.checked_add(10 * 256).unwrap(), 256).unwrap();
        u32::from_le_bytes(b[10 * 4..11 * 4].try_into().unwrap()) & 0x00FF_FFFF
    };
    // ... UPDATE_AREA (sync) leaves the rendered pixels there before the outb returns.
    d.set_ram_bytes(ram_off::UPDATE_AREA, &rect_bytes(0, 0, w as i32, h as i32));
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 0);
    d.outb_raw(io::UPDATE_AREA, 0);
    assert_eq!(row10(&mut d), 0x80);
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(d.collect_releases().unwrap(), vec![id]);
}

#[test]
fn update_area_renders_pending_commands_first() {
    let mut d = probed();
    let primary = d.create_primary(32, 32).unwrap();
    // The worker is not running: the draw is still on the ring when UPDATE_AREA arrives.
    d.set_auto_worker(false);
    let img = d.put_image_32(4, 4, &[0x00AB_CDEF; 16]).unwrap();
    let clip = d.put_clip_rects(&[[0, 0, 4, 4]]).unwrap();
    let (cmd, _) = d.put_draw_copy(0, img, 4, 4, [0, 0, 4, 4], clip).unwrap();
    d.push_command(1, cmd).unwrap();
    assert_eq!(d.dev.metrics().commands, 0);
    d.set_ram_bytes(ram_off::UPDATE_AREA, &rect_bytes(0, 0, 4, 4));
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 0);
    d.outb_raw(io::UPDATE_AREA, 0);
    assert_eq!(d.dev.metrics().commands, 1);
    let b = d.read(primary, 4).unwrap();
    assert_eq!(
        u32::from_le_bytes(b.try_into().unwrap()) & 0xFF_FFFF,
        0xAB_CDEF
    );
}

#[test]
fn surface_eviction_update_area_async_then_destroy() {
    // Linux evicting an off-screen surface: UPDATE_AREA_ASYNC of the whole surface, then the
    // destroy command. The pixels must be in the surface's guest memory afterwards.
    let mut d = probed();
    d.create_primary(64, 64).unwrap();
    let smem = d.alloc_surface_mem(8 * 8 * 4).unwrap();
    let (c, create_id) = d.put_command(&surface_cmd(1, false, 8, 8, smem)).unwrap();
    d.push_command(5, c).unwrap();
    let img = d.put_image_32(8, 8, &[0x0012_3456; 64]).unwrap();
    let clip = d.put_clip_rects(&[[0, 0, 8, 8]]).unwrap();
    let (cmd, draw_id) = d.put_draw_copy(1, img, 8, 8, [0, 0, 8, 8], clip).unwrap();
    d.push_command(1, cmd).unwrap();
    d.set_ram_bytes(ram_off::UPDATE_AREA, &rect_bytes(0, 0, 8, 8));
    d.set_ram_u32(ram_off::UPDATE_SURFACE, 1);
    let io_cmd = d.irq_counts().io_cmd;
    d.async_io(io::UPDATE_AREA_ASYNC, 0).unwrap();
    assert_eq!(d.irq_counts().io_cmd, io_cmd + 1);
    let b = d
        .read(smem.checked_add(7 * 32 + 7 * 4).unwrap(), 4)
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(b.try_into().unwrap()) & 0xFF_FFFF,
        0x12_3456
    );
    let (x, destroy_id) = d
        .put_command(&surface_cmd(1, true, 0, 0, Default::default()))
        .unwrap();
    d.push_command(5, x).unwrap();
    d.outb(io::FLUSH_RELEASE, 0);
    let mut got = d.collect_releases().unwrap();
    got.sort();
    assert_eq!(got, vec![create_id, draw_id, destroy_id]);
    assert!(d.dev.surface_snapshot(1).is_none());
}
