//! A mock of the Linux `qxl` DRM driver (feature `test-utils`), for tests, benches and fuzz
//! targets that need real ring traffic through a real [`QxlDevice`].
//!
//! It touches the device only the way a guest does: PCI config space, the ROM BAR, the RAM
//! and VRAM BARs (plain memory writes) and 1-byte I/O port writes, following the probe
//! sequence of reference qxl-device.md §8. The device worker is simulated by calling
//! [`QxlDevice::process`] after each I/O (switch off with [`MockDriver::set_auto_worker`]),
//! and interrupts are serviced like `qxl_irq_handler`: `int_pending` is swapped to 0, the
//! counters bumped, `int_mask` rewritten and UPDATE_IRQ written.
//!
//! ```
//! use qxl_device::testing::MockDriver;
//! let mut drv = MockDriver::new(Default::default()).unwrap();
//! drv.probe().unwrap();
//! drv.create_primary(640, 480).unwrap();
//! assert_eq!(drv.dev.mode(), qxl_device::Mode::Native);
//! ```

use crate::abi::dev::{
    io, irq, ram_off, QxlRom, COMMAND_RING_SIZE, QXL_ROM_MAGIC, QXL_SURF_FLAG_KEEP_DATA,
    QXL_SURF_TYPE_PRIMARY, RELEASE_RING_SIZE,
};
use crate::mem::QxlPhys;
use crate::pci::{command, BarIndex};
use crate::rom::crc32;
use crate::sink::{DeviceEvent, InterruptLine};
use crate::{QxlConfig, QxlDevice};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use zerocopy::FromBytes;

/// Linux's interrupt mask: DISPLAY | CURSOR | IO_CMD | CLIENT_MONITORS_CONFIG.
pub const LINUX_INT_MASK: u32 = 0x27;
/// `SPICE_SURFACE_FMT_32_xRGB`.
pub const FMT_32_XRGB: u32 = 32;
/// Guest-physical address the mock programs BAR0 to.
pub const BAR0_ADDR: u64 = 0xC000_0000;
/// Guest-physical address of BAR1.
pub const BAR1_ADDR: u64 = 0x9000_0000;
/// Guest-physical address of BAR2 (ROM).
pub const BAR2_ADDR: u64 = 0xBFFF_0000;
/// I/O address of BAR3.
pub const BAR3_ADDR: u64 = 0xC000;
/// Guest-physical address of BAR4 (if configured).
pub const BAR4_ADDR: u64 = 0x80_0000_0000;

/// What went wrong in a mock driver sequence (what the real driver would log).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockError {
    /// ROM magic mismatch (Linux: -ENODEV).
    #[error("bad ROM magic {0:#x}")]
    BadRomMagic(u32),
    /// No IO_CMD interrupt arrived for an async I/O (Linux: 5 s timeout).
    #[error("timeout waiting for IO_CMD after port {0}")]
    IoCmdTimeout(u8),
    /// The ring stayed full.
    #[error("{0} ring full")]
    RingFull(&'static str),
    /// The mock's allocator ran out.
    #[error("out of guest memory allocating {0} bytes")]
    OutOfMemory(u64),
    /// The release ring returned an id the driver never issued (Linux logs and abandons the chain).
    #[error("release ring returned unknown id {0}")]
    UnknownReleaseId(u64),
    /// Guest memory access outside the BARs.
    #[error("address {0:#x} is not in a mapped slot of the mock")]
    BadAddress(u64),
}

/// An [`InterruptLine`] that records its level and every call.
#[derive(Debug, Default)]
pub struct TestIrq {
    level: AtomicBool,
    calls: AtomicU64,
    rises: AtomicU64,
}

impl TestIrq {
    /// Current level.
    pub fn level(&self) -> bool {
        self.level.load(Ordering::SeqCst)
    }
    /// `set_level` calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    /// Low → high transitions so far.
    pub fn rises(&self) -> u64 {
        self.rises.load(Ordering::SeqCst)
    }
}

impl InterruptLine for TestIrq {
    fn set_level(&self, asserted: bool) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if asserted && !self.level.swap(true, Ordering::SeqCst) {
            self.rises.fetch_add(1, Ordering::SeqCst);
        }
        if !asserted {
            self.level.store(false, Ordering::SeqCst);
        }
    }
}

