//! The QXL device: registers, I/O ports, interrupts, memslots, rings, command processing.
//!
//! Threading: the device is a plain state machine (`&mut self`); a VMM keeps it behind a
//! mutex. The vCPU thread calls [`QxlDevice::io_write`] (or [`QxlDevice::bar_write`]), which
//! only touches registers and returns [`IoAction::wake_worker`] when the worker has
//! something to do; the worker thread calls [`QxlDevice::process`] until it reports no more
//! work. Only the synchronous I/Os that QEMU also runs on the vCPU (UPDATE_AREA,
//! CREATE/DESTROY_PRIMARY, DESTROY_SURFACE_WAIT, DESTROY_ALL_SURFACES, MEMSLOT_ADD) do real
//! work inside `io_write`.

use crate::abi::dev::{
    io, irq, ram_off, rom_off, QxlMemSlot, QxlRect, QxlSurfaceCreate, LOG_BUF_SIZE,
    QXL_SURF_FLAG_KEEP_DATA,
};
use crate::config::{ConfigError, Layout, QxlConfig};
use crate::decode::{self, Limits, SurfaceDesc};
use crate::mem::{GuestMemory, QxlPhys};
use crate::memslot::{Backing, MemSlot, MemSlots, SlotMemory, SlotWindow};
use crate::metrics::Metrics;
use crate::pci::{BarIndex, BarInfo, BarMapping, PciConfig};
use crate::region::{RegionError, SharedRegion};
use crate::render::{Rect, Renderer, Snapshot};
use crate::ring::{ConsumerRing, Pop, RamHeader, ReleaseState, RingKind};
use crate::rom::{self, ClientMonitor};
use crate::sink::{DeviceEvent, DisplaySink, GuestBug, InterruptLine, Mode};
use crate::vbe::{Vbe, VbeMode};
use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use thiserror::Error;
use tracing::{debug, info, warn};

// The device moves between the vCPU and worker threads behind the VMM's mutex.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<QxlDevice>();
};

/// `QXL_CMD_CURSOR`.
const QXL_CMD_CURSOR: u32 = 3;
/// `QXL_CMD_SURFACE`.
const QXL_CMD_SURFACE: u32 = 5;
/// `QXL_SURFACE_CMD_CREATE` / `_DESTROY`.
const SURFACE_CMD_CREATE: u8 = 0;
const SURFACE_CMD_DESTROY: u8 = 1;
/// `QXL_CURSOR_SET`.
const CURSOR_SET: u8 = 0;
/// Ring entries handled per ring per [`QxlDevice::process`] call.
const PROCESS_BUDGET: usize = 256;
/// Ring entries drained at most before a synchronous operation (bounded, never spins).
const DRAIN_LIMIT: usize = 4096;
/// Log lines about guest-caused events emitted in full; after that only every 1024th (the
/// counters in [`Metrics`] keep the exact numbers), so a guest cannot flood the host log.
const REJECT_LOG_LIMIT: u64 = 64;

fn log_allowed(count: u64) -> bool {
    count <= REJECT_LOG_LIMIT || count % 1024 == 0
}

/// Why a device could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The memory backing could not be created.
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// What the caller of an I/O handler must do next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoAction {
    /// Wake the device worker: [`QxlDevice::process`] has work.
    pub wake_worker: bool,
}

/// Result of one [`QxlDevice::process`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Ring entries consumed (command + cursor).
    pub consumed: usize,
    /// An async I/O was completed.
    pub completed_async: bool,
    /// More work is left (budget exhausted or new work arrived): call again.
    pub more: bool,
}

/// How a BAR is backed, for the VMM / vfio-user server.
#[derive(Debug)]
pub struct BarRegion<'a> {
    /// Static description (size, type).
    pub info: BarInfo,
    /// For RAM/VRAM BARs: the memfd and the offset in it where the BAR starts; map
    /// `[offset, offset + size)` as guest memory. `None` = trap accesses (ROM, I/O).
    pub mmap: Option<(BorrowedFd<'a>, u64)>,
}

/// An async I/O with its arguments, copied from the RAM header at I/O time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    UpdateArea { surface: u32, area: Rect },
    MemslotAdd { id: u8, range: QxlMemSlot },
    CreatePrimary { value: u8, create: QxlSurfaceCreate },
    DestroyPrimary { value: u8 },
    DestroySurface { id: u32 },
    DestroyAllSurfaces,
    FlushSurfaces,
    MonitorsConfig { addr: QxlPhys },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    info: QxlPhys,
    id: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ClientState {
    present: bool,
    caps: Vec<u8>,
    monitors: Option<Vec<ClientMonitor>>,
}

/// The QXL revision-5 PCI display device.
pub struct QxlDevice {
    cfg: QxlConfig,
    layout: Layout,
    limits: Limits,
    pci: PciConfig,
    ram: SharedRegion,
    vram: SharedRegion,
    rom: Vec<u8>,
    rom_init: Vec<u8>,
    slots: MemSlots,
    cmd_ring: ConsumerRing,
    cursor_ring: ConsumerRing,
    release: ReleaseState,
    renderer: Renderer,
    sink: Box<dyn DisplaySink>,
    irq_line: Arc<dyn InterruptLine>,
    line: bool,
    mode: Mode,
    pending_async: Option<(u8, Op)>,
    oom_requested: bool,
    halted: bool,
    cmd_parked: bool,
    cursor_parked: bool,
    held_surfaces: BTreeMap<u32, Held>,
    held_cursor: Option<Held>,
    primary: Option<SurfaceDesc>,
    vbe: Vbe,
    client: ClientState,
    metrics: Metrics,
}

impl std::fmt::Debug for QxlDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QxlDevice")
            .field("cfg", &self.cfg)
            .field("mode", &self.mode)
            .field("line", &self.line)
            .field("pending_async", &self.pending_async)
            .field("halted", &self.halted)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

fn async_port(port: u8) -> bool {
    matches!(port, 16..=22 | io::MONITORS_CONFIG_ASYNC)
}

fn allowed_in_vga(port: u8) -> bool {
    matches!(
        port,
        io::RESET
            | io::SET_MODE
            | io::MEMSLOT_ADD
            | io::MEMSLOT_DEL
            | io::CREATE_PRIMARY
            | io::UPDATE_IRQ
            | io::LOG
            | io::MEMSLOT_ADD_ASYNC
            | io::CREATE_PRIMARY_ASYNC
    )
}