/// Counts of serviced interrupts by cause (like the Linux driver's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// Handler runs that found something pending.
    pub total: u64,
    /// With DISPLAY.
    pub display: u64,
    /// With CURSOR.
    pub cursor: u64,
    /// With IO_CMD (`irq_received_io_cmd`).
    pub io_cmd: u64,
    /// With ERROR.
    pub error: u64,
    /// With CLIENT.
    pub client: u64,
    /// With CLIENT_MONITORS_CONFIG.
    pub client_monitors_config: u64,
}

/// The mock Linux qxl driver driving a [`QxlDevice`].
pub struct MockDriver {
    /// The device under test.
    pub dev: QxlDevice,
    /// Its interrupt line.
    pub irq: Arc<TestIrq>,
    events: Arc<Mutex<Vec<DeviceEvent>>>,
    rom: Option<QxlRom>,
    ram_header: u64,
    auto_worker: bool,
    counts: IrqCounts,
    main_slot: u8,
    surf_slot: u8,
    main_next: u64,
    main_end: u64,
    surf_next: u64,
    surf_end: u64,
    next_id: u64,
    outstanding: HashMap<u64, QxlPhys>,
    int_mask: u32,
}

impl std::fmt::Debug for MockDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockDriver")
            .field("dev", &self.dev)
            .field("counts", &self.counts)
            .field("outstanding", &self.outstanding.len())
            .finish_non_exhaustive()
    }
}

impl MockDriver {
    /// A device with `cfg`, its BARs programmed and decoding enabled (what firmware does).
    pub fn new(cfg: QxlConfig) -> Result<Self, crate::DeviceError> {
        let irq = Arc::new(TestIrq::default());
        let events: Arc<Mutex<Vec<DeviceEvent>>> = Arc::default();
        let has64 = cfg.vram64_size.is_some();
        let dev = QxlDevice::new(cfg, irq.clone(), Box::new(events.clone()))?;
        let mut d = MockDriver {
            dev,
            irq,
            events,
            rom: None,
            ram_header: 0,
            auto_worker: true,
            counts: IrqCounts::default(),
            main_slot: 1,
            surf_slot: 2,
            main_next: 0,
            main_end: 0,
            surf_next: 0,
            surf_end: 0,
            next_id: 1,
            outstanding: HashMap::new(),
            int_mask: LINUX_INT_MASK,
        };
        d.config_write32(0x10, BAR0_ADDR as u32);
        d.config_write32(0x14, BAR1_ADDR as u32);
        d.config_write32(0x18, BAR2_ADDR as u32);
        d.config_write32(0x1C, BAR3_ADDR as u32);
        if has64 {
            d.config_write32(0x20, BAR4_ADDR as u32);
            d.config_write32(0x24, (BAR4_ADDR >> 32) as u32);
        }
        let cmd = command::IO | command::MEMORY | command::MASTER;
        d.dev.config_write(0x04, &cmd.to_le_bytes());
        Ok(d)
    }

    /// Writes a config-space dword.
    pub fn config_write32(&mut self, off: u16, v: u32) {
        self.dev.config_write(off, &v.to_le_bytes());
    }

    /// Run the device worker after every I/O (default `true`). With `false` the test calls
    /// [`MockDriver::run_worker`] itself.
    pub fn set_auto_worker(&mut self, on: bool) {
        self.auto_worker = on;
    }

    /// The recorded device events, drained.
    pub fn take_events(&mut self) -> Vec<DeviceEvent> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    /// Interrupts serviced so far.
    pub fn irq_counts(&self) -> IrqCounts {
        self.counts
    }

    /// The ROM header as read at probe.
    pub fn rom(&self) -> Option<&QxlRom> {
        self.rom.as_ref()
    }

    /// Offset of the RAM header in BAR0 (from the ROM).
    pub fn ram_header_offset(&self) -> u64 {
        self.ram_header
    }

    /// Reads `len` bytes of the ROM BAR.
    pub fn read_rom(&mut self, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.dev.bar_read(BarIndex::Rom, off, &mut b);
        b
    }

    /// Reads a u32 of the RAM header.
    pub fn ram_u32(&mut self, field: usize) -> u32 {
        let mut b = [0u8; 4];
        self.dev
            .bar_read(BarIndex::Ram, self.ram_header + field as u64, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a u32 of the RAM header.
    pub fn set_ram_u32(&mut self, field: usize, v: u32) {
        self.dev.bar_write(
            BarIndex::Ram,
            self.ram_header + field as u64,
            &v.to_le_bytes(),
        );
    }

    /// Writes bytes into the RAM header.
    pub fn set_ram_bytes(&mut self, field: usize, v: &[u8]) {
        self.dev
            .bar_write(BarIndex::Ram, self.ram_header + field as u64, v);
    }

    // ------------------------------------------------------------------ I/O and interrupts

    /// `outb(value, io_base + port)` without running the worker.
    pub fn outb_raw(&mut self, port: u8, value: u8) {
        self.dev.bar_write(BarIndex::Io, port as u64, &[value]);
    }

    /// `outb`, then (auto worker) let the worker run and service interrupts.
    pub fn outb(&mut self, port: u8, value: u8) {
        self.outb_raw(port, value);
        if self.auto_worker {
            self.run_worker();
        } else {
            self.service_irq();
        }
    }

    /// Runs the device worker until idle (bounded), servicing interrupts.
    pub fn run_worker(&mut self) {
        for _ in 0..1000 {
            let p = self.dev.process();
            self.service_irq();
            if !p.more {
                break;
            }
        }
    }

    /// The interrupt handler, if the line is high: swap `int_pending` to 0, count causes,
    /// rewrite `int_mask`, write UPDATE_IRQ. Returns the pending bits seen.
    pub fn service_irq(&mut self) -> u32 {
        if !self.irq.level() {
            return 0;
        }
        let pending = self.xchg_int_pending();
        if pending == 0 {
            return 0;
        }
        self.count(pending);
        self.set_ram_u32(ram_off::INT_MASK, self.int_mask);
        self.outb_raw(io::UPDATE_IRQ, 0);
        pending
    }

    fn count(&mut self, pending: u32) {
        let c = &mut self.counts;
        c.total += 1;
        c.display += (pending & irq::DISPLAY != 0) as u64;
        c.cursor += (pending & irq::CURSOR != 0) as u64;
        c.io_cmd += (pending & irq::IO_CMD != 0) as u64;
        c.error += (pending & irq::ERROR != 0) as u64;
        c.client += (pending & irq::CLIENT != 0) as u64;
        c.client_monitors_config += (pending & irq::CLIENT_MONITORS_CONFIG != 0) as u64;
    }

    /// Atomically takes `int_pending` (Linux `xchg`).
    pub fn xchg_int_pending(&mut self) -> u32 {
        let off = self.ram_header + ram_off::INT_PENDING as u64;
        self.dev.ram().swap_u32(off, 0).unwrap_or(0)
    }

    /// Sets the interrupt mask the handler rewrites (and writes it now).
    pub fn set_int_mask(&mut self, mask: u32) {
        self.int_mask = mask;
        self.set_ram_u32(ram_off::INT_MASK, mask);
    }

    /// An async I/O as Linux `wait_for_io_cmd`: note the IO_CMD count, outb, wait for it
    /// to grow (the worker runs; bounded).
    pub fn async_io(&mut self, port: u8, value: u8) -> Result<(), MockError> {
        let before = self.counts.io_cmd;
        self.outb(port, value);
        self.wait_io_cmd(before, port)
    }

    /// Waits until the IO_CMD count exceeds `before` (runs the worker).
    pub fn wait_io_cmd(&mut self, before: u64, port: u8) -> Result<(), MockError> {
        for _ in 0..16 {
            if self.counts.io_cmd > before {
                return Ok(());
            }
            self.run_worker();
        }
        if self.counts.io_cmd > before {
            Ok(())
        } else {
            Err(MockError::IoCmdTimeout(port))
        }
    }

    // ------------------------------------------------------------------ probe and setup

    /// Linux `qxl_device_init` + modeset init: ROM magic, RESET, int_mask, the main and
    /// surfaces memslots via MEMSLOT_ADD_ASYNC (each waiting for IO_CMD).
    pub fn probe(&mut self) -> Result<(), MockError> {
        let rom_bytes = self.read_rom(0, core::mem::size_of::<QxlRom>());
        let rom = QxlRom::read_from_bytes(&rom_bytes).map_err(|_| MockError::BadRomMagic(0))?;
        if rom.magic.get() != QXL_ROM_MAGIC {
            return Err(MockError::BadRomMagic(rom.magic.get()));
        }
        self.ram_header = rom.ram_header_offset.get() as u64;
        self.outb(io::RESET, 0);
        self.set_int_mask(LINUX_INT_MASK);
        // Main slot: BAR0 up to the RAM header.
        self.main_slot = rom.slots_start;
        self.surf_slot = rom.slots_start + 1;
        self.add_memslot(self.main_slot, BAR0_ADDR, BAR0_ADDR + self.ram_header)?;
        let (surf_base, surf_size) = match self.dev.config().vram64_size {
            Some(s) => (BAR4_ADDR, s),
            None => (BAR1_ADDR, self.dev.config().vram_size),
        };
        self.add_memslot(self.surf_slot, surf_base, surf_base + surf_size)?;
        // Allocations: main slot after the surface-0 area (the VBE framebuffer stays
        // untouched), surfaces slot from its start.
        self.main_next = rom.pages_offset.get() as u64;
        self.main_end = self.ram_header;
        self.surf_next = 0;
        self.surf_end = surf_size;
        self.outstanding.clear();
        self.rom = Some(rom);
        Ok(())
    }

    /// MEMSLOT_ADD_ASYNC of `[start, end)` as slot `id`.
    pub fn add_memslot(&mut self, id: u8, start: u64, end: u64) -> Result<(), MockError> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&start.to_le_bytes());
        b[8..].copy_from_slice(&end.to_le_bytes());
        self.set_ram_bytes(ram_off::MEM_SLOT, &b);
        self.async_io(io::MEMSLOT_ADD_ASYNC, id)
    }