impl QxlDevice {
    /// Creates a device (in its reset state) with memfd-backed RAM and VRAM.
    pub fn new(
        cfg: QxlConfig,
        irq_line: Arc<dyn InterruptLine>,
        sink: Box<dyn DisplaySink>,
    ) -> Result<Self, DeviceError> {
        let layout = cfg.validate()?;
        let ram = SharedRegion::new("qxl-ram", cfg.ram_size)?;
        let vram = SharedRegion::new("qxl-vram", cfg.vram_backing_size())?;
        let mut bars = vec![
            BarInfo {
                bar: BarIndex::Ram,
                size: cfg.ram_size,
                io: false,
                is_64bit: false,
                prefetchable: false,
            },
            BarInfo {
                bar: BarIndex::Vram,
                size: cfg.vram_size,
                io: false,
                is_64bit: false,
                prefetchable: false,
            },
            BarInfo {
                bar: BarIndex::Rom,
                size: layout.rom_size as u64,
                io: false,
                is_64bit: false,
                prefetchable: false,
            },
            BarInfo {
                bar: BarIndex::Io,
                size: io::BAR_SIZE as u64,
                io: true,
                is_64bit: false,
                prefetchable: false,
            },
        ];
        if let Some(v64) = cfg.vram64_size {
            bars.push(BarInfo {
                bar: BarIndex::Vram64,
                size: v64,
                io: false,
                is_64bit: true,
                prefetchable: true,
            });
        }
        let pci = PciConfig::new(cfg.revision, cfg.vga, bars);
        let rom_init = rom::build_rom(&cfg, &layout);
        let limits = Limits {
            n_surfaces: cfg.n_surfaces,
            ..Limits::default()
        };
        let mut dev = QxlDevice {
            renderer: Renderer::new(cfg.n_surfaces, cfg.render_budget_bytes),
            vbe: Vbe::new(cfg.vgamem_size),
            mode: if cfg.vga { Mode::Vga } else { Mode::Undefined },
            layout,
            limits,
            pci,
            ram,
            vram,
            rom: rom_init.clone(),
            rom_init,
            slots: MemSlots::default(),
            cmd_ring: ConsumerRing::new(RingKind::Command),
            cursor_ring: ConsumerRing::new(RingKind::Cursor),
            release: ReleaseState::new(),
            sink,
            irq_line,
            line: false,
            pending_async: None,
            oom_requested: false,
            halted: false,
            cmd_parked: false,
            cursor_parked: false,
            held_surfaces: BTreeMap::new(),
            held_cursor: None,
            primary: None,
            client: ClientState::default(),
            metrics: Metrics::default(),
            cfg,
        };
        dev.hard_reset_state();
        Ok(dev)
    }