    /// The QXLPHYSICAL prefix of slot `id` (generation from the ROM, 0).
    pub fn slot_phys(&self, id: u8, offset: u64) -> QxlPhys {
        QxlPhys::new(id, 0, offset)
    }

    /// Allocates `len` bytes (8-aligned) in the main slot.
    pub fn alloc(&mut self, len: u64) -> Result<QxlPhys, MockError> {
        let start = self.main_next.next_multiple_of(8);
        let end = start.checked_add(len).ok_or(MockError::OutOfMemory(len))?;
        if end > self.main_end {
            return Err(MockError::OutOfMemory(len));
        }
        self.main_next = end;
        Ok(QxlPhys::new(self.main_slot, 0, start))
    }

    /// Allocates `len` bytes (page-aligned) in the surfaces slot.
    pub fn alloc_surface_mem(&mut self, len: u64) -> Result<QxlPhys, MockError> {
        let start = self.surf_next.next_multiple_of(4096);
        let end = start.checked_add(len).ok_or(MockError::OutOfMemory(len))?;
        if end > self.surf_end {
            return Err(MockError::OutOfMemory(len));
        }
        self.surf_next = end;
        Ok(QxlPhys::new(self.surf_slot, 0, start))
    }

    fn locate(&self, addr: QxlPhys, len: usize) -> Result<(BarIndex, u64), MockError> {
        let bad = MockError::BadAddress(addr.0);
        let end = addr.offset().checked_add(len as u64).ok_or(bad.clone())?;
        if addr.slot() == self.main_slot && end <= self.ram_header {
            Ok((BarIndex::Ram, addr.offset()))
        } else if addr.slot() == self.surf_slot && end <= self.surf_end {
            let bar = if self.dev.config().vram64_size.is_some() {
                BarIndex::Vram64
            } else {
                BarIndex::Vram
            };
            Ok((bar, addr.offset()))
        } else {
            Err(bad)
        }
    }

    /// Writes guest memory at a main- or surfaces-slot address.
    pub fn write(&mut self, addr: QxlPhys, data: &[u8]) -> Result<(), MockError> {
        let (bar, off) = self.locate(addr, data.len())?;
        self.dev.bar_write(bar, off, data);
        Ok(())
    }

    /// Reads guest memory at a main- or surfaces-slot address.
    pub fn read(&mut self, addr: QxlPhys, len: usize) -> Result<Vec<u8>, MockError> {
        let (bar, off) = self.locate(addr, len)?;
        let mut b = vec![0u8; len];
        self.dev.bar_read(bar, off, &mut b);
        Ok(b)
    }

    /// Allocates a command struct in the main slot, with a fresh release id in its first 8
    /// bytes (`bytes[..8]` is overwritten). Returns its address and the id.
    pub fn put_command(&mut self, bytes: &[u8]) -> Result<(QxlPhys, u64), MockError> {
        let addr = self.alloc(bytes.len().max(8) as u64)?;
        let id = self.next_id;
        self.next_id += 1;
        let mut b = bytes.to_vec();
        b.resize(b.len().max(8), 0);
        b[..8].copy_from_slice(&id.to_le_bytes());
        self.write(addr, &b)?;
        self.outstanding.insert(id, addr);
        Ok((addr, id))
    }

    /// Releases issued but not yet returned by the device.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Is release id `id` still outstanding?
    pub fn is_outstanding(&self, id: u64) -> bool {
        self.outstanding.contains_key(&id)
    }

    /// CREATE_PRIMARY_ASYNC of a `w`×`h` xRGB primary in the surfaces slot (destroying an
    /// existing one first, as Linux does). Returns the primary's address.
    pub fn create_primary(&mut self, w: u32, h: u32) -> Result<QxlPhys, MockError> {
        let stride = w * 4;
        let mem = self.alloc_surface_mem(stride as u64 * h as u64)?;
        if self.dev.primary().is_some() {
            self.async_io(io::DESTROY_PRIMARY_ASYNC, 0)?;
        }
        self.create_primary_at(w, h, stride as i32, mem)?;
        Ok(mem)
    }

    /// Fills `ram.create_surface` and issues CREATE_PRIMARY_ASYNC.
    pub fn create_primary_at(
        &mut self,
        w: u32,
        h: u32,
        stride: i32,
        mem: QxlPhys,
    ) -> Result<(), MockError> {
        let mut c = [0u8; 40];
        c[0..4].copy_from_slice(&w.to_le_bytes());
        c[4..8].copy_from_slice(&h.to_le_bytes());
        c[8..12].copy_from_slice(&stride.to_le_bytes());
        c[12..16].copy_from_slice(&FMT_32_XRGB.to_le_bytes());
        c[24..28].copy_from_slice(&QXL_SURF_FLAG_KEEP_DATA.to_le_bytes());
        c[28..32].copy_from_slice(&QXL_SURF_TYPE_PRIMARY.to_le_bytes());
        c[32..40].copy_from_slice(&mem.0.to_le_bytes());
        self.set_ram_bytes(ram_off::CREATE_SURFACE, &c);
        self.async_io(io::CREATE_PRIMARY_ASYNC, 0)
    }

    // ------------------------------------------------------------------ rings

    fn push(
        &mut self,
        ring: usize,
        notify_port: u8,
        name: &'static str,
        ty: u32,
        data: QxlPhys,
    ) -> Result<(), MockError> {
        for _ in 0..64 {
            let prod = self.ram_u32(ring + ram_off::RING_PROD);
            let cons = self.ram_u32(ring + ram_off::RING_CONS);
            if prod.wrapping_sub(cons) < COMMAND_RING_SIZE {
                let slot = (prod & (COMMAND_RING_SIZE - 1)) as usize;
                let mut item = [0u8; 16];
                item[..8].copy_from_slice(&data.0.to_le_bytes());
                item[8..12].copy_from_slice(&ty.to_le_bytes());
                self.set_ram_bytes(ring + ram_off::RING_ITEMS + slot * 16, &item);
                let new_prod = prod.wrapping_add(1);
                self.set_ram_u32(ring + ram_off::RING_PROD, new_prod);
                if self.ram_u32(ring + ram_off::RING_NOTIFY_ON_PROD) == new_prod {
                    self.outb(notify_port, 0);
                }
                return Ok(());
            }
            // Full: ask for a consumer notify, then wait (the worker runs).
            self.set_ram_u32(ring + ram_off::RING_NOTIFY_ON_CONS, cons.wrapping_add(1));
            self.run_worker();
        }
        Err(MockError::RingFull(name))
    }

    /// Pushes a command-ring entry (`qxl_ring_push` + NOTIFY_CMD when asked).
    pub fn push_command(&mut self, ty: u32, data: QxlPhys) -> Result<(), MockError> {
        self.push(ram_off::CMD_RING, io::NOTIFY_CMD, "command", ty, data)
    }

    /// Pushes a cursor-ring entry (+ NOTIFY_CURSOR when asked).
    pub fn push_cursor(&mut self, ty: u32, data: QxlPhys) -> Result<(), MockError> {
        self.push(ram_off::CURSOR_RING, io::NOTIFY_CURSOR, "cursor", ty, data)
    }