    // ----------------------------------------------------------------------------------
    // Accessors
    // ----------------------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &QxlConfig {
        &self.cfg
    }

    /// The derived BAR0/ROM layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The current display mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// Current level of the INTx line (after INTx disable).
    pub fn irq_level(&self) -> bool {
        self.line
    }

    /// True while an async I/O is pending (its IO_CMD not raised yet).
    pub fn async_pending(&self) -> bool {
        self.pending_async.is_some()
    }

    /// True if a guest bug stopped the device (`halt_on_guest_bug`) until reset.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// The primary surface, if one exists.
    pub fn primary(&self) -> Option<&SurfaceDesc> {
        self.primary.as_ref()
    }

    /// The current ROM contents (as the guest reads BAR2).
    pub fn rom(&self) -> &[u8] {
        &self.rom
    }

    /// RAM (BAR0) backing.
    pub fn ram(&self) -> &SharedRegion {
        &self.ram
    }

    /// VRAM (BAR1/BAR4) backing.
    pub fn vram(&self) -> &SharedRegion {
        &self.vram
    }

    /// The device's view of guest memory through the active memslots.
    pub fn guest_memory(&self) -> SlotMemory<'_> {
        SlotMemory::new(&self.slots, &self.ram, &self.vram)
    }

    /// Active memslot `id`.
    pub fn memslot(&self, id: u8) -> Option<MemSlot> {
        self.slots.get(id).copied()
    }

    /// Every BAR with its backing: RAM/VRAM as memfd + offset (mmap-able), ROM and I/O
    /// trapped ([`QxlDevice::bar_read`] / [`QxlDevice::bar_write`]).
    pub fn bar_regions(&self) -> Vec<BarRegion<'_>> {
        self.pci
            .bars()
            .iter()
            .map(|info| BarRegion {
                info: *info,
                mmap: match info.bar {
                    BarIndex::Ram => Some((self.ram.fd(), 0)),
                    BarIndex::Vram | BarIndex::Vram64 => Some((self.vram.fd(), 0)),
                    BarIndex::Rom | BarIndex::Io => None,
                },
            })
            .collect()
    }

    fn hdr(&self) -> RamHeader<'_> {
        RamHeader::new(&self.ram, self.layout.ram_header_offset as u64)
    }

    // ----------------------------------------------------------------------------------
    // PCI config space
    // ----------------------------------------------------------------------------------

    /// Reads PCI config space.
    pub fn config_read(&self, offset: u16, data: &mut [u8]) {
        self.pci.read(offset, data);
    }

    /// Writes PCI config space; returns the BAR mapping changes the VMM must apply.
    pub fn config_write(&mut self, offset: u16, data: &[u8]) -> Vec<BarMapping> {
        let intx_before = self.pci.intx_disabled();
        let changes = self.pci.write(offset, data);
        if self.pci.intx_disabled() != intx_before {
            self.update_irq();
        }
        changes
    }

    /// Tells the device where the VMM placed a BAR (for VMMs that allocate BARs themselves).
    pub fn set_bar_address(&mut self, bar: BarIndex, addr: u64) -> Vec<BarMapping> {
        self.pci.set_bar_address(bar, addr)
    }

    /// The guest address BAR `bar` is currently decoded at.
    pub fn bar_address(&self, bar: BarIndex) -> Option<u64> {
        self.pci.bar_address(bar)
    }

    // ----------------------------------------------------------------------------------
    // BAR access (trapped)
    // ----------------------------------------------------------------------------------

    /// A trapped read of `data.len()` bytes at `offset` in `bar`. Out-of-range bytes and
    /// I/O ports read as 0xFF.
    pub fn bar_read(&mut self, bar: BarIndex, offset: u64, data: &mut [u8]) {
        let ok = match bar {
            BarIndex::Ram => self.ram.read(offset, data).is_ok(),
            BarIndex::Vram => {
                offset
                    .checked_add(data.len() as u64)
                    .is_some_and(|e| e <= self.cfg.vram_size)
                    && self.vram.read(offset, data).is_ok()
            }
            BarIndex::Vram64 => {
                self.cfg.vram64_size.is_some() && self.vram.read(offset, data).is_ok()
            }
            BarIndex::Rom => usize::try_from(offset)
                .ok()
                .and_then(|o| self.rom.get(o..o.checked_add(data.len())?))
                .map(|s| data.copy_from_slice(s))
                .is_some(),
            BarIndex::Io => {
                data.fill(0xFF);
                if data.len() != 1 || offset >= io::BAR_SIZE as u64 {
                    self.metrics.io_bad_access += 1;
                }
                true
            }
        };
        if !ok {
            self.metrics.bar_bad_access += 1;
            data.fill(0xFF);
        }
    }

    /// A trapped write to `bar`. I/O BAR writes must be 1 byte wide (the value byte is the
    /// argument); other widths are counted and ignored. ROM writes are ignored.
    pub fn bar_write(&mut self, bar: BarIndex, offset: u64, data: &[u8]) -> IoAction {
        match bar {
            BarIndex::Io => {
                if data.len() != 1 || offset >= io::BAR_SIZE as u64 {
                    self.metrics.io_bad_access += 1;
                    return IoAction::default();
                }
                return self.io_write(offset as u8, data[0]);
            }
            BarIndex::Rom => self.metrics.rom_writes += 1,
            BarIndex::Ram => {
                if self.ram.write(offset, data).is_err() {
                    self.metrics.bar_bad_access += 1;
                }
            }
            BarIndex::Vram | BarIndex::Vram64 => {
                let limit = if bar == BarIndex::Vram {
                    self.cfg.vram_size
                } else {
                    self.cfg.vram64_size.unwrap_or(0)
                };
                let in_bar = offset
                    .checked_add(data.len() as u64)
                    .is_some_and(|e| e <= limit);
                if !in_bar || self.vram.write(offset, data).is_err() {
                    self.metrics.bar_bad_access += 1;
                }
            }
        }
        IoAction::default()
    }

    // ----------------------------------------------------------------------------------
    // Interrupts
    // ----------------------------------------------------------------------------------

    /// Sets interrupt bits in `int_pending` (atomic OR); re-evaluates the line if a bit was
    /// newly set (QEMU `qxl_send_events`).
    fn raise(&mut self, bits: u32) {
        self.metrics.interrupts_raised += 1;
        let old = self.hdr().raise(bits).unwrap_or(bits);
        if old & bits != bits {
            self.update_irq();
        }
    }

    /// Re-evaluates the line: `(int_pending & int_mask) != 0` and INTx not disabled; calls
    /// [`InterruptLine::set_level`] every time.
    fn update_irq(&mut self) {
        let hdr = self.hdr();
        let pending = hdr.int_pending().unwrap_or(0);
        let mask = hdr.int_mask().unwrap_or(0);
        let level = pending & mask != 0 && !self.pci.intx_disabled();
        self.line = level;
        self.pci.set_interrupt_status(pending & mask != 0);
        self.irq_line.set_level(level);
    }

    fn guest_bug(&mut self, bug: GuestBug) {
        self.metrics.guest_bugs += 1;
        if log_allowed(self.metrics.guest_bugs) {
            warn!(target: "qxl", "guest bug #{}: {bug}", self.metrics.guest_bugs);
        }
        self.raise(irq::ERROR);
        if self.cfg.halt_on_guest_bug {
            self.halted = true;
        }
        self.sink.event(DeviceEvent::GuestBug(bug));
    }

    // ----------------------------------------------------------------------------------
    // Reset
    // ----------------------------------------------------------------------------------

    fn hard_reset_state(&mut self) {
        self.renderer.destroy_all();
        self.held_surfaces.clear();
        self.held_cursor = None;
        self.slots.clear();
        self.rom = self.rom_init.clone();
        self.reapply_client_state();
        if let Err(e) = self.hdr().init() {
            // Cannot happen: the layout keeps the header inside BAR0.
            warn!(target: "qxl", "RAM header init failed: {e}");
        }
        self.cmd_ring = ConsumerRing::new(RingKind::Command);
        self.cursor_ring = ConsumerRing::new(RingKind::Cursor);
        self.release = ReleaseState::new();
        self.pending_async = None;
        self.oom_requested = false;
        self.halted = false;
        self.cmd_parked = false;
        self.cursor_parked = false;
        self.primary = None;
        self.mode = if self.cfg.vga {
            Mode::Vga
        } else {
            Mode::Undefined
        };
        self.update_irq();
    }

    fn hard_reset(&mut self) {
        let had_primary = self.primary.is_some();
        self.hard_reset_state();
        if had_primary {
            self.sink.event(DeviceEvent::PrimaryDestroyed);
        }
        self.sink.event(DeviceEvent::Reset);
        self.sink.event(DeviceEvent::ModeChanged(self.mode));
    }

    /// Machine reset: device reset plus the VBE registers (PCI config space is the VMM's to
    /// reset; BAR addresses stay).
    pub fn reset(&mut self) {
        self.vbe = Vbe::new(self.cfg.vgamem_size);
        self.hard_reset();
    }

    // ----------------------------------------------------------------------------------
    // I/O ports
    // ----------------------------------------------------------------------------------

    /// Reads an I/O port: always 0xFF (reference §2).
    pub fn io_read(&mut self, _port: u8) -> u8 {
        0xFF
    }

    /// A 1-byte write of `value` to I/O port `port` (offset in BAR3), reference §5.
    pub fn io_write(&mut self, port: u8, value: u8) -> IoAction {
        self.metrics.io_writes += 1;
        if self.halted && port != io::RESET {
            self.metrics.io_ignored += 1;
            return IoAction::default();
        }
        if self.mode == Mode::Vga && !allowed_in_vga(port) {
            self.metrics.io_ignored += 1;
            debug!(target: "qxl", "I/O port {port} ignored in VGA mode");
            if async_port(port) {
                // Be nice to drivers: every async I/O gets its IO_CMD, even an ignored one.
                self.metrics.async_completed += 1;
                self.raise(irq::IO_CMD);
            }
            return IoAction::default();
        }
        if async_port(port) {
            if let Some((pending, _)) = self.pending_async {
                // QEMU: guest bug; the pending one still completes with its own IO_CMD.
                self.guest_bug(GuestBug::SecondAsync { port, pending });
                return IoAction::default();
            }
        }
        let wake = IoAction { wake_worker: true };
        match port {
            io::NOTIFY_CMD | io::NOTIFY_CURSOR => return wake,
            io::UPDATE_IRQ => self.update_irq(),
            io::NOTIFY_OOM => {
                // A no-op while the guest still has releases to collect (reference §10.8).
                let empty = self.release.is_empty(&self.hdr()).unwrap_or(false);
                if empty {
                    self.oom_requested = true;
                    return wake;
                }
            }
            io::RESET => self.hard_reset(),
            io::SET_MODE => {
                self.set_mode(value);
                return wake;
            }
            io::LOG => self.guest_log(),
            io::MEMSLOT_DEL => {
                if let Err(e) = self.slots.del(value as u32) {
                    self.guest_bug(GuestBug::Memslot(e));
                }
            }
            io::FLUSH_RELEASE => self.flush_releases(),
            io::DETACH_PRIMARY | io::ATTACH_PRIMARY => {
                self.guest_bug(GuestBug::UnknownPort(port));
            }
            io::UPDATE_AREA
            | io::MEMSLOT_ADD
            | io::CREATE_PRIMARY
            | io::DESTROY_PRIMARY
            | io::DESTROY_SURFACE_WAIT
            | io::DESTROY_ALL_SURFACES => {
                let op = self.read_op(port, value);
                if let Err(bug) = self.execute(op) {
                    self.guest_bug(bug);
                }
                // Leaving VGA mode may have made queued ring entries consumable.
                if port == io::CREATE_PRIMARY {
                    return wake;
                }
            }
            p if async_port(p) => {
                let op = self.read_op(port, value);
                self.pending_async = Some((port, op));
                return wake;
            }
            _ => self.guest_bug(GuestBug::UnknownPort(port)),
        }
        IoAction::default()
    }

    /// Copies the arguments of an I/O from the RAM header, once.
    fn read_op(&self, port: u8, value: u8) -> Op {
        let hdr = self.hdr();
        match port {
            io::UPDATE_AREA | io::UPDATE_AREA_ASYNC => {
                let r: QxlRect = hdr.read_obj(ram_off::UPDATE_AREA).unwrap_or_default();
                let mut s = [0u8; 4];
                let _ = hdr.read(ram_off::UPDATE_SURFACE, &mut s);
                Op::UpdateArea {
                    surface: u32::from_le_bytes(s),
                    area: Rect {
                        top: r.top.get(),
                        left: r.left.get(),
                        bottom: r.bottom.get(),
                        right: r.right.get(),
                    },
                }
            }
            io::MEMSLOT_ADD | io::MEMSLOT_ADD_ASYNC => Op::MemslotAdd {
                id: value,
                range: hdr.read_obj(ram_off::MEM_SLOT).unwrap_or_default(),
            },
            io::CREATE_PRIMARY | io::CREATE_PRIMARY_ASYNC => Op::CreatePrimary {
                value,
                create: hdr.read_obj(ram_off::CREATE_SURFACE).unwrap_or_default(),
            },
            io::DESTROY_PRIMARY | io::DESTROY_PRIMARY_ASYNC => Op::DestroyPrimary { value },
            io::DESTROY_SURFACE_WAIT | io::DESTROY_SURFACE_ASYNC => {
                Op::DestroySurface { id: value as u32 }
            }
            io::DESTROY_ALL_SURFACES | io::DESTROY_ALL_SURFACES_ASYNC => Op::DestroyAllSurfaces,
            io::FLUSH_SURFACES_ASYNC => Op::FlushSurfaces,
            _ => {
                let mut b = [0u8; 8];
                let _ = hdr.read(ram_off::MONITORS_CONFIG, &mut b);
                Op::MonitorsConfig {
                    addr: QxlPhys(u64::from_le_bytes(b)),
                }
            }
        }
    }

    /// Runs an operation (sync I/O on the vCPU, async I/O on the worker).
    fn execute(&mut self, op: Op) -> Result<(), GuestBug> {
        match op {
            Op::UpdateArea { surface, area } => {
                if surface >= self.cfg.n_surfaces {
                    return Err(GuestBug::BadSurfaceId {
                        port: io::UPDATE_AREA,
                        id: surface,
                    });
                }
                if area.left < 0 || area.top < 0 || area.left > area.right || area.top > area.bottom
                {
                    return Err(GuestBug::BadUpdateArea { surface, area });
                }
                if area.left == area.right || area.top == area.bottom {
                    return Ok(()); // empty: tolerated, nothing to do
                }
                // Pending commands first, so the area holds everything queued before the I/O.
                self.drain_display(DRAIN_LIMIT);
                let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
                match self.renderer.update_area(surface, area, &mem) {
                    Ok(()) => self.sink.event(DeviceEvent::AreaUpdated { surface, area }),
                    Err(e) => {
                        self.metrics.render_errors += 1;
                        debug!(target: "qxl", "update_area: {e}");
                    }
                }
                Ok(())
            }
            Op::MemslotAdd { id, range } => {
                let windows = self.slot_windows();
                match self.slots.add(
                    id as u32,
                    range.mem_start.get(),
                    range.mem_end.get(),
                    &windows,
                ) {
                    Ok(_) => {
                        // Generation stays 0; QEMU rewrites it on every add.
                        if let Some(b) = self.rom.get_mut(rom_off::SLOT_GENERATION) {
                            *b = 0;
                        }
                        Ok(())
                    }
                    Err(e) => Err(GuestBug::Memslot(e)),
                }
            }
            Op::CreatePrimary { value, create } => self.create_primary(value, create),
            Op::DestroyPrimary { value } => {
                if value != 0 {
                    return Err(GuestBug::NonZeroValue {
                        port: io::DESTROY_PRIMARY,
                        value,
                    });
                }
                if self.mode == Mode::Undefined {
                    return Ok(()); // nothing to destroy
                }
                self.drain_display(DRAIN_LIMIT);
                self.destroy_primary();
                Ok(())
            }
            Op::DestroySurface { id } => {
                if id >= self.cfg.n_surfaces {
                    return Err(GuestBug::BadSurfaceId {
                        port: io::DESTROY_SURFACE_WAIT,
                        id,
                    });
                }
                self.drain_display(DRAIN_LIMIT);
                if id == 0 {
                    if self.primary.is_some() {
                        self.destroy_primary();
                    }
                    return Ok(());
                }
                let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
                if let Err(e) = self.renderer.destroy_surface(id, &mem) {
                    self.metrics.render_errors += 1;
                    debug!(target: "qxl", "destroy_surface: {e}");
                }
                if let Some(h) = self.held_surfaces.remove(&id) {
                    self.release(h);
                }
                self.sink.event(DeviceEvent::SurfaceDestroyed(id));
                Ok(())
            }
            Op::DestroyAllSurfaces => {
                self.drain_display(DRAIN_LIMIT);
                self.renderer.destroy_all();
                let held: Vec<Held> = std::mem::take(&mut self.held_surfaces)
                    .into_values()
                    .collect();
                for h in held {
                    self.release(h);
                }
                if self.primary.take().is_some() {
                    self.sink.event(DeviceEvent::PrimaryDestroyed);
                }
                self.sink.event(DeviceEvent::AllSurfacesDestroyed);
                self.set_mode_state(Mode::Undefined);
                Ok(())
            }
            Op::FlushSurfaces => {
                self.drain_display(DRAIN_LIMIT);
                let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
                self.renderer.flush_all(&mem);
                Ok(())
            }
            Op::MonitorsConfig { addr } => {
                let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
                match decode::decode_monitors_config(&mem, addr, &self.limits) {
                    Ok(mc) => self.sink.event(DeviceEvent::MonitorsConfig(mc)),
                    Err(e) => {
                        // spice ignores a bad monitors config; we log and count it.
                        self.metrics.decode_errors += 1;
                        if log_allowed(self.metrics.decode_errors) {
                            warn!(target: "qxl", "monitors config at {:#x} rejected: {e}", addr.0);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn slot_windows(&self) -> Vec<SlotWindow> {
        let mut w = Vec::new();
        for (bar, size, backing) in [
            (BarIndex::Ram, self.cfg.ram_size, Backing::Ram),
            (BarIndex::Vram, self.cfg.vram_size, Backing::Vram),
            (
                BarIndex::Vram64,
                self.cfg.vram64_size.unwrap_or(0),
                Backing::Vram,
            ),
        ] {
            if let Some(base) = self.pci.bar_address(bar) {
                w.push(SlotWindow {
                    bar,
                    base,
                    size,
                    backing,
                });
            }
        }
        w
    }

    fn set_mode_state(&mut self, mode: Mode) {
        if self.mode != mode {
            self.mode = mode;
            self.sink.event(DeviceEvent::ModeChanged(mode));
        }
    }

    fn create_primary(&mut self, value: u8, c: QxlSurfaceCreate) -> Result<(), GuestBug> {
        if value != 0 {
            return Err(GuestBug::NonZeroValue {
                port: io::CREATE_PRIMARY,
                value,
            });
        }
        if self.primary.is_some() {
            return Err(GuestBug::PrimaryExists);
        }
        let stride = c.stride.get();
        if stride % 4 != 0 {
            return Err(GuestBug::BadPrimary(format!(
                "stride {stride} not a multiple of 4"
            )));
        }
        let bytes = (stride.unsigned_abs() as u64).saturating_mul(c.height.get() as u64);
        if bytes > self.layout.surface0_area_size as u64 {
            return Err(GuestBug::BadPrimary(format!(
                "{bytes} bytes exceed the surface-0 area of {}",
                self.layout.surface0_area_size
            )));
        }
        // Commands queued before the create belong to the old state.
        if self.mode != Mode::Vga {
            self.drain_display(DRAIN_LIMIT);
        }
        let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
        let desc = decode::validate_surface(
            &mem,
            c.width.get(),
            c.height.get(),
            stride,
            c.format.get(),
            QxlPhys(c.mem.get()),
            &self.limits,
        )
        .map_err(|e| GuestBug::BadPrimary(e.to_string()))?;
        let keep = c.flags.get() & QXL_SURF_FLAG_KEEP_DATA != 0;
        self.renderer
            .create_surface(0, &desc, keep, &mem)
            .map_err(|e| GuestBug::BadPrimary(e.to_string()))?;
        self.primary = Some(desc.clone());
        self.sink.event(DeviceEvent::PrimaryCreated(desc));
        self.set_mode_state(Mode::Native);
        Ok(())
    }

    fn destroy_primary(&mut self) {
        let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
        if self.primary.take().is_some() {
            if let Err(e) = self.renderer.destroy_surface(0, &mem) {
                self.metrics.render_errors += 1;
                debug!(target: "qxl", "destroy primary: {e}");
            }
            self.sink.event(DeviceEvent::PrimaryDestroyed);
        }
        self.set_mode_state(Mode::Undefined);
    }

    /// qxl-1 compat SET_MODE: hard reset, slot 0 = all of BAR0 with guest-physical
    /// addresses, primary from the ROM mode list at the draw area, mode COMPAT: from then on
    /// DRAW commands are `QXLCompatDrawable`s (see `decode::decode_compat_display`).
    fn set_mode(&mut self, value: u8) {
        let Some(m) = rom::modes_for(self.cfg.vgamem_size)
            .into_iter()
            .find(|m| m.id.get() == value as u32)
        else {
            self.guest_bug(GuestBug::BadMode(value as u32));
            return;
        };
        self.hard_reset();
        let Some(base) = self.pci.bar_address(BarIndex::Ram) else {
            self.guest_bug(GuestBug::BadMode(value as u32));
            return;
        };
        self.slots.install(
            0,
            MemSlot {
                backing: Backing::Ram,
                region_offset: 0,
                size: self.cfg.ram_size,
                delta: base,
                generation: 0,
                guest_start: base,
            },
        );
        let bits = m.bits.get();
        let create = QxlSurfaceCreate {
            width: m.x_res,
            height: m.y_res,
            stride: (-((m.x_res.get() * bits / 8) as i32)).into(),
            format: (if bits == 16 { 16u32 } else { 32 }).into(),
            mem: base.into(),
            ty: 0.into(),
            ..Default::default()
        };
        match self.create_primary(0, create) {
            Ok(()) => {
                if let Some(b) = self.rom.get_mut(rom_off::MODE..rom_off::MODE + 4) {
                    b.copy_from_slice(&(value as u32).to_le_bytes());
                }
                self.set_mode_state(Mode::Compat);
            }
            Err(bug) => self.guest_bug(bug),
        }
    }

    fn guest_log(&mut self) {
        self.metrics.guest_logs += 1;
        let mut buf = vec![0u8; LOG_BUF_SIZE];
        if self.hdr().read(ram_off::LOG_BUF, &mut buf).is_err() {
            return;
        }
        // Bounded to the 4096-byte buffer whether or not the guest NUL-terminated it.
        let len = buf.iter().position(|&b| b == 0).unwrap_or(LOG_BUF_SIZE);
        let text = String::from_utf8_lossy(&buf[..len]).trim_end().to_string();
        if log_allowed(self.metrics.guest_logs) {
            info!(target: "qxl_guest", "{text}");
        }
        self.sink.event(DeviceEvent::GuestLog(text));
    }

    // ----------------------------------------------------------------------------------
    // Worker: async completion and rings
    // ----------------------------------------------------------------------------------

    /// Does the worker's share: completes the pending async I/O (raising exactly one
    /// IO_CMD, plus ERROR if it was refused), handles NOTIFY_OOM, drains the cursor and
    /// command rings (bounded) and publishes releases. Call until `more` is false.
    pub fn process(&mut self) -> Progress {
        let mut p = Progress::default();
        if self.halted {
            return p;
        }
        if let Some((_port, op)) = self.pending_async.take() {
            if let Err(bug) = self.execute(op) {
                self.guest_bug(bug);
            }
            p.completed_async = true;
            self.metrics.async_completed += 1;
            self.raise(irq::IO_CMD);
        }
        if self.halted {
            return p;
        }
        if self.oom_requested {
            self.oom_requested = false;
            p.consumed += self.drain_cursor(DRAIN_LIMIT);
            p.consumed += self.drain_display(DRAIN_LIMIT);
            // The cursor shape was copied when decoded, so the held SET can go too: Linux's
            // unload (NOTIFY_OOM, then wait for every release) otherwise leaves it pinned.
            // Surface creates stay held: the guest still references them until destroy.
            if let Some(h) = self.held_cursor.take() {
                self.release(h);
            }
            self.flush_releases();
        }
        let c = self.drain_cursor(PROCESS_BUDGET);
        let d = self.drain_display(PROCESS_BUDGET);
        p.consumed += c + d;
        p.more = c == PROCESS_BUDGET || d == PROCESS_BUDGET || self.pending_async.is_some();
        p
    }

    fn rings_active(&self) -> bool {
        !self.halted && self.mode != Mode::Vga
    }

    fn drain_display(&mut self, limit: usize) -> usize {
        let mut n = 0;
        while n < limit && self.rings_active() && !self.cmd_parked {
            let hdr = RamHeader::new(&self.ram, self.layout.ram_header_offset as u64);
            let pop = self.cmd_ring.pop(&hdr);
            match pop {
                Ok(Pop::Empty) => break,
                Ok(Pop::Item { cmd, notify }) => {
                    n += 1;
                    if notify {
                        self.raise(irq::DISPLAY);
                    }
                    self.note_null_entry(RingKind::Command, &cmd);
                    self.handle_display(cmd.ty.get(), QxlPhys(cmd.data.get()));
                }
                Err(e) => {
                    self.park(RingKind::Command, e);
                    break;
                }
            }
        }
        n
    }

    fn drain_cursor(&mut self, limit: usize) -> usize {
        let mut n = 0;
        while n < limit && self.rings_active() && !self.cursor_parked {
            let hdr = RamHeader::new(&self.ram, self.layout.ram_header_offset as u64);
            let pop = self.cursor_ring.pop(&hdr);
            match pop {
                Ok(Pop::Empty) => break,
                Ok(Pop::Item { cmd, notify }) => {
                    n += 1;
                    if notify {
                        self.raise(irq::CURSOR);
                    }
                    self.note_null_entry(RingKind::Cursor, &cmd);
                    self.handle_cursor(cmd.ty.get(), QxlPhys(cmd.data.get()));
                }
                Err(e) => {
                    self.park(RingKind::Cursor, e);
                    break;
                }
            }
        }
        n
    }

    /// Counts and logs a ring entry whose command address is NULL (no driver sends one; seen
    /// as an all-zero entry, i.e. a slot the guest had not written when `prod` moved).
    ///
    /// Known cause (device/README.md, "All-zero (NULL) ring entries"): a VMM that fails a
    /// guest read of `prod` (QEMU's vfio-user gives up after `x-msg-timeout` behind a backlog
    /// of posted BAR writes and returns all-ones) makes Linux's `qxl_ring_push` write its
    /// command into slot `0xFFFFFFFF & 31` and then publish the real `prod + 1`; the slot
    /// popped here was never written. The log line carries the ring header as it is after
    /// the pop.
    fn note_null_entry(&mut self, ring: RingKind, cmd: &crate::abi::dev::RingCommand) {
        if cmd.data.get() != 0 {
            return;
        }
        self.metrics.null_commands += 1;
        let cons = match ring {
            RingKind::Command => self.cmd_ring.cons(),
            RingKind::Cursor => self.cursor_ring.cons(),
        };
        if log_allowed(self.metrics.null_commands) {
            let base = match ring {
                RingKind::Command => ram_off::CMD_RING,
                RingKind::Cursor => ram_off::CURSOR_RING,
            };
            let h: crate::abi::dev::RingHeader = self.hdr().read_obj(base).unwrap_or_else(|_| {
                <crate::abi::dev::RingHeader as zerocopy::FromZeros>::new_zeroed()
            });
            warn!(
                target: "qxl",
                "{} ring entry {} (slot {}) has a NULL command address, type {} (mode {:?}); header prod {} cons {} notify_on_prod {} notify_on_cons {} num_items {}",
                ring.name(),
                cons.wrapping_sub(1),
                cons.wrapping_sub(1) & 31,
                cmd.ty.get(),
                self.mode,
                h.prod.get(), h.cons.get(), h.notify_on_prod.get(), h.notify_on_cons.get(), h.num_items.get()
            );
        }
    }

    fn park(&mut self, ring: RingKind, e: crate::ring::RingError) {
        self.metrics.rings_parked += 1;
        match ring {
            RingKind::Command => self.cmd_parked = true,
            RingKind::Cursor => self.cursor_parked = true,
        }
        let bug = match e {
            crate::ring::RingError::BadIndex { ring, prod, cons } => {
                GuestBug::RingIndices { ring, prod, cons }
            }
            other => {
                // Cannot happen with a validated layout; report it as a parked ring anyway.
                warn!(target: "qxl", "{} ring: {other}", ring.name());
                GuestBug::RingIndices {
                    ring: ring.name(),
                    prod: 0,
                    cons: 0,
                }
            }
        };
        self.guest_bug(bug);
    }

    /// Copies the first `N` bytes of a command: the release id and the few bytes the core
    /// needs to decide whether to hold a release (surface create until destroyed, cursor SET
    /// until replaced, as spice-server does). Only that decision depends on them.
    fn peek<const N: usize>(&self, addr: QxlPhys) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        SlotMemory::new(&self.slots, &self.ram, &self.vram)
            .read(addr, &mut b)
            .ok()
            .map(|_| b)
    }

    /// The guest's release id (first 8 bytes of every command), 0 if unreadable.
    fn release_id(&self, addr: QxlPhys) -> u64 {
        self.peek::<8>(addr).map_or(0, u64::from_le_bytes)
    }

    fn reject_log(&mut self, ring: RingKind, ty: u32, addr: QxlPhys, e: &decode::DecodeError) {
        self.metrics.decode_errors += 1;
        if log_allowed(self.metrics.decode_errors) {
            warn!(target: "qxl", "{} command type {ty} at {:#x} rejected: {e}", ring.name(), addr.0);
        }
    }

    fn handle_display(&mut self, ty: u32, addr: QxlPhys) {
        self.metrics.commands += 1;
        let id = self.release_id(addr);
        // QXLSurfaceCmd: surface_id u32 @8, type u8 @12.
        let head = if ty == QXL_CMD_SURFACE {
            self.peek::<13>(addr)
        } else {
            None
        };
        let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
        let decoded = if self.mode == Mode::Compat {
            // qxl-1 after SET_MODE: compat drawables; x555 colours in a 16-bit mode.
            let colors_16bpp = self.primary.as_ref().is_some_and(|p| p.format == 16);
            decode::decode_compat_display(&mem, ty, addr, colors_16bpp, &self.limits)
        } else {
            decode::decode_display(&mem, ty, addr, &self.limits)
        };
        let this = Held { info: addr, id };
        match decoded {
            Ok(cmd) => {
                if let Err(e) = self.renderer.draw(&cmd, &mem) {
                    self.metrics.render_errors += 1;
                    debug!(target: "qxl", "render: {e}");
                }
                self.sink.event(DeviceEvent::Display(cmd));
                if let (QXL_CMD_SURFACE, Some(h)) = (ty, head) {
                    let sid = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
                    match h[12] {
                        SURFACE_CMD_CREATE if sid < self.cfg.n_surfaces => {
                            // Held until the surface is destroyed; a second create of a live
                            // id releases the first.
                            if let Some(old) = self.held_surfaces.insert(sid, this) {
                                self.release(old);
                            }
                            return;
                        }
                        SURFACE_CMD_DESTROY => {
                            if let Some(old) = self.held_surfaces.remove(&sid) {
                                self.release(old);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                self.reject_log(RingKind::Command, ty, addr, &e);
                self.sink.event(DeviceEvent::CommandRejected {
                    ring: RingKind::Command,
                    ty,
                    error: e,
                });
            }
        }
        // Released even when it failed to decode (spice f928763d).
        self.release(this);
    }

    fn handle_cursor(&mut self, ty: u32, addr: QxlPhys) {
        self.metrics.cursor_commands += 1;
        let id = self.release_id(addr);
        // QXLCursorCmd: type u8 @8.
        let head = self.peek::<9>(addr);
        let this = Held { info: addr, id };
        let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
        match decode::decode_cursor(&mem, ty, addr, &self.limits) {
            Ok(cmd) => {
                self.sink.event(DeviceEvent::Cursor(cmd));
                if ty == QXL_CMD_CURSOR && head.is_some_and(|h| h[8] == CURSOR_SET) {
                    // The SET stays with the device until the next SET (spice b5479191).
                    if let Some(old) = self.held_cursor.replace(this) {
                        self.release(old);
                    }
                    return;
                }
            }
            Err(e) => {
                self.reject_log(RingKind::Cursor, ty, addr, &e);
                self.sink.event(DeviceEvent::CommandRejected {
                    ring: RingKind::Cursor,
                    ty,
                    error: e,
                });
            }
        }
        self.release(this);
    }

    /// Queues a release and publishes a bunch when 32 accumulated.
    fn release(&mut self, h: Held) {
        let hdr = RamHeader::new(&self.ram, self.layout.ram_header_offset as u64);
        let mem = SlotMemory::new(&self.slots, &self.ram, &self.vram);
        match self.release.push(&hdr, &mem, h.info, h.id) {
            Ok(published) => {
                self.metrics.releases += 1;
                if let Some(notify) = published {
                    self.metrics.release_chains += 1;
                    if notify {
                        self.raise(irq::DISPLAY);
                    }
                }
            }
            Err(e) => {
                self.metrics.release_rejects += 1;
                if log_allowed(self.metrics.release_rejects) {
                    warn!(target: "qxl", "release of {:#x} refused: {e}", h.info.0);
                }
                return;
            }
        }
        self.publish(false);
    }

    fn publish(&mut self, flush: bool) {
        let hdr = RamHeader::new(&self.ram, self.layout.ram_header_offset as u64);
        if let Ok(Some(notify)) = self.release.publish(&hdr, flush) {
            self.metrics.release_chains += 1;
            if notify {
                self.raise(irq::DISPLAY);
            }
        }
    }

    fn flush_releases(&mut self) {
        self.publish(true);
    }

    // ----------------------------------------------------------------------------------
    // Client side: monitors config, presence, capabilities
    // ----------------------------------------------------------------------------------

    fn reapply_client_state(&mut self) {
        let present = self.client.present as u8;
        if let Some(b) = self.rom.get_mut(rom_off::CLIENT_PRESENT) {
            *b = present;
        }
        let caps = rom::caps_bytes(&self.client.caps);
        if let Some(b) = self
            .rom
            .get_mut(rom_off::CLIENT_CAPABILITIES..rom_off::CLIENT_CAPABILITIES + caps.len())
        {
            b.copy_from_slice(&caps);
        }
        if let Some(heads) = self.client.monitors.clone() {
            self.write_client_monitors(&heads);
        }
    }

    fn write_client_monitors(&mut self, heads: &[ClientMonitor]) -> bool {
        use zerocopy::IntoBytes;
        let (mc, crc) = rom::encode_client_monitors(heads, self.cfg.max_heads());
        let cfg_off = rom_off::CLIENT_MONITORS_CONFIG;
        let crc_off = rom_off::CLIENT_MONITORS_CONFIG_CRC;
        let new = mc.as_bytes();
        let changed = self.rom.get(cfg_off..cfg_off + new.len()) != Some(new)
            || self.rom.get(crc_off..crc_off + 4) != Some(&crc.to_le_bytes()[..]);
        if let Some(b) = self.rom.get_mut(cfg_off..cfg_off + new.len()) {
            b.copy_from_slice(new);
        }
        if let Some(b) = self.rom.get_mut(crc_off..crc_off + 4) {
            b.copy_from_slice(&crc.to_le_bytes());
        }
        changed
    }

    /// Whether the guest driver takes a client monitors config now: it unmasked
    /// CLIENT_MONITORS_CONFIG (what spice-server asks QEMU's qxl before it intercepts a
    /// client's MONITORS_CONFIG instead of passing it to the agent).
    pub fn takes_client_monitors(&self) -> bool {
        let mask = self.hdr().int_mask().unwrap_or(0);
        !self.halted && mask != 0 && mask != u32::MAX && mask & irq::CLIENT_MONITORS_CONFIG != 0
    }

    /// Sets the client's monitors (heads beyond `max_outputs`/64 are dropped), writes them
    /// with their CRC into the ROM and raises CLIENT_MONITORS_CONFIG if the config changed
    /// and the guest unmasked it (mask ≠ 0, ≠ !0, bit set; reference §3). Returns whether
    /// the interrupt was raised. The config survives guest resets.
    pub fn set_client_monitors(&mut self, heads: &[ClientMonitor]) -> bool {
        self.client.monitors = Some(heads.to_vec());
        let changed = self.write_client_monitors(heads);
        if changed && self.takes_client_monitors() {
            self.raise(irq::CLIENT_MONITORS_CONFIG);
            return true;
        }
        false
    }

    /// Sets `client_present` and the client's display-channel capability bits (bit n = byte
    /// n/8, bit n%8) in the ROM and raises QXL_INTERRUPT_CLIENT.
    pub fn set_client_capabilities(&mut self, present: bool, caps: &[u8]) {
        self.client.present = present;
        self.client.caps = caps
            .iter()
            .take(rom::caps_bytes(&[]).len())
            .copied()
            .collect();
        self.reapply_client_state();
        if !self.halted {
            self.raise(irq::CLIENT);
        }
    }

    /// Writes the compression level into the ROM (spice `set_compression_level`).
    pub fn set_compression_level(&mut self, level: u32) {
        let o = rom_off::COMPRESSION_LEVEL;
        if let Some(b) = self.rom.get_mut(o..o + 4) {
            b.copy_from_slice(&level.to_le_bytes());
        }
    }

    // ----------------------------------------------------------------------------------
    // VBE and snapshots
    // ----------------------------------------------------------------------------------

    /// A guest write to a legacy VGA register port (0x3B4/5, 0x3BA, 0x3C0–0x3CF, 0x3D4/5,
    /// 0x3DA), reported by a VMM that emulates the VGA core. Revision ≤ 4 only: outside VGA
    /// mode it destroys the primary and returns to VGA mode (QEMU's soft reset, the reason
    /// Linux grabs vgaarb for revision < 5). Revision 5 ignores it.
    pub fn legacy_vga_write(&mut self, port: u16) {
        let vga_port = matches!(
            port,
            0x3B4 | 0x3B5 | 0x3BA | 0x3C0..=0x3CF | 0x3D4 | 0x3D5 | 0x3DA
        );
        if !vga_port || self.cfg.revision > 4 || !self.cfg.vga || self.mode == Mode::Vga {
            return;
        }
        self.destroy_primary();
        self.halted = false;
        self.pending_async = None;
        self.set_mode_state(Mode::Vga);
    }

    /// Bochs VBE port read (0x1CE index / 0x1CF data). Secondary devices (class 0x0380)
    /// have no VGA ports and read 0xFFFF.
    pub fn vbe_io_read(&self, port: u16) -> u16 {
        if !self.cfg.vga {
            return 0xFFFF;
        }
        self.vbe.read(port)
    }

    /// Bochs VBE port write.
    pub fn vbe_io_write(&mut self, port: u16, value: u16) {
        if !self.cfg.vga {
            return;
        }
        if let Some(change) = self.vbe.write(port, value) {
            self.sink.event(DeviceEvent::VbeModeChanged(change));
        }
    }

    /// The current VBE mode, if enabled.
    pub fn vbe_mode(&self) -> Option<VbeMode> {
        self.vbe.mode()
    }

    /// The VBE framebuffer as an image (32/24/16/15 bpp), if VBE is enabled.
    pub fn vbe_snapshot(&self) -> Option<Snapshot> {
        self.vbe.snapshot(&self.ram)
    }

    /// Surface `id` as the software renderer has it.
    pub fn surface_snapshot(&self, id: u32) -> Option<Snapshot> {
        self.renderer.snapshot(id)
    }

    /// `area` of surface `id` as the software renderer has it (clipped to the surface;
    /// `None` when the surface does not exist or the area is empty).
    pub fn surface_area_snapshot(&self, id: u32, area: Rect) -> Option<Snapshot> {
        self.renderer.snapshot_area(id, area)
    }

    /// What the display shows now: the VBE framebuffer in VGA mode, else the primary.
    pub fn display_snapshot(&self) -> Option<Snapshot> {
        match self.mode {
            Mode::Vga => self.vbe_snapshot(),
            Mode::Native | Mode::Compat => self.renderer.snapshot(0),
            Mode::Undefined => None,
        }
    }
}