    /// `qxl_garbage_collect`: pops every published chain from the release ring, walks each
    /// through `next`, forgets the ids. Returns the ids in order. An unknown id abandons
    /// its chain and is reported.
    pub fn collect_releases(&mut self) -> Result<Vec<u64>, MockError> {
        let ring = ram_off::RELEASE_RING;
        let mut out = Vec::new();
        let mut err = None;
        // At most one ring's worth per call: a prod the guest itself scribbled on must not
        // make the mock loop for 2^32 entries.
        for _ in 0..RELEASE_RING_SIZE {
            let prod = self.ram_u32(ring + ram_off::RING_PROD);
            let cons = self.ram_u32(ring + ram_off::RING_CONS);
            if prod == cons {
                self.set_ram_u32(ring + ram_off::RING_NOTIFY_ON_PROD, cons.wrapping_add(1));
                break;
            }
            let slot = (cons & (RELEASE_RING_SIZE - 1)) as usize;
            let mut b = [0u8; 8];
            self.dev.bar_read(
                BarIndex::Ram,
                self.ram_header + (ring + ram_off::RING_ITEMS + slot * 8) as u64,
                &mut b,
            );
            self.set_ram_u32(ring + ram_off::RING_CONS, cons.wrapping_add(1));
            let mut id = u64::from_le_bytes(b);
            let mut guard = 0;
            while id != 0 && guard < 1_000_000 {
                guard += 1;
                let Some(addr) = self.outstanding.remove(&id) else {
                    err = Some(MockError::UnknownReleaseId(id));
                    break;
                };
                out.push(id);
                let next = self.read(addr, 8)?;
                id = u64::from_le_bytes(next.try_into().unwrap_or([0; 8]));
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    // ------------------------------------------------------------------ Linux draw commands

    /// A QXLImage BITMAP 32BIT TOP_DOWN of `w`×`h` xRGB pixels (`w * h` entries) with one data
    /// chunk in the main slot, as Linux `qxl_image_alloc_objects` lays it out.
    pub fn put_image_32(&mut self, w: u32, h: u32, px: &[u32]) -> Result<QxlPhys, MockError> {
        let stride = w.checked_mul(4).ok_or(MockError::OutOfMemory(u64::MAX))?;
        let data_len = (stride as u64) * (h as u64);
        let chunk_addr = self.alloc(20 + data_len)?;
        let mut chunk = Vec::with_capacity(20 + data_len as usize);
        chunk.extend_from_slice(&(data_len as u32).to_le_bytes());
        chunk.extend_from_slice(&[0u8; 16]); // prev_chunk, next_chunk
        for p in px.iter().take((w as usize) * (h as usize)) {
            chunk.extend_from_slice(&p.to_le_bytes());
        }
        chunk.resize(20 + data_len as usize, 0);
        self.write(chunk_addr, &chunk)?;
        let mut img = [0u8; 48];
        img[10..14].copy_from_slice(&w.to_le_bytes());
        img[14..18].copy_from_slice(&h.to_le_bytes());
        img[18] = 8; // SPICE_BITMAP_FMT_32BIT
        img[19] = 4; // QXL_BITMAP_TOP_DOWN
        img[20..24].copy_from_slice(&w.to_le_bytes());
        img[24..28].copy_from_slice(&h.to_le_bytes());
        img[28..32].copy_from_slice(&stride.to_le_bytes());
        img[40..48].copy_from_slice(&chunk_addr.0.to_le_bytes());
        let a = self.alloc(48)?;
        self.write(a, &img)?;
        Ok(a)
    }

    /// QXLClipRects (inline chunk) of `rects` = [left, top, right, bottom] in the main slot.
    pub fn put_clip_rects(&mut self, rects: &[[i32; 4]]) -> Result<QxlPhys, MockError> {
        let mut b = Vec::new();
        b.extend_from_slice(&(rects.len() as u32).to_le_bytes());
        b.extend_from_slice(&((rects.len() * 16) as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        for r in rects {
            b.extend(qxl_rect(*r));
        }
        let a = self.alloc(b.len() as u64)?;
        self.write(a, &b)?;
        Ok(a)
    }

    /// A Linux DRAW_COPY (effect OPAQUE, ROPD_OP_PUT, clip RECTS, src_area = whole image)
    /// of `image` (`w`×`h`) to `bbox` = [left, top, right, bottom] of `surface`, with a fresh
    /// release id. Push it with `push_command(1, addr)`. Returns (address, release id).
    pub fn put_draw_copy(
        &mut self,
        surface: u32,
        image: QxlPhys,
        w: i32,
        h: i32,
        bbox: [i32; 4],
        clip: QxlPhys,
    ) -> Result<(QxlPhys, u64), MockError> {
        let mut b = vec![0u8; 191];
        b[8..12].copy_from_slice(&surface.to_le_bytes());
        b[12] = 1; // QXL_EFFECT_OPAQUE
        b[13] = 3; // QXL_DRAW_COPY
        b[31..47].copy_from_slice(&qxl_rect(bbox));
        b[47..51].copy_from_slice(&1u32.to_le_bytes()); // SPICE_CLIP_TYPE_RECTS
        b[51..59].copy_from_slice(&clip.0.to_le_bytes());
        for i in 0..3 {
            b[63 + i * 4..67 + i * 4].copy_from_slice(&(-1i32).to_le_bytes());
        }
        let u = 123;
        b[u..u + 8].copy_from_slice(&image.0.to_le_bytes());
        b[u + 8..u + 24].copy_from_slice(&qxl_rect([0, 0, w, h]));
        b[u + 24..u + 26].copy_from_slice(&8u16.to_le_bytes()); // SPICE_ROPD_OP_PUT
        self.put_command(&b)
    }

    // ------------------------------------------------------------------ monitors

    /// Writes a QXLMonitorsConfig (count heads of (x, y, w, h), max_allowed 4) into the
    /// surfaces slot, points `ram.monitors_config` at it and issues MONITORS_CONFIG_ASYNC.
    pub fn monitors_config(
        &mut self,
        heads: &[(u32, u32, u32, u32)],
        max_allowed: u16,
    ) -> Result<QxlPhys, MockError> {
        let mut b = Vec::new();
        b.extend_from_slice(&(heads.len() as u16).to_le_bytes());
        b.extend_from_slice(&max_allowed.to_le_bytes());
        for (i, &(x, y, w, h)) in heads.iter().enumerate() {
            for v in [i as u32, 0, w, h, x, y, 0] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        let addr = self.alloc_surface_mem(b.len() as u64)?;
        self.write(addr, &b)?;
        self.set_ram_bytes(ram_off::MONITORS_CONFIG, &addr.0.to_le_bytes());
        self.async_io(io::MONITORS_CONFIG_ASYNC, 0)?;
        Ok(addr)
    }

    /// Reads the ROM's client monitors config as Linux does: count (truncated to
    /// `num_heads`), CRC over the 1028-byte struct; `None` on CRC mismatch. Heads as
    /// (x, y, w, h).
    pub fn client_monitors(&mut self, num_heads: usize) -> Option<Vec<(u32, u32, u32, u32)>> {
        let raw = self.read_rom(132, 1028);
        let crc = u32::from_le_bytes(self.read_rom(128, 4).try_into().ok()?);
        if crc32(&raw) != crc {
            return None;
        }
        let count = u16::from_le_bytes([raw[0], raw[1]]) as usize;
        let mut v = Vec::new();
        for i in 0..count.min(num_heads) {
            let h = &raw[4 + i * 16..4 + i * 16 + 16];
            let f = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            let (top, left, bottom, right) = (f(0), f(4), f(8), f(12));
            v.push((
                left,
                top,
                right.wrapping_sub(left),
                bottom.wrapping_sub(top),
            ));
        }
        Some(v)
    }
}

/// A wire QXLRect (top, left, bottom, right) from [left, top, right, bottom].
pub fn qxl_rect(r: [i32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, v) in [r[1], r[0], r[3], r[2]].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Reads fuzz / PRNG bytes as parameters; yields zeros once exhausted.
#[derive(Debug)]
struct OpReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl OpReader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
}

/// A small configuration for fuzzing (fast to create: 2 MiB RAM, 64 KiB VRAM).
pub fn small_config() -> QxlConfig {
    QxlConfig {
        ram_size: 2 << 20,
        vgamem_size: 1 << 20,
        vram_size: 64 << 10,
        n_surfaces: 64,
        render_budget_bytes: 16 << 20,
        ..Default::default()
    }
}

/// Plays `data` as a sequence of hostile guest actions against a probed device with a
/// primary: I/O port writes, RAM-header scribbles (rings, arguments), command and cursor
/// ring entries pointing at random bytes, config-space, VBE and client-monitors writes,
/// release collection and worker runs. Used by the randomized hostile-guest test and the
/// `device_io` fuzz target. The device must never panic or hang; afterwards a RESET and
/// re-probe must give a working device (checked here; a failure panics, which is what the
/// fuzzer reports). Returns the device's counters from before the recovery.
pub fn run_guest_ops(cfg: QxlConfig, data: &[u8]) -> crate::Metrics {
    let Ok(mut d) = MockDriver::new(cfg) else {
        return crate::Metrics::default();
    };
    d.probe().expect("probe of a fresh device");
    let _ = d.create_primary(64, 48);
    let hdr = d.ram_header_offset();
    let slot_size = d.dev.memslot(1).map_or(0, |s| s.size);
    let mut r = OpReader { data, pos: 0 };
    let mut ops = 0;
    while !r.done() && ops < 10_000 {
        ops += 1;
        match r.u8() % 11 {
            0 => {
                let port = r.u8() % 34;
                let value = r.u8();
                // RESET only rarely, so the rest of the state machine gets exercised.
                if port != io::RESET || value % 16 == 0 {
                    d.dev.bar_write(BarIndex::Io, port as u64, &[value]);
                }
            }
            1 => {
                let off = 4 + (r.u16() as u64 % (5340 / 4)) * 4;
                let v = r.u32();
                d.dev.bar_write(BarIndex::Ram, hdr + off, &v.to_le_bytes());
            }
            2 | 3 => {
                let len = 8 + (r.u8() as u64);
                let off = if slot_size > len {
                    r.u32() as u64 % (slot_size - len)
                } else {
                    0
                };
                let bytes: Vec<u8> = (0..len).map(|_| r.u8()).collect();
                d.dev.bar_write(BarIndex::Ram, off, &bytes);
                let addr = if r.u8() % 4 == 0 {
                    QxlPhys(r.u64())
                } else {
                    QxlPhys::new(1, 0, off)
                };
                let ty = (r.u8() % 8) as u32;
                let _ = if r.u8() % 2 == 0 {
                    d.push_command(ty, addr)
                } else {
                    d.push_cursor(ty, addr)
                };
            }
            4 => {
                let off = (r.u8() % 64) as u16 * 4;
                let v = r.u32();
                // Keep I/O and memory decode on (off 4 is the command register).
                if off != 4 {
                    d.dev.config_write(off, &v.to_le_bytes());
                }
            }
            5 => {
                d.dev
                    .vbe_io_write(crate::vbe::VBE_DISPI_IOPORT_INDEX, r.u8() as u16 % 12);
                d.dev
                    .vbe_io_write(crate::vbe::VBE_DISPI_IOPORT_DATA, r.u16());
                let _ = d.dev.vbe_snapshot();
            }
            6 => {
                let n = r.u8() as usize % 70;
                let heads: Vec<_> = (0..n)
                    .map(|_| crate::ClientMonitor {
                        x: r.u32(),
                        y: r.u32(),
                        width: r.u32(),
                        height: r.u32(),
                    })
                    .collect();
                d.dev.set_client_monitors(&heads);
            }
            7 => {
                let _ = d.collect_releases();
            }
            8 => {
                // The driver (re)creates its primary, as after a modeset.
                if d.dev.mode() != crate::Mode::Native {
                    let _ = d.create_primary(64, 48);
                }
            }
            _ => {
                for _ in 0..8 {
                    if !d.dev.process().more {
                        break;
                    }
                }
                d.service_irq();
            }
        }
    }
    let metrics = d.dev.metrics();
    // Recovery: firmware restores the BARs, the driver reloads, one command round-trips.
    d.config_write32(0x10, BAR0_ADDR as u32);
    d.config_write32(0x14, BAR1_ADDR as u32);
    d.dev.config_write(4, &7u16.to_le_bytes());
    d.probe().expect("re-probe after RESET");
    d.create_primary(64, 48).expect("primary after RESET");
    let (a, id) = d.put_command(&[0u8; 8]).expect("command memory");
    d.push_command(0, a).expect("push after RESET");
    d.outb(io::FLUSH_RELEASE, 0);
    assert_eq!(
        d.collect_releases(),
        Ok(vec![id]),
        "device works after RESET"
    );
    metrics
}
